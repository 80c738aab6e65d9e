import Communication
import Config
import Foundation
import Model
import NN
import TrialData

/// What a fine-tuned checkpoint needs besides its tensors (stored in its metadata).
public struct FinetuneSpec: Codable {
    public var loraRank: Int
    public var loraAlpha: Float
    public var loraCross: Bool
    public var loraSelf: Bool
    public var headHidden: Int
    public var threshold: Double
    public var trainFile: String
    public var validFile: String
    /// Sorted ICD-code sets seen in the training file (for the "new diseases" subset).
    public var trainingDiseaseSets: [String]
}

/// The pretrained DM branch (frozen) + LoRA adapters + prediction head, in one arena: group 0 frozen,
/// group 1 LoRA, group 2 head. LoRA and head are registered last, so the trainable parameters are one
/// contiguous tail of the arena (one all-reduce).
public final class OutcomeModel {
    public let params: ParameterArena
    public let model: CLaDMoP
    public let head: PredictionHead
    public let space: FeatureSpace
    public let trainableOffset: Int
    public let spec: FinetuneSpec

    public init(model config: ModelConfig, space: FeatureSpace, spec: FinetuneSpec, seed: UInt64,
                loraLR: Float, headLR: Float, weightDecay: Float, trainBase: Bool) {
        params = ParameterArena(seed: seed)
        params.groups = [ParamGroup(name: "pretrained", learningRate: headLR, weightDecay: weightDecay, frozen: !trainBase),
                         ParamGroup(name: "lora", learningRate: loraLR, weightDecay: weightDecay),
                         ParamGroup(name: "head", learningRate: headLR, weightDecay: weightDecay)]
        model = CLaDMoP(config, params: params)
        trainableOffset = trainBase ? 0 : params.count
        if spec.loraCross || spec.loraSelf {
            model.addLoRA(rank: spec.loraRank, alpha: spec.loraAlpha, cross: spec.loraCross, selfAttention: spec.loraSelf, group: 1)
        }
        head = PredictionHead(params, inputDim: config.encoderDim + config.dim, hiddenDim: spec.headHidden, group: 2)
        params.finalize()
        model.initializeLogScale()
        self.space = space
        self.spec = spec
    }

    public var hasLoRA: Bool { spec.loraCross || spec.loraSelf }

    /// Success logits of a batch; `backward` (when requested) takes dL/dlogit and accumulates gradients.
    public func forward(_ batch: ModelBatch, builder: BatchBuilder, arena: ActivationArena)
        -> (logits: FloatPtr, backward: (ConstFloatPtr) -> Void) {
        let n = batch.count, e = model.config.encoderDim, d = model.config.dim
        let state = model.forward(batch, arena: arena)
        let x = arena.allocate(n * (e + d))
        let fC = arena.allocate(n * e)
        builder.criteriaEmbedding(batch, into: fC)
        for i in 0..<n {
            (x + i * (e + d)).update(from: fC + i * e, count: e)
            (x + i * (e + d) + e).update(from: state.pooled! + i * d, count: d)
        }
        let logits = arena.allocate(n)
        let cache = head.forward(params, x, logits: logits, rows: n, arena: arena)
        return (logits, { [self] dLogits in
            let dx = arena.zeros(n * (e + d))
            head.backward(params, cache, dLogits: dLogits, dx: hasLoRA || trainableOffset == 0 ? dx : nil, rows: n, arena: arena)
            if hasLoRA || trainableOffset == 0 {
                let dPooled = arena.allocate(n * d)
                for i in 0..<n { (dPooled + i * d).update(from: dx + i * (e + d) + e, count: d) }
                model.backward(state, dFDM: nil, dPooled: dPooled, arena: arena)
            }
        })
    }
}

/// Sorted, joined ICD codes of a trial: its disease combination.
public func diseaseSet(_ t: StoredTrial) -> String { Set(t.icd.joined()).sorted().joined(separator: "|") }

/// PEFT fine-tuning on one phase (SPEC 6): frozen pretrained model, LoRA + head, class-weighted BCE,
/// model selection on the validation file, distributed like pretraining (trainable gradients all-reduced).
public final class Finetuner {
    let comm: Communicator
    let config: Config
    let runDir: String
    let log: (String) -> Void
    public let outcome: OutcomeModel
    let builder: BatchBuilder
    let train: [StoredTrial]
    let valid: [StoredTrial]
    let optimizer: Optimizer
    let arena = ActivationArena()
    let pretrainedPath: String?
    let pretrainedChecksum: String?
    let storeIdentity: String

