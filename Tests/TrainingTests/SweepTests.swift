import Foundation
import TestSupport
import XCTest

/// Launch/sweep-batch end to end: six batch sizes and one that cannot run (larger than the training split)
/// from one command; the failed point is recorded and the sweep goes on to write sweep.csv and the plot.
final class SweepTests: XCTestCase {
    let hierarchy = "data.icd_hierarchy=\(repositoryRoot)/data/icd10/icd10cm_2025_hierarchy.tsv"

    /// A fresh temporary folder holding s.store: 300 synthetic trials (the sweeps' training data).
    func syntheticStoreFolder(_ prefix: String) throws -> String {
        let work = NSTemporaryDirectory() + "\(prefix)-\(getpid())"
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        let synth = try runProduct("cladmop", ["synth", "--trials", "300", "--dim", "24", "--output", work + "/s.store", "--seed", "3", "--set", hierarchy])
        XCTAssertEqual(synth.status, 0, synth.output)
        return work
    }

    func testSweepOfSixBatchSizesWritesTheCSVAndThePlot() throws {
        let work = try syntheticStoreFolder("cladmop-sweep")
        defer { try? FileManager.default.removeItem(atPath: work) }
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

        XCTAssertEqual(try String(contentsOfFile: work + "/out/batches.txt", encoding: .utf8), "4\n8\n16\n32\n48\n64\n100000\n")
        // A point's run that a command still holds (an earlier point left running) is refused before anything is set
        // aside or trained (a probe: the sweep had set the report aside and trained other points before reaching it).
        let held = open(work + "/out/runs/b8", O_RDONLY)
        XCTAssertGreaterThanOrEqual(held, 0)
        XCTAssertEqual(flock(held, LOCK_EX | LOCK_NB), 0)
        let busy = try runCommand(repositoryRoot + "/Launch/sweep-batch",
                                  ["--config", repositoryRoot + "/configs/smoke.yaml", "--batches", "4,8", "--out", work + "/out",
                                   "-np", "2", "--epochs", "2", "--", "--set", "data.synthetic=true", "--set", "data.feature_store=\(work)/s.store",
                                   "--set", hierarchy], timeout: 120)
        close(held)
        XCTAssertEqual(busy.status, 2, busy.output)
        XCTAssertTrue(busy.output.contains("\(work)/out/runs/b8 is in use by a running command"), busy.output)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: work + "/out").filter { $0.contains(".previous-") }, [])
        XCTAssertEqual(try String(contentsOfFile: work + "/out/sweep.csv", encoding: .utf8).split(separator: "\n").map(String.init), csv)

        // A second sweep into the same folder keeps the first one's report (and its run of that batch) under
        // NAME.previous-DATE; its only point fails, so the sweep does (status 1, after writing its report);
        // batches listed twice or not positive are refused before anything runs.
        let again = try runCommand(repositoryRoot + "/Launch/sweep-batch",
                                   ["--config", repositoryRoot + "/configs/smoke.yaml", "--batches", "100000", "--out", work + "/out",
                                    "-np", "2", "--epochs", "2", "--", "--set", "data.synthetic=true", "--set", "data.feature_store=\(work)/s.store",
                                    "--set", hierarchy], timeout: 120)
        XCTAssertEqual(again.status, 1, again.output)
        XCTAssertTrue(again.output.contains("every point failed"), again.output)
        let kept = try FileManager.default.contentsOfDirectory(atPath: work + "/out")
        // sweep.png only where rsvg-convert is installed.
        for name in ["points.tsv", "batches.txt", "sweep.csv", "sweep.svg", "summary.md", "sweep.png"] where name != "sweep.png" || kept.contains(name) {
            let previous = kept.filter { $0.hasPrefix(name + ".previous-") }
            XCTAssertEqual(previous.count, 1, "\(name): \(kept)")
            if name == "sweep.csv", let p = previous.first {
                XCTAssertEqual(try String(contentsOfFile: work + "/out/" + p, encoding: .utf8).split(separator: "\n").map(String.init), csv)
            }
        }
        XCTAssertEqual(try String(contentsOfFile: work + "/out/sweep.csv", encoding: .utf8).split(separator: "\n").count, 2)
        // A learning rate that the rule scales out of optimizer.lr's range is refused before any point runs (it was
        // found only when that point's turn came).
        // So is a budget out of its keys' ranges (a review: --check had passed it), with --check as without.
        for (batches, rule, message, extra) in [("8,16,8", "none", "8 is listed twice", []), ("0,8", "none", "--batches 0: expected a positive integer", []),
                                                ("4,900000", "linear", "global batch 900000 at lr 450 (--lr-rule linear", []),
                                                ("4,8", "none", "train.patience = 20000 is invalid", ["--patience", "20000", "--max-epochs", "10"]),
                                                ("4,8", "none", "train.patience = 20000 is invalid", ["--patience", "20000", "--max-epochs", "10", "--check"])] {
            let refused = try runCommand(repositoryRoot + "/Launch/sweep-batch",
                                         ["--config", repositoryRoot + "/configs/smoke.yaml", "--batches", batches, "--out", work + "/refused",
                                          "--lr-rule", rule, "--base-batch", "2"] + extra, timeout: 60)
            XCTAssertEqual(refused.status, 2, refused.output)
            XCTAssertTrue(refused.output.contains(message), refused.output)
            XCTAssertFalse(FileManager.default.fileExists(atPath: work + "/refused"))
        }
    }

    /// --patience P --max-epochs E: each batch trains until early stopping or E epochs, and the report says which.
    /// On this synthetic store batch 4 stops after 9 epochs (no better loss at epoch 9) and batch 64 still
    /// improves at epochs 12 and 13, so with E = 11 one point converges and the other runs out of epochs.
    func testPatienceSweepRunsEachBatchToConvergenceOrTheEpochCap() throws {
        let work = try syntheticStoreFolder("cladmop-sweep-patience")
        defer { try? FileManager.default.removeItem(atPath: work) }
        let r = try runCommand(repositoryRoot + "/Launch/sweep-batch",
                               ["--config", repositoryRoot + "/configs/smoke.yaml", "--batches", "4,64", "--out", work + "/out",
                                "-np", "2", "--lr-rule", "sqrt", "--patience", "1", "--max-epochs", "11", "--",
                                "--set", "data.synthetic=true", "--set", "data.feature_store=\(work)/s.store", "--set", hierarchy,
                                "--set", "train.patience=0", "--set", "train.epochs=2"], timeout: 300)
        XCTAssertEqual(r.status, 0, r.output)
        let md = try String(contentsOfFile: work + "/out/summary.md", encoding: .utf8)
        let rows = md.split(separator: "\n").filter { $0.hasPrefix("| 4 |") || $0.hasPrefix("| 64 |") }
            .map { $0.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) } }
        XCTAssertEqual(rows.count, 2, md)
        // columns: batch, lr, best loss, epochs to best, samples to best, epochs run, converged, ...
        for row in rows {
            let epochsRun = Double(row[5]) ?? -1, converged = row[6]
            if row[0] == "4" {
                XCTAssertEqual(converged, "yes", md); XCTAssertLessThan(epochsRun, 11, md)
            } else {
                XCTAssertEqual(converged, "no", md); XCTAssertEqual(epochsRun, 11, md)
            }
            XCTAssertLessThanOrEqual(Double(row[3]) ?? 99, epochsRun, "the best comes no later than the last evaluation")
        }
        for (batch, stopped) in [(4, true), (64, false)] {
            let log = try String(contentsOfFile: work + "/out/runs/b\(batch)/metrics.jsonl", encoding: .utf8)
            XCTAssertTrue(log.contains("\"stopped_early\":\(stopped)"), "b\(batch): \(log.suffix(300))")
        }
        let svg = try String(contentsOfFile: work + "/out/sweep.svg", encoding: .utf8)
        XCTAssertEqual(svg.components(separatedBy: "fill-opacity=\"0.00\"").count - 1, 1, "one hollow (not converged) point")
        let bad = try runCommand(repositoryRoot + "/Launch/sweep-batch",
                                 ["--config", repositoryRoot + "/configs/smoke.yaml", "--batches", "4", "--out", work + "/bad", "--patience", "2"], timeout: 60)
        XCTAssertEqual(bad.status, 2, bad.output)
        XCTAssertTrue(bad.output.contains("--patience and --max-epochs go together"), bad.output)
    }
}
