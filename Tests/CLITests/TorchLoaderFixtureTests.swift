import Foundation
import NN
import Support
import TestSupport
import Training
import XCTest

private let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

/// The PyTorch loader (python/cladmop_torch) against `cladmop embed`, without torch in CI (the llm.c way):
/// Tests/Fixtures/make_torch_loader.py, run by hand with torch, loaded the committed small checkpoint
/// (Tests/Fixtures/torch_loader/run) through the package, built its inputs from the committed store and wrote
/// f_DM and the pooled U^{D,M} in float64 (f_dm_torch.safetensors). Here `cladmop embed` runs the same
/// checkpoint on the same trials; every row must agree to 1e-4 relative (the bound) and the trials
/// must come in the same order.
final class TorchLoaderFixtureTests: XCTestCase {
    let fixture = repoRoot + "/Tests/Fixtures/torch_loader"

    /// max over rows of |a_i - b_i| / |b_i| for (rows, width) matrices.
    func worstRowRelative(_ a: [Float], _ b: [Float], width: Int) -> Double {
        var worst = 0.0
        for r in 0..<(b.count / width) {
            var d = 0.0, n = 0.0
            for k in r * width..<(r + 1) * width { d += Double(a[k] - b[k]) * Double(a[k] - b[k]); n += Double(b[k]) * Double(b[k]) }
            worst = max(worst, (d / max(n, 1e-30)).squareRoot())
        }
        return worst
    }

    /// The package reads the checkpoint versions cladmop reads (version 6 checkpoints had been refused by it, "expected a
    /// cladmop-checkpoint of version 2 to 5"): its READABLE_VERSIONS is CheckpointMeta.readableVersions.
    func testThePyTorchPackageReadsEveryCheckpointVersion() throws {
        let source = try String(contentsOfFile: repoRoot + "/python/cladmop_torch/checkpoint.py", encoding: .utf8)
        let versions = CheckpointMeta.readableVersions
        XCTAssertTrue(source.contains("READABLE_VERSIONS = range(\(versions.lowerBound), \(versions.upperBound + 1))"),
                      "python/cladmop_torch/checkpoint.py must read versions \(versions) (READABLE_VERSIONS)")
        XCTAssertTrue(source.contains("not in READABLE_VERSIONS"))
    }

    /// The package takes a CSV's rows from a store only when the file is the one the store was made from, by name and
    /// by the checksum of its bytes (a fourteenth probe: a 2-row file named valid.csv got the store's 8 rows). Its
    /// `checksum_hex` is cladmop's checksum64; run without torch (a stub module: the store reader maps the vectors).
    func testThePackageMatchesACSVToAStoreByItsBytes() throws {
        let dir = NSTemporaryDirectory() + "cladmop-torchloader-rows-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir + "/other", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let lines = try String(contentsOfFile: fixture + "/valid.csv", encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false)
        try (lines.prefix(3).joined(separator: "\n") + "\n").write(toFile: dir + "/other/valid.csv", atomically: true, encoding: .utf8)
        let script = """
            import sys, types
            class Stub(types.ModuleType):       # any attribute: a class that takes any arguments
                def __getattr__(self, name):
                    if name.startswith("__"): raise AttributeError(name)
                    return type(name, (), {"__init__": lambda self, *a, **k: None, "view": lambda self, *a: self})
            for name in ("torch", "torch.nn", "torch.nn.functional", "safetensors", "safetensors.torch"):
                sys.modules[name] = Stub(name)
            sys.modules["torch"].nn = sys.modules["torch.nn"]; sys.modules["torch.nn"].functional = sys.modules["torch.nn.functional"]
            sys.path.insert(0, sys.argv[1] + "/python")
            from cladmop_torch.features import FeatureStore, checksum_hex
            store = FeatureStore(sys.argv[2] + "/valid.store")
            print("rows", len(store.rows_of(sys.argv[2] + "/valid.csv")))
            print("recorded", store.meta["identity"]["sources"]["valid.csv"] == checksum_hex(open(sys.argv[2] + "/valid.csv", "rb").read()))
            try:
                store.rows_of(sys.argv[3] + "/valid.csv"); print("other: taken")
            except ValueError as e:
                print("other: refused", e)
            """
        let r = try runCommand("/usr/bin/env", ["python3", "-c", script, repoRoot, fixture, dir + "/other"])
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(r.output.contains("rows 8\n") && r.output.contains("recorded True"), r.output)
        XCTAssertTrue(r.output.contains("other: refused") && r.output.contains("holds the rows of another valid.csv"), r.output)
    }

