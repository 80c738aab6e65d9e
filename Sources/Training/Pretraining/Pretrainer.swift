import Communication
import Config
import Foundation
import Model
import NN
import Support
import TrialData

/// Distributed pair-matching pretraining (SPEC 5): every rank holds a replica and runs `ContrastiveStep` on
/// its rows of each global batch; the loop around it orders the data, evaluates, checkpoints and reports.
public final class Pretrainer {
    let comm: Communicator
    let setup: PretrainSetup
    let spec: RunSpec
    let runDir: String
    public let model: CLaDMoP
    public let params: ParameterArena
    let optimizer: Optimizer
    let step: ContrastiveStep
    let builder: BatchBuilder
    let space: FeatureSpace
    let faults: FaultPlan
    let log: (String) -> Void
    let globalBatch: Int
    let stepsPerEpoch: Int
    let totalSteps: Int
    var stepsDone = 0
    var bestValLoss = Double.infinity
    var bestCheckpoint: String?
    /// The checkpoint `resume()` loaded (its best is what checkpoints/best.json must name: `repairBestPointer`).
    var resumedMeta: CheckpointMeta?
    var evalsWithoutImprovement = 0
    /// metrics.jsonl, opened when the run starts (nothing is written while the inputs are being checked).
    var metrics: MetricsLog?
    lazy var progress = ProgressLine(enabled: comm.isRoot)
    var trainRecords: [TrainRecord] = [], evalRecords: [EvalRecord] = []

    public init(setup: PretrainSetup, comm: Communicator, runDir: String, faults: FaultPlan, log: @escaping (String) -> Void) throws {
        self.setup = setup; self.comm = comm; self.spec = setup.spec; self.runDir = runDir; self.faults = faults; self.log = log
        let train = spec.train
        globalBatch = train.globalBatch
        try requireRowPerRank(globalBatch: globalBatch, worldSize: comm.size)
        guard setup.train.count >= globalBatch else {
            throw InputError("train.global_batch = \(globalBatch) exceeds the \(setup.train.count) trials of the SCT training split")
        }
        stepsPerEpoch = setup.train.count / globalBatch
        totalSteps = Self.totalSteps(train, stepsPerEpoch: stepsPerEpoch)
        // RunSpec checks the warm-up against train.max_steps; the steps of train.epochs are known only here.
        let o = spec.optimizer
        guard o.schedule != .warmupCosine || o.warmupSteps < totalSteps else {
            throw InputError.invalid("optimizer.warmup_steps", o.warmupSteps, expected: "fewer than the \(totalSteps) steps of this run: "
                                     + "train.epochs = \(train.epochs) x \(stepsPerEpoch) steps per epoch\(train.maxSteps > 0 ? ", train.max_steps = \(train.maxSteps)" : ""); "
                                     + "the learning rate would never reach optimizer.lr")
        }
        space = FeatureSpace(trials: setup.train, data: spec.data, model: spec.model)
        builder = try BatchBuilder(store: setup.store, hierarchy: setup.hierarchy, space: space)
        let config = try ModelConfig(spec.model, loss: spec.loss, builder: builder)
        let data = spec.data, parameters = MemoryBudget.parameterCount(config)
        let memory = try MemoryBudget.requireContrastiveStep(config, train: train, molTokens: data.maxMolTokens, codes: data.maxCodes, sentences: data.maxSentences,
                                 widthName: "the encoder's width",
                                 hint: "use a smaller model (model.*), fewer sentences, codes or molecule tokens per trial (data.max_*), a smaller train.global_batch or train.loss_tile_rows, or set train.chunk_size",
                                 comm: comm)
        if comm.isRoot {
            log(String(format: "pretrain: %d parameters; about %.2f GiB per rank with activations (estimate; %.1f GiB per rank available)",
                       parameters, memory / 1_073_741_824, MemoryBudget.share(comm).bytes / 1_073_741_824))
        }
        step = ContrastiveStep(config, spec: spec, comm: comm, faults: faults)
        model = step.model; params = step.params; optimizer = step.optimizer
    }

    var checkpointDir: String { runDir + "/checkpoints" }

