import Foundation
import NN
import Reporting
import TestSupport
import TrialData
import XCTest

/// Fine-tune (no-pretraining ablation, one epoch) on a small labelled CSV, then `evaluate` and `predict` on a
/// CSV that no feature store holds: it is featurized on the fly, and the JSON and CSV surfaces are complete.
final class OutcomeEndToEndTests: XCTestCase {
    /// Fine-tuning on 3 ranks takes the steps of 1 rank: every trial once per epoch, also in a last batch smaller
    /// than the world size (10 trials in batches of 4: 4, 4, 2), and with fewer training trials than ranks (2: one
    /// batch, one rank dealt nothing). Those rows had been dropped, and 2 trials on 3 ranks trained nothing (loss 0).
    func testFinetuneOnThreeRanksTakesTheStepsOfOne() throws {
        let dir = try scratchDirectory("outcome-ranks")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try writeCSVSubset(from: repoRoot + "/data/top/phase_I_train.csv", rows: 0..<10, to: dir + "/train10.csv")
        try writeCSVSubset(from: repoRoot + "/data/top/phase_I_train.csv", rows: 0..<2, to: dir + "/train2.csv")
        try writeCSVSubset(from: repoRoot + "/data/top/phase_I_valid.csv", rows: 0..<12, to: dir + "/valid.csv")
        let cladmop = releaseOrDebugProduct("cladmop")
        let sets = smallFinetuneSettings(dir: dir, ["finetune.epochs=2", "finetune.ensemble=1", "finetune.select_latest=0", "finetune.batch=4"])
        func records(_ run: String) throws -> [[String: Any]] {
            try String(contentsOfFile: run + "/metrics.jsonl", encoding: .utf8).split(separator: "\n")
                .compactMap { try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
                .filter { $0["type"] as? String == "finetune" }
        }
        for train in ["train10", "train2"] {
            var runs: [[[String: Any]]] = []
            for np in [1, 3] {
                let run = dir + "/\(train)-np\(np)"
                let r = try mpirun(np: np, executable: cladmop, arguments: ["finetune", "--pretrained", "none", "--train", dir + "/\(train).csv",
                                                                           "--valid", dir + "/valid.csv", "--run-dir", run] + sets, timeout: 600)
                XCTAssertEqual(r.status, 0, r.output)
                runs.append(try records(run))
            }
            XCTAssertEqual(runs[0].count, 2, train); XCTAssertEqual(runs[1].count, 2, train)
            for (one, three) in zip(runs[0], runs[1]) {
                let a = one["train_loss"] as? Double ?? .nan, b = three["train_loss"] as? Double ?? .nan
                XCTAssertGreaterThan(a, 0.1, "\(train): a real loss")
                XCTAssertEqual(b, a, accuracy: 1e-4 * a, "\(train) epoch \(one["epoch"] ?? "?"): 3 ranks \(b), 1 rank \(a)")
                for key in ["valid_pr_auc", "valid_roc_auc"] {
                    XCTAssertEqual(three[key] as? Double ?? .nan, one[key] as? Double ?? -1, accuracy: 1e-9, "\(train) \(key)")
                }
            }
        }
    }

    /// A rank that stops (SIGSTOP through CLADMOP_FAULT=stop:1:ACTIVITY: its heartbeats stop too, as with
    /// `kill -STOP`) while fine-tuning, featurizing a CSV on the fly, scoring or embedding ends the job about
    /// train.stall_timeout later, naming the rank; each had left the other rank in a collective for ever.
    func testAStoppedRankEndsFineTuningFeaturizingScoringAndEmbedding() throws {
        let dir = try scratchDirectory("outcome-stop")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try writeCSVSubset(from: repoRoot + "/data/top/phase_I_train.csv", rows: 0..<24, to: dir + "/train.csv")
        try writeCSVSubset(from: repoRoot + "/data/top/phase_I_valid.csv", rows: 0..<12, to: dir + "/valid.csv")
        try writeCSVSubset(from: repoRoot + "/data/top/toy_test.csv", rows: 0..<10, to: dir + "/unseen.csv")
        let cladmop = releaseOrDebugProduct("cladmop")
        let sets = smallFinetuneSettings(dir: dir, ["finetune.epochs=1", "finetune.ensemble=1", "finetune.select_latest=0", "train.stall_timeout=4"])
        let finetune = ["finetune", "--pretrained", "none", "--train", dir + "/train.csv", "--valid", dir + "/valid.csv"]
        func stopped(_ activity: String, _ arguments: [String]) throws {
            let r = try mpirun(np: 2, executable: cladmop, arguments: arguments + sets, environment: ["CLADMOP_FAULT": "stop:1:\(activity)"], timeout: 180)
            XCTAssertNotEqual(r.status, 0, r.output)
            XCTAssertTrue(r.output.contains("no \(activity) progress for") && r.output.contains("rank 1 (host")
                          && r.output.contains("stopped answering"), "\(activity): \(r.output)")
            XCTAssertLessThan(r.seconds, 90, activity)
        }
        try stopped("fine-tuning", finetune + ["--run-dir", dir + "/stopped"])
        let ft = try mpirun(np: 2, executable: cladmop, arguments: finetune + ["--run-dir", dir + "/run"] + sets, timeout: 600)
        XCTAssertEqual(ft.status, 0, ft.output)
        try stopped("featurizing", ["evaluate", "--checkpoint", dir + "/run", "--data", dir + "/unseen.csv"])
        try stopped("scoring", ["evaluate", "--checkpoint", dir + "/run", "--data", dir + "/valid.csv"])
        try stopped("embedding", ["embed", "--checkpoint", dir + "/run", "--data", dir + "/valid.csv", "--output", dir + "/e.safetensors"])
        // The control: the same scoring without the fault ends normally.
        let ev = try mpirun(np: 2, executable: cladmop, arguments: ["evaluate", "--checkpoint", dir + "/run", "--data", dir + "/valid.csv"] + sets, timeout: 180)
        XCTAssertEqual(ev.status, 0, ev.output)
    }

    /// A model fine-tuned with train.precision bf16 is scored in bf16, the precision its epoch was chosen in (a
    /// stranger's probe: evaluate scored it in fp32, PR-AUC 0.8394 on the validation file against the 0.8405 that
    /// selected it): evaluate on the validation file gives best.json's value, and its predictions differ from the same
    /// model's computed in fp32 (CLADMOP_FORCE_NO_BF16, the fallback of a CPU without bf16), so bf16 is really used.
    func testABF16FineTunedModelIsScoredInBF16() throws {
        try XCTSkipUnless(Precision.bf16Available, "no AVX512-BF16 here: bf16 falls back to fp32")
        let small = try SmallFinetuning("outcome-bf16", ["finetune.epochs=2", "finetune.ensemble=1", "finetune.select_latest=0"], validRows: 40)
        let (dir, cladmop, sets) = (small.dir, small.cladmop, small.sets)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let ft = try small.finetune(["--set", "train.precision=bf16"], "run")
        XCTAssertEqual(ft.status, 0, ft.output)
        let best = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/run/best.json"))) as! [String: Any]
        let ev = try mpirun(np: 2, executable: cladmop, arguments: ["evaluate", "--checkpoint", dir + "/run", "--data", dir + "/valid.csv",
                                                                   "--json", dir + "/eval.json"] + sets, timeout: 600)
        XCTAssertEqual(ev.status, 0, ev.output)
        let report = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/eval.json"))) as! [String: Any]
        XCTAssertEqual((report["pr_auc"] as? [String: Any])?["full"] as? Double ?? .nan, best["valid"] as? Double ?? -1, accuracy: 1e-12)
        var predictions: [[String]] = []
        for (name, np, environment) in [("bf16", 1, [String: String]()), ("bf16-2", 2, [:]), ("fp32", 1, ["CLADMOP_FORCE_NO_BF16": "1"])] {
            let out = dir + "/\(name).csv"
            let r = try mpirun(np: np, executable: cladmop, arguments: ["predict", "--checkpoint", dir + "/run", "--data", dir + "/valid.csv",
                                                                       "--output", out] + sets, environment: environment, timeout: 600)
            XCTAssertEqual(r.status, 0, r.output)
            predictions.append(try String(contentsOfFile: out, encoding: .utf8).split(separator: "\n").map(String.init))
        }
        XCTAssertEqual(predictions[0].count, 41)
        XCTAssertEqual(predictions[0], predictions[1], "2 ranks agree on bf16 and score as 1")
        XCTAssertNotEqual(predictions[0], predictions[2], "bf16 scoring gave the fp32 predictions")

        // Ranks finding other checkpoints behind one path (another node's run), one fine-tuned in bf16 and one in fp32:
        // the checkpoints' agreement ends the job, before the precision's collective that only the bf16 rank enters.
        let fp32Run = try mpirun(np: 1, executable: cladmop, arguments: ["finetune", "--pretrained", "none", "--train", dir + "/train.csv",
                                                                        "--valid", dir + "/valid.csv", "--run-dir", dir + "/b/run"] + sets, timeout: 600)
        XCTAssertEqual(fp32Run.status, 0, fp32Run.output)
        try FileManager.default.createDirectory(atPath: dir + "/a", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: dir + "/a/run", withDestinationPath: dir + "/run")
        let predict = [cladmop, "predict", "--checkpoint", "run", "--data", dir + "/valid.csv", "--output", dir + "/mixed.csv"] + sets
        let mixed = try runCommand("/usr/bin/env", ["mpirun", "--oversubscribe"] + (getuid() == 0 ? ["--allow-run-as-root"] : [])
                                   + ["-x", "OPENBLAS_NUM_THREADS=1", "-np", "1", "--wdir", dir + "/a"] + predict
                                   + [":", "-np", "1", "--wdir", dir + "/b"] + predict, timeout: 120)
        XCTAssertEqual(mixed.status, 2, mixed.output)
        XCTAssertTrue(mixed.output.contains("different checkpoints"), mixed.output)
    }

    /// A checkpoint records the precision its model was computed in, not the one asked for: train.precision bf16 on a
    /// CPU without AVX512-BF16 (CLADMOP_FORCE_NO_BF16, the fallback) trains in fp32, and its pretraining and fine-tuning
    /// checkpoints say fp32, so an AVX512-BF16 machine scores them in fp32 as trained (they had said bf16, and such a
    /// machine scored them in bf16). Where bf16 runs, a run asked for bf16 without the fallback records bf16.
    func testACheckpointRecordsThePrecisionItWasComputedIn() throws {
        let small = try SmallFinetuning("computed-precision", ["finetune.epochs=1", "finetune.ensemble=1", "finetune.select_latest=0",
                                                               "train.precision=bf16"])
        let (dir, cladmop) = (small.dir, small.cladmop)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try writeSyntheticStore(dir: dir)
        /// `train.precision` of every checkpoint's metadata under `run` (fp32 is left out of the JSON: read as fp32).
        func recorded(_ run: String) throws -> Set<String> {
            let files = (FileManager.default.enumerator(atPath: run)?.allObjects as? [String] ?? [])
                .filter { $0.hasSuffix(".json") && URL(fileURLWithPath: $0).lastPathComponent.hasPrefix("step-") }
            XCTAssertFalse(files.isEmpty, "no checkpoint in \(run)")
            return Set(try files.map { name in
                let meta = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: run + "/" + name))) as? [String: Any])
                let train = try XCTUnwrap((meta["spec"] as? [String: Any])?["train"] as? [String: Any], name)
                return train["precision"] as? String ?? "fp32"
            })
        }
        let cases: [(String, [String: String], String)] = [("fallback", ["CLADMOP_FORCE_NO_BF16": "1"], "fp32")]
            + (Precision.bf16Available ? [("bf16", [:], "bf16")] : [])
        for (name, environment, expected) in cases {
            let pre = try mpirun(np: 1, executable: cladmop, arguments: syntheticPretrainArguments(dir: dir, run: dir + "/pre-" + name)
                                 + ["--set", "train.max_steps=2", "--set", "train.precision=bf16"], environment: environment, timeout: 300)
            XCTAssertEqual(pre.status, 0, pre.output)
            XCTAssertEqual(try recorded(dir + "/pre-" + name + "/checkpoints"), [expected], "pretraining, \(name)")
            let ft = try mpirun(np: 2, executable: cladmop, arguments: ["finetune", "--pretrained", "none", "--train", dir + "/train.csv",
                                                                       "--valid", dir + "/valid.csv", "--run-dir", dir + "/ft-" + name] + small.sets,
                                environment: environment, timeout: 600)
            XCTAssertEqual(ft.status, 0, ft.output)
            XCTAssertEqual(try recorded(dir + "/ft-" + name + "/checkpoints"), [expected], "fine-tuning, \(name)")
            let config = try String(contentsOfFile: dir + "/ft-" + name + "/config.yaml", encoding: .utf8)
            XCTAssertTrue(config.contains("precision: \"bf16\""), "config.yaml keeps what was asked: \(config)")
        }
    }

    func testFinetuneEvaluatePredictOnAnUnseenCSV() throws {
        let dir = try scratchDirectory("outcome")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try writeCSVSubset(from: repoRoot + "/data/top/phase_I_train.csv", rows: 0..<24, to: dir + "/train.csv")
        try writeCSVSubset(from: repoRoot + "/data/top/phase_I_valid.csv", rows: 0..<12, to: dir + "/valid.csv")
        try writeCSVSubset(from: repoRoot + "/data/top/toy_test.csv", rows: 0..<10, to: dir + "/unseen.csv")
        let cladmop = releaseOrDebugProduct("cladmop")
        let sets = smallFinetuneSettings(dir: dir, ["finetune.epochs=1", "finetune.ensemble=1", "finetune.select_latest=0"])
        let ft = try mpirun(np: 2, executable: cladmop, arguments: ["finetune", "--pretrained", "none", "--train", dir + "/train.csv",
                                                                   "--valid", dir + "/valid.csv", "--run-dir", dir + "/run"] + sets, timeout: 600)
        XCTAssertEqual(ft.status, 0, ft.output)
        let best = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/run/best.json"))) as! [String: Any]
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/run/" + (best["checkpoint"] as! String)))

        let ev = try mpirun(np: 2, executable: cladmop, arguments: ["evaluate", "--checkpoint", dir + "/run", "--data", dir + "/unseen.csv",
                                                                   "--json", dir + "/eval.json"] + sets, timeout: 600)
        XCTAssertEqual(ev.status, 0, ev.output)
        XCTAssertTrue(ev.output.contains("not in"), "the unseen CSV is featurized on the fly: \(ev.output)")
        let report = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/eval.json"))) as! [String: Any]
        XCTAssertEqual(report["n"] as? Int, 10)
        for key in ["f1", "pr_auc", "roc_auc", "accuracy"] {
            let m = report[key] as? [String: Any]
            XCTAssertNotNil(m?["mean"], key); XCTAssertNotNil(m?["std"], key)
        }

        // Embeddings of the unseen CSV: 2 ranks (disjoint shards, rank 0 writes) equal 1 rank, rows in CSV order.
        for (np, out) in [(2, "/emb2.safetensors"), (1, "/emb1.safetensors")] {
            let em = try mpirun(np: np, executable: cladmop, arguments: ["embed", "--checkpoint", dir + "/run", "--data", dir + "/unseen.csv",
                                                                       "--output", dir + out] + sets, timeout: 600)
            XCTAssertEqual(em.status, 0, em.output)
        }
        let e2 = try SafetensorsFile(path: dir + "/emb2.safetensors"), e1 = try SafetensorsFile(path: dir + "/emb1.safetensors")
        XCTAssertEqual(e2.tensors["f_dm"]?.shape.first, 10)
        XCTAssertEqual(e2.tensors["pooled"]?.shape, [10, 64])
        let csvIds = try readTrials(paths: [dir + "/unseen.csv"]).0.map(\.nctid)
        XCTAssertEqual(e2.metadata["nctids"]?.split(separator: ",").map(String.init), csvIds)
        for name in ["f_dm", "f_c", "pooled"] {
            let a = try e2.floats(name), b = try e1.floats(name)
            let scale = b.map { abs($0) }.max() ?? 1
            XCTAssertLessThan(zip(a, b).map { abs($0 - $1) }.max() ?? 1, 1e-5 * scale, name)
        }
        let refused = try mpirun(np: 1, executable: cladmop, arguments: ["embed", "--checkpoint", dir + "/run", "--data", dir + "/unseen.csv",
                                                                        "--output", dir + "/unseen.csv"] + sets, timeout: 60)
        XCTAssertEqual(refused.status, 2, refused.output)
        // embed replaces its own earlier output, also beside a JSON of the same name (an evaluation's emb1.json; a
        // twelfth probe: the pair looked like a checkpoint's tensors and metadata, and embed refused).
        try Data("{}".utf8).write(to: URL(fileURLWithPath: dir + "/emb1.json"))
        let replaced = try mpirun(np: 1, executable: cladmop, arguments: ["embed", "--checkpoint", dir + "/run", "--data", dir + "/unseen.csv",
                                                                      "--output", dir + "/emb1.safetensors"] + sets, timeout: 600)
        XCTAssertEqual(replaced.status, 0, replaced.output)

        let pr = try mpirun(np: 1, executable: cladmop, arguments: ["predict", "--checkpoint", dir + "/run", "--data", dir + "/unseen.csv",
                                                                   "--output", dir + "/predictions.csv"] + sets, timeout: 600)
        XCTAssertEqual(pr.status, 0, pr.output)
        let lines = try String(contentsOfFile: dir + "/predictions.csv", encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.first, "nctid,probability")
        XCTAssertEqual(lines.count, 11)
        for line in lines.dropFirst() {
            let p = Double(line.split(separator: ",")[1])!
            XCTAssertTrue(line.hasPrefix("NCT") && p >= 0 && p <= 1, String(line))
        }

        // Trials to predict need no label: the same CSV with the label column left out, or with every label field
        // empty, gives the same predictions (2 ranks).
        let expected = try String(contentsOfFile: dir + "/predictions.csv", encoding: .utf8)
        // Another encoder.max_tokens is featurized into a cache store of its own: the 16-token setting had been served
        // the 256-token vectors (the cache matched by file contents only), or had replaced them for later runs.
        var again: (status: Int32, output: String, seconds: Double) = (0, "", 0)
        for (tokens, name) in [(16, "short"), (256, "again")] {
            let r = try mpirun(np: 1, executable: cladmop, arguments: ["predict", "--checkpoint", dir + "/run", "--data", dir + "/unseen.csv",
                                                                      "--output", dir + "/\(name).csv"] + sets + ["--set", "encoder.max_tokens=\(tokens)"],
                               timeout: 600)
            XCTAssertEqual(r.status, 0, r.output)
            XCTAssertEqual(r.output.contains("warning:") && r.output.contains("encoder.max_tokens 16, the checkpoint was trained on vectors of 256 tokens"),
                           tokens == 16, r.output)
            again = r
        }
        XCTAssertNotEqual(try String(contentsOfFile: dir + "/short.csv", encoding: .utf8), expected, "16 tokens per sentence give other vectors")
        XCTAssertEqual(try String(contentsOfFile: dir + "/again.csv", encoding: .utf8), expected)
        // Features of another encoder (here the same files under another folder name, so another identity) than the
        // checkpoint was trained on: scored, with a warning naming both.
        try FileManager.default.createSymbolicLink(atPath: dir + "/renamed-encoder", withDestinationPath: repoRoot + "/models/all-MiniLM-L6-v2")
        let other = try mpirun(np: 1, executable: cladmop, arguments: ["predict", "--checkpoint", dir + "/run", "--data", dir + "/unseen.csv",
                                                                      "--output", dir + "/renamed.csv"] + sets + ["--set", "encoder.model_dir=\(dir)/renamed-encoder"],
                               timeout: 600)
        XCTAssertEqual(other.status, 0, other.output)
        XCTAssertTrue(other.output.contains("warning:") && other.output.contains("renamed-encoder@")
                      && other.output.contains("was trained on those of all-MiniLM-L6-v2@"), other.output)
        XCTAssertFalse(again.output.contains("was trained on"), again.output)      // no encoder warning for the same encoder
        for (edit, name) in [(LabelColumnEdit.drop, "nolabel"), (.set(""), "blank")] {
            try writeCSVSubset(from: repoRoot + "/data/top/toy_test.csv", rows: 0..<10, to: dir + "/\(name).csv", labelColumn: edit)
            let r = try mpirun(np: 2, executable: cladmop, arguments: ["predict", "--checkpoint", dir + "/run", "--data", dir + "/\(name).csv",
                                                                      "--output", dir + "/\(name)-predictions.csv"] + sets, timeout: 600)
            XCTAssertEqual(r.status, 0, r.output)
            XCTAssertEqual(try String(contentsOfFile: dir + "/\(name)-predictions.csv", encoding: .utf8), expected, name)
        }
        // Commands that learn or measure from labels refuse them, naming the file and line: evaluate finds the store
        // predict built (its labels unknown); finetune featurizes the file itself; a label other than 0, 1 or empty
        // is refused by predict too.
        let ev2 = try mpirun(np: 2, executable: cladmop, arguments: ["evaluate", "--checkpoint", dir + "/run", "--data", dir + "/blank.csv"] + sets, timeout: 600)
        XCTAssertEqual(ev2.status, 2, ev2.output)
        XCTAssertTrue(ev2.output.contains(dir + "/blank.csv:2: trial NCT") && ev2.output.contains("has no label"), ev2.output)
        let ev3 = try mpirun(np: 1, executable: cladmop, arguments: ["evaluate", "--checkpoint", dir + "/run", "--data", dir + "/nolabel.csv"] + sets, timeout: 600)
        XCTAssertEqual(ev3.status, 2, ev3.output)
        XCTAssertTrue(ev3.output.contains(dir + "/nolabel.csv:2: trial NCT"), ev3.output)
        let ft2 = try mpirun(np: 1, executable: cladmop, arguments: ["finetune", "--pretrained", "none", "--train", dir + "/blank.csv",
                                                                    "--valid", dir + "/valid.csv", "--run-dir", dir + "/run2"] + sets, timeout: 600)
        XCTAssertEqual(ft2.status, 2, ft2.output)
        XCTAssertTrue(ft2.output.contains(dir + "/blank.csv:2") && ft2.output.contains("column label: \"\" (expected 0 or 1)"), ft2.output)
        // Pretraining takes the successful trials of its files: the store predict built for blank.csv cannot say which
        // (refused at the first trial not excluded); data.exclude_csvs needs only ids, so a file without labels is fine.
        let cache = dir + "/features/cache"
        let blankStore = try FileManager.default.contentsOfDirectory(atPath: cache).map { cache + "/" + $0 }
            .first { (try? FeatureStore(path: $0))?.identity.sources.keys.contains("blank.csv") == true }
        try writeCSVSubset(from: repoRoot + "/data/top/toy_test.csv", rows: 0..<2, to: dir + "/first2.csv", labelColumn: .drop)
        let pt = try mpirun(np: 1, executable: cladmop, arguments: [
            "pretrain", "--config", repoRoot + "/configs/smoke.yaml", "--run-dir", dir + "/pt",
            "--set", "data.files=[\(dir)/blank.csv]", "--set", "data.feature_store=\(try XCTUnwrap(blankStore))",
            "--set", "data.exclude_csvs=[\(dir)/first2.csv]", "--set", "encoder.model_dir=\(repoRoot)/models/all-MiniLM-L6-v2",
            "--set", "data.icd_hierarchy=\(repoRoot)/data/icd10/icd10cm_2025_hierarchy.tsv"], timeout: 600)
        XCTAssertEqual(pt.status, 2, pt.output)
        let third = try readTrials(paths: [dir + "/unseen.csv"]).0[2]
        XCTAssertTrue(pt.output.contains("\(dir)/blank.csv:\(third.source.line): trial \(third.nctid) has no label")
                      && pt.output.contains("pretraining takes the successful trials"), pt.output)
        try writeCSVSubset(from: repoRoot + "/data/top/toy_test.csv", rows: 0..<10, to: dir + "/yes.csv", labelColumn: .set("yes"))
        let pr2 = try mpirun(np: 1, executable: cladmop, arguments: ["predict", "--checkpoint", dir + "/run", "--data", dir + "/yes.csv",
                                                                    "--output", dir + "/yes-predictions.csv"] + sets, timeout: 600)
        XCTAssertEqual(pr2.status, 2, pr2.output)
        XCTAssertTrue(pr2.output.contains(dir + "/yes.csv:2") && pr2.output.contains("column label: \"yes\" (expected 0, 1 or empty)"), pr2.output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/yes-predictions.csv"))
    }

    /// Ranks started from other copies of their inputs under the same names (one command line in two working folders,
    /// mpirun's MPMD form: each node its own copy) are refused before any step, naming the input: fine-tuning from
    /// pretrained checkpoints of other model sizes (each rank took model.* from its own: a probe saw the job train on and
    /// exit 0, and with another width end in an MPI error without a message), and pretraining on synthetic stores drawn
    /// from other ICD trees (the same seed, size and noise, so the same identity; a probe saw it train on). The same
    /// copies on both ranks run (the control).
    func testRanksStartedFromOtherCopiesOfTheirInputsAreRefused() throws {
        let dir = try scratchDirectory("apart-inputs")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let cladmop = releaseOrDebugProduct("cladmop")
        let (a, b) = (dir + "/node-a", dir + "/node-b")
        let fullTree = repoRoot + "/data/icd10/icd10cm_2025_hierarchy.tsv", smallTree = dir + "/small.tsv"
        let lines = try String(contentsOfFile: fullTree, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false)
        try (lines.prefix(3000).joined(separator: "\n") + "\n").write(toFile: smallTree, atomically: true, encoding: .utf8)
        for (node, heads, tree) in [(a, 2, fullTree), (b, 4, smallTree)] {
            try FileManager.default.createDirectory(atPath: node, withIntermediateDirectories: true)
            let synth = try mpirun(np: 1, executable: cladmop, arguments: ["synth", "--trials", "60", "--dim", "384", "--output", node + "/s.store",
                                                                          "--set", "data.icd_hierarchy=\(tree)"], timeout: 120)
            XCTAssertEqual(synth.status, 0, synth.output)
            let pre = try mpirun(np: 1, executable: cladmop, arguments: syntheticPretrainArguments(dir: a, run: node + "/pre")
                                     + ["--set", "train.max_steps=2", "--set", "model.heads=\(heads)"], timeout: 300)
            XCTAssertEqual(pre.status, 0, pre.output)
        }
        /// Both ranks run `arguments` (relative paths: each in its node's folder); `same` runs both in node a.
        func apart(_ arguments: [String], same: Bool = false) throws -> (status: Int32, output: String, seconds: Double) {
            try mpirun(np: same ? 2 : 1, executable: cladmop, arguments: arguments + (same ? [] : [":", "-np", "1", "-wdir", b, cladmop] + arguments),
                       extraFlags: ["-wdir", a], timeout: 600)
        }
        try writeCSVSubset(from: repoRoot + "/data/top/phase_I_train.csv", rows: 0..<24, to: dir + "/train.csv")
        try writeCSVSubset(from: repoRoot + "/data/top/phase_I_valid.csv", rows: 0..<12, to: dir + "/valid.csv")
        let finetune = ["finetune", "--pretrained", "pre", "--train", dir + "/train.csv", "--valid", dir + "/valid.csv", "--run-dir", "ft"]
            + smallFinetuneSettings(dir: dir, ["finetune.epochs=1", "finetune.ensemble=1", "finetune.select_latest=0"])
        let ft = try apart(finetune)
        XCTAssertEqual(ft.status, 2, ft.output)
        XCTAssertTrue(ft.output.contains("ranks were started with different pretrained checkpoints"), ft.output)
        XCTAssertTrue(ft.output.contains("--pretrained pre (here tensors "), ft.output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: a + "/ft/config.yaml"), "no run begun")
        let pretrain = ["pretrain", "--config", repoRoot + "/configs/smoke.yaml", "--run-dir", "run", "--set", "data.synthetic=true",
                        "--set", "data.feature_store=s.store", "--set", "data.icd_hierarchy=\(fullTree)", "--set", "train.max_steps=2"]
        let pt = try apart(pretrain)
        XCTAssertEqual(pt.status, 2, pt.output)
        XCTAssertTrue(pt.output.contains("ranks were started with different feature stores: one value differs across ranks: feature store trials"), pt.output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: a + "/run/config.yaml"), "no run begun")
        // The control: the same copies on both ranks.
        let ftSame = try apart(finetune, same: true)
        XCTAssertEqual(ftSame.status, 0, ftSame.output)
        let ptSame = try apart(pretrain, same: true)
        XCTAssertEqual(ptSame.status, 0, ptSame.output)
    }
}

