import Communication
import Config
import Foundation
import Model
import NN
import TrialData

/// Everything pretraining needs, resolved from the config and the feature store.
public struct PretrainSetup {
    public let config: Config
    public let store: FeatureStore
    public let hierarchy: ICD10Hierarchy
    public let train: [StoredTrial]
    public let validation: [StoredTrial]
    public let corpusReport: [String]

    /// Opens the feature store (refusing a stale one), builds the SCT corpus from its rows.
    public init(config: Config, encoderIdentity: String?, log: (String) -> Void) throws {
        self.config = config
        let files = config.strings("data.files")
        let storePath = config.string("data.feature_store")
        let synthetic = config.bool("data.synthetic")
        let expected = synthetic ? nil : try encoderIdentity.map {
            try currentStoreIdentity(paths: files, encoderIdentity: $0, maxTokens: config.int("encoder.max_tokens"))
        }
        store = try FeatureStore(path: storePath, expected: expected, sourcesForHint: files)
        if synthetic && store.identity.encoder != "synthetic" {
            throw InputError(file: storePath, "data.synthetic is true but this store was featurized from CSV files")
        }
        hierarchy = try ICD10Hierarchy(path: config.string("data.icd_hierarchy"))
        let excludeFile = config.string("data.exclude_file")
        var excluded = excludeFile.isEmpty || synthetic ? [] : try readExclusionList(excludeFile)
        for csv in config.strings("data.exclude_csvs") { excluded.formUnion(try readTrials(paths: [csv]).0.map(\.nctid)) }
        let wanted = Set(synthetic ? ["synthetic"] : files.map { URL(fileURLWithPath: $0).lastPathComponent })
        let phases = config.strings("data.sct_phases")
        let rows = store.trials.filter { t in
            wanted.contains(String(t.source.split(separator: ":")[0]))
                && (phases.isEmpty || phases.contains { p in t.phase.split(separator: "/").contains { $0.hasSuffix("phase " + p) } })
        }
        let corpus = SCTCorpus(trials: rows, excluded: excluded, validationFraction: config.double("data.validation_fraction"))
        train = corpus.train
        validation = corpus.validation
        corpusReport = corpus.report
    }
}

/// Test and reliability hooks, from the environment:
/// CLADMOP_FAULT = drop_remote_columns | no_world_scale (wrong gradients, for negative-control tests),
/// crash:RANK:STEP | throw:RANK:STEP | stall:RANK:STEP, checkpoint_crash:before|between,
/// file_size_limit:BYTES (RLIMIT_FSIZE set once MPI is up: a write past BYTES fails with EFBIG, as on a full disk);
/// CLADMOP_DUMP_GRADIENT = FILE: rank 0 writes the averaged gradient of the first step (Float32, raw);
/// CLADMOP_FAULT_ONCE = FILE: the fault fires only if FILE does not exist, and creates it (so that a
/// supervised restart does not crash again at the same step).
struct Faults {
    var dropRemoteColumns = false
    var noWorldScale = false
    var crash: (rank: Int, step: Int)?
    var throwAt: (rank: Int, step: Int)?
    var stall: (rank: Int, step: Int)?
    var fileSizeLimit: Int?
    var dumpGradient: String?
    var onceMarker: String?

    func fired() { if let m = onceMarker { _ = FileManager.default.createFile(atPath: m, contents: nil) } }

    init() {
        let env = ProcessInfo.processInfo.environment
        dumpGradient = env["CLADMOP_DUMP_GRADIENT"]
        guard let f = env["CLADMOP_FAULT"] else { return }
        if let once = env["CLADMOP_FAULT_ONCE"] {
            if FileManager.default.fileExists(atPath: once) { return }
            if f.hasPrefix("crash") || f.hasPrefix("throw") || f.hasPrefix("stall") {
                // Armed: the marker is written when the fault fires (see Pretrainer.injectFaults).
                onceMarker = once
            }
        }
        let parts = f.split(separator: ":").map(String.init)
        func at() -> (Int, Int)? {
            guard parts.count == 3, let r = Int(parts[1]), let s = Int(parts[2]) else { return nil }
            return (r, s)
        }
        switch parts[0] {
        case "drop_remote_columns": dropRemoteColumns = true
        case "no_world_scale": noWorldScale = true
        case "crash": crash = at()
        case "throw": throwAt = at()
        case "stall": stall = at()
        case "file_size_limit": fileSizeLimit = parts.count == 2 ? Int(parts[1]) : nil
        default: break
        }
    }
}

