import Communication
import Config
import Foundation
import Model
import NN
import Reporting
import Support
import TrialData

/// Sorted, joined ICD codes of a trial: its disease combination.
public func diseaseSet(_ t: StoredTrial) -> String { Set(t.icd.joined()).sorted().joined(separator: "|") }

/// A pretraining checkpoint to fine-tune from, read and verified once (`Checkpoints.load`) before any input is
/// featurized.
public struct PretrainedBase {
    public let jsonPath: String
    public let meta: CheckpointMeta
    public let tensors: SafetensorsFile

    public init(_ checkpoint: String) throws {
        jsonPath = try resolveCheckpointJSON(checkpoint)
        (meta, tensors) = try Checkpoints.load(jsonPath: jsonPath)
        guard meta.kind == .pretrain else { throw InputError(file: jsonPath, "is a \(meta.kind) checkpoint; --pretrained needs a pretraining checkpoint") }
    }

    /// The keys that fine-tuning takes from the pretrained checkpoint instead of its own configuration: the model
    /// (model.*), the loss it was pretrained with (loss.*: its logit scale) and the input space's limits.
    public static func isFixedByCheckpoint(_ key: String) -> Bool {
        key.hasPrefix("model.") || key.hasPrefix("loss.")
            || ["data.max_sentences", "data.max_mol_tokens", "data.max_molecules", "data.max_codes"].contains(key)
    }

    /// The keys of `spec` fixed by this checkpoint (`isFixedByCheckpoint`) whose values differ from the ones it was
    /// pretrained with; the fine-tuning run records the checkpoint's values instead (config.yaml, its checkpoints' spec).
    public func fixedKeys(differingFrom spec: RunSpec) -> [CheckpointMeta.TrainingIdentity.Difference] {
        CheckpointMeta.trainingIdentity(meta.spec).changedKeys(from: CheckpointMeta.trainingIdentity(spec))
            .filter { Self.isFixedByCheckpoint($0.key) }
    }

    /// `config` and `spec` with this checkpoint's values of the keys it fixes, and what to say about the values replaced:
    /// a warning for those a `--set` gave (no effect), a line for the others (the configuration file's or defaults).
    public func adoptFixedKeys(_ config: inout Config, _ spec: inout RunSpec) throws -> [String] {
        let fixed = fixedKeys(differingFrom: spec)
        guard !fixed.isEmpty else { return [] }
        for d in fixed { try config.set(d.key, yamlText: d.checkpoint, origin: jsonPath) }
        spec = try RunSpec(config)
        let given = fixed.filter { config.overriddenKeys.contains($0.key) }, others = fixed.filter { !given.contains($0) }
        func shown(_ ds: [CheckpointMeta.TrainingIdentity.Difference]) -> String {
            ds.map { "\($0.key) = \($0.checkpoint) (this configuration: \($0.now))" }.joined(separator: ", ")
        }
        return (given.isEmpty ? [] : ["warning: --set \(given.map(\.key).joined(separator: ", ")): no effect; the pretrained checkpoint "
                                      + "\(jsonPath) fixes model.*, loss.* and data.max_*: \(shown(given))"])
            + (others.isEmpty ? [] : ["finetune: \(shown(others)) from the pretrained checkpoint, which fixes model.*, loss.* and data.max_*; "
                                      + "config.yaml and the run's checkpoints record its values"])
    }
}

/// PEFT fine-tuning on one phase (SPEC 6): frozen pretrained model, LoRA + head, class-weighted BCE,
/// model selection on the validation file (or the latest training trials, or each member's own fold of the two files
/// pooled: `finetune.select_latest`, `finetune.folds`), distributed like pretraining (trainable gradients all-reduced).
/// Auxiliary trials (`--aux`, e.g. the other phases' files) join every member's training after its own trials; they
/// never select an epoch, sit in a fold or set the threshold.
public final class Finetuner {
    let comm: Communicator
    let spec: RunSpec
    let runDir: String
    let log: (String) -> Void
    public let outcome: OutcomeModel
    let builder: BatchBuilder
    let train: [StoredTrial]
    let valid: [StoredTrial]
    /// `finetune.folds` K >= 2: the pooled trials cut into K folds, once per partition (`finetune.ensemble` R of them,
    /// partition r by seed `finetune.seed + r`); member r K + k selects on partitions[r][k]. Empty without folds.
    let partitions: [[[StoredTrial]]]
    /// `--aux` files' trials: every member trains on them; none selects, sits in a fold or sets the threshold.
    let auxiliary: [StoredTrial]
    /// `--report-trials` (with folds): pooled trials whose out-of-fold scores are to be reported. Each trains the
    /// members of the other folds, but its score never selects an epoch or enters the threshold, so the member(s) that
    /// score it out of fold neither trained nor selected on it (their `trainedTrials` leave it out).
    let reportTrials: Set<String>
    let optimizer: Optimizer
    let arena = ActivationArena()
    /// Set while `run` trains: beaten at every step and validation.
    private var watchdog: Watchdog?
    let pretrainedPath: String?
    let pretrainedChecksum: String?
    /// The pretraining checkpoint's tensors file name (kept in RUN/pretrained/ with its JSON: `keepPretrained`).
    let pretrainedTensorsFile: String?
    let pretrainedTensors: SafetensorsFile?
    let storeIdentity: String
    /// The store's encoder weights (`CheckpointMeta.storeEncoderWeights`).
    let storeEncoderWeights: String?
    /// The ICD-10 tree's checksum (`CheckpointMeta.icdHierarchy`).
    let icdHierarchy: String
    /// `finetune --resume auto`: set by `planResume`, which reads the interrupted run's finished members.
    var resuming = false
    /// Those members (0-based index), kept as they are.
    var resumed: [Int: ResumedMember] = [:]
    /// checksum64 of each sentence's vectors met so far (`trainingChecksum`: the members share most sentences).
    var sentenceDigests: [Int: UInt64] = [:]

