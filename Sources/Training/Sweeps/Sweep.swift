import Support
import Foundation
import Reporting

/// One point of a batch-size sweep, read back from its pretraining run directory.
public struct SweepPoint {
    public var globalBatch: Int
    public var learningRate: Double
    public var status: String
    public var bestValLoss: Double?
    public var epochsToBest: Double?
    public var samplesToBest: Int?
    public var finalTop1: Double?
    public var chanceTop1: Double?
    public var samplesPerSecond: Double?
    public var peakRSSMiB: Double?
    /// Epochs trained (the last evaluation's epoch).
    public var epochsRun: Double?
    /// True when early stopping ended the run (the validation loss had stopped improving for train.patience
    /// evaluations), false when the epoch budget ran out first; nil for runs without early stopping's record.
    public var converged: Bool?

    /// Reads `runDir/metrics.jsonl` of a run that exited with `exitStatus`; a run that failed or left no
    /// evaluation and summary is marked failed.
    public init(globalBatch: Int, learningRate: Double, exitStatus: Int, runDir: String) {
        self.globalBatch = globalBatch
        self.learningRate = learningRate
        // Through readRegularFile: a failed point's folder may hold anything (a FIFO would block a plain read).
        let path = runDir + "/metrics.jsonl"
        let evals = MetricsLog.records(of: "eval", in: path, as: EvalRecord.self)
        let summary = MetricsLog.records(of: "summary", in: path, as: SummaryRecord.self).last
        let ok = exitStatus == 0 && !evals.isEmpty && summary != nil
        status = ok ? "ok" : "failed"
        guard ok, let summary else { return }
        let best = evals.min { ($0.valLoss ?? .infinity) < ($1.valLoss ?? .infinity) }!
        bestValLoss = best.valLoss
        epochsToBest = best.epoch
        samplesToBest = best.step * globalBatch
        finalTop1 = evals.last!.valTop1C2dm
        chanceTop1 = evals.last!.chanceTop1
        samplesPerSecond = summary.samplesPerSecond
        peakRSSMiB = summary.peakRssMb
        epochsRun = evals.last!.epoch
        converged = summary.stoppedEarly
    }
}

/// Writes `sweep.csv` (global_batch,lr,best_val_loss,epochs_to_best,samples_per_second,peak_rss_mb,status; its columns
/// are a surface that scripts read), `sweep.svg` (the paper's figure 8: best validation loss against batch size, the
/// ball's area growing with the epochs to that best, hollow when the epoch budget ended the run before early
/// stopping did, the learning rate under each batch) and `summary.md` (also samples to the best, epochs run and
/// whether early stopping ended the run, and the batches of `notRun` that the sweep did not reach), atomically and
/// together, into `dir`.
public func writeSweepReport(dir: String, points: [SweepPoint], title: String, notRun: [Int] = []) throws {
    // Before any is written: a device or FIFO at one of the names (or behind a link) is refused, not replaced.
    for name in ["sweep.svg", "sweep.png", "sweep.csv", "summary.md"] {
        try refuseNonRegularOutput(name.hasSuffix(".png") ? dir + "/" + name : writeTarget(dir + "/" + name), reportingAs: dir + "/" + name)
    }
    func f(_ v: Double?, _ format: String) -> String { v.map { String(format: format, $0) } ?? "" }
    func yesNo(_ v: Bool?) -> String { v.map { $0 ? "yes" : "no" } ?? "" }
    var csv = "global_batch,lr,best_val_loss,epochs_to_best,samples_per_second,peak_rss_mb,status\n"
    var md = "# \(title)\n\n| global batch | lr | best val loss | epochs to best | samples to best | epochs run | converged | final top-1 C->DM (chance) | samples/s | peak RSS/rank (MiB) | status |\n|---|---|---|---|---|---|---|---|---|---|---|\n"
    for p in points {
        csv += "\(p.globalBatch),\(p.learningRate),\(f(p.bestValLoss, "%.6f")),\(f(p.epochsToBest, "%.3f")),\(f(p.samplesPerSecond, "%.2f")),\(f(p.peakRSSMiB, "%.1f")),\(p.status)\n"
        let top1 = p.finalTop1.map { String(format: "%.3f (%.4f)", $0, p.chanceTop1 ?? 0) } ?? ""
        md += "| \(p.globalBatch) | \(String(format: "%.3g", p.learningRate)) | \(f(p.bestValLoss, "%.4f")) | \(f(p.epochsToBest, "%.2f")) | \(p.samplesToBest.map(String.init) ?? "") | \(f(p.epochsRun, "%.2f")) | \(yesNo(p.converged)) | \(top1) | \(f(p.samplesPerSecond, "%.1f")) | \(f(p.peakRSSMiB, "%.0f")) | \(p.status) |\n"
    }
    // The four files as one (`OutputGroup`): a failure leaves the earlier report whole.
    let outputs = OutputGroup()
    let figure = try writePlot(dir + "/sweep.svg", group: outputs, batchScalingPlot(points, title: title))
    md += "\n" + markdownImage(alt: "batch size vs validation loss", embedded: figure) + "\n\nThe ball's area grows with the epochs to the best validation loss; the learning rate of each point is under its batch size. "
    md += "Converged: early stopping ended the run (no better validation loss for train.patience evaluations); a hollow ball ran out of epochs first, so its best loss is only a bound.\n"
    if !notRun.isEmpty {
        md += "\n**Not run:** global batch \(notRun.map(String.init).joined(separator: ", ")) of the sweep's batches (batches.txt): the sweep stopped before "
            + (notRun.count == 1 ? "it or while it ran" : "them or during the first") + "; this report covers the other points only.\n"
    }
    try outputs.write(dir + "/sweep.csv") { try $0.write(contentsOf: Data(csv.utf8)) }
    try outputs.write(dir + "/summary.md") { try $0.write(contentsOf: Data(md.utf8)) }
    try outputs.commit()
}

