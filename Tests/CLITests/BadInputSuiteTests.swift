import Foundation
import NN
import Support
import TestSupport
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// The data-driven bad-input suite: every case in `Tests/BadInput/<surface>/cases.json` (format in
/// `Tests/BadInput/README.md`) builds its scratch folder, runs one cladmop command (or mpirun with per-rank
/// arguments), and must end with the expected exit status, print the expected words (the file, key or line
/// named), neither crash nor hang, and leave every file outside its scratch folder, and every input inside it,
/// as it was. Shared fixtures (a tiny text encoder, a synthetic store, a smoke checkpoint, a fine-tuned one,
/// a CSV store) are built once per suite in `setUp`.
///
/// `swift test --filter BadInputSuiteTests`; `BADINPUT_ONLY=surface[/name-substring]` runs a subset,
/// `BADINPUT_REPORT=FILE` writes every case's result (status, seconds, output) as JSON lines.
final class BadInputSuiteTests: XCTestCase {
    static let casesRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().path + "/BadInput"
    static let work = NSTemporaryDirectory() + "cladmop-badinput-\(getpid())"
    static var fixtures: String { work + "/fixtures" }
    static var fixtureError: String?
    static var fixtureSeconds = 0.0
    static var repoBefore: [String: FileState] = [:]

    // MARK: suite fixtures

    override class func setUp() {
        try? FileManager.default.removeItem(atPath: work)
        try? FileManager.default.createDirectory(atPath: fixtures, withIntermediateDirectories: true)
        let start = Date()
        do { try buildFixtures() } catch { fixtureError = "\(error)" }
        fixtureSeconds = Date().timeIntervalSince(start)
        repoBefore = Snapshot.contents(of: Snapshot.protectedRoots())
    }

    override class func tearDown() {
        if ProcessInfo.processInfo.environment["BADINPUT_KEEP"] == nil { try? FileManager.default.removeItem(atPath: work) }
    }

    static var cladmop: String { productsFolder.appendingPathComponent("cladmop").path }
    static var hierarchy: String { repositoryRoot + "/data/icd10/icd10cm_2025_hierarchy.tsv" }

