import Foundation
import Support

/// "mean +- std" of a metric with `digits` decimals and `pm` between (n/a when undefined; the std alone is when
/// one resample defines the metric).
public func meanStd(_ m: MetricSummary, digits: Int, pm: String) -> String {
    guard let mean = m.mean else { return "n/a" }
    let f = "%.\(digits)f"
    return String(format: f, mean) + " \(pm) " + (m.std.map { String(format: f, $0) } ?? "n/a")
}

/// "note: ..." when PR-AUC and ROC-AUC are undefined in every resample (the set holds one class: its resamples,
/// stratified by label, hold both classes whenever the set does); nil otherwise.
public func rankingResamplesNote(_ m: OutcomeMetrics, subset: String) -> String? {
    guard m.rocAUC.resamples == 0, (m.f1.resamples ?? 0) > 0 else { return nil }
    return "note: PR-AUC and ROC-AUC of \"\(subset)\" are undefined: its trials are all of one class"
}

/// The terminal table of an evaluation: all trials, and the new-disease subset when there is one.
public func printMetricsTable(_ r: EvaluationReport, log: (String) -> Void, title: String) {
    func c(_ m: MetricSummary) -> String { m.mean == nil ? "   n/a" : meanStd(m, digits: 4, pm: "+-") }
    log(title)
    log("| subset | n | PR-AUC | ROC-AUC | F1 (0.5) | F1 (thr) | accuracy |")
    log("|---|---|---|---|---|---|---|")
    var rows = [("all", r.metrics)]
    if let nd = r.newDiseases { rows.append(("new diseases", nd)) }
    for (name, d) in rows {
        log("| \(name) | \(d.n) | \(c(d.prAUC)) | \(c(d.rocAUC)) | \(c(d.f1)) | \(c(d.f1AtThreshold)) | \(c(d.accuracy)) |")
    }
    for (name, d) in rows { if let note = rankingResamplesNote(d, subset: name) { log(note) } }
    if let base = r.metrics.f1AllSuccess, let full = base.full {
        log(String(format: "all-success F1 (every trial predicted successful), to read F1 against: %.4f on all %d trials, %@ over the same resamples",
                   full, r.metrics.n, meanStd(base, digits: 4, pm: "+-")))
    }
    if r.zeroShot == true { log("F1 (thr): at the F1-best threshold of these trials (zero-shot: no selection trials, so optimistic)") }
    if let t = r.retrieval {
        log(String(format: "retrieval among the %d successful trials (zero-shot): top-1 C->DM %.3f, top-5 C->DM %.3f, top-1 DM->C %.3f, "
                   + "top-5 DM->C %.3f (chance top-1 %.3f)", t.trials, t.top1C2dm, t.top5C2dm, t.top1Dm2c, t.top5Dm2c, t.chanceTop1)
            // Every trial of the SCT corpus is successful: those the pretraining saw are among the ranked pairs.
            + ((r.sctTrials ?? 0) > 0 ? "; \(r.sctTrials!) of them were in the SCT corpus the model was pretrained on (in-sample pairs)" : ""))
    }
}

/// ROC and precision-recall curves of `scores` as SVG files: one point per distinct score (every threshold), so that
/// tied scores make one diagonal ROC segment, whose area is the ROC-AUC of the title (a tie counts 1/2).
@discardableResult
public func writeCurves(scores: [Double], labels: [Int], dir: String, group: OutputGroup? = nil) throws -> (roc: String, pr: String) {
    try makeDirectory(dir, option: "--plots")
    let ranked = scores.map { $0.isNaN ? -Double.infinity : $0 }     // NaN lowest, tied with each other (as Metrics.rocAUC)
    let order = ranked.indices.sorted { ranked[$0] > ranked[$1] }
    let pos = Double(labels.filter { $0 == 1 }.count), neg = Double(labels.count) - pos
    var tp = 0.0, fp = 0.0
    var roc: [(Double, Double)] = [(0, 0)], pr: [(Double, Double)] = []
    for (k, i) in order.enumerated() {
        if labels[i] == 1 { tp += 1 } else { fp += 1 }
        if k + 1 < order.count, ranked[order[k + 1]] == ranked[i] { continue }     // the rest of a tie first
        roc.append((neg > 0 ? fp / neg : 0, pos > 0 ? tp / pos : 0))
        pr.append((pos > 0 ? tp / pos : 0, tp / (tp + fp)))
    }
    let rate = pos / max(Double(labels.count), 1)
    /// "0.712", or "undefined" where one class is absent (the metric is NaN).
    func value(_ x: Double) -> String { x.isFinite ? String(format: "%.3f", x) : "undefined: one class only" }
    let rocImage = try writePlot(dir + "/roc.svg", group: group, svgLinePlot(title: "ROC (AUC \(value(Metrics.rocAUC(scores, labels))))", xLabel: "false positive rate",
                  yLabel: "true positive rate", series: [PlotSeries("model", roc), PlotSeries("chance", [(0, 0), (1, 1)], reference: true)],
                  xRange: 0...1, yRange: 0...1, square: true))
    // Only successful trials: average precision is 1 whatever the scores; undefined, as the table says (`Metrics.report`).
    let ap = pos == 0 || neg == 0 ? Double.nan : Metrics.averagePrecision(scores, labels)
    let prImage = try writePlot(dir + "/pr.svg", group: group, svgLinePlot(title: "Precision-recall (AP \(value(ap)))", xLabel: "recall",
                  yLabel: "precision", series: [PlotSeries("model", pr), PlotSeries(String(format: "chance (positive rate %.2f)", rate), [(0, rate), (1, rate)], reference: true)],
                  xRange: 0...1, yRange: 0...1, square: true))
    return (rocImage, prImage)
}

