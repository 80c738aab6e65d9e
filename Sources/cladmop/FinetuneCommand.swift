import ArgumentParser
import Communication
import Config
import Foundation
import Reporting
import Support
import Training
import TrialData

struct Finetune: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "PEFT fine-tuning (LoRA + prediction head) of a pretrained checkpoint on labelled TOP files, each model's epoch selected on trials it did not train on (the validation file, or its fold with finetune.folds).")

    @OptionGroup var options: ConfigOptions
    @Option(help: "Pretraining checkpoint (.safetensors, .json or run directory), or 'none' for the no-pretraining ablation.")
    var pretrained: String
    @Option(help: "Labelled TOP CSV to fine-tune on.") var train: String
    @Option(help: "Labelled TOP CSV that selects the epoch and the F1 threshold; with finetune.folds >= 2 pooled with --train and cut into folds (each member selects on its own), with finetune.select_latest > 0 trained on (the latest --train trials select).") var valid: String
    @Option(help: ArgumentHelp("Labelled TOP CSV of auxiliary trials (repeatable; for example other phases): added to every member's training and counted by the class weights, never to selection, folds or the threshold. Trials also in --train or --valid stay there only; a trial in two --aux files counts once (the first); held-out ids (data.exclude_file) are removed. --train and --valid still need both classes each (with folds, their pool).", valueName: "csv"))
    var aux: [String] = []
    @Option(name: .customLong("report-trials"), help: ArgumentHelp("TOP CSV of trials whose out-of-fold scores will be reported (with finetune.folds): those of --train and --valid still train the members of the other folds, but never select an epoch or set the threshold, so `evaluate --out-of-fold` scores each with members that neither trained nor selected on it (in_sample_trials 0). Launch/finetune passes its report file.", valueName: "csv"))
    var reportTrials: String?
    @Option(help: "Run directory: config.yaml, best.json, checkpoints/ and metrics.jsonl (an ensemble, finetune.ensemble > 1 or finetune.folds >= 2: checkpoints/ and metrics.jsonl per member in members/k/, folds.csv when cross-fitted, and a metrics.jsonl of the run: every member's records, then the ensemble's choice); pretrained/, the pretraining checkpoint it started from.") var runDir: String
    @Flag(help: "Replace the fine-tuning run that --run-dir already holds (its files are deleted first).") var overwrite = false
    @Option(help: "auto: continue the fine-tuning run in --run-dir that was interrupted: an ensemble's finished members (finetune.epoch_selection: member) are kept when they are what this command trains, the others trained; a single model or pooled selection starts again; an ended run (best.json) is left as it is.")
    var resume: String?

    func validate() throws {
        if let resume, resume != "auto" { throw ValidationError("--resume takes only 'auto' (got '\(resume)')") }
        if resume != nil && overwrite { throw ValidationError("--resume auto continues the run in --run-dir and --overwrite replaces it: choose one") }
    }

    func run() throws {
        runJob { comm in
            var (config, spec) = try options.resolve(comm)
            let run = resolvedPath(runDir)
            if pretrained != "none", resolvedPath(pretrained) == run || resolvedPath(pretrained).hasPrefix(run + "/") {
                throw InputError(file: runDir, "--run-dir holds the --pretrained checkpoint (\(pretrained)); fine-tune into another folder (a subfolder such as \(runDir)/finetune is fine)")
            }
            if resolvedPath(train) == resolvedPath(valid) {
                throw InputError(file: valid, "--valid is the same file as --train; selection needs trials of another file")
            }
            let resuming = resume == "auto"
            try checkRunDirectory(runDir, comm: comm, resume: resuming, overwrite: overwrite, artifacts: finetuneArtifacts,
                                  inputs: [("--train", train), ("--valid", valid)] + aux.map { ("--aux", $0) } + (reportTrials.map { [("--report-trials", $0)] } ?? [])
                                      + specInputs(spec, config: options.config),
                                  hint: "continue it with --resume auto, replace it with --overwrite, or choose another --run-dir")
            if resuming {
                // Locked before the folder is read (a job still writing the run there is refused), as pretrain does;
                // prepareRunDirectory's lock is then this one. What the folder holds decides on every rank alike (it
                // must be one folder, shared by every node).
                if comm.isRoot && FileManager.default.fileExists(atPath: runDir) { try lockRunForWriting(runDir) }
                let sign = comm.isRoot ? pretrainingRunSign(runDir) : nil
                if let sign { throw InputError(file: runDir, "holds a pretraining run (\(sign)); finetune --resume auto continues a fine-tuning run (pretrain --resume auto continues this one)") }
                let ended = FileManager.default.fileExists(atPath: runDir + "/best.json")
                try requireAgreement([("\(runDir)/best.json", ended ? "present" : "absent")], comm: comm,
                                     what: "run folders (--resume auto: --run-dir must name one folder, shared by every node)")
                if ended {
                    if comm.isRoot { log("finetune: --resume auto: the fine-tuning run in \(runDir) ended (its best.json is written); nothing to do, the run is left as it is") }
                    return
                }
            }
            // A run folder (or its checkpoints/ or best.json) means "its best checkpoint": not while that run is written.
            if pretrained != "none", comm.isRoot {
                var isDir: ObjCBool = false
                let named = URL(fileURLWithPath: resolvedPath(pretrained))
                if FileManager.default.fileExists(atPath: named.path, isDirectory: &isDir) {
                    let folder = isDir.boolValue ? named : named.deletingLastPathComponent()
                    if isDir.boolValue || named.lastPathComponent == "best.json" {
                        try requireRunFolderIdle(folder.lastPathComponent == "checkpoints" ? folder.deletingLastPathComponent().path : folder.path,
                                                 option: "--pretrained \(pretrained)")
                    }
                }
            }
            let base = pretrained == "none" ? nil : try PretrainedBase(pretrained)
            // Each rank reads its node's copy, and takes model.*, loss.* and data.max_* from it (adoptFixedKeys): ranks
            // started from other checkpoints would build other models (or exchange buffers of other sizes).
            try requireAgreement([("--pretrained \(pretrained)", base.map { "tensors \($0.meta.tensorsChecksum), metadata \($0.meta.metadataChecksum)" } ?? "none")],
                                 comm: comm, what: "pretrained checkpoints (--pretrained must be the same checkpoint on every node)")
            if let base {
                if comm.isRoot, let warning = unfinishedPretrainingWarning(pretrained) { standardErrorWrite(Data((warning + "\n").utf8)) }
                // The checkpoint fixes the model, the loss it was pretrained with and its input space: the run records
                // its values (config.yaml, every checkpoint's spec), not the configuration's, and says which it replaced.
                let said = try base.adoptFixedKeys(&config, &spec)
                if comm.isRoot { said.forEach(log) }
            }
            let hierarchy = try ICD10Hierarchy(path: spec.data.icdHierarchy, comm: comm)
            if let base {
                try hierarchy.requireTables(of: base.meta.model, trainedTree: base.meta.icdHierarchy, checkpoint: base.jsonPath)
                try requireTrainedEncoder(spec: spec, meta: base.meta, checkpoint: base.jsonPath)
            } else { try hierarchy.requireDepth(spec.model.icdDepth) }
            // Only the ids of the report file are needed (every rank reads it; a trial without a label is fine).
            let reported = try reportTrials.map { Set(try readTrials(paths: [$0], skipBadRows: spec.data.skipBadRows, labels: .optional).0.map(\.nctid)) } ?? []
            if let reportTrials, reported.isEmpty { throw InputError(file: reportTrials, "has no trial rows; --report-trials names the trials to report") }
            // They choose which trials select (each rank reads its node's copy).
            try requireAgreement([("--report-trials \(reportTrials ?? "")", reportTrials == nil ? "none" : "\(reported.count) ids, checksum " + checksumHex(reported.sorted().joined(separator: ",")))],
                                 comm: comm, what: "report trials (--report-trials must be the same file on every node)")
            let store = try storeContaining([train, valid] + aux, spec: spec, hierarchy: hierarchy, comm: comm, log: log)
            let tuner = try Finetuner(spec: spec, comm: comm, pretrained: base, trainFile: train, validFile: valid, auxFiles: aux,
                                      reportTrials: reported, reportFile: reportTrials, runDir: runDir, store: store, hierarchy: hierarchy, log: log)
            if resuming { try tuner.planResume() }
            try prepareRunDirectory(runDir, config: config, comm: comm, resume: resuming, overwrite: overwrite, artifacts: finetuneArtifacts)
            try tuner.run()
        }
    }
}