/// A fine-tuned run keeps its own hard link to the pretrained checkpoint (RUN/pretrained/), so it still predicts,
/// the same, after the pretraining run is moved aside and a new one written at its path (what Launch/main does when
/// run again), and after that run is replaced with --overwrite (its checkpoints deleted).
final class PretrainedLinkTests: XCTestCase {
    func testAFineTunedRunOutlivesItsPretrainingRun() throws {
        let dir = try scratchDirectory("pretrained-link")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let cladmop = releaseOrDebugProduct("cladmop")
        try writeSyntheticStore(dir: dir)
        func pretrain(_ run: String, seed: Int, _ extra: [String] = []) throws {
            let r = try mpirun(np: 1, executable: cladmop, arguments: syntheticPretrainArguments(dir: dir, run: run)
                                                                      + ["--set", "train.max_steps=2", "--set", "train.seed=\(seed)"] + extra,
                               timeout: 300)
            XCTAssertEqual(r.status, 0, r.output)
        }
        try pretrain(dir + "/pre", seed: 1)
        try writeCSVSubset(from: repoRoot + "/data/top/phase_I_train.csv", rows: 0..<24, to: dir + "/train.csv")
        try writeCSVSubset(from: repoRoot + "/data/top/phase_I_valid.csv", rows: 0..<12, to: dir + "/valid.csv")
        let sets = smallFinetuneSettings(dir: dir, ["finetune.epochs=1", "finetune.ensemble=2", "finetune.select_latest=0"])
        let ft = try mpirun(np: 1, executable: cladmop, arguments: ["finetune", "--pretrained", dir + "/pre", "--train", dir + "/train.csv",
                                                                   "--valid", dir + "/valid.csv", "--run-dir", dir + "/pre/ft"] + sets, timeout: 600)
        XCTAssertEqual(ft.status, 0, ft.output)
        // Hard links: the same files, no bytes copied.
        let original = try XCTUnwrap(try FileManager.default.contentsOfDirectory(atPath: dir + "/pre/checkpoints").filter { $0.hasSuffix(".json") }.sorted().last)
        for name in [original, original.replacingOccurrences(of: ".json", with: ".safetensors")] {
            var a = stat(), b = stat()
            XCTAssertEqual(stat(dir + "/pre/checkpoints/" + name, &a), 0)
            XCTAssertEqual(stat(dir + "/pre/ft/pretrained/" + name, &b), 0, name)
            XCTAssertEqual(a.st_ino, b.st_ino, name)
        }
        func predict(_ run: String, _ out: String) throws -> String {
            let r = try mpirun(np: 1, executable: cladmop, arguments: ["predict", "--checkpoint", run, "--data", dir + "/valid.csv",
                                                                      "--output", dir + "/" + out] + sets, timeout: 600)
            XCTAssertEqual(r.status, 0, r.output)
            return (try? String(contentsOfFile: dir + "/" + out, encoding: .utf8)) ?? ""
        }
        let before = try predict(dir + "/pre/ft", "before.csv")
        XCTAssertEqual(before.split(separator: "\n").count, 13)
        // Through a symbolic link to the checkpoint: the run keeps the real file (a link to a link would dangle).
        XCTAssertEqual(symlink(original, dir + "/pre/checkpoints/latest.json"), 0)
        let viaLink = try mpirun(np: 1, executable: cladmop, arguments: ["finetune", "--pretrained", dir + "/pre/checkpoints/latest.json",
                                                                        "--train", dir + "/train.csv", "--valid", dir + "/valid.csv",
                                                                        "--run-dir", dir + "/pre/ftlink"] + sets, timeout: 600)
        XCTAssertEqual(viaLink.status, 0, viaLink.output)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/pre/ftlink/pretrained/" + original))
        let beforeLink = try predict(dir + "/pre/ftlink", "before-link.csv")
        // Launch/main again: the old run set aside, a new one (another seed) at the same path.
        XCTAssertEqual(rename(dir + "/pre", dir + "/pre.previous"), 0)
        try pretrain(dir + "/pre", seed: 2)
        XCTAssertEqual(try predict(dir + "/pre.previous/ft", "moved.csv"), before)
        XCTAssertEqual(try predict(dir + "/pre.previous/ftlink", "moved-link.csv"), beforeLink)
        XCTAssertEqual(try predict(dir + "/pre.previous/ft/members/2", "member.csv").split(separator: "\n").count, 13)
        // The pretraining run replaced in place: its checkpoints are deleted, the fine-tuned run's links stay. A folder
        // named pretrained in a pretraining run is the user's: neither a sign of a run nor deleted by --overwrite.
        try FileManager.default.createDirectory(atPath: dir + "/pre.previous/pretrained", withIntermediateDirectories: true)
        try "mine\n".write(toFile: dir + "/pre.previous/pretrained/notes.txt", atomically: true, encoding: .utf8)
        try pretrain(dir + "/pre.previous", seed: 3, ["--overwrite"])
        XCTAssertEqual(try predict(dir + "/pre.previous/ft", "overwritten.csv"), before)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/pre.previous/pretrained/notes.txt"))
    }
}