    /// The fixtures every case may reference as {fixtures}/...: a tiny BERT encoder (hidden 12, 3 layers),
    /// a synthetic store of width 12, a 2-step smoke pretraining run, a CSV store of good.csv and valid.csv, and a
    /// 1-epoch fine-tuned run on them.
    static func buildFixtures() throws {
        let f = fixtures
        try writeTinyEncoder(dir: f + "/encoder")
        for name in ["good.csv", "valid.csv"] {
            try FileManager.default.copyItem(atPath: casesRoot + "/common/" + name, toPath: f + "/" + name)
        }
        try writeSmallHierarchy(path: f + "/icd-small.tsv")
        let enc = "encoder.model_dir=\(f)/encoder"
        func run(_ args: [String]) throws {
            let r = try runProduct("cladmop", args, timeout: 120)
            guard r.status == 0 else { throw FixtureError("cladmop \(args.joined(separator: " ")) -> \(r.status):\n\(r.output)") }
        }
        try run(["synth", "--trials", "60", "--dim", "12", "--output", f + "/synthetic.store", "--set", "data.icd_hierarchy=\(hierarchy)"])
        try run(["synth", "--trials", "60", "--dim", "12", "--seed", "2", "--output", f + "/synthetic-seed2.store",
                 "--set", "data.icd_hierarchy=\(hierarchy)"])
        try run(["pretrain", "--config", repositoryRoot + "/configs/smoke.yaml", "--run-dir", f + "/run",
                 "--set", "data.synthetic=true", "--set", "data.feature_store=\(f)/synthetic.store", "--set", "data.icd_hierarchy=\(hierarchy)",
                 "--set", enc, "--set", "train.max_steps=2"])
        try run(["featurize", "--data", f + "/good.csv", "--data", f + "/valid.csv", "--output", f + "/top.store",
                 "--set", "data.icd_hierarchy=\(hierarchy)", "--set", enc])
        try run(["finetune", "--config", repositoryRoot + "/configs/smoke.yaml", "--pretrained", f + "/run", "--train", f + "/good.csv",
                 "--valid", f + "/valid.csv", "--run-dir", f + "/finetune", "--set", "data.icd_hierarchy=\(hierarchy)", "--set", enc,
                 "--set", "data.feature_store=\(f)/top.store", "--set", "finetune.epochs=1", "--set", "finetune.batch=4",
                 "--set", "finetune.head_hidden=8", "--set", "finetune.lora_rank=2"])
        // An evaluation JSON for `compare`.
        try run(["evaluate", "--checkpoint", f + "/finetune", "--data", f + "/valid.csv", "--json", f + "/eval.json",
                 "--set", "data.icd_hierarchy=\(hierarchy)", "--set", enc, "--set", "data.feature_store=\(f)/top.store"])
        // The checkpoints' file names, for cases that copy them.
        for (dir, link) in [(f + "/run/checkpoints", f + "/pretrain-checkpoint.json"), (f + "/finetune/checkpoints", f + "/finetune-checkpoint.json")] {
            let json = Checkpointish.newestJSON(dir)
            guard let json else { throw FixtureError("no checkpoint in \(dir)") }
            try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: json)
        }
    }

    /// The ICD-10 tree cut to its chapters, blocks and categories plus the subcategories of the codes the committed
    /// CSVs and the generated rows use: loads in milliseconds, so CSV cases do not spend a second on the full tree.
    static func writeSmallHierarchy(path: String) throws {
        let text = try String(contentsOfFile: hierarchy, encoding: .utf8)
        let keep = ["J45", "E11", "I10", "C34", "F32", "G40"]
        var out = ""
        for (i, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let cols = line.split(separator: "\t", omittingEmptySubsequences: false)
            if i == 0 || (cols.count >= 3 && (Int(cols[2]) ?? 9) <= 3) || keep.contains(where: { line.hasPrefix($0) }) { out += line + "\n" }
        }
        try out.write(toFile: path, atomically: true, encoding: .utf8)
    }

    /// A BERT encoder folder small enough to copy per case: HuggingFace names and config keys, random weights.
    static func writeTinyEncoder(dir: String) throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        var vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        vocab += "abcdefghijklmnopqrstuvwxyz0123456789".map { String($0) }
        vocab += ["-", ":", ",", ".", "(", ")", "inclusion", "exclusion", "criteria", "adults", "children", "with", "pregnancy", "consent",
                  "asthma", "diabetes", "cancer", "lung", "blood", "pressure", "above", "heart", "failure", "prior", "hello", "world"]
        try (vocab.joined(separator: "\n") + "\n").write(toFile: dir + "/vocab.txt", atomically: true, encoding: .utf8)
        let d = 12, heads = 2, layers = 3, inter = 24, positions = 512
        let config: [String: Any] = ["architectures": ["BertModel"], "model_type": "bert", "hidden_size": d, "num_attention_heads": heads,
                                     "num_hidden_layers": layers, "intermediate_size": inter, "max_position_embeddings": positions,
                                     "vocab_size": vocab.count, "type_vocab_size": 2, "layer_norm_eps": 1e-12, "hidden_act": "gelu"]
        try JSONSerialization.data(withJSONObject: config, options: [.prettyPrinted, .sortedKeys]).write(to: URL(fileURLWithPath: dir + "/config.json"))
        try Data("{\"do_lower_case\": true}\n".utf8).write(to: URL(fileURLWithPath: dir + "/tokenizer_config.json"))
        var shapes: [(String, [Int], Bool)] = []     // name, shape, is a LayerNorm gain
        shapes += [("embeddings.word_embeddings.weight", [vocab.count, d], false), ("embeddings.position_embeddings.weight", [positions, d], false),
                   ("embeddings.token_type_embeddings.weight", [2, d], false),
                   ("embeddings.LayerNorm.weight", [d], true), ("embeddings.LayerNorm.bias", [d], false)]
        for i in 0..<layers {
            let n = "encoder.layer.\(i)."
            for l in ["attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"] {
                shapes += [(n + l + ".weight", [d, d], false), (n + l + ".bias", [d], false)]
            }
            shapes += [(n + "attention.output.LayerNorm.weight", [d], true), (n + "attention.output.LayerNorm.bias", [d], false),
                       (n + "intermediate.dense.weight", [inter, d], false), (n + "intermediate.dense.bias", [inter], false),
                       (n + "output.dense.weight", [d, inter], false), (n + "output.dense.bias", [d], false),
                       (n + "output.LayerNorm.weight", [d], true), (n + "output.LayerNorm.bias", [d], false)]
        }
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        var buffers: [[Float]] = []
        for (_, shape, gain) in shapes {
            buffers.append((0..<shape.reduce(1, *)).map { _ in
                if gain { return 1 }
                state = state &* 6364136223846793005 &+ 1442695040888963407
                return (Float(state >> 40) / Float(1 << 24) - 0.5) * 0.2
            })
        }
        let pointers = buffers.map { b -> UnsafeMutablePointer<Float> in
            let p = UnsafeMutablePointer<Float>.allocate(capacity: max(b.count, 1)); p.update(from: b, count: b.count); return p
        }
        defer { pointers.forEach { $0.deallocate() } }
        try writeSafetensors(path: dir + "/model.safetensors",
                             tensors: shapes.indices.map { (shapes[$0].0, shapes[$0].1, UnsafePointer(pointers[$0])) }, metadata: ["format": "pt"])
    }

    // MARK: the suite

    func testBadInputCases() throws {
        let files = try CaseFile.loadAll(root: Self.casesRoot)
        let env = ProcessInfo.processInfo.environment
        let only = env["BADINPUT_ONLY"]
        var results: [CaseResult] = []
        let suiteStart = Date()
        for file in files {
            for c in file.cases {
                let id = "\(file.surface)/\(c.name)"
                if let only, !id.contains(only) { continue }
                let r = runCase(c, surface: file.surface, vars: file.vars)
                results.append(r)
                let mark = r.skipped != nil ? "skip" : r.problems.isEmpty ? (c.knownFailure == nil ? "ok" : "PASS?") : (c.knownFailure == nil ? "FAIL" : "xfail")
                print(String(format: "bad-input %-5@ %6.2f s  %@%@", mark, r.seconds, id, r.skipped.map { " (\($0))" } ?? ""))
                if let skipped = r.skipped { _ = skipped; continue }
                if let known = c.knownFailure {
                    if r.problems.isEmpty {
                        XCTFail("[\(id)] passes now: remove its known_failure marker (\(known))")
                    }
                } else if !r.problems.isEmpty {
                    XCTFail("[\(id)] \(r.problems.joined(separator: "; "))\n--- command: \(r.command)\n--- exit status \(r.statusText) after \(String(format: "%.2f", r.seconds)) s; output:\n\(r.output.suffix(3000))")
                }
            }
        }
        // The repository's inputs (data/, configs/, models/, ...) are byte for byte what they were before the suite.
        let after = Snapshot.contents(of: Snapshot.protectedRoots())
        let changed = Snapshot.differences(Self.repoBefore, after)
        XCTAssertTrue(changed.isEmpty, "the suite changed files of the repository: \(changed.prefix(20))")
        // Summary by surface.
        print("\nbad-input suite: fixtures \(String(format: "%.1f", Self.fixtureSeconds)) s, cases \(String(format: "%.1f", Date().timeIntervalSince(suiteStart))) s")
        func row(_ cells: [String]) -> String {
            zip(cells, [14, 7, 8, 8, 19, 8]).map { c, w in c + String(repeating: " ", count: max(w - c.count, 1)) }.joined()
        }
        func counts(_ name: String, _ rs: [CaseResult]) -> String {
            let skipped = rs.filter { $0.skipped != nil }.count
            let passed = rs.filter { $0.skipped == nil && $0.problems.isEmpty && !$0.known }.count
            let failed = rs.filter { $0.skipped == nil && !$0.problems.isEmpty && !$0.known }.count
            let xfail = rs.filter { $0.skipped == nil && !$0.problems.isEmpty && $0.known }.count
            return row([name, "\(rs.count)", "\(passed)", "\(failed)", "\(xfail)", "\(skipped)"])
        }
        print(row(["surface", "cases", "passed", "failed", "expected-failures", "skipped"]))
        for file in files {
            let rs = results.filter { $0.surface == file.surface }
            if !rs.isEmpty { print(counts(file.surface, rs)) }
        }
        print(counts("total", results))
        if let report = env["BADINPUT_REPORT"] {
            let lines = results.map { r -> String in
                let o: [String: Any] = ["id": "\(r.surface)/\(r.name)", "status": r.statusText, "seconds": r.seconds, "problems": r.problems,
                                        "known_failure": r.knownText ?? NSNull(), "skipped": r.skipped ?? NSNull(), "command": r.command,
                                        "output": String(r.output.suffix(4000))]
                return String(decoding: try! JSONSerialization.data(withJSONObject: o, options: [.sortedKeys]), as: UTF8.self)
            }
            try (lines.joined(separator: "\n") + "\n").write(toFile: report, atomically: true, encoding: .utf8)
        }
    }

    /// The case files are well formed, names are unique, the suite holds at least 150 cases over every surface,
    /// and docs/reliability.md lists the counts per surface.
    func testCaseFilesAreWellFormedAndDocumented() throws {
        let files = try CaseFile.loadAll(root: Self.casesRoot)
        var names = Set<String>()
        for file in files {
            for c in file.cases {
                XCTAssertTrue(names.insert("\(file.surface)/\(c.name)").inserted, "duplicate case \(file.surface)/\(c.name)")
                if c.status != 0 { XCTAssertFalse(c.expect.isEmpty, "\(file.surface)/\(c.name): a refusal must name the file, key or line (expect)") }
            }
        }
        let total = files.reduce(0) { $0 + $1.cases.count }
        XCTAssertGreaterThanOrEqual(total, 150)
        XCTAssertGreaterThanOrEqual(files.count, 8)
        let doc = try String(contentsOfFile: repositoryRoot + "/docs/reliability.md", encoding: .utf8)
        for file in files {
            XCTAssertTrue(doc.contains("| `\(file.surface)` | \(file.cases.count) |"),
                          "docs/reliability.md: the bad-input table must list `\(file.surface)` with \(file.cases.count) cases")
        }
        XCTAssertTrue(doc.contains("\(total) cases"), "docs/reliability.md must give the total, \(total) cases")
    }

    // MARK: one case

    func runCase(_ c: Case, surface: String, vars fileVars: [String: String]) -> CaseResult {
        var result = CaseResult(surface: surface, name: c.name, known: c.knownFailure != nil, knownText: c.knownFailure)
        for r in c.requires {
            switch r {
            case "models":
                if !FileManager.default.fileExists(atPath: repositoryRoot + "/models/all-MiniLM-L6-v2/model.safetensors") {
                    result.skipped = "needs models/all-MiniLM-L6-v2 (Launch/setup)"; return result
                }
            case "release":
                if !FileManager.default.isExecutableFile(atPath: repositoryRoot + "/.build/release/cladmop") {
                    result.skipped = "needs the release build (Launch/setup)"; return result
                }
            default: result.problems.append("unknown requirement \(r)"); return result
            }
        }
        if let e = Self.fixtureError { result.problems.append("fixtures could not be built: \(e)"); return result }
        let dir = Self.work + "/cases/" + surface + "-" + c.name
        try? FileManager.default.removeItem(atPath: dir)
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        var vars = ["dir": dir, "root": repositoryRoot, "fixtures": Self.fixtures, "hier": Self.hierarchy, "small_hier": Self.fixtures + "/icd-small.tsv",
                    "cladmop": Self.cladmop]
        for _ in 0..<3 { for (k, v) in fileVars { vars[k] = Placeholders.expand(v, vars) } }
        func x(_ s: String) -> String { Placeholders.expand(s, vars) }

        // Scratch folder.
        do {
            for spec in c.files { try ScratchFile.make(spec, in: dir, expand: x) }
        } catch {
            result.problems.append("case setup failed: \(error)"); return result
        }
        let scratchBefore = Snapshot.contents(of: [dir])
        let inputs = Set(c.files.filter { $0.input }.map { dir + "/" + $0.path })
        var outsideRoots = Snapshot.protectedRoots() + [Self.fixtures]
        // Any other absolute path the command names outside the scratch folder is watched too.
        let argv = c.command.allArguments.map(x)
        for a in argv {
            for part in a.split(separator: "=").map(String.init) where part.hasPrefix("/") && !part.hasPrefix(dir) && !part.hasPrefix(Self.work)
                && !part.hasPrefix(repositoryRoot + "/") && FileManager.default.fileExists(atPath: part) {
                outsideRoots.append(part)
            }
        }
        let outsideBefore = Snapshot.states(of: outsideRoots, excluding: [repositoryRoot + "/.build", repositoryRoot + "/.git"])
        let siblingsBefore = Snapshot.states(of: [Self.work], excluding: [dir, Self.work + "/cases"])

        // Run.
        let command = c.command.resolved(cladmop: Self.cladmop, expand: x)
        result.command = command.description
        let run = Launcher.run(command.argv, environment: c.environment.mapValues(x), cwd: x(c.cwd ?? "{root}"),
                               timeout: c.timeout, memoryLimitMB: command.isMPI ? nil : c.memoryLimitMB, reap: dir)
        result.seconds = run.seconds
        result.output = run.output
        result.statusText = run.timedOut ? "timeout" : run.signal.map { "signal \($0)" } ?? "\(run.status)"

        // Checks.
        if run.timedOut { result.problems.append("hang: no exit within \(Int(c.timeout)) s") }
        else if let s = run.signal { result.problems.append("crash: killed by signal \(s)") }
        else if run.status >= 128 { result.problems.append("crash: exit status \(run.status)") }
        else if run.status != c.status { result.problems.append("exit status \(run.status), expected \(c.status)") }
        for sign in Self.crashSigns where run.output.contains(sign) { result.problems.append("crash sign in the output: '\(sign)'") }
        for words in c.expect.map({ $0.map(x) }) where !words.contains(where: run.output.contains) {
            result.problems.append("output lacks " + words.map { "'\($0)'" }.joined(separator: " or "))
        }
        for word in c.forbid.map(x) where run.output.contains(word) { result.problems.append("output contains '\(word)'") }

        // Nothing outside the scratch folder changed; inputs inside it are unchanged; outputs only where allowed.
        let outsideAfter = Snapshot.states(of: outsideRoots, excluding: [repositoryRoot + "/.build", repositoryRoot + "/.git"])
        for d in Snapshot.differences(outsideBefore, outsideAfter).prefix(10) { result.problems.append("outside the scratch folder: \(d)") }
        let siblingsAfter = Snapshot.states(of: [Self.work], excluding: [dir, Self.work + "/cases"])
        for d in Snapshot.differences(siblingsBefore, siblingsAfter).prefix(10) { result.problems.append("outside the scratch folder: \(d)") }
        let scratchAfter = Snapshot.contents(of: [dir])
        let allowed = c.outputs.map { dir + "/" + x($0) }
        func isAllowed(_ p: String) -> Bool { allowed.contains { p == $0 || p.hasPrefix($0 + "/") } }
        for (path, before) in scratchBefore where !isAllowed(path) {
            guard let after = scratchAfter[path] else { result.problems.append("input removed: \(path)"); continue }
            if after != before && (inputs.contains(path) || inputs.contains { path.hasPrefix($0 + "/") }) {
                result.problems.append("input changed: \(path) (\(before.describeChange(to: after)))")
            }
        }
        for path in scratchAfter.keys.sorted() where scratchBefore[path] == nil {
            if path.contains(".tmp-") { result.problems.append("temporary file left behind: \(path)") }
            else if !isAllowed(path) { result.problems.append("unexpected new file: \(path)") }
        }
        for p in c.mustCreate.map({ dir + "/" + x($0) }) where scratchAfter[p] == nil && !FileManager.default.fileExists(atPath: p) {
            result.problems.append("expected output missing: \(p)")
        }
        if result.problems.isEmpty && ProcessInfo.processInfo.environment["BADINPUT_KEEP"] == nil { try? FileManager.default.removeItem(atPath: dir) }
        return result
    }

    /// Output that means a crash whatever the exit status (Swift runtime traps, glibc heap checks, OpenMPI signal reports).
    static let crashSigns = ["Fatal error", "Swift runtime failure", "double free", "free(): invalid", "malloc(): ", "Stack dump",
                             "Segmentation fault", "core dumped", "Illegal instruction", "Process received signal", "exited on signal",
                             "Error Domain=", "Trace/breakpoint trap", "*** Process received"]
}

