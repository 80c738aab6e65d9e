import Communication
import Config
import Foundation
import Model
import NN
import Reporting
import Support
import TextEncoder
import TrialData

/// A feature store holding every file of `csvs`: the configured store when it has them (same content),
/// else a cache store in data/features/cache/ built now (under mpirun the ranks share the encoding), which copies the
/// configured store's vectors of the sentences it already holds (a split of a featurized file encodes nothing).
public func storeContaining(_ csvs: [String], spec: RunSpec, hierarchy: ICD10Hierarchy, comm: Communicator,
                            labels: LabelRequirement = .required, log: @escaping (String) -> Void) throws -> FeatureStore {
    let main = spec.data.featureStore
    let wanted = try spec.expectedStoreIdentity(of: csvs, comm: comm)
    // The ranks must score the same files from the same store: a rank that found them in the store while another
    // featurized them would wait for it in another collective for ever.
    try requireAgreement([("the contents of " + csvs.joined(separator: ", "),
                           wanted.sources.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))],
                         comm: comm, what: "files to score or fine-tune on")
    /// Made by this encoder, tokens per text and featurizer, from these files' bytes (other files may be there too).
    func holds(_ s: FeatureStore) -> Bool {
        s.identity.encoder == wanted.encoder && s.identity.encoderWeights == wanted.encoderWeights
            && s.identity.maxTokens == wanted.maxTokens && s.identity.featurizerVersion == wanted.featurizerVersion
            && wanted.sources.allSatisfy { s.identity.sources[$0.key] == $0.value }
    }
    /// data.skip_bad_rows: the malformed rows of `csvs` the store left out are named (refused without the key).
    func reported(_ s: FeatureStore) throws -> FeatureStore {
        let lines = try s.requireSkippedRowsAllowed(of: csvs, skipBadRows: spec.data.skipBadRows)
        if comm.isRoot { for line in lines { log("featurize: " + line) } }
        return s
    }
    // A store that is there but cannot be read (damaged, another version, unreadable) is named: its vectors are not
    // reused and every sentence is encoded again, which can take hours.
    var mainStore: FeatureStore?, mainUnreadable: String?
    if FileManager.default.fileExists(atPath: main) {
        do { mainStore = try FeatureStore(path: main) } catch { mainUnreadable = "\(error)" }
    }
    let inMain = mainStore.map(holds) ?? false
    try requireAgreement([("whether \(main) holds " + csvs.joined(separator: ", "), "\(inMain)")], comm: comm,
                         what: "feature stores (data.feature_store: is it the same file on every node?)")
    if let s = mainStore, inMain { return try reported(s) }
    // One cache store per (files, encoder, tokens per text, featurizer): another setting builds its own, never
    // replacing the store an earlier setting left (it would silently serve the other setting's vectors afterwards).
    let keyText = wanted.sources.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined()
        + "|\(wanted.encoder)|\(wanted.maxTokens)|\(wanted.featurizerVersion)"
    let key = checksumHex(keyText)
    let cache = URL(fileURLWithPath: main).deletingLastPathComponent().path + "/cache/\(key).store"
    let cached = try? FeatureStore(path: cache)
    let inCache = cached.map(holds) ?? false
    try requireAgreement([("whether the cache \(cache) holds " + csvs.joined(separator: ", "), "\(inCache)")], comm: comm,
                         what: "feature stores (the cache beside data.feature_store: is it the same folder on every node?)")
    if let s = cached, inCache { return try reported(s) }
    if comm.isRoot {
        // Before any sentence is encoded (minutes on a large file): the store would be written there at the end.
        let folder = URL(fileURLWithPath: cache).deletingLastPathComponent().path
        try checkWritableFolder(folder, option: "the cache folder of data.feature_store (\(csvs.joined(separator: ", ")) is not in \(main))")
        try FeatureStore.refuseReplacingOtherFiles(cache, option: "the cache store of \(csvs.joined(separator: ", "))")
        if let mainUnreadable { log("featurize: not reusing data.feature_store: \(mainUnreadable)") }
        log("featurize: \(csvs.joined(separator: ", ")) not in \(main); featurizing into \(cache)")
    }
    let precision = resolvedPrecision(spec.encoder.precision, key: "encoder.precision", comm: comm)
    _ = try featurize(comm: comm, paths: csvs, output: cache,
                      makeEncoder: { try BertEncoder(modelDir: spec.encoder.modelDir, maxLength: spec.encoder.maxTokens, precision: precision) },
                      hierarchy: hierarchy, skipBadRows: spec.data.skipBadRows, batchTokens: spec.encoder.batchTokens,
                      reuse: mainStore, labels: labels, stall: StallPolicy(stallTimeout: spec.train.stallTimeout),
                      log: { if comm.isRoot { log($0) } })
    return try reported(try FeatureStore(path: cache))
}