/// Figure 8 of the paper as SVG: x = log2 global batch, y = best validation loss, ball radius ~ sqrt(epochs).
func batchScalingPlot(_ points: [SweepPoint], title: String) -> String {
    let w = 720.0, h = 440.0, left = 70.0, right = 30.0, top = 40.0, bottom = 80.0
    let done = points.filter { $0.bestValLoss != nil }
    let xs = points.map { log2(Double($0.globalBatch)) }, ys = done.map { $0.bestValLoss! }
    var x0 = (xs.min() ?? 0) - 0.5, x1 = (xs.max() ?? 1) + 0.5
    if x1 - x0 < 1 { x0 -= 0.5; x1 += 0.5 }
    // Losses are >= 0: the axis runs between round values around the data (room above and below for the balls).
    let yDomain = axisDomain(ys.min() ?? 0, ys.max() ?? 1, pad: 0.15, bounds: 0...Double.greatestFiniteMagnitude)
    let y0 = yDomain.lowerBound, y1 = yDomain.upperBound
    func px(_ b: Int) -> Double { left + (log2(Double(b)) - x0) / (x1 - x0) * (w - left - right) }
    func py(_ y: Double) -> Double { h - bottom - (y - y0) / (y1 - y0) * (h - top - bottom) }
    let maxEpochs = done.compactMap(\.epochsToBest).max() ?? 1
    var s = svgFrame(width: w, height: h, left: left, right: right, top: top, bottom: bottom, title: title)
    let ticks = niceTicks(y0, y1)
    for (yv, label) in zip(ticks, tickLabels(ticks)) {
        s += String(format: "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#e5e5e5\"/>\n", left, w - right, py(yv), py(yv))
        s += String(format: "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%@</text>\n", left - 6, py(yv) + 4, label)
    }
    for p in points {
        let x = px(p.globalBatch)
        s += String(format: "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%d</text>\n", x, h - bottom + 18, p.globalBatch)
        s += String(format: "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" fill=\"#555\">lr %.2g</text>\n", x, h - bottom + 34, p.learningRate)
        guard let y = p.bestValLoss, let e = p.epochsToBest else {
            s += String(format: "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" fill=\"#d62728\">failed</text>\n", x, h - bottom - 10)
            continue
        }
        let r = 4 + 18 * (max(e, 0) / max(maxEpochs, 1e-9)).squareRoot()
        // Filled: converged (or no early stopping in this sweep); hollow: the epoch budget ran out first.
        let opacity = p.converged == false ? 0.0 : 0.45
        s += String(format: "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"%.1f\" fill=\"#1f77b4\" fill-opacity=\"%.2f\" stroke=\"#1f77b4\" stroke-width=\"1.5\"/>\n", x, py(y), r, opacity)
        s += String(format: "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"10\">%.1f ep%@</text>\n", x, py(y) - r - 4, e,
                       p.converged == false ? " (budget)" : "")
    }
    s += "<text x=\"\(w / 2)\" y=\"\(h - 22)\" text-anchor=\"middle\">global batch size (log scale); learning rate below</text>\n"
    s += "<text x=\"16\" y=\"\((h - bottom + top) / 2)\" text-anchor=\"middle\" transform=\"rotate(-90 16 \((h - bottom + top) / 2))\">best validation InfoNCE loss</text>\n"
    return s + "</svg>\n"
}
