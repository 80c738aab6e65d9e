import Foundation
import TestSupport
import XCTest

/// `log.tensorboard: true`: a pretraining (2 ranks, then resumed) and a fine-tuning write event files that
/// TensorBoard's own reader (EventAccumulator, in the .venv-tests that `Launch/setup --tests` makes) loads with the same
/// tags, steps and values as metrics.jsonl (Tests/TensorBoard/compare_events.py); a corrupted byte is caught.
final class TensorBoardEndToEndTests: XCTestCase {
    let python = repoRoot + "/.venv-tests/bin/python"
    let script = repoRoot + "/Tests/TensorBoard/compare_events.py"

    func compare(_ runs: [String]) throws -> (status: Int32, output: String) {
        let r = try runCommand(python, [script] + runs, timeout: 120)
        return (r.status, r.output)
    }

    func eventFiles(_ dir: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { $0.hasPrefix("events.out.tfevents.") }.sorted()
    }

    func testEventFilesEqualMetricsJSONLInTensorBoardsReader() throws {
        guard FileManager.default.isExecutableFile(atPath: python),
              try runCommand(python, ["-c", "import tensorboard.backend.event_processing.event_accumulator"], timeout: 60).status == 0 else {
            throw XCTSkip("no \(python) with tensorboard: Launch/setup makes it (python3 -m venv .venv-tests; pip install tensorboard)")
        }
        let dir = NSTemporaryDirectory() + "cladmop-tensorboard-\(getpid())"
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let cladmop = releaseOrDebugProduct("cladmop")
        let hierarchy = "data.icd_hierarchy=\(repoRoot)/data/icd10/icd10cm_2025_hierarchy.tsv"
        XCTAssertEqual(try runCommand(cladmop, ["synth", "--trials", "72", "--dim", "8", "--output", dir + "/s.store", "--set", hierarchy]).status, 0)
        let pretrain = ["pretrain", "--config", repoRoot + "/configs/smoke.yaml", "--run-dir", dir + "/run", "--set", "data.synthetic=true",
                        "--set", "data.feature_store=\(dir)/s.store", "--set", hierarchy, "--set", "log.tensorboard=true",
                        "--set", "train.max_steps=0", "--set", "train.log_every=2"]

        // Without the key: no event file.
        let plain = try mpirun(np: 1, executable: cladmop, arguments: pretrain.map { $0 == "log.tensorboard=true" ? "log.tensorboard=false" : $0 }
                                                                       + ["--set", "train.epochs=1"])
        XCTAssertEqual(plain.status, 0, plain.output)
        XCTAssertEqual(eventFiles(dir + "/run"), [])

        // 2 ranks (only rank 0 writes), 2 epochs; --overwrite replaces the run above; then resumed to 3 epochs: a second file.
        let first = try mpirun(np: 2, executable: cladmop, arguments: pretrain + ["--overwrite", "--set", "train.epochs=2"], timeout: 300)
        XCTAssertEqual(first.status, 0, first.output)
        XCTAssertEqual(eventFiles(dir + "/run").count, 1)
        sleep(1)
        let resumed = try mpirun(np: 2, executable: cladmop, arguments: pretrain + ["--resume", "auto", "--set", "train.epochs=3"], timeout: 300)
        XCTAssertEqual(resumed.status, 0, resumed.output)
        XCTAssertTrue(resumed.output.contains("resume:"), resumed.output)
        XCTAssertEqual(eventFiles(dir + "/run").count, 2, "a resumed run adds an event file")

        // Killed before step 7 (records of steps 2, 4, 6 written, checkpoint at 4), then resumed from step 4: metrics.jsonl
        // drops the attempt's step 6 and holds each step once; the new event file starts with a restart at step 5, so
        // TensorBoard (its reader purges the earlier file's steps >= 5) agrees with metrics.jsonl (compared below).
        let crashArgs = pretrain.map { $0 == dir + "/run" ? dir + "/crash" : $0 == "train.max_steps=0" ? "train.max_steps=10" : $0 }
            + ["--set", "train.epochs=1000", "--set", "checkpoint.every_steps=4"]
        let crashed = try mpirun(np: 1, executable: cladmop, arguments: crashArgs, environment: ["CLADMOP_FAULT": "crash:0:7"], timeout: 300)
        XCTAssertNotEqual(crashed.status, 0, crashed.output)
        let before = try String(contentsOfFile: dir + "/crash/metrics.jsonl", encoding: .utf8)
        XCTAssertTrue(before.contains("\"step\":6,"), before)
        sleep(1)
        let continued = try mpirun(np: 1, executable: cladmop, arguments: crashArgs + ["--resume", "auto"], timeout: 300)
        XCTAssertEqual(continued.status, 0, continued.output)
        let trainSteps = try String(contentsOfFile: dir + "/crash/metrics.jsonl", encoding: .utf8).split(separator: "\n")
            .filter { $0.contains("\"type\":\"train\"") }
            .compactMap { line in line.range(of: "\"step\":").map { Int(line[$0.upperBound...].prefix { $0.isNumber })! } }
        XCTAssertEqual(trainSteps, [2, 4, 6, 8, 10], "each logged step once after the resume")

        // Fine-tuning (no-pretraining ablation, 2 epochs) on a few featurized rows.
        try writeCSVSubset(from: repoRoot + "/data/top/phase_I_train.csv", rows: 0..<16, to: dir + "/train.csv")
        try writeCSVSubset(from: repoRoot + "/data/top/phase_I_valid.csv", rows: 0..<10, to: dir + "/valid.csv")
        let ft = try mpirun(np: 1, executable: cladmop, arguments: [
            "finetune", "--pretrained", "none", "--train", dir + "/train.csv", "--valid", dir + "/valid.csv", "--run-dir", dir + "/ft",
            "--config", repoRoot + "/configs/smoke.yaml", "--set", "encoder.model_dir=\(repoRoot)/models/all-MiniLM-L6-v2",
            "--set", hierarchy, "--set", "data.exclude_file=\(repoRoot)/data/top/heldout_nctids.txt",
            "--set", "data.feature_store=\(dir)/features/none.store", "--set", "finetune.epochs=2", "--set", "finetune.batch=8",
            "--set", "finetune.head_hidden=16", "--set", "log.tensorboard=true"], timeout: 600)
        XCTAssertEqual(ft.status, 0, ft.output)

        let ok = try compare([dir + "/run", dir + "/crash", dir + "/ft"])
        XCTAssertEqual(ok.status, 0, ok.output)
        XCTAssertTrue(ok.output.contains("\(dir)/run: 2 event file(s)"), ok.output)
        // Every record type is there: 3 epochs of evaluations, 2 summaries (one per process), 2 fine-tuning epochs.
        let metrics = try String(contentsOfFile: dir + "/run/metrics.jsonl", encoding: .utf8)
        XCTAssertEqual(metrics.components(separatedBy: "\"type\":\"eval\"").count - 1, 3, metrics)
        XCTAssertEqual(metrics.components(separatedBy: "\"type\":\"summary\"").count - 1, 2, metrics)
        let ftMetrics = try String(contentsOfFile: dir + "/ft/metrics.jsonl", encoding: .utf8)
        XCTAssertEqual(ftMetrics.components(separatedBy: "\"type\":\"finetune\"").count - 1, 2, ftMetrics)

        // One flipped byte in the last record (its data CRC, then its data): the reader refuses it and the check fails.
        let events = dir + "/run/" + eventFiles(dir + "/run").last!
        let good = try Data(contentsOf: URL(fileURLWithPath: events))
        for offset in [1, 8] {
            var bad = good
            bad[bad.count - offset] ^= 0x01
            try bad.write(to: URL(fileURLWithPath: events))
            let r = try compare([dir + "/run"])
            XCTAssertEqual(r.status, 1, r.output)
            XCTAssertTrue(r.output.contains("crc32 check"), r.output)
        }
        // A changed value with valid CRCs (metrics.jsonl edited instead): the comparison names the tag.
        try good.write(to: URL(fileURLWithPath: events))
        let edited = metrics.replacingOccurrences(of: "\"type\":\"eval\"", with: "\"type\":\"eval\",\"chance_top1\":0.5")
        try edited.write(toFile: dir + "/run/metrics.jsonl", atomically: true, encoding: .utf8)
        let r = try compare([dir + "/run"])
        XCTAssertEqual(r.status, 1, r.output)
        XCTAssertTrue(r.output.contains("val/chance_top1"), r.output)
    }
}
