import Support
import ArgumentParser
import Communication
import Config
import TrialData
import Foundation

struct Synth: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a synthetic SCT feature store with planted pair structure (for tests and batch-size studies).")

    @Option(parsing: .unconditional, help: "Number of trials.") var trials: Int = 1000
    @Option(parsing: .unconditional, help: "Width of the synthetic sentence vectors.") var dim: Int = 64
    @Option(parsing: .unconditional, help: "Noise added to each sentence vector (larger: harder pairing).") var noise: Double = 0.5
    @Option(parsing: .unconditional, help: "Random seed.") var seed: Int = 1
    @Option(help: "Feature store to write.") var output: String
    @OptionGroup var options: ConfigOptions

    func validate() throws {
        // Bounded up front: the store holds trials x sentences x 3 levels x dim floats.
        guard (2...1_000_000).contains(trials) else { throw ValidationError("--trials must be in 2...1000000 (got \(trials))") }
        guard (1...4096).contains(dim) else { throw ValidationError("--dim must be in 1...4096") }
        // Built in memory before it is written: up to 16 sentences x 3 levels x dim floats per trial.
        let bytes = Double(trials) * Double(dim) * Double(syntheticBytesPerTrialAndDim)
        let limit = MemoryLimit.current(), available = limit.bytes / 2
        guard bytes <= available else {
            throw ValidationError(String(format: "--trials %d x --dim %d needs up to %.1f GiB of memory (%d bytes per trial and width: "
                                         + "up to 16 sentences x 3 levels x 4 bytes); half of %@ is %.1f GiB: "
                                         + "use fewer trials or a smaller --dim", trials, dim, bytes / 1_073_741_824,
                                         syntheticBytesPerTrialAndDim, limit.source, available / 1_073_741_824))
        }
        guard noise.isFinite, noise >= 0, noise <= 1e3 else { throw ValidationError("--noise must be a finite number from 0 to 1000") }
        guard seed >= 0 else { throw ValidationError("--seed must be >= 0") }
    }

    func run() throws {
        runJob { comm in
            try checkOutputs([("--output", output)], inputs: [], protectRunFiles: false, isRoot: comm.isRoot)
            try FeatureStore.refuseReplacingOtherFiles(output, option: "--output")
            // A store featurized from CSVs (hours of encoding; what pretraining reads) is no synthetic one to replace.
            if let found = FeatureStore.identity(at: output), found.encoder != "synthetic" {
                throw InputError(file: output, "--output names a store featurized from \(found.sources.count) file(s) by \(found.encoder); "
                    + "synth replaces only a synthetic store: choose another path, or remove it first")
            }
            let spec = try options.load(comm)
            if comm.isRoot {
                let hierarchy = try ICD10Hierarchy(path: spec.data.icdHierarchy)
                try writeSyntheticStore(path: output, trials: trials, dim: dim, hierarchy: hierarchy, seed: UInt64(seed), noise: Float(noise))
                log("synth: wrote \(output) (\(trials) trials, dim \(dim), noise \(noise))")
            }
            comm.barrier()
        }
    }
}