/// Before any CSV is featurized for a checkpoint (minutes with a large encoder): the encoder of encoder.model_dir is
/// the one the checkpoint was trained with: vectors of the width it was trained on, and (when the checkpoint records
/// them, version 6 on) the same weights: an encoder of the same shapes with other weights (a fine-tuned copy under the
/// same folder name) would score every trial with vectors the model never saw, silently.
public func requireTrainedEncoder(spec: RunSpec, meta: CheckpointMeta, checkpoint: String) throws {
    let configPath = spec.encoder.modelDir + "/config.json"
    guard FileManager.default.fileExists(atPath: configPath) else { return }    // storeContaining names the missing file
    let width = try BertConfig.load(path: configPath).hidden_size
    let expected = meta.model.encoderDim, trainedOn = meta.storeIdentity
    guard width == expected else {
        // A model pretrained on a synthetic store (cladmop synth) had no encoder to name: no encoder.model_dir fits it.
        let advice = trainedOn == "synthetic"
            ? "it was pretrained on a synthetic store (cladmop synth), whose vectors no text encoder makes: an encoder of width \(expected) is taken, with a warning; to score or fine-tune on TOP files, pretrain on featurized ones"
            : "set encoder.model_dir to the encoder it was trained with"
        throw InputError(file: configPath, "hidden_size = \(width): encoder.model_dir = \(spec.encoder.modelDir) makes sentence vectors of width \(width), but \(checkpoint) was trained on vectors of width \(expected) (from \(trainedOn)); \(advice)")
    }
    guard let trainedWeights = meta.storeEncoderWeights, trainedOn != "synthetic" else { return }
    let weights = try BertEncoder.weightsChecksum(modelDir: spec.encoder.modelDir)
    guard weights == trainedWeights else {
        throw InputError(file: spec.encoder.modelDir + "/model.safetensors", "is not the encoder \(checkpoint) was trained with: its weights' checksum is \(weights), the checkpoint's sentence vectors came from weights with checksum \(trainedWeights) (\(trainedOn)); set encoder.model_dir to the encoder it was trained with")
    }
}

/// Every row of a CSV scored by a checkpoint.
/// Refuses a model whose outputs (`rows` of `width` values, one row per trial) are not all finite: a checkpoint of a
/// diverged run (weights grown past Float's range, or NaN) would otherwise write NaN scores or embeddings, and metrics
/// would rank them as numbers. The same on every rank (the outputs are gathered), so every rank throws alike.
public func requireFiniteOutputs(_ rows: [Float], width: Int, nctids: [String], what: String, checkpoint: String, csv: String) throws {
    guard let first = rows.firstIndex(where: { !$0.isFinite }) else { return }
    let bad = stride(from: 0, to: rows.count, by: width).filter { r in rows[r..<r + width].contains { !$0.isFinite } }.count
    let v = rows[first]
    throw InputError(file: checkpoint, "its model \(what) trial \(nctids[first / width]) of \(csv) as \(v.isNaN ? "nan" : "\(v)") (\(bad) of the "
                     + "\(nctids.count) trials not finite): the weights of a run that diverged; use an earlier checkpoint, or train again with a lower optimizer.lr (pretraining) or finetune.head_lr / finetune.lora_lr")
}

public struct ScoredCSV {
    public var trials: [StoredTrial]
    public var scores: [Double]
    /// The decision threshold: the one the fine-tuning chose on its selection trials, or the F1-best one here (zero-shot;
    /// 0.5 when some trial has no label).
    public var threshold: Double
    /// Fine-tuned: per trial, whether its disease combination is absent from the training trials of the model(s)
    /// that scored it (the "new diseases" subset); nil: zero-shot.
    public var newDisease: [Bool]?
    /// How many of the trials a scoring model trained on or selected its epoch on (in-sample scores), from the
    /// checkpoints' `head.trainedTrials`; out of fold, the trials that selected the epoch of a member that scored them
    /// (all but a run's `--report-trials`); nil when unknown (older checkpoints, zero-shot).
    public var inSample: Int? = nil
    /// How many of the trials the pretraining's SCT corpus held (`LoadedCheckpoint.pretrainedTrials`): successful
    /// trials the model was pretrained on, so not out of sample either; nil when the checkpoint does not record them.
    public var sctTrials: Int? = nil
    /// Zero-shot, when asked (`scoreCSV(retrieval: true)`) and at least 2 trials are successful: the pretrained model's
    /// retrieval among the successful trials (`retrievalMetrics`, as pretraining's validation); nil otherwise.
    public var retrieval: RetrievalMetrics? = nil
}

/// Warns (rank 0) that `count` of the `total` trials of `csv` trained or selected the model of `checkpoint`.
func warnInSample(_ count: Int, of total: Int, csv: String, checkpoint: String, foldHint: Bool) {
    guard count > 0 else { return }
    standardErrorWrite(Data(("warning: \(count) of the \(total) trials of \(csv) trained or selected the model of \(checkpoint) "
        + "(its checkpoints record them): their scores are in-sample"
        + (foldHint ? "; --out-of-fold scores the trials of its folds by the members that held them out" : "") + "\n").utf8))
}

/// What scoring reads besides the checkpoint: the ICD-10 tree (data.icd_hierarchy) and the feature store holding the CSV.
public struct ScoringInputs {
    public let hierarchy: ICD10Hierarchy
    public let store: FeatureStore
    /// Whether --data named the store itself (decided once, agreed by the ranks: every member scores it alike).
    public let givenStore: Bool
}

/// A checkpoint's DM branch ready to run: a pretraining checkpoint's model, or a fine-tuned one with its LoRA
/// adapters and head (`outcome`), its pretrained base restored and checked.
public struct LoadedCheckpoint {
    public let meta: CheckpointMeta
    public let model: CLaDMoP
    public let outcome: OutcomeModel?
    /// The checkpoint's metadata file (.json).
    public let path: String
    /// The SCT trials its pretraining was trained and validated on (`CheckpointMeta.sctTrials` of the pretraining
    /// checkpoint, the fine-tuned one's base); nil when that checkpoint predates the record (version 7 or older).
    public let pretrainedTrials: [String]?

    /// Loads `checkpoint` and computes in the precision it was trained in (`train.precision`, agreed by every rank:
    /// a collective, so every rank loads the same checkpoints in the same order): a bf16 model chose its epoch and
    /// threshold on bf16 scores, which fp32 would move (a stranger's probe: PR-AUC 0.8405 on the validation file in
    /// fine-tuning, 0.8394 by evaluate, which had scored in fp32).
    public init(_ checkpoint: String, comm: Communicator) throws {
        try self.init(checkpoint)
        // Every rank must score with the same checkpoint (the same path can hold another run on another node): the
        // scores would be one model's on some trials and another's on the rest. Checked before the precision's
        // collective, which a rank whose checkpoint asks for fp32 would not enter.
        try requireAgreement([("--checkpoint \(path)", "\(meta.tensorsChecksum) \(meta.metadataChecksum) \(meta.pretrainedChecksum ?? "")")],
                             comm: comm, what: "checkpoints")
        model.params.setPrecision(agreedTrainingPrecision(meta.spec.train.precision, comm: comm, scoring: true))
    }