/// Distributed pair-matching pretraining (SPEC 5): every rank holds a replica, embeds its rows of each
/// global batch, all-gathers f_C and f_DM, computes the InfoNCE loss over the whole global batch and
/// backpropagates the exact gradient of that loss for its own rows; gradients are averaged across ranks.
public final class Pretrainer {
    let comm: Communicator
    let setup: PretrainSetup
    let config: Config
    let runDir: String
    public let model: CLaDMoP
    public let params: ParameterArena
    let optimizer: Optimizer
    let builder: BatchBuilder
    let space: FeatureSpace
    let arena = ActivationArena()
    let faults = Faults()
    let log: (String) -> Void
    let globalBatch: Int
    /// Rows per forward/backward chunk (train.chunk_size; 0: all local rows at once).
    let chunkSize: Int
    /// Rows per block of the loss logits (train.loss_tile_rows).
    let lossTileRows: Int
    let stepsPerEpoch: Int
    let totalSteps: Int
    var step = 0
    var bestValLoss = Double.infinity
    var bestCheckpoint: String?
    var evalsWithoutImprovement = 0
    let metrics: MetricsLog?
    lazy var progress = ProgressLine(enabled: comm.isRoot)
    var heartbeat: () -> Void = {}
    var history: [[String: Double]] = []

    public init(setup: PretrainSetup, comm: Communicator, runDir: String, log: @escaping (String) -> Void) throws {
        self.setup = setup
        self.comm = comm
        self.config = setup.config
        self.runDir = runDir
        self.log = log
        let c = setup.config
        globalBatch = c.int("train.global_batch")
        chunkSize = c.int("train.chunk_size")
        lossTileRows = c.int("train.loss_tile_rows")
        guard globalBatch >= comm.size else {
            throw InputError("train.global_batch = \(globalBatch) is smaller than the world size \(comm.size) (every rank needs at least one row)")
        }
        guard setup.train.count >= globalBatch else {
            throw InputError("train.global_batch = \(globalBatch) exceeds the \(setup.train.count) trials of the SCT training split")
        }
        guard c.int("model.dim") % c.int("model.heads") == 0 else {
            throw InputError("model.dim = \(c.int("model.dim")) must be divisible by model.heads = \(c.int("model.heads"))")
        }
        stepsPerEpoch = setup.train.count / globalBatch
        let maxSteps = c.int("train.max_steps")
        totalSteps = maxSteps > 0 ? min(maxSteps, stepsPerEpoch * c.int("train.epochs")) : stepsPerEpoch * c.int("train.epochs")
        space = FeatureSpace(trials: setup.train, icdDepth: min(c.int("model.icd_depth"), setup.hierarchy.maxDepth),
                             maxSentences: c.int("data.max_sentences"), maxMolTokens: c.int("data.max_mol_tokens"),
                             maxMolecules: c.int("data.max_molecules"), maxCodes: c.int("data.max_codes"))
        builder = BatchBuilder(store: setup.store, hierarchy: setup.hierarchy, space: space)
        let learnable = c.string("loss.logit_scale") == "learnable"
        let mc = ModelConfig(dim: c.int("model.dim"), heads: c.int("model.heads"), molLayers: c.int("model.mol_layers"),
                             disLayers: c.int("model.dis_layers"), groupingLayers: c.int("model.grouping_layers"),
                             selfLayers: c.int("model.self_layers"), centroids: c.int("model.centroids"),
                             encoderDim: setup.store.dim, molVocab: space.smilesVocabulary.count, maxMolecules: space.maxMolecules,
                             icdTableSizes: builder.tableSizes, categoryCount: builder.categoryCount,
                             learnableScale: learnable, initialLogScale: learnable ? Float(Foundation.log(1 / 0.07)) : Float(c.double("loss.tau")))
        params = ParameterArena(seed: UInt64(c.int("model.seed")))
        let lr = c.float("optimizer.lr"), wd = c.float("optimizer.weight_decay")
        params.groups = [ParamGroup(name: "model", learningRate: lr, weightDecay: wd),
                         ParamGroup(name: "logit_scale", learningRate: lr, weightDecay: 0, frozen: !learnable)]
        model = CLaDMoP(mc, params: params)
        params.assign(prefix: "loss.log_scale", toGroup: 1)
        params.finalize()
        model.initializeLogScale()
        optimizer = Optimizer(kind: OptimizerKind(rawValue: c.string("optimizer.name"))!, params: params,
                              beta1: c.float("optimizer.beta1"), beta2: c.float("optimizer.beta2"), eps: c.float("optimizer.eps"))
        metrics = comm.isRoot ? try MetricsLog(path: runDir + "/metrics.jsonl") : nil
    }