    public init(config: Config, comm: Communicator, pretrained: String?, trainFile: String, validFile: String,
                runDir: String, store: FeatureStore, hierarchy: ICD10Hierarchy, log: @escaping (String) -> Void) throws {
        self.config = config; self.comm = comm; self.runDir = runDir; self.log = log
        storeIdentity = store.identity.encoder
        let excludeFile = config.string("data.exclude_file")
        let excluded = excludeFile.isEmpty ? [] : try readExclusionList(excludeFile)
        func rows(_ file: String) throws -> [StoredTrial] {
            let name = URL(fileURLWithPath: file).lastPathComponent
            let r = store.trials.filter { $0.source.hasPrefix(name + ":") }
            guard !r.isEmpty else {
                throw InputError(file: store.path, "has no rows of \(name); \(FeatureStore.rebuildHint(store.path, sources: config.strings("data.files") + [file]))")
            }
            return r
        }
        let trainAll = try rows(trainFile)
        train = trainAll.filter { !excluded.contains($0.nctid) }
        valid = try rows(validFile).filter { !excluded.contains($0.nctid) }
        if comm.isRoot && train.count < trainAll.count { log("finetune: \(trainAll.count - train.count) held-out trial(s) removed from \(trainFile)") }
        let c = config
        var modelConfig: ModelConfig
        var space: FeatureSpace
        var tensors: SafetensorsFile?
        if let pretrained {
            let jsonPath = try resolveCheckpointJSON(pretrained)
            let (meta, file) = try Checkpoints.load(jsonPath: jsonPath)
            guard meta.kind == "pretrain" else { throw InputError(file: jsonPath, "is a \(meta.kind) checkpoint; --pretrained needs a pretraining checkpoint") }
            modelConfig = meta.model; space = meta.features; tensors = file
            pretrainedPath = URL(fileURLWithPath: jsonPath).standardizedFileURL.path
            pretrainedChecksum = meta.tensorsChecksum
        } else {
            // Ablation: the same PEFT on a randomly initialised DM branch.
            let b = BatchBuilder(store: store, hierarchy: hierarchy, space: FeatureSpace(trials: train, icdDepth: min(c.int("model.icd_depth"), hierarchy.maxDepth),
                                 maxSentences: c.int("data.max_sentences"), maxMolTokens: c.int("data.max_mol_tokens"),
                                 maxMolecules: c.int("data.max_molecules"), maxCodes: c.int("data.max_codes")))
            space = b.space
            modelConfig = ModelConfig(dim: c.int("model.dim"), heads: c.int("model.heads"), molLayers: c.int("model.mol_layers"),
                                      disLayers: c.int("model.dis_layers"), groupingLayers: c.int("model.grouping_layers"),
                                      selfLayers: c.int("model.self_layers"), centroids: c.int("model.centroids"), encoderDim: store.dim,
                                      molVocab: space.smilesVocabulary.count, maxMolecules: space.maxMolecules,
                                      icdTableSizes: b.tableSizes, categoryCount: b.categoryCount, learnableScale: false,
                                      initialLogScale: Float(c.double("loss.tau")))
            pretrainedPath = nil; pretrainedChecksum = nil
        }
        guard store.dim == modelConfig.encoderDim else {
            throw InputError(file: store.path, "sentence vectors have width \(store.dim), the pretrained model expects \(modelConfig.encoderDim)")
        }
        builder = BatchBuilder(store: store, hierarchy: hierarchy, space: space)
        let spec = FinetuneSpec(loraRank: c.int("finetune.lora_rank"), loraAlpha: c.float("finetune.lora_alpha"),
                                loraCross: c.bool("finetune.lora_cross"), loraSelf: c.bool("finetune.lora_self"),
                                headHidden: c.int("finetune.head_hidden"), threshold: 0.5, trainFile: trainFile, validFile: validFile,
                                trainingDiseaseSets: Set(train.map(diseaseSet)).sorted())
        outcome = OutcomeModel(model: modelConfig, space: space, spec: spec, seed: UInt64(c.int("finetune.seed")),
                               loraLR: c.float("finetune.lora_lr"), headLR: c.float("finetune.head_lr"),
                               weightDecay: c.float("finetune.weight_decay"), trainBase: false)
        if let tensors { try Checkpoints.restore(tensors, into: outcome.params, optimizer: nil, only: { $0.group == 0 }) }
        optimizer = Optimizer(kind: .adamw, params: outcome.params)
    }