// MARK: - Results

struct CaseResult {
    var surface: String
    var name: String
    var known: Bool
    var knownText: String?
    var skipped: String?
    var problems: [String] = []
    var seconds = 0.0
    var output = ""
    var statusText = "-"
    var command = ""
}

struct FixtureError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

enum Checkpointish {
    static func newestJSON(_ dir: String) -> String? {
        ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { $0.hasPrefix("step-") && $0.hasSuffix(".json") }.sorted().last
            .map { dir + "/" + $0 }
    }
}

// MARK: - Case files

/// One `cases.json`: a surface, shared variables ({NAME} placeholders) and its cases.
struct CaseFile {
    var surface: String
    var vars: [String: String]
    var cases: [Case]

    static func loadAll(root: String) throws -> [CaseFile] {
        let dirs = try FileManager.default.contentsOfDirectory(atPath: root).sorted()
        var files: [CaseFile] = []
        for d in dirs where FileManager.default.fileExists(atPath: root + "/" + d + "/cases.json") {
            files.append(try load(root + "/" + d + "/cases.json", surface: d))
        }
        return files
    }

    static func load(_ path: String, surface: String) throws -> CaseFile {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        guard let o = try JSONSerialization.jsonObject(with: data) as? [String: Any] else { throw CaseFormatError("\(path): expected an object") }
        let defaults = o["defaults"] as? [String: Any] ?? [:]
        guard let list = o["cases"] as? [[String: Any]] else { throw CaseFormatError("\(path): expected \"cases\": [...]") }
        let vars = (o["vars"] as? [String: String]) ?? [:]
        let argVars = (o["arg_vars"] as? [String: [String]]) ?? [:]
        return CaseFile(surface: surface, vars: vars, cases: try list.map { try Case(merging: defaults, $0, argVars: argVars, file: path) })
    }
}

