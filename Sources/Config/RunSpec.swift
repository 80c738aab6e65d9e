import Foundation
import Support

// The typed run specification: built once per command from YAML + `--set` (`RunSpec(config)`) and
// validated once, relations between keys included. Nothing outside this file reads a configuration value by key
// name to use it (`cladmop config` prints the resolved values; ranks compare them; scoring names the keys it reads to
// warn of --set of others). A checkpoint stores the `RunSpec` it was trained with; loading one calls the same `validate()`.
// Every error names the key (`section.name`) and what was expected.

/// `data.*`: which trials, where their features live, how many tokens of each modality the model sees.
public struct DataSpec: Codable, Equatable, Sendable {
    public var files: [String]
    public var synthetic: Bool
    /// NCT ids never used (the benchmark's test trials); nil: none.
    public var excludeFile: String?
    public var icdHierarchy: String
    public var featureStore: String
    public var validationFraction: Double
    public var excludeCSVs: [String]
    public var sctPhases: [String]
    public var skipBadRows: Bool
    public var maxSentences: Int
    public var maxMolTokens: Int
    public var maxMolecules: Int
    public var maxCodes: Int
}

/// `encoder.precision` and `train.precision`: the number format of the GEMM inputs (products accumulate in fp32).
public enum PrecisionSpec: String, Codable, Sendable { case fp32, bf16 }

/// `encoder.*`: the frozen text encoder.
public struct EncoderSpec: Codable, Equatable, Sendable {
    public var modelDir: String
    public var maxTokens: Int
    public var batchTokens: Int
    /// `encoder.precision`; stored specifications written before the key have fp32.
    public var precision: PrecisionSpec = .fp32
}

/// `model.*`: the sizes of the DM branch chosen by the user (the data adds vocabulary and table sizes).
public struct ModelSpec: Codable, Equatable, Sendable {
    public var dim: Int
    public var heads: Int
    public var molLayers: Int
    public var disLayers: Int
    public var groupingLayers: Int
    public var selfLayers: Int
    public var centroids: Int
    public var icdDepth: Int
    public var seed: Int
}

/// `loss.*`: the InfoNCE logits z = s a_hat b_hat^T.
public struct LossSpec: Codable, Equatable, Sendable {
    public enum LogitScale: String, Codable, Sendable { case fixed, learnable }
    public var normalize: Bool
    public var logitScale: LogitScale
    public var tau: Double
    /// log s at initialisation: tau (fixed) or log(1/0.07) (learnable, CLIP).
    public var initialLogScale: Double { logitScale == .learnable ? Foundation.log(1 / 0.07) : tau }
}

/// `train.*`: the pretraining loop (fine-tuning also reads grad_clip and precision).
public struct TrainSpec: Codable, Equatable, Sendable {
    public var globalBatch: Int
    public var chunkSize: Int
    public var lossTileRows: Int
    /// `train.bucket_mb`: MiB per bucket of the overlapped gradient all-reduce (0: one blocking all-reduce).
    public var bucketMB: Double
    /// `train.precision`: GEMM inputs of the DM branch (pretraining, fine-tuning, bench).
    public var precision: PrecisionSpec = .fp32
    public var epochs: Int
    public var maxSteps: Int
    public var seed: Int
    public var gradClip: Double
    public var logEvery: Int
    public var checksumEvery: Int
    public var evalEvery: Int
    public var stallTimeout: Int
    public var patience: Int
}

/// `optimizer.*`: the update rule and the learning-rate schedule of pretraining.
public struct OptimizerSpec: Codable, Equatable, Sendable {
    public enum Name: String, Codable, Sendable { case adam, adamw, sgd }
    public enum Schedule: String, Codable, Sendable { case constant, warmupCosine = "warmup_cosine" }
    public var name: Name
    public var lr: Double
    public var weightDecay: Double
    public var beta1: Double
    public var beta2: Double
    public var eps: Double
    public var schedule: Schedule
    public var warmupSteps: Int
    public var minLRRatio: Double
}

