import Foundation
import Reporting
import Support

/// report.md with the loss and retrieval plots of a pretraining run, from its metrics records.
func writePretrainReport(runDir: String, train: [TrainRecord], evals: [EvalRecord], globalBatch: Int, corpus: [String],
                         parameters: Int, worldSize: Int, steps: Int) throws {
    func points(_ x: (EvalRecord) -> Double, _ y: (EvalRecord) -> Double?) -> [(Double, Double)] { evals.map { (x($0), y($0) ?? .nan) } }
    // The plots and report.md as one (`OutputGroup`): a failure leaves the earlier ones whole.
    let outputs = OutputGroup()
    let lossImage = try writePlot(runDir + "/loss.svg", group: outputs, svgLinePlot(title: "InfoNCE loss", xLabel: "step", yLabel: "loss",
                    series: [PlotSeries("train (global batch)", train.map { (Double($0.step), $0.loss ?? .nan) }),
                             PlotSeries("validation", points({ Double($0.step) }, \.valLoss))], xBounds: 0...Double.infinity))
    // Across the evaluations' epochs (a line to 1e9 had run far outside the SVG's canvas).
    let lastEpoch = evals.map(\.epoch).max() ?? 1
    let chance = evals.last.map { e in [PlotSeries(String(format: "chance top-1 (1/%d)", e.valSize), [(0, e.chanceTop1), (lastEpoch, e.chanceTop1)], reference: true)] } ?? []
    let retrievalImage = try writePlot(runDir + "/retrieval.svg", group: outputs, svgLinePlot(title: "Validation retrieval accuracy", xLabel: "epoch", yLabel: "accuracy",
                    series: [PlotSeries("top-1 C->DM", points(\.epoch, \.valTop1C2dm)), PlotSeries("top-5 C->DM", points(\.epoch, \.valTop5C2dm)),
                             PlotSeries("top-1 DM->C", points(\.epoch, \.valTop1Dm2c)), PlotSeries("top-5 DM->C", points(\.epoch, \.valTop5Dm2c))] + chance,
                    xBounds: 0...Double.infinity, yBounds: 0...1))
    var md = "# Pretraining report\n\n"
    // A run resumed on another world size: the ranks of each stretch (from the logged steps), not the last one's alone.
    var stretches: [(ranks: Int, first: Int, last: Int)] = []
    for r in train {
        if let s = stretches.last, s.ranks == r.worldSize { stretches[stretches.count - 1].last = r.step }
        else { stretches.append((r.worldSize, r.step, r.step)) }
    }
    let ranks = stretches.count > 1
        ? stretches.map { "\($0.ranks) rank(s) for logged steps \($0.first)-\($0.last)" }.joined(separator: ", ") + " (resumed on another number of ranks)"
        : "\(stretches.first?.ranks ?? worldSize) rank(s)"
    md += "\(parameters) parameters, \(ranks), global batch \(globalBatch), \(steps) steps.\n\n"
    md += "```\n" + corpus.map { $0.replacingOccurrences(of: "\r", with: "\\r").replacingOccurrences(of: "\n", with: "\\n") }.joined(separator: "\n") + "\n```\n\n"
    let scored = evals.filter { $0.valLoss != nil }
    if let last = scored.last, let best = scored.min(by: { $0.valLoss! < $1.valLoss! }) {
        let n = Double(last.valSize)
        md += "| validation | loss | top-1 C->DM | top-5 C->DM | top-1 DM->C | top-5 DM->C |\n|---|---|---|---|---|---|\n"
        // An evaluation at max_steps can fall inside an epoch: its fraction is shown, not rounded away.
        let bestEpoch = best.epoch == best.epoch.rounded() ? String(format: "epoch %.0f", best.epoch)
                                                            : String(format: "step %ld, epoch %.2f", best.step, best.epoch)
        for (name, e) in [("best (\(bestEpoch))", best), ("last", last)] {
            md += String(format: "| %@ | %.4f | %.3f | %.3f | %.3f | %.3f |\n", name, e.valLoss!, e.valTop1C2dm ?? .nan, e.valTop5C2dm ?? .nan,
                         e.valTop1Dm2c ?? .nan, e.valTop5Dm2c ?? .nan)
        }
        if n > 0 { md += String(format: "| chance | | %.4f | %.4f | %.4f | %.4f |\n", 1 / n, 5 / n, 1 / n, 5 / n) }
        md += "\n"
    }
    md += markdownImage(alt: "loss", embedded: lossImage) + "\n\n" + markdownImage(alt: "retrieval", embedded: retrievalImage) + "\n\nResolved configuration: `config.yaml`. Every logged step and evaluation: `metrics.jsonl`.\n"
    try outputs.write(runDir + "/report.md") { try $0.write(contentsOf: Data(md.utf8)) }
    try outputs.commit()
}
