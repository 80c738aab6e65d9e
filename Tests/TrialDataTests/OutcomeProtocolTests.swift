import Foundation
import NN
import Reporting
import TestSupport
import TrialData
import XCTest

/// The outcome protocol's pieces: a seed ensemble (`finetune.ensemble`) is evaluated as the mean of its members'
/// probabilities with the threshold chosen on validation; `cladmop split` is deterministic and order-free; the
/// development-test script refuses a pretrained model whose SCT held the dev tests.
/// Whether thresholds `a` and `b` cut `scores` alike (predict `score >= threshold` for the same trials), scores within
/// 2e-6 of either aside: a threshold recomputed from `predict`'s 6-decimal scores is halfway between two of them, not
/// equal to the fine-tuner's to any fixed tolerance.
func cutsAlike(_ a: Double, _ b: Double, _ scores: [Double]) -> Bool {
    scores.allSatisfy { s in abs(s - a) < 2e-6 || abs(s - b) < 2e-6 || (s >= a) == (s >= b) }
}

/// The out-of-fold scores of the cross-fitted run `dir`/`run`, each trial of train.csv and valid.csv scored by
/// `cladmop predict` of the member that held its fold out (RUN/folds.csv: nctid, fold, label; one partition).
func predictedOutOfFold(dir: String, run: String = "run", cladmop: String, sets: [String], members: Int) throws -> [(id: String, fold: Int, score: Double, label: Int)] {
    var fold: [String: (fold: Int, label: Int)] = [:]
    for line in try String(contentsOfFile: dir + "/\(run)/folds.csv", encoding: .utf8).split(separator: "\n").dropFirst() {
        let f = line.split(separator: ","); fold[String(f[0])] = (Int(f[1])!, Int(f[2])!)
    }
    var oof: [(id: String, fold: Int, score: Double, label: Int)] = []
    for k in 1...members {
        for file in ["train", "valid"] {
            let out = dir + "/\(run)-m\(k)-\(file).csv"
            let r = try mpirun(np: 1, executable: cladmop, arguments: ["predict", "--checkpoint", dir + "/\(run)/members/\(k)",
                                                                      "--data", dir + "/\(file).csv", "--output", out] + sets, timeout: 600)
            XCTAssertEqual(r.status, 0, r.output)
            for line in try String(contentsOfFile: out, encoding: .utf8).split(separator: "\n").dropFirst() {
                let f = line.split(separator: ","), id = String(f[0])
                if let (k2, label) = fold[id], k2 == k { oof.append((id, k, Double(f[1])!, label)) }
            }
        }
    }
    return oof
}