/// `finetune.*`: PEFT on a labelled phase file.
public struct FinetuneSpec: Codable, Equatable, Sendable {
    /// f1: F1 at the F1 threshold chosen on the same selecting trials (the one the model is then used at; a
    /// record's valid_f1_at_threshold), not at 0.5 (valid_f1).
    public enum SelectMetric: String, Codable, Sendable {
        case prAUC = "pr_auc", rocAUC = "roc_auc", f1
        /// Its name in logs: the F1 is the one at the threshold.
        public var shown: String { self == .f1 ? "f1 at the threshold" : rawValue }
    }
    public var loraRank: Int
    public var loraAlpha: Double
    public var loraCross: Bool
    public var loraSelf: Bool
    public var headHidden: Int
    public var headLR: Double
    public var loraLR: Double
    public var weightDecay: Double
    public var epochs: Int
    public var batch: Int
    public var selectMetric: SelectMetric
    public var seed: Int
    /// Members of a seed ensemble (1: a single model); with `folds`, the number of fold partitions (R x K members).
    public var ensemble: Int = 1
    /// Share of the training file's latest NCT ids that selects (0: the validation file selects).
    public var selectLatest: Double = 0
    /// Cross-fitted ensemble (0: off): K >= 2 folds of train + valid, member k selects on fold k and trains on the rest.
    public var folds: Int = 0
    /// With `folds`: the share of bootstrap resamples of the out-of-fold scores in which the F1 threshold must gain
    /// over predicting success for every trial (`Metrics.riskAverseF1Threshold`).
    public var thresholdConfidence: Double = 0.9
    /// Which epoch an ensemble's members keep: each its own validation's best, or one for all, chosen on the
    /// ensemble's pooled (out-of-fold or mean) validation scores.
    public var epochSelection: EpochSelection = .member

    public enum EpochSelection: String, Codable, Sendable { case member, pooled }

    enum CodingKeys: String, CodingKey {
        case loraRank, loraAlpha, loraCross, loraSelf, headHidden, headLR, loraLR, weightDecay, epochs, batch, selectMetric, seed, ensemble, selectLatest, folds
        case thresholdConfidence, epochSelection
    }

    public init(loraRank: Int, loraAlpha: Double, loraCross: Bool, loraSelf: Bool, headHidden: Int, headLR: Double, loraLR: Double,
                weightDecay: Double, epochs: Int, batch: Int, selectMetric: SelectMetric, seed: Int, ensemble: Int = 1, selectLatest: Double = 0, folds: Int = 0,
                thresholdConfidence: Double = 0.9, epochSelection: EpochSelection = .member) {
        self.loraRank = loraRank; self.loraAlpha = loraAlpha; self.loraCross = loraCross; self.loraSelf = loraSelf
        self.headHidden = headHidden; self.headLR = headLR; self.loraLR = loraLR; self.weightDecay = weightDecay
        self.epochs = epochs; self.batch = batch; self.selectMetric = selectMetric; self.seed = seed; self.ensemble = ensemble
        self.selectLatest = selectLatest; self.folds = folds; self.thresholdConfidence = thresholdConfidence
        self.epochSelection = epochSelection
    }