    var checkpointDir: String { runDir + "/checkpoints" }
    var configHash: String { config.hash(sections: ["model", "loss", "data"]) }

    /// Trial indices of global step `step` (0-based): epoch order seeded by (seed, epoch), same for any W.
    func batchIndices(step: Int) -> [Int] {
        let epoch = step / stepsPerEpoch, position = step % stepsPerEpoch
        var rng = RNG(seed: UInt64(config.int("train.seed")) &* 1_000_003 &+ UInt64(epoch))
        let order = rng.permutation(setup.train.count)
        return Array(order[(position * globalBatch)..<((position + 1) * globalBatch)])
    }

    /// Resumes from the newest valid checkpoint of the run directory, if any.
    public func resume() throws {
        guard let (path, meta, tensors) = Checkpoints.newestValid(dir: checkpointDir, log: { [comm] m in if comm.isRoot { self.log(m) } }) else {
            if comm.isRoot { log("resume: no valid checkpoint in \(checkpointDir); starting from scratch") }
            return
        }
        guard meta.configHash == configHash, meta.model == model.config else {
            throw InputError(file: path, "checkpoint was trained with another model/loss/data configuration (hash \(meta.configHash), now \(configHash))")
        }
        guard meta.globalBatch == globalBatch else {
            throw InputError(file: path, "checkpoint used train.global_batch = \(meta.globalBatch); resuming needs the same global batch (now \(globalBatch))")
        }
        try Checkpoints.restore(tensors, into: params, optimizer: optimizer)
        optimizer.restore(step: meta.optimizerStep)
        step = meta.step
        bestValLoss = meta.metrics["best_val_loss"] ?? .infinity
        bestCheckpoint = meta.extra["best_checkpoint"]
        evalsWithoutImprovement = Int(meta.metrics["evals_without_improvement"] ?? 0)
        if comm.isRoot { log("resume: \(path) (step \(meta.step), epoch \(meta.epoch), written by \(meta.worldSize) rank(s)) on \(comm.size) rank(s)") }
    }