struct CaseFormatError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// The command of a case: cladmop alone, mpirun with the same arguments on every rank, mpirun with one
/// argument list per rank (an MPMD launch, `-np 1 cladmop A : -np 1 cladmop B`), or another executable.
enum CaseCommand {
    case cladmop([String])
    case mpirun(np: Int, args: [String])
    case ranks([[String]])
    case exec([String])

    var allArguments: [String] {
        switch self {
        case .cladmop(let a), .exec(let a), .mpirun(_, let a): return a
        case .ranks(let r): return r.flatMap { $0 }
        }
    }

    struct Resolved: CustomStringConvertible {
        var argv: [String]
        var isMPI: Bool
        var description: String { argv.map { $0.contains(" ") || $0.isEmpty ? "'\($0)'" : $0 }.joined(separator: " ") }
    }

    func resolved(cladmop: String, expand: (String) -> String) -> Resolved {
        var mpi = ["mpirun", "--oversubscribe", "--bind-to", "none"]
        if getuid() == 0 { mpi.append("--allow-run-as-root") }
        mpi += ["-x", "OPENBLAS_NUM_THREADS", "-x", "CLADMOP_TTY"]
        switch self {
        case .cladmop(let a): return Resolved(argv: [cladmop] + a.map(expand), isMPI: false)
        case .exec(let a): return Resolved(argv: a.map(expand), isMPI: false)
        case .mpirun(let np, let a): return Resolved(argv: mpi + ["-np", "\(np)", cladmop] + a.map(expand), isMPI: true)
        case .ranks(let r):
            var argv = mpi
            for (i, a) in r.enumerated() {
                // A rank's list may start with `--wdir DIR` (that rank's working folder: the same relative path
                // naming another file on another node) and `-x NAME=VALUE` (an environment variable of that rank).
                var args = a.map(expand), local: [String] = []
                while ["--wdir", "-x"].contains(args.first ?? ""), args.count >= 2 { local += args.prefix(2); args.removeFirst(2) }
                argv += (i > 0 ? [":"] : []) + ["-np", "1"] + local + [cladmop] + args
            }
            return Resolved(argv: argv, isMPI: true)
        }
    }
}

/// One case (see Tests/BadInput/README.md for every field).
struct Case {
    var name: String
    var files: [FileSpec]
    var command: CaseCommand
    var status: Int32
    /// Words the output must contain; an inner list is satisfied by any one of its words.
    var expect: [[String]]
    var forbid: [String]
    var timeout: Double
    var outputs: [String]
    var mustCreate: [String]
    var environment: [String: String]
    var cwd: String?
    var requires: [String]
    var memoryLimitMB: Int?
    var knownFailure: String?

    init(merging defaults: [String: Any], _ raw: [String: Any], argVars: [String: [String]], file: String) throws {
        var o = defaults
        for (k, v) in raw { o[k] = v }
        guard let name = o["name"] as? String, !name.isEmpty else { throw CaseFormatError("\(file): a case without a name") }
        func fail(_ m: String) -> CaseFormatError { CaseFormatError("\(file): case \(name): \(m)") }
        let known: Set<String> = ["name", "doc", "files", "args", "mpirun", "ranks", "exec", "status", "expect", "forbid", "timeout", "outputs",
                                  "must_create", "env", "cwd", "requires", "memory_limit_mb", "known_failure"]
        for k in o.keys where !known.contains(k) { throw fail("unknown field \(k)") }
        self.name = name
        files = try (o["files"] as? [[String: Any]] ?? []).map { try FileSpec($0, fail: fail) }
        // "{@NAME}" as a whole argument splices the file's arg_vars list NAME.
        func splice(_ a: [String]) throws -> [String] {
            try a.flatMap { w -> [String] in
                guard w.hasPrefix("{@"), w.hasSuffix("}") else { return [w] }
                guard let list = argVars[String(w.dropFirst(2).dropLast())] else { throw fail("no arg_vars entry for \(w)") }
                return list
            }
        }
        if let a = o["args"] as? [String] { command = .cladmop(try splice(a)) }
        else if let m = o["mpirun"] as? [String: Any], let np = m["np"] as? Int, let a = m["args"] as? [String] { command = .mpirun(np: np, args: try splice(a)) }
        else if let r = o["ranks"] as? [[String]] { command = .ranks(try r.map(splice)) }
        else if let e = o["exec"] as? [String], !e.isEmpty { command = .exec(try splice(e)) }
        else { throw fail("needs args, mpirun {np, args}, ranks [[...], ...] or exec") }
        guard let s = o["status"] as? Int else { throw fail("needs status") }
        status = Int32(s)
        expect = try (o["expect"] as? [Any] ?? []).map { w in
            if let s = w as? String { return [s] }
            if let a = w as? [String], !a.isEmpty { return a }
            throw fail("expect holds words or lists of alternative words")
        }
        forbid = o["forbid"] as? [String] ?? []
        timeout = (o["timeout"] as? Double) ?? Double(o["timeout"] as? Int ?? 20)
        let declared = o["outputs"] as? [String] ?? [], created = o["must_create"] as? [String] ?? []
        outputs = declared + created.filter { !declared.contains($0) }
        mustCreate = created
        environment = o["env"] as? [String: String] ?? [:]
        cwd = o["cwd"] as? String
        requires = o["requires"] as? [String] ?? []
        memoryLimitMB = o["memory_limit_mb"] as? Int ?? 4096
        knownFailure = o["known_failure"] as? String
    }
}