    /// A specification written before `ensemble` existed reads back with one member.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        loraRank = try c.decode(Int.self, forKey: .loraRank); loraAlpha = try c.decode(Double.self, forKey: .loraAlpha)
        loraCross = try c.decode(Bool.self, forKey: .loraCross); loraSelf = try c.decode(Bool.self, forKey: .loraSelf)
        headHidden = try c.decode(Int.self, forKey: .headHidden); headLR = try c.decode(Double.self, forKey: .headLR)
        loraLR = try c.decode(Double.self, forKey: .loraLR); weightDecay = try c.decode(Double.self, forKey: .weightDecay)
        epochs = try c.decode(Int.self, forKey: .epochs); batch = try c.decode(Int.self, forKey: .batch)
        selectMetric = try c.decode(SelectMetric.self, forKey: .selectMetric); seed = try c.decode(Int.self, forKey: .seed)
        ensemble = try c.decodeIfPresent(Int.self, forKey: .ensemble) ?? 1
        selectLatest = try c.decodeIfPresent(Double.self, forKey: .selectLatest) ?? 0
        folds = try c.decodeIfPresent(Int.self, forKey: .folds) ?? 0
        thresholdConfidence = try c.decodeIfPresent(Double.self, forKey: .thresholdConfidence) ?? 0.9
        epochSelection = try c.decodeIfPresent(EpochSelection.self, forKey: .epochSelection) ?? .member
    }

    /// Encodes every field; `ensemble` only when it is not 1, `selectLatest` and `folds` only when they are not 0,
    /// `thresholdConfidence` only when it is not 0.9, `epochSelection` only when it is not member, so that a checkpoint written before the key existed
    /// re-encodes to the same bytes (its metadata checksum is computed over them).
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(loraRank, forKey: .loraRank); try c.encode(loraAlpha, forKey: .loraAlpha)
        try c.encode(loraCross, forKey: .loraCross); try c.encode(loraSelf, forKey: .loraSelf)
        try c.encode(headHidden, forKey: .headHidden); try c.encode(headLR, forKey: .headLR)
        try c.encode(loraLR, forKey: .loraLR); try c.encode(weightDecay, forKey: .weightDecay)
        try c.encode(epochs, forKey: .epochs); try c.encode(batch, forKey: .batch)
        try c.encode(selectMetric, forKey: .selectMetric); try c.encode(seed, forKey: .seed)
        if ensemble != 1 { try c.encode(ensemble, forKey: .ensemble) }
        if selectLatest != 0 { try c.encode(selectLatest, forKey: .selectLatest) }
        if folds != 0 { try c.encode(folds, forKey: .folds) }
        if thresholdConfidence != 0.9 { try c.encode(thresholdConfidence, forKey: .thresholdConfidence) }
        if epochSelection != .member { try c.encode(epochSelection, forKey: .epochSelection) }
    }
}

/// `bench.*`: the synthetic shape of `cladmop bench`.
public struct BenchSpec: Codable, Equatable, Sendable {
    public var variableLengths: Bool
    public var molTokens: Int
    public var codes: Int
    public var sentences: Int
    public var encoderDim: Int
    public var steps: Int
    public var warmup: Int
}

/// `checkpoint.*`.
public struct CheckpointSpec: Codable, Equatable, Sendable {
    public var everySteps: Int
    public var keepLast: Int
}

/// `log.*`: what a run writes besides metrics.jsonl.
public struct LogSpec: Codable, Equatable, Sendable {
    public var tensorboard: Bool
}

/// Every section, typed and validated.
public struct RunSpec: Codable, Equatable, Sendable {
    public var data: DataSpec
    public var encoder: EncoderSpec
    public var model: ModelSpec
    public var loss: LossSpec
    public var train: TrainSpec
    public var optimizer: OptimizerSpec
    public var finetune: FinetuneSpec
    public var bench: BenchSpec
    public var checkpoint: CheckpointSpec
    public var log: LogSpec