    private init(_ checkpoint: String) throws {
        let jsonPath = try resolveCheckpointJSON(checkpoint)
        path = jsonPath
        let (meta, tensors) = try Checkpoints.load(jsonPath: jsonPath)
        self.meta = meta
        switch meta.kind {
        case .finetune:
            let head = meta.head!     // validated by Checkpoints.load
            let outcome = OutcomeModel(model: meta.model, space: meta.features, spec: head, seed: 0, loraLR: 0, headLR: 0, weightDecay: 0)
            if let recorded = meta.pretrained {
                // The run's own link (RUN/pretrained/) first; the path recorded at fine-tuning when the link is missing
                // or fails its checks (then the link's error is the one reported if that path fails too).
                func load(_ pre: String) throws -> (CheckpointMeta, SafetensorsFile) {
                    let (preMeta, preTensors) = try Checkpoints.load(jsonPath: pre)
                    guard preMeta.tensorsChecksum == meta.pretrainedChecksum else {
                        throw InputError(file: pre, "pretrained checkpoint changed since fine-tuning (checksum \(preMeta.tensorsChecksum), recorded \(meta.pretrainedChecksum ?? "-"))")
                    }
                    return (preMeta, preTensors)
                }
                let kept = meta.pretrainedLink.map {
                    URL(fileURLWithPath: resolvedPath(jsonPath)).deletingLastPathComponent().appendingPathComponent($0).standardizedFileURL.path
                }
                let (preMeta, preTensors): (CheckpointMeta, SafetensorsFile)
                if let kept, FileManager.default.fileExists(atPath: kept) {
                    do { (preMeta, preTensors) = try load(kept) } catch let keptError {
                        guard let fallback = try? load(recorded) else { throw keptError }
                        standardErrorWrite(Data("warning: \(keptError); loading the pretrained checkpoint from \(recorded) instead\n".utf8))
                        (preMeta, preTensors) = fallback
                    }
                } else {
                    (preMeta, preTensors) = try load(recorded)
                }
                try Checkpoints.restore(preTensors, into: outcome.params, optimizer: nil, only: { $0.group == 0 })
                pretrainedTrials = preMeta.sctTrials
            } else {
                pretrainedTrials = nil      // fine-tuned without pretraining (--pretrained none)
            }
            try Checkpoints.restore(tensors, into: outcome.params, optimizer: nil, only: { tensors.tensors[$0.name] != nil })
            self.outcome = outcome
            model = outcome.model
        case .pretrain:
            let params = ParameterArena(seed: 0)
            model = CLaDMoP(meta.model, params: params)
            params.finalize()
            try Checkpoints.restore(tensors, into: params, optimizer: nil)
            outcome = nil
            pretrainedTrials = meta.sctTrials
        }
    }

    /// The rows of `csv` from a feature store that holds them (featurized now if none does), checked against
    /// the checkpoint's sentence width, and the batch builder of the checkpoint's input space. `csv` may also name a
    /// feature store itself (`cladmop featurize`'s output, known by its header): then every trial it holds.
    public func rows(of csv: String, spec: RunSpec, comm: Communicator, labels: LabelRequirement,
                     log: @escaping (String) -> Void) throws -> ([StoredTrial], BatchBuilder) {
        var inputs: ScoringInputs?
        return try rows(of: csv, spec: spec, comm: comm, labels: labels, log: log, inputs: &inputs)
    }

    /// The same, with the ICD-10 tree and the feature store of an earlier call for the same `csv` and `spec` (`inputs`;
    /// nil: read here, and kept there): the members of an ensemble read them once, each still checked against them.
    public func rows(of csv: String, spec: RunSpec, comm: Communicator, labels: LabelRequirement,
                     log: @escaping (String) -> Void, inputs: inout ScoringInputs?) throws -> ([StoredTrial], BatchBuilder) {
        let givenStore = inputs?.givenStore ?? FeatureStore.startsWithMagic(csv)
        if inputs == nil {
            // A rank that read a CSV while another read a store would wait in another collective.
            try requireAgreement([("--data \(csv)", givenStore ? "a feature store" : "a CSV")], comm: comm, what: "files to score")
            // A checkpoint records its configuration's paths as given, so scoring it from another folder looks for them there.
            let (whose, hint) = (", also of the one the checkpoint recorded,", "the folder the model was trained in")
            try requireConfiguredPath(spec.data.icdHierarchy, key: "data.icd_hierarchy", whose: whose, hint: hint)
            if !givenStore { try requireConfiguredPath(spec.encoder.modelDir, key: "encoder.model_dir", whose: whose, hint: hint) }
        }
        let hierarchy = try inputs?.hierarchy ?? ICD10Hierarchy(path: spec.data.icdHierarchy, comm: comm)
        try hierarchy.requireTables(of: meta.model, trainedTree: meta.icdHierarchy, checkpoint: path)      // before featurizing anything
        let store: FeatureStore
        if givenStore {
            store = try inputs?.store ?? FeatureStore(path: csv)
            try requireStoreFits(store, spec: spec, comm: comm, log: log)
        } else {
            try requireTrainedEncoder(spec: spec, meta: meta, checkpoint: path)
            store = try inputs?.store ?? storeContaining([csv], spec: spec, hierarchy: hierarchy, comm: comm, labels: labels, log: log)
        }
        inputs = ScoringInputs(hierarchy: hierarchy, store: store, givenStore: givenStore)
        guard store.dim == meta.model.encoderDim else {
            throw InputError(file: store.path, "sentence vectors have width \(store.dim), the checkpoint expects \(meta.model.encoderDim)")
        }
        if comm.isRoot && !givenStore { warnIfOtherEncoder(store: store, trainedOn: meta.storeIdentity, trainedMaxTokens: meta.spec.encoder.maxTokens, what: "the checkpoint") }
        let rows = givenStore ? store.trials : store.trials(of: csv)
        if givenStore { try checkOneRowPerTrial(rows, store: store.path) } else { try checkUniqueNCTIDs(rows) }      // also when an older store already held the file
        if labels == .required {         // a store featurized for predict may hold the file without labels
            if givenStore, let t = rows.first(where: { $0.label == nil }) {
                throw InputError(file: csv, "trial \(t.nctid) (line \(t.source.line) of \(t.source.file), which it was featurized from) has no label: the field was empty or the file had no label column; scoring against labels (evaluate, --out-of-fold) needs 0 or 1")
            }
            _ = try requireLabels(rows, file: csv, purpose: "scoring against labels (evaluate, --out-of-fold)")
        }
        let builder = try BatchBuilder(store: store, hierarchy: hierarchy, space: meta.features)
        return (rows, builder)
    }

