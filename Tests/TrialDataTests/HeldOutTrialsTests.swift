import Foundation
import TestSupport
import TrialData
import XCTest

/// TOP's test trials (data/top/heldout_nctids.txt) never train unsaid: the baseline removes data.exclude_file's trials
/// from its training file as fine-tuning does, and with data.exclude_file emptied both say that test trials train.
final class HeldOutTrialsTests: XCTestCase {
    func testTOPTestTrialsNeverTrainUnsaid() throws {
        let dir = try scratchDirectory("held-out")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try writeCSVSubset(from: repoRoot + "/data/top/phase_I_train.csv", rows: 0..<24, to: dir + "/train.csv")
        try writeCSVSubset(from: repoRoot + "/data/top/phase_I_valid.csv", rows: 0..<12, to: dir + "/valid.csv")
        // Three failed training trials renamed to three TOP test ids.
        let heldOut = try readExclusionList(repoRoot + "/data/top/heldout_nctids.txt").sorted()
        let test = heldOut.prefix(3)
        let failed = try readTrials(paths: [dir + "/train.csv"], labels: .optional).0.filter { $0.label == 0 }.prefix(3).map(\.nctid)
        XCTAssertEqual(failed.count, 3)
        var text = try String(contentsOfFile: dir + "/train.csv", encoding: .utf8)
        for (a, b) in zip(failed, test) { text = text.replacingOccurrences(of: a, with: b) }
        try text.write(toFile: dir + "/train.csv", atomically: true, encoding: .utf8)

        // Run from the repository's root, where data.exclude_file's default and the bundled list are.
        let cladmop = releaseOrDebugProduct("cladmop")
        let common = ["--set", "encoder.model_dir=\(repoRoot)/models/all-MiniLM-L6-v2", "--set", "data.feature_store=\(dir)/f.store"]
        let baseline = ["baseline", "--train", dir + "/train.csv", "--data", dir + "/valid.csv"] + common
        let kept = try runCommand(cladmop, baseline, timeout: 300)
        XCTAssertEqual(kept.status, 0, kept.output)
        XCTAssertTrue(kept.output.contains("baseline: 3 held-out trial(s) removed from \(dir)/train.csv"), kept.output)
        XCTAssertFalse(kept.output.contains("TOP test trials"), kept.output)
        let emptied = try runCommand(cladmop, baseline + ["--set", "data.exclude_file=\"\""], timeout: 300)
        XCTAssertEqual(emptied.status, 0, emptied.output)
        XCTAssertTrue(emptied.output.contains("warning: 3 trial(s) of \(dir)/train.csv (\(test.first!), ...) are TOP test trials (data/top/heldout_nctids.txt) "
                                              + "that data.exclude_file (none) does not remove: they train the baseline"), emptied.output)
        // From another folder too: the bundled list is found in the repository the binary was built in (a probe: run
        // from elsewhere with data.exclude_file emptied, test trials trained without a word).
        let elsewhere = try runCommand("/bin/sh", ["-c", "cd \"$0\" && exec \"$@\"", dir, cladmop] + baseline
                                       + ["--set", "data.exclude_file=\"\"", "--set", "data.icd_hierarchy=\(repoRoot)/data/icd10/icd10cm_2025_hierarchy.tsv"], timeout: 300)
        XCTAssertEqual(elsewhere.status, 0, elsewhere.output)
        XCTAssertTrue(elsewhere.output.contains("warning: 3 trial(s) of \(dir)/train.csv (\(test.first!), ...) are TOP test trials (/")
                      && elsewhere.output.contains("/data/top/heldout_nctids.txt) that data.exclude_file (none) does not remove"), elsewhere.output)
        // Fine-tuning (no folds: --train trains, --valid selects) says the same of each file.
        let finetune = ["finetune", "--pretrained", "none", "--train", dir + "/train.csv", "--valid", dir + "/valid.csv", "--run-dir", dir + "/run"]
            + smallFinetuneSettings(dir: dir, ["finetune.epochs=1", "finetune.ensemble=1", "finetune.select_latest=0", "log.tensorboard=false",
                                               "data.exclude_file=\"\""]) + common
        let ft = try runCommand(cladmop, finetune, timeout: 600)
        XCTAssertEqual(ft.status, 0, ft.output)
        XCTAssertTrue(ft.output.contains("warning: 3 trial(s) of \(dir)/train.csv (\(test.first!), ...) are TOP test trials"), ft.output)
        XCTAssertTrue(ft.output.contains("they train the model"), ft.output)
        XCTAssertFalse(ft.output.contains("of \(dir)/valid.csv"), "the validation file holds none: \(ft.output)")

        // With the bundled list (the default): a test trial in --valid and one in --aux are removed, and said.
        try writeCSVSubset(from: repoRoot + "/data/top/phase_I_train.csv", rows: 24..<32, to: dir + "/aux.csv")
        for (file, id) in [("valid", heldOut[3]), ("aux", heldOut[4])] {
            let path = dir + "/\(file).csv"
            let first = try readTrials(paths: [path], labels: .optional).0[0].nctid
            try String(contentsOfFile: path, encoding: .utf8).replacingOccurrences(of: first, with: id).write(toFile: path, atomically: true, encoding: .utf8)
        }
        let withBundledList = finetune.map { $0 == "data.exclude_file=\"\"" ? "data.exclude_file=data/top/heldout_nctids.txt" : $0 == dir + "/run" ? dir + "/run2" : $0 }
        let removed = try runCommand(cladmop, withBundledList + ["--aux", dir + "/aux.csv", "--set", "data.feature_store=\(dir)/f2.store"], timeout: 600)
        XCTAssertEqual(removed.status, 0, removed.output)
        XCTAssertTrue(removed.output.contains("finetune: 3 held-out trial(s) removed from \(dir)/train.csv"), removed.output)
        XCTAssertTrue(removed.output.contains("finetune: 1 held-out trial(s) removed from \(dir)/valid.csv"), removed.output)
        XCTAssertTrue(removed.output.contains("not added: 1 held out (data.exclude_file), 0 repeated"), removed.output)
        XCTAssertFalse(removed.output.contains("TOP test trials"), removed.output)

        // Scoring removes nothing: a file of TOP test trials (what the benchmark's test split is) is scored whole by
        // evaluate and predict, with the bundled list in force (the outcome issue's acceptance scores exactly those).
        var testText = try String(contentsOfFile: dir + "/valid.csv", encoding: .utf8)
        let validIDs = try readTrials(paths: [dir + "/valid.csv"], labels: .optional).0.map(\.nctid)
        for (a, b) in zip(validIDs, heldOut.suffix(validIDs.count)) { testText = testText.replacingOccurrences(of: a, with: b) }
        try testText.write(toFile: dir + "/top-test.csv", atomically: true, encoding: .utf8)
        let scoring = smallFinetuneSettings(dir: dir, ["data.exclude_file=data/top/heldout_nctids.txt", "data.feature_store=\(dir)/f2.store"])
        let ev = try runCommand(cladmop, ["evaluate", "--checkpoint", dir + "/run2", "--data", dir + "/top-test.csv", "--json", dir + "/top-test.json"] + scoring, timeout: 600)
        XCTAssertEqual(ev.status, 0, ev.output)
        let report = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/top-test.json"))) as? [String: Any])
        XCTAssertEqual(report["n"] as? Int, validIDs.count, "every TOP test trial of the file is scored")
        let pr = try runCommand(cladmop, ["predict", "--checkpoint", dir + "/run2", "--data", dir + "/top-test.csv", "--output", dir + "/top-test-p.csv"] + scoring, timeout: 600)
        XCTAssertEqual(pr.status, 0, pr.output)
        let predicted = try String(contentsOfFile: dir + "/top-test-p.csv", encoding: .utf8).split(separator: "\n").dropFirst().map { String($0.prefix(11)) }
        XCTAssertEqual(predicted.count, validIDs.count, "predict writes a line per TOP test trial")
        XCTAssertEqual(Set(predicted), Set(heldOut.suffix(validIDs.count)), "predict writes every TOP test trial")
    }
}