    /// The package's checksum_hex is cladmop's checksumHex for every tail past the 8-byte words (0 to 15 bytes, and empty).
    func testThePackagesChecksumIsCladmops() throws {
        let dir = NSTemporaryDirectory() + "cladmop-torchloader-sum-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var expected = ""
        for n in [0, 1, 2, 7, 8, 9, 15, 16, 23, 1000] {
            let bytes = Data((0..<n).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) })
            try bytes.write(to: URL(fileURLWithPath: dir + "/f\(n)"))
            expected += "\(n) \(checksumHex(bytes))\n"
        }
        let script = """
            import os, sys, types
            class Stub(types.ModuleType):
                def __getattr__(self, name):
                    if name.startswith("__"): raise AttributeError(name)
                    return type(name, (), {"__init__": lambda self, *a, **k: None})
            for name in ("torch", "torch.nn", "torch.nn.functional", "safetensors", "safetensors.torch"):
                sys.modules[name] = Stub(name)
            sys.modules["torch"].nn = sys.modules["torch.nn"]; sys.modules["torch.nn"].functional = sys.modules["torch.nn.functional"]
            sys.path.insert(0, sys.argv[1] + "/python")
            from cladmop_torch.features import checksum_hex
            for n in [0, 1, 2, 7, 8, 9, 15, 16, 23, 1000]:
                print(n, checksum_hex(open(os.path.join(sys.argv[2], "f%d" % n), "rb").read()))
            """
        let r = try runCommand("/usr/bin/env", ["python3", "-c", script, repoRoot, dir])
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertEqual(r.output, expected)
    }

    func testEmbedEqualsThePyTorchPackage() throws {
        let dir = NSTemporaryDirectory() + "cladmop-torchloader-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // Copies, so that nothing can be written next to the fixture; the store matches valid.csv by name and bytes.
        for name in ["valid.csv", "valid.store"] { try FileManager.default.copyItem(atPath: fixture + "/" + name, toPath: dir + "/" + name) }
        let out = dir + "/embed.safetensors"
        let run = try mpirun(np: 2, executable: releaseOrDebugProduct("cladmop"), arguments: [
            "embed", "--checkpoint", fixture + "/run", "--data", dir + "/valid.csv", "--output", out,
            "--set", "data.feature_store=\(dir)/valid.store",
            "--set", "encoder.model_dir=\(repoRoot)/models/all-MiniLM-L6-v2",
            "--set", "data.icd_hierarchy=\(repoRoot)/data/icd10/icd10cm_2025_hierarchy.tsv"], timeout: 300)
        XCTAssertEqual(run.status, 0, run.output)
        XCTAssertFalse(run.output.contains("featurizing"), "the committed store holds valid.csv: \(run.output)")
        let ours = try SafetensorsFile(path: out), torch = try SafetensorsFile(path: fixture + "/f_dm_torch.safetensors")
        XCTAssertEqual(ours.metadata["nctids"], torch.metadata["nctids"])
        XCTAssertEqual(torch.metadata["nctids"]?.split(separator: ",").count, 8)
        for (name, width) in [("f_dm", 384), ("pooled", 16)] {
            let a = try ours.floats(name), b = try torch.floats(name)
            XCTAssertEqual(ours.tensors[name]?.shape, [8, width], name)
            XCTAssertEqual(a.count, b.count, name)
            let worst = worstRowRelative(a, b, width: width)
            XCTAssertLessThan(worst, 1e-4, "\(name): worst row-relative difference \(worst)")
            // The bound separates: the same rows in another order (trials one apart) are far outside it.
            let rotated = Array(b[width...] + b[..<width])
            XCTAssertGreaterThan(worstRowRelative(a, rotated, width: width), 1e-2, name)
            print("TorchLoaderFixtureTests: \(name) worst row-relative difference \(worst)")
        }
    }
}

