import Support
import ArgumentParser
import Communication
import Config
import TrialData
import Foundation
import NN
import TextEncoder

struct Featurize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Featurize TOP CSV files into a feature store (runs under mpirun: ranks encode disjoint shards).")

    @Option(name: .customLong("data"), help: "TOP-format CSV file (repeatable; default: config data.files).")
    var data: [String] = []

    @Option(help: "Feature store to write (default: config data.feature_store).")
    var output: String?

    @Flag(help: "Do nothing when the store exists and was built from the same files with the same encoder.")
    var skipIfCurrent = false

    @OptionGroup var options: ConfigOptions

    func run() throws {
        runJob { comm in
            let spec = try options.load()
            let paths = data.isEmpty ? spec.data.files : data
            let output = output ?? spec.data.featureStore
            if skipIfCurrent, FileManager.default.fileExists(atPath: output) {
                let expected = try currentStoreIdentity(paths: paths, encoderIdentity: try BertEncoder.identity(modelDir: spec.encoder.modelDir),
                                                        maxTokens: spec.encoder.maxTokens)
                if (try? FeatureStore(path: output, expected: expected)) != nil {
                    if comm.isRoot { log("featurize: \(output) is up to date") }
                    return
                }
                if comm.isRoot { log("featurize: \(output) is stale or damaged; rebuilding") }
            }
            let hierarchy = try ICD10Hierarchy(path: spec.data.icdHierarchy)
            let makeEncoder = { try BertEncoder(modelDir: spec.encoder.modelDir, maxLength: spec.encoder.maxTokens) }
            let report = try TrialData.featurize(comm: comm, paths: paths, output: output, makeEncoder: makeEncoder, hierarchy: hierarchy,
                                            skipBadRows: spec.data.skipBadRows, batchTokens: spec.encoder.batchTokens,
                                            log: { if comm.isRoot { log($0) } })
            guard comm.isRoot else { return }
            for (file, n) in report.rowsPerFile.sorted(by: { $0.key < $1.key }) { log("  \(file): \(n) rows") }
            if !report.skipped.isEmpty {
                log("  skipped \(report.skipped.count) malformed row(s) (data.skip_bad_rows):")
                for s in report.skipped { log("    \(s)") }
            }
            log(String(format: "featurize: wrote %@ (%d rows, %d distinct sentences, %d tokens) in %.1f s",
                       output, report.rows, report.uniqueSentences, report.tokens, report.seconds))
        }
    }
}

struct Encode: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Embed text lines with the frozen encoder: one JSON object per line with coarse, medium, fine vectors.")

    @Option(help: "Text file, one text per line.")
    var input: String

    @Option(help: "JSON-lines output: {\"text\", \"coarse\", \"medium\", \"fine\"} per input line.")
    var output: String

    @Option(help: "Encoder folder (config.json, vocab.txt, model.safetensors).")
    var modelDir: String = "models/all-MiniLM-L6-v2"

    @Option(help: "Maximum WordPiece tokens per text, [CLS] and [SEP] included.")
    var maxTokens: Int = 256

    func run() throws {
        runJob { comm in
            guard let text = try? String(contentsOfFile: input, encoding: .utf8) else {
                throw InputError(file: input, "cannot read (missing, unreadable or not UTF-8)")
            }
            var lines = text.components(separatedBy: "\n")
            if lines.last == "" { lines.removeLast() }
            lines = lines.map { $0.hasSuffix("\r") ? String($0.dropLast()) : $0 }
            let encoder = try BertEncoder(modelDir: modelDir, maxLength: maxTokens)
            let d = encoder.hidden
            let out = FloatPtr.allocate(capacity: max(lines.count * 3 * d, 1))
            defer { out.deallocate() }
            encoder.encode(texts: lines, into: out)
            guard comm.isRoot else { return }
            try writeFileAtomically(output) { h in
                for (i, line) in lines.enumerated() {
                    func vec(_ level: Int) -> [Double] { (0..<d).map { Double(out[(i * 3 + level) * d + $0]) } }
                    let obj: [String: Any] = ["text": line, "coarse": vec(0), "medium": vec(1), "fine": vec(2)]
                    try h.write(contentsOf: JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys]))
                    try h.write(contentsOf: Data("\n".utf8))
                }
            }
        }
    }
}

