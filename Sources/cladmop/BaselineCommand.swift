import ArgumentParser
import Config
import Foundation
import Reporting
import Support
import Training
import TrialData

struct Baseline: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Logistic-regression baseline (mean criteria vector, bag of ICD categories, bag of SMILES tokens): train on one TOP CSV, evaluate on another.")

    @OptionGroup var options: ConfigOptions
    @Option(help: "Labelled TOP CSV to fit on.") var train: String
    @Option(help: "Labelled TOP CSV to evaluate on.") var data: String
    @Option(help: "Write the metrics as one JSON object to this file.") var json: String?

    func run() throws {
        runJob { comm in
            try checkOutputs(json.map { [("--json", $0)] } ?? [], inputs: [("--train", train), ("--data", data)], isRoot: comm.isRoot)
            if resolvedPath(train) == resolvedPath(data) {
                throw InputError(file: data, "--data is the same file as --train; the baseline is measured on trials it did not train on")
            }
            let spec = try options.load(comm)
            let hierarchy = try ICD10Hierarchy(path: spec.data.icdHierarchy, comm: comm)
            // A trial in both files (copies of one file, or overlapping splits): refused before anything is featurized.
            let read = { (file: String) in try readTrials(paths: [file], skipBadRows: spec.data.skipBadRows, labels: .optional).0 }
            var trainLine: [String: Int] = [:]
            for t in try read(train) where trainLine[t.nctid] == nil { trainLine[t.nctid] = t.source.line }
            let shared = try read(data).filter { trainLine[$0.nctid] != nil }
            if let t = shared.first {
                throw InputError(file: data, line: t.source.line, "trial \(t.nctid) is also in --train \(train) (line \(trainLine[t.nctid]!))"
                                 + (shared.count > 1 ? ", and \(shared.count - 1) more of its trials" : "")
                                 + "; the baseline is measured on trials it did not train on: remove them from one file")
            }
            // Held-out trials (data.exclude_file) never train, as in fine-tuning: the list is read first, on every rank.
            let excluded = try spec.data.excludeFile.map(readExclusionList) ?? []
            let store = try storeContaining([train, data], spec: spec, hierarchy: hierarchy, comm: comm, log: log)
            guard comm.isRoot else { return }
            let trainAll = store.trials(of: train), test = store.trials(of: data)
            let trainRows = trainAll.filter { !excluded.contains($0.nctid) }
            if trainRows.count < trainAll.count { log("baseline: \(trainAll.count - trainRows.count) held-out trial(s) removed from \(train)") }
            warnOfUnexcludedTestTrials(trainRows.map(\.nctid), file: train, excludeFile: spec.data.excludeFile, role: "train the baseline")
            let trainLabels = try requireLabels(trainRows, file: train, purpose: "the baseline's training")
            let positives = trainLabels.filter { $0 == 1 }.count
            guard positives > 0, positives < trainLabels.count else {
                throw InputError(file: train, "has \(positives) successful and \(trainLabels.count - positives) failed trial(s)"
                                 + (trainRows.count < trainAll.count ? " after removing held-out trials (data.exclude_file)" : "")
                                 + "; the baseline's logistic regression needs both classes")
            }
            guard !test.isEmpty else { throw InputError(file: data, "has no trial rows; nothing to evaluate") }
            let model = LogisticBaseline(train: trainRows, labels: trainLabels, store: store, hierarchy: hierarchy)
            let scores = model.predict(test)
            let testLabels = try requireLabels(test, file: data, purpose: "evaluating the baseline")
            var report = EvaluationReport(metrics: Metrics.report(scores, testLabels, ids: test.map(\.nctid), threshold: 0.5), data: data, method: "logistic regression")
            report.trialsChecksum = EvaluationReport.trialsChecksum(ids: test.map(\.nctid), labels: testLabels)
            printMetricsTable(report, log: log, title: "logistic-regression baseline on \(data) (\(test.count) trials)")
            if let json {
                let d = try report.json()
                try writeFileAtomically(json, keepingResults: true) { try $0.write(contentsOf: d) }
            }
        }
    }
}
