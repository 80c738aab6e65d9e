import Foundation
import Reporting
import Support

/// report.md with the loss and retrieval plots of a pretraining run.
func writePretrainReport(runDir: String, history: [[String: Double]], globalBatch: Int, corpus: [String],
                         parameters: Int, worldSize: Int, steps: Int) throws {
    let train = history.filter { $0["loss"] != nil }.map { ($0["step"]!, $0["loss"]!) }
    let evals = history.filter { $0["val_loss"] != nil }
    try svgLinePlot(title: "InfoNCE loss", xLabel: "step", yLabel: "loss",
                    series: [("train (global batch)", train), ("validation", evals.map { ($0["step"]!, $0["val_loss"]!) })])
        .write(toFile: runDir + "/loss.svg", atomically: true, encoding: .utf8)
    try svgLinePlot(title: "Validation retrieval accuracy", xLabel: "epoch", yLabel: "accuracy",
                    series: [("top-1 C->DM", evals.map { ($0["epoch"]!, $0["top1_c2dm"]!) }),
                             ("top-5 C->DM", evals.map { ($0["epoch"]!, $0["top5_c2dm"]!) }),
                             ("top-1 DM->C", evals.map { ($0["epoch"]!, $0["top1_dm2c"]!) }),
                             ("top-5 DM->C", evals.map { ($0["epoch"]!, $0["top5_dm2c"]!) })])
        .write(toFile: runDir + "/retrieval.svg", atomically: true, encoding: .utf8)
    var md = "# Pretraining report\n\n"
    md += "\(parameters) parameters, \(worldSize) rank(s), global batch \(globalBatch), \(steps) steps.\n\n"
    md += "```\n" + corpus.joined(separator: "\n") + "\n```\n\n"
    if let last = evals.last, let best = evals.min(by: { $0["val_loss"]! < $1["val_loss"]! }) {
        let n = Double(corpus.first.flatMap { line -> Int? in
            guard let r = line.range(of: "train, ") else { return nil }
            return Int(line[r.upperBound...].split(separator: " ").first ?? "")
        } ?? 0)
        md += "| validation | loss | top-1 C->DM | top-5 C->DM | top-1 DM->C | top-5 DM->C |\n|---|---|---|---|---|---|\n"
        for (name, e) in [("best (epoch \(String(format: "%.0f", best["epoch"]!)))", best), ("last", last)] {
            md += String(format: "| %@ | %.4f | %.3f | %.3f | %.3f | %.3f |\n", name, e["val_loss"]!, e["top1_c2dm"]!, e["top5_c2dm"]!,
                         e["top1_dm2c"]!, e["top5_dm2c"]!)
        }
        if n > 0 { md += String(format: "| chance | | %.4f | %.4f | %.4f | %.4f |\n", 1 / n, 5 / n, 1 / n, 5 / n) }
        md += "\n"
    }
    md += "![loss](loss.svg)\n\n![retrieval](retrieval.svg)\n\nResolved configuration: `config.yaml`. Every logged step and evaluation: `metrics.jsonl`.\n"
    try md.write(toFile: runDir + "/report.md", atomically: true, encoding: .utf8)
}