struct ShowConfig: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "config",
        abstract: "Print the resolved configuration (YAML), or with --markdown the reference of every key.")

    @Flag(help: "Print docs/configuration.md's table of every key.")
    var markdown = false

    @Option(help: ArgumentHelp("Print only the resolved value of this key (for scripts).", valueName: "section.key"))
    var get: String?

    @OptionGroup var options: ConfigOptions

    func run() throws {
        runJob { _ in
            if markdown { print(configurationMarkdown(), terminator: ""); return }
            let (config, _) = try options.resolve()
            if let key = get {
                guard let value = config.values[key] else {
                    throw InputError("--get \(key): unknown key (see docs/configuration.md)")
                }
                print(value)
            } else {
                print(config.yaml, terminator: "")
            }
        }
    }
}

/// The key reference of docs/configuration.md, generated from the schema.
func configurationMarkdown() -> String {
    var out = "| key | type / allowed | default | meaning |\n|---|---|---|---|\n"
    for k in ConfigSchema.keys {
        out += "| `\(k.path)` | \(k.kind.expectedText) | `\(k.defaultValue)` | \(k.doc) |\n"
    }
    return out
}

struct Synth: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a synthetic SCT feature store with planted pair structure (for tests and batch-size studies).")

    @Option(help: "Number of trials.") var trials: Int = 1000
    @Option(help: "Width of the synthetic sentence vectors.") var dim: Int = 64
    @Option(help: "Noise added to each sentence vector (larger: harder pairing).") var noise: Double = 0.5
    @Option(help: "Random seed.") var seed: Int = 1
    @Option(help: "Feature store to write.") var output: String
    @OptionGroup var options: ConfigOptions

    func validate() throws {
        guard trials >= 2 else { throw ValidationError("--trials must be >= 2") }
        guard (1...4096).contains(dim) else { throw ValidationError("--dim must be in 1...4096") }
        guard noise >= 0 else { throw ValidationError("--noise must be >= 0") }
    }

    func run() throws {
        runJob { comm in
            let spec = try options.load()
            if comm.isRoot {
                let hierarchy = try ICD10Hierarchy(path: spec.data.icdHierarchy)
                try writeSyntheticStore(path: output, trials: trials, dim: dim, hierarchy: hierarchy, seed: UInt64(seed), noise: Float(noise))
                log("synth: wrote \(output) (\(trials) trials, dim \(dim), noise \(noise))")
            }
            comm.barrier()
        }
    }
}

struct Split: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Split a TOP CSV by NCT-id order: the earliest FRACTION of the rows to --train, the rest to --valid.")

    @Option(help: "TOP-format CSV.") var data: String
    @Option(help: "Share of rows (earliest NCT ids) for the training file.") var fraction: Double = 0.8
    @Option(help: "Output training CSV.") var train: String
    @Option(help: "Output validation CSV.") var valid: String

    func validate() throws {
        guard fraction > 0 && fraction < 1 else { throw ValidationError("--fraction must be in (0, 1)") }
    }

    func run() throws {
        runJob { _ in
            let records = try readCSV(path: data)
            guard let header = records.first, let id = header.fields.firstIndex(of: "nctid") else {
                throw InputError(file: data, line: 1, "header lacks the nctid column")
            }
            let rows = records.dropFirst().sorted { ($0.fields[safe: id] ?? "") < ($1.fields[safe: id] ?? "") }
            let cut = Int((Double(rows.count) * fraction).rounded())
            func csv(_ r: [CSVRecord]) -> Data {
                let lines = ([header] + r).map { $0.fields.map(csvQuote).joined(separator: ",") }
                return Data((lines.joined(separator: "\n") + "\n").utf8)
            }
            try writeFileAtomically(train) { try $0.write(contentsOf: csv(Array(rows.prefix(cut)))) }
            try writeFileAtomically(valid) { try $0.write(contentsOf: csv(Array(rows.dropFirst(cut)))) }
            log("split: \(cut) rows -> \(train), \(rows.count - cut) rows -> \(valid)")
        }
    }
}

/// RFC 4180 quoting when a field needs it.
func csvQuote(_ f: String) -> String {
    f.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) ? "\"" + f.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : f
}

extension Array { subscript(safe i: Int) -> Element? { indices.contains(i) ? self[i] : nil } }