// MARK: - Scratch files

/// One entry of a case's `files`: what to create at `path` (relative to the scratch folder) and the edits to apply.
struct FileSpec {
    var path: String
    var raw: [String: Any]
    var input: Bool

    init(_ o: [String: Any], fail: (String) -> Error) throws {
        guard let p = o["path"] as? String, !p.isEmpty, !p.hasPrefix("/"), !p.contains("..") else { throw fail("a file needs a relative path") }
        let sources = ["text", "lines", "hex", "copy", "segments", "generate", "fifo", "dir", "symlink"].filter { o[$0] != nil }
        guard sources.count == 1 else { throw fail("file \(p): give exactly one of text, lines, hex, copy, segments, generate, fifo, dir, symlink") }
        let known: Set<String> = ["path", "text", "lines", "hex", "copy", "segments", "generate", "fifo", "dir", "symlink", "edits", "input", "size",
                                  "depth", "levels", "width", "key", "rows", "header", "good"]
        for k in o.keys where !known.contains(k) { throw fail("file \(p): unknown field \(k)") }
        path = p
        raw = o
        input = o["input"] as? Bool ?? true
    }
}

enum ScratchFile {
    static func make(_ spec: FileSpec, in dir: String, expand: (String) -> String) throws {
        let o = spec.raw
        let path = dir + "/" + spec.path
        try FileManager.default.createDirectory(atPath: URL(fileURLWithPath: path).deletingLastPathComponent().path, withIntermediateDirectories: true)
        if o["fifo"] != nil {
            guard mkfifo(path, 0o644) == 0 else { throw CaseFormatError("mkfifo \(path): \(String(cString: strerror(errno)))") }
            return
        }
        if o["dir"] != nil { try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true); return }
        if let target = o["symlink"] as? String {     // in place of a file an earlier entry copied (a run's best.json)
            var st = stat()
            if lstat(path, &st) == 0 { try FileManager.default.removeItem(atPath: path) }
            try FileManager.default.createSymbolicLink(atPath: path, withDestinationPath: expand(target)); return
        }
        if let source = o["copy"] as? String {
            let src = expand(source)
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: src, isDirectory: &isDir) else { throw CaseFormatError("copy: \(src) does not exist") }
            if isDir.boolValue {
                try FileManager.default.copyItem(atPath: src, toPath: path)
                guard o["edits"] == nil else { throw CaseFormatError("copy of a folder takes no edits (add entries for its files)") }
                return
            }
        }
        var data: Data
        if let t = o["text"] as? String { data = Placeholders.bytes(expand(t)) }
        else if let l = o["lines"] as? [String] { data = Placeholders.bytes(expand(l.joined(separator: "\n") + "\n")) }
        else if let h = o["hex"] as? String { data = try Hex.decode(h) }
        else if let source = o["copy"] as? String { data = try Data(contentsOf: URL(fileURLWithPath: expand(source)).resolvingSymlinksInPath()) }
        else if let segments = o["segments"] as? [[String: Any]] {
            data = Data()
            for s in segments {
                let piece: Data
                if let t = s["text"] as? String { piece = Placeholders.bytes(expand(t)) }
                else if let h = s["hex"] as? String { piece = try Hex.decode(h) }
                else { throw CaseFormatError("a segment needs text or hex") }
                let count = s["count"] as? Int ?? 1
                data.reserveCapacity(data.count + piece.count * count)
                for _ in 0..<count { data.append(piece) }
            }
        } else if let g = o["generate"] as? String {
            data = try generate(g, o, expand: expand)
        } else { throw CaseFormatError("nothing to create at \(spec.path)") }
        for edit in o["edits"] as? [[String: Any]] ?? [] { data = try apply(edit, to: data, expand: expand) }
        guard FileManager.default.createFile(atPath: path, contents: data) else { throw CaseFormatError("cannot write \(path)") }
        if let size = o["size"] as? Int { guard truncate(path, off_t(size)) == 0 else { throw CaseFormatError("cannot extend \(path)") } }
    }

    /// Inputs generated by a rule, so that the repository does not hold them.
    static func generate(_ kind: String, _ o: [String: Any], expand: (String) -> String) throws -> Data {
        let key = o["key"] as? String ?? "model"
        switch kind {
        case "top_csv":
            // The header, a good row spanning lines 2-4 (so the first generated row is on line 5), then one row per
            // entry of "rows": the template row with the given columns replaced by raw CSV text ("_raw": the whole line,
            // "_drop": columns left out, "_extra": text appended after a comma).
            var text = (o["header"] as? String).map(expand) ?? TopCSV.columns.joined(separator: ",")
            text += "\n"
            if o["good"] as? Bool ?? true { text += TopCSV.good + "\n" }
            for row in o["rows"] as? [[String: Any]] ?? [] {
                if let raw = row["_raw"] as? String { text += expand(raw) + "\n"; continue }
                let dropped = Set(row["_drop"] as? [String] ?? [])
                var fields: [String] = []
                for c in TopCSV.columns where !dropped.contains(c) { fields.append((row[c] as? String).map(expand) ?? TopCSV.template[c]!) }
                if let extra = row["_extra"] as? String { fields.append(expand(extra)) }
                text += fields.joined(separator: ",") + "\n"
            }
            return Placeholders.bytes(text)
        case "yaml_nested_block":
            // key:\n  a:\n   a:\n ... DEPTH mappings deep (one more space per level).
            let depth = o["depth"] as? Int ?? 5000
            var s = key + ":\n"
            s.reserveCapacity(depth * depth / 2 + 16)
            for i in 1...depth { s += String(repeating: " ", count: i) + "a:\n" }
            return Data(s.utf8)
        case "yaml_alias_bomb":
            // Billion laughs under one key: KEY: [&x0 [lol x WIDTH], &x1 [*x0 x WIDTH], ...]; level l stands for WIDTH^(l+1) strings.
            let levels = o["levels"] as? Int ?? 9, width = o["width"] as? Int ?? 9
            var items = ["&x0 [" + Array(repeating: "lol", count: width).joined(separator: ", ") + "]"]
            for l in 1..<levels { items.append("&x\(l) [" + Array(repeating: "*x\(l - 1)", count: width).joined(separator: ", ") + "]") }
            return Data("\(key): [\(items.joined(separator: ", "))]\n".utf8)
        case "json_nested":
            let depth = o["depth"] as? Int ?? 100_000
            return Data((String(repeating: "[", count: depth) + String(repeating: "]", count: depth)).utf8)
        default: throw CaseFormatError("unknown generator \(kind)")
        }
    }

    static func apply(_ edit: [String: Any], to data: Data, expand: (String) -> String) throws -> Data {
        guard edit.count == 1, let (op, arg) = edit.first else { throw CaseFormatError("an edit is one {op: argument}: \(edit)") }
        var d = data
        func text() throws -> String {
            guard let s = String(data: d, encoding: .utf8) else { throw CaseFormatError("edit \(op) needs UTF-8 text") }
            return s
        }
        switch op {
        case "replace":
            guard let pair = arg as? [String], pair.count == 2 else { throw CaseFormatError("replace takes [old, new]") }
            let s = try text()
            guard s.contains(pair[0]) else { throw CaseFormatError("replace: '\(pair[0])' not found") }
            d = Placeholders.bytes(s.replacingOccurrences(of: pair[0], with: expand(pair[1])))
        case "replace_first":   // byte-wise: also in a binary file (a safetensors header)
            guard let pair = arg as? [String], pair.count == 2 else { throw CaseFormatError("replace_first takes [old, new]") }
            guard let r = d.range(of: Data(pair[0].utf8)) else { throw CaseFormatError("replace_first: '\(pair[0])' not found") }
            d.replaceSubrange(r, with: Placeholders.bytes(expand(pair[1])))
        case "append": d += Placeholders.bytes(expand(arg as? String ?? ""))
        case "append_hex": d += try Hex.decode(arg as? String ?? "")
        case "prepend": d = Placeholders.bytes(expand(arg as? String ?? "")) + d
        case "prepend_hex": d = try Hex.decode(arg as? String ?? "") + d
        case "crlf":
            var out = Data(); out.reserveCapacity(d.count + d.count / 20)
            var previous: UInt8 = 0
            for b in d { if b == 0x0A && previous != 0x0D { out.append(0x0D) }; out.append(b); previous = b }
            d = out
        case "cr_only": d = Data(d.map { $0 == 0x0A ? 0x0D : $0 })
        case "utf16le":
            d = Data([0xFF, 0xFE]) + (try text()).data(using: .utf16LittleEndian)!
        case "truncate":
            guard let n = arg as? Int else { throw CaseFormatError("truncate takes a byte count (negative: drop that many from the end)") }
            d = n >= 0 ? d.prefix(n) : d.prefix(max(d.count + n, 0))
        case "truncate_fraction":
            guard let f = arg as? Double else { throw CaseFormatError("truncate_fraction takes a number") }
            d = d.prefix(Int(Double(d.count) * f))
        case "flip":
            guard let n = arg as? Int else { throw CaseFormatError("flip takes an offset (negative: from the end)") }
            let i = n >= 0 ? n : d.count + n
            guard i >= 0 && i < d.count else { throw CaseFormatError("flip: offset \(n) outside \(d.count) bytes") }
            d[d.startIndex + i] ^= 0x40
        case "patch":
            guard let p = arg as? [String: Any], let off = p["offset"] as? Int, let h = p["hex"] as? String else {
                throw CaseFormatError("patch takes {offset, hex}")
            }
            let bytes = try Hex.decode(h)
            let at = off >= 0 ? off : d.count + off      // a negative offset counts from the end
            guard at >= 0, at + bytes.count <= d.count else { throw CaseFormatError("patch outside the file") }
            d.replaceSubrange((d.startIndex + at)..<(d.startIndex + at + bytes.count), with: bytes)
        case "json_set", "json_delete":
            var root = try JSONSerialization.jsonObject(with: d, options: [.fragmentsAllowed])
            if op == "json_set" {
                guard let sets = arg as? [String: Any] else { throw CaseFormatError("json_set takes {\"a.b\": value}") }
                for (path, value) in sets.sorted(by: { $0.key < $1.key }) {
                    root = try JSONPath.set(root, path.split(separator: ".").map(String.init), expandJSON(value, expand))
                }
            } else {
                guard let paths = arg as? [String] else { throw CaseFormatError("json_delete takes [\"a.b\"]") }
                for path in paths { root = try JSONPath.set(root, path.split(separator: ".").map(String.init), nil) }
            }
            d = try JSONSerialization.data(withJSONObject: root, options: [.prettyPrinted, .sortedKeys, .fragmentsAllowed])
        case "store_meta_set", "store_meta_text", "store_meta_edit":
            d = try StoreEdit.rewrite(d) { meta in
                if op == "store_meta_edit" {   // another edit, applied to the metadata's JSON text
                    guard let inner = arg as? [String: Any] else { throw CaseFormatError("store_meta_edit takes one {op: argument}") }
                    return try apply(inner, to: meta, expand: expand)
                }
                if op == "store_meta_text" {
                    guard let s = arg as? String else { throw CaseFormatError("store_meta_text takes the new metadata text") }
                    return Data(expand(s).utf8)
                }
                guard let sets = arg as? [String: Any] else { throw CaseFormatError("store_meta_set takes {\"a.b\": value}") }
                var root = try JSONSerialization.jsonObject(with: meta)
                for (path, value) in sets.sorted(by: { $0.key < $1.key }) {
                    root = try JSONPath.set(root, path.split(separator: ".").map(String.init), expandJSON(value, expand))
                }
                return try JSONSerialization.data(withJSONObject: root, options: [.sortedKeys])
            }
        default: throw CaseFormatError("unknown edit \(op)")
        }
        return d
    }

    static func expandJSON(_ v: Any, _ expand: (String) -> String) -> Any {
        if let s = v as? String { return expand(s) }
        if let a = v as? [Any] { return a.map { expandJSON($0, expand) } }
        if let m = v as? [String: Any] { return m.mapValues { expandJSON($0, expand) } }
        return v
    }
}

