import Communication
import Foundation
import NN
import TextEncoder
import TestSupport
import TrialData
import XCTest

/// `cladmop featurize` under mpirun -np 2 writes the same store as -np 1 (ranks take fixed batches
/// round-robin, so every sentence is encoded in the same batch whatever the world size), also when -np 2 gathers in
/// many small waves (CLADMOP_FEATURIZE_WAVE_KB; -np 1 in one).
final class FeaturizeParityTests: XCTestCase {
    func testTwoRanksWriteTheSameStoreAsOne() throws {
        let dir = try scratchDirectory("featurize")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let csv = dir + "/small.csv"
        try writeCSVSubset(from: repoRoot + "/data/top/phase_I_valid.csv", rows: 0..<12, to: csv)
        let cladmop = releaseOrDebugProduct("cladmop")
        let common = ["featurize", "--data", csv, "--set", "encoder.model_dir=\(repoRoot)/models/all-MiniLM-L6-v2",
                      "--set", "data.icd_hierarchy=\(repoRoot)/data/icd10/icd10cm_2025_hierarchy.tsv", "--set", "encoder.batch_tokens=512"]
        let one = try mpirun(np: 1, executable: cladmop, arguments: common + ["--output", dir + "/one.store"], timeout: 600)
        XCTAssertEqual(one.status, 0, one.output)
        XCTAssertTrue(one.output.contains("gathered in 1 wave(s)"), one.output)
        let two = try mpirun(np: 2, executable: cladmop, arguments: common + ["--output", dir + "/two.store"],
                             environment: ["CLADMOP_FEATURIZE_WAVE_KB": "100"], timeout: 600)
        XCTAssertEqual(two.status, 0, two.output)
        let waves = two.output.split(separator: "\n").first { $0.contains(" wave(s)") }.map(String.init) ?? ""
        XCTAssertFalse(waves.isEmpty || waves.contains("gathered in 1 wave(s)") || waves.contains("gathered in 2 wave(s)"), "the test needs several waves: \(waves)")
        let bad = try mpirun(np: 1, executable: cladmop, arguments: common + ["--output", dir + "/bad.store"],
                             environment: ["CLADMOP_FEATURIZE_WAVE_KB": "0"], timeout: 60)
        XCTAssertEqual(bad.status, 2, bad.output)
        XCTAssertTrue(bad.output.contains("CLADMOP_FEATURIZE_WAVE_KB=\"0\": expected a whole number of KiB"), bad.output)
        // Ranks started with different waves (an app context per rank, the variable on rank 0 only, as on a node that
        // did not receive it) would post gathers of other sizes: refused with exit 2 naming the variable.
        let rank = common + ["--output", dir + "/mixed.store"]
        let mixed = try runCommand("/usr/bin/env", ["mpirun", "--oversubscribe"] + (getuid() == 0 ? ["--allow-run-as-root"] : []) + ["-x", "OPENBLAS_NUM_THREADS",
                                   "-np", "1", "/usr/bin/env", "CLADMOP_FEATURIZE_WAVE_KB=100", cladmop] + rank + [":", "-np", "1", cladmop] + rank,
                                   environment: ["OPENBLAS_NUM_THREADS": "1"], timeout: 120)
        XCTAssertEqual(mixed.status, 2, mixed.output)
        XCTAssertTrue(mixed.output.contains("the ranks were started with different CLADMOP_FEATURIZE_WAVE_KB"), mixed.output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/mixed.store"))
        let a = try Data(contentsOf: URL(fileURLWithPath: dir + "/one.store")), b = try Data(contentsOf: URL(fileURLWithPath: dir + "/two.store"))
        XCTAssertGreaterThan(a.count, 100_000)
        XCTAssertEqual(a, b, "the -np 2 store differs from the -np 1 store")
        let store = try FeatureStore(path: dir + "/one.store")
        XCTAssertEqual(store.trials.count, 12)
        XCTAssertEqual(store.dim, 384)
    }
}

/// `featurize` encodes and gathers in waves of bounded size and writes each wave's rows into the store file: the store
/// is the same byte for byte whatever the bound (one round per wave here, against the default's single wave), and an
/// output that cannot hold the payload is refused before any sentence is encoded.
final class FeaturizeStreamingTests: XCTestCase {
    func testSmallWavesWriteTheSameStore() throws {
        let dir = try scratchDirectory("waves")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try writeCSVSubset(from: repoRoot + "/data/top/phase_I_valid.csv", rows: 0..<8, to: dir + "/small.csv")
        let hierarchy = try ICD10Hierarchy(path: repoRoot + "/data/icd10/icd10cm_2025_hierarchy.tsv")
        let modelDir = repoRoot + "/models/all-MiniLM-L6-v2"
        var lines: [String] = []
        for (out, waveFloats) in [("one-wave.store", featurizeWaveFloats), ("many-waves.store", 1)] {
            lines = []
            _ = try featurize(comm: SingleProcessCommunicator(), paths: [dir + "/small.csv"], output: dir + "/" + out,
                              makeEncoder: { try BertEncoder(modelDir: modelDir, maxLength: 128) }, hierarchy: hierarchy,
                              skipBadRows: false, batchTokens: 256, waveFloats: waveFloats, log: { lines.append($0) })
        }
        let batches = lines.first { $0.contains(" batches over ") } ?? ""
        XCTAssertFalse(batches.contains(" 1 batches"), "the test needs several batches: \(batches)")
        let a = try Data(contentsOf: URL(fileURLWithPath: dir + "/one-wave.store")), b = try Data(contentsOf: URL(fileURLWithPath: dir + "/many-waves.store"))
        XCTAssertEqual(a, b, "a store written in many waves differs from one written in one")
        XCTAssertEqual(try FeatureStore(path: dir + "/many-waves.store").trials.count, 8)
        // Rounds of two batches: 60, 40 and 10 floats.
        XCTAssertEqual(featurizeWaves(batchSizes: [3, 3, 2, 2, 1], ranks: 2, rowFloats: 10, waveFloats: 100), [0..<4, 4..<5])
        XCTAssertEqual(featurizeWaves(batchSizes: [3, 3, 2, 2, 1], ranks: 2, rowFloats: 10, waveFloats: 99), [0..<2, 2..<5])
        XCTAssertEqual(featurizeWaves(batchSizes: [3, 3, 2, 2, 1], ranks: 2, rowFloats: 10, waveFloats: 45), [0..<2, 2..<4, 4..<5])
        XCTAssertEqual(featurizeWaves(batchSizes: [3, 3, 2, 2, 1], ranks: 1, rowFloats: 10, waveFloats: 1), (0..<5).map { $0..<($0 + 1) })
        XCTAssertEqual(featurizeWaves(batchSizes: [], ranks: 2, rowFloats: 10, waveFloats: 1), [])
    }