    /// The specification of a resolved configuration (defaults < YAML < --set), validated.
    public init(_ c: Config) throws {
        data = DataSpec(files: c.strings("data.files"), synthetic: c.bool("data.synthetic"),
                        excludeFile: c.string("data.exclude_file").isEmpty ? nil : c.string("data.exclude_file"),
                        icdHierarchy: c.string("data.icd_hierarchy"), featureStore: c.string("data.feature_store"),
                        validationFraction: c.double("data.validation_fraction"), excludeCSVs: c.strings("data.exclude_csvs"),
                        sctPhases: c.strings("data.sct_phases"), skipBadRows: c.bool("data.skip_bad_rows"),
                        maxSentences: c.int("data.max_sentences"), maxMolTokens: c.int("data.max_mol_tokens"),
                        maxMolecules: c.int("data.max_molecules"), maxCodes: c.int("data.max_codes"))
        encoder = EncoderSpec(modelDir: c.string("encoder.model_dir"), maxTokens: c.int("encoder.max_tokens"),
                              batchTokens: c.int("encoder.batch_tokens"), precision: PrecisionSpec(rawValue: c.string("encoder.precision"))!)
        model = ModelSpec(dim: c.int("model.dim"), heads: c.int("model.heads"), molLayers: c.int("model.mol_layers"),
                          disLayers: c.int("model.dis_layers"), groupingLayers: c.int("model.grouping_layers"),
                          selfLayers: c.int("model.self_layers"), centroids: c.int("model.centroids"),
                          icdDepth: c.int("model.icd_depth"), seed: c.int("model.seed"))
        loss = LossSpec(normalize: c.bool("loss.normalize"), logitScale: LossSpec.LogitScale(rawValue: c.string("loss.logit_scale"))!,
                        tau: c.double("loss.tau"))
        train = TrainSpec(globalBatch: c.int("train.global_batch"), chunkSize: c.int("train.chunk_size"),
                          lossTileRows: c.int("train.loss_tile_rows"), bucketMB: c.double("train.bucket_mb"), epochs: c.int("train.epochs"), maxSteps: c.int("train.max_steps"),
                          seed: c.int("train.seed"), gradClip: c.double("train.grad_clip"), logEvery: c.int("train.log_every"),
                          checksumEvery: c.int("train.checksum_every"), evalEvery: c.int("train.eval_every"),
                          stallTimeout: c.int("train.stall_timeout"), patience: c.int("train.patience"))
        train.precision = PrecisionSpec(rawValue: c.string("train.precision"))!
        optimizer = OptimizerSpec(name: OptimizerSpec.Name(rawValue: c.string("optimizer.name"))!, lr: c.double("optimizer.lr"),
                                  weightDecay: c.double("optimizer.weight_decay"), beta1: c.double("optimizer.beta1"),
                                  beta2: c.double("optimizer.beta2"), eps: c.double("optimizer.eps"),
                                  schedule: OptimizerSpec.Schedule(rawValue: c.string("optimizer.schedule"))!,
                                  warmupSteps: c.int("optimizer.warmup_steps"), minLRRatio: c.double("optimizer.min_lr_ratio"))
        finetune = FinetuneSpec(loraRank: c.int("finetune.lora_rank"), loraAlpha: c.double("finetune.lora_alpha"),
                                loraCross: c.bool("finetune.lora_cross"), loraSelf: c.bool("finetune.lora_self"),
                                headHidden: c.int("finetune.head_hidden"), headLR: c.double("finetune.head_lr"),
                                loraLR: c.double("finetune.lora_lr"), weightDecay: c.double("finetune.weight_decay"),
                                epochs: c.int("finetune.epochs"), batch: c.int("finetune.batch"),
                                selectMetric: FinetuneSpec.SelectMetric(rawValue: c.string("finetune.select_metric"))!,
                                seed: c.int("finetune.seed"), ensemble: c.int("finetune.ensemble"),
                                selectLatest: c.double("finetune.select_latest"), folds: c.int("finetune.folds"),
                                thresholdConfidence: c.double("finetune.threshold_confidence"),
                                epochSelection: FinetuneSpec.EpochSelection(rawValue: c.string("finetune.epoch_selection"))!)
        bench = BenchSpec(variableLengths: c.bool("bench.variable_lengths"), molTokens: c.int("bench.mol_tokens"),
                          codes: c.int("bench.codes"), sentences: c.int("bench.sentences"), encoderDim: c.int("bench.encoder_dim"),
                          steps: c.int("bench.steps"), warmup: c.int("bench.warmup"))
        checkpoint = CheckpointSpec(everySteps: c.int("checkpoint.every_steps"), keepLast: c.int("checkpoint.keep_last"))
        log = LogSpec(tensorboard: c.bool("log.tensorboard"))
        try validate(origin: c.sourceFile.map { c.hasOverrides ? "\($0) (with --set)" : $0 } ?? (c.hasOverrides ? "--set" : "configuration"))
    }