    /// `pretrained`: nil fine-tunes a randomly initialised DM branch (the ablation). `hierarchy` must give the
    /// pretrained checkpoint's ICD tables (`ICD10Hierarchy.requireTables`, checked by the caller before featurizing).
    /// `reportTrials` (`--report-trials`, needs `finetune.folds`): ids of pooled trials that train but never select
    /// (`Finetuner.reportTrials`); `reportFile` names them in messages.
    public init(spec: RunSpec, comm: Communicator, pretrained: PretrainedBase?, trainFile: String, validFile: String,
                auxFiles: [String], reportTrials: Set<String> = [], reportFile: String? = nil, runDir: String, store: FeatureStore,
                hierarchy: ICD10Hierarchy, log: @escaping (String) -> Void) throws {
        self.spec = spec; self.comm = comm; self.runDir = runDir; self.log = log
        storeIdentity = store.identity.encoder
        storeEncoderWeights = store.identity.encoderWeights
        icdHierarchy = hierarchy.checksum
        let excluded = try spec.data.excludeFile.map { try readExclusionList($0) } ?? []
        // Each rank reads its node's copy of the list: ranks holding other lists would train on other trials.
        if let file = spec.data.excludeFile {
            try requireAgreement([("data.exclude_file = \(file) (its NCT ids)", "\(excluded.count) ids, checksum "
                                   + checksumHex(excluded.sorted().joined(separator: ",")))],
                                 comm: comm, what: "held-out lists (data.exclude_file must be the same file on every node)")
        }
        func rows(_ file: String) throws -> [StoredTrial] {
            let r = store.trials(of: file)
            guard !r.isEmpty else {
                throw InputError(file: store.path, "has no rows of \(URL(fileURLWithPath: file).lastPathComponent); \(FeatureStore.rebuildHint(store.path, sources: spec.data.files + [file]))")
            }
            _ = try requireLabels(r, file: file, purpose: "fine-tuning")     // every trial below has one (`checkedLabel`)
            try checkUniqueNCTIDs(r)      // also when an older store already held the file (the pool is keyed by id)
            return r
        }
        let trainAll = try rows(trainFile)
        let trainKept = trainAll.filter { !excluded.contains($0.nctid) }
        let validAll = try rows(validFile)
        let validKept = validAll.filter { !excluded.contains($0.nctid) }
        let latest = spec.finetune.selectLatest
        // A trial in both files: two labels cannot both be right; and where --valid selects as it is (neither
        // folds nor select_latest), the epoch would be chosen on a trial it trained on.
        let validByID = Dictionary(validKept.map { ($0.nctid, $0) }, uniquingKeysWith: { first, _ in first })
        for t in trainKept {
            guard let v = validByID[t.nctid] else { continue }
            if v.label != t.label {
                throw InputError(file: trainFile, line: t.source.line, "trial \(t.nctid) has label \(t.checkedLabel) here and \(v.checkedLabel) in \(validFile) (line \(v.source.line)); a trial needs one label")
            }
            if latest == 0 && spec.finetune.folds < 2 {
                throw InputError(file: trainFile, line: t.source.line, "trial \(t.nctid) is also in \(validFile) (line \(v.source.line)), which selects the epoch: a trial that selects must not train; remove it from one file, pool the two with finetune.folds, or select on the latest training trials with finetune.select_latest")
            }
        }
        if latest > 0 {
            // Temporal selection: the latest share of the training file (by NCT id, as `cladmop split` orders it)
            // selects; the rest and the validation file train (a trial in both stays out of training).
            let sorted = trainKept.sorted { $0.nctid < $1.nctid }
            let cut = Int((Double(sorted.count) * (1 - latest)).rounded())
            let selecting = Array(sorted[cut...])
            guard !selecting.isEmpty else {
                throw InputError(file: trainFile, "finetune.select_latest = \(latest) of its \(sorted.count) trial(s) (held-out ones removed) selects none; raise it or give more trials")
            }
            let selected = Set(selecting.map(\.nctid))
            train = Array(sorted[..<cut]) + validKept.filter { !selected.contains($0.nctid) }
            valid = selecting
            if comm.isRoot {
                log("finetune: temporal selection (finetune.select_latest \(latest)): the latest \(selecting.count) trials of \(trainFile) select (from \(selecting.first?.nctid ?? "-")), \(cut) earlier ones and \(train.count - cut) of \(validFile) train")
            }
        } else {
            train = trainKept
            valid = validKept
        }
        let k = spec.finetune.folds
        // Cross-fitting: train + valid pooled (a trial in both counts once), cut into K label-stratified folds.
        let inTrain = Set(trainKept.map(\.nctid))
        let pool = trainKept + validKept.filter { !inTrain.contains($0.nctid) }
        if k >= 2 {
            let r = spec.finetune.ensemble
            partitions = try (0..<r).map {
                try Self.stratifiedFolds(pool, count: k, seed: spec.finetune.seed + $0, files: "\(trainFile) + \(validFile)")
            }
            if comm.isRoot {
                let both = trainKept.count + validKept.count - pool.count
                log("finetune: \(k) folds over \(pool.count) trials of \(trainFile) + \(validFile)"
                    + (both > 0 ? " (\(both) trial(s) in both files counted once)" : "")
                    + " (\(partitions[0].map { String($0.count) }.joined(separator: ", "))): member k selects on fold k, trains on the others"
                    + (r > 1 ? "; \(r) partitions (finetune.ensemble), \(r * k) members" : ""))
            }
        } else {
            partitions = []
        }
        // Report trials: pooled ones only (others select nothing anyway); every fold keeps selecting trials of both classes.
        let reporting = reportTrials.intersection(pool.map(\.nctid))
        self.reportTrials = reporting
        if let reportFile, !reportTrials.isEmpty {
            guard k >= 2 else {
                throw InputError(file: reportFile, "--report-trials needs finetune.folds >= 2 (cross-fitting): without folds the trials that select are --valid's (or the latest of --train), all of them")
            }
            for (r, folds) in partitions.enumerated() {
                for (f, fold) in folds.enumerated() {
                    let choosing = fold.filter { !reporting.contains($0.nctid) }
                    let positives = choosing.filter { $0.label == 1 }.count
                    guard positives > 0, positives < choosing.count else {
                        throw InputError(file: reportFile, "leaves fold \(f + 1)\(partitions.count > 1 ? " of partition \(r + 1)" : "") of \(trainFile) + \(validFile) \(choosing.count) selecting trial(s), \(positives) successful: its member's epoch needs selecting trials of both classes (report fewer trials, or use fewer folds)")
                    }
                }
            }
            if comm.isRoot {
                log("finetune: \(reporting.count) trial(s) of \(reportFile) (--report-trials) train the members of the other folds but never select an epoch or set the threshold"
                    + (reportTrials.count > reporting.count ? "; \(reportTrials.count - reporting.count) are in neither \(trainFile) nor \(validFile) (or are held out)" : ""))
            }
        }
        // Auxiliary trials: a trial also in --train or --valid (or in an earlier --aux file) stays where it first
        // appears, so no fold's trial ever trains the member that selects on it.
        var seen = Set(trainKept.map(\.nctid)).union(validKept.map(\.nctid))
        var aux: [StoredTrial] = [], auxRows = 0, auxHeldOut = 0
        for file in auxFiles {
            // The store holds every file (storeContaining), so no rows here means the file has none.
            let r = store.trials(of: file)
            guard !r.isEmpty else { throw InputError(file: file, "has no trial rows; an --aux file needs at least one labelled trial") }
            _ = try requireLabels(r, file: file, purpose: "fine-tuning")
            auxRows += r.count
            let kept = r.filter { !excluded.contains($0.nctid) }
            auxHeldOut += r.count - kept.count
            let added = kept.filter { seen.insert($0.nctid).inserted }
            if comm.isRoot { warnOfUnexcludedTestTrials(added.map(\.nctid), file: file, excludeFile: spec.data.excludeFile, role: "train every member") }
            aux += added
        }
        auxiliary = aux
        if comm.isRoot && !auxFiles.isEmpty {
            log("finetune: \(aux.count) auxiliary trial(s) (\(aux.filter { $0.label == 1 }.count) successful) of \(auxFiles.joined(separator: ", ")) train every member; "
                + "not added: \(auxHeldOut) held out (data.exclude_file), \(auxRows - auxHeldOut - aux.count) repeated or also in \(trainFile) / \(validFile)")
        }
        // Both files need both classes: the class weights divide by each class's count, and the validation
        // metrics that select the epoch (PR-AUC, ROC-AUC) are undefined on one class. With folds only the pool
        // does, and stratifiedFolds has checked that every fold holds both.
        // Under temporal selection both sets come from --train (the selecting one wholly): named as such.
        let sets: [(file: String, which: String, rows: [StoredTrial])] = latest > 0
            ? [(trainFile, "its earlier trials and those of \(validFile), which train,", train),
               (trainFile, "its latest \(valid.count) trials (finetune.select_latest = \(latest)), which select,", valid)]
            : [(trainFile, "", train), (validFile, "", valid)]
        for (file, which, rows) in partitions.isEmpty ? sets : [] {
            let positives = rows.filter { $0.label == 1 }.count
            guard !rows.isEmpty else {
                throw InputError(file: file, "\(which.isEmpty ? "has" : which + " have") no trial left after removing held-out trials (data.exclude_file); fine-tuning and model selection need trials of both classes")
            }
            guard positives > 0, positives < rows.count else {
                throw InputError(file: file, "\(which.isEmpty ? "has" : which + " have") only one class after removing held-out trials (\(positives) successful, \(rows.count - positives) failed); fine-tuning and model selection need both")
            }
        }
        if comm.isRoot && trainKept.count < trainAll.count { log("finetune: \(trainAll.count - trainKept.count) held-out trial(s) removed from \(trainFile)") }
        if comm.isRoot && validKept.count < validAll.count { log("finetune: \(validAll.count - validKept.count) held-out trial(s) removed from \(validFile)") }
        if comm.isRoot {
            let pooled = !partitions.isEmpty || latest > 0     // folds or temporal selection: both files train and select
            for (file, kept, role) in [(trainFile, trainKept, pooled ? "train or select epochs" : "train the model"),
                                       (validFile, validKept, pooled ? "train or select epochs" : "select its epoch")] {
                warnOfUnexcludedTestTrials(kept.map(\.nctid), file: file, excludeFile: spec.data.excludeFile, role: role)
            }
        }
        var modelConfig: ModelConfig
        var space: FeatureSpace
        var tensors: SafetensorsFile?
        if let pretrained {
            let (jsonPath, meta, file) = (pretrained.jsonPath, pretrained.meta, pretrained.tensors)
            if comm.isRoot { warnIfOtherEncoder(store: store, trainedOn: meta.storeIdentity, trainedMaxTokens: meta.spec.encoder.maxTokens,
                                                 what: "the pretrained checkpoint \(jsonPath)") }
            modelConfig = meta.model; space = meta.features; tensors = file
            pretrainedPath = resolvedPath(jsonPath)      // links resolved: RUN/pretrained/ keeps the real file
            pretrainedChecksum = meta.tensorsChecksum
            pretrainedTensorsFile = meta.tensorsFile
        } else {
            // Ablation: the same PEFT on a randomly initialised DM branch (fixed logit scale: it is not used). Its
            // vocabularies come from every trial that trains a member: the pool under folds (in the files' order, the
            // same for every partition), and the auxiliary trials.
            let trainedOn = (partitions.isEmpty ? train : pool) + auxiliary
            let b = try BatchBuilder(store: store, hierarchy: hierarchy,
                                 space: FeatureSpace(trials: trainedOn, data: spec.data, model: spec.model))
            space = b.space
            var loss = spec.loss
            loss.logitScale = .fixed
            modelConfig = try ModelConfig(spec.model, loss: loss, builder: b)
            pretrainedPath = nil; pretrainedChecksum = nil; pretrainedTensorsFile = nil
        }
        if comm.isRoot, let coverage = inputCoverage((partitions.isEmpty ? train + valid : pool) + auxiliary, space: space, what: "fine-tuning inputs") {
            log(coverage.line)
            if let warning = coverage.warning { standardErrorWrite(Data((warning + "\n").utf8)) }
        }
        guard store.dim == modelConfig.encoderDim else {
            throw InputError(file: store.path, "sentence vectors have width \(store.dim), the pretrained model expects \(modelConfig.encoderDim)")
        }
        builder = try BatchBuilder(store: store, hierarchy: hierarchy, space: space)
        let f = spec.finetune
        // A batch never holds more trials than the largest member's training set.
        let batchRows = min(f.batch, (partitions.isEmpty ? train.count : pool.count) + auxiliary.count)
        let pct = Int((latest * 100).rounded())
        let auxNote = auxFiles.isEmpty ? "" : " + auxiliary \(auxFiles.joined(separator: ", ")) (\(auxiliary.count) trials)"
        let head = OutcomeHeadSpec(loraRank: f.loraRank, loraAlpha: Float(f.loraAlpha), loraCross: f.loraCross, loraSelf: f.loraSelf,
                                   headHidden: f.headHidden, threshold: 0.5,
                                   trainFile: (!partitions.isEmpty ? "\(trainFile) + \(validFile) (\(k) folds)"
                                       : latest > 0 ? "\(trainFile) (earliest \(100 - pct) %) + \(validFile)" : trainFile) + auxNote,
                                   validFile: !partitions.isEmpty ? "out of fold" : latest > 0 ? "\(trainFile) (latest \(pct) %)" : validFile,
                                   trainingDiseaseSets: [])     // each member's checkpoint records its own (trainMember)
        let fromScratch = pretrainedPath == nil, ranks = comm
        let memory = { (kept: (floats: Double, keys: String)?) throws in
            try MemoryBudget.require(parameters: MemoryBudget.parameterCount(modelConfig, head: head), rows: (batchRows + ranks.size - 1) / ranks.size,
                                     bytesPerRow: MemoryBudget.activationBytesPerRow(
                                        modelConfig, molTokens: space.maxMolTokens, codes: space.maxCodes, sentences: space.maxSentences),
                                     rowsKey: "finetune.batch = \(f.batch)" + (batchRows < f.batch ? " (capped by the \(batchRows) trials a member trains on)" : "")
                                        + " over \(ranks.size) rank(s)", kept: kept,
                                     hint: kept != nil ? "use fewer finetune.epochs or members, a smaller finetune.head_hidden, or finetune.epoch_selection: member"
                                        : fromScratch ? "use a smaller model (model.*) or finetune.batch" : "use a smaller finetune.batch", comm: ranks)
        }
        _ = try memory(nil)
        pretrainedTensors = tensors
        outcome = try Self.member(model: modelConfig, space: space, spec: head, finetune: f, seed: f.seed, pretrained: tensors)
        // Pooled epoch selection keeps every member's trainable parameters of every epoch (and, without a pretrained
        // model, each member's own frozen ones) until the ensemble's epoch is chosen.
        let members = partitions.isEmpty ? f.ensemble : partitions.count * (partitions.first?.count ?? 1)
        if f.epochSelection == .pooled && members > 1 {
            let trainable = Double(outcome.params.count - outcome.trainableOffset), frozen = Double(outcome.trainableOffset)
            _ = try memory((floats: Double(members) * (Double(f.epochs) * trainable + (fromScratch ? frozen : 0)),
                        keys: "finetune.epoch_selection: pooled keeps \(members) members ("
                            + (partitions.isEmpty ? "finetune.ensemble" : "finetune.ensemble x finetune.folds")
                            + ") x finetune.epochs = \(f.epochs) x \(Int(trainable)) trainable parameters"
                            + (fromScratch ? ", and each member's \(Int(frozen)) frozen ones (no pretrained model)" : "")))
        }
        optimizer = Optimizer(kind: .adamw, params: outcome.params)
    }