    /// Trains to the end (epochs, max_steps or early stopping), evaluating and checkpointing on the way.
    public func run() throws {
        let watchdog = Watchdog(timeout: Double(config.int("train.stall_timeout")), comm: comm)
        defer { watchdog.stop() }
        heartbeat = { watchdog.beat() }
        if let bytes = faults.fileSizeLimit {
            var limit = rlimit(rlim_cur: rlim_t(bytes), rlim_max: rlim_t(bytes))
            setrlimit(__rlimit_resource_t(RLIMIT_FSIZE.rawValue), &limit)
        }
        // Same starting point on every rank.
        comm.broadcast(params.values, count: params.count, root: 0)
        comm.broadcast(optimizer.m, count: params.count, root: 0)
        comm.broadcast(optimizer.v, count: params.count, root: 0)
        if comm.isRoot {
            for line in setup.corpusReport { log(line) }
            log("pretrain: \(params.count) parameters, \(comm.size) rank(s), global batch \(globalBatch), \(stepsPerEpoch) steps per epoch, \(totalSteps) steps")
        }
        let schedule: LearningRateSchedule = config.string("optimizer.schedule") == "warmup_cosine"
            ? .warmupCosine(warmupSteps: config.int("optimizer.warmup_steps"), totalSteps: totalSteps, minRatio: config.float("optimizer.min_lr_ratio"))
            : .constant
        var windowStart = Date(), windowSamples = 0
        let runStart = Date(), firstStep = step
        var stepSeconds = 0.0
        while step < totalSteps {
            heartbeat()
            try injectFaults()
            let t0 = Date()
            let (loss, gradNorm) = try trainStep(lrScale: schedule.factor(step: step + 1))
            stepSeconds += Date().timeIntervalSince(t0)
            step += 1
            windowSamples += globalBatch
            let checkEvery = config.int("train.checksum_every")
            if checkEvery > 0 && step % checkEvery == 0 { try verifyReplicas() }
            if comm.isRoot && (step % config.int("train.log_every") == 0 || step == totalSteps) {
                let rate = Double(windowSamples) / Date().timeIntervalSince(windowStart)
                windowStart = Date(); windowSamples = 0
                let eta = Double(totalSteps - step) * Date().timeIntervalSince(t0)
                let epoch = Double(step) / Double(stepsPerEpoch)
                try metrics?.write(["type": "train", "step": step, "epoch": epoch, "loss": Double(loss), "grad_norm": Double(gradNorm),
                                    "lr": Double(config.float("optimizer.lr") * schedule.factor(step: step)), "samples_per_second": rate,
                                    "world_size": comm.size, "global_batch": globalBatch])
                history.append(["step": Double(step), "loss": Double(loss)])
                progress.update(String(format: "epoch %.2f  step %d/%d  loss %.4f  %.1f samples/s  ETA %@", epoch, step, totalSteps, loss, rate,
                                       formatDuration(eta)))
            }
            let endOfEpoch = step % stepsPerEpoch == 0
            let every = config.int("checkpoint.every_steps")
            var stop = false
            if endOfEpoch && (step / stepsPerEpoch) % config.int("train.eval_every") == 0 || step == totalSteps {
                stop = try evaluateAndTrack()
                heartbeat()
            }
            if endOfEpoch || step == totalSteps || stop || (every > 0 && step % every == 0) { try saveCheckpoint() }
            if stop {
                if comm.isRoot { log("early stopping: no better validation loss in \(config.int("train.patience")) evaluation(s)") }
                break
            }
        }
        progress.finish()
        // Summary over ranks: the largest peak RSS, the slowest rank's time in training steps.
        var summary = [peakRSSMiB(), stepSeconds]
        summary.withUnsafeMutableBufferPointer { comm.allReduceMax($0.baseAddress!, count: 2) }
        if comm.isRoot {
            var record: [String: Any] = ["type": "summary", "step": step, "steps_run": step - firstStep, "world_size": comm.size,
                                         "global_batch": globalBatch, "chunk_size": chunkSize, "peak_rss_mb": summary[0],
                                         "train_seconds": summary[1],
                                         "samples_per_second": summary[1] > 0 ? Double((step - firstStep) * globalBatch) / summary[1] : 0]
            if bestValLoss.isFinite { record["best_val_loss"] = bestValLoss }
            try metrics?.write(record)
            log(String(format: "pretrain: done, %d steps in %@", step, formatDuration(Date().timeIntervalSince(runStart))))
            try writeReport()
        }
    }