final class FinetuneResumeTests: XCTestCase {
    /// `finetune --resume auto` (session 52): a cross-fitted ensemble interrupted after its second member (the third
    /// one's log cut after an epoch, as a kill leaves it; no best.json) keeps the two finished members (the first
    /// restored into the run's own model, the second into a member's) and trains the third, and writes what the
    /// uninterrupted run wrote: best.json, the run's and every member's metrics.jsonl byte for byte, every member's
    /// tensors. A single model starts again, its attempt's log, checkpoints and TensorBoard file removed, and ends as
    /// its uninterrupted run. Refused, exit 2: the folder without --resume (saying so), another setting than a kept
    /// member's (named with its checkpoint), the training file named otherwise, a flipped label under the same file name
    /// (best.json's training_checksum), a single model's folder resumed as an ensemble, a pretraining run's folder; an
    /// ended run is left as it is.
    func testAnInterruptedEnsembleResumesToTheFilesOfAnUninterruptedRun() throws {
        let dir = try scratchDirectory("finetune-resume")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let cladmop = releaseOrDebugProduct("cladmop")
        try writeSyntheticStore(dir: dir)
        let pre = try mpirun(np: 1, executable: cladmop, arguments: syntheticPretrainArguments(dir: dir, run: dir + "/pre") + ["--set", "train.max_steps=2"],
                             timeout: 300)
        XCTAssertEqual(pre.status, 0, pre.output)
        try writeCSVSubset(from: repoRoot + "/data/top/phase_I_train.csv", rows: 0..<24, to: dir + "/train.csv")
        try writeCSVSubset(from: repoRoot + "/data/top/phase_I_valid.csv", rows: 0..<12, to: dir + "/valid.csv")
        let sets = smallFinetuneSettings(dir: dir, ["finetune.epochs=2", "finetune.folds=3", "finetune.ensemble=1", "finetune.select_latest=0"])
        func finetune(_ run: String, _ extra: [String] = []) throws -> (status: Int32, output: String, seconds: Double) {
            try mpirun(np: 2, executable: cladmop, arguments: ["finetune", "--pretrained", dir + "/pre", "--train", dir + "/train.csv",
                                                              "--valid", dir + "/valid.csv", "--run-dir", dir + "/" + run] + sets + extra, timeout: 600)
        }
        let whole = try finetune("whole")
        XCTAssertEqual(whole.status, 0, whole.output)
        // What a kill during member 3's second epoch leaves.
        XCTAssertEqual(try runCommand("/bin/cp", ["-a", dir + "/whole", dir + "/cut"], timeout: 60).status, 0)
        for gone in ["best.json", "metrics.jsonl", "members/3/best.json", "members/3/checkpoints", "members/3/finetune.svg", "members/3/finetune.png"] {
            try? FileManager.default.removeItem(atPath: dir + "/cut/" + gone)
        }
        let firstEpoch = try String(contentsOfFile: dir + "/whole/members/3/metrics.jsonl", encoding: .utf8).split(separator: "\n")[0]
        try (firstEpoch + "\n").write(toFile: dir + "/cut/members/3/metrics.jsonl", atomically: true, encoding: .utf8)

        let refused = try finetune("cut")
        XCTAssertEqual(refused.status, 2, refused.output)
        XCTAssertTrue(refused.output.contains("continue it with --resume auto"), refused.output)
        let other = try finetune("cut", ["--set", "finetune.head_lr=0.02", "--resume", "auto"])
        XCTAssertEqual(other.status, 2, other.output)
        XCTAssertTrue(other.output.contains("cut/members/1/checkpoints/step-") && other.output.contains("finetune.head_lr: 0.001 in the checkpoint, 0.02 now"), other.output)

        // The same file named otherwise: the members of one run name the same files (scoring compares them).
        let spelled = try mpirun(np: 2, executable: cladmop, arguments: ["finetune", "--pretrained", dir + "/pre", "--train", dir + "/./train.csv",
                                                                        "--valid", dir + "/valid.csv", "--run-dir", dir + "/cut", "--resume", "auto"] + sets, timeout: 600)
        XCTAssertEqual(spelled.status, 2, spelled.output)
        XCTAssertTrue(spelled.output.contains("this run names \(dir)/./train.csv"), spelled.output)

        let resumed = try finetune("cut", ["--resume", "auto"])
        XCTAssertEqual(resumed.status, 0, resumed.output)
        XCTAssertTrue(resumed.output.contains("member 1 finished before the interruption: kept") && resumed.output.contains("member 2 finished before the interruption: kept")
                      && resumed.output.contains("2 of 3 member(s) kept, 1 to train")
                      && resumed.output.contains("member 3 had not finished: its folder removed, trained again"), resumed.output)
        func bytes(_ path: String) -> Data? { FileManager.default.contents(atPath: path) }
        for file in ["best.json", "metrics.jsonl", "folds.csv"] + (1...3).flatMap { ["members/\($0)/metrics.jsonl", "members/\($0)/best.json"] } {
            XCTAssertNotNil(bytes(dir + "/whole/" + file), file)
            XCTAssertEqual(bytes(dir + "/cut/" + file), bytes(dir + "/whole/" + file), file)
        }
        for m in 1...3 {
            let folder = "/members/\(m)/checkpoints"
            let names = try FileManager.default.contentsOfDirectory(atPath: dir + "/whole" + folder).filter { $0.hasSuffix(".json") }.sorted()
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir + "/cut" + folder).filter { $0.hasSuffix(".json") }.sorted(), names)
            for name in names {
                func checksum(_ run: String) throws -> String? {
                    (try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/" + run + folder + "/" + name))) as? [String: Any])?["tensorsChecksum"] as? String
                }
                XCTAssertEqual(try checksum("cut"), try checksum("whole"), "member \(m) \(name)")
            }
        }
        // An ended run: nothing to do, nothing written.
        let before = bytes(dir + "/cut/best.json")
        let ended = try finetune("cut", ["--resume", "auto"])
        XCTAssertEqual(ended.status, 0, ended.output)
        XCTAssertTrue(ended.output.contains("ended (its best.json is written); nothing to do"), ended.output)
        XCTAssertEqual(bytes(dir + "/cut/best.json"), before)
        // A new folder: a fresh run (positive control). A pretraining run's folder is no fine-tuning run to continue.
        let fresh = try finetune("fresh", ["--resume", "auto"])
        XCTAssertEqual(fresh.status, 0, fresh.output)
        XCTAssertEqual(bytes(dir + "/fresh/metrics.jsonl"), bytes(dir + "/whole/metrics.jsonl"))
        let intoPre = try mpirun(np: 1, executable: cladmop, arguments: ["finetune", "--pretrained", "none", "--train", dir + "/train.csv",
                                                                        "--valid", dir + "/valid.csv", "--run-dir", dir + "/pre", "--resume", "auto"] + sets, timeout: 120)
        XCTAssertEqual(intoPre.status, 2, intoPre.output)
        XCTAssertTrue(intoPre.output.contains("holds a pretraining run") && intoPre.output.contains("pretrain --resume auto continues this one"), intoPre.output)