    /// Cuts `pool` into `count` folds stratified by label: trials in NCT-id order, shuffled by `seed`, dealt to the folds
    /// class by class (so every fold and every complement holds both classes). Independent of the files' row order.
    static func stratifiedFolds(_ pool: [StoredTrial], count: Int, seed: Int, files: String) throws -> [[StoredTrial]] {
        let sorted = pool.sorted { $0.nctid < $1.nctid }
        var rng = RNG(seed: UInt64(seed) &* 104_729 &+ 17)
        let shuffled = rng.permutation(sorted.count).map { sorted[$0] }
        var folds = [[StoredTrial]](repeating: [], count: count)
        var dealt = 0
        for label in [1, 0] {
            let rows = shuffled.filter { $0.label == label }
            guard rows.count >= count else {
                throw InputError(file: files, "has \(rows.count) \(label == 1 ? "successful" : "failed") trial(s) after removing held-out ones; finetune.folds = \(count) needs at least one per fold")
            }
            for row in rows { folds[dealt % count].append(row); dealt += 1 }
        }
        return folds
    }

    /// One fine-tuning model: head and LoRA initialised from `seed`, the pretrained base restored.
    static func member(model: ModelConfig, space: FeatureSpace, spec: OutcomeHeadSpec, finetune f: FinetuneSpec, seed: Int,
                       pretrained: SafetensorsFile?) throws -> OutcomeModel {
        let m = OutcomeModel(model: model, space: space, spec: spec, seed: UInt64(seed), loraLR: Float(f.loraLR),
                             headLR: Float(f.headLR), weightDecay: Float(f.weightDecay))
        if let pretrained { try Checkpoints.restore(pretrained, into: m.params, optimizer: nil, only: { $0.group == 0 }) }
        return m
    }