    /// Every range of the schema and every relation between keys. `origin` prefixes the message (the
    /// config file, or the checkpoint whose stored specification is checked).
    public func validate(origin: String) throws {
        var v = SpecValidator(origin: origin)
        // Each key against the schema's range (a stored specification never went through the parser).
        v.range("data.validation_fraction", data.validationFraction)
        v.range("data.max_sentences", data.maxSentences); v.range("data.max_mol_tokens", data.maxMolTokens)
        v.range("data.max_molecules", data.maxMolecules); v.range("data.max_codes", data.maxCodes)
        v.require(data.files.allSatisfy { !$0.isEmpty }, "data.files", data.files.description, "no empty file names")
        v.require(data.excludeCSVs.allSatisfy { !$0.isEmpty }, "data.exclude_csvs", data.excludeCSVs.description, "no empty file names")
        v.require(data.excludeFile.map { !$0.isEmpty } ?? true, "data.exclude_file", "\"\"", "a path, or the empty string for none")
        v.require(!data.icdHierarchy.isEmpty, "data.icd_hierarchy", "\"\"", "a path")
        v.require(!data.featureStore.isEmpty, "data.feature_store", "\"\"", "a path")
        v.range("encoder.max_tokens", encoder.maxTokens); v.range("encoder.batch_tokens", encoder.batchTokens)
        v.require(!encoder.modelDir.isEmpty, "encoder.model_dir", "\"\"", "a folder")
        v.require(encoder.batchTokens >= encoder.maxTokens, "encoder.batch_tokens", "\(encoder.batchTokens)",
                  "at least encoder.max_tokens = \(encoder.maxTokens) (one sentence must fit a batch)")
        v.range("model.dim", model.dim); v.range("model.heads", model.heads)
        v.range("model.mol_layers", model.molLayers); v.range("model.dis_layers", model.disLayers)
        v.range("model.grouping_layers", model.groupingLayers); v.range("model.self_layers", model.selfLayers)
        v.range("model.centroids", model.centroids); v.range("model.icd_depth", model.icdDepth); v.range("model.seed", model.seed)
        v.require(model.heads > 0 && model.dim % model.heads == 0, "model.heads", "\(model.heads)",
                  "a divisor of model.dim = \(model.dim)")
        v.require(model.groupingLayers < 1 || model.centroids >> (model.groupingLayers - 1) >= 1, "model.centroids", "\(model.centroids)",
                  "at least 2^(model.grouping_layers - 1) = \(1 << max(model.groupingLayers - 1, 0)) (each grouping layer halves the centroids)")
        v.range("loss.tau", loss.tau)
        v.range("train.global_batch", train.globalBatch); v.range("train.chunk_size", train.chunkSize)
        v.range("train.loss_tile_rows", train.lossTileRows); v.range("train.bucket_mb", train.bucketMB)
        v.range("train.epochs", train.epochs)
        v.range("train.max_steps", train.maxSteps); v.range("train.seed", train.seed); v.range("train.grad_clip", train.gradClip)
        v.range("train.log_every", train.logEvery); v.range("train.checksum_every", train.checksumEvery)
        v.range("train.eval_every", train.evalEvery); v.range("train.stall_timeout", train.stallTimeout)
        v.range("train.patience", train.patience)
        v.range("optimizer.lr", optimizer.lr); v.range("optimizer.weight_decay", optimizer.weightDecay)
        v.range("optimizer.beta1", optimizer.beta1); v.range("optimizer.beta2", optimizer.beta2)
        v.range("optimizer.eps", optimizer.eps)
        v.require(optimizer.eps > 0 || optimizer.name == .sgd, "optimizer.eps", "\(optimizer.eps)", "> 0 (Adam divides by sqrt(v) + eps)")
        v.range("optimizer.warmup_steps", optimizer.warmupSteps); v.range("optimizer.min_lr_ratio", optimizer.minLRRatio)
        v.require(optimizer.schedule != .warmupCosine || train.maxSteps == 0 || optimizer.warmupSteps < train.maxSteps,
                  "optimizer.warmup_steps", "\(optimizer.warmupSteps)",
                  "fewer than train.max_steps = \(train.maxSteps) (the learning rate would never reach optimizer.lr)")
        v.range("finetune.lora_rank", finetune.loraRank); v.range("finetune.lora_alpha", finetune.loraAlpha)
        v.range("finetune.head_hidden", finetune.headHidden); v.range("finetune.head_lr", finetune.headLR)
        v.range("finetune.lora_lr", finetune.loraLR); v.range("finetune.weight_decay", finetune.weightDecay)
        v.range("finetune.epochs", finetune.epochs); v.range("finetune.batch", finetune.batch); v.range("finetune.seed", finetune.seed)
        v.range("finetune.ensemble", finetune.ensemble); v.range("finetune.select_latest", finetune.selectLatest)
        v.range("finetune.folds", finetune.folds); v.range("finetune.threshold_confidence", finetune.thresholdConfidence)
        v.require(finetune.folds != 1, "finetune.folds", "1", "0 (off) or at least 2 (a cross-fitted ensemble needs a fold to select on)")
        v.require(finetune.folds < 2 || finetune.ensemble <= 64 / finetune.folds, "finetune.ensemble", "\(finetune.ensemble)",
                  "at most \(64 / max(finetune.folds, 1)) with finetune.folds = \(finetune.folds) (ensemble x folds members, at most 64)")
        v.require(finetune.folds < 2 || finetune.selectLatest == 0, "finetune.select_latest", "\(finetune.selectLatest)",
                  "0 when finetune.folds = \(finetune.folds) is set (each member selects on its own fold)")
        v.range("bench.mol_tokens", bench.molTokens); v.range("bench.codes", bench.codes); v.range("bench.sentences", bench.sentences)
        v.range("bench.encoder_dim", bench.encoderDim); v.range("bench.steps", bench.steps); v.range("bench.warmup", bench.warmup)
        v.range("checkpoint.every_steps", checkpoint.everySteps); v.range("checkpoint.keep_last", checkpoint.keepLast)
        try v.finish()
    }
}