/// The TOP CSV layout of Tests/TrialDataTests/MalformedRowTests.swift: header, a good row over lines 2-4, a template row.
enum TopCSV {
    static let columns = ["nctid", "status", "why_stop", "label", "phase", "diseases", "icdcodes", "drugs", "smiless", "criteria"]
    static let good = "NCT00000001,completed,,1,phase 1,['asthma'],\"[\"\"['J45.909']\"\"]\",['drug a'],['CC(=O)O'],\"Inclusion Criteria:\n- adults\n- consent\""
    static let template = ["nctid": "NCT00000002", "status": "terminated", "why_stop": "", "label": "0", "phase": "phase 2",
                           "diseases": "['asthma']", "icdcodes": "\"[\"\"['J45.909']\"\"]\"", "drugs": "['drug b']", "smiless": "['c1ccccc1O']",
                           "criteria": "\"- children\""]
}

/// Sets or deletes (value nil) the element at a dotted path ("model.heads", "icdTableSizes.0") of decoded JSON.
enum JSONPath {
    static func set(_ node: Any, _ path: [String], _ value: Any?) throws -> Any {
        guard let key = path.first else { return value ?? NSNull() }
        if var m = node as? [String: Any] {
            if path.count == 1 { m[key] = value; return m }
            guard let child = m[key] else { throw CaseFormatError("json path: no key \(key)") }
            m[key] = try set(child, Array(path.dropFirst()), value)
            return m
        }
        if var a = node as? [Any], let i = Int(key), a.indices.contains(i) {
            if path.count == 1 { if let value { a[i] = value } else { a.remove(at: i) }; return a }
            a[i] = try set(a[i], Array(path.dropFirst()), value)
            return a
        }
        throw CaseFormatError("json path: cannot descend into \(key)")
    }
}

