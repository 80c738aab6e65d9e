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

    func run() throws {
        runJob { comm in
            let files = evals.compactMap { e in e.firstIndex(of: "=").map { ("--eval", String(e[e.index(after: $0)...])) } }
            try checkOutputs(output.map { [("--output", $0)] } ?? [], inputs: files)
            var md = "| method | n | F1 (0.5) | PR-AUC | ROC-AUC | accuracy |\n|---|---|---|---|---|---|\n"
            for e in evals {
                guard let eq = e.firstIndex(of: "=") else { throw InputError("--eval \(e): expected LABEL=FILE.json") }
                let label = String(e[..<eq]), file = String(e[e.index(after: eq)...])
                let r: OutcomeMetrics
                do { r = try JSONDecoder().decode(OutcomeMetrics.self, from: try readRegularFile(file, what: "evaluation JSON", limit: 64 << 20)) }
                catch let e as InputError { throw e }
                catch { throw InputError(file: file, "not an evaluation JSON (cladmop evaluate --json): \(describeDecodingError(error))") }
                func c(_ m: MetricSummary) -> String { m.mean.flatMap { mean in m.std.map { String(format: "%.3f ± %.3f", mean, $0) } } ?? "n/a" }
                md += "| \(label) | \(r.n) | \(c(r.f1)) | \(c(r.prAUC)) | \(c(r.rocAUC)) | \(c(r.accuracy)) |\n"
            }
            guard comm.isRoot else { return }
            print(md, terminator: "")
            if let output { try writeFileAtomically(output) { try $0.write(contentsOf: Data(md.utf8)) } }
        }
    }
}
