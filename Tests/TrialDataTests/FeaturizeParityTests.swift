import Foundation
import NN
import TestSupport
import TrialData
import XCTest

/// `cladmop featurize` under mpirun -np 2 writes the same store as -np 1 (ranks take fixed batches
/// round-robin, so every sentence is encoded in the same batch whatever the world size).
final class FeaturizeParityTests: XCTestCase {
    func testTwoRanksWriteTheSameStoreAsOne() throws {
        let dir = NSTemporaryDirectory() + "cladmop-featurize-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let csv = dir + "/small.csv"
        try writeCSVSubset(from: repoRoot + "/data/top/phase_I_valid.csv", rows: 0..<12, to: csv)
        let cladmop = releaseOrDebugProduct("cladmop")
        let common = ["featurize", "--data", csv, "--set", "encoder.model_dir=\(repoRoot)/models/all-MiniLM-L6-v2",
                      "--set", "data.icd_hierarchy=\(repoRoot)/data/icd10/icd10cm_2025_hierarchy.tsv", "--set", "encoder.batch_tokens=512"]
        let one = try mpirun(np: 1, executable: cladmop, arguments: common + ["--output", dir + "/one.store"], timeout: 600)
        XCTAssertEqual(one.status, 0, one.output)
        let two = try mpirun(np: 2, executable: cladmop, arguments: common + ["--output", dir + "/two.store"], timeout: 600)
        XCTAssertEqual(two.status, 0, two.output)
        let a = try Data(contentsOf: URL(fileURLWithPath: dir + "/one.store")), b = try Data(contentsOf: URL(fileURLWithPath: dir + "/two.store"))
        XCTAssertGreaterThan(a.count, 100_000)
        XCTAssertEqual(a, b, "the -np 2 store differs from the -np 1 store")
        let store = try FeatureStore(path: dir + "/one.store")
        XCTAssertEqual(store.trials.count, 12)
        XCTAssertEqual(store.dim, 384)
    }
}

/// Writes the header and the given data rows of a bundled TOP CSV to `path` (RFC 4180 quoting).
func writeCSVSubset(from source: String, rows: Range<Int>, to path: String) throws {
    let records = try readCSV(path: source)
    let chosen = [records[0]] + records.dropFirst().enumerated().filter { rows.contains($0.offset) }.map(\.element)
    let lines = chosen.map { $0.fields.map { f in
        f.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" }) ? "\"" + f.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : f
    }.joined(separator: ",") }
    try (lines.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
}