/// Rewrites a feature store's metadata JSON and fixes its header sizes and checksum, so that the store
/// passes the integrity checks and only the edited meaning is wrong (layout in Sources/TrialData/FeatureStore.swift).
enum StoreEdit {
    static let headerBytes = 56

    static func rewrite(_ store: Data, _ edit: (Data) throws -> Data) throws -> Data {
        let b = [UInt8](store)
        guard b.count >= headerBytes else { throw CaseFormatError("store_meta: not a feature store") }
        func u64(_ o: Int) -> Int { Int(b[o..<(o + 8)].enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }) }
        let metaBytes = u64(32), payloadOffset = u64(40)
        let meta = try edit(Data(b[headerBytes..<(headerBytes + metaBytes)]))
        let payload = Data(b[payloadOffset...])
        let newOffset = (headerBytes + meta.count + 63) / 64 * 64
        let sum = payload.withUnsafeBytes { p in meta.withUnsafeBytes { m in checksum64(p, seed: checksum64(m)) } }
        var out = Data(b[0..<32])
        func append(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        append(UInt64(meta.count)); append(UInt64(newOffset)); append(sum)
        out += meta
        out += Data(count: newOffset - headerBytes - meta.count)
        out += payload
        return out
    }

    /// The store's checksum (Support's `checksum64`, the function the store reader verifies with).
    static func checksum64(_ data: UnsafeRawBufferPointer, seed: UInt64 = 0xCBF2_9CE4_8422_2325) -> UInt64 {
        Support.checksum64(data, seed: seed)
    }
}

enum Hex {
    static func decode(_ s: String) throws -> Data {
        let digits = s.filter { !$0.isWhitespace }
        guard digits.count % 2 == 0 else { throw CaseFormatError("hex: odd number of digits") }
        var out = Data()
        var i = digits.startIndex
        while i < digits.endIndex {
            let j = digits.index(i, offsetBy: 2)
            guard let b = UInt8(digits[i..<j], radix: 16) else { throw CaseFormatError("hex: bad digits \(digits[i..<j])") }
            out.append(b); i = j
        }
        return out
    }
}

/// {dir}, {root}, {fixtures}, {hier}, {cladmop} and a case file's own vars; {xHH} is the raw byte 0xHH in file text.
enum Placeholders {
    static func expand(_ s: String, _ vars: [String: String]) -> String {
        guard s.contains("{") else { return s }
        var out = s
        for (k, v) in vars { out = out.replacingOccurrences(of: "{\(k)}", with: v) }
        return out
    }

    static func bytes(_ s: String) -> Data {
        guard s.contains("{x") else { return Data(s.utf8) }
        var out = Data()
        let u = Array(s.utf8)
        var i = 0
        while i < u.count {
            if u[i] == UInt8(ascii: "{"), i + 4 < u.count, u[i + 1] == UInt8(ascii: "x"), u[i + 4] == UInt8(ascii: "}"),
               let b = UInt8(String(decoding: u[(i + 2)...(i + 3)], as: UTF8.self), radix: 16) {
                out.append(b); i += 5; continue
            }
            out.append(u[i]); i += 1
        }
        return out
    }
}

// MARK: - Snapshots

/// What a file looked like: type, size, inode, modification and change times, and for small regular files a
/// checksum of the content.
struct FileState: Equatable {
    var kind: UInt32
    var size: Int64
    var inode: UInt64
    var mtime: Int
    var ctime: Int
    var content: UInt64?

    func describeChange(to o: FileState) -> String {
        var what: [String] = []
        if kind != o.kind { what.append("type") }
        if size != o.size { what.append("size \(size) -> \(o.size)") }
        if inode != o.inode { what.append("replaced (inode)") }
        if content != o.content { what.append("content") }
        if mtime != o.mtime { what.append("modified") }
        if ctime != o.ctime && what.isEmpty { what.append("status changed") }
        return what.joined(separator: ", ")
    }
}

enum Snapshot {
    /// The repository (build and git folders aside) and the model folder models/ links to.
    static func protectedRoots() -> [String] {
        var roots = [repositoryRoot]
        let models = repositoryRoot + "/models"
        if let dest = try? FileManager.default.destinationOfSymbolicLink(atPath: models) {
            roots.append(dest.hasPrefix("/") ? dest : repositoryRoot + "/" + dest)
        }
        return roots
    }

    static let skipped = [repositoryRoot + "/.build", repositoryRoot + "/.git", repositoryRoot + "/.swiftpm"]

    /// Stat of every path under `roots` (no content hashing: cheap enough for every case).
    static func states(of roots: [String], excluding: [String]) -> [String: FileState] {
        var out: [String: FileState] = [:]
        for r in roots { walk(r, excluding: excluding + skipped, hash: false, into: &out) }
        return out
    }

    /// Stat and content checksum (files up to 64 MiB) of every path under `roots`.
    static func contents(of roots: [String]) -> [String: FileState] {
        var out: [String: FileState] = [:]
        for r in roots { walk(r, excluding: skipped, hash: true, into: &out) }
        return out
    }

