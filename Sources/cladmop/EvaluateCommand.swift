import ArgumentParser
import Config
import Foundation
import Reporting
import Support
import Training
import TrialData

struct Evaluate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "F1 / PR-AUC / ROC-AUC / accuracy of a checkpoint on a labelled TOP CSV (F1 and accuracy at 0.5, F1 (thr) at the run's threshold; mean +- std over 10 subsamples of 80 % without replacement as in the paper, but each keeping 80 % of either class, and on all trials). A pretraining checkpoint is scored zero-shot (pair-matching score), with its retrieval accuracy (top-1 / top-5, both directions) among the successful trials of --data.")

    @OptionGroup var options: ConfigOptions
    @Option(help: "Fine-tuned or pretraining checkpoint (.safetensors, .json or run directory).") var checkpoint: String
    @Option(help: "Labelled TOP-format CSV (featurized on the fly when the feature store does not hold it), or a feature store (cladmop featurize --output): every trial it holds, each once.") var data: String
    @Option(help: "Write the metrics as one JSON object to this file.") var json: String?
    @Option(help: "Write ROC and precision-recall curves (roc.svg, pr.svg) into this folder.") var plots: String?
    @Option(help: "Write a markdown report (table in the layout of the paper's Table 2, with the paper's figures beside ours).")
    var report: String?
    @Option(parsing: .unconditional, help: "Trial phase (1, 2, 3) whose published figures the report shows.") var phase: Int?
    @Flag(name: .customLong("out-of-fold"), help: "A cross-fitted run (finetune.folds): score each trial with the member that did not train on it (the mean of one per partition; RUN/folds.csv); every trial of --data must be in a fold.")
    var outOfFold = false

    func validate() throws {
        if let phase, !(1...3).contains(phase) { throw ValidationError("--phase must be 1, 2 or 3") }
        if phase != nil && report == nil { throw ValidationError("--phase chooses the published figures of the --report; give --report FILE as well") }
    }

    func run() throws {
        runJob { comm in
            try checkOutputs([json.map { ("--json", $0) }, report.map { ("--report", $0) }].compactMap { $0 },
                             inputs: [("--data", data), ("--checkpoint", checkpoint)], isRoot: comm.isRoot)
            if let plots {
                if comm.isRoot { try checkWritableFolder(plots, option: "--plots") }     // a file there, or read-only
                // A curve named through a link to another output or an input (writes go through links).
                var named: [String: String] = [:]
                for (option, path) in [("--data", data), ("--checkpoint", checkpoint)] + [json.map { ("--json", $0) }, report.map { ("--report", $0) }].compactMap({ $0 }) {
                    named[resolvedPath(path)] = option
                }
                for name in RunLayout.curves {
                    let key = resolvedPath(plots + "/" + name)
                    if let other = named[key] {
                        throw InputError(file: plots + "/" + name, "--plots would write \(name) over the file given to \(other); choose another folder")
                    }
                    named[key] = "--plots (its \(name))"
                    try refuseNonRegularOutput(name.hasSuffix(".png") ? plots + "/" + name : writeTarget(plots + "/" + name), reportingAs: plots + "/" + name)
                    // A run's curves are its results.
                    if let what = runFileKind(plots + "/" + name), FileManager.default.fileExists(atPath: plots + "/" + name) {
                        throw InputError(file: plots + "/" + name, "--plots would overwrite \(what); choose another folder")
                    }
                }
            }
            // Results written into a run folder (Launch/finetune's eval.json, report and curves): that run is locked
            // while it is scored and they are written, so that no other command replaces the run in between (its
            // folder would hold one model and another's evaluation).
            if comm.isRoot {
                // The folders written into: a link's target's, unless that target is another run's result (then the link is replaced).
                let folders = [json, self.report].compactMap { $0 }.map { resolvedPath(URL(fileURLWithPath: writeTarget($0)).deletingLastPathComponent().path) }
                    + (plots.map { [resolvedPath($0)] } ?? [])
                for folder in Set(folders).sorted() where FileManager.default.fileExists(atPath: folder + "/config.yaml") {
                    try lockRunFolder(folder, exclusive: false, busy: "another cladmop command is writing the run in this folder; evaluate's --json, --report and --plots there would sit beside another model: wait for it to end")
                }
            }
            let scored = try scoreCSV(checkpoint: checkpoint, csv: data, spec: try options.loadForScoring(comm), comm: comm, outOfFold: outOfFold,
                                      retrieval: true, log: log)
            guard comm.isRoot else { return }
            let (trials, scores, threshold) = (scored.trials, scored.scores, scored.threshold)
            guard !trials.isEmpty else { throw InputError(file: data, "has no trial rows; nothing to evaluate") }
            let labels = try requireLabels(trials, file: data, purpose: "evaluate")
            var report = EvaluationReport(metrics: Metrics.report(scores, labels, ids: trials.map(\.nctid), threshold: threshold), data: data, checkpoint: checkpoint)
            report.trialsChecksum = EvaluationReport.trialsChecksum(ids: trials.map(\.nctid), labels: labels)
            report.outOfFold = outOfFold
            report.inSampleTrials = scored.inSample
            report.sctTrials = scored.sctTrials
            report.retrieval = scored.retrieval.map {
                RetrievalSummary(trials: $0.count, top1C2dm: $0.top1CtoDM, top5C2dm: $0.top5CtoDM, top1Dm2c: $0.top1DMtoC, top5Dm2c: $0.top5DMtoC)
            }
            let positives = labels.filter { $0 == 1 }.count
            if positives == 0 || positives == labels.count {
                standardErrorWrite(Data(("warning: every one of the \(labels.count) trials of \(data) is \(positives == 0 ? "failed" : "successful"): "
                     + "ROC-AUC and PR-AUC are undefined (PR-AUC would be \(positives == 0 ? "undefined" : "1") whatever the scores)"
                    + (positives == 0 ? ", and every F1 is 0 (no successful trial to find; scikit-learn's zero_division=0)" : "")
                    + "; the metrics need trials of both classes\n").utf8))
            }
            if let novel = scored.newDisease {
                let idx = trials.indices.filter { novel[$0] }
                report.newDiseases = Metrics.report(idx.map { scores[$0] }, idx.map { labels[$0] }, ids: idx.map { trials[$0].nctid }, threshold: threshold)
            } else {
                report.zeroShot = true
            }
            printMetricsTable(report, log: log, title: "\(data) (\(trials.count) trials)")
            // No output may replace a file this command read; checked for all before the first is written.
            try FilesRead.refuseOverwriting([json.map { ("--json", $0) }, self.report.map { ("--report", $0) }].compactMap { $0 }
                                            + (plots.map { d in RunLayout.curves.map { ("--plots", d + "/" + $0) } } ?? []))
            // The outputs as one: on a failure (a full disk) none is written and every earlier file stays.
            let outputs = OutputGroup(keepingResults: true)     // an evaluation written there meanwhile is kept
            let curves = try plots.map { try writeCurves(scores: scores, labels: labels, dir: $0, group: outputs) }
            if let reportPath = self.report {
                // The report links the curves when they are written into its folder.
                let folder = URL(fileURLWithPath: writeTarget(reportPath)).deletingLastPathComponent().path
                let beside = plots.map { resolvedPath($0) == resolvedPath(folder) } ?? false
                try writeOutcomeReport(report, path: reportPath, phase: phase, data: data, checkpoint: checkpoint,
                                       curves: beside ? curves : nil, group: outputs)
            }
            if let json {
                let d = try report.json()
                try outputs.write(json) { try $0.write(contentsOf: d) }
            }
            try outputs.commit()
        }
    }
}