    /// A feature store given as the data to score: the same file on every rank, with no rows left out unless
    /// data.skip_bad_rows allows it, and sentence vectors from the encoder the checkpoint was trained with (a store is
    /// scored as it is, so no setting of encoder.* could mend another encoder's vectors: refused, not warned).
    private func requireStoreFits(_ store: FeatureStore, spec: RunSpec, comm: Communicator, log: @escaping (String) -> Void) throws {
        try requireAgreement([("--data \(store.path) (a feature store)", String(store.checksum, radix: 16))], comm: comm,
                             what: "files to score (is the feature store the same file on every node?)")
        let skipped = try store.requireSkippedRowsAllowed(of: store.sourcePaths, skipBadRows: spec.data.skipBadRows)
        if comm.isRoot { for line in skipped { log("featurize: " + line) } }
        let id = store.identity, trainedOn = meta.storeIdentity
        let remake = id.encoder == "synthetic"
            ? "give the TOP-format CSV to score as --data (featurized on the fly), or a store cladmop featurize made from it with that encoder"
            : "featurize its CSV again with the encoder the checkpoint was trained with (cladmop featurize --data FILE.csv --output FILE.store, encoder.model_dir, encoder.precision and encoder.max_tokens as in its config), or give the CSV itself as --data"
        if trainedOn == "synthetic" {
            if comm.isRoot && id.encoder != "synthetic" { warnIfOtherEncoder(store: store, trainedOn: trainedOn, trainedMaxTokens: id.maxTokens, what: "the checkpoint") }
            return
        }
        guard id.encoder == trainedOn else {
            throw InputError(file: store.path, "its sentence vectors come from \(id.encoder == "synthetic" ? "no encoder (a synthetic store, cladmop synth)" : "the encoder \(id.encoder)"), the checkpoint \(path) was trained on those of \(trainedOn); \(remake)")
        }
        if let trained = meta.storeEncoderWeights, trained != id.encoderWeights {
            throw InputError(file: store.path, (id.encoderWeights.map { "its sentence vectors come from encoder weights with checksum \($0)" }
                                                ?? "it records no checksum of its encoder's weights (a store featurized before 2026-12-04)")
                             + ", the checkpoint \(path) was trained on vectors of weights with checksum \(trained); \(remake)")
        }
        guard id.featurizerVersion == FeatureStore.featurizerVersion else {
            throw InputError(file: store.path, "was written by featurizer version \(id.featurizerVersion), this cladmop featurizes with version \(FeatureStore.featurizerVersion); \(remake)")
        }
        if id.maxTokens != meta.spec.encoder.maxTokens && comm.isRoot && !warnedOtherEncoder {
            warnedOtherEncoder = true       // once, not once per ensemble member
            standardErrorWrite(Data("warning: \(store.path): its sentence vectors were made with encoder.max_tokens \(id.maxTokens), the checkpoint was trained on vectors of \(meta.spec.encoder.maxTokens) tokens; to score as trained, \(remake)\n".utf8))
        }
    }

    /// A feature store can hold a trial twice (its files a file and a split of it): scored as data, each trial once.
    private func checkOneRowPerTrial(_ rows: [StoredTrial], store: String) throws {
        var first: [String: StoredTrial] = [:]
        for t in rows {
            if let other = first[t.nctid] {
                throw InputError(file: store, "holds trial \(t.nctid) twice, from \(other.source.file) line \(other.source.line) and \(t.source.file) line \(t.source.line): a feature store scored as --data must hold each trial once; featurize the one CSV to score into its own store (cladmop featurize --data FILE.csv --output FILE.store), or give that CSV as --data")
            }
            first[t.nctid] = t
        }
    }
}