    /// Trains, selects the best epoch on validation, writes its checkpoint and `best.json`. Three kinds of ensemble:
    /// - `finetune.ensemble` E > 1 without folds: E members (seeds seed ... seed + E - 1) each into RUN/members/k/, all
    ///   selecting on validation; the F1 threshold is chosen there from the mean of their probabilities.
    /// - `finetune.folds` K >= 2: member k selects on fold k of the pooled files and trains on the other folds;
    ///   RUN/folds.csv records the folds, and the threshold is chosen on the out-of-fold scores (each trial scored by
    ///   the member that did not train on it) by `Metrics.riskAverseF1Threshold` at `finetune.threshold_confidence`.
    /// - both (repeated cross-fitting): R = `finetune.ensemble` partitions of K folds; partition r is cut by seed
    ///   `finetune.seed + r` and its member k starts from seed `finetune.seed + r + k` (exactly the members of a run with
    ///   `finetune.seed + r`), member number r K + k + 1; a trial's out-of-fold score is the mean of the R members that
    ///   did not train on it; best.json records `partitions`.
    /// With `finetune.epoch_selection: pooled` every member keeps the same epoch: the one whose ensemble scores (the
    /// out-of-fold or mean scores above, at that epoch) are best by `finetune.select_metric`.
    public func run() throws {
        let f = spec.finetune
        if resuming && comm.isRoot { try removeUnfinishedWork() }
        // The run keeps its own link to the pretrained checkpoint (RUN/pretrained/), which every checkpoint names (a
        // resumed run's is kept when it is this checkpoint: `removeUnfinishedWork`).
        if comm.isRoot, let pretrainedPath, let pretrainedTensorsFile,
           !(resuming && FileManager.default.fileExists(atPath: runDir + "/pretrained/" + URL(fileURLWithPath: pretrainedPath).lastPathComponent)) {
            _ = try Checkpoints.keepPretrained(pretrainedPath, tensorsFile: pretrainedTensorsFile, checksum: pretrainedChecksum,
                                               in: runDir + "/pretrained", log: log)
        }
        // A rank that stops would leave the others in a collective for ever: the watchdog (train.stall_timeout) ends the
        // job naming it, as in pretraining (started after keepPretrained, a copy where links fail). Progress points: each step and each validation.
        let watchdog = Watchdog(policy: StallPolicy(stallTimeout: spec.train.stallTimeout), comm: comm, activity: "fine-tuning")
        self.watchdog = watchdog
        defer { watchdog.stop(); self.watchdog = nil }
        guard f.ensemble > 1 || !partitions.isEmpty else {
            let trained = try trainMember(outcome, optimizer: optimizer, seed: f.seed, dir: runDir, train: train + auxiliary, valid: valid,
                                          keepEveryEpoch: false)
            _ = try saveMember(trained, epoch: trained.bestEpoch, into: outcome, dir: runDir, pooled: false, heldOutFold: nil)
            return
        }
        // Seed ensemble: every member selects on `valid`, the ensemble's scores are the mean of theirs. Cross-fitted
        // (folds): member k selects on fold k, and each trial's score is the mean of the members that did not train on it
        // (one per partition), in the order of the first partition's folds.
        let foldCount = partitions.first?.count ?? 1
        let count = memberCount
        let selecting = partitions.isEmpty ? valid : partitions[0].flatMap { $0 }
        let index = partitions.isEmpty ? [:] : Dictionary(uniqueKeysWithValues: selecting.enumerated().map { ($0.element.nctid, $0.offset) })
        // Which member selected on (and did not train on) each trial; a trial once per partition: RUN/folds.csv and
        // best.json's folds_checksum.
        let assignment = partitions.enumerated().flatMap { r, folds in
            folds.enumerated().flatMap { k, fold in fold.map { (nctid: $0.nctid, fold: r * foldCount + k + 1, label: $0.checkedLabel) } }
        }
        if comm.isRoot && !partitions.isEmpty {
            let rows = assignment.map { "\($0.nctid),\($0.fold),\($0.label)\n" }
            try writeTextFile(runDir + "/folds.csv", "nctid,fold,label\n" + rows.joined())
        }
        let pooled = f.epochSelection == .pooled
        var trained: [MemberTraining] = []
        var valids: [[StoredTrial]] = []
        var members: [FinetuneSelection] = []
        for m in 0..<count {
            let (r, k, seed, memberTrain, memberValid) = memberSetup(m)
            if let done = resumed[m] {
                // Finished before the interruption (`planResume`): its checkpoint and log stay as they are.
                trained.append(done.training); valids.append(memberValid); members.append(done.selection)
                continue
            }
            if resuming && comm.isRoot && FileManager.default.fileExists(atPath: runDir + "/members/\(m + 1)") {
                if let left = removeTree(runDir + "/members/\(m + 1)") {
                    throw InputError(file: left.path, "cannot remove what the interrupted run left of member \(m + 1) (\(left.reason)), which is trained again")
                }
                log("finetune: --resume auto: member \(m + 1) had not finished: its folder removed, trained again")
            }
            let model = m == 0 ? outcome : try Self.member(model: outcome.model.config, space: outcome.space, spec: outcome.spec,
                                                             finetune: f, seed: seed, pretrained: pretrainedTensors)
            if comm.isRoot {
                let what = partitions.isEmpty ? "ensemble member \(m + 1) of \(count)"
                    : partitions.count == 1 ? "fold \(k + 1) of \(foldCount)" : "partition \(r + 1) of \(partitions.count), fold \(k + 1) of \(foldCount)"
                log("finetune: \(what) (seed \(seed)) -> \(runDir)/members/\(m + 1)")
            }
            let member = try trainMember(model, optimizer: m == 0 ? optimizer : Optimizer(kind: .adamw, params: model.params),
                                         seed: seed, dir: runDir + "/members/\(m + 1)", train: memberTrain, valid: memberValid,
                                         keepEveryEpoch: pooled)
            var kept = member
            if !pooled {
                members.append(try saveMember(member, epoch: member.bestEpoch, into: model, dir: runDir + "/members/\(m + 1)", pooled: false,
                                              heldOutFold: partitions.isEmpty ? nil : m + 1))
                kept.states = [:]      // saved: only its scores are needed below
            }
            trained.append(kept); valids.append(memberValid)
        }
        // The trials whose scores select (pooled) and set the threshold: all but the report trials.
        let chooses = selecting.map { !reportTrials.contains($0.nctid) }
        let labels = zip(selecting, chooses).filter(\.1).map { $0.0.checkedLabel }
        /// The ensemble's scores on the selecting trials when member m keeps epoch epochs[m]: the mean of the seed
        /// ensemble's members, or each trial's mean over the members that did not train on it (cross-fitted).
        func ensembleScores(_ epochs: [Int]) -> [Double] {
            var sum = [Double](repeating: 0, count: selecting.count)
            for (m, member) in trained.enumerated() {
                let memberScores = member.scores[epochs[m] - 1]
                if partitions.isEmpty {
                    for (i, s) in memberScores.enumerated() { sum[i] += s }
                } else {
                    for (t, s) in zip(valids[m], memberScores) { sum[index[t.nctid]!] += s }     // the pool's ids are unique
                }
            }
            return sum.map { $0 / Double(partitions.isEmpty ? count : partitions.count) }
        }
        // Out-of-fold scores: the threshold whose gain over predicting success holds across bootstrap resamples
        // (docs/outcome.md: the F1-best threshold of a few hundred trials lost to all-success on the dev tests).
        func f1Threshold(_ all: [Double]) -> Double {
            let scores = zip(all, chooses).filter(\.1).map(\.0)
            return partitions.isEmpty ? Metrics.bestF1Threshold(scores, labels)
                : Metrics.riskAverseF1Threshold(scores, labels, confidence: f.thresholdConfidence, seed: UInt64(f.seed))
        }
        /// The select_metric value of the ensemble's scores `all` (F1 at `threshold`, else at `f1Threshold(all)`,
        /// computed only for F1).
        func selectionValue(_ all: [Double], threshold: Double? = nil) -> Double {
            let scores = zip(all, chooses).filter(\.1).map(\.0)
            switch f.selectMetric {
            case .prAUC: return Metrics.averagePrecision(scores, labels)
            case .rocAUC: return Metrics.rocAUC(scores, labels)
            case .f1: return Metrics.f1(scores, labels, threshold: threshold ?? f1Threshold(all))
            }
        }
        var epochs = trained.map(\.bestEpoch)
        var pooledValues: [Double]? = nil
        if pooled {
            // One epoch for every member: the first best of the ensemble's scores (a NaN value never wins over a number).
            let byEpoch = (1...f.epochs).map { e in selectionValue(ensembleScores(Array(repeating: e, count: count))) }
            pooledValues = byEpoch
            let chosen = byEpoch.indices.reduce(0) { byEpoch[$1] > byEpoch[$0] || byEpoch[$0].isNaN ? $1 : $0 } + 1
            if comm.isRoot {
                log(String(format: "finetune: pooled epoch selection: %@ %@ by epoch %@; every member keeps epoch %d",
                           partitions.isEmpty ? "mean validation" : "out-of-fold", f.selectMetric.shown,
                           byEpoch.map { String(format: "%.4f", $0) }.joined(separator: ", "), chosen))
            }
            epochs = Array(repeating: chosen, count: count)
            for (m, member) in trained.enumerated() {
                members.append(try saveMember(member, epoch: chosen, into: outcome, dir: runDir + "/members/\(m + 1)", pooled: true,
                                              heldOutFold: partitions.isEmpty ? nil : m + 1))
                watchdog.beat()
            }
        }
        for m in members.indices { members[m].checkpoint = "members/\(m + 1)/" + members[m].checkpoint }
        let scores = ensembleScores(epochs), threshold = f1Threshold(scores), value = selectionValue(scores, threshold: threshold)
        if comm.isRoot {
            var selection = FinetuneSelection(checkpoint: members[0].checkpoint, epoch: members[0].epoch, selectMetric: f.selectMetric.rawValue,
                                              valid: finite(value), threshold: threshold, pretrained: pretrainedPath)
            selection.members = members.map(\.checkpoint)
            selection.memberEpochs = members.map(\.epoch)
            if !partitions.isEmpty {
                selection.partitions = partitions.count
                selection.foldsChecksum = foldsChecksum(assignment)
            }
            // RUN/metrics.jsonl, the run's log as a single model's run has one: every member's records (each with its
            // member number; its own log stays in members/k/), then the ensemble's choice. Before best.json, which
            // makes the run complete.
            let ensemble = EnsembleRecord(members: count, partitions: partitions.isEmpty ? nil : partitions.count, memberEpochs: epochs,
                                          selectMetric: f.selectMetric.rawValue, valid: finite(value), threshold: threshold,
                                          outOfFold: !partitions.isEmpty, pooledByEpoch: pooledValues.map { $0.map(finite) })
            let lines = try trained.enumerated().flatMap { m, member in
                try member.records.map { record in var r = record; r.member = m + 1; return try encodeJSON(r) }
            } + [try encodeJSON(ensemble)]
            try writeFileAtomically(runDir + "/metrics.jsonl") { h in for line in lines { try h.write(contentsOf: line + [0x0A]) } }
            try writeSelection(selection, dir: runDir)
            log(String(format: "finetune: ensemble of %d, %@ %@ %.4f (members %@), F1 threshold %.3f%@", count, partitions.isEmpty ? "valid" : "out-of-fold",
                       f.selectMetric.shown, value,
                       members.map { String(format: "%.4f", $0.valid ?? .nan) }.joined(separator: ", "), threshold,
                       partitions.isEmpty ? "" : String(format: zip(scores, chooses).contains { $0.1 && $0.0 < threshold }
                                                            ? " (gain over all-success in %.0f %% of resamples)"
                                                            : " (no cut gains over all-success in %.0f %% of resamples: every trial predicted successful)",
                                                        100 * f.thresholdConfidence)))
        }
        comm.barrier()
    }