    /// One distributed optimizer step. Returns (global loss, gradient norm before clipping).
    ///
    /// With `train.chunk_size` = c > 0 smaller than the rank's rows, the step runs in two passes (GradCache,
    /// Gao et al. 2021): pass 1 embeds the rows c at a time and drops each chunk's activations; the loss over
    /// the gathered global batch gives dL/df_DM for every local row; pass 2 re-runs each chunk with its
    /// activations and backpropagates its slice. The update is the one-pass update; memory is set by c.
    func trainStep(lrScale: Float) throws -> (Float, Float) {
        // The global batch, dealt to the ranks by compute (`balancedOrder`); rank r's rows are slots
        // shard(B, r) of the gathered batch.
        let indices = batchIndices(step: step)
        let order = balancedOrder(costs: indices.map { builder.cost(setup.train[$0], model: model) }, ranks: comm.size)
        let mine = shard(globalBatch, rank: comm.rank, of: comm.size)
        let trials = mine.map { setup.train[indices[order[$0]]] }
        let e = setup.store.dim, n = trials.count
        let chunk = chunkSize > 0 ? min(chunkSize, n) : n
        arena.reset()
        params.zeroGrads()
        // Pass 1: f_C and f_DM of the local rows, (n, E) each.
        let fC = arena.allocate(n * e), fDM = arena.allocate(n * e)
        var onePass: CLaDMoP.State?
        for c0 in stride(from: 0, to: n, by: chunk) {
            let batch = builder.batch(Array(trials[c0..<min(c0 + chunk, n)]))
            builder.criteriaEmbedding(batch, into: fC + c0 * e)
            let mark = arena.mark()
            let state = model.forward(batch, arena: arena)
            (fDM + c0 * e).update(from: state.fDM!, count: batch.count * e)
            if chunk == n { onePass = state } else { arena.release(to: mark) }
        }
        // Gather both sides of every pair of the global batch.
        let counts = (0..<comm.size).map { shard(globalBatch, rank: $0, of: comm.size).count * e }
        let allC = arena.allocate(globalBatch * e), allDM = arena.allocate(globalBatch * e)
        comm.allGatherV(send: fC, receive: allC, counts: counts)
        comm.allGatherV(send: fDM, receive: allDM, counts: counts)
        let dDM = arena.allocate(n * e)
        let result = symmetricInfoNCE(a: allC, b: allDM, batch: globalBatch, dim: e, logScale: params.value(model.logScale)[0],
                                      normalize: config.bool("loss.normalize"), gradientRows: mine, da: nil, db: dDM,
                                      tileRows: lossTileRows, arena: arena, onlyRows: faults.dropRemoteColumns ? mine : nil)
        // Each rank backpropagates the exact gradient of the global loss for its rows; scaled by W so that
        // the average over ranks is the sum (the gradient of the global loss).
        if !faults.noWorldScale { for i in 0..<n * e { dDM[i] *= Float(comm.size) } }
        if let state = onePass {
            model.backward(state, dFDM: dDM, dPooled: nil, arena: arena)
        } else {
            // Pass 2: each chunk again, with activations, and its slice of dL/df_DM.
            for c0 in stride(from: 0, to: n, by: chunk) {
                let mark = arena.mark()
                let state = model.forward(builder.batch(Array(trials[c0..<min(c0 + chunk, n)])), arena: arena)
                model.backward(state, dFDM: dDM + c0 * e, dPooled: nil, arena: arena)
                arena.release(to: mark)
            }
        }
        if !params.isFrozen(model.logScale) { params.grad(model.logScale)[0] = result.dLogScale }
        comm.allReduceAverage(params.grads, count: params.count)
        if step == 0, let path = faults.dumpGradient, comm.isRoot {
            try Data(bytes: params.grads, count: params.count * 4).write(to: URL(fileURLWithPath: path))
        }
        let norm = clipGradientNorm(params, maxNorm: config.float("train.grad_clip"))
        optimizer.update(params, lrScale: lrScale)
        guard result.loss.isFinite else { throw TrainingError("loss is \(result.loss) at step \(step + 1)") }
        return (result.loss, norm)
    }