/// Scores every row of `csv` with a checkpoint: fine-tuned -> head probability; pretraining -> zero-shot
/// sigmoid of the InfoNCE logit (`ZeroShotScorer`). One scorer interface (`TrialScorer`) and one sharded loop (`scoreTrials`).
/// A fine-tuned ensemble (`finetune.ensemble`) is scored by the mean of its members' probabilities, with the
/// threshold its run chose on validation from that mean.
///
/// `outOfFold`: a cross-fitted run (`finetune.folds`) scores each trial with the one member that did not train on it
/// (RUN/folds.csv; with R partitions the mean of the R such members), with the threshold chosen on those out-of-fold
/// scores; every trial of `csv` must be in a fold.
///
/// `labels`: `.optional` scores trials without a label (predict); featurizing `csv` then accepts an empty label field
/// or no label column. The caller that needs labels reads them with `requireLabels`.
public func scoreCSV(checkpoint: String, csv: String, spec: RunSpec, comm: Communicator, outOfFold: Bool = false,
                     labels: LabelRequirement = .required, retrieval: Bool = false, log: @escaping (String) -> Void) throws -> ScoredCSV {
    var pretrained: [String]?
    var scored = try scoreCSVModels(checkpoint: checkpoint, csv: csv, spec: spec, comm: comm, outOfFold: outOfFold, labels: labels,
                                    retrieval: retrieval, log: log, pretrainedTrials: &pretrained)
    try requireFiniteOutputs(scored.scores.map(Float.init), width: 1, nctids: scored.trials.map(\.nctid), what: "scores", checkpoint: checkpoint, csv: csv)
    if let pretrained = pretrained.map(Set.init) {
        let count = scored.trials.filter { pretrained.contains($0.nctid) }.count
        scored.sctTrials = count
        if comm.isRoot && count > 0 {
            standardErrorWrite(Data(("warning: \(count) of the \(scored.trials.count) trials of \(csv) were in the SCT corpus that "
                + "\(checkpoint)'s pretraining trained or validated on (successful trials, recorded in its pretraining checkpoint): their scores are "
                + "not out of sample (exclude " + (FeatureStore.startsWithMagic(csv) ? "the CSVs the store was featurized from" : "the file")
                + " from SCT with data.exclude_csvs to report on it)\n").utf8))
        }
    }
    return scored
}

/// The most successful trials zero-shot retrieval ranks (`scoreCSV(retrieval: true)`).
public let retrievalTrialsLimit = 20_000

/// `scoreCSV` without the SCT count; `pretrainedTrials`: the scoring checkpoint's (the first member's of an ensemble).
private func scoreCSVModels(checkpoint: String, csv: String, spec: RunSpec, comm: Communicator, outOfFold: Bool,
                            labels: LabelRequirement, retrieval: Bool, log: @escaping (String) -> Void,
                            pretrainedTrials: inout [String]?) throws -> ScoredCSV {
    let checkpoint = runFolder(named: checkpoint)
    let ensemble = try ensembleMembers(checkpoint)
    // Ranks that found another ensemble (or none) behind the same path would loop over other members.
    try requireAgreement([("--checkpoint \(checkpoint) (its best.json)", ensemble.map { "\($0.members.count) \($0.threshold) \($0.partitions) \($0.foldsChecksum ?? "")" } ?? "one model")],
                         comm: comm, what: "checkpoints")
    let stall = StallPolicy(stallTimeout: spec.train.stallTimeout)
    if let ensemble {
        // Every member the run trained (finetune.folds x finetune.ensemble), as its first member's specification says:
        // a list edited short would score an ensemble the run never chose, and --out-of-fold would misread folds.csv.
        let firstPath = try resolveCheckpointJSON(ensemble.members[0])
        let firstMeta = try Checkpoints.load(jsonPath: firstPath).0
        guard firstMeta.kind == .finetune else {
            throw InputError(file: checkpoint + "/best.json", "member \(ensemble.members[0]) is not a fine-tuned checkpoint")
        }
        let f = firstMeta.spec.finetune
        let trained = f.folds >= 2 ? f.folds * f.ensemble : f.ensemble
        guard trained == ensemble.members.count else {
            throw InputError(file: checkpoint + "/best.json", "key \"members\" lists \(ensemble.members.count) member(s), but \(firstPath) was fine-tuned as one of \(trained) (finetune.folds \(f.folds), finetune.ensemble \(f.ensemble)): list every member the run wrote (members/1 ... members/\(trained))")
        }
    }
    var foldOf: [String: (folds: [Int], label: Int)] = [:]
    if outOfFold {
        guard let ensemble else {
            if RunLayout.isUnfinished(checkpoint) {
                throw InputError(file: checkpoint, "is a run folder without best.json: its run did not finish (fine-tuning writes best.json, with the "
                                 + "members that --out-of-fold scores with, when it ends; start it again with --overwrite)")
            }
            if RunLayout.isPretrainingRun(checkpoint) {
                throw InputError(file: checkpoint, "is a pretraining run folder; --out-of-fold needs a run fine-tuned with finetune.folds (Launch/finetune, cladmop finetune)")
            }
            throw InputError(file: checkpoint, "is not a fine-tuned ensemble run folder (a best.json with members); --out-of-fold needs a run fine-tuned with finetune.folds")
        }
        foldOf = try readFolds(checkpoint + "/folds.csv", members: ensemble.members.count, partitions: ensemble.partitions,
                               checksum: ensemble.foldsChecksum)
        let named = Set(foldOf.values.flatMap(\.folds))
        guard named == Set(1...ensemble.members.count) else {
            throw InputError(file: checkpoint + "/folds.csv", "names folds \(named.sorted()), the run has \(ensemble.members.count) members; --out-of-fold needs one fold per member")
        }
    }
    if let ensemble {
        return try scoreEnsemble(ensemble, checkpoint: checkpoint, csv: csv, spec: spec, comm: comm, outOfFold: outOfFold, foldOf: foldOf,
                                 labels: labels, stall: stall, log: log, pretrainedTrials: &pretrainedTrials)
    }
    return try scoreOneModel(checkpoint: checkpoint, csv: csv, spec: spec, comm: comm, labels: labels, retrieval: retrieval, stall: stall,
                             log: log, pretrainedTrials: &pretrainedTrials)
}