        // A flipped label under the same file name: the same ids, not what was learnt (best.json's training_checksum). Last
        // of the ensemble's cases: the store featurizes the edited file again, which may round its vectors otherwise.
        XCTAssertEqual(try runCommand("/bin/cp", ["-a", dir + "/whole", dir + "/cut2"], timeout: 60).status, 0)
        for gone in ["best.json", "metrics.jsonl", "members/3"] { try FileManager.default.removeItem(atPath: dir + "/cut2/" + gone) }
        try writeCSVSubset(from: repoRoot + "/data/top/phase_I_train.csv", rows: 0..<24, to: dir + "/train.csv", labelColumn: .flip(row: 5))
        let flipped = try finetune("cut2", ["--resume", "auto"])
        XCTAssertEqual(flipped.status, 2, flipped.output)
        XCTAssertTrue(flipped.output.contains("cut2/members/1/checkpoints/step-") && flipped.output.contains("differs in content (training_checksum"), flipped.output)
        try writeCSVSubset(from: repoRoot + "/data/top/phase_I_train.csv", rows: 0..<24, to: dir + "/train.csv")

        // A single model (TensorBoard on): nothing is kept; its attempt's files go, and it ends as the uninterrupted run.
        let single = ["--set", "finetune.folds=0", "--set", "log.tensorboard=true"]
        XCTAssertEqual(try finetune("single", single).status, 0)
        XCTAssertEqual(try runCommand("/bin/cp", ["-a", dir + "/single", dir + "/single-cut"], timeout: 60).status, 0)
        for gone in ["best.json", "finetune.svg", "finetune.png"] { try? FileManager.default.removeItem(atPath: dir + "/single-cut/" + gone) }
        let asEnsemble = try finetune("single-cut", ["--resume", "auto"])
        XCTAssertEqual(asEnsemble.status, 2, asEnsemble.output)
        XCTAssertTrue(asEnsemble.output.contains("single-cut/checkpoints: holds a single model's checkpoints, not an ensemble's"), asEnsemble.output)
        let again = try finetune("single-cut", single + ["--resume", "auto"])
        XCTAssertEqual(again.status, 0, again.output)
        XCTAssertTrue(again.output.contains("a single model keeps nothing before its end; removed metrics.jsonl, checkpoints, events.out.tfevents."), again.output)
        for file in ["best.json", "metrics.jsonl"] { XCTAssertEqual(bytes(dir + "/single-cut/" + file), bytes(dir + "/single/" + file), file) }
        let events = try FileManager.default.contentsOfDirectory(atPath: dir + "/single-cut").filter { $0.hasPrefix("events.out.tfevents.") }
        XCTAssertEqual(events.count, 1, "\(events)")
    }
}

