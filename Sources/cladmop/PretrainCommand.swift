import ArgumentParser
import Communication
import Config
import Foundation
import NN
import TextEncoder
import Training

struct Pretrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Distributed pair-matching InfoNCE pretraining on the SCT corpus (run under mpirun for several ranks).")

    @OptionGroup var options: ConfigOptions

    @Option(help: "Run directory: config.yaml, metrics.jsonl, checkpoints/, report.md and plots.")
    var runDir: String

    @Option(help: "auto: continue from the newest valid checkpoint of the run directory (falls back past damaged ones).")
    var resume: String?

    @Flag(help: "Replace the run that --run-dir already holds (its config, metrics, checkpoints, report and plots are deleted first).")
    var overwrite = false

    func validate() throws {
        if let resume, resume != "auto" { throw ValidationError("--resume takes only 'auto' (got '\(resume)')") }
        if resume != nil && overwrite { throw ValidationError("--resume auto continues the run in --run-dir and --overwrite replaces it: choose one") }
    }

    func run() throws {
        runJob { comm, faults in
            let (config, spec) = try options.resolve(comm)
            try checkRunDirectory(runDir, comm: comm, resume: resume == "auto", overwrite: overwrite, inputs: specInputs(spec, config: options.config))
            // A synthetic store has no text encoder behind it: its folder is not needed.
            let encoder = spec.data.synthetic ? nil : try spec.encoderFingerprint(comm: comm)
            let setup = try PretrainSetup(spec: spec, encoder: encoder, comm: comm)
            let trainer = try Pretrainer(setup: setup, comm: comm, runDir: runDir, faults: faults, log: log)
            if resume == "auto" {
                try trainer.resume()
                // Locked before the first write (best.json's repair; an ended run's missing report.md): a run still
                // training in the folder is refused here. (A folder not made yet holds nothing to repair: made later.)
                if comm.isRoot && FileManager.default.fileExists(atPath: runDir) { try lockRunForWriting(runDir) }
                try trainer.repairBestPointer()
                if try trainer.hasEnded() { return }     // config.yaml, metrics and checkpoints stay as they are
            }
            // Only now, with every input read and checked, is anything written.
            try prepareRunDirectory(runDir, config: config, comm: comm, resume: resume == "auto", overwrite: overwrite)
            try trainer.run()
        }
    }
}