/// `scoreCSVModels` of an ensemble run: the mean probability of its members at the ensemble's threshold or, `outOfFold`,
/// each trial's mean over the members that held out its fold (`foldOf`: folds.csv read and checked).
private func scoreEnsemble(_ ensemble: EnsembleMembers, checkpoint: String, csv: String, spec: RunSpec, comm: Communicator, outOfFold: Bool,
                           foldOf: [String: (folds: [Int], label: Int)], labels: LabelRequirement, stall: StallPolicy,
                           log: @escaping (String) -> Void, pretrainedTrials: inout [String]?) throws -> ScoredCSV {
    var sum: [Double] = [], scored: [Int] = [], trials: [StoredTrial] = [], first: OutcomeHeadSpec?
    var novel: [Bool] = [], seen = Set<String>()
    var chose: [Bool] = []              // out of fold: whether a member that scored the trial trained or selected on it
    var trained: Set<String>? = []      // what any member trained or selected on (nil: a member does not record it)
    var inputs: ScoringInputs?          // the tree and the store, read for the first member
    for (k, member) in ensemble.members.enumerated() {
        let loaded = try LoadedCheckpoint(member, comm: comm)
        if k == 0 { pretrainedTrials = loaded.pretrainedTrials }       // the members share their pretrained base
        guard let outcome = loaded.outcome, let head = loaded.meta.head else {
            throw InputError(file: checkpoint + "/best.json", "member \(member) is not a fine-tuned checkpoint")
        }
        if let first, first.trainFile != head.trainFile || first.validFile != head.validFile {
            throw InputError(file: checkpoint + "/best.json", "member \(member) was fine-tuned on \(head.trainFile) / \(head.validFile), the first member on \(first.trainFile) / \(first.validFile)")
        }
        if outOfFold && head.validFile != "out of fold" {     // before any featurizing of --data
            throw InputError(file: checkpoint + "/best.json", "member \(member) was not fine-tuned out of fold (it selected on \(head.validFile)); --out-of-fold needs a run fine-tuned with finetune.folds")
        }
        // Member k scores the trials of fold k: the member that held that fold out (recorded since version 6).
        if outOfFold, let fold = head.heldOutFold, fold != k + 1 {
            throw InputError(file: checkpoint + "/best.json", "member \(k + 1) of \"members\" (\(member)) held out fold \(fold) of folds.csv, not fold \(k + 1): the members' folders or the list were reordered, and --out-of-fold would score trials with members that trained on them")
        }
        let (rows, builder) = try loaded.rows(of: csv, spec: spec, comm: comm, labels: outOfFold ? .required : labels, log: log, inputs: &inputs)
        if outOfFold {
            // Only the trials member k held out (fold k + 1); every trial is in one fold of each partition.
            if first == nil {
                if let missing = rows.first(where: { foldOf[$0.nctid] == nil }) {
                    throw InputError(file: csv, "trial \(missing.nctid) is in no fold of \(checkpoint)/folds.csv; --out-of-fold scores only trials the run was fine-tuned on")
                }
                if let other = rows.first(where: { foldOf[$0.nctid]?.label != $0.label }) {
                    throw InputError(file: csv, "trial \(other.nctid) has label \(other.label.map(String.init) ?? "(none)"), \(checkpoint)/folds.csv says \(foldOf[other.nctid]!.label): not the data the run was fine-tuned on")
                }
                sum = [Double](repeating: 0, count: rows.count); scored = [Int](repeating: 0, count: rows.count)
                novel = [Bool](repeating: false, count: rows.count); chose = novel
            }
            let held = rows.indices.filter { foldOf[rows[$0].nctid]!.folds.contains(k + 1) }
            let scores = scoreTrials(held.map { rows[$0] }, scorer: outcome, builder: builder, comm: comm, arena: ActivationArena(), stall: stall)
            let known = Set(head.trainingDiseaseSets)
            // A member selected on its fold's trials but its report trials (`Finetuner.reportTrials`), which its
            // trainedTrials leave out; a member that does not record them selected on all of them.
            let selectedOn = head.trainedTrials.map(Set.init)
            // New disease: in no training set of the members that scored the trial.
            for (i, s) in zip(held, scores) {
                sum[i] += s; novel[i] = (scored[i] == 0 || novel[i]) && !known.contains(diseaseSet(rows[i])); scored[i] += 1
                chose[i] = chose[i] || (selectedOn?.contains(rows[i].nctid) ?? true)
            }
        } else {
            let scores = scoreTrials(rows, scorer: outcome, builder: builder, comm: comm, arena: ActivationArena(), stall: stall)
            if first == nil { sum = scores } else { for i in sum.indices { sum[i] += scores[i] } }
            seen.formUnion(head.trainingDiseaseSets)     // the ensemble has seen what any member trained on
        }
        if first == nil { first = head; trials = rows }
        if let ids = head.trainedTrials { trained?.formUnion(ids) } else { trained = nil }
    }
    if outOfFold {
        let per = ensemble.partitions
        if comm.isRoot {
            log("scoring: out of fold: each of \(trials.count) trials scored by \(per == 1 ? "the one" : "the mean of the \(per)") of \(ensemble.members.count) members that did not train on it, threshold \(String(format: "%.3f", ensemble.threshold))")
        }
        // A trial of a fold selected the epoch of the member(s) that scored it, and with the other out-of-fold
        // scores set the threshold: in-sample, unless the run was told to report it (finetune --report-trials).
        let selecting = chose.filter { $0 }.count
        if comm.isRoot && selecting > 0 {
            standardErrorWrite(Data(("warning: \(selecting) of the \(trials.count) trials of \(csv) selected the epochs of the members of \(checkpoint) "
                + "that scored them and set its threshold: their out-of-fold figures are optimistic, not a held-out test (finetune --report-trials "
                + "keeps the trials to report out of selection)\n").utf8))
        }
        return ScoredCSV(trials: trials, scores: zip(sum, scored).map { $0 / Double($1) }, threshold: ensemble.threshold, newDisease: novel,
                         inSample: selecting)
    }
    if comm.isRoot { log("scoring: ensemble of \(ensemble.members.count) members (mean probability), threshold \(String(format: "%.3f", ensemble.threshold))") }
    // Scored on trials it was fine-tuned on: in-sample scores, said (by the members' records, else by folds.csv).
    if let trained {
        let inSample = trials.filter { trained.contains($0.nctid) }.count
        if comm.isRoot { warnInSample(inSample, of: trials.count, csv: csv, checkpoint: checkpoint, foldHint: ensemble.foldsChecksum != nil) }
        return ScoredCSV(trials: trials, scores: sum.map { $0 / Double(ensemble.members.count) }, threshold: ensemble.threshold,
                         newDisease: trials.map { !seen.contains(diseaseSet($0)) }, inSample: inSample)
    }
    if comm.isRoot, ensemble.foldsChecksum != nil,
       let folds = try? readFolds(checkpoint + "/folds.csv", members: ensemble.members.count, partitions: ensemble.partitions,
                                  checksum: ensemble.foldsChecksum) {
        let inSample = trials.filter { folds[$0.nctid] != nil }.count
        if inSample > 0 {
            standardErrorWrite(Data(("warning: \(inSample) of the \(trials.count) trials of \(csv) trained members of \(checkpoint) "
                + "(its folds.csv): the ensemble's scores of them are in-sample; --out-of-fold scores each by the members that held it out\n").utf8))
        }
    }
    return ScoredCSV(trials: trials, scores: sum.map { $0 / Double(ensemble.members.count) }, threshold: ensemble.threshold,
                     newDisease: trials.map { !seen.contains(diseaseSet($0)) })
}

