import ArgumentParser
import Config
import Foundation
import Reporting
import Support
import Training

struct Compare: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Markdown table of several evaluation JSON files (cladmop evaluate/baseline --json).")

    @Option(name: .customLong("eval"), help: ArgumentHelp("LABEL=FILE.json (repeatable, in table order).", valueName: "label=file"))
    var evals: [String] = []
    @Option(help: "Markdown file to write (printed as well).") var output: String?

    /// Each --eval as (label, file): the label is the text before the first "=", non-empty, one line; a "|" in
    /// it is escaped so that it stays in its table cell.
    var rows: [(label: String, file: String)] {
        get throws {
            try evals.map { e in
                guard let eq = e.firstIndex(of: "="), eq != e.startIndex, e.index(after: eq) != e.endIndex else {
                    throw ValidationError("--eval \(e): expected LABEL=FILE.json (a non-empty label and file)")
                }
                let label = String(e[..<eq])
                // Control characters (category Cc: line breaks, tabs) and the Unicode line / paragraph separators.
                guard !label.unicodeScalars.contains(where: { $0.properties.generalCategory == .control || $0 == "\u{2028}" || $0 == "\u{2029}" }) else {
                    throw ValidationError("--eval \(e.debugDescription): the label holds a control character (a line break or tab); expected one line of text")
                }
                return (label.replacingOccurrences(of: "|", with: "\\|"), String(e[e.index(after: eq)...]))
            }
        }
    }

    func validate() throws {
        guard !evals.isEmpty else { throw ValidationError("give at least one --eval LABEL=FILE.json") }
        // Two rows of one label could not be told apart in the table.
        var seen = Set<String>()
        for row in try rows where !seen.insert(row.label).inserted {
            throw ValidationError("--eval \(row.label)=...: the label \(row.label.debugDescription) is given twice; expected one label per row")
        }
    }

    func run() throws {
        runJob { comm in
            let rows = try self.rows
            try checkOutputs(output.map { [("--output", $0)] } ?? [], inputs: rows.map { ("--eval", $0.file) }, isRoot: comm.isRoot)
            // F1 (thr): at the threshold the evaluation used, named in the cell (a fine-tuned run's, chosen on its
            // validation trials; baseline's 0.5; a zero-shot evaluation's F1-best threshold of the very trials scored,
            // said below the table); F1 (all success): predicting success for every trial on the same resamples.
            var md = "| method | n | F1 (0.5) | PR-AUC | ROC-AUC | accuracy | F1 (thr) | F1 (all success) |\n|---|---|---|---|---|---|---|---|\n"
            var scored: [(label: String, data: String?, trials: String?)] = []
            var outOfFold: [(label: String, value: Bool)] = [], inSample: [(label: String, count: Int, n: Int)] = []
            var inSCT: [(label: String, count: Int, n: Int)] = []
            var zeroShot: [String] = []
            var resampling: [(label: String, value: String)] = []
            var oofSelected: [String: Int?] = [:]     // out-of-fold rows: how many trials selected their scoring members (nil: not recorded)
            for (label, file) in rows {
                let report = try EvaluationReport.read(file), r = report.metrics
                resampling.append((label, r.resampling ?? "random"))
                scored.append((label, report.data, report.trialsChecksum))
                if let o = report.outOfFold { outOfFold.append((label, o)) }
                // Out of fold: said in the out-of-fold note (whether the trials selected their members' epochs).
                if report.outOfFold == true { oofSelected[label] = report.inSampleTrials }
                else if let k = report.inSampleTrials, k > 0 { inSample.append((label, k, r.n)) }
                if let k = report.sctTrials, k > 0 { inSCT.append((label, k, r.n)) }
                if report.zeroShot == true { zeroShot.append(label) }
                func c(_ m: MetricSummary) -> String { meanStd(m, digits: 3, pm: "±") }
                md += "| \(label) | \(r.n) | \(c(r.f1)) | \(c(r.prAUC)) | \(c(r.rocAUC)) | \(c(r.accuracy)) | \(c(r.f1AtThreshold)) at \(String(format: "%.3f", r.threshold)) | \(r.f1AllSuccess.map(c) ?? "-") |\n"
            }
            // Figures on different trials are not comparable: the table says so, naming each row's file (as each
            // evaluation recorded it: a path relative to where it ran). Evaluations that all recorded the checksum of
            // their trials are compared by it (the same trials under two paths are the same); others by the path.
            let checksums = scored.compactMap(\.trials), files = scored.compactMap(\.data)
            let byChecksum = checksums.count == scored.count
            let differ = byChecksum ? Set(checksums).count > 1 : Set(files).count > 1
            if differ {
                let what = byChecksum ? "scored different trials (their trials_checksum differ)" : "name different data files"
                // Rows of the same trials (one checksum) together, in table order; by path, each row alone (a path is
                // relative to where its evaluation ran, so one path need not be the same trials).
                var groups: [(key: String, rows: [(label: String, data: String?, trials: String?)])] = []
                for row in scored {
                    if byChecksum, let key = row.trials, let i = groups.firstIndex(where: { $0.key == key }) { groups[i].rows.append(row) }
                    else { groups.append((row.trials ?? "", [row])) }
                }
                // Within a group, each file its rows named (the same trials under two paths: both said).
                func files(_ rows: [(label: String, data: String?, trials: String?)]) -> String {
                    var byFile: [(data: String, labels: [String])] = []
                    for row in rows {
                        let data = row.data ?? "(no data recorded)"
                        if let i = byFile.firstIndex(where: { $0.data == data }) { byFile[i].labels.append(row.label) } else { byFile.append((data, [row.label])) }
                    }
                    return byFile.map { $0.labels.joined(separator: ", ") + ": " + $0.data }.joined(separator: " and ")
                }
                md += "\nThe rows \(what); figures on different trials are not comparable: "
                    + groups.map { g in files(g.rows) + (g.rows.count > 1 ? " (the same trials)" : "") }.joined(separator: "; ") + ".\n"
                if comm.isRoot { standardErrorWrite(Data("compare: warning: the evaluations \(what) (see the note below the table)\n".utf8)) }
            }
            // Rows scored in-sample, or some out of fold and others not, are not comparable either: said below the table.
            if !inSample.isEmpty {
                md += "\nIn-sample rows (their models trained on or selected with these trials): "
                    + inSample.map { "\($0.label): \($0.count) of \($0.n) trials" }.joined(separator: "; ") + ".\n"
                if comm.isRoot { standardErrorWrite(Data("compare: warning: \(inSample.map(\.label).joined(separator: ", ")) scored trials their models trained on (see the note below the table)\n".utf8)) }
            }
            if !inSCT.isEmpty {
                md += "\nRows with trials of their pretraining corpus (successful trials the model was pretrained on, `sct_trials`): "
                    + inSCT.map { "\($0.label): \($0.count) of \($0.n) trials" }.joined(separator: "; ") + ".\n"
                if comm.isRoot { standardErrorWrite(Data("compare: warning: \(inSCT.map(\.label).joined(separator: ", ")) scored trials of their pretraining corpus (see the note below the table)\n".utf8)) }
            }
            // A zero-shot evaluation has no validation trials: its threshold is the F1-best of the trials it scores.
            if !zeroShot.isEmpty {
                md += "\nF1 (thr) of " + zeroShot.joined(separator: ", ") + ": zero-shot, at the F1-best threshold of these very trials (in-sample, optimistic).\n"
            }
            // Out of fold: each trial by members that did not train on it; a held-out test only where the trials did not
            // select those members' epochs either (finetune --report-trials: in_sample_trials 0).
            let mixed = Set(outOfFold.map(\.value)).count > 1
            let oofRows = outOfFold.filter(\.value).map(\.label)
            if !oofRows.isEmpty {
                let chose = oofRows.filter { oofSelected[$0].flatMap { $0 } != 0 }
                md += "\nScored out of fold (each trial by the members that did not train on it): " + oofRows.joined(separator: ", ")
                    + (mixed ? "; the other rows by their whole model" : "") + "."
                    + (chose.isEmpty ? "" : " The trials of " + chose.joined(separator: ", ") + " also selected those members' epochs and the threshold: not a held-out test.") + "\n"
                if comm.isRoot, mixed { standardErrorWrite(Data("compare: warning: some rows were scored out of fold and others not (see the note below the table)\n".utf8)) }
            }
            // Mean +- std over other draws: evaluations written before the resamples kept each class's share.
            if Set(resampling.map(\.value)).count > 1 {
                let old = resampling.filter { $0.value != "stratified" }.map(\.label)
                md += "\nMean ± std of " + old.joined(separator: ", ") + " are over resamples of 80 % of the rows at random (an evaluate "
                    + "before they kept 80 % of each class): their F1 and PR-AUC means move with each draw's share of successes; the other rows' do not.\n"
                if comm.isRoot { standardErrorWrite(Data("compare: warning: \(old.joined(separator: ", ")) drew their resamples another way (see the note below the table)\n".utf8)) }
            }
            guard comm.isRoot else { return }
            print(md, terminator: "")
            if let output { try writeTextFile(output, md) }
        }
    }
}