    /// The steps of a run: train.epochs x the steps of an epoch, cut to train.max_steps when that is set.
    static func totalSteps(_ train: TrainSpec, stepsPerEpoch: Int) -> Int {
        train.maxSteps > 0 ? min(train.maxSteps, stepsPerEpoch * train.epochs) : stepsPerEpoch * train.epochs
    }

    /// Trial indices of global step `step` (0-based): epoch order seeded by (seed, epoch), same for any W.
    func batchIndices(step: Int) -> [Int] {
        let epoch = step / stepsPerEpoch, position = step % stepsPerEpoch
        var rng = RNG(seed: UInt64(spec.train.seed) &* 1_000_003 &+ UInt64(epoch))
        let order = rng.permutation(setup.train.count)
        return Array(order[(position * globalBatch)..<((position + 1) * globalBatch)])
    }

    /// Resumes from the newest valid checkpoint of the run directory, if any.
    public func resume() throws {
        let found = Checkpoints.newestValid(dir: checkpointDir, log: { [comm] m in if comm.isRoot { self.log(m) } })
        let damaged = found == nil ? Checkpoints.list(dir: checkpointDir) : []
        // Every rank reads the run folder itself: a folder that is not shared (or not yet in sync) on every node would
        // resume the replicas from different steps, and they would train apart. Agreed before anything is loaded, and
        // before a refusal that one rank's view alone would give.
        try requireAgreement([("the checkpoint --resume auto chose in \(checkpointDir)", found.map { f in
            "\(URL(fileURLWithPath: f.0).lastPathComponent) (step \(f.1.step), tensors \(f.1.tensorsChecksum))" }
            ?? (damaged.isEmpty ? "none: starting from scratch" : "none: \(damaged.count) damaged checkpoint(s)"))],
            comm: comm, what: "run folders (--run-dir must name one folder, shared by every node, with the same checkpoints)")
        // Checkpoints that are all damaged are not "no run": training from scratch would write over them.
        if !damaged.isEmpty {
            throw InputError(file: checkpointDir, "none of its \(damaged.count) checkpoint(s) can be resumed (each is damaged, see above); move them away to start afresh or replace the run with --overwrite")
        }
        guard let (path, meta, tensors) = found else {
            // A run that completed a checkpoint and lost it (deleted, or checkpoints/ a link to a disk not mounted):
            // starting afresh would replace its metrics.jsonl, config.yaml and report with a new run's (a probe's). Its
            // log shows one: a summary (written after the last checkpoint), or a step after an evaluation (the
            // checkpoint at an evaluation is written before the next step). An evaluation alone does not: a kill or a
            // full disk while the first checkpoint was written leaves one, and that run starts afresh (restarts).
            if comm.isRoot {
                // Its own log: one linked from another run (a `cp -rs` copy) is that run's, and this run writes its own.
                let metrics = runDir + "/metrics.jsonl"
                var lst = stat()
                let own = lstat(metrics, &lst) == 0 && (lst.st_mode & S_IFMT) == S_IFREG
                struct Stepped: Decodable { var step: Int? }
                let evals = MetricsLog.records(of: "eval", in: metrics, as: Stepped.self).compactMap(\.step)
                let ended = !MetricsLog.records(of: "summary", in: metrics, as: Stepped.self).isEmpty
                let after = evals.min().map { first in MetricsLog.records(of: "train", in: metrics, as: Stepped.self).contains { ($0.step ?? 0) > first } } ?? false
                FilesRead.forget(metrics)
                if own && (ended || after) {
                    throw InputError(file: checkpointDir, "holds no checkpoint, but \(metrics) records a run that "
                                     + (ended ? "ended" : "trained past its first evaluation") + " (and so wrote checkpoints): "
                                     + "resuming would start afresh over it; put its checkpoints back, replace the run with --overwrite or choose another --run-dir")
                }
                log("resume: no valid checkpoint in \(checkpointDir); starting from scratch")
            }
            return
        }
        let now = CheckpointMeta.trainingIdentity(spec)
        var then = CheckpointMeta.trainingIdentity(meta.spec)
        // Paths may be spelt otherwise (relative or absolute, another working folder) or name a copy: what they select
        // is compared below, by the corpus fingerprint (the store's identity and the trials, after data.files and the
        // exclusions) and the ICD-10 tree's checksum.
        if meta.corpus != nil {
            then.data.featureStore = now.data.featureStore
            then.data.files = now.data.files
            then.data.excludeFile = now.data.excludeFile
            then.data.excludeCSVs = now.data.excludeCSVs
        }
        if meta.icdHierarchy != nil { then.data.icdHierarchy = now.data.icdHierarchy }
        guard meta.kind == .pretrain else {
            throw InputError(file: path, "is a fine-tuning checkpoint; --resume auto continues a pretraining run (choose its --run-dir)")
        }
        guard then == now else {
            throw InputError(file: path, "checkpoint was trained with another configuration; resume needs the same model, loss and data sections: "
                             + then.differences(from: now).joined(separator: "; "))
        }
        if let then = meta.corpus, then != setup.fingerprint {
            throw InputError(file: path, "checkpoint was trained on another SCT corpus: \(then.differences(from: setup.fingerprint).joined(separator: "; ")); "
                             + "resume needs the same data: start a new run (another --run-dir, or --overwrite)")
        }
        // The corpus leaves the encoder's weights out (checkpoints before they were recorded still resume): compared here.
        if let trained = meta.storeEncoderWeights, let now = setup.store.identity.encoderWeights, trained != now {
            throw InputError(file: path, "checkpoint was trained on the vectors of encoder weights \(trained), \(setup.store.path) holds those of weights \(now) (\(setup.store.identity.encoder)): another encoder of the same name and shapes; resume needs the same encoder (encoder.model_dir) and store")
        }
        if let trained = meta.icdHierarchy, trained != setup.hierarchy.checksum {
            throw InputError(file: path, "checkpoint was trained with an ICD-10 tree of checksum \(trained), data.icd_hierarchy = \(setup.hierarchy.path) is another (checksum \(setup.hierarchy.checksum): another order or other nodes give codes other table rows); resume needs the same tree")
        }
        guard meta.model == model.config else {
            throw InputError(file: path, "checkpoint's model differs from the one this data builds (vocabularies or table sizes: the data files or the feature store changed); resume needs the same data")
        }
        guard meta.globalBatch == globalBatch else {
            throw InputError(file: path, "checkpoint used train.global_batch = \(meta.globalBatch); resuming needs the same global batch (now \(globalBatch))")
        }
        // The trajectory goes on: the epoch's order at the saved position comes from train.seed (another seed would show
        // some trials twice and others never), the optimizer's moments from optimizer.name.
        let was = meta.spec
        var changed: [String] = []
        if was.train.seed != spec.train.seed { changed.append("train.seed = \(was.train.seed) in the checkpoint, \(spec.train.seed) now") }
        if was.optimizer.name != spec.optimizer.name {
            changed.append("optimizer.name = \(was.optimizer.name.rawValue) in the checkpoint, \(spec.optimizer.name.rawValue) now")
        }
        guard changed.isEmpty else {
            throw InputError(file: path, "resuming continues the checkpoint's data order and optimizer state: \(changed.joined(separator: "; ")); "
                             + "keep them, or start a new run (another --run-dir, or --overwrite)")
        }
        if comm.isRoot && was.optimizer != spec.optimizer {
            log("resume: optimizer settings differ from the checkpoint's (config.yaml records the new ones); the optimizer goes on from its state with them")
        }
        // A cosine schedule spans the run's steps: other train.epochs / train.max_steps stretch it, and the rate at the
        // checkpoint's step moves (a longer run's rate jumps back up). Said, with the two rates.
        let wasSteps = Self.totalSteps(was.train, stepsPerEpoch: stepsPerEpoch)
        if comm.isRoot, spec.optimizer.schedule == .warmupCosine, was.optimizer.schedule == .warmupCosine, wasSteps != totalSteps {
            let o = spec.optimizer, w = was.optimizer
            let before = Double(w.lr) * Double(LearningRateSchedule.warmupCosine(warmupSteps: w.warmupSteps, totalSteps: wasSteps, minRatio: Float(w.minLRRatio)).factor(step: meta.step + 1))
            let after = Double(o.lr) * Double(LearningRateSchedule.warmupCosine(warmupSteps: o.warmupSteps, totalSteps: totalSteps, minRatio: Float(o.minLRRatio)).factor(step: meta.step + 1))
            log(String(format: "resume: the cosine schedule now spans %ld steps, not the checkpoint's %ld (train.epochs / train.max_steps): the learning rate of step %ld is %.3g, not %.3g",
                       totalSteps, wasSteps, meta.step + 1, after, before))
        }
        try Checkpoints.restore(tensors, into: params, optimizer: optimizer)
        optimizer.restore(step: meta.optimizerStep)
        stepsDone = meta.step
        bestValLoss = meta.metrics["best_val_loss"] ?? .infinity
        bestCheckpoint = meta.bestCheckpoint
        evalsWithoutImprovement = Int(meta.metrics["evals_without_improvement"] ?? 0)
        if comm.isRoot { log("resume: \(path) (step \(meta.step), epoch \(meta.epoch), written by \(meta.worldSize) rank(s)) on \(comm.size) rank(s)") }
        resumedMeta = meta
    }