    /// Trains, selects the best epoch on validation, writes its checkpoint and `best.json`.
    public func run() throws {
        let p = outcome.params
        comm.broadcast(p.values, count: p.count, root: 0)
        let batchSize = config.int("finetune.batch"), epochs = config.int("finetune.epochs")
        let positives = train.filter { $0.label == 1 }.count, negatives = train.count - positives
        guard positives > 0, negatives > 0 else { throw InputError("the fine-tuning training file has only one class (\(positives) positive, \(negatives) negative)") }
        // Eq. 7 class weights: w_c = N / (2 N_c), so both classes weigh the same in total.
        let w1 = Float(train.count) / Float(2 * positives), w0 = Float(train.count) / Float(2 * negatives)
        let metric = config.string("finetune.select_metric")
        if comm.isRoot {
            log("finetune: \(train.count) training trials (\(positives) successful), \(valid.count) validation; \(p.count - outcome.trainableOffset) trainable parameters (LoRA cross \(outcome.spec.loraCross), self \(outcome.spec.loraSelf)), \(comm.size) rank(s)")
        }
        let metrics = comm.isRoot ? try MetricsLog(path: runDir + "/metrics.jsonl") : nil
        var best = -Double.infinity, bestEpoch = 0
        var bestValues: [Float] = []
        var bestThreshold = 0.5
        var history: [[String: Double]] = []
        for epoch in 1...epochs {
            var rng = RNG(seed: UInt64(config.int("finetune.seed")) &* 7919 &+ UInt64(epoch))
            let order = rng.permutation(train.count)
            var lossSum = 0.0, batches = 0
            var start = 0
            while start + max(comm.size, 1) <= train.count {
                let end = min(start + batchSize, train.count)
                let b = end - start
                let rows = shard(b, rank: comm.rank, of: comm.size).map { train[order[start + $0]] }
                start = end
                arena.reset(); p.zeroGrads()
                let batch = builder.batch(rows)
                let (logits, backward) = outcome.forward(batch, builder: builder, arena: arena)
                let labels = rows.map { Float($0.label) }
                let dz = arena.allocate(rows.count)
                var loss = [Double(labels.withUnsafeBufferPointer {
                    weightedBCE(logits: logits, labels: $0.baseAddress!, count: rows.count, positiveWeight: w1, negativeWeight: w0, dz: dz)
                } * Float(rows.count) / Float(b))]
                for i in 0..<rows.count { dz[i] *= Float(rows.count) / Float(b) }   // mean over the global batch
                backward(dz)
                comm.allReduceSum(p.grads + outcome.trainableOffset, count: p.count - outcome.trainableOffset)
                loss.withUnsafeMutableBufferPointer { comm.allReduceSum($0.baseAddress!, count: 1) }
                clipGradientNorm(p, maxNorm: config.float("train.grad_clip"))
                optimizer.update(p)
                lossSum += loss[0]; batches += 1
            }
            let scores = predict(valid)
            let labels = valid.map(\.label)
            let threshold = Metrics.bestF1Threshold(scores, labels)
            let values: [String: Double] = ["pr_auc": Metrics.averagePrecision(scores, labels), "roc_auc": Metrics.rocAUC(scores, labels),
                                            "f1": Metrics.f1(scores, labels, threshold: 0.5), "f1_at_threshold": Metrics.f1(scores, labels, threshold: threshold)]
            let selected = metric == "f1" ? values["f1_at_threshold"]! : values[metric]!
            if comm.isRoot {
                try metrics?.write(["type": "finetune", "epoch": epoch, "train_loss": lossSum / Double(max(batches, 1)),
                                    "valid_pr_auc": values["pr_auc"]!, "valid_roc_auc": values["roc_auc"]!, "valid_f1": values["f1"]!,
                                    "valid_f1_at_threshold": values["f1_at_threshold"]!, "threshold": threshold])
                log(String(format: "finetune epoch %d: train loss %.4f, valid PR-AUC %.4f ROC-AUC %.4f F1 %.4f (F1 %.4f at %.3f)%@", epoch,
                           lossSum / Double(max(batches, 1)), values["pr_auc"]!, values["roc_auc"]!, values["f1"]!, values["f1_at_threshold"]!,
                           threshold, selected > best ? "  best" : ""))
            }
            history.append(["epoch": Double(epoch), "loss": lossSum / Double(max(batches, 1)), "pr_auc": values["pr_auc"]!, "roc_auc": values["roc_auc"]!])
            if selected > best {
                best = selected; bestEpoch = epoch; bestThreshold = threshold
                bestValues = Array(UnsafeBufferPointer(start: p.values, count: p.count))
            }
        }
        // Keep the selected epoch's parameters.
        bestValues.withUnsafeBufferPointer { p.values.update(from: $0.baseAddress!, count: p.count) }
        if comm.isRoot {
            var spec = outcome.spec
            spec.threshold = bestThreshold
            let specJSON = String(decoding: try JSONEncoder().encode(spec), as: UTF8.self)
            let meta = CheckpointMeta(kind: "finetune", step: bestEpoch, epoch: bestEpoch, stepInEpoch: 0, worldSize: comm.size,
                                      globalBatch: config.int("finetune.batch"), configHash: config.hash(sections: ["finetune"]),
                                      optimizerStep: optimizer.step, model: outcome.model.config, features: outcome.space,
                                      storeIdentity: storeIdentity, metrics: ["valid_\(metric)": best], tensorsFile: "",
                                      tensorsChecksum: "", tensorsBytes: 0, pretrained: pretrainedPath,
                                      pretrainedChecksum: pretrainedChecksum, extra: ["finetune": specJSON])
            let offset = outcome.trainableOffset
            let base = try Checkpoints.save(dir: runDir + "/checkpoints", meta: meta, params: p, optimizer: nil,
                                            include: { pretrainedPath == nil || $0.offset >= offset })
            let relative = "checkpoints/" + URL(fileURLWithPath: base + ".safetensors").lastPathComponent
            let selection = ["checkpoint": relative, "epoch": bestEpoch, "select_metric": metric, "valid": jsonSafe(best),
                        "threshold": bestThreshold, "pretrained": pretrainedPath ?? NSNull()] as [String: Any]
            let data = try JSONSerialization.data(withJSONObject: selection, options: [.prettyPrinted, .sortedKeys])
            try writeFileAtomically(runDir + "/best.json") { try $0.write(contentsOf: data) }
            try svgLinePlot(title: "Fine-tuning", xLabel: "epoch", yLabel: "value",
                            series: [("train BCE", history.map { ($0["epoch"]!, $0["loss"]!) }),
                                     ("valid PR-AUC", history.map { ($0["epoch"]!, $0["pr_auc"]!) }),
                                     ("valid ROC-AUC", history.map { ($0["epoch"]!, $0["roc_auc"]!) })])
                .write(toFile: runDir + "/finetune.svg", atomically: true, encoding: .utf8)
            log("finetune: selected epoch \(bestEpoch) (valid \(metric) \(String(format: "%.4f", best))), \(base).safetensors")
        }
        comm.barrier()
    }