    /// Compares a parameter checksum across ranks; a mismatch means the replicas diverged.
    func verifyReplicas() throws {
        let c = params.checksum()
        var v = [c, -c]
        v.withUnsafeMutableBufferPointer { comm.allReduceMax($0.baseAddress!, count: 2) }
        if v[0] != -v[1] || v[0] != c {
            throw TrainingError("parameter replicas diverged at step \(step): checksum \(c) on rank \(comm.rank), range [\(-v[1]), \(v[0])]")
        }
    }

    func injectFaults() throws {
        if let f = faults.crash, f.rank == comm.rank, f.step == step + 1 { faults.fired(); kill(getpid(), SIGKILL) }
        if let f = faults.throwAt, f.rank == comm.rank, f.step == step + 1 {
            faults.fired()
            throw InputError("injected error on rank \(comm.rank) at step \(step + 1) (CLADMOP_FAULT)")
        }
        if let f = faults.stall, f.rank == comm.rank, f.step == step + 1 { faults.fired(); while true { sleep(60) } }
    }

    /// Validation metrics of the current parameters (all ranks take part; every rank gets the result).
    public func evaluate() -> RetrievalMetrics {
        let val = setup.validation
        let e = setup.store.dim
        let mine = shard(val.count, rank: comm.rank, of: comm.size)
        let fC = FloatPtr.allocate(capacity: max(mine.count * e, 1)), fDM = FloatPtr.allocate(capacity: max(mine.count * e, 1))
        defer { fC.deallocate(); fDM.deallocate() }
        let chunk = chunkSize > 0 ? chunkSize : max(globalBatch / comm.size, 1)
        var start = mine.lowerBound
        while start < mine.upperBound {
            let end = min(start + chunk, mine.upperBound)
            let batch = builder.batch(Array(val[start..<end]))
            arena.reset()
            let state = model.forward(batch, arena: arena)
            let off = (start - mine.lowerBound) * e
            (fDM + off).update(from: state.fDM!, count: batch.count * e)
            builder.criteriaEmbedding(batch, into: fC + off)
            start = end
        }
        let counts = (0..<comm.size).map { shard(val.count, rank: $0, of: comm.size).count * e }
        let allC = FloatPtr.allocate(capacity: max(val.count * e, 1)), allDM = FloatPtr.allocate(capacity: max(val.count * e, 1))
        defer { allC.deallocate(); allDM.deallocate() }
        comm.allGatherV(send: fC, receive: allC, counts: counts)
        comm.allGatherV(send: fDM, receive: allDM, counts: counts)
        arena.reset()
        return retrievalMetrics(fC: allC, fDM: allDM, count: val.count, dim: e, logScale: params.value(model.logScale)[0],
                                normalize: config.bool("loss.normalize"), tileRows: lossTileRows, arena: arena)
    }

    /// Evaluates, logs, tracks the best; returns true when early stopping triggers.
    func evaluateAndTrack() throws -> Bool {
        let m = evaluate()
        progress.finish()
        let epoch = Double(step) / Double(stepsPerEpoch)
        let improved = m.loss < bestValLoss
        if improved { bestValLoss = m.loss; evalsWithoutImprovement = 0; bestCheckpoint = Checkpoints.name(step: step) }
        else { evalsWithoutImprovement += 1 }
        if comm.isRoot {
            try metrics?.write(["type": "eval", "step": step, "epoch": epoch, "val_loss": m.loss, "val_top1_c2dm": m.top1CtoDM,
                                "val_top5_c2dm": m.top5CtoDM, "val_top1_dm2c": m.top1DMtoC, "val_top5_dm2c": m.top5DMtoC,
                                "val_size": m.count, "chance_top1": 1 / Double(max(m.count, 1)), "best": improved])
            history.append(["step": Double(step), "epoch": epoch, "val_loss": m.loss, "top1_c2dm": m.top1CtoDM, "top5_c2dm": m.top5CtoDM,
                            "top1_dm2c": m.top1DMtoC, "top5_dm2c": m.top5DMtoC])
            log(String(format: "eval epoch %.2f: val loss %.4f, top-1 %.3f / %.3f, top-5 %.3f / %.3f (C->DM / DM->C; chance %.4f over %d)%@",
                       epoch, m.loss, m.top1CtoDM, m.top1DMtoC, m.top5CtoDM, m.top5DMtoC, 1 / Double(max(m.count, 1)), m.count, improved ? "  best" : ""))
        }
        let patience = config.int("train.patience")
        return patience > 0 && evalsWithoutImprovement >= patience
    }