/// `scoreCSVModels` of one checkpoint: a fine-tuned model at its threshold, or a pretrained one zero-shot (the
/// pair-matching score, the F1-best threshold on these trials, and retrieval among their successful trials).
private func scoreOneModel(checkpoint: String, csv: String, spec: RunSpec, comm: Communicator, labels: LabelRequirement, retrieval: Bool,
                           stall: StallPolicy, log: @escaping (String) -> Void, pretrainedTrials: inout [String]?) throws -> ScoredCSV {
    let loaded = try LoadedCheckpoint(checkpoint, comm: comm)
    pretrainedTrials = loaded.pretrainedTrials
    if comm.isRoot, loaded.outcome == nil, let warning = unfinishedPretrainingWarning(checkpoint) {
        standardErrorWrite(Data((warning + "\n").utf8))
    }
    let (trials, builder) = try loaded.rows(of: csv, spec: spec, comm: comm, labels: labels, log: log)
    let arena = ActivationArena()
    if let outcome = loaded.outcome, let head = loaded.meta.head {
        let known = Set(head.trainingDiseaseSets)
        let inSample = head.trainedTrials.map { Set($0) }.map { ids in trials.filter { ids.contains($0.nctid) }.count }
        if comm.isRoot, let inSample { warnInSample(inSample, of: trials.count, csv: csv, checkpoint: checkpoint, foldHint: false) }
        return ScoredCSV(trials: trials, scores: scoreTrials(trials, scorer: outcome, builder: builder, comm: comm, arena: arena, stall: stall),
                         threshold: head.threshold, newDisease: trials.map { !known.contains(diseaseSet($0)) }, inSample: inSample)
    }
    let scores = scoreTrials(trials, scorer: ZeroShotScorer(model: loaded.model, normalize: loaded.meta.spec.loss.normalize), builder: builder, comm: comm, arena: arena, stall: stall)
    // Zero-shot: the F1-best threshold on these trials; 0.5 when some have no label (predict does not use it).
    let known = trials.compactMap(\.label)
    var scored = ScoredCSV(trials: trials, scores: scores, threshold: known.count == trials.count ? Metrics.bestF1Threshold(scores, known) : 0.5,
                           newDisease: nil)
    // Retrieval among the successful trials, the pairs pretraining contrasts, embedded and ranked as its validation does
    // (every rank ranks all of them: O(n^2) work, a minute at 20,000 on one core; beyond that it is left out, said).
    let successful = trials.filter { $0.label == 1 }
    if retrieval && !(2...retrievalTrialsLimit).contains(successful.count) {
        if comm.isRoot {
            log(successful.count < 2 ? "retrieval: not computed: \(csv) holds \(successful.count) successful trial(s); ranking needs at least 2"
                : "retrieval: not computed over the \(successful.count) successful trials of \(csv) (more than \(retrievalTrialsLimit): its O(n^2) "
                    + "ranking would take long); evaluate a subset of them for it")
        }
    } else if retrieval {
        let watchdog = Watchdog.ofPeers(stall, comm: comm, activity: "scoring")
        defer { watchdog.stop() }
        let pretraining = loaded.meta.spec
        scored.retrieval = embedAndCompare(successful, builder: builder, model: loaded.model, comm: comm, arena: arena, chunk: 64,
                                           normalize: pretraining.loss.normalize, tileRows: pretraining.train.lossTileRows, progress: { watchdog.beat() })
    }
    return scored
}

/// A fine-tuned ensemble run's members (checkpoint paths), threshold, fold partitions and folds.csv checksum.
public typealias EnsembleMembers = (members: [String], threshold: Double, partitions: Int, foldsChecksum: String?)