    /// A tmpfs of 256 KiB cannot hold the payload of 8 trials (hundreds of KB): refused with exit 2 before encoding,
    /// naming the output and the bytes it needs, and no temporary file is left, on one rank and on two (needs the right
    /// to mount, as root here and in CI; skipped elsewhere).
    func testAnOutputWithoutRoomIsRefusedBeforeEncoding() throws {
        let dir = try scratchDirectory("full")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let mountPoint = dir + "/small"
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        let mount = try runCommand("/bin/mount", ["-t", "tmpfs", "-o", "size=256k", "tmpfs", mountPoint])
        guard mount.status == 0 else { throw XCTSkip("cannot mount a tmpfs here: \(mount.output)") }
        defer { _ = try? runCommand("/bin/umount", ["-l", mountPoint]) }     // lazily: also while a killed rank holds it
        try writeCSVSubset(from: repoRoot + "/data/top/phase_I_valid.csv", rows: 0..<8, to: dir + "/small.csv")
        let r = try runProduct("cladmop", ["featurize", "--data", dir + "/small.csv", "--output", mountPoint + "/f.store",
                                           "--set", "encoder.model_dir=\(repoRoot)/models/all-MiniLM-L6-v2",
                                           "--set", "data.icd_hierarchy=\(repoRoot)/data/icd10/icd10cm_2025_hierarchy.tsv"], timeout: 120)
        XCTAssertEqual(r.status, 2, r.output)
        XCTAssertTrue(r.output.contains("\(mountPoint)/f.store: not enough space for the feature store"), r.output)
        XCTAssertFalse(r.output.contains("encoded"), "the refusal must come before encoding: \(r.output)")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: mountPoint), [], "nothing may be left on the file system")
        // Under mpirun -np 2 rank 1 encodes its share and waits in the gather while rank 0 refuses: the job ends (MPI_Abort).
        let two = try mpirun(np: 2, executable: releaseOrDebugProduct("cladmop"), arguments: ["featurize", "--data", dir + "/small.csv", "--output", mountPoint + "/f.store",
                             "--set", "encoder.model_dir=\(repoRoot)/models/all-MiniLM-L6-v2",
                             "--set", "data.icd_hierarchy=\(repoRoot)/data/icd10/icd10cm_2025_hierarchy.tsv"], timeout: 120)
        XCTAssertEqual(two.status, 2, two.output)
        XCTAssertTrue(two.output.contains("error (rank 0 of 2): \(mountPoint)/f.store: not enough space for the feature store"), two.output)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: mountPoint), [], "nothing may be left on the file system")
    }
}

