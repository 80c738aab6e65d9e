import ArgumentParser
import Communication
import Foundation
import Model
import Support
import Training

struct Embed: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Per-trial embeddings of a checkpoint -> safetensors: f_dm, f_c (the chosen criteria level) and pooled U^{D,M}, nctids in the metadata (under mpirun: ranks embed disjoint shards, rank 0 writes).")

    @OptionGroup var options: ConfigOptions
    @Option(help: "Pretraining or fine-tuned checkpoint (.safetensors, .json or run directory).") var checkpoint: String
    @Option(help: "TOP-format CSV (featurized on the fly when the feature store does not hold it; the label column may be empty or absent), or a feature store (cladmop featurize --output): every trial it holds.") var data: String
    @Option(help: "Output safetensors file.") var output: String
    @Option(help: "Criteria level of f_c: coarse, medium or fine (the pretraining loss's).") var level: String = "fine"

    func validate() throws {
        guard ModelConfig.levelNames.contains(level) else { throw ValidationError("--level must be coarse, medium or fine (got '\(level)')") }
    }

    func run() throws {
        runJob { comm in
            try checkOutputs([("--output", output)], inputs: [("--data", data), ("--checkpoint", checkpoint)], isRoot: comm.isRoot)
            let spec = try options.loadForScoring(comm)
            let loaded = try LoadedCheckpoint(checkpoint, comm: comm)
            if comm.isRoot, loaded.outcome == nil, let warning = unfinishedPretrainingWarning(checkpoint) {
                standardErrorWrite(Data((warning + "\n").utf8))
            }
            let (rows, builder) = try loaded.rows(of: data, spec: spec, comm: comm, labels: .optional, log: log)
            let levelIndex = ModelConfig.levelNames.firstIndex(of: level)!
            let x = embedTrials(rows, model: loaded.model, builder: builder, level: levelIndex, comm: comm,
                                stall: StallPolicy(stallTimeout: spec.train.stallTimeout))
            for (values, width, what) in [(x.fDM, x.encoderDim, "embeds (f_dm)"), (x.pooled, x.modelDim, "embeds (pooled)")] {
                try requireFiniteOutputs(values, width: width, nctids: x.nctids, what: what, checkpoint: checkpoint, csv: data)
            }
            guard comm.isRoot else { return }
            // An ensemble's members share nothing to average embeddings over: the run's best.json names one of them.
            if let members = try? ensembleMembers(runFolder(named: checkpoint))?.members, members.count > 1 {
                log("embed: \(checkpoint) is an ensemble of \(members.count) members; these are the embeddings of one of them, \(loaded.path)")
            }
            try writeEmbeddings(x, path: output, metadata: ["level": level, "checkpoint": checkpoint, "checkpoint_file": loaded.path, "data": data,
                                                            "format": "cladmop-embeddings"])
            log("embed: \(rows.count) trials -> \(output) (f_dm, f_c: \(x.encoderDim); pooled: \(x.modelDim))")
        }
    }
}