/// The members of a fine-tuned ensemble run (its best.json's "members", resolved against the run folder) and the
/// ensemble's threshold, fold partitions (1 when absent) and folds checksum; nil when `path` is not a run folder whose
/// best.json lists members.
public func ensembleMembers(_ path: String) throws -> EnsembleMembers? {
    var isDir: ObjCBool = false
    let file = path + "/best.json"
    try requireResolvableLink(file, what: "the run's best.json")
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue,
          FileManager.default.fileExists(atPath: file) else { return nil }
    let best = try BestJSON.read(file)
    guard let members = best.members, let threshold = best.threshold else { return nil }
    // The same checkpoint under two spellings ("members/1", its .json twin, ".") counts twice as well.
    let full = members.map { $0.hasPrefix("/") ? $0 : path + "/" + $0 }
    let resolved = full.map { m in resolvedPath((try? resolveCheckpointJSON(m)) ?? m) }
    for (i, r) in resolved.enumerated() {
        if let j = resolved[..<i].firstIndex(of: r) {
            throw InputError(file: file, "key \"members\" lists one checkpoint twice (\(members[j]) and \(members[i]) are both \(r)); each member is one checkpoint")
        }
    }
    // Runs written before repeated cross-fitting have no partitions, and before the checksum none (their folds.csv is
    // checked for its shape only).
    return (full, threshold, best.partitions ?? 1, best.foldsChecksum)
}

/// The checksum of a cross-fitted run's fold assignment (best.json `folds_checksum`): over its `nctid,fold,label` lines
/// sorted, so a folds.csv with the same assignment in another order or with other line endings checks the same.
public func foldsChecksum(_ lines: [(nctid: String, fold: Int, label: Int)]) -> String {
    let text = lines.map { "\($0.nctid),\($0.fold),\($0.label)\n" }.sorted().joined()
    return String(format: "%016llx", Array(text.utf8).withUnsafeBytes { checksum64($0) })
}

/// RUN/folds.csv of a cross-fitted run (`nctid,fold,label`, folds 1 ... members): NCT id -> (the members that held it
/// out, label). A run of R `partitions` (best.json; `finetune.ensemble` with `finetune.folds`) lists each trial R times,
/// once in each partition's block of members / R folds.
func readFolds(_ path: String, members: Int, partitions: Int, checksum: String?) throws -> [String: (folds: [Int], label: Int)] {
    guard FileManager.default.fileExists(atPath: path) else {
        throw InputError(file: path, "missing; --out-of-fold needs a run fine-tuned with finetune.folds (which writes it)")
    }
    let records = try readCSV(path: path)
    guard records.first?.fields == ["nctid", "fold", "label"] else { throw InputError(file: path, "line 1: expected the header nctid,fold,label") }
    let perPartition = members / partitions      // ensembleMembers checked that partitions divides members
    var folds: [String: (folds: [Int], label: Int)] = [:]
    var order: [String] = []
    for r in records.dropFirst() {
        guard r.fields.count == 3, !r.fields[0].isEmpty, r.fields[0].count <= 64, let k = Int(r.fields[1]), (1...members).contains(k),
              let label = Int(r.fields[2]), label == 0 || label == 1 else {
            throw InputError(file: path, "line \(r.line): expected nctid (a trial id of at most 64 characters), a fold in 1...\(members) and a label 0 or 1")
        }
        if let known = folds[r.fields[0]] {
            guard known.label == label else { throw InputError(file: path, "line \(r.line): \(r.fields[0]) has label \(label) here and \(known.label) on an earlier line") }
            guard !known.folds.contains(where: { ($0 - 1) / perPartition == (k - 1) / perPartition }) else {
                throw InputError(file: path, "line \(r.line): \(r.fields[0]) is in two folds of partition \((k - 1) / perPartition + 1) (\(perPartition) folds each, \(partitions) partition(s)); each trial is in exactly one fold of each partition")
            }
            folds[r.fields[0]]!.folds.append(k)
        } else {
            folds[r.fields[0]] = ([k], label); order.append(r.fields[0])
        }
    }
    guard !order.isEmpty else { throw InputError(file: path, "lists no trials; --out-of-fold needs the folds finetune wrote") }
    if let short = order.first(where: { folds[$0]!.folds.count != partitions }) {
        throw InputError(file: path, "\(short) is in \(folds[short]!.folds.count) fold(s), the run has \(partitions) partition(s) of \(perPartition) folds; each trial is in exactly one fold of each partition")
    }
    // A folds.csv of the same shape from another run (another seed) would pass the checks above and score trials with
    // members that trained on them.
    if let checksum, foldsChecksum(order.flatMap { id in folds[id]!.folds.map { (id, $0, folds[id]!.label) } }) != checksum {
        throw InputError(file: path, "is not the fold assignment this run was fine-tuned with (best.json's folds_checksum differs): another run's or an edited folds.csv would score trials with members that trained on them")
    }
    return folds
}

nonisolated(unsafe) private var warnedOtherEncoder = false

/// A line on stderr (once per process: an ensemble's members share the store) when `store`'s sentence vectors are not
/// the kind `what` was trained on: another encoder (`trainedOn`, a checkpoint's `storeIdentity`: folder name, files,
/// precision), another `encoder.max_tokens`, or a model pretrained on a synthetic store. A warning, not an error:
/// scoring a model with another precision's features, or fine-tuning a synthetic pretraining, can be what the user wants.
public func warnIfOtherEncoder(store: FeatureStore, trainedOn: String, trainedMaxTokens: Int, what: String) {
    guard !warnedOtherEncoder else { return }
    let id = store.identity
    let message: String
    if trainedOn == "synthetic" {
        guard id.encoder != "synthetic" else { return }
        message = "\(what) was pretrained on a synthetic store (random sentence vectors), not on the vectors of \(id.encoder)"
    } else if id.encoder != trainedOn {
        message = "its sentence vectors come from the encoder \(id.encoder), \(what) was trained on those of \(trainedOn); set encoder.model_dir and encoder.precision to the ones it was trained with"
    } else if id.maxTokens != trainedMaxTokens {
        message = "its sentence vectors were made with encoder.max_tokens \(id.maxTokens), \(what) was trained on vectors of \(trainedMaxTokens) tokens; set encoder.max_tokens=\(trainedMaxTokens)"
    } else {
        return
    }
    warnedOtherEncoder = true
    standardErrorWrite(Data("warning: \(store.path): \(message)\n".utf8))
}