    /// The ensemble's members: `finetune.ensemble` seeds, or partitions x folds when cross-fitted; 1 for a single model.
    var memberCount: Int { partitions.isEmpty ? spec.finetune.ensemble : partitions.count * partitions[0].count }

    /// Member m (0-based) of an ensemble: its partition r and fold k (a seed ensemble's: 0 and m), its seed, and the
    /// trials it trains on and selects its epoch on (a seed ensemble's: every member the same).
    func memberSetup(_ m: Int) -> (r: Int, k: Int, seed: Int, train: [StoredTrial], valid: [StoredTrial]) {
        let foldCount = partitions.first?.count ?? 1
        let (r, k) = partitions.isEmpty ? (0, m) : (m / foldCount, m % foldCount)
        let (memberTrain, memberValid) = partitions.isEmpty ? (train + auxiliary, valid)
            : (partitions[r].enumerated().filter { $0.offset != k }.flatMap(\.element) + auxiliary, partitions[r][k])
        return (r, k, spec.finetune.seed + r + k, memberTrain, memberValid)
    }

    /// The ids a member trained or selected on (its checkpoint's `head.trainedTrials`): its training trials and the
    /// selecting ones that are not report trials.
    func trainedTrials(train: [StoredTrial], valid: [StoredTrial]) -> [String] {
        Set(train.map(\.nctid) + valid.map(\.nctid).filter { !reportTrials.contains($0) }).sorted()
    }