extension TrainSpec {
    enum CodingKeys: String, CodingKey {
        case globalBatch, chunkSize, lossTileRows, bucketMB, epochs, maxSteps, seed, gradClip, logEvery, checksumEvery, evalEvery
        case stallTimeout, patience, precision
    }

    /// `train.bucket_mb` of a stored specification written before the key existed (checkpoints): the blocking all-reduce.
    static let bucketMBBeforeKey = 0.0

    /// Decodes a stored `train` section; one without `bucketMB` (written before the key existed, or with 0) gets 0.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        globalBatch = try c.decode(Int.self, forKey: .globalBatch); chunkSize = try c.decode(Int.self, forKey: .chunkSize)
        lossTileRows = try c.decode(Int.self, forKey: .lossTileRows)
        bucketMB = try c.decodeIfPresent(Double.self, forKey: .bucketMB) ?? Self.bucketMBBeforeKey
        epochs = try c.decode(Int.self, forKey: .epochs); maxSteps = try c.decode(Int.self, forKey: .maxSteps)
        seed = try c.decode(Int.self, forKey: .seed); gradClip = try c.decode(Double.self, forKey: .gradClip)
        logEvery = try c.decode(Int.self, forKey: .logEvery); checksumEvery = try c.decode(Int.self, forKey: .checksumEvery)
        evalEvery = try c.decode(Int.self, forKey: .evalEvery); stallTimeout = try c.decode(Int.self, forKey: .stallTimeout)
        patience = try c.decode(Int.self, forKey: .patience)
        precision = try c.decodeIfPresent(PrecisionSpec.self, forKey: .precision) ?? .fp32
    }

    /// Encodes every field; `bucketMB` only when it is not 0, so that a checkpoint written before the key existed
    /// re-encodes to the same bytes (its metadata checksum is computed over them) and reads back unchanged.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(globalBatch, forKey: .globalBatch); try c.encode(chunkSize, forKey: .chunkSize)
        try c.encode(lossTileRows, forKey: .lossTileRows)
        if bucketMB != Self.bucketMBBeforeKey { try c.encode(bucketMB, forKey: .bucketMB) }
        try c.encode(epochs, forKey: .epochs); try c.encode(maxSteps, forKey: .maxSteps)
        try c.encode(seed, forKey: .seed); try c.encode(gradClip, forKey: .gradClip)
        try c.encode(logEvery, forKey: .logEvery); try c.encode(checksumEvery, forKey: .checksumEvery)
        try c.encode(evalEvery, forKey: .evalEvery); try c.encode(stallTimeout, forKey: .stallTimeout)
        try c.encode(patience, forKey: .patience)
        // Like bucketMB: only when not the default, so specifications stored before the key re-encode unchanged.
        if precision != .fp32 { try c.encode(precision, forKey: .precision) }
    }
}

