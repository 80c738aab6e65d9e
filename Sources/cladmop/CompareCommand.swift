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
            /// The CSV an evaluation scored and the checksum of its trials and labels (each absent in files written without it).
            struct Scored: Decodable {
                let data: String?, trials: String?, outOfFold: Bool?, inSample: Int?, sct: Int?, zeroShot: Bool?
                enum CodingKeys: String, CodingKey {
                    case data, trials = "trials_checksum", outOfFold = "out_of_fold", inSample = "in_sample_trials", sct = "sct_trials"
                    case zeroShot = "zero_shot"
                }
            }
            var scored: [(label: String, data: String?, trials: String?)] = []
            var outOfFold: [(label: String, value: Bool)] = [], inSample: [(label: String, count: Int, n: Int)] = []
            var inSCT: [(label: String, count: Int, n: Int)] = []
            var zeroShot: [String] = []
            var resampling: [(label: String, value: String)] = []
            var oofSelected: [String: Int?] = [:]     // out-of-fold rows: how many trials selected their scoring members (nil: not recorded)
            for (label, file) in rows {
                let r: OutcomeMetrics
                var bytes = Data()
                do {
                    bytes = try readRegularFile(file, what: "evaluation JSON", limit: 64 << 20)
                    try refuseDuplicateJSONKeys(bytes, file: file)
                    // The counts first, by name: Foundation's decoder calls 1.5 or 1e30 for an Int "not valid JSON".
                    if let object = try? JSONSerialization.jsonObject(with: bytes) as? [String: Any] {
                        for key in ["n", "positives"] {
                            if let v = object[key] as? NSNumber, !(v is Bool), Int(exactly: v.doubleValue) == nil || v.doubleValue.rounded() != v.doubleValue {
                                throw InputError(file: file, "key \(key) = \(v): expected a whole number of trials")
                            }
                        }
                    }
                    r = try JSONDecoder().decode(OutcomeMetrics.self, from: bytes)
                    if let value = r.resampling, value != "stratified" {
                        throw InputError(file: file, "key resampling = \(value.debugDescription.prefix(60)): expected \"stratified\" (or no key: an evaluation written before the resamples kept each class's share)")
                    }
                    resampling.append((label, r.resampling ?? "random"))
                    // Its optional keys each hold their type when present: one of the wrong type is refused, not read
                    // (with the others) as absent, which would drop the row's notes.
                    let s = try JSONDecoder().decode(Scored.self, from: bytes)
                    scored.append((label, s.data, s.trials))
                    if let o = s.outOfFold { outOfFold.append((label, o)) }
                    for (key, k) in [("in_sample_trials", s.inSample), ("sct_trials", s.sct)] where (k ?? 0) < 0 {
                        throw InputError(file: file, "key \(key) = \(k!): expected a count of at least 0")
                    }
                    // Out of fold: said in the out-of-fold note (whether the trials selected their members' epochs).
                    if s.outOfFold == true { oofSelected[label] = s.inSample }
                    else if let k = s.inSample, k > 0 { inSample.append((label, k, r.n)) }
                    if let k = s.sct, k > 0 { inSCT.append((label, k, r.n)) }
                    if s.zeroShot == true { zeroShot.append(label) }
                }
                catch let e as InputError { throw e }
                catch { throw InputError(file: file, "not an evaluation JSON (cladmop evaluate --json): \(describeDecodingError(error, data: bytes))") }
                // Values a metric can take: a trial count, fractions in [0, 1], spreads that are not negative.
                guard r.n >= 1 else { throw InputError(file: file, "key n = \(r.n): expected a trial count of at least 1 (evaluate scores at least one trial)") }
                guard (0...r.n).contains(r.positives) else { throw InputError(file: file, "key positives = \(r.positives): expected a count in [0, n = \(r.n)]") }
                for (key, count) in [("in_sample_trials", inSample.last { $0.label == label }?.count), ("sct_trials", inSCT.last { $0.label == label }?.count)] {
                    if let count, count > r.n { throw InputError(file: file, "key \(key) = \(count): expected a count in [0, n = \(r.n)]") }
                }
                for (key, m) in [("f1", r.f1), ("pr_auc", r.prAUC), ("roc_auc", r.rocAUC), ("accuracy", r.accuracy),
                                 ("f1_at_threshold", r.f1AtThreshold)] + (r.f1AllSuccess.map { [("f1_all_success", $0)] } ?? []) {
                    if let mean = m.mean, !(0...1).contains(mean) { throw InputError(file: file, "key \(key).mean = \(mean): expected a value in [0, 1]") }
                    // The spread of values in [0, 1] is at most 0.5 (population) or 0.5 * sqrt(N / (N - 1)) <= 0.71 (sample).
                    if let std = m.std, !(std >= 0 && std <= 1) { throw InputError(file: file, "key \(key).std = \(std): expected a spread in [0, 1] (of values in [0, 1])") }
                    if let full = m.full, !(0...1).contains(full) { throw InputError(file: file, "key \(key).full = \(full): expected a value in [0, 1]") }
                    if let count = m.resamples, count < 0 { throw InputError(file: file, "key \(key).resamples = \(count): expected a count of at least 0") }
                    if m.resamples == 0 && (m.mean != nil || m.std != nil) {
                        throw InputError(file: file, "key \(key).resamples = 0 with a mean or std: expected null mean and std (no resample to take them over) or a count of at least 1")
                    }
                }
                guard (0...1).contains(r.threshold) else {
                    throw InputError(file: file, "key threshold = \(r.threshold): expected a probability in [0, 1] (the decision threshold of the scores)")
                }
                func c(_ m: MetricSummary) -> String { meanStd(m, digits: 3, pm: "±") }
                md += "| \(label) | \(r.n) | \(c(r.f1)) | \(c(r.prAUC)) | \(c(r.rocAUC)) | \(c(r.accuracy)) | \(c(r.f1AtThreshold)) at \(String(format: "%.3f", r.threshold)) | \(r.f1AllSuccess.map(c) ?? "-") |\n"
            }
            // Figures on different trials are not comparable: the table says so, naming each row's file (as each
            // evaluation recorded it: a path relative to where it ran). Evaluations that all recorded the checksum of
            // their trials are compared by it (the same trials under two paths are the same); others by the path.
            let checksums = scored.compactMap(\.trials), files = scored.compactMap(\.data)
            let differ = checksums.count == scored.count ? Set(checksums).count > 1 : Set(files).count > 1
            if differ {
                let what = checksums.count == scored.count ? "scored different trials (their trials_checksum differ)" : "name different data files"
                md += "\nThe rows \(what); figures on different trials are not comparable: "
                    + scored.map { "\($0.label): \($0.data ?? "(no data recorded)")" }.joined(separator: "; ") + ".\n"
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
