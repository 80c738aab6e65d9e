import Foundation
import TestSupport
import XCTest

/// Launch/sweep-batch end to end: six batch sizes and one that cannot run (larger than the training split)
/// from one command; the failed point is recorded and the sweep goes on to write sweep.csv and the plot.
final class SweepTests: XCTestCase {
    func testSweepOfSixBatchSizesWritesTheCSVAndThePlot() throws {
        let work = NSTemporaryDirectory() + "cladmop-sweep-\(getpid())"
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: work) }
        let hierarchy = "data.icd_hierarchy=\(repositoryRoot)/data/icd10/icd10cm_2025_hierarchy.tsv"
        let synth = try runProduct("cladmop", ["synth", "--trials", "300", "--dim", "24", "--output", work + "/s.store", "--seed", "3", "--set", hierarchy])
        XCTAssertEqual(synth.status, 0, synth.output)
        let r = try runCommand(repositoryRoot + "/Launch/sweep-batch",
                               ["--config", repositoryRoot + "/configs/smoke.yaml", "--batches", "4,8,16,32,48,64,100000", "--out", work + "/out",
                                "-np", "2", "--lr-rule", "sqrt", "--epochs", "2", "--",
                                "--set", "data.synthetic=true", "--set", "data.feature_store=\(work)/s.store", "--set", hierarchy,
                                "--set", "train.max_steps=0"], timeout: 300)
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(r.output.contains("global batch 100000 failed with status 2"), r.output)
        let csv = try String(contentsOfFile: work + "/out/sweep.csv", encoding: .utf8).split(separator: "\n").map(String.init)
        XCTAssertEqual(csv.first, "global_batch,lr,best_val_loss,epochs_to_best,samples_per_second,peak_rss_mb,status")
        XCTAssertEqual(csv.count, 8, csv.joined(separator: "\n"))
        for (row, batch) in zip(csv.dropFirst(), [4, 8, 16, 32, 48, 64]) {
            let f = row.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            XCTAssertEqual(f.count, 7, row)
            XCTAssertEqual(Int(f[0]), batch, row)
            XCTAssertEqual(Double(f[1])!, 1e-3 * (Double(batch) / 12).squareRoot(), accuracy: 1e-8, "sqrt rule from the config's lr at batch 12")
            XCTAssertNotNil(Double(f[2]), row); XCTAssertNotNil(Double(f[3]), row)
            XCTAssertGreaterThan(Double(f[4]) ?? 0, 0, row); XCTAssertGreaterThan(Double(f[5]) ?? 0, 0, row)
            XCTAssertEqual(f[6], "ok", row)
        }
        XCTAssertTrue(csv.last!.hasPrefix("100000,") && csv.last!.hasSuffix(",,,,,failed"), csv.last!)
        let svg = try String(contentsOfFile: work + "/out/sweep.svg", encoding: .utf8)
        XCTAssertEqual(svg.components(separatedBy: "<circle").count - 1, 6)
        XCTAssertTrue(svg.contains(">failed</text>"))
    }
}