final class OutcomeProtocolTests: XCTestCase {
    func testEnsembleRunScoresTheMeanOfItsMembers() throws {
        let dir = try scratchDirectory("ensemble")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try writeCSVSubset(from: repoRoot + "/data/top/phase_I_train.csv", rows: 0..<24, to: dir + "/train.csv")
        try writeCSVSubset(from: repoRoot + "/data/top/phase_I_valid.csv", rows: 0..<12, to: dir + "/valid.csv")
        try writeCSVSubset(from: repoRoot + "/data/top/phase_I_valid.csv", rows: 12..<24, to: dir + "/test.csv")
        let cladmop = releaseOrDebugProduct("cladmop")
        let sets = smallFinetuneSettings(dir: dir, ["finetune.epochs=2", "log.tensorboard=false", "finetune.select_latest=0"])
        let ft = try mpirun(np: 2, executable: cladmop, arguments: ["finetune", "--pretrained", "none", "--train", dir + "/train.csv",
                                                                   "--valid", dir + "/valid.csv", "--run-dir", dir + "/run",
                                                                   "--set", "finetune.ensemble=3"] + sets, timeout: 600)
        XCTAssertEqual(ft.status, 0, ft.output)
        let best = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/run/best.json"))) as! [String: Any]
        let members = try XCTUnwrap(best["members"] as? [String])
        XCTAssertEqual(members.count, 3)
        XCTAssertEqual((best["member_epochs"] as? [Int])?.count, 3)
        for m in members { XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/run/" + m), m) }
        let threshold = try XCTUnwrap(best["threshold"] as? Double)

        func predictions(_ checkpoint: String, _ out: String) throws -> [String: Double] {
            let r = try mpirun(np: 1, executable: cladmop, arguments: ["predict", "--checkpoint", checkpoint, "--data", dir + "/test.csv",
                                                                      "--output", dir + out] + sets, timeout: 600)
            XCTAssertEqual(r.status, 0, r.output)
            var p: [String: Double] = [:]
            for line in try String(contentsOfFile: dir + out, encoding: .utf8).split(separator: "\n").dropFirst() {
                let f = line.split(separator: ","); p[String(f[0])] = Double(f[1])!
            }
            return p
        }
        let ensemble = try predictions(dir + "/run", "/ensemble.csv")
        let each = try (1...3).map { try predictions(dir + "/run/members/\($0)", "/member\($0).csv") }
        XCTAssertEqual(ensemble.count, 12)
        for (id, p) in ensemble {
            let mean = each.map { $0[id]! }.reduce(0, +) / 3
            XCTAssertEqual(p, mean, accuracy: 2e-6, id)
        }
        // The members differ (different seeds), so the mean is not any one of them.
        XCTAssertNotEqual(each[0], each[1])

        // evaluate --json of the run folder reports at the ensemble's threshold, with the surface's keys.
        let ev = try mpirun(np: 2, executable: cladmop, arguments: ["evaluate", "--checkpoint", dir + "/run", "--data", dir + "/test.csv",
                                                                   "--json", dir + "/eval.json"] + sets, timeout: 600)
        XCTAssertEqual(ev.status, 0, ev.output)
        XCTAssertTrue(ev.output.contains("ensemble of 3 members"), ev.output)
        let report = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/eval.json"))) as! [String: Any]
        XCTAssertEqual(report["threshold"] as? Double, threshold)
        for key in ["roc_auc", "pr_auc", "f1", "f1_at_threshold"] { XCTAssertNotNil((report[key] as? [String: Any])?["mean"], key) }

        // A best.json whose members are not a list of paths is refused, naming the file and the key.
        try #"{"checkpoint": "members/1/best.json", "members": "members/1", "threshold": 0.5}"#
            .write(toFile: dir + "/run/best.json", atomically: true, encoding: .utf8)
        let bad = try mpirun(np: 1, executable: cladmop, arguments: ["evaluate", "--checkpoint", dir + "/run", "--data", dir + "/test.csv"] + sets,
                             timeout: 120)
        XCTAssertEqual(bad.status, 2, bad.output)
        XCTAssertTrue(bad.output.contains("best.json") && bad.output.contains("members"), bad.output)
    }

    /// SPEC 3.2: evaluate scores "a labelled CSV or feature set". A store featurized from a CSV gives the CSV's
    /// evaluation to every digit (one and two ranks, out of fold too), predict reads it alike, and a store that cannot
    /// stand for the data is refused: another encoder's (a synthetic store), or one holding a trial twice.
    func testEvaluateScoresAFeatureStoreAsItsCSV() throws {
        let small = try SmallFinetuning("storedata", ["finetune.epochs=1", "log.tensorboard=false", "finetune.select_latest=0", "finetune.ensemble=1"])
        let (dir, cladmop, sets) = (small.dir, small.cladmop, small.sets)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let ft = try small.finetune(["--set", "finetune.folds=3", "--set", "finetune.threshold_confidence=0.5"], "run")
        XCTAssertEqual(ft.status, 0, ft.output)
        let feat = try mpirun(np: 2, executable: cladmop, arguments: ["featurize", "--data", dir + "/valid.csv", "--output", dir + "/valid.store"] + sets, timeout: 600)
        XCTAssertEqual(feat.status, 0, feat.output)
        func evaluation(_ data: String, np: Int, _ extra: [String] = [], _ name: String) throws -> [String: Any] {
            let out = dir + "/" + name + ".json"
            let r = try mpirun(np: np, executable: cladmop, arguments: ["evaluate", "--checkpoint", dir + "/run", "--data", data, "--json", out] + extra + sets, timeout: 600)
            XCTAssertEqual(r.status, 0, r.output)
            var json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out))) as! [String: Any]
            XCTAssertEqual(json["data"] as? String, data)
            json["data"] = nil
            return json
        }
        for (n, extra) in [[], ["--out-of-fold"]].enumerated() {
            let csv = try evaluation(dir + "/valid.csv", np: 2, extra, "csv\(n)")
            XCTAssertEqual((csv["roc_auc"] as? [String: Any])?["mean"] as? Double != nil, true, "\(csv)")
            for np in [1, 2] {
                let store = try evaluation(dir + "/valid.store", np: np, extra, "store\(n)-\(np)")
                XCTAssertEqual(NSDictionary(dictionary: store), NSDictionary(dictionary: csv), "\(extra), \(np) rank(s)")
            }
        }
        for (data, out) in [(dir + "/valid.csv", dir + "/p-csv.csv"), (dir + "/valid.store", dir + "/p-store.csv")] {
            let r = try mpirun(np: 2, executable: cladmop, arguments: ["predict", "--checkpoint", dir + "/run", "--data", data, "--output", out] + sets, timeout: 600)
            XCTAssertEqual(r.status, 0, r.output)
        }
        XCTAssertEqual(try String(contentsOfFile: dir + "/p-store.csv", encoding: .utf8), try String(contentsOfFile: dir + "/p-csv.csv", encoding: .utf8))
        // embed: the same tensors (its metadata names --data), from a member of the ensemble.
        for (data, out) in [(dir + "/valid.csv", dir + "/e-csv.safetensors"), (dir + "/valid.store", dir + "/e-store.safetensors")] {
            let r = try mpirun(np: 2, executable: cladmop, arguments: ["embed", "--checkpoint", dir + "/run", "--data", data, "--output", out] + sets, timeout: 600)
            XCTAssertEqual(r.status, 0, r.output)
        }
        let (fromCSV, fromStore) = (try SafetensorsFile(path: dir + "/e-csv.safetensors"), try SafetensorsFile(path: dir + "/e-store.safetensors"))
        XCTAssertEqual(Set(fromStore.tensors.keys), Set(fromCSV.tensors.keys))
        XCTAssertFalse(fromCSV.tensors.isEmpty)
        for name in fromCSV.tensors.keys { XCTAssertEqual(try fromStore.floats(name), try fromCSV.floats(name), name) }
        XCTAssertEqual(fromStore.metadata["nctids"], fromCSV.metadata["nctids"])

        // Refused, exit 2, naming the store: vectors of no encoder, and a trial held twice (a file and a subset of it).
        try writeSyntheticStore(dir: dir)
        try writeCSVSubset(from: dir + "/valid.csv", rows: 0..<4, to: dir + "/head.csv")
        let dup = try mpirun(np: 1, executable: cladmop, arguments: ["featurize", "--data", dir + "/valid.csv", "--data", dir + "/head.csv", "--output", dir + "/dup.store"] + sets, timeout: 600)
        XCTAssertEqual(dup.status, 0, dup.output)
        for (store, expected) in [(dir + "/s.store", "a synthetic store"), (dir + "/dup.store", "holds trial")] {
            let r = try mpirun(np: 2, executable: cladmop, arguments: ["evaluate", "--checkpoint", dir + "/run", "--data", store] + sets, timeout: 600)
            XCTAssertEqual(r.status, 2, r.output)
            XCTAssertTrue(r.output.contains("error (rank 0 of 2): \(store): ") && r.output.contains(expected), r.output)
        }
    }

    func testTemporalSelectionSelectsOnTheLatestTrainingTrials() throws {
        let dir = try scratchDirectory("tsel")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try writeCSVSubset(from: repoRoot + "/data/top/phase_I_train.csv", rows: 0..<24, to: dir + "/train.csv")
        try writeCSVSubset(from: repoRoot + "/data/top/phase_I_valid.csv", rows: 0..<12, to: dir + "/valid.csv")
        let ids = try readTrials(paths: [dir + "/train.csv"]).0.map(\.nctid).sorted()
        let sets = smallFinetuneSettings(dir: dir, ["finetune.epochs=1", "finetune.ensemble=1", "finetune.select_latest=0.25",
                                                    "log.tensorboard=false"])
        let ft = try mpirun(np: 1, executable: releaseOrDebugProduct("cladmop"),
                            arguments: ["finetune", "--pretrained", "none", "--train", dir + "/train.csv", "--valid", dir + "/valid.csv",
                                        "--run-dir", dir + "/run"] + sets, timeout: 600)
        XCTAssertEqual(ft.status, 0, ft.output)
        // 24 training trials: the latest 6 by NCT id select; the 18 earlier ones and the 12 of valid.csv train.
        XCTAssertTrue(ft.output.contains("the latest 6 trials of \(dir)/train.csv select (from \(ids[18]))"), ft.output)
        XCTAssertTrue(ft.output.contains("18 earlier ones and 12 of \(dir)/valid.csv train"), ft.output)
        XCTAssertTrue(ft.output.contains("30 training trials"), ft.output)
        XCTAssertTrue(ft.output.contains("6 validation"), ft.output)
    }

    func testCrossFittedFoldsSelectOnTheirOwnFoldAndChooseTheThresholdOutOfFold() throws {
        let small = try SmallFinetuning("folds", ["finetune.epochs=2", "log.tensorboard=false", "finetune.select_latest=0", "finetune.ensemble=1"])
        let (dir, cladmop, sets, finetune) = (small.dir, small.cladmop, small.sets, small.finetune)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let ft = try finetune(["--set", "finetune.folds=3", "--set", "finetune.threshold_confidence=0.5"], "run")
        XCTAssertEqual(ft.status, 0, ft.output)
        XCTAssertTrue(ft.output.contains("3 folds over 36 trials"), ft.output)
        XCTAssertTrue(ft.output.contains("24 training trials") && ft.output.contains("12 validation"), ft.output)

        // folds.csv: every trial of both files in exactly one fold, both classes in every fold, 12 per fold.
        let (train, _) = try readTrials(paths: [dir + "/train.csv"]), (valid, _) = try readTrials(paths: [dir + "/valid.csv"])
        let label = Dictionary((train + valid).map { ($0.nctid, $0.label!) }, uniquingKeysWith: { a, _ in a })
        var fold: [String: Int] = [:]
        for line in try String(contentsOfFile: dir + "/run/folds.csv", encoding: .utf8).split(separator: "\n").dropFirst() {
            let f = line.split(separator: ",")
            XCTAssertNil(fold[String(f[0])], "\(f[0]) in two folds")
            fold[String(f[0])] = Int(f[1])!
            XCTAssertEqual(Int(f[2]), label[String(f[0])])
        }
        XCTAssertEqual(Set(fold.keys), Set(label.keys))
        for k in 1...3 {
            let ids = fold.filter { $0.value == k }.map(\.key)
            XCTAssertEqual(ids.count, 12)
            XCTAssertEqual(Set(ids.map { label[$0]! }), [0, 1], "fold \(k) holds both classes")
        }

        // best.json: three members; its threshold and valid figure are the risk-averse F1 threshold (finetune.seed 1, the run's confidence 0.5)
        // and the PR-AUC of the out-of-fold scores (member k's predictions on fold k), recomputed from `cladmop predict`.
        let best = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/run/best.json"))) as! [String: Any]
        XCTAssertEqual((best["members"] as? [String])?.count, 3)
        // RUN/metrics.jsonl (a SPEC audit: an ensemble's run folder had none, only its members'): each member's records
        // as in its own log, with its number, then the ensemble's choice as best.json records it.
        let log = try String(contentsOfFile: dir + "/run/metrics.jsonl", encoding: .utf8).split(separator: "\n")
            .map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        for k in 1...3 {
            let own = try String(contentsOfFile: dir + "/run/members/\(k)/metrics.jsonl", encoding: .utf8).split(separator: "\n")
                .map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
            let mine = log.filter { $0["member"] as? Int == k }
            XCTAssertEqual(mine.count, 2, "member \(k): one record per epoch")
            XCTAssertEqual(mine.map { $0["epoch"] as? Int }, own.map { $0["epoch"] as? Int })
            XCTAssertEqual(mine.map { $0["valid_pr_auc"] as? Double }, own.map { $0["valid_pr_auc"] as? Double })
        }
        let ensemble = try XCTUnwrap(log.last)
        XCTAssertEqual(ensemble["type"] as? String, "ensemble")
        XCTAssertEqual(ensemble["members"] as? Int, 3)
        XCTAssertEqual(ensemble["out_of_fold"] as? Bool, true)
        XCTAssertEqual(ensemble["member_epochs"] as? [Int], best["member_epochs"] as? [Int])
        XCTAssertEqual(ensemble["threshold"] as? Double, best["threshold"] as? Double)
        XCTAssertEqual(ensemble["valid"] as? Double, best["valid"] as? Double)
        let oof = try predictedOutOfFold(dir: dir, cladmop: cladmop, sets: sets, members: 3)
        XCTAssertEqual(oof.count, 36)
        // predict --out-of-fold gives the same scores: each trial from the member that held it out.
        var outOfFold: [String: Double] = [:]
        for file in ["train", "valid"] {
            let out = dir + "/oof-\(file).csv"
            let r = try mpirun(np: 2, executable: cladmop, arguments: ["predict", "--checkpoint", dir + "/run", "--out-of-fold",
                                                                      "--data", dir + "/\(file).csv", "--output", out] + sets, timeout: 600)
            XCTAssertEqual(r.status, 0, r.output)
            // Its trials selected the members' epochs: said by predict as by evaluate (a probe: predict had said nothing).
            XCTAssertTrue(r.output.contains("out-of-fold figures are optimistic, not a held-out test"), r.output)
            for line in try String(contentsOfFile: out, encoding: .utf8).split(separator: "\n").dropFirst() {
                let f = line.split(separator: ","); outOfFold[String(f[0])] = Double(f[1])!
            }
        }
        XCTAssertEqual(outOfFold.count, 36)
        for t in oof { XCTAssertEqual(outOfFold[t.id]!, t.score, accuracy: 2e-6, t.id) }
        // evaluate --out-of-fold: the "new diseases" subset is relative to each trial's own member (the trials of the
        // other folds), not to the pool, which holds every trial's disease combination.
        let ev = try mpirun(np: 2, executable: cladmop, arguments: ["evaluate", "--checkpoint", dir + "/run", "--out-of-fold",
                                                                   "--data", dir + "/train.csv", "--json", dir + "/oof.json"] + sets, timeout: 600)
        XCTAssertEqual(ev.status, 0, ev.output)
        XCTAssertTrue(ev.output.contains("out of fold: each of 24 trials"), ev.output)
        let diseases = { (t: Trial) in Set(t.icdCodes.joined()).sorted().joined(separator: "|") }
        let expectedNew = train.filter { t in !(train + valid).contains { fold[$0.nctid] != fold[t.nctid] && diseases($0) == diseases(t) } }.count
        let oofReport = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/oof.json"))) as! [String: Any]
        XCTAssertGreaterThan(expectedNew, 0)
        XCTAssertEqual((oofReport["new_diseases"] as? [String: Any])?["n"] as? Int, expectedNew)
        // Not a held-out test: every trial selected the epoch of the member that scored it (in_sample_trials = n, a
        // warning), and compare says so of rows that are all out of fold (not as "in-sample": no member trained on them).
        XCTAssertEqual(oofReport["in_sample_trials"] as? Int, 24)
        XCTAssertTrue(ev.output.contains("out-of-fold figures are optimistic, not a held-out test"), ev.output)
        let compared = try mpirun(np: 1, executable: cladmop, arguments: ["compare", "--eval", "a=\(dir)/oof.json", "--eval", "b=\(dir)/oof.json"], timeout: 120)
        XCTAssertEqual(compared.status, 0, compared.output)
        XCTAssertTrue(compared.output.contains("Scored out of fold (each trial by the members that did not train on it): a, b. The trials of a, b also selected those members' epochs and the threshold: not a held-out test."), compared.output)
        XCTAssertFalse(compared.output.contains("In-sample rows"), compared.output)
        // A trial the run never saw has no out-of-fold score: exit 2 naming it and folds.csv.
        try writeCSVSubset(from: repoRoot + "/data/top/phase_I_valid.csv", rows: 12..<16, to: dir + "/unseen.csv")
        let unseen = try mpirun(np: 1, executable: cladmop, arguments: ["evaluate", "--checkpoint", dir + "/run", "--out-of-fold",
                                                                       "--data", dir + "/unseen.csv"] + sets, timeout: 600)
        XCTAssertEqual(unseen.status, 2, unseen.output)
        XCTAssertTrue(unseen.output.contains("is in no fold") && unseen.output.contains("folds.csv"), unseen.output)
        // best.json's first two members in the other order (or their folders swapped, when they kept the same epoch):
        // each checkpoint records the fold it held out, so --out-of-fold refuses (it had scored fold 1 by the member
        // that trained on it, exit 0), naming best.json.
        let bestPath = dir + "/run/best.json"
        let bestBytes = try Data(contentsOf: URL(fileURLWithPath: bestPath))
        var reordered = try XCTUnwrap(JSONSerialization.jsonObject(with: bestBytes) as? [String: Any])
        let listed = try XCTUnwrap(reordered["members"] as? [String])
        reordered["members"] = [listed[1], listed[0]] + listed.dropFirst(2)
        try JSONSerialization.data(withJSONObject: reordered).write(to: URL(fileURLWithPath: bestPath))
        let swapped = try mpirun(np: 1, executable: cladmop, arguments: ["predict", "--checkpoint", dir + "/run", "--out-of-fold",
                                                                        "--data", dir + "/valid.csv", "--output", dir + "/swapped.csv"] + sets, timeout: 600)
        XCTAssertEqual(swapped.status, 2, swapped.output)
        XCTAssertTrue(swapped.output.contains(bestPath) && swapped.output.contains("held out fold 2 of folds.csv, not fold 1"), swapped.output)
        // best.json's list cut short (a member left out): refused naming the key and the members the run wrote, with
        // --out-of-fold and without (it had scored an ensemble of 2 that the run never chose).
        var cut = try XCTUnwrap(JSONSerialization.jsonObject(with: bestBytes) as? [String: Any])
        cut["members"] = Array(try XCTUnwrap(cut["members"] as? [String]).prefix(2))
        try JSONSerialization.data(withJSONObject: cut).write(to: URL(fileURLWithPath: bestPath))
        for oofFlag in [["--out-of-fold"], []] {
            let r = try mpirun(np: 1, executable: cladmop, arguments: ["predict", "--checkpoint", dir + "/run", "--data", dir + "/valid.csv",
                                                                  "--output", dir + "/cut.csv"] + oofFlag + sets, timeout: 600)
            XCTAssertEqual(r.status, 2, r.output)
            XCTAssertTrue(r.output.contains("\(bestPath): key \"members\" lists 2 member(s)") && r.output.contains("one of 3 (finetune.folds 3"), r.output)
        }
        try bestBytes.write(to: URL(fileURLWithPath: bestPath))
        // The run's trials with their labels emptied: predict scores them (and stores them unlabelled); --out-of-fold,
        // which checks the labels against folds.csv, refuses them naming the file and line, also from that store.
        try writeCSVSubset(from: dir + "/train.csv", rows: 0..<24, to: dir + "/train-blank.csv", labelColumn: .set(""))
        let blank = try mpirun(np: 1, executable: cladmop, arguments: ["predict", "--checkpoint", dir + "/run", "--data", dir + "/train-blank.csv",
                                                                      "--output", dir + "/blank.csv"] + sets, timeout: 600)
        XCTAssertEqual(blank.status, 0, blank.output)
        for command in ["predict", "evaluate"] {
            let r = try mpirun(np: 1, executable: cladmop, arguments: [command, "--checkpoint", dir + "/run", "--out-of-fold", "--data", dir + "/train-blank.csv"]
                                   + (command == "predict" ? ["--output", dir + "/blank-oof.csv"] : []) + sets, timeout: 600)
            XCTAssertEqual(r.status, 2, r.output)
            XCTAssertTrue(r.output.contains(dir + "/train-blank.csv:2: trial NCT") && r.output.contains("has no label"), r.output)
        }
        // A seed ensemble given a cross-fitted run's folds.csv (a stale file): its members trained on every trial, so
        // --out-of-fold refuses it instead of calling in-sample scores out of fold.
        let seeds = try finetune(["--set", "finetune.ensemble=3"], "seeds")
        XCTAssertEqual(seeds.status, 0, seeds.output)
        try FileManager.default.copyItem(atPath: dir + "/run/folds.csv", toPath: dir + "/seeds/folds.csv")
        let stale = try mpirun(np: 1, executable: cladmop, arguments: ["predict", "--checkpoint", dir + "/seeds", "--out-of-fold",
                                                                      "--data", dir + "/valid.csv", "--output", dir + "/stale.csv"] + sets, timeout: 600)
        XCTAssertEqual(stale.status, 2, stale.output)
        XCTAssertTrue(stale.output.contains("not fine-tuned out of fold"), stale.output)
        let scores = oof.map(\.score), labels = oof.map(\.label)
        let threshold = Metrics.riskAverseF1Threshold(scores, labels, confidence: 0.5, seed: 1)
        XCTAssertTrue(cutsAlike(try XCTUnwrap(best["threshold"] as? Double), threshold, scores), "\(String(describing: best["threshold"])) \(threshold)")
        XCTAssertTrue(ft.output.contains("over all-success in 50 % of resamples"), "finetune.threshold_confidence reached the fine-tuner: \(ft.output)")
        XCTAssertEqual(Metrics.riskAverseF1Threshold(scores.reversed(), labels.reversed(), confidence: 0.5, seed: 1), threshold,
                       "independent of the trials' order")
        XCTAssertEqual(try XCTUnwrap(best["valid"] as? Double), Metrics.averagePrecision(scores, labels), accuracy: 1e-4)

        // Folds exclude the other ways of selecting, and one fold selects nothing: exit 2 naming the key.
        for (extra, key) in [(["finetune.folds=1"], "finetune.folds"), (["finetune.folds=3", "finetune.ensemble=22"], "finetune.ensemble"),
                             (["finetune.folds=3", "finetune.select_latest=0.2"], "finetune.select_latest")] {
            let r = try finetune(extra.flatMap { ["--set", $0] }, "bad")
            XCTAssertEqual(r.status, 2, r.output)
            XCTAssertTrue(r.output.contains(key), r.output)
        }
        // More folds than failed trials: a clear error naming the files.
        let many = try finetune(["--set", "finetune.folds=30"], "many")
        XCTAssertEqual(many.status, 2, many.output)
        XCTAssertTrue(many.output.contains("finetune.folds = 30") && many.output.contains("train.csv"), many.output)
        // With folds only the pool needs both classes: a validation file of successes only is pooled and cut as
        // usual; without folds the same file is refused, naming it.
        try writeCSVSubset(from: repoRoot + "/data/top/phase_I_valid.csv", rows: 12..<40, to: dir + "/successes.csv", label: 1)
        func withSuccesses(_ extra: [String], _ run: String) throws -> (status: Int32, output: String, seconds: Double) {
            try mpirun(np: 2, executable: cladmop, arguments: ["finetune", "--pretrained", "none", "--train", dir + "/train.csv",
                                                              "--valid", dir + "/successes.csv", "--run-dir", dir + "/" + run] + sets + extra,
                       timeout: 600)
        }
        let pooled = try withSuccesses(["--set", "finetune.folds=3"], "pooled")
        XCTAssertEqual(pooled.status, 0, pooled.output)
        XCTAssertTrue(pooled.output.contains("3 folds over"), pooled.output)
        let single = try withSuccesses([], "single")
        XCTAssertEqual(single.status, 2, single.output)
        XCTAssertTrue(single.output.contains("successes.csv") && single.output.contains("only one class"), single.output)

        // Repeated cross-fitting (finetune.ensemble 2 with 3 folds): exactly the members of the runs with finetune.seed 1
        // (`run`) and 2, one after the other; each trial's out-of-fold score is the mean of the two members that held
        // it out, and the threshold is chosen on those means.
        let second = try finetune(["--set", "finetune.folds=3", "--set", "finetune.threshold_confidence=0.5", "--set", "finetune.seed=2"], "seed2")
        XCTAssertEqual(second.status, 0, second.output)
        let repeated = try finetune(["--set", "finetune.folds=3", "--set", "finetune.threshold_confidence=0.5", "--set", "finetune.ensemble=2"], "repeated")
        XCTAssertEqual(repeated.status, 0, repeated.output)
        XCTAssertTrue(repeated.output.contains("2 partitions (finetune.ensemble), 6 members"), repeated.output)
        let foldLines = { (run: String) in try String(contentsOfFile: dir + "/\(run)/folds.csv", encoding: .utf8).split(separator: "\n").dropFirst().map(String.init) }
        let shifted = try foldLines("seed2").map { line in
            let f = line.split(separator: ","); return "\(f[0]),\(Int(f[1])! + 3),\(f[2])"
        }
        XCTAssertEqual(try foldLines("repeated"), try foldLines("run") + shifted, "folds.csv: each trial once per partition")
        XCTAssertNotEqual(try foldLines("run"), try foldLines("seed2"), "the partitions differ")
        for (m, same) in [(1, "run/members/1"), (3, "run/members/3"), (4, "seed2/members/1"), (6, "seed2/members/3")] {
            let tensors = { (member: String) throws -> Data in
                let folder = dir + "/\(member)/checkpoints"
                let name = try XCTUnwrap(try FileManager.default.contentsOfDirectory(atPath: folder).first { $0.hasSuffix(".safetensors") })
                return try Data(contentsOf: URL(fileURLWithPath: folder + "/" + name))
            }
            XCTAssertEqual(try tensors("repeated/members/\(m)"), try tensors(same), "member \(m) is \(same)")
        }
        func outOfFoldScores(_ run: String) throws -> [String: Double] {
            var scores: [String: Double] = [:]
            for file in ["train", "valid"] {
                let out = dir + "/\(run)-oof-\(file).csv"
                let r = try mpirun(np: 2, executable: cladmop, arguments: ["predict", "--checkpoint", dir + "/" + run, "--out-of-fold",
                                                                          "--data", dir + "/\(file).csv", "--output", out] + sets, timeout: 600)
                XCTAssertEqual(r.status, 0, r.output)
                for line in try String(contentsOfFile: out, encoding: .utf8).split(separator: "\n").dropFirst() {
                    let f = line.split(separator: ","); scores[String(f[0])] = Double(f[1])!
                }
            }
            return scores
        }
        let (first, secondScores, mean) = (try outOfFoldScores("run"), try outOfFoldScores("seed2"), try outOfFoldScores("repeated"))
        XCTAssertEqual(mean.count, 36)
        for (id, p) in mean { XCTAssertEqual(p, (first[id]! + secondScores[id]!) / 2, accuracy: 2e-6, id) }
        let repeatedBest = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/repeated/best.json"))) as! [String: Any]
        XCTAssertEqual((repeatedBest["members"] as? [String])?.count, 6)
        XCTAssertEqual(repeatedBest["partitions"] as? Int, 2)
        let ids = mean.keys.sorted()
        XCTAssertTrue(cutsAlike(try XCTUnwrap(repeatedBest["threshold"] as? Double),
                                Metrics.riskAverseF1Threshold(ids.map { mean[$0]! }, ids.map { label[$0]! }, confidence: 0.5, seed: 1), ids.map { mean[$0]! }))
        XCTAssertEqual(try XCTUnwrap(repeatedBest["valid"] as? Double), Metrics.averagePrecision(ids.map { mean[$0]! }, ids.map { label[$0]! }), accuracy: 1e-4)
        // best.json's folds_checksum: the same assignment in another order, with CR LF, reads the same; the folds.csv of
        // the seed-2 run (the same shape) beside the seed-1 run is refused (it would score trials with members that
        // trained on them).
        let original = try String(contentsOfFile: dir + "/repeated/folds.csv", encoding: .utf8)
        try ("nctid,fold,label\r\n" + foldLines("repeated").reversed().joined(separator: "\r\n") + "\r\n")
            .write(toFile: dir + "/repeated/folds.csv", atomically: true, encoding: .utf8)
        XCTAssertEqual(try outOfFoldScores("repeated"), mean)
        try original.write(toFile: dir + "/repeated/folds.csv", atomically: true, encoding: .utf8)
        try FileManager.default.removeItem(atPath: dir + "/run/folds.csv")
        try FileManager.default.copyItem(atPath: dir + "/seed2/folds.csv", toPath: dir + "/run/folds.csv")
        let stolen = try mpirun(np: 1, executable: cladmop, arguments: ["predict", "--checkpoint", dir + "/run", "--out-of-fold",
                                                                       "--data", dir + "/valid.csv", "--output", dir + "/stolen.csv"] + sets, timeout: 600)
        XCTAssertEqual(stolen.status, 2, stolen.output)
        XCTAssertTrue(stolen.output.contains("\(dir)/run/folds.csv") && stolen.output.contains("folds_checksum"), stolen.output)
        // A folds.csv that lists a trial twice in one partition is refused, naming the file and the trial.
        var broken = try foldLines("repeated")
        let moved = broken[0].split(separator: ",")
        let again = try XCTUnwrap(broken.indices.first { $0 > 0 && broken[$0].hasPrefix(moved[0] + ",") })     // its second partition's line
        broken[again] = "\(moved[0]),\(Int(moved[1])! % 3 + 1),\(moved[2])"
        try ("nctid,fold,label\n" + broken.joined(separator: "\n") + "\n").write(toFile: dir + "/repeated/folds.csv", atomically: true, encoding: .utf8)
        let twice = try mpirun(np: 1, executable: cladmop, arguments: ["predict", "--checkpoint", dir + "/repeated", "--out-of-fold",
                                                                      "--data", dir + "/valid.csv", "--output", dir + "/twice.csv"] + sets, timeout: 600)
        XCTAssertEqual(twice.status, 2, twice.output)
        XCTAssertTrue(twice.output.contains("folds.csv") && twice.output.contains(String(moved[0])) && twice.output.contains("exactly one fold of each partition"), twice.output)
        // The first trial in one partition only (the count comes from best.json's partitions, not from the first trial).
        var short = try foldLines("repeated")
        short.remove(at: again)
        try ("nctid,fold,label\n" + short.joined(separator: "\n") + "\n").write(toFile: dir + "/repeated/folds.csv", atomically: true, encoding: .utf8)
        let once = try mpirun(np: 1, executable: cladmop, arguments: ["predict", "--checkpoint", dir + "/repeated", "--out-of-fold",
                                                                     "--data", dir + "/valid.csv", "--output", dir + "/once.csv"] + sets, timeout: 600)
        XCTAssertEqual(once.status, 2, once.output)
        XCTAssertTrue(once.output.contains("folds.csv") && once.output.contains("\(moved[0]) is in 1 fold(s), the run has 2 partition(s)"), once.output)
        // A best.json whose partitions do not divide its members is refused, naming the file and the key.
        var edited = repeatedBest
        edited["partitions"] = 4
        try JSONSerialization.data(withJSONObject: edited).write(to: URL(fileURLWithPath: dir + "/repeated/best.json"))
        let four = try mpirun(np: 1, executable: cladmop, arguments: ["predict", "--checkpoint", dir + "/repeated", "--out-of-fold",
                                                                     "--data", dir + "/valid.csv", "--output", dir + "/four.csv"] + sets, timeout: 600)
        XCTAssertEqual(four.status, 2, four.output)
        XCTAssertTrue(four.output.contains("best.json") && four.output.contains("\"partitions\" must be"), four.output)
        edited["partitions"] = true      // JSON true is not the number 1
        try JSONSerialization.data(withJSONObject: edited).write(to: URL(fileURLWithPath: dir + "/repeated/best.json"))
        let yes = try mpirun(np: 1, executable: cladmop, arguments: ["predict", "--checkpoint", dir + "/repeated", "--out-of-fold",
                                                                    "--data", dir + "/valid.csv", "--output", dir + "/yes.csv"] + sets, timeout: 600)
        XCTAssertEqual(yes.status, 2, yes.output)
        XCTAssertTrue(yes.output.contains("\"partitions\" must be"), yes.output)
        // --overwrite deletes the previous run's members/: an input inside it is refused before anything is removed.
        try FileManager.default.copyItem(atPath: dir + "/valid.csv", toPath: dir + "/repeated/members/valid.csv")
        let inside = try mpirun(np: 2, executable: cladmop, arguments: ["finetune", "--pretrained", "none", "--train", dir + "/train.csv",
                                                                       "--valid", dir + "/repeated/members/valid.csv", "--run-dir", dir + "/repeated",
                                                                       "--overwrite", "--set", "finetune.folds=3"] + sets, timeout: 600)
        XCTAssertEqual(inside.status, 2, inside.output)
        XCTAssertTrue(inside.output.contains("--valid lies in \(dir)/repeated/members, which --overwrite deletes"), inside.output)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/repeated/members/valid.csv"))
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/repeated/members/6"), "nothing removed")
    }

    /// `finetune.epoch_selection: pooled`: every member keeps one epoch, the first best of the out-of-fold PR-AUC by epoch
    /// (logged). References: each member's saved checkpoint scores its own fold with the PR-AUC its metrics.jsonl
    /// recorded at that epoch (`cladmop predict` on the saved files), and best.json's figure is the PR-AUC of
    /// `predict --out-of-fold`; members train as in a run with per-member selection (the same metrics.jsonl), and a
    /// member that selected the same epoch there saved the same tensors.
    /// `finetune --report-trials`: trials to report train the members of the other folds but never select an epoch or
    /// set the threshold, so `evaluate --out-of-fold` scores them with members that neither trained nor selected on
    /// them (in_sample_trials 0). References: `cladmop predict` of each member on its fold, the selection figures and
    /// the threshold recomputed without the report trials.
    func testReportTrialsTrainOtherFoldsButNeverSelect() throws {
        let small = try SmallFinetuning("report", ["finetune.epochs=2", "log.tensorboard=false", "finetune.select_latest=0", "finetune.ensemble=1"])
        let (dir, cladmop, sets, finetune) = (small.dir, small.cladmop, small.sets, small.finetune)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try writeCSVSubset(from: repoRoot + "/data/top/phase_I_train.csv", rows: 18..<24, to: dir + "/report.csv")
        let reported = Set(try readTrials(paths: [dir + "/report.csv"]).0.map(\.nctid))
        // Without folds every selecting trial is --valid's: refused.
        let plain = try finetune(["--report-trials", dir + "/report.csv"], "plain")
        XCTAssertEqual(plain.status, 2, plain.output)
        XCTAssertTrue(plain.output.contains("--report-trials needs finetune.folds >= 2"), plain.output)
        let ft = try finetune(["--set", "finetune.folds=3", "--set", "finetune.threshold_confidence=0.5", "--report-trials", dir + "/report.csv"], "run")
        XCTAssertEqual(ft.status, 0, ft.output)
        XCTAssertTrue(ft.output.contains("6 trial(s) of \(dir)/report.csv (--report-trials) train the members of the other folds but never select"), ft.output)
        XCTAssertTrue(ft.output.contains("24 training trials"), "every trial of the other folds trains, the report trials too: \(ft.output)")

        // Out-of-fold scores (member k on fold k, from predict), each member's own fold kept apart by report or not.
        let oof = try predictedOutOfFold(dir: dir, cladmop: cladmop, sets: sets, members: 3)
        for k in 1...3 {
            // The member's kept epoch was chosen on its fold less the report trials: its record there is their PR-AUC.
            let mine = oof.filter { $0.fold == k && !reported.contains($0.id) }
            let memberBest = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/run/members/\(k)/best.json"))) as! [String: Any]
            XCTAssertEqual(try XCTUnwrap(memberBest["valid"] as? Double), Metrics.averagePrecision(mine.map(\.score), mine.map(\.label)), accuracy: 1e-4,
                           "member \(k) selected on its fold without the report trials")
        }
        XCTAssertEqual(oof.count, 36)
        let choosing = oof.filter { !reported.contains($0.id) }
        XCTAssertEqual(choosing.count, 30)
        let best = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/run/best.json"))) as! [String: Any]
        let threshold = Metrics.riskAverseF1Threshold(choosing.map(\.score), choosing.map(\.label), confidence: 0.5, seed: 1)
        XCTAssertTrue(cutsAlike(try XCTUnwrap(best["threshold"] as? Double), threshold, choosing.map(\.score)), "\(String(describing: best["threshold"])) \(threshold)")
        XCTAssertEqual(try XCTUnwrap(best["valid"] as? Double), Metrics.averagePrecision(choosing.map(\.score), choosing.map(\.label)), accuracy: 1e-4)

        // Out of fold the report trials are out of sample; the other trials selected their members' epochs.
        for (file, inSample) in [("report", 0), ("valid", 12)] {
            let ev = try mpirun(np: 1, executable: cladmop, arguments: ["evaluate", "--checkpoint", dir + "/run", "--out-of-fold", "--data",
                                                                       dir + "/\(file).csv", "--json", dir + "/\(file).json"] + sets, timeout: 600)
            XCTAssertEqual(ev.status, 0, ev.output)
            let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/\(file).json"))) as! [String: Any]
            XCTAssertEqual(json["in_sample_trials"] as? Int, inSample, file)
            XCTAssertEqual(ev.output.contains("out-of-fold figures are optimistic"), inSample > 0, ev.output)
        }
    }

    func testPooledEpochSelectionKeepsOneEpochForEveryMember() throws {
        let small = try SmallFinetuning("pooled", ["finetune.epochs=4", "log.tensorboard=false", "finetune.select_latest=0",
                                                   "finetune.ensemble=1", "finetune.folds=3"])
        let (dir, cladmop, sets, finetune) = (small.dir, small.cladmop, small.sets, small.finetune)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let member = try finetune([], "member"), pooled = try finetune(["--set", "finetune.epoch_selection=pooled"], "pooled")
        XCTAssertEqual(member.status, 0, member.output)
        XCTAssertEqual(pooled.status, 0, pooled.output)
        let line = try XCTUnwrap(pooled.output.split(separator: "\n").first { $0.contains("pooled epoch selection: out-of-fold pr_auc by epoch") })
        let byEpoch = try XCTUnwrap(line.components(separatedBy: "by epoch ").last?.components(separatedBy: ";").first)
            .components(separatedBy: ", ").map { Double($0)! }
        XCTAssertEqual(byEpoch.count, 4, String(line))
        let chosen = byEpoch.firstIndex(of: byEpoch.max()!)! + 1
        XCTAssertTrue(line.hasSuffix("every member keeps epoch \(chosen)"), String(line))
        func best(_ run: String) throws -> [String: Any] {
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/\(run)/best.json"))) as! [String: Any]
        }
        XCTAssertEqual(try best("pooled")["member_epochs"] as? [Int], [chosen, chosen, chosen])
        // The run's metrics.jsonl keeps those values (its last record), as printed (4 digits).
        let last = try XCTUnwrap(try String(contentsOfFile: dir + "/pooled/metrics.jsonl", encoding: .utf8).split(separator: "\n").last)
        let ensemble = try JSONSerialization.jsonObject(with: Data(last.utf8)) as! [String: Any]
        let kept = try XCTUnwrap(ensemble["pooled_by_epoch"] as? [Double], String(last))
        XCTAssertEqual(kept.map { String(format: "%.4f", $0) }, byEpoch.map { String(format: "%.4f", $0) })
        XCTAssertNil((try JSONSerialization.jsonObject(with: Data(try XCTUnwrap(try String(contentsOfFile: dir + "/member/metrics.jsonl", encoding: .utf8)
            .split(separator: "\n").last).utf8)) as! [String: Any])["pooled_by_epoch"], "per-member selection keeps no pooled values")
        let memberEpochs = try XCTUnwrap(try best("member")["member_epochs"] as? [Int])
        // Every trial scored by the member that held its fold out.
        let oof = try predictedOutOfFold(dir: dir, run: "pooled", cladmop: cladmop, sets: sets, members: 3)
        XCTAssertEqual(oof.count, 36)
        var checkedEpochs: [Int] = []
        defer { XCTAssertTrue(checkedEpochs.contains { $0 < 4 }, "an epoch before the last is checked: \(checkedEpochs)") }
        for k in 1...3 {
            let records = { (run: String) in
                try String(contentsOfFile: dir + "/\(run)/members/\(k)/metrics.jsonl", encoding: .utf8).split(separator: "\n")
                    .map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
            }
            let pooledRecords = try records("pooled")
            XCTAssertEqual(pooledRecords.count, 4)
            XCTAssertEqual(pooledRecords.map { $0["valid_pr_auc"] as? Double }, try records("member").map { $0["valid_pr_auc"] as? Double },
                           "member \(k) trains as with per-member selection")
            XCTAssertEqual(try best("pooled/members/\(k)")["epoch"] as? Int, chosen)
            // The checkpoint's optimizer step is its own epoch's (a stranger's probe: it was the last epoch's): the
            // member trains on the 24 trials of the other two folds, 3 batches of 8 per epoch.
            for (run, epoch) in [("pooled", chosen), ("member", memberEpochs[k - 1])] {
                checkedEpochs.append(epoch)
                let meta = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath:
                    dir + "/\(run)/members/\(k)/checkpoints/step-0000000\(epoch).json"))) as! [String: Any]
                XCTAssertEqual(meta["optimizerStep"] as? Int, 3 * epoch, "\(run) member \(k), epoch \(epoch)")
            }
            let scores = oof.filter { $0.fold == k }
            XCTAssertEqual(Metrics.averagePrecision(scores.map(\.score), scores.map(\.label)),
                           try XCTUnwrap(pooledRecords[chosen - 1]["valid_pr_auc"] as? Double), accuracy: 1e-4,
                           "member \(k)'s checkpoint is its epoch \(chosen)")
            if memberEpochs[k - 1] == chosen {
                let tensors = { (run: String) in try Data(contentsOf: URL(fileURLWithPath: dir + "/\(run)/members/\(k)/checkpoints/step-0000000\(chosen).safetensors")) }
                XCTAssertEqual(try tensors("pooled"), try tensors("member"), "member \(k) at epoch \(chosen)")
            }
        }
        let value = Metrics.averagePrecision(oof.map(\.score), oof.map(\.label))
        XCTAssertEqual(try XCTUnwrap(try best("pooled")["valid"] as? Double), value, accuracy: 1e-4)
        XCTAssertEqual(byEpoch[chosen - 1], value, accuracy: 1e-4)

        // select_metric f1: each epoch's value is the F1 of its out-of-fold scores at their own risk-averse threshold
        // (the default confidence, 0.9: on these 36 trials the F1-best cut's F1 is higher); the kept epoch's,
        // recomputed from its saved checkpoints, is best.json's figure and the largest logged.
        let f1Run = try finetune(["--set", "finetune.epoch_selection=pooled", "--set", "finetune.select_metric=f1"], "pooledf1")
        XCTAssertEqual(f1Run.status, 0, f1Run.output)
        let f1Line = try XCTUnwrap(f1Run.output.split(separator: "\n").first { $0.contains("pooled epoch selection: out-of-fold f1 at the threshold by epoch") }, f1Run.output)
        let f1ByEpoch = try XCTUnwrap(f1Line.components(separatedBy: "by epoch ").last?.components(separatedBy: ";").first)
            .components(separatedBy: ", ").map { Double($0)! }
        XCTAssertEqual(f1ByEpoch.count, 4, String(f1Line))
        let f1Chosen = f1ByEpoch.firstIndex(of: f1ByEpoch.max()!)! + 1
        XCTAssertTrue(f1Line.hasSuffix("every member keeps epoch \(f1Chosen)"), String(f1Line))
        XCTAssertEqual(try best("pooledf1")["member_epochs"] as? [Int], [f1Chosen, f1Chosen, f1Chosen])
        let f1OOF = try predictedOutOfFold(dir: dir, run: "pooledf1", cladmop: cladmop, sets: sets, members: 3)
        XCTAssertEqual(f1OOF.count, 36)
        let f1Threshold = Metrics.riskAverseF1Threshold(f1OOF.map(\.score), f1OOF.map(\.label), confidence: 0.9, seed: 1)
        let f1Best = try best("pooledf1")
        XCTAssertTrue(cutsAlike(try XCTUnwrap(f1Best["threshold"] as? Double), f1Threshold, f1OOF.map(\.score)),
                      "\(String(describing: f1Best["threshold"])) \(f1Threshold)")
        let f1Value = Metrics.f1(f1OOF.map(\.score), f1OOF.map(\.label), threshold: f1Threshold)
        XCTAssertEqual(try XCTUnwrap(f1Best["valid"] as? Double), f1Value, accuracy: 1e-4)
        XCTAssertEqual(f1ByEpoch[f1Chosen - 1], f1Value, accuracy: 1e-4)

        // An unknown value is refused, naming the key and the values it takes.
        let bad = try finetune(["--set", "finetune.epoch_selection=best"], "bad")
        XCTAssertEqual(bad.status, 2, bad.output)
        XCTAssertTrue(bad.output.contains("finetune.epoch_selection") && bad.output.contains("pooled"), bad.output)
    }

    /// `finetune --aux`: auxiliary trials train every member after the pool's, each once, and never select. Reference: the
    /// same trials appended to --train (one model, the same feature store) give the same model to the last bit;
    /// cross-fitted, the folds hold the pool only and each member trains on the other folds plus every auxiliary trial.
    func testAuxiliaryTrialsTrainEveryMemberAndNeverSelect() throws {
        let dir = try scratchDirectory("aux")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let source = repoRoot + "/data/top/phase_I_train.csv"
        try writeCSVSubset(from: source, rows: 0..<24, to: dir + "/train.csv")
        try writeCSVSubset(from: repoRoot + "/data/top/phase_I_valid.csv", rows: 0..<12, to: dir + "/valid.csv")
        try writeCSVSubset(from: repoRoot + "/data/top/phase_I_valid.csv", rows: 12..<24, to: dir + "/test.csv")
        try writeCSVSubset(from: source, rows: 24..<40, to: dir + "/aux.csv")
        // A second file whose every trial is already in train.csv (rows 0..<4), valid.csv (rows 0..<3 of phase_I_valid.csv)
        // or aux.csv (rows 24..<28): adds none.
        try writeCSVSubset(from: source, rows: 0..<4, to: dir + "/head.csv")
        try writeCSVSubset(from: repoRoot + "/data/top/phase_I_valid.csv", rows: 0..<3, to: dir + "/fromvalid.csv")
        try writeCSVSubset(from: source, rows: 24..<28, to: dir + "/tail.csv")
        try (["head", "fromvalid", "tail"].enumerated().map { k, name in
            let text = try String(contentsOfFile: dir + "/\(name).csv", encoding: .utf8)
            return k == 0 ? text : String(text.split(separator: "\n", maxSplits: 1)[1])
        }.joined()).write(toFile: dir + "/repeat.csv", atomically: true, encoding: .utf8)
        try writeCSVSubset(from: source, rows: 0..<40, to: dir + "/trainaux.csv")
        // valid.csv's successful trials with label 0.
        try writeCSVSubset(from: repoRoot + "/data/top/phase_I_valid.csv", rows: 0..<12, to: dir + "/conflict.csv", label: 1, labelColumn: .set("0"))
        let cladmop = releaseOrDebugProduct("cladmop")
        // One feature store holding every file, so both runs read the same sentence vectors.
        let sets = smallFinetuneSettings(dir: dir, ["finetune.epochs=2", "log.tensorboard=false", "finetune.select_latest=0",
                                                    "finetune.ensemble=1"]) + ["--set", "data.feature_store=\(dir)/all.store"]
        let files = ["train", "valid", "test", "aux", "repeat", "trainaux", "conflict"].flatMap { ["--data", dir + "/\($0).csv"] }
        let fz = try mpirun(np: 2, executable: cladmop, arguments: ["featurize"] + files + sets, timeout: 600)
        XCTAssertEqual(fz.status, 0, fz.output)
        func finetune(_ train: String, _ extra: [String], _ run: String) throws -> (status: Int32, output: String, seconds: Double) {
            try mpirun(np: 2, executable: cladmop, arguments: ["finetune", "--pretrained", "none", "--train", dir + "/\(train).csv",
                                                              "--valid", dir + "/valid.csv", "--run-dir", dir + "/" + run] + sets + extra,
                       timeout: 600)
        }
        func predictions(_ run: String) throws -> String {
            let r = try mpirun(np: 1, executable: cladmop, arguments: ["predict", "--checkpoint", dir + "/" + run, "--data", dir + "/test.csv",
                                                                      "--output", dir + "/pred-\(run).csv"] + sets, timeout: 600)
            XCTAssertEqual(r.status, 0, r.output)
            return try String(contentsOfFile: dir + "/pred-\(run).csv", encoding: .utf8)
        }
        let withAux = try finetune("train", ["--aux", dir + "/aux.csv", "--aux", dir + "/repeat.csv"], "aux")
        XCTAssertEqual(withAux.status, 0, withAux.output)
        XCTAssertTrue(withAux.output.contains("16 auxiliary trial(s)") && withAux.output.contains("not added: 0 held out (data.exclude_file), 11 repeated or also in"), withAux.output)
        XCTAssertTrue(withAux.output.contains("40 training trials") && withAux.output.contains("12 validation"), withAux.output)
        let appended = try finetune("trainaux", [], "appended")
        XCTAssertEqual(appended.status, 0, appended.output)
        let plain = try finetune("train", [], "plain")
        XCTAssertEqual(plain.status, 0, plain.output)
        let scores = try predictions("aux")
        XCTAssertEqual(scores, try predictions("appended"))
        func best(_ run: String) throws -> [String: Any] {
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/\(run)/best.json"))) as! [String: Any]
        }
        let (a, b) = (try best("aux"), try best("appended"))
        XCTAssertEqual(a["epoch"] as? Int, b["epoch"] as? Int)
        XCTAssertEqual(a["threshold"] as? Double, b["threshold"] as? Double)
        XCTAssertEqual(a["valid"] as? Double, b["valid"] as? Double)
        XCTAssertNotEqual(scores, try predictions("plain"), "the auxiliary trials change the model")

        // Cross-fitted: the 36 pooled trials are cut into folds; no auxiliary trial is in one, and a trial of train.csv
        // or valid.csv given again as auxiliary stays in its fold only: each member trains on 24 + 16 and selects on 12.
        // Two auxiliary ids in data.exclude_file are left out as well.
        let aux = try readTrials(paths: [dir + "/aux.csv"]).0.map(\.nctid)
        let heldOut = try String(contentsOfFile: repoRoot + "/data/top/heldout_nctids.txt", encoding: .utf8)
        try (heldOut + "\n" + aux[5] + "\n" + aux[9] + "\n").write(toFile: dir + "/heldout.txt", atomically: true, encoding: .utf8)
        let folds = try finetune("train", ["--aux", dir + "/aux.csv", "--aux", dir + "/repeat.csv", "--set", "finetune.folds=3"], "folds")
        XCTAssertEqual(folds.status, 0, folds.output)
        XCTAssertTrue(folds.output.contains("3 folds over 36 trials"), folds.output)
        XCTAssertEqual(folds.output.components(separatedBy: "40 training trials").count - 1, 3, folds.output)
        XCTAssertEqual(folds.output.components(separatedBy: "12 validation").count - 1, 3, folds.output)
        let excluding = try finetune("train", ["--aux", dir + "/aux.csv", "--set", "data.exclude_file=\(dir)/heldout.txt"], "excluding")
        XCTAssertEqual(excluding.status, 0, excluding.output)
        XCTAssertTrue(excluding.output.contains("14 auxiliary trial(s)") && excluding.output.contains("38 training trials"), excluding.output)
        let pool = Set(try readTrials(paths: [dir + "/train.csv", dir + "/valid.csv"]).0.map(\.nctid))
        let inFolds = try String(contentsOfFile: dir + "/folds/folds.csv", encoding: .utf8).split(separator: "\n").dropFirst()
            .map { String($0.split(separator: ",")[0]) }
        XCTAssertEqual(Set(inFolds), pool)
        // An auxiliary file that is not there, or has no trial rows: exit 2 naming it.
        try "nctid,status,why_stop,label,phase,diseases,icdcodes,drugs,smiless,criteria\n".write(toFile: dir + "/empty.csv", atomically: true, encoding: .utf8)
        let empty = try finetune("train", ["--aux", dir + "/empty.csv"], "empty")
        XCTAssertEqual(empty.status, 2, empty.output)
        XCTAssertTrue(empty.output.contains("empty.csv") && empty.output.contains("no trial rows"), empty.output)
        let missing = try finetune("train", ["--aux", dir + "/nowhere.csv"], "missing")
        XCTAssertEqual(missing.status, 2, missing.output)
        XCTAssertTrue(missing.output.contains("nowhere.csv"), missing.output)

        // A trial in --train and --valid: refused where --valid selects as it is (it would choose the epoch it trained),
        // and with two different labels always (folds had kept --train's label without a word).
        let overlap = try finetune("repeat", [], "overlap")
        XCTAssertEqual(overlap.status, 2, overlap.output)
        XCTAssertTrue(overlap.output.contains("repeat.csv:") && overlap.output.contains("is also in \(dir)/valid.csv"), overlap.output)
        XCTAssertTrue(try finetune("repeat", ["--set", "finetune.folds=3"], "overlapfolds").status == 0, "pooled, a trial in both counts once")
        let conflict = try finetune("conflict", ["--set", "finetune.folds=3"], "conflict")
        XCTAssertEqual(conflict.status, 2, conflict.output)
        XCTAssertTrue(conflict.output.contains("conflict.csv:") && conflict.output.contains("has label 0 here and 1 in"), conflict.output)
        // A run whose loss turns NaN stops on every rank, naming the epoch and the rates, and selects nothing (it had
        // saved a NaN model, selected by the success rate its constant scores give, whose predictions were NaN).
        let diverged = try finetune("train", ["--set", "finetune.head_lr=10", "--set", "finetune.lora_lr=10", "--set", "finetune.epochs=4"], "diverged")
        XCTAssertEqual(diverged.status, 3, diverged.output)
        XCTAssertTrue(diverged.output.contains("diverged") && diverged.output.contains("finetune.head_lr"), diverged.output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/diverged/best.json"))
    }

    func testSplitIsDeterministicAndIndependentOfRowOrder() throws {
        let dir = try scratchDirectory("split")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // The same 40 rows, in file order and reversed.
        let records = try readCSV(path: repoRoot + "/data/top/phase_III_valid.csv")
        try writeCSVSubset(from: repoRoot + "/data/top/phase_III_valid.csv", rows: 0..<40, to: dir + "/a.csv")
        let reversed = try readCSV(path: dir + "/a.csv")
        let lines = ([reversed[0]] + reversed.dropFirst().reversed()).map { $0.fields.map { f in
            f.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" }) ? "\"" + f.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : f
        }.joined(separator: ",") }
        try (lines.joined(separator: "\n") + "\n").write(toFile: dir + "/b.csv", atomically: true, encoding: .utf8)
        XCTAssertGreaterThan(records.count, 40)
        for (input, tag) in [("a", "1"), ("a", "2"), ("b", "3")] {
            let r = try runProduct("cladmop", ["split", "--data", dir + "/\(input).csv", "--fraction", "0.8",
                                               "--train", dir + "/train\(tag).csv", "--valid", dir + "/test\(tag).csv"])
            XCTAssertEqual(r.status, 0, r.output)
        }
        for name in ["train", "test"] {
            let one = try Data(contentsOf: URL(fileURLWithPath: dir + "/\(name)1.csv"))
            XCTAssertEqual(one, try Data(contentsOf: URL(fileURLWithPath: dir + "/\(name)2.csv")), name)
            XCTAssertEqual(one, try Data(contentsOf: URL(fileURLWithPath: dir + "/\(name)3.csv")), name)
        }
        let train = try readTrials(paths: [dir + "/train1.csv"]).0.map(\.nctid)
        let test = try readTrials(paths: [dir + "/test1.csv"]).0.map(\.nctid)
        XCTAssertEqual(train.count, 32); XCTAssertEqual(test.count, 8)
        XCTAssertLessThan(train.max()!, test.min()!, "the latest NCT ids form the second file")
        // An existing output is never overwritten.
        let again = try runProduct("cladmop", ["split", "--data", dir + "/a.csv", "--train", dir + "/train1.csv", "--valid", dir + "/new.csv"])
        XCTAssertEqual(again.status, 2, again.output)
    }

    func testDevtestRefusesAPretrainedModelWhoseSCTHeldTheDevTests() throws {
        let dir = try scratchDirectory("devtest")
        try FileManager.default.createDirectory(atPath: dir + "/pre", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // A pretraining run whose config kept only phase_I_valid.csv out of SCT (the main job's).
        try "data:\n  exclude_csvs: [data/top/phase_I_valid.csv]\n".write(toFile: dir + "/pre/config.yaml", atomically: true, encoding: .utf8)
        let r = try runCommand(repoRoot + "/Launch/devtest", ["--pretrained", dir + "/pre", "--run-dir", dir + "/run", "--phases", "1"])
        XCTAssertEqual(r.status, 2, r.output)
        XCTAssertTrue(r.output.contains("does not exclude") && r.output.contains("dev_I_test.csv"), r.output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/run/phase1"), "nothing is fine-tuned")
        // A checkpoint file is judged by the specification it records, not by a config.yaml two folders up (a
        // fine-tuned run's kept RUN_FT/pretrained/step-N.json sits beside the fine-tuning's config.yaml).
        let all = "[data/top/phase_I_valid.csv, data/devtest/dev_I_test.csv, data/devtest/dev_II_test.csv, data/devtest/dev_III_test.csv]"
        try FileManager.default.createDirectory(atPath: dir + "/ft/pretrained", withIntermediateDirectories: true)
        try "data:\n  exclude_csvs: \(all)\n".write(toFile: dir + "/ft/config.yaml", atomically: true, encoding: .utf8)
        try #"{"spec": {"data": {"excludeCSVs": ["data/top/phase_I_valid.csv"]}}}"#.write(toFile: dir + "/ft/pretrained/step-3.json", atomically: true, encoding: .utf8)
        // (The reader works: a file it cannot read gets its own message, so "does not exclude" means it read the list.)
        for given in ["step-3.json", "step-3.safetensors"] {
            let kept = try runCommand(repoRoot + "/Launch/devtest", ["--pretrained", dir + "/ft/pretrained/" + given, "--run-dir", dir + "/run", "--phases", "1"])
            XCTAssertEqual(kept.status, 2, kept.output)
            XCTAssertTrue(kept.output.contains("step-3.json does not exclude") && kept.output.contains("dev_I_test.csv"), kept.output)
        }
        try "not json".write(toFile: dir + "/ft/pretrained/step-4.json", atomically: true, encoding: .utf8)
        let unreadable = try runCommand(repoRoot + "/Launch/devtest", ["--pretrained", dir + "/ft/pretrained/step-4.json", "--run-dir", dir + "/run", "--phases", "1"])
        XCTAssertEqual(unreadable.status, 2, unreadable.output)
        XCTAssertTrue(unreadable.output.contains("cannot read data.exclude_csvs from the checkpoint \(dir)/ft/pretrained/step-4.json"), unreadable.output)
        // Every dev test kept out but not phase_I_valid.csv, which selects phase I's epoch (a seventh probe, session 24).
        try FileManager.default.createDirectory(atPath: dir + "/pre3", withIntermediateDirectories: true)
        try "data:\n  exclude_csvs: [data/devtest/dev_I_test.csv, data/devtest/dev_II_test.csv, data/devtest/dev_III_test.csv]\n"
            .write(toFile: dir + "/pre3/config.yaml", atomically: true, encoding: .utf8)
        let selecting = try runCommand(repoRoot + "/Launch/devtest", ["--pretrained", dir + "/pre3", "--run-dir", dir + "/run", "--phases", "1"])
        XCTAssertEqual(selecting.status, 2, selecting.output)
        XCTAssertTrue(selecting.output.contains("does not exclude data/top/phase_I_valid.csv"), selecting.output)
        // The list is compared as files, not as text: dev_I_test.csv.old is not dev_I_test.csv (a review), and
        // ./data/devtest/dev_I_test.csv is (the positive side: refused only for the missing file).
        try "data:\n  exclude_csvs: [\"data/top/phase_I_valid.csv\", \"./data/devtest/dev_I_test.csv\", \"data/devtest/dev_II_test.csv.old\", \"data/devtest/dev_III_test.csv\"]\n"
            .write(toFile: dir + "/pre3/config.yaml", atomically: true, encoding: .utf8)
        let similar = try runCommand(repoRoot + "/Launch/devtest", ["--pretrained", dir + "/pre3", "--run-dir", dir + "/run", "--phases", "1"])
        XCTAssertEqual(similar.status, 2, similar.output)
        XCTAssertTrue(similar.output.contains("does not exclude data/devtest/dev_II_test.csv from"), similar.output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/run/phase1"), "nothing is fine-tuned")
    }
}