extension EncoderSpec {
    enum CodingKeys: String, CodingKey { case modelDir, maxTokens, batchTokens, precision }

    /// Decodes a stored `encoder` section; one without `precision` (written before the key existed) gets fp32.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        modelDir = try c.decode(String.self, forKey: .modelDir); maxTokens = try c.decode(Int.self, forKey: .maxTokens)
        batchTokens = try c.decode(Int.self, forKey: .batchTokens)
        precision = try c.decodeIfPresent(PrecisionSpec.self, forKey: .precision) ?? .fp32
    }

    /// Encodes `precision` only when it is not fp32: a checkpoint written before the key re-encodes to the same bytes.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(modelDir, forKey: .modelDir); try c.encode(maxTokens, forKey: .maxTokens)
        try c.encode(batchTokens, forKey: .batchTokens)
        if precision != .fp32 { try c.encode(precision, forKey: .precision) }
    }
}

extension RunSpec {
    /// Decodes a stored specification; one written before the `log` section existed gets its defaults.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        data = try c.decode(DataSpec.self, forKey: .data); encoder = try c.decode(EncoderSpec.self, forKey: .encoder)
        model = try c.decode(ModelSpec.self, forKey: .model); loss = try c.decode(LossSpec.self, forKey: .loss)
        train = try c.decode(TrainSpec.self, forKey: .train); optimizer = try c.decode(OptimizerSpec.self, forKey: .optimizer)
        finetune = try c.decode(FinetuneSpec.self, forKey: .finetune); bench = try c.decode(BenchSpec.self, forKey: .bench)
        checkpoint = try c.decode(CheckpointSpec.self, forKey: .checkpoint)
        log = try c.decodeIfPresent(LogSpec.self, forKey: .log) ?? LogSpec(tensorboard: false)
    }

    enum CodingKeys: String, CodingKey { case data, encoder, model, loss, train, optimizer, finetune, bench, checkpoint, log }

    /// Encodes every section; `log` only when it differs from its defaults, so that a checkpoint written before the
    /// section existed re-encodes to the same bytes and its metadataChecksum still verifies.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(data, forKey: .data); try c.encode(self.encoder, forKey: .encoder)
        try c.encode(model, forKey: .model); try c.encode(loss, forKey: .loss)
        try c.encode(train, forKey: .train); try c.encode(optimizer, forKey: .optimizer)
        try c.encode(finetune, forKey: .finetune); try c.encode(bench, forKey: .bench)
        try c.encode(checkpoint, forKey: .checkpoint)
        if log != LogSpec(tensorboard: false) { try c.encode(log, forKey: .log) }
    }
}

/// Collects the first violation; its message names the key, the value and what was expected.
struct SpecValidator {
    let origin: String
    var error: InputError?

    mutating func require(_ ok: Bool, _ key: String, _ value: String, _ expected: String) {
        guard !ok, error == nil else { return }
        error = .invalid(key, value, expected: expected, in: origin)
    }

    mutating func range(_ key: String, _ value: Int) {
        guard case .int(let r)? = ConfigSchema.key(key)?.kind else { preconditionFailure("\(key) is not an integer key") }
        require(r.contains(value), key, "\(value)", "an integer in [\(r.lowerBound), \(r.upperBound)]")
    }

    mutating func range(_ key: String, _ value: Double) {
        guard case .double(let r)? = ConfigSchema.key(key)?.kind else { preconditionFailure("\(key) is not a number key") }
        require(value.isFinite && r.contains(value), key, "\(value)", "a number in [\(r.lowerBound), \(r.upperBound)]")
    }

    func finish() throws { if let error { throw error } }
}