    func saveCheckpoint() throws {
        guard comm.isRoot else { comm.barrier(); return }
        let meta = CheckpointMeta(kind: "pretrain", step: step, epoch: step / stepsPerEpoch, stepInEpoch: step % stepsPerEpoch,
                                  worldSize: comm.size, globalBatch: globalBatch, configHash: configHash, optimizerStep: optimizer.step,
                                  model: model.config, features: space, storeIdentity: setup.store.identity.encoder,
                                  metrics: (bestValLoss.isFinite ? ["best_val_loss": bestValLoss] : [:])
                                      .merging(["evals_without_improvement": Double(evalsWithoutImprovement)]) { a, _ in a },
                                  tensorsFile: "", tensorsChecksum: "", tensorsBytes: 0,
                                  extra: bestCheckpoint.map { ["best_checkpoint": $0] } ?? [:])
        do {
            _ = try Checkpoints.save(dir: checkpointDir, meta: meta, params: params, optimizer: optimizer)
            if let best = bestCheckpoint {
                try writeFileAtomically(checkpointDir + "/best.json") {
                    try $0.write(contentsOf: Data("{\"checkpoint\": \"checkpoints/\(best).safetensors\", \"val_loss\": \(bestValLoss)}\n".utf8))
                }
            }
            Checkpoints.prune(dir: checkpointDir, keep: config.int("checkpoint.keep_last"), protected: bestCheckpoint)
        } catch {
            comm.abort(message: "writing checkpoint at step \(step) failed: \(error) (previous checkpoints are intact)", code: 1)
        }
        comm.barrier()
    }

    func writeReport() throws {
        try writePretrainReport(runDir: runDir, history: history, config: config, corpus: setup.corpusReport,
                                parameters: params.count, worldSize: comm.size, steps: step)
    }
}

public struct TrainingError: Error, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}

func formatDuration(_ s: Double) -> String {
    guard s.isFinite, s >= 0 else { return "-" }
    let t = Int(s)
    return t >= 3600 ? String(format: "%dh%02dm", t / 3600, t / 60 % 60) : String(format: "%dm%02ds", t / 60, t % 60)
}

/// Ends the job when a rank makes no progress for `timeout` seconds (a stalled peer leaves the others
/// waiting in a collective forever): MPI_Abort with a message saying so. 0 disables it.
final class Watchdog: @unchecked Sendable {
    private var last = Date()
    private let lock = NSLock()
    private var running = true
    private let timeout: Double

    init(timeout: Double, comm: Communicator) {
        self.timeout = timeout
        guard timeout > 0 else { running = false; return }
        let thread = Thread { [self] in
            while true {
                sleep(1)
                lock.lock(); let idle = Date().timeIntervalSince(last); let on = running; lock.unlock()
                if !on { return }
                if idle > timeout {
                    comm.abort(message: String(format: "no training progress for %.0f s on rank %d (a rank stalled or a collective is stuck; train.stall_timeout)", idle, comm.rank), code: 1)
                }
            }
        }
        thread.start()
    }
    func beat() { lock.lock(); last = Date(); lock.unlock() }
    func stop() { lock.lock(); running = false; lock.unlock() }
}