final class PretrainingCorpusTrialsTests: XCTestCase {
    /// Scoring trials of the pretraining's SCT corpus (successful trials the model was pretrained on) is said, and
    /// counted in eval.json's `sct_trials`, for the pretraining checkpoint and for a model fine-tuned from it; trials
    /// outside the corpus count 0 (checkpoint version 8 records the corpus's ids).
    func testEvaluateCountsTheTrialsOfThePretrainingCorpus() throws {
        let dir = try scratchDirectory("sct")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try writeCSVSubset(from: repoRoot + "/data/top/phase_I_train.csv", rows: 0..<24, to: dir + "/train.csv")
        try writeCSVSubset(from: repoRoot + "/data/top/phase_I_valid.csv", rows: 0..<12, to: dir + "/valid.csv")
        try writeCSVSubset(from: repoRoot + "/data/top/toy_test.csv", rows: 0..<10, to: dir + "/unseen.csv")
        let successes = try readTrials(paths: [dir + "/valid.csv"]).0.filter { $0.label == 1 }.count
        let cladmop = releaseOrDebugProduct("cladmop")
        let data = ["--set", "encoder.model_dir=\(repoRoot)/models/all-MiniLM-L6-v2",
                    "--set", "data.icd_hierarchy=\(repoRoot)/data/icd10/icd10cm_2025_hierarchy.tsv",
                    "--set", "data.files=[\(dir)/train.csv, \(dir)/valid.csv]", "--set", "data.feature_store=\(dir)/f.store"]
        for args in [["featurize", "--config", repoRoot + "/configs/smoke.yaml"] + data,
                     ["pretrain", "--config", repoRoot + "/configs/smoke.yaml", "--run-dir", dir + "/pre", "--set", "train.max_steps=2",
                      "--set", "loss.logit_scale=learnable", "--set", "loss.tau=0.30000000000000004"] + data,
                     ["finetune", "--pretrained", dir + "/pre", "--train", dir + "/train.csv", "--valid", dir + "/valid.csv", "--run-dir", dir + "/ft"]
                        + smallFinetuneSettings(dir: dir, ["finetune.epochs=1", "finetune.ensemble=1", "finetune.select_latest=0", "model.heads=8"])] {
            let r = try mpirun(np: 1, executable: cladmop, arguments: args, timeout: 600)
            XCTAssertEqual(r.status, 0, r.output)
            guard args[0] == "finetune" else { continue }
            // The pretrained checkpoint fixes the model, its loss and its input limits: the run records its values (smoke.yaml's and
            // the pretraining's --set), not those of finetune-phase1.yaml (dim 64, 4 heads, 96 sentences, a fixed scale, tau 0.6)
            // or a --set, and says so.
            XCTAssertTrue(r.output.contains("warning: --set model.heads: no effect; the pretrained checkpoint") && r.output.contains("model.heads = 2 (this configuration: 8)"), r.output)
            XCTAssertTrue(r.output.contains("model.dim = 16 (this configuration: 64)") && r.output.contains("data.max_sentences = 8 (this configuration: 96)")
                          && r.output.contains("loss.logit_scale = \"learnable\" (this configuration: \"fixed\")"), r.output)
            let recorded = try String(contentsOfFile: dir + "/ft/config.yaml", encoding: .utf8)
            for line in ["  dim: 16\n", "  heads: 2\n", "  max_sentences: 8\n", "  logit_scale: \"learnable\"\n", "  tau: 0.30000000000000004\n"] {
                XCTAssertTrue(recorded.contains(line), "\(line) in \(recorded)")
            }
            let checkpoint = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/ft/checkpoints/step-00000001.json"))) as! [String: Any]
            let spec = checkpoint["spec"] as? [String: Any], model = spec?["model"] as? [String: Any], data = spec?["data"] as? [String: Any]
            XCTAssertEqual(model?["dim"] as? Int, 16); XCTAssertEqual(data?["maxSentences"] as? Int, 8)
        }
        for (checkpoint, csv, expected) in [("pre", "valid.csv", successes), ("ft", "valid.csv", successes), ("ft", "unseen.csv", 0)] {
            let json = dir + "/\(checkpoint)-\(csv).json"
            let r = try mpirun(np: 1, executable: cladmop, arguments: ["evaluate", "--checkpoint", dir + "/" + checkpoint, "--data", dir + "/" + csv,
                                                                      "--json", json] + data, timeout: 600)
            XCTAssertEqual(r.status, 0, r.output)
            let report = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: json))) as! [String: Any]
            XCTAssertEqual(report["sct_trials"] as? Int, expected, "\(checkpoint) on \(csv)")
            XCTAssertEqual(r.output.contains("were in the SCT corpus"), expected > 0, r.output)
        }
        XCTAssertGreaterThan(successes, 0)
    }
}

