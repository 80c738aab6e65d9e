import Support
import ArgumentParser
import Foundation
import NN
import Training

/// `cladmop sweep-report --out DIR`: collects the points a batch-size sweep (Launch/sweep-batch) ran into
/// DIR/sweep.csv, DIR/sweep.svg and DIR/summary.md.
struct SweepReport: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sweep-report",
        abstract: "Collect a batch-size sweep's runs (DIR/points.tsv: global_batch, lr, exit status, run dir) into sweep.csv, sweep.svg and summary.md.")

    @Option(help: "The sweep's output folder.")
    var out: String

    @Option(help: "Title of the plot and the summary.")
    var title = "Batch size vs validation loss"

    func run() throws {
        let listing = out + "/points.tsv"
        guard let text = String(data: try readRegularFile(listing, what: "sweep's list of points (written by Launch/sweep-batch)"),
                                encoding: .utf8) else {
            throw InputError(file: listing, "is not UTF-8 text")
        }
        var points: [SweepPoint] = []
        for (i, line) in text.split(separator: "\n").enumerated() {
            let f = line.split(separator: "\t").map(String.init)
            guard f.count == 4, let b = Int(f[0]), let lr = Double(f[1]), let status = Int(f[2]) else {
                throw InputError(file: listing, line: i + 1, "expected global_batch<TAB>lr<TAB>exit status<TAB>run dir")
            }
            points.append(SweepPoint(globalBatch: b, learningRate: lr, exitStatus: status, runDir: f[3]))
        }
        try writeSweepReport(dir: out, points: points.sorted { $0.globalBatch < $1.globalBatch }, title: title)
        print("sweep: \(points.count) point(s), \(points.filter { $0.status == "ok" }.count) ok -> \(out)/sweep.csv, sweep.svg, summary.md")
    }
}