    /// After `resume()`, with the run folder locked (rank 0; the others return): checkpoints/best.json made to name the
    /// resumed checkpoint's best. A run killed between a checkpoint and its best.json (or one of a cladmop that left
    /// best.json behind on a full disk) would otherwise end with best.json naming an older checkpoint, or none, which
    /// finetune and evaluate then take.
    public func repairBestPointer() throws {
        guard comm.isRoot, let meta = resumedMeta, let best = meta.bestCheckpoint else { return }
        let file = checkpointDir + "/best.json"
        guard [".json", ".safetensors"].allSatisfy({ FileManager.default.fileExists(atPath: checkpointDir + "/" + best + $0) }) else {
            log("resume: warning: the resumed checkpoint's best, \(best), is not in \(checkpointDir); checkpoints/best.json is left as it is")
            return
        }
        let exists = FileManager.default.fileExists(atPath: file)
        let named = exists ? (try? BestJSON.read(file))?.checkpoint : nil
        guard named != "checkpoints/\(best).safetensors" else { return }
        try writeBestPointer(best, valLoss: meta.metrics["best_val_loss"] ?? .infinity)
        log("resume: checkpoints/best.json \(named.map { "named \($0)" } ?? (exists ? "could not be read" : "was missing")); it now names checkpoints/\(best).safetensors, the resumed checkpoint's best")
    }