/// An evaluation cache store (`featurize(reuse:)`) copies the vectors of the sentences the main store holds and
/// encodes only the others: the same trials and sentence table as a fresh featurization, the shared sentences' vectors
/// exactly the main store's, the new ones as a fresh encoding gives them. A store of another max_tokens is not reused.
final class FeatureReuseTests: XCTestCase {
    func testACacheStoreReusesTheVectorsOfSentencesAlreadyEncoded() throws {
        let dir = try scratchDirectory("reuse")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let source = repoRoot + "/data/top/phase_I_valid.csv"
        try writeCSVSubset(from: source, rows: 0..<4, to: dir + "/whole.csv")
        try writeCSVSubset(from: source, rows: 2..<6, to: dir + "/part.csv")     // rows 2-3 shared, 4-5 new
        let comm = SingleProcessCommunicator()
        let hierarchy = try ICD10Hierarchy(path: repoRoot + "/data/icd10/icd10cm_2025_hierarchy.tsv")
        let modelDir = repoRoot + "/models/all-MiniLM-L6-v2"
        func run(_ csv: String, _ out: String, maxLength: Int = 256, reuse: FeatureStore? = nil) throws -> FeaturizeReport {
            try featurize(comm: comm, paths: [dir + "/" + csv], output: dir + "/" + out,
                          makeEncoder: { try BertEncoder(modelDir: modelDir, maxLength: maxLength) }, hierarchy: hierarchy,
                          skipBadRows: false, batchTokens: 512, reuse: reuse, log: { _ in })
        }
        XCTAssertEqual(try run("whole.csv", "whole.store").reused, 0)
        let whole = try FeatureStore(path: dir + "/whole.store")
        let fresh = try run("part.csv", "fresh.store")
        let reusing = try run("part.csv", "reused.store", reuse: whole)
        let a = try FeatureStore(path: dir + "/fresh.store"), b = try FeatureStore(path: dir + "/reused.store")
        XCTAssertEqual(a.trials.map(\.nctid), b.trials.map(\.nctid))
        XCTAssertEqual(a.trials.map(\.sentences), b.trials.map(\.sentences))
        XCTAssertEqual(a.sentenceChecksums, b.sentenceChecksums)
        let inWhole = Dictionary(zip(whole.sentenceChecksums!, whole.sentenceChecksums!.indices), uniquingKeysWith: { x, _ in x })
        let shared = b.sentenceChecksums!.indices.filter { inWhole[b.sentenceChecksums![$0]] != nil }
        XCTAssertGreaterThan(shared.count, 10)
        XCTAssertLessThan(shared.count, b.sentenceCount, "the part file must also hold sentences the main store lacks")
        XCTAssertEqual(reusing.reused, shared.count)
        XCTAssertLessThan(reusing.tokens, fresh.tokens)
        let width = 3 * b.dim
        for s in 0..<b.sentenceCount {
            let got = b.vectors(sentence: s)
            if let r = inWhole[b.sentenceChecksums![s]] {
                let want = whole.vectors(sentence: r)
                XCTAssertTrue((0..<width).allSatisfy { got[$0] == want[$0] }, "sentence \(s): not the main store's vector")
            }
            // Reused or encoded, every vector is the sentence's own: within 1e-4 of a fresh encoding of this file
            // (independent of the checksum matching above).
            let fresh = a.vectors(sentence: s)
            let worst = (0..<width).map { abs(got[$0] - fresh[$0]) }.max()!
            XCTAssertLessThan(worst, 1e-4, "sentence \(s): differs from a fresh encoding")
        }
        // Another max_tokens makes other vectors: nothing is reused.
        XCTAssertEqual(try run("part.csv", "other.store", maxLength: 64, reuse: whole).reused, 0)
    }
}