    /// checksum64 (hex) of what a model learns and selects from, in the order it meets them: each training trial, then
    /// each selecting one, with its id, label, phase, ICD codes, SMILES tokens and criteria (each sentence's inclusion
    /// tag and the checksum of its vectors, which a criterion's text, and the batch the encoder met it in, give). A label,
    /// a criterion, a code or the store's vectors changed for --train, --valid or --aux change it (ids alone,
    /// `trainedTrials`, do not show these).
    func trainingChecksum(train: [StoredTrial], valid: [StoredTrial]) -> String {
        let store = builder.store
        var text = ""
        func add(_ t: StoredTrial) {
            text += t.nctid + "|\(t.label.map(String.init) ?? "-")|" + t.phase + "|" + t.icd.map { $0.joined(separator: ",") }.joined(separator: ";")
                + "|" + t.smiles.map { $0.joined(separator: " ") }.joined(separator: ";") + "|"
            for (s, included) in zip(t.sentences, t.inclusion) {
                let digest = sentenceDigests[s] ?? {
                    let d = checksum64(UnsafeRawBufferPointer(start: store.vectors(sentence: s), count: store.levelCount * store.dim * MemoryLayout<Float>.size))
                    sentenceDigests[s] = d
                    return d
                }()
                text += (included ? "+" : "-") + String(digest, radix: 16) + ","
            }
            text += "\n"
        }
        train.forEach(add)
        text += "selecting\n"
        valid.forEach(add)
        return checksumHex(text)
    }

    /// One member's training: per epoch its record, its scores of the validation trials, the select_metric value and
    /// F1-best threshold there, and its trainable parameters (from `kept` on: every epoch's with `keepEveryEpoch`,
    /// else the member's own best epoch's only). The frozen parameters never change while it trains; without a
    /// pretrained model they are the member's own random ones (`frozen`, kept once with `keepEveryEpoch`, whose
    /// members are saved from another member's model).
    struct MemberTraining {
        var records: [FinetuneRecord] = []
        var frozen: [Float]? = nil
        var scores: [[Double]] = []
        var values: [Double] = []
        var thresholds: [Double] = []
        var states: [Int: [Float]] = [:]
        var kept = 0
        var bestEpoch = 0
        /// Adam's step counter at the end of each epoch (epoch e at e - 1): a checkpoint records its own epoch's.
        var optimizerSteps: [Int] = []
        var trainingDiseaseSets: [String] = []
        var trainedTrials: [String] = []
        /// `trainingChecksum` of its trials (best.json's `training_checksum`).
        var trainingChecksum: String? = nil
    }

