import Foundation
import NN
import Support
import TestSupport
import TrialData
import XCTest

/// Every input path is checked before it is opened: a FIFO (which would block the reader forever), a
/// directory or a device is refused with "PATH: is a FIFO; expected the ...", and the command exits 2 at once.
/// Feature stores: one store never holds two different files of one name, and never overwrites an input.
/// Hostfiles: CR LF, CR and a byte-order mark are named (mpirun cannot parse them).
final class InputFileKindTests: XCTestCase {
    let hierarchyPath = repoRoot + "/data/icd10/icd10cm_2025_hierarchy.tsv"
    let header = "nctid,status,why_stop,label,phase,diseases,icdcodes,drugs,smiless,criteria\n"
    let row = "NCT00000001,completed,,1,phase 1,['asthma'],\"[\"\"['J45.909']\"\"]\",['drug a'],['CC(=O)O'],\"- adults\"\n"
    var dir = ""
    var fifo: String { dir + "/pipe" }
    private var watchdog: FIFOWatchdog?

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "cladmop-kinds-\(getpid())-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        XCTAssertEqual(mkfifo(fifo, 0o600), 0, "mkfifo \(fifo)")
        watchdog = FIFOWatchdog(fifo)
    }
    override func tearDown() {
        watchdog?.stop()
        try? FileManager.default.removeItem(atPath: dir)
    }

    /// `body` throws an InputError whose text is exactly `expected`, without blocking on the FIFO.
    func expectRefusal(_ expected: String, file: StaticString = #filePath, line: UInt = #line, _ body: () throws -> Void) {
        let start = Date()
        XCTAssertThrowsError(try body(), expected, file: file, line: line) { error in
            XCTAssertTrue(error is InputError, "\(error)", file: file, line: line)
            XCTAssertEqual("\(error)", expected, file: file, line: line)
        }
        XCTAssertLessThan(Date().timeIntervalSince(start), 5, "refused at once, not after blocking: \(expected)", file: file, line: line)
    }

    func testEveryReaderRefusesAFIFOBeforeOpeningIt() throws {
        expectRefusal("\(fifo): is a FIFO; expected the TOP-format CSV") { _ = try readCSV(path: fifo) }
        expectRefusal("\(fifo): is a FIFO; expected the TOP-format CSV") { _ = try readTrials(paths: [fifo]) }
        expectRefusal("\(fifo): is a FIFO; expected the ICD-10 hierarchy (id<TAB>parent<TAB>depth<TAB>description)") { _ = try ICD10Hierarchy(path: fifo) }
        expectRefusal("\(fifo): is a FIFO; expected the exclusion list (one NCT id per line)") { _ = try readExclusionList(fifo) }
        expectRefusal("\(fifo): is a FIFO; expected the feature store") { _ = try FeatureStore(path: fifo) }
        expectRefusal("\(fifo): is a FIFO; expected the TOP-format CSV") {
            _ = try currentStoreIdentity(paths: [fifo], encoderIdentity: "e", encoderWeights: "w", maxTokens: 256)
        }
        expectRefusal("\(fifo): is a FIFO; expected the hostfile") { _ = try readTextLines(fifo, what: "hostfile") }
        expectRefusal("\(fifo): is a FIFO; expected the checkpoint metadata") { _ = try readRegularFile(fifo, what: "checkpoint metadata") }
    }

    /// A feature store given where the trials are expected (`evaluate --data STORE`, as SPEC's "labelled CSV or feature
    /// set" may suggest) had been refused as "stray quote inside an unquoted field", and UTF-16 text as invalid UTF-8.
    func testAStoreOrUTF16TextGivenAsTheTrialsIsNamedAsSuch() throws {
        let store = dir + "/s.store"
        try Data("CLADMOPF".utf8 + [2, 0, 0, 0] + Data(repeating: 0x22, count: 64)).write(to: URL(fileURLWithPath: store))
        expectRefusal("\(store): is a feature store (cladmop featurize's output), not CSV text: give the TOP-format CSV it was "
                      + "featurized from (a store is read through data.feature_store)") { _ = try readTrials(paths: [store]) }
        // Excel's "Unicode text": UTF-16 with its byte-order mark.
        let utf16 = dir + "/u16.csv"
        try XCTUnwrap((header + row).data(using: .utf16LittleEndian).map { Data([0xFF, 0xFE]) + $0 }).write(to: URL(fileURLWithPath: utf16))
        expectRefusal("\(utf16):1:1: UTF-16 or UTF-32 text (its byte-order mark); expected UTF-8 CSV text: save the file as UTF-8") { _ = try readTrials(paths: [utf16]) }
    }

    func testDirectoriesAndDevicesAreRefused() throws {
        expectRefusal("\(dir): is a directory; expected the TOP-format CSV") { _ = try readCSV(path: dir) }
        expectRefusal("/dev/null: is a character device; expected the TOP-format CSV") { _ = try readCSV(path: "/dev/null") }
        expectRefusal("/dev/zero: is a character device; expected the ICD-10 hierarchy (id<TAB>parent<TAB>depth<TAB>description)") {
            _ = try ICD10Hierarchy(path: "/dev/zero")
        }
        expectRefusal("\(dir): is a directory; expected the exclusion list (one NCT id per line)") { _ = try readExclusionList(dir) }
        expectRefusal("\(dir)/none.csv: cannot read the TOP-format CSV: No such file or directory") { _ = try readCSV(path: dir + "/none.csv") }
        // A symbolic link to a regular file is read; one to a FIFO is refused.
        let csv = dir + "/ok.csv"
        try (header + row).write(toFile: csv, atomically: true, encoding: .utf8)
        try FileManager.default.createSymbolicLink(atPath: dir + "/link.csv", withDestinationPath: csv)
        XCTAssertEqual(try readCSV(path: dir + "/link.csv").count, 2)
        try FileManager.default.createSymbolicLink(atPath: dir + "/fifo-link.csv", withDestinationPath: fifo)
        expectRefusal("\(dir)/fifo-link.csv: is a FIFO; expected the TOP-format CSV") { _ = try readCSV(path: dir + "/fifo-link.csv") }
    }

    /// The commands exit 2 at once on a FIFO (runProduct kills a command still running after the timeout).
    func testCommandsExitWith2OnAFIFO() throws {
        let cases: [([String], String)] = [
            (["featurize", "--data", fifo, "--output", dir + "/out.store", "--set", "data.icd_hierarchy=\(hierarchyPath)"],
             "\(fifo): is a FIFO; expected the TOP-format CSV"),
            (["featurize", "--data", dir + "/ok.csv", "--output", dir + "/out.store", "--set", "data.icd_hierarchy=\(fifo)"],
             "\(fifo): is a FIFO; expected the ICD-10 hierarchy"),
            (["check-hostfile", fifo], "\(fifo): is a FIFO; expected the hostfile"),
            (["split", "--data", fifo, "--train", dir + "/train.csv", "--valid", dir + "/valid.csv"], "\(fifo): is a FIFO; expected the TOP-format CSV"),
        ]
        try (header + row).write(toFile: dir + "/ok.csv", atomically: true, encoding: .utf8)
        for (args, expected) in cases {
            let start = Date()
            let r = try runProduct("cladmop", args, timeout: 60)
            XCTAssertEqual(r.status, 2, "\(args): \(r.output)")
            XCTAssertTrue(r.output.contains(expected), "\(args): expected '\(expected)' in \(r.output)")
            XCTAssertLessThan(Date().timeIntervalSince(start), 30, "\(args)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/out.store"))
    }

    func testEncoderFolderWithAFIFOIsRefusedByTheCommand() throws {
        let model = dir + "/model"
        try FileManager.default.createDirectory(atPath: model, withIntermediateDirectories: true)
        XCTAssertEqual(mkfifo(model + "/config.json", 0o600), 0)
        let guardConfig = FIFOWatchdog(model + "/config.json")
        defer { guardConfig.stop() }
        _ = FileManager.default.createFile(atPath: model + "/vocab.txt", contents: Data("[PAD]\n[UNK]\n[CLS]\n[SEP]\n".utf8))
        _ = FileManager.default.createFile(atPath: model + "/model.safetensors", contents: Data())
        try "some text\n".write(toFile: dir + "/in.txt", atomically: true, encoding: .utf8)
        let r = try runProduct("cladmop", ["encode", "--input", dir + "/in.txt", "--output", dir + "/out.jsonl", "--model-dir", model], timeout: 60)
        XCTAssertEqual(r.status, 2, r.output)
        XCTAssertTrue(r.output.contains("\(model)/config.json: is a FIFO; expected the encoder config.json"), r.output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/out.jsonl"))
    }

    /// The known crashes of a bad model folder (num_attention_heads 0: SIGFPE; layer_norm_eps -1: a store of
    /// NaNs) and a bad --max-tokens are exit 2 with config.json and the key named, and nothing is written.
    func testBadEncoderSettingsExitWith2() throws {
        let model = dir + "/model"
        try FileManager.default.createDirectory(atPath: model, withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: model + "/vocab.txt", contents: Data("[PAD]\n[UNK]\n[CLS]\n[SEP]\n".utf8))
        _ = FileManager.default.createFile(atPath: model + "/model.safetensors", contents: Data(count: 8))
        let config = """
            {"hidden_act": "gelu", "hidden_size": 384, "intermediate_size": 1536, "layer_norm_eps": 1e-12, "max_position_embeddings": 512,
             "num_attention_heads": 12, "num_hidden_layers": 6, "type_vocab_size": 2, "vocab_size": 30522}
            """
        let csv = dir + "/ok.csv"
        try (header + row).write(toFile: csv, atomically: true, encoding: .utf8)
        try "some text\n".write(toFile: dir + "/in.txt", atomically: true, encoding: .utf8)
        let featurize = ["featurize", "--data", csv, "--output", dir + "/out.store", "--set", "data.icd_hierarchy=\(hierarchyPath)",
                         "--set", "encoder.model_dir=\(model)"]
        let encode = ["encode", "--input", dir + "/in.txt", "--output", dir + "/out.jsonl", "--model-dir", model]
        let cases: [(String, [String], String)] = [
            ("\"num_attention_heads\": 12", featurize, "\(model)/config.json: num_attention_heads = 0 is invalid"),
            ("\"layer_norm_eps\": 1e-12", featurize, "\(model)/config.json: layer_norm_eps = -1.0 is invalid"),
            ("\"num_attention_heads\": 12", encode, "\(model)/config.json: num_attention_heads = 0 is invalid"),
            ("", encode + ["--max-tokens", "0"], "--max-tokens must be in 8...512, as encoder.max_tokens (got 0)"),
            ("", encode + ["--max-tokens", "600"], "--max-tokens must be in 8...512, as encoder.max_tokens (got 600)"),
            ("\"max_position_embeddings\": 512", encode + ["--max-tokens", "256"],
             "\(model)/config.json: max_position_embeddings = 128 is below the maximum tokens per text (--max-tokens, encoder.max_tokens) = 256"),
            ("\"max_position_embeddings\": 512", featurize + ["--set", "encoder.max_tokens=256"],
             "\(model)/config.json: max_position_embeddings = 128 is below the maximum tokens per text (--max-tokens, encoder.max_tokens) = 256"),
        ]
        let edits = ["\"num_attention_heads\": 12": "\"num_attention_heads\": 0", "\"layer_norm_eps\": 1e-12": "\"layer_norm_eps\": -1",
                     "\"max_position_embeddings\": 512": "\"max_position_embeddings\": 128"]
        for (key, args, expected) in cases {
            let bad = key.isEmpty ? config : config.replacingOccurrences(of: key, with: edits[key]!)
            try bad.write(toFile: model + "/config.json", atomically: true, encoding: .utf8)
            let r = try runProduct("cladmop", args, timeout: 120)
            XCTAssertEqual(r.status, 2, "\(args): \(r.output)")
            XCTAssertTrue(r.output.contains(expected), "expected '\(expected)' in \(r.output)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/out.store"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/out.jsonl"))
    }

    // MARK: feature-store identity

    func testOneStoreNeverHoldsTwoFilesOfOneName() throws {
        for sub in ["a", "b"] { try FileManager.default.createDirectory(atPath: dir + "/" + sub, withIntermediateDirectories: true) }
        let a = dir + "/a/x.csv", b = dir + "/b/x.csv"
        try (header + row).write(toFile: a, atomically: true, encoding: .utf8)
        try (header + row.replacingOccurrences(of: "NCT00000001", with: "NCT00000002")).write(toFile: b, atomically: true, encoding: .utf8)
        let message = "\(b): has the same file name as \(a); one feature store cannot hold two files of one name (its rows are matched to source files by name): rename one of them"
        expectRefusal(message) { _ = try currentStoreIdentity(paths: [a, b], encoderIdentity: "e", encoderWeights: "w", maxTokens: 256) }
        expectRefusal(message) { _ = try distinctSources([a, b]) }
        // The same file given twice (or by another spelling of its path) counts once.
        XCTAssertEqual(try distinctSources([a, dir + "/a/../a/x.csv", a]), [a])
        XCTAssertEqual(try currentStoreIdentity(paths: [a, a], encoderIdentity: "e", encoderWeights: "w", maxTokens: 256).sources.count, 1)
        // The identity follows the content: another x.csv with other bytes has another checksum.
        let ia = try currentStoreIdentity(paths: [a], encoderIdentity: "e", encoderWeights: "w", maxTokens: 256)
        let ib = try currentStoreIdentity(paths: [b], encoderIdentity: "e", encoderWeights: "w", maxTokens: 256)
        XCTAssertEqual(Array(ia.sources.keys), ["x.csv"])
        XCTAssertNotEqual(ia, ib)

        // featurize refuses them before reading anything, and writes nothing.
        let r = try runProduct("cladmop", ["featurize", "--data", a, "--data", b, "--output", dir + "/x.store",
                                           "--set", "data.icd_hierarchy=\(hierarchyPath)"], timeout: 120)
        XCTAssertEqual(r.status, 2, r.output)
        XCTAssertTrue(r.output.contains(message), r.output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/x.store"))

        // --skip-if-current cannot call such a store "up to date" (it needs the encoder's identity first).
        let modelDir = repoRoot + "/models/all-MiniLM-L6-v2"
        guard FileManager.default.fileExists(atPath: modelDir + "/model.safetensors") else { return }
        try writeSyntheticStore(path: dir + "/x.store", trials: 4, dim: 8, hierarchy: ICD10Hierarchy(path: hierarchyPath), seed: 1)
        let skip = try runProduct("cladmop", ["featurize", "--skip-if-current", "--data", a, "--data", b, "--output", dir + "/x.store",
                                              "--set", "data.icd_hierarchy=\(hierarchyPath)", "--set", "encoder.model_dir=\(modelDir)"], timeout: 120)
        XCTAssertEqual(skip.status, 2, skip.output)
        XCTAssertTrue(skip.output.contains(message), skip.output)
        XCTAssertFalse(skip.output.contains("up to date"), skip.output)
    }

    func testStaleStoreNamesSourcesItHoldsButWasNotAskedFor() throws {
        let store = dir + "/s.store"
        try writeSyntheticStore(path: store, trials: 4, dim: 8, hierarchy: ICD10Hierarchy(path: hierarchyPath), seed: 1)
        let csv = dir + "/x.csv"
        try (header + row).write(toFile: csv, atomically: true, encoding: .utf8)
        var expected = try currentStoreIdentity(paths: [csv], encoderIdentity: "synthetic", encoderWeights: nil, maxTokens: 0)
        XCTAssertThrowsError(try FeatureStore(path: store, expected: expected)) {
            XCTAssertTrue("\($0)".contains("stale feature store (x.csv not in the store; the store also holds synthetic, not asked for)"), "\($0)")
        }
        expected.sources = try FeatureStore(path: store).identity.sources
        XCTAssertNoThrow(try FeatureStore(path: store, expected: expected))
    }

    func testFeaturizeNeverOverwritesAnInput() throws {
        let csv = dir + "/x.csv"
        try (header + row).write(toFile: csv, atomically: true, encoding: .utf8)
        let before = try Data(contentsOf: URL(fileURLWithPath: csv))
        for output in [csv, dir + "/./x.csv", hierarchyPath] {
            let r = try runProduct("cladmop", ["featurize", "--data", csv, "--output", output,
                                               "--set", "data.icd_hierarchy=\(hierarchyPath)"], timeout: 120)
            XCTAssertEqual(r.status, 2, r.output)
            XCTAssertTrue(r.output.contains("\(output): --output would overwrite the file given to"), r.output)
        }
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: csv)), before)
    }

    // MARK: hostfiles

    func testHostfileLineEndingsAndByteOrderMarkAreNamed() throws {
        let file = dir + "/hosts"
        // The parser reads CR LF and CR lines as lines (a problem on line 2 is named as line 2)...
        for ending in ["\r\n", "\r"] {
            try Data("node01 slots=2\(ending)node02 slots=x\(ending)".utf8).write(to: URL(fileURLWithPath: file))
            let r = try runProduct("cladmop", ["check-hostfile", file])
            XCTAssertEqual(r.status, 2, r.output)
            XCTAssertTrue(r.output.contains("\(file):2: slots=x for host node02: expected a whole number >= 1"), r.output)
        }
        // ...but Open MPI's mpirun cannot parse them: the checker names the first such line and the fix.
        let cases: [(Data, String)] = [
            (Data("localhost slots=2\r\n".utf8), "\(file):1: ends with CR LF (Windows line endings); Open MPI's mpirun cannot parse it: convert the file to LF line endings (e.g. `sed -i 's/\\r$//' \(file)`)"),
            (Data("# hosts\nlocalhost slots=2\r\n".utf8), "\(file):2: ends with CR LF (Windows line endings)"),
            (Data("localhost slots=2\r".utf8), "\(file):1: ends with a lone CR (old Mac line endings); Open MPI's mpirun cannot parse it"),
            (Data([0xEF, 0xBB, 0xBF]) + Data("localhost slots=2\n".utf8), "\(file):1: starts with a UTF-8 byte-order mark; Open MPI's mpirun cannot parse it: remove it"),
            (Data("localhost slots=2\n".utf8) + Data([0xC3, 0x28, 0x0A]), "\(file):2: is not valid UTF-8 text (expected the hostfile as UTF-8)"),
        ]
        for (bytes, expected) in cases {
            try bytes.write(to: URL(fileURLWithPath: file))
            let r = try runProduct("cladmop", ["check-hostfile", file, "-np", "2"])
            XCTAssertEqual(r.status, 2, "\(expected): \(r.output)")
            XCTAssertTrue(r.output.contains(expected), "expected '\(expected)' in \(r.output)")
        }
        try Data("localhost slots=2\n".utf8).write(to: URL(fileURLWithPath: file))
        let ok = try runProduct("cladmop", ["check-hostfile", file, "-np", "2"])
        XCTAssertEqual(ok.status, 0, ok.output)
    }

    // MARK: other text inputs

    func testExclusionListAndHierarchyReadEveryLineEnding() throws {
        let ids = ["NCT00000001", "NCT00000002", "NCT00000003"]
        let text = "# held out\n" + ids[0] + "\n\n" + ids[1] + "  # a comment\n" + ids[2] + "\n"
        for (name, bytes) in [("lf", Data(text.utf8)), ("crlf", Data(text.replacingOccurrences(of: "\n", with: "\r\n").utf8)),
                              ("cr", Data(text.replacingOccurrences(of: "\n", with: "\r").utf8)),
                              ("bom", Data([0xEF, 0xBB, 0xBF]) + Data(text.replacingOccurrences(of: "\n", with: "\r\n").utf8))] {
            let path = dir + "/ex-\(name).txt"
            try bytes.write(to: URL(fileURLWithPath: path))
            XCTAssertEqual(try readExclusionList(path), Set(ids), name)
        }
        let bad = dir + "/ex-bad.txt"
        try "NCT00000001\r\nNCT0000002\r\n".write(toFile: bad, atomically: true, encoding: .utf8)
        expectRefusal("\(bad):2: expected an NCT id (NCT and 8 ASCII digits, like NCT01234567), found \"NCT0000002\"") { _ = try readExclusionList(bad) }

        let tsv = "id\tparent\tdepth\tdescription\nChapter\troot\t1\t\nBlock\tChapter\t2\t\nA00\tBlock\t3\tCholera\nA00.0\tA00\t4\tCholera due to V.\n"
        for (name, t) in [("lf", tsv), ("crlf", tsv.replacingOccurrences(of: "\n", with: "\r\n")), ("cr", tsv.replacingOccurrences(of: "\n", with: "\r"))] {
            let path = dir + "/h-\(name).tsv"
            try t.write(toFile: path, atomically: true, encoding: .utf8)
            let h = try ICD10Hierarchy(path: path)
            XCTAssertEqual(h.nodesPerDepth, [1, 1, 1, 1], name)
            XCTAssertEqual(h.resolve("A00.01"), "A00.0", name)
            XCTAssertEqual(h.category("A00.0"), "A00", name)
        }
        // A cycle, a skipped level or an id listed twice would make walking up the tree loop or lie: refused.
        let cases: [(String, String)] = [
            (tsv + "A00\tBlock\t3\tagain\n", ":6: id A00 is already listed on line 4; each node is listed once"),
            (tsv + "B00\tChapter\t3\tskips a level\n", ":6: parent \"Chapter\" of B00 (depth 3) is at depth 1; expected a listed node at depth 2"),
            (tsv + "B00.1\tB00\t4\torphan\n", ":6: parent \"B00\" of B00.1 (depth 4) is not listed; expected a listed node at depth 3"),
            (tsv.replacingOccurrences(of: "Chapter\troot\t1", with: "Chapter\tA00\t1"), ":2: Chapter is at depth 1 but its parent \"A00\" is a listed node"),
        ]
        for (t, expected) in cases {
            let path = dir + "/h-bad.tsv"
            try t.write(toFile: path, atomically: true, encoding: .utf8)
            XCTAssertThrowsError(try ICD10Hierarchy(path: path)) { XCTAssertTrue("\($0)".hasPrefix(path + expected), "\($0)") }
        }
    }
}

/// Opens `path` for writing every second until stopped, so that a reader wrongly blocked in open(2) on the FIFO
/// is released (it then reads an empty file) and the test fails instead of hanging.
final class FIFOWatchdog: @unchecked Sendable {
    private let lock = NSLock()
    private var stopped = false
    init(_ path: String) {
        DispatchQueue.global().async { [self] in
            while true {
                sleep(1)
                lock.lock(); let done = stopped; lock.unlock()
                if done { return }
                let fd = open(path, O_WRONLY | O_NONBLOCK)
                if fd >= 0 { close(fd) }
            }
        }
    }
    func stop() { lock.lock(); stopped = true; lock.unlock() }
}