/// The scripts beside the product refuse damaged inputs with exit status 2 naming the file and line (a fourteenth probe:
/// a NaN probability or a trial listed twice had changed devtest_compare's figures with exit 0; scaling_model.py and
/// devtest_table.py answered bad arguments with a traceback or an empty table).
final class BenchmarkScriptInputTests: XCTestCase {
    func testDamagedInputsAreRefusedWithTheFileAndLine() throws {
        let dir = NSTemporaryDirectory() + "cladmop-scripts-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir + "/run/phase1", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let files = [
            "good.csv": "\u{FEFF}nctid,probability\r\nNCT1,0.25\r\nNCT2,1\r\n",
            "nan.csv": "nctid,probability\nNCT1,0.25\nNCT2,NaN\n",
            "high.csv": "nctid,probability\nNCT1,7.5\n",
            "twice.csv": "nctid,probability\nNCT1,0.25\nNCT2,0.5\nNCT1,0.75\n",
            "labels.csv": "nctid,label\nNCT1,1\nNCT2,yes\n",
            "folds.csv": "nctid,fold,label\nNCT1,1,1\nNCT2,2,0\nNCT1,3,1\n",
            "best.json": "{\"threshold\": null}",
            // Nested past Python's recursion limit: a RecursionError traceback before.
            "deep.json": String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000),
        ]
        for (name, text) in files { try text.write(toFile: dir + "/" + name, atomically: true, encoding: .utf8) }
        let script = """
            import sys
            sys.path.insert(0, sys.argv[1] + "/benchmarks")
            from devtest_io import BadInput, read_labels, read_probabilities, read_threshold
            d = sys.argv[2]
            print("good", sorted(read_probabilities(d + "/good.csv").items()))
            for call in (lambda: read_probabilities(d + "/nan.csv"), lambda: read_probabilities(d + "/high.csv"),
                         lambda: read_probabilities(d + "/twice.csv"), lambda: read_labels(d + "/labels.csv"),
                         lambda: read_labels(d + "/folds.csv", repeats=True), lambda: read_threshold(d + "/best.json"),
                         lambda: read_threshold(d + "/deep.json")):
                try:
                    call(); print("accepted")
                except BadInput as e:
                    print("refused:", e)
            """
        let r = try runCommand("/usr/bin/env", ["python3", "-c", script, repoRoot, dir])
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(r.output.contains("good [('NCT1', 0.25), ('NCT2', 1.0)]"), r.output)
        XCTAssertFalse(r.output.contains("accepted"), r.output)
        for expected in ["nan.csv:3: probability of NCT2 is NaN", "high.csv:2: probability of NCT1 is 7.5", "twice.csv:4: NCT1 is listed twice",
                         "labels.csv:3: label of NCT2 is 'yes'", "folds.csv: NCT2 is listed 1 time(s), other trials 2",
                         "best.json: expected a JSON object whose \"threshold\" is a number in [0, 1], got null",
                         "deep.json: not valid JSON (maximum recursion depth exceeded"] {
            XCTAssertTrue(r.output.contains(dir + "/" + expected), "\(expected) in \(r.output)")
        }
        // The scripts' own exits: a run folder that does not exist, an unreadable bench JSON, a rate that is no number.
        for (arguments, expected) in [
            (["benchmarks/devtest_table.py", "a=" + dir + "/none"], "is not a folder"),
            (["benchmarks/scaling_model.py", "--compute", "m=" + dir + "/none.json", "--collectives", "1=" + dir + "/none.json", "--out", dir + "/o"],
             "none.json: cannot read"),
            (["benchmarks/scaling_model.py", "--compute", "m=" + dir + "/none.json", "--collectives", "1=" + dir + "/none.json", "--rates", "0",
              "--out", dir + "/o"], "--rates 0: expected a link rate in Gbit/s"),
        ] {
            let run = try runCommand("/usr/bin/env", ["python3", repoRoot + "/" + arguments[0]] + Array(arguments.dropFirst()))
            XCTAssertEqual(run.status, 2, "\(arguments): \(run.output)")
            XCTAssertTrue(run.output.contains(expected) && !run.output.contains("Traceback"), "\(arguments): \(run.output)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/o"), "nothing written for refused arguments")
    }
}