    /// Resumed from a checkpoint that early stopping had already ended (with this command's train.patience).
    var stoppedBefore: Bool { stepsDone > 0 && spec.train.patience > 0 && evalsWithoutImprovement >= spec.train.patience }

    /// After `resume()`: whether the run already ended (its steps, or early stopping, with this command's limits) and
    /// recorded its summary: then there is nothing to train, and the caller writes nothing (each resume had appended a
    /// summary of 0 steps, and an early-stopped run trained one more epoch); raising train.max_steps, train.epochs or
    /// train.patience goes on. Rank 0 decides from its metrics.jsonl and every rank learns the answer (one broadcast on
    /// every rank, whatever each found). Rank 0 writes report.md if the run was killed before it.
    public func hasEnded() throws -> Bool {
        var ended: [Float] = [0]
        if comm.isRoot && stepsDone > 0 && (stepsDone >= totalSteps || stoppedBefore) {
            let summaries = MetricsLog.records(of: "summary", in: runDir + "/metrics.jsonl", as: SummaryRecord.self)
            ended[0] = summaries.contains { $0.step == stepsDone } ? 1 : 0
        }
        ended.withUnsafeMutableBufferPointer { comm.broadcast($0.baseAddress!, count: 1, root: 0) }
        guard ended[0] == 1 else {
            // Killed before its summary, now with limits below its position: nothing could be trained, and a summary of
            // 0 steps and this command's config.yaml would have marked it as ended there.
            if stepsDone > totalSteps {
                throw InputError(file: runDir, "its newest checkpoint is at step \(stepsDone), past the \(totalSteps) steps of this command "
                                 + "(train.epochs / train.max_steps): nothing to train; raise them to go on from it")
            }
            return false
        }
        if comm.isRoot {
            log("resume: the run already ended at step \(stepsDone) (\(stoppedBefore ? "early stopping, train.patience \(spec.train.patience)" : "this command's train.epochs / train.max_steps allow \(totalSteps) steps")); nothing to train: raise train.max_steps, train.epochs or train.patience to go on")
            // Written when missing, or when it is an earlier stretch's (a stretch resumed with higher limits, killed
            // after its summary and before its report: a crash-consistency review found the old report kept for good).
            let report = runDir + "/report.md"
            let existing = try? readRegularFile(report, what: "pretraining report", limit: 1 << 24)
            FilesRead.forget(report)      // read to be replaced, not an input of this command
            let current = existing.map { String(decoding: $0, as: UTF8.self).contains(" \(stepsDone) steps.\n") } ?? false
            if !current {
                if existing != nil { log("resume: \(report) was an earlier stretch's (the run was stopped after its summary): written again for step \(stepsDone)") }
                try writePretrainReport(runDir: runDir, train: MetricsLog.records(of: "train", in: runDir + "/metrics.jsonl"),
                                        evals: MetricsLog.records(of: "eval", in: runDir + "/metrics.jsonl"), globalBatch: globalBatch,
                                        corpus: setup.corpusReport, parameters: params.count, worldSize: comm.size, steps: stepsDone)
            }
        }
        return true
    }

    /// Trains to the end (epochs, max_steps or early stopping), evaluating and checkpointing on the way.
    public func run() throws {
        let train = spec.train
        metrics = comm.isRoot ? try MetricsLog(path: runDir + "/metrics.jsonl", tensorboard: spec.log.tensorboard, continuingAfter: stepsDone) : nil
        if comm.isRoot && stepsDone > 0 {   // resumed: the report's curves start at step 1, not at the checkpoint
            trainRecords = MetricsLog.records(of: "train", in: runDir + "/metrics.jsonl")
            evalRecords = MetricsLog.records(of: "eval", in: runDir + "/metrics.jsonl")
        }
        // Same starting point on every rank.
        comm.broadcast(params.values, count: params.count, root: 0)
        comm.broadcast(optimizer.m, count: params.count, root: 0)
        comm.broadcast(optimizer.v, count: params.count, root: 0)
        // The values are final for the first step: bf16 makes its copy of them now, then after every update.
        params.setPrecision(agreedTrainingPrecision(train.precision, comm: comm))
        if comm.isRoot {
            for line in setup.corpusReport { log(line) }
            if let coverage = inputCoverage(setup.train + setup.validation, space: space, what: "pretraining inputs") {
                log(coverage.line)
                if let warning = coverage.warning { standardErrorWrite(Data((warning + "\n").utf8)) }
            }
            log("pretrain: \(params.count) parameters, \(comm.size) rank(s), global batch \(globalBatch), \(stepsPerEpoch) steps per epoch, \(totalSteps) steps")
        }
        let o = spec.optimizer
        let schedule: LearningRateSchedule = o.schedule == .warmupCosine
            ? .warmupCosine(warmupSteps: o.warmupSteps, totalSteps: totalSteps, minRatio: Float(o.minLRRatio))
            : .constant
        var windowStart = Date(), windowSamples = 0
        let runStart = Date(), firstStep = stepsDone
        var stepSeconds = 0.0
        var stoppedEarly = stoppedBefore     // ended by early stopping, killed before its summary: write that now
        // The training watchdog spans the steps, evaluations, checkpoints and the summary's collective; before it (the
        // setup above) and after it (rank 0's report) the job's watchdog runs (peers only). On rank 0 the setup above
        // is also its reading of a resumed run's metrics and the count of its inputs: quick, but not a step.
        let watchdog = Watchdog(policy: StallPolicy(stallTimeout: train.stallTimeout), comm: comm)
        step.progress = watchdog.beat
        defer { watchdog.stop(); step.progress = nil }
        while stepsDone < totalSteps && !stoppedEarly {
            watchdog.beat()
            try faults.beforeStep(stepsDone + 1, rank: comm.rank)
            let t0 = Date()
            let (loss, gradNorm) = try trainStep(lrScale: schedule.factor(step: stepsDone + 1))
            stepSeconds += Date().timeIntervalSince(t0)
            stepsDone += 1
            if faults.divergeAfter == stepsDone {
                for i in 0..<params.count { params.values[i] *= 1e30 }
                params.refreshLowPrecisionCopy()
            }
            windowSamples += globalBatch
            if train.checksumEvery > 0 && stepsDone % train.checksumEvery == 0 { try verifyReplicas() }
            if comm.isRoot && (stepsDone % train.logEvery == 0 || stepsDone == totalSteps) {
                let rate = Double(windowSamples) / Date().timeIntervalSince(windowStart)
                windowStart = Date(); windowSamples = 0
                // The mean time per step since this command started (evaluations and checkpoints included), not
                // the last step's alone.
                let eta = Double(totalSteps - stepsDone) * Date().timeIntervalSince(runStart) / Double(stepsDone - firstStep)
                let epoch = Double(stepsDone) / Double(stepsPerEpoch)
                let record = TrainRecord(step: stepsDone, epoch: epoch, loss: finite(Double(loss)), gradNorm: finite(Double(gradNorm)),
                                         lr: Double(Float(o.lr) * schedule.factor(step: stepsDone)), samplesPerSecond: rate,
                                         worldSize: comm.size, globalBatch: globalBatch)
                try metrics?.write(record)
                trainRecords.append(record)
                progress.update(String(format: "epoch %.2f  step %d/%d  loss %.4f  %.1f samples/s  ETA %@", epoch, stepsDone, totalSteps, loss, rate,
                                       formatDuration(eta)))
            }
            let endOfEpoch = stepsDone % stepsPerEpoch == 0
            let every = spec.checkpoint.everySteps
            var stop = false
            if endOfEpoch && (stepsDone / stepsPerEpoch) % train.evalEvery == 0 || stepsDone == totalSteps {
                stop = try evaluateAndTrack(beat: watchdog.beat)
                watchdog.beat()
            }
            if endOfEpoch || stepsDone == totalSteps || stop || (every > 0 && stepsDone % every == 0) {
                try saveCheckpoint()
                watchdog.beat()
            }
            if stop {
                if comm.isRoot { log("early stopping: no better validation loss in \(train.patience) evaluation(s)") }
                stoppedEarly = true
                break
            }
        }
        progress.finish()
        // Summary over ranks: the largest peak RSS, the slowest rank's time in training steps.
        var summary = [peakRSSMiB(), stepSeconds]
        watchdog.beat()
        summary.withUnsafeMutableBufferPointer { comm.allReduceMax($0.baseAddress!, count: 2) }
        // Training is over: rank 0's summary line, report and plots are the job watchdog's, which ends the job only for
        // a peer that stopped answering; a report slower than train.stall_timeout is no stall.
        watchdog.stop()
        if comm.isRoot {
            try metrics?.write(SummaryRecord(step: stepsDone, stepsRun: stepsDone - firstStep, worldSize: comm.size, globalBatch: globalBatch,
                                             chunkSize: train.chunkSize, peakRssMb: summary[0], trainSeconds: summary[1],
                                             samplesPerSecond: summary[1] > 0 ? Double((stepsDone - firstStep) * globalBatch) / summary[1] : 0,
                                             bestValLoss: finite(bestValLoss), stoppedEarly: stoppedEarly))
            log(String(format: "pretrain: done, %d steps in %@", stepsDone, formatDuration(Date().timeIntervalSince(runStart))))
            try writePretrainReport(runDir: runDir, train: trainRecords, evals: evalRecords, globalBatch: globalBatch, corpus: setup.corpusReport,
                                    parameters: params.count, worldSize: comm.size, steps: stepsDone)
        }
    }

    /// One distributed optimizer step on global batch `stepsDone` (see `ContrastiveStep`); the global batch is
    /// dealt to the ranks by compute (`balancedOrder`) and rank r's rows are slots shard(B, r) of the gathered
    /// batch. Returns (global loss, gradient norm before clipping).
    func trainStep(lrScale: Float) throws -> (Float, Float) {
        let indices = batchIndices(step: stepsDone)
        let order = balancedOrder(costs: indices.map { builder.cost(setup.train[$0], model: model) }, ranks: comm.size)
        let mine = shard(globalBatch, rank: comm.rank, of: comm.size)
        let trials = mine.map { setup.train[indices[order[$0]]] }
        do {
            let r = try step.run(globalBatch: globalBatch, mine: mine, rows: { builder.batch(Array(trials[$0])) }, lrScale: lrScale,
                                 firstStep: stepsDone == 0)
            return (r.loss, r.gradNorm)
        } catch let e as TrainingError {
            throw TrainingError("\(e.description) at step \(stepsDone + 1): \(divergenceAdvice)", diverged: e.diverged)
        }
    }

    /// What a divergence message advises: the learning rate, and the gradient clipping this run has.
    var divergenceAdvice: String {
        let clip = spec.train.gradClip == 0 ? "clip the gradient norm with train.grad_clip (now 0: off)" : "lower train.grad_clip (now \(spec.train.gradClip))"
        return "the model diverged; lower optimizer.lr or \(clip)"
    }

    /// Compares a parameter checksum across ranks; a mismatch means the replicas diverged.
    func verifyReplicas() throws {
        let c = params.checksum()
        var v = [c, -c]
        v.withUnsafeMutableBufferPointer { comm.allReduceMax($0.baseAddress!, count: 2) }
        if v[0] != -v[1] || v[0] != c {
            throw TrainingError("parameter replicas diverged at step \(stepsDone): checksum \(c) on rank \(comm.rank), range [\(-v[1]), \(v[0])]")
        }
    }

    /// Validation metrics of the current parameters (all ranks take part; every rank gets the result).
    /// `progress`: called after every embedded chunk and every block of scores (the stall watchdog's beat: the
    /// evaluation is O(n^2) in the validation trials, a minute at 50,000 of them).
    public func evaluate(progress: (() -> Void)? = nil) -> RetrievalMetrics {
        let chunk = spec.train.chunkSize > 0 ? spec.train.chunkSize : max(globalBatch / comm.size, 1)
        return embedAndCompare(setup.validation, builder: builder, model: model, comm: comm, arena: step.arena, chunk: chunk,
                               normalize: spec.loss.normalize, tileRows: spec.train.lossTileRows, progress: progress)
    }

    /// Evaluates, logs, tracks the best; returns true when early stopping triggers.
    func evaluateAndTrack(beat: (() -> Void)? = nil) throws -> Bool {
        let m = evaluate(progress: beat)
        progress.finish()
        let epoch = Double(stepsDone) / Double(stepsPerEpoch)
        let improved = m.loss < bestValLoss
        if improved { bestValLoss = m.loss; evalsWithoutImprovement = 0; bestCheckpoint = Checkpoints.name(step: stepsDone) }
        else { evalsWithoutImprovement += 1 }
        if comm.isRoot {
            let record = EvalRecord(step: stepsDone, epoch: epoch, valLoss: finite(m.loss), valTop1C2dm: finite(m.top1CtoDM),
                                    valTop5C2dm: finite(m.top5CtoDM), valTop1Dm2c: finite(m.top1DMtoC), valTop5Dm2c: finite(m.top5DMtoC),
                                    valSize: m.count, chanceTop1: 1 / Double(max(m.count, 1)), best: improved)
            try metrics?.write(record)
            evalRecords.append(record)
            log(String(format: "eval epoch %.2f: val loss %.4f, top-1 %.3f / %.3f, top-5 %.3f / %.3f (C->DM / DM->C; chance %.4f over %d)%@",
                       epoch, m.loss, m.top1CtoDM, m.top1DMtoC, m.top5CtoDM, m.top5DMtoC, 1 / Double(max(m.count, 1)), m.count, improved ? "  best" : ""))
        }
        // A diverged model (NaN or infinite scores) has no validation loss: the run ends here, before this step's
        // checkpoint, as a non-finite training loss ends it (its last step's update is checked only here).
        guard m.loss.isFinite else {
            throw TrainingError("validation loss is \(m.loss.isNaN ? "nan" : "\(m.loss)") after step \(stepsDone): \(divergenceAdvice)", diverged: true)
        }
        let patience = spec.train.patience
        return patience > 0 && evalsWithoutImprovement >= patience
    }

    func saveCheckpoint() throws {
        guard comm.isRoot else { comm.barrier(); return }
        let meta = CheckpointMeta(kind: .pretrain, step: stepsDone, epoch: stepsDone / stepsPerEpoch, stepInEpoch: stepsDone % stepsPerEpoch,
                                  worldSize: comm.size, globalBatch: globalBatch, optimizerStep: optimizer.step,
                                  spec: specAsTrained(spec, computedIn: params.precision), model: model.config, features: space,
                                  storeIdentity: setup.store.identity.encoder,
                                  storeEncoderWeights: setup.store.identity.encoderWeights, icdHierarchy: setup.hierarchy.checksum,
                                  metrics: (bestValLoss.isFinite ? ["best_val_loss": bestValLoss] : [:])
                                      .merging(["evals_without_improvement": Double(evalsWithoutImprovement)]) { a, _ in a },
                                  bestCheckpoint: bestCheckpoint, corpus: setup.fingerprint,
                                  // (Not for a synthetic corpus: its ids name no trial a CSV could hold.)
                                  sctTrials: spec.data.synthetic ? nil : (setup.train + setup.validation).map(\.nctid).sorted())
        let base = checkpointDir + "/" + Checkpoints.name(step: stepsDone)
        do {
            _ = try Checkpoints.save(dir: checkpointDir, meta: meta, params: params, optimizer: optimizer, faults: faults)
            faults.duringCheckpoint(.pointer, step: stepsDone)
            if let best = bestCheckpoint { try writeBestPointer(best, valLoss: bestValLoss) }
            Checkpoints.prune(dir: checkpointDir, keep: spec.checkpoint.keepLast, protected: bestCheckpoint, upTo: stepsDone)
        } catch {
            // This step's checkpoint goes too when best.json could not follow it: resumed from, it would carry a best
            // that best.json does not name (finetune and evaluate read best.json; a full disk had left them the older one).
            // Not in a folder that is no longer this run's (removed, or another run's at the same path).
            if (try? WrittenFolders.check(writing: base)) != nil { Checkpoints.remove(base: base) }
            let own = Checkpoints.name(step: stepsDone) + ".json"
            let earlier = Checkpoints.list(dir: checkpointDir).contains { URL(fileURLWithPath: $0).lastPathComponent != own }
            comm.abort(message: "writing checkpoint at step \(stepsDone) failed: \(error) (\(earlier ? "previous checkpoints are intact" : "no checkpoint was written before it"))", code: 2)
        }
        comm.barrier()
    }

    /// checkpoints/best.json naming checkpoint `best` (rank 0).
    func writeBestPointer(_ best: String, valLoss: Double) throws {
        let pointer = try encodeJSON(PretrainBest(checkpoint: "checkpoints/\(best).safetensors", valLoss: valLoss.isFinite ? valLoss : nil), plainSlashes: true)
        try writeFileAtomically(checkpointDir + "/best.json", replacingInput: true) { try $0.write(contentsOf: pointer + Data("\n".utf8)) }
    }
}

func formatDuration(_ s: Double) -> String {
    guard s.isFinite, s >= 0 else { return "-" }
    let t = Int(s)
    return t >= 3600 ? String(format: "%dh%02dm", t / 3600, t / 60 % 60) : String(format: "%dm%02ds", t / 60, t % 60)
}

/// A pretraining run's checkpoints/best.json: the checkpoint with the best validation InfoNCE loss (relative to the run
/// folder), and that loss. Read back through `BestJSON`.
struct PretrainBest: Encodable {
    let checkpoint: String, valLoss: Double?
    enum CodingKeys: String, CodingKey { case checkpoint, valLoss = "val_loss" }
}