    /// Success probabilities of `trials` (all ranks take part; every rank gets all scores).
    func predict(_ trials: [StoredTrial]) -> [Double] {
        scoreTrials(trials, outcome: outcome, builder: builder, comm: comm, arena: arena)
    }
}

func jsonSafe(_ v: Double) -> Any { v.isFinite ? v : NSNull() }

/// Probabilities sigmoid(logit) of the fine-tuned model for `trials`, sharded over ranks and gathered.
public func scoreTrials(_ trials: [StoredTrial], outcome: OutcomeModel, builder: BatchBuilder, comm: Communicator,
                        arena: ActivationArena, chunk: Int = 64) -> [Double] {
    let mine = shard(trials.count, rank: comm.rank, of: comm.size)
    var local = [Float](repeating: 0, count: mine.count)
    var start = mine.lowerBound
    while start < mine.upperBound {
        let end = min(start + chunk, mine.upperBound)
        arena.reset()
        let (logits, _) = outcome.forward(builder.batch(Array(trials[start..<end])), builder: builder, arena: arena)
        for i in 0..<(end - start) { local[start - mine.lowerBound + i] = sigmoid(logits[i]) }
        start = end
    }
    return gatherScores(local, total: trials.count, comm: comm)
}

/// All-gathers per-rank score blocks (rank order; rank r holds rows [r n / W, (r + 1) n / W)).
public func gatherScores(_ local: [Float], total: Int, comm: Communicator) -> [Double] {
    let counts = (0..<comm.size).map { shard(total, rank: $0, of: comm.size).count }
    var all = [Float](repeating: 0, count: max(total, 1))
    local.withUnsafeBufferPointer { l in
        all.withUnsafeMutableBufferPointer { comm.allGatherV(send: l.baseAddress ?? UnsafePointer(bitPattern: 64)!, receive: $0.baseAddress!, counts: counts) }
    }
    return all.prefix(total).map(Double.init)
}

/// A checkpoint argument may name the .json, the .safetensors, or a run directory (its best checkpoint).
public func resolveCheckpointJSON(_ path: String) throws -> String {
    var isDir: ObjCBool = false
    if FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue {
        for candidate in [path + "/best.json", path + "/checkpoints/best.json"] {
            if let d = FileManager.default.contents(atPath: candidate),
               let o = try? JSONSerialization.jsonObject(with: d) as? [String: Any], let c = o["checkpoint"] as? String {
                let base = candidate.hasSuffix("/checkpoints/best.json") ? path : path
                return try resolveCheckpointJSON(c.hasPrefix("/") ? c : base + "/" + c)
            }
        }
        throw InputError(file: path, "is a directory without best.json; name a checkpoint file")
    }
    if path.hasSuffix(".safetensors") { return String(path.dropLast(".safetensors".count)) + ".json" }
    if path.hasSuffix(".json") { return path }
    throw InputError(file: path, "expected a checkpoint (.safetensors or .json) or a run directory")
}
