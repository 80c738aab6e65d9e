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
            var md = "| method | n | F1 (0.5) | PR-AUC | ROC-AUC | accuracy |\n|---|---|---|---|---|---|\n"
            for e in evals {
                guard let eq = e.firstIndex(of: "=") else { throw InputError("--eval \(e): expected LABEL=FILE.json") }
                let label = String(e[..<eq]), file = String(e[e.index(after: eq)...])
                guard let d = FileManager.default.contents(atPath: file),
                      let r = (try? JSONSerialization.jsonObject(with: d)) as? [String: Any] else {
                    throw InputError(file: file, "not an evaluation JSON (cladmop evaluate --json)")
                }
                func cell(_ k: String) -> String {
                    guard let m = r[k] as? [String: Any], let mean = m["mean"] as? Double, let std = m["std"] as? Double else { return "n/a" }
                    return String(format: "%.3f ± %.3f", mean, std)
                }
                md += "| \(label) | \(r["n"] ?? "") | \(cell("f1")) | \(cell("pr_auc")) | \(cell("roc_auc")) | \(cell("accuracy")) |\n"
            }
            guard comm.isRoot else { return }
            print(md, terminator: "")
            if let output { try writeFileAtomically(output) { try $0.write(contentsOf: Data(md.utf8)) } }
        }
    }
}