/// The paper's Table 2 (TOP *test* sets, mean +- std over 10 bootstraps): (method, F1, PR-AUC, ROC-AUC) per phase.
let paperTable2: [Int: [(String, String, String, String)]] = [
    1: [("HINT", ".604 ± .009", ".581 ± .021", ".575 ± .021"), ("MEXA-CTP", ".713 ± .027", ".605 ± .014", ".593 ± .012"),
        ("CLaDMoP", ".713 ± .019", ".680 ± .016", ".642 ± .015")],
    2: [("HINT", ".635 ± .010", ".608 ± .011", ".623 ± .012"), ("MEXA-CTP", ".695 ± .008", ".635 ± .015", ".638 ± .005"),
        ("CLaDMoP", ".685 ± .015", ".683 ± .012", ".647 ± .018")],
    3: [("HINT", ".814 ± .013", ".603 ± .014", ".685 ± .023"), ("MEXA-CTP", ".857 ± .007", ".771 ± .016", ".693 ± .025"),
        ("CLaDMoP", ".861 ± .014", ".860 ± .011", ".702 ± .018")],
]

/// The markdown report of an evaluation at `path`, linking `curves` (the image names `writeCurves` returned for the
/// report's own folder; nil: none beside it); written as part of `group` when one is given (the caller commits).
public func writeOutcomeReport(_ report: EvaluationReport, path: String, phase: Int?, data: String, checkpoint: String,
                               curves: (roc: String, pr: String)? = nil, group: OutputGroup? = nil) throws {
    let r = report.metrics
    func c(_ m: MetricSummary) -> String { meanStd(m, digits: 3, pm: "±") }
    var md = "# Outcome prediction\(phase.map { ", phase \($0)" } ?? "")\n\n"
    md += "Checkpoint \(markdownCode(checkpoint)), evaluated on \(markdownCode(data)) (\(r.n) trials, \(r.positives) successful); "
    md += "mean ± std over 10 resamples of 80 % of the rows (80 % of each class's). F1 and ACC (accuracy) at 0.5; F1 (thr) "
    md += report.zeroShot == true
        ? "at the F1-best threshold of these trials themselves (a pretraining checkpoint scored zero-shot has no selection trials: optimistic).\n\n"
        : "at the threshold the run chose on its selection trials (best.json; on out-of-fold scores for a cross-fitted run).\n\n"
    // Where the trials stand to the model (eval.json's out_of_fold, in_sample_trials, sct_trials), as `compare` notes them.
    if report.outOfFold == true {
        let k = report.inSampleTrials
        md += "Scored out of fold: each trial by the members that did not train on it"
            + (k == 0 ? ", and that did not select their epoch on it either (the run kept these trials out of selection and of its threshold: "
                        + "`finetune --report-trials`).\n\n"
                      : ", whose epochs \(k.map { "\($0) of the \(r.n)" } ?? "these") trials selected (with the others, they also set the run's threshold): "
                        + "less optimistic than in-sample scores, but not a held-out test.\n\n")
    } else if let k = report.inSampleTrials, k > 0 {
        md += "**In-sample:** \(k) of the \(r.n) trials trained the model(s) or selected their epoch: these figures are not out of sample.\n\n"
    }
    if let k = report.sctTrials, k > 0 {
        md += "\(k) of the \(r.n) trials were in the pretraining's SCT corpus (successful trials the model was pretrained on, `sct_trials`).\n\n"
    }
    md += "| Method | F1 | F1 (thr) | PR-AUC | ROC-AUC | ACC |\n|---|---|---|---|---|---|\n"
    md += "| **this run** | \(c(r.f1)) | \(c(r.f1AtThreshold)) | \(c(r.prAUC)) | \(c(r.rocAUC)) | \(c(r.accuracy)) |\n"
    if let base = r.f1AllSuccess {
        md += "| every trial predicted successful (the F1 baseline, same resamples) | \(c(base)) | \(c(base)) | | | |\n"
    }
    if let nd = report.newDiseases {
        md += "| this run, new diseases (n = \(nd.n)) | \(c(nd.f1)) | \(c(nd.f1AtThreshold)) | \(c(nd.prAUC)) | \(c(nd.rocAUC)) | \(c(nd.accuracy)) |\n"
    }
    if let phase, let rows = paperTable2[phase] {
        for (m, f1, pr, roc) in rows { md += "| \(m) (published, paper's Table 2) | \(f1) | | \(pr) | \(roc) | |\n" }
    }
    // After the table (a paragraph inside it would cut it in two).
    for (name, d) in [("all", Optional(r)), ("new diseases", report.newDiseases)] {
        if let d, let note = rankingResamplesNote(d, subset: name) { md += "\n" + note.replacingOccurrences(of: "note: ", with: "Note: ") + ".\n" }
    }
    if let phase, paperTable2[phase] != nil {
        md += "\nThe published rows are the paper's figures on the TOP *test* split, which is held out here "
        md += "(`data/top/heldout_nctids.txt`); ours are on the file above, with this checkpoint's model and pretraining "
        md += "(the pretraining run's config.yaml; a fine-tuned run keeps that checkpoint in its pretrained/; the paper's "
        md += "full-size recipe is configs/paper.yaml, `Launch/paper`). They are context, not a like-for-like comparison.\n"
    }
    // The curves written with it into its folder (evaluate --plots there): their PNG when there is one. Others (another
    // folder's, or an earlier evaluation's) are not this report's.
    if let curves {
        md += "\n" + markdownImage(alt: "ROC", embedded: curves.roc) + "\n\n" + markdownImage(alt: "PR", embedded: curves.pr) + "\n"
    }
    if let group { try group.write(path) { try $0.write(contentsOf: Data(md.utf8)) } } else { try writeTextFile(path, md) }
}