    /// Trains one model, writing `dir`/metrics.jsonl as it goes; `saveMember` writes the epoch it keeps.
    func trainMember(_ outcome: OutcomeModel, optimizer: Optimizer, seed: Int, dir runDir: String,
                     train: [StoredTrial], valid: [StoredTrial], keepEveryEpoch: Bool) throws -> MemberTraining {
        let p = outcome.params
        comm.broadcast(p.values, count: p.count, root: 0)
        p.setPrecision(agreedTrainingPrecision(spec.train.precision, comm: comm))
        let batchSize = spec.finetune.batch, epochs = spec.finetune.epochs
        let positives = train.filter { $0.label == 1 }.count
        let weights = classWeights(positives: positives, count: train.count)
        // What the member trained or selected on: its report trials (`reportTrials`) are neither.
        let choosing = valid.indices.filter { !reportTrials.contains(valid[$0].nctid) }
        if comm.isRoot {
            log("finetune: \(train.count) training trials (\(positives) successful), \(valid.count) validation"
                + (choosing.count < valid.count ? " (\(choosing.count) select; \(valid.count - choosing.count) --report-trials only scored)" : "")
                + "; \(p.count - outcome.trainableOffset) trainable parameters (LoRA cross \(outcome.spec.loraCross), self \(outcome.spec.loraSelf)), \(comm.size) rank(s)")
        }
        let metrics = comm.isRoot ? try MetricsLog(path: runDir + "/metrics.jsonl", tensorboard: spec.log.tensorboard) : nil
        var member = MemberTraining(kept: outcome.trainableOffset, trainingDiseaseSets: Set(train.map(diseaseSet)).sorted())
        member.trainedTrials = trainedTrials(train: train, valid: valid)
        if comm.isRoot { member.trainingChecksum = trainingChecksum(train: train, valid: valid) }     // rank 0 writes best.json
        // Saved from another member's model (pooled): without a pretrained model its frozen part is this member's own.
        if pretrainedPath == nil && keepEveryEpoch { member.frozen = Array(UnsafeBufferPointer(start: p.values, count: member.kept)) }
        var best = -Double.infinity
        for epoch in 1...epochs {
            var rng = RNG(seed: UInt64(seed) &* 7919 &+ UInt64(epoch))
            let order = rng.permutation(train.count)
            var lossSum = 0.0, batches = 0
            var start = 0
            // Every trial once per epoch, in batches of finetune.batch (the last one smaller) dealt to the ranks as
            // `shard` does: a rank dealt no row (a batch smaller than the world size) adds a zero gradient, so any
            // world size takes the steps of one rank.
            while start < train.count {
                let end = min(start + batchSize, train.count)
                let b = end - start
                let rows = shard(b, rank: comm.rank, of: comm.size).map { train[order[start + $0]] }
                start = end
                // Every rank stops here alike on a non-finite loss or norm (a NaN model would be selected by the
                // share of successes its constant scores give, and predict NaN).
                let loss: Double
                do {
                    loss = try outcomeStep(outcome, rows: rows, globalRows: b, weights: weights, builder: builder, arena: arena,
                                           optimizer: optimizer, maxNorm: Float(spec.train.gradClip), comm: comm)
                } catch let e as TrainingError {
                    // Before any update the LoRA adapters add nothing and the head is freshly drawn: the pretrained
                    // model (or the trials' features) gave the non-finite values, not the fine-tuning rates.
                    // A bad input, then (exit 2, as predict and evaluate refuse such a checkpoint), not a divergence.
                    if epoch == 1 && batches == 0 {
                        if let pretrainedPath {
                            throw InputError(file: pretrainedPath, "fine-tuning \(e) on the first batch of \(runDir), before any update: this pretrained model gives non-finite outputs (the weights of a pretraining that diverged?); fine-tune another pretrained checkpoint")
                        }
                        throw InputError(file: builder.store.path, "fine-tuning \(e) on the first batch of \(runDir), before any update: the freshly drawn model gives non-finite outputs on these trials' features: is the store damaged? featurize it again")
                    }
                    throw TrainingError("fine-tuning \(e) at epoch \(epoch), batch \(batches + 1) of \(runDir): the model diverged; lower finetune.head_lr or finetune.lora_lr and run again with --overwrite (or another --run-dir)", diverged: e.diverged)
                }
                lossSum += loss; batches += 1
                watchdog?.beat()
            }
            let allScores = predict(valid, with: outcome)
            watchdog?.beat()
            let scores = choosing.map { allScores[$0] }, labels = choosing.map { valid[$0].checkedLabel }
            let threshold = Metrics.bestF1Threshold(scores, labels)
            let prAUC = Metrics.averagePrecision(scores, labels), rocAUC = Metrics.rocAUC(scores, labels)
            let f1 = Metrics.f1(scores, labels, threshold: 0.5), f1AtThreshold = Metrics.f1(scores, labels, threshold: threshold)
            let trainLoss = lossSum / Double(max(batches, 1))
            let selected: Double
            switch spec.finetune.selectMetric {
            case .prAUC: selected = prAUC
            case .rocAUC: selected = rocAUC
            case .f1: selected = f1AtThreshold
            }
            let record = FinetuneRecord(epoch: epoch, trainLoss: finite(trainLoss), validPrAuc: finite(prAUC), validRocAuc: finite(rocAUC),
                                        validF1: finite(f1), validF1AtThreshold: finite(f1AtThreshold), threshold: threshold)
            member.records.append(record); member.scores.append(allScores); member.values.append(selected); member.thresholds.append(threshold)
            member.optimizerSteps.append(optimizer.step)
            if comm.isRoot {
                try metrics?.write(record)
                log(String(format: "finetune epoch %d: train loss %.4f, valid PR-AUC %.4f ROC-AUC %.4f F1 %.4f (F1 %.4f at %.3f)%@", epoch,
                           trainLoss, prAUC, rocAUC, f1, f1AtThreshold, threshold, selected > best ? "  best" : ""))
            }
            let state = { Array(UnsafeBufferPointer(start: p.values + member.kept, count: p.count - member.kept)) }
            if selected > best {
                best = selected; member.bestEpoch = epoch
                if !keepEveryEpoch { member.states = [epoch: state()] }
            }
            if keepEveryEpoch { member.states[epoch] = state() }
        }
        return member
    }