    static func walk(_ path: String, excluding: [String], hash: Bool, into out: inout [String: FileState]) {
        if excluding.contains(path) { return }
        var st = stat()
        guard lstat(path, &st) == 0 else { return }
        let kind = UInt32(st.st_mode) & UInt32(S_IFMT)
        var state = FileState(kind: kind, size: Int64(st.st_size), inode: UInt64(st.st_ino),
                              mtime: st.st_mtim.tv_sec * 1_000_000_000 + st.st_mtim.tv_nsec,
                              ctime: st.st_ctim.tv_sec * 1_000_000_000 + st.st_ctim.tv_nsec, content: nil)
        if kind == UInt32(S_IFDIR) {
            state.size = 0; state.mtime = 0; state.ctime = 0    // a folder's own times change when a child is added: children are compared
            out[path] = state
            for name in ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted() {
                walk(path + "/" + name, excluding: excluding, hash: hash, into: &out)
            }
            return
        }
        if hash && kind == UInt32(S_IFREG) && st.st_size <= 64 << 20 {
            state.content = (try? MappedFileBytes.checksum(path)) ?? nil
        }
        out[path] = state
    }

    static func differences(_ a: [String: FileState], _ b: [String: FileState]) -> [String] {
        var out: [String] = []
        for (p, s) in a.sorted(by: { $0.key < $1.key }) {
            guard let t = b[p] else { out.append("\(p) removed"); continue }
            if s != t { out.append("\(p) changed (\(s.describeChange(to: t)))") }
        }
        for p in b.keys.sorted() where a[p] == nil { out.append("\(p) created") }
        return out
    }
}

enum MappedFileBytes {
    static func checksum(_ path: String) throws -> UInt64? {
        let fd = open(path, O_RDONLY | O_NONBLOCK)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: 1 << 20, alignment: 8)
        defer { buffer.deallocate() }
        while true {
            let n = read(fd, buffer, 1 << 20)
            if n <= 0 { break }
            h = StoreEdit.checksum64(UnsafeRawBufferPointer(start: buffer, count: n), seed: h)
        }
        return h
    }
}

// MARK: - Processes

/// Starts a command in a process group of its own (stdin /dev/null, stdout and stderr captured together), with a
/// wall-clock limit after which the whole group is ended (SIGTERM, then SIGKILL), and optionally an address-space
/// limit so that a runaway allocation fails instead of exhausting the machine.
enum Launcher {
    struct Result { var status: Int32; var signal: Int32?; var output: String; var seconds: Double; var timedOut: Bool }

    static func run(_ argv: [String], environment: [String: String], cwd: String, timeout: Double, memoryLimitMB: Int?, reap: String) -> Result {
        var env = ProcessInfo.processInfo.environment
        for k in env.keys where k.hasPrefix("CLADMOP_") || k.hasPrefix("XCTest") { env[k] = nil }
        env["OPENBLAS_NUM_THREADS"] = "1"
        env["CLADMOP_TTY"] = "0"
        env["OMPI_MCA_rmaps_base_oversubscribe"] = "1"
        // The address-space limit below counts reserved memory: glibc reserves 64 MB per thread's malloc arena, which
        // on a many-core machine alone could reach it.
        env["MALLOC_ARENA_MAX"] = "2"
        for (k, v) in environment { env[k] = v }
        let limit = memoryLimitMB.map { String($0 * 1024) } ?? "unlimited"
        // sh sets the limit and the folder, then becomes the command (exec): its status and signal are the command's.
        let script = "ulimit -v \"$1\" 2>/dev/null; cd \"$2\" || exit 126; shift 2; exec \"$@\""
        let full = ["/bin/sh", "-c", script, "badinput", limit, cwd] + argv

        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { return Result(status: -1, signal: nil, output: "pipe failed", seconds: 0, timedOut: false) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
        posix_spawn_file_actions_adddup2(&actions, fds[1], 2)
        posix_spawn_file_actions_addclose(&actions, fds[0])
        posix_spawn_file_actions_addclose(&actions, fds[1])
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))
        posix_spawnattr_setpgroup(&attr, 0)
        var defaults = sigset_t(); sigfillset(&defaults); posix_spawnattr_setsigdefault(&attr, &defaults)
        var mask = sigset_t(); sigemptyset(&mask); posix_spawnattr_setsigmask(&attr, &mask)
        let cArgs = full.map { strdup($0) } + [nil]
        let cEnv = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { cArgs.forEach { free($0) }; cEnv.forEach { free($0) } }
        var pid: pid_t = 0
        let start = Date()
        let rc = posix_spawn(&pid, "/bin/sh", &actions, &attr, cArgs, cEnv)
        posix_spawn_file_actions_destroy(&actions)
        posix_spawnattr_destroy(&attr)
        close(fds[1])
        guard rc == 0 else { close(fds[0]); return Result(status: -1, signal: nil, output: "spawn failed: \(rc)", seconds: 0, timedOut: false) }

        var output = Data()
        let cap = 2 << 20
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: 65536, alignment: 8)
        defer { buffer.deallocate() }
        var status: Int32 = 0, exited = false, eof = false, timedOut = false
        var killedAt: Date?
        var exitedAt: Date?
        while true {
            var p = pollfd(fd: fds[0], events: Int16(POLLIN), revents: 0)
            if !eof && poll(&p, 1, 20) > 0 {
                let n = read(fds[0], buffer, 65536)
                if n > 0 { if output.count < cap { output.append(buffer.assumingMemoryBound(to: UInt8.self), count: n) } } else { eof = true }
            } else if eof { usleep(10_000) }
            if !exited && waitpid(pid, &status, WNOHANG) == pid { exited = true; exitedAt = Date() }
            if exited && (eof || Date().timeIntervalSince(exitedAt!) > 2) { break }
            let elapsed = Date().timeIntervalSince(start)
            if !exited && killedAt == nil && elapsed > timeout {
                timedOut = true; killedAt = Date()
                kill(-pid, SIGTERM)
            }
            if let k = killedAt, Date().timeIntervalSince(k) > 3 { kill(-pid, SIGKILL); killReaped(reap) }
            if let k = killedAt, Date().timeIntervalSince(k) > 10 { break }
        }
        close(fds[0])
        let seconds = Date().timeIntervalSince(start)
        // Ranks of a killed job that left the group, or stragglers still holding the pipe: every process started
        // for this case names its scratch folder.
        if timedOut || !eof { kill(-pid, SIGKILL); killReaped(reap) }
        if !exited { waitpid(pid, &status, 0) }
        let signal = status & 0x7f
        return Result(status: signal == 0 ? (status >> 8) & 0xff : -1, signal: signal == 0 ? nil : signal,
                      output: String(decoding: output, as: UTF8.self), seconds: seconds, timedOut: timedOut)
    }

    /// SIGKILL to every process of this user whose command line names `marker` (the case's scratch folder).
    static func killReaped(_ marker: String) {
        guard !marker.isEmpty, let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return }
        let me = getpid()
        for e in entries {
            guard let pid = Int32(e), pid != me, let cmd = FileManager.default.contents(atPath: "/proc/\(e)/cmdline") else { continue }
            if String(decoding: cmd, as: UTF8.self).contains(marker) { kill(pid, SIGKILL) }
        }
    }
}
