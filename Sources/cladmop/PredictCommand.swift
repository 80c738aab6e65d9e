import ArgumentParser
import Config
import Foundation
import Reporting
import Support
import Training

struct Predict: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Success probability of every trial of a TOP CSV -> CSV (nctid,probability).")

    @OptionGroup var options: ConfigOptions
    @Option(help: "Fine-tuned checkpoint (.safetensors, .json or run directory); a pretraining one gives its zero-shot pair-matching score instead.") var checkpoint: String
    @Option(help: "TOP-format CSV; its label column may be empty or absent (labels are not used), except with --out-of-fold, which checks them against the run's folds.csv; or a feature store (cladmop featurize --output): every trial it holds.") var data: String
    @Option(help: "Output CSV: nctid,probability with 6 decimals (a trial's score moves in its last float digits with the batch it is scored in; evaluate ranks the unrounded scores, so zero-shot scores near 1 can tie here and not there).") var output: String
    @Flag(name: .customLong("out-of-fold"), help: "A cross-fitted run (finetune.folds): score each trial with the member that did not train on it (the mean of one per partition; RUN/folds.csv); every trial of --data must be in a fold.")
    var outOfFold = false

    func run() throws {
        runJob { comm in
            try checkOutputs([("--output", output)], inputs: [("--data", data), ("--checkpoint", checkpoint)], isRoot: comm.isRoot)
            let scored = try scoreCSV(checkpoint: checkpoint, csv: data, spec: try options.loadForScoring(comm), comm: comm, outOfFold: outOfFold,
                                  labels: .optional, log: log)
            guard comm.isRoot else { return }
            let (trials, scores) = (scored.trials, scored.scores)
            var text = "nctid,probability\n"
            for (t, s) in zip(trials, scores) { text += "\(t.nctid),\(String(format: "%.6f", s))\n" }
            try writeTextFile(output, text)
            if scored.newDisease == nil {
                log("predict: \(checkpoint) is a pretraining checkpoint: the column is its zero-shot pair-matching score, the sigmoid of its InfoNCE logit (s cos(f_C, f_DM), or s f_C . f_DM when pretrained with loss.normalize false), not a fine-tuned success probability")
            }
            log("predict: \(trials.count) trials -> \(output)")
        }
    }
}