    /// Writes the member's checkpoint of `epoch` (its parameters put into `outcome`, whose frozen ones are the
    /// member's), `dir`/best.json and finetune.svg, and returns its selection. `pooled`: the epoch is the ensemble's.
    /// `heldOutFold`: a cross-fitted member's fold number in RUN/folds.csv (`OutcomeHeadSpec.heldOutFold`).
    func saveMember(_ member: MemberTraining, epoch: Int, into outcome: OutcomeModel, dir runDir: String, pooled: Bool,
                    heldOutFold: Int?) throws -> FinetuneSelection {
        guard let state = member.states[epoch] else {
            throw TrainingError("fine-tuning into \(runDir): no epoch had a finite validation \(spec.finetune.selectMetric.shown); nothing to keep")
        }
        let p = outcome.params
        precondition(state.count == p.count - member.kept, "a member's parameters do not fit the model they are saved from")
        state.withUnsafeBufferPointer { (p.values + member.kept).update(from: $0.baseAddress!, count: $0.count) }
        member.frozen?.withUnsafeBufferPointer { p.values.update(from: $0.baseAddress!, count: $0.count) }
        p.refreshLowPrecisionCopy()     // train.precision bf16: the GEMMs' copy follows the restored values
        let metric = spec.finetune.selectMetric.rawValue
        let value = member.values[epoch - 1], threshold = member.thresholds[epoch - 1]
        var selection = FinetuneSelection(checkpoint: "checkpoints/" + Checkpoints.name(step: epoch) + ".safetensors", epoch: epoch,
                                          selectMetric: metric, valid: finite(value), threshold: threshold, pretrained: pretrainedPath)
        selection.trainingChecksum = member.trainingChecksum
        let scores = member.scores[epoch - 1]     // the epoch's state exists (above): so do its scores
        if comm.isRoot, let first = scores.first, scores.allSatisfy({ $0 == first }) {
            // A saturated model (rates too high) scores every trial alike: its metrics are those of a constant guess.
            let loss = member.records[epoch - 1].trainLoss.map { String(format: "%.4g", $0) } ?? "not finite"
            standardErrorWrite(Data(("warning: \(runDir): the selected epoch \(epoch) scores all \(scores.count) validation trials "
                + "alike (\(String(format: "%.6g", first)); training loss \(loss)): the model ranks nothing, its \(spec.finetune.selectMetric.shown) is a "
                + "constant guess's; lower finetune.head_lr or finetune.lora_lr\n").utf8))
        }
        if comm.isRoot {
            var head = outcome.spec
            head.threshold = threshold
            head.trainingDiseaseSets = member.trainingDiseaseSets     // this member's (a fold member's: not its fold)
            head.trainedTrials = member.trainedTrials
            head.heldOutFold = heldOutFold
            var meta = CheckpointMeta(kind: .finetune, step: epoch, epoch: epoch, stepInEpoch: 0, worldSize: comm.size,
                                      globalBatch: spec.finetune.batch, optimizerStep: member.optimizerSteps[epoch - 1],
                                      spec: specAsTrained(spec, computedIn: p.precision),
                                      model: outcome.model.config, features: outcome.space, storeIdentity: storeIdentity,
                                      storeEncoderWeights: storeEncoderWeights, icdHierarchy: icdHierarchy,
                                      metrics: ["valid_\(metric)": value], pretrained: pretrainedPath,
                                      pretrainedChecksum: pretrainedChecksum, head: head)
            if let pretrainedPath {     // RUN/pretrained/ (`run`), from this member's checkpoints/ folder
                meta.pretrainedLink = relativePath(of: self.runDir + "/pretrained/" + URL(fileURLWithPath: pretrainedPath).lastPathComponent,
                                                   from: runDir + "/checkpoints")
            }
            let offset = outcome.trainableOffset
            let base = try Checkpoints.save(dir: runDir + "/checkpoints", meta: meta, params: p, optimizer: nil,
                                            include: { pretrainedPath == nil || $0.offset >= offset })
            precondition(base.hasSuffix("/" + Checkpoints.name(step: epoch)), "checkpoint named \(base)")
            let records = member.records
            func series(_ value: (FinetuneRecord) -> Double?) -> [(Double, Double)] { records.map { (Double($0.epoch), value($0) ?? .nan) } }
            try writePlot(runDir + "/finetune.svg", svgLinePlot(title: "Fine-tuning", xLabel: "epoch", yLabel: "value",
                          series: [PlotSeries("train BCE", series(\.trainLoss)), PlotSeries("valid PR-AUC", series(\.validPrAuc)),
                                   PlotSeries("valid ROC-AUC", series(\.validRocAuc))], xBounds: 0...Double.infinity))
            // Last: best.json makes the member finished (`finetune --resume auto` keeps it as it is).
            try writeSelection(selection, dir: runDir)
            log("finetune: \(pooled ? "kept the ensemble's epoch" : "selected epoch") \(epoch) (valid \(spec.finetune.selectMetric.shown) \(String(format: "%.4f", value))), \(base).safetensors")
        }
        comm.barrier()
        return selection
    }

    func writeSelection(_ selection: FinetuneSelection, dir: String) throws {
        let data = try encodeJSON(selection, pretty: true)
        try writeFileAtomically(dir + "/best.json") { try $0.write(contentsOf: data) }
    }

    /// Success probabilities of `trials` (all ranks take part; every rank gets all scores).
    func predict(_ trials: [StoredTrial], with model: OutcomeModel) -> [Double] {
        scoreTrials(trials, scorer: model, builder: builder, comm: comm, arena: arena)
    }
}

/// best.json of a fine-tuning run: the selected checkpoint and why.
/// An ensemble's (`finetune.ensemble`) names every member's checkpoint in `members` (relative to the run folder);
/// `checkpoint` is then the first member's, and `threshold` / `valid` are the ensemble's: on the mean probability of a
/// seed ensemble, on the out-of-fold scores of a cross-fitted one (the threshold by `finetune.threshold_confidence`).
public struct FinetuneSelection: Codable {
    public var checkpoint: String, epoch: Int, selectMetric: String, valid: Double?, threshold: Double, pretrained: String?
    public var members: [String]? = nil, memberEpochs: [Int]? = nil
    /// A cross-fitted run's fold partitions (`finetune.ensemble` with `finetune.folds`): members / partitions folds
    /// each; folds.csv lists every trial once per partition. Absent: 1 (runs written before repeated cross-fitting).
    public var partitions: Int? = nil
    /// `foldsChecksum` of the run's folds.csv (`--out-of-fold` refuses another assignment). Absent: an older run.
    public var foldsChecksum: String? = nil
    /// A model's (a member's) `Finetuner.trainingChecksum`: what it learnt from, which `finetune --resume auto`
    /// compares before keeping it. Absent in an ensemble's own best.json and in runs written before session 52.
    public var trainingChecksum: String? = nil
    public init(checkpoint: String, epoch: Int, selectMetric: String, valid: Double?, threshold: Double, pretrained: String?) {
        self.checkpoint = checkpoint; self.epoch = epoch; self.selectMetric = selectMetric; self.valid = valid
        self.threshold = threshold; self.pretrained = pretrained
    }
    enum CodingKeys: String, CodingKey {
        case checkpoint, epoch, selectMetric = "select_metric", valid, threshold, pretrained, members, memberEpochs = "member_epochs", partitions, foldsChecksum = "folds_checksum"
        case trainingChecksum = "training_checksum"
    }
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(checkpoint, forKey: .checkpoint); try c.encode(epoch, forKey: .epoch); try c.encode(selectMetric, forKey: .selectMetric)
        try c.encode(valid, forKey: .valid); try c.encode(threshold, forKey: .threshold); try c.encode(pretrained, forKey: .pretrained)
        try c.encodeIfPresent(members, forKey: .members); try c.encodeIfPresent(memberEpochs, forKey: .memberEpochs)
        try c.encodeIfPresent(partitions, forKey: .partitions); try c.encodeIfPresent(foldsChecksum, forKey: .foldsChecksum)
        try c.encodeIfPresent(trainingChecksum, forKey: .trainingChecksum)
    }
}

extension StoredTrial {
    /// The label of a fine-tuning trial: every one passed `requireLabels` when the Finetuner read its file.
    var checkedLabel: Int {
        guard let label else { preconditionFailure("\(nctid) (\(source)) has no label but was read as a fine-tuning trial") }
        return label
    }
}