/// A model that diverged is never a result. Its weights are blown up on purpose (`CLADMOP_FAULT=diverge:STEP`: every
/// parameter times 1e30 after that step, finite, so no checkpoint check refuses them). At the last step the NaN
/// validation loss ends the run with an error and no checkpoint (it had been logged as perfect retrieval and the run
/// called done); a checkpoint written between evaluations is refused by predict, evaluate and embed (NaN scores had
/// been written, and ranked as numbers), and fine-tuning from it names it (it had blamed the fine-tuning rates).
final class DivergedModelTests: XCTestCase {
    func testADivergedModelIsNeverReportedAsAResult() throws {
        let dir = try scratchDirectory("diverged")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let cladmop = releaseOrDebugProduct("cladmop")
        try writeSyntheticStore(dir: dir)
        func pretrain(_ run: String, diverge step: Int, _ extra: [String]) throws -> (status: Int32, output: String, seconds: Double) {
            try mpirun(np: 2, executable: cladmop, arguments: syntheticPretrainArguments(dir: dir, run: run) + extra.flatMap { ["--set", $0] },
                       environment: ["CLADMOP_FAULT": "diverge:\(step)"], timeout: 300)
        }
        // The last step (2 of 2): the evaluation after it finds the loss NaN.
        let last = try pretrain(dir + "/last", diverge: 2, ["train.max_steps=2"])
        XCTAssertEqual(last.status, 3, last.output)
        // NaN or infinite, as the kernels carry the overflow.
        XCTAssertTrue(["nan", "inf"].contains { last.output.contains("validation loss is \($0) after step 2: the model diverged; lower optimizer.lr") }, last.output)
        XCTAssertFalse(last.output.contains("pretrain: done"), last.output)
        XCTAssertEqual((try? FileManager.default.contentsOfDirectory(atPath: dir + "/last/checkpoints"))?.filter { $0.hasSuffix(".json") } ?? [], [])
        let records = try String(contentsOfFile: dir + "/last/metrics.jsonl", encoding: .utf8).split(separator: "\n")
            .compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        let evals = records.filter { $0["type"] as? String == "eval" }
        XCTAssertEqual(evals.count, 1)
        XCTAssertEqual(evals.first?["val_top1_c2dm"] as? Double, 0, "NaN scores count against retrieval, not for it")
        XCTAssertNil(evals.first?["val_loss"] as? Double)
        // Step 4 ends epoch 1, which is not evaluated (eval_every 2): its checkpoint is written; step 5's loss stops the run.
        let mid = try pretrain(dir + "/mid", diverge: 4, ["train.max_steps=8", "train.epochs=2", "train.eval_every=2"])
        XCTAssertEqual(mid.status, 3, mid.output)
        XCTAssertTrue(mid.output.contains("loss is nan at step 5"), mid.output)
        let checkpoint = dir + "/mid/checkpoints/step-00000004.json"
        XCTAssertTrue(FileManager.default.fileExists(atPath: checkpoint))
        try writeCSVSubset(from: repoRoot + "/data/top/phase_I_train.csv", rows: 0..<24, to: dir + "/train.csv")
        try writeCSVSubset(from: repoRoot + "/data/top/phase_I_valid.csv", rows: 0..<12, to: dir + "/valid.csv")
        let sets = smallFinetuneSettings(dir: dir, ["finetune.epochs=1", "finetune.ensemble=1", "finetune.select_latest=0"])
        for (command, output) in [("predict", "--output"), ("evaluate", "--json"), ("embed", "--output")] {
            let r = try mpirun(np: 2, executable: cladmop, arguments: [command, "--checkpoint", checkpoint, "--data", dir + "/valid.csv",
                                                                      output, dir + "/\(command).out"] + sets, timeout: 600)
            XCTAssertEqual(r.status, 2, r.output)
            XCTAssertTrue(r.output.contains("\(checkpoint): its model") && r.output.contains("of the 12 trials not finite): the weights of a run that diverged"), r.output)
            XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/\(command).out"), command)
        }
        let ft = try mpirun(np: 2, executable: cladmop, arguments: ["finetune", "--pretrained", checkpoint, "--train", dir + "/train.csv",
                                                                   "--valid", dir + "/valid.csv", "--run-dir", dir + "/ft"] + sets, timeout: 600)
        XCTAssertEqual(ft.status, 2, ft.output)
        XCTAssertTrue(ft.output.contains("step-00000004.json: fine-tuning loss is nan on the first batch of \(dir)/ft, before any update: this pretrained model gives non-finite outputs"), ft.output)
        XCTAssertFalse(ft.output.contains("lower finetune.head_lr"), ft.output)
    }
}

/// SPEC 6's zero-shot evaluation of a pretrained model: besides the pair-matching score as the success score,
/// retrieval accuracy in both directions. `evaluate` of a pretraining checkpoint reports it among the successful
/// trials of --data (the pairs pretraining contrasts), in the table and in --json's "retrieval"; here checked against
/// a ranking computed in the test from `embed`'s f_C and f_DM of the same trials (a separate command and code path).
final class ZeroShotRetrievalTests: XCTestCase {
    func testZeroShotEvaluationReportsRetrievalAsAnIndependentRanking() throws {
        let dir = try scratchDirectory("zero-shot-retrieval")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let cladmop = releaseOrDebugProduct("cladmop")
        try writeSyntheticStore(dir: dir)
        let pre = try mpirun(np: 1, executable: cladmop, arguments: syntheticPretrainArguments(dir: dir, run: dir + "/pre") + ["--set", "train.max_steps=3"],
                             timeout: 300)
        XCTAssertEqual(pre.status, 0, pre.output)
        try writeCSVSubset(from: repoRoot + "/data/top/phase_I_valid.csv", rows: 0..<40, to: dir + "/valid.csv")
        let sets = smallFinetuneSettings(dir: dir, [])
        let ev = try mpirun(np: 2, executable: cladmop, arguments: ["evaluate", "--checkpoint", dir + "/pre", "--data", dir + "/valid.csv",
                                                                   "--json", dir + "/zero.json"] + sets, timeout: 600)
        XCTAssertEqual(ev.status, 0, ev.output)
        let em = try mpirun(np: 1, executable: cladmop, arguments: ["embed", "--checkpoint", dir + "/pre", "--data", dir + "/valid.csv",
                                                                   "--output", dir + "/e.safetensors", "--level", "fine"] + sets, timeout: 600)
        XCTAssertEqual(em.status, 0, em.output)
        // The reference: cosine scores (the smoke pretraining normalizes) of the successful trials, each true pair ranked
        // among its row (criteria -> DM) and its column (DM -> criteria); a tie counts against it.
        let e = try SafetensorsFile(path: dir + "/e.safetensors")
        let fC = try e.floats("f_c"), fDM = try e.floats("f_dm"), width = try XCTUnwrap(e.tensors["f_c"]?.shape.last)
        let labels = try readTrials(paths: [dir + "/valid.csv"]).0.map { $0.label ?? -1 }
        let rows = labels.indices.filter { labels[$0] == 1 }
        XCTAssertGreaterThan(rows.count, 5)
        func unit(_ x: [Float], _ i: Int) -> [Double] {
            let v = (0..<width).map { Double(x[i * width + $0]) }, norm = v.map { $0 * $0 }.reduce(0, +).squareRoot()
            return v.map { $0 / norm }
        }
        let a = rows.map { unit(fC, $0) }, b = rows.map { unit(fDM, $0) }
        let z = a.map { ai in b.map { bj in zip(ai, bj).map(*).reduce(0, +) } }
        let n = rows.count
        let rowRank = (0..<n).map { i in (0..<n).filter { $0 != i && z[i][$0] >= z[i][i] }.count }
        let colRank = (0..<n).map { j in (0..<n).filter { $0 != j && z[$0][j] >= z[j][j] }.count }
        func share(_ ranks: [Int], _ k: Int) -> Double { Double(ranks.filter { $0 < k }.count) / Double(n) }
        let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/zero.json"))) as? [String: Any])
        XCTAssertEqual(json["zero_shot"] as? Bool, true)
        let r = try XCTUnwrap(json["retrieval"] as? [String: Any], "\(json.keys.sorted())")
        XCTAssertEqual(r["trials"] as? Int, n)
        for (key, expected) in [("top1_c2dm", share(rowRank, 1)), ("top5_c2dm", share(rowRank, 5)), ("top1_dm2c", share(colRank, 1)),
                                ("top5_dm2c", share(colRank, 5)), ("chance_top1", 1 / Double(n))] {
            XCTAssertEqual(r[key] as? Double ?? -1, expected, accuracy: 1e-12, key)
        }
        XCTAssertTrue(ev.output.contains("retrieval among the \(n) successful trials (zero-shot): top-1 C->DM"), ev.output)
        // The evaluation reader (compare's) takes the key back, checked.
        XCTAssertEqual(try EvaluationReport.read(dir + "/zero.json").retrieval?.top5Dm2c, share(colRank, 5))
        // A fine-tuned model has no retrieval to report: the key is absent.
        try writeCSVSubset(from: repoRoot + "/data/top/phase_I_valid.csv", rows: 40..<60, to: dir + "/select.csv")
        let ft = try mpirun(np: 1, executable: cladmop, arguments: ["finetune", "--pretrained", dir + "/pre", "--train", dir + "/valid.csv",
                                                                   "--valid", dir + "/select.csv", "--run-dir", dir + "/ft", "--set", "finetune.epochs=1",
                                                                   "--set", "finetune.ensemble=1", "--set", "finetune.select_latest=0"] + sets, timeout: 600)
        XCTAssertEqual(ft.status, 0, ft.output)
        let fev = try mpirun(np: 1, executable: cladmop, arguments: ["evaluate", "--checkpoint", dir + "/ft", "--data", dir + "/valid.csv",
                                                                    "--json", dir + "/ft.json"] + sets, timeout: 600)
        XCTAssertEqual(fev.status, 0, fev.output)
        XCTAssertNil(try EvaluationReport.read(dir + "/ft.json").retrieval)
    }
}
