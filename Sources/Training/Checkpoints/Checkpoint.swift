import Support
import Config
import Foundation
import Model
import NN

/// Metadata written next to each checkpoint's safetensors file (docs/checkpoints.md). Read back only through
/// `Checkpoints.load`, which validates it like a configuration (`validate(path:)`).
public struct CheckpointMeta: Codable {
    public enum Kind: String, Codable { case pretrain, finetune }
    public var format = "cladmop-checkpoint"
    public var version = CheckpointMeta.currentVersion
    public var kind: Kind
    public var step: Int
    public var epoch: Int
    /// Steps already taken within `epoch` (the sampler position to resume from).
    public var stepInEpoch: Int
    public var worldSize: Int
    public var globalBatch: Int
    /// Hash of the model, loss and data sections of `spec` (what resuming must not change).
    public var configHash: String
    public var optimizerStep: Int
    /// The run specification the checkpoint was trained with.
    public var spec: RunSpec
    public var model: ModelConfig
    public var features: FeatureSpace
    public var storeIdentity: String
    /// The store's `encoderWeights`: the checksum of the text encoder's model.safetensors whose sentence vectors it was
    /// trained on (`storeIdentity` covers that file's header only). Scoring or fine-tuning it with an encoder of other
    /// weights is refused. Absent before version 6 and for a synthetic store.
    public var storeEncoderWeights: String?
    /// Checksum of the ICD-10 tree (data.icd_hierarchy) whose node order gives the rows of its ICD tables
    /// (`ICD10Hierarchy.checksum`): scoring, fine-tuning or resuming it with another tree, also one of the same sizes
    /// in another order, is refused. Absent before version 7.
    public var icdHierarchy: String?
    public var metrics: [String: Double]
    public var tensorsFile = ""
    public var tensorsChecksum = ""
    public var tensorsBytes = 0
    /// Fine-tuning: the pretrained checkpoint this one adds to, and that file's checksum.
    public var pretrained: String?
    public var pretrainedChecksum: String?
    /// Fine-tuning: the run's own hard link (a copy where the file system cannot link) of that checkpoint's JSON,
    /// relative to this file's folder (`../pretrained/step-N.json`; a member's `../../../pretrained/...`). Loading
    /// prefers it to `pretrained`, so a fine-tuned run outlives the pruning, replacement or move of the pretraining
    /// run it came from (`Checkpoints.keepPretrained`). Absent in checkpoints written before it.
    public var pretrainedLink: String?
    /// Pretraining: the best checkpoint so far (by validation loss).
    public var bestCheckpoint: String?
    /// Pretraining: the SCT corpus it was trained on (resume refuses another). Absent in checkpoints before version 4.
    public var corpus: CorpusFingerprint?
    /// Pretraining: the NCT ids of that corpus (its training and validation splits), sorted. Every one is a successful
    /// trial the model was pretrained on: scoring one is not out of sample (`evaluate` counts them, eval.json
    /// `sct_trials`). Absent before version 8.
    public var sctTrials: [String]?
    /// Fine-tuning: the LoRA adapters and head this checkpoint holds, and the decision threshold.
    public var head: OutcomeHeadSpec?
    /// Checksum of every other field (`metadataChecksum()`): an edited metadata file is refused.
    public var metadataChecksum = ""

    /// The checksum of the metadata with this field empty (compact JSON, keys sorted).
    public func computedChecksum() throws -> String {
        var copy = self
        copy.metadataChecksum = ""
        return checksumHex(try encodeJSON(copy))
    }

    /// 3: `pretrainedLink` added (a cladmop that reads only 2 says "unsupported version" instead of taking the new key
    /// for an edit); 4: `corpus` added; 5: `head.trainedTrials` added; 6: `storeEncoderWeights` and `head.heldOutFold`
    /// added; 7: `icdHierarchy` added; 8: `sctTrials` added. Versions 2 to 8 are read.
    public static let currentVersion = 8
    public static let readableVersions = 2...8

    public init(kind: Kind, step: Int, epoch: Int, stepInEpoch: Int, worldSize: Int, globalBatch: Int, optimizerStep: Int,
                spec: RunSpec, model: ModelConfig, features: FeatureSpace, storeIdentity: String, storeEncoderWeights: String?,
                icdHierarchy: String?, metrics: [String: Double], pretrained: String? = nil, pretrainedChecksum: String? = nil,
                bestCheckpoint: String? = nil, corpus: CorpusFingerprint? = nil, sctTrials: [String]? = nil, head: OutcomeHeadSpec? = nil) {
        self.kind = kind; self.step = step; self.epoch = epoch; self.stepInEpoch = stepInEpoch; self.worldSize = worldSize
        self.globalBatch = globalBatch; self.optimizerStep = optimizerStep; self.spec = spec; self.model = model
        self.features = features; self.storeIdentity = storeIdentity; self.storeEncoderWeights = storeEncoderWeights
        self.icdHierarchy = icdHierarchy; self.metrics = metrics; self.pretrained = pretrained
        self.pretrainedChecksum = pretrainedChecksum; self.bestCheckpoint = bestCheckpoint; self.corpus = corpus
        self.sctTrials = sctTrials; self.head = head
        configHash = Self.trainingIdentity(spec).hash
    }

    /// The sections of a specification that a resumed run must keep: model, loss and data.
    public struct TrainingIdentity: Codable, Equatable {
        public var model: ModelSpec, loss: LossSpec, data: DataSpec
        var hash: String {
            checksumHex((try? encodeJSON(self)) ?? Data())
        }

        /// One key whose value differs: its name as in the YAML (`maxCodes` -> `data.max_codes`: every field of the
        /// three sections is a configuration key:
        /// SpecValidationTests.testEveryTrainingIdentityFieldIsAConfigurationKey); each value as JSON text ("none" when absent).
        public struct Difference: Equatable {
            public let key: String, checkpoint: String, now: String
        }

        /// The keys whose values differ, as `section.key: A in the checkpoint, B now` (`self`: the checkpoint's).
        public func differences(from now: TrainingIdentity) -> [String] {
            changedKeys(from: now).map { "\($0.key): \($0.checkpoint) in the checkpoint, \($0.now) now" }
        }

        /// The keys whose values differ (`self`: the checkpoint's), in section order (model, loss, data), then by name.
        public func changedKeys(from now: TrainingIdentity) -> [Difference] {
            func text(_ v: Any?) -> String {
                guard let v, !(v is NSNull) else { return "none" }
                if let d = try? JSONSerialization.data(withJSONObject: v, options: [.fragmentsAllowed, .sortedKeys, .withoutEscapingSlashes]) { return String(decoding: d, as: UTF8.self) }
                return "\(v)"
            }
            let (a, b) = (sections(), now.sections())
            var changed: [Difference] = []
            for section in Self.sectionNames {
                let (x, y) = (a[section] ?? [:], b[section] ?? [:])
                for key in Set(x.keys).union(y.keys).sorted() where text(x[key]) != text(y[key]) {
                    changed.append(Difference(key: Self.yamlKey(section: section, field: key), checkpoint: text(x[key]), now: text(y[key])))
                }
            }
            return changed
        }

        static let sectionNames = ["model", "loss", "data"]
        /// Each section's fields as their JSON encoding has them (camelCase names).
        func sections() -> [String: [String: Any]] {
            let object = (try? encodeJSON(self)).flatMap { try? JSONSerialization.jsonObject(with: $0) as? [String: Any] } ?? [:]
            return object.compactMapValues { $0 as? [String: Any] }
        }
        /// A field's configuration key: camelCase -> snake_case, a run of capitals kept as one word
        /// (data, excludeCSVs -> data.exclude_csvs).
        static func yamlKey(section: String, field: String) -> String {
            var out = "", previous: Character?
            for c in field {
                if c.isUppercase, let p = previous, p.isLowercase || p.isNumber { out += "_" }
                out += c.lowercased(); previous = c
            }
            return section + "." + out
        }
    }
    public static func trainingIdentity(_ spec: RunSpec) -> TrainingIdentity {
        TrainingIdentity(model: spec.model, loss: spec.loss, data: spec.data)
    }

    /// Every value that sizes, divides or positions something, checked; errors name the file and the key.
    public func validate(path: String) throws {
        func require(_ ok: Bool, _ key: String, _ value: Any, _ expected: String) throws {
            guard ok else { throw InputError.invalid(key, value, expected: expected, in: path) }
        }
        try require(step >= 0, "step", step, "a step count >= 0")
        try require(epoch >= 0, "epoch", epoch, "an epoch >= 0")
        try require(stepInEpoch >= 0, "stepInEpoch", stepInEpoch, "a step count >= 0")
        try require(worldSize >= 1, "worldSize", worldSize, "a rank count >= 1")
        try require(globalBatch >= 1, "globalBatch", globalBatch, "a batch size >= 1")
        try require(optimizerStep >= 0, "optimizerStep", optimizerStep, "a step count >= 0")
        try require(tensorsBytes >= 0, "tensorsBytes", tensorsBytes, "a size >= 0")
        try require(!tensorsFile.isEmpty && !tensorsFile.contains("/"), "tensorsFile", tensorsFile, "a file name in the checkpoint's folder")
        // The values resume reads (an early-stopping count becomes an Int: 1e300 would trap).
        for (key, value) in metrics.sorted(by: { $0.key < $1.key }) {
            try require(value.isFinite, "metrics.\(key)", value, "a finite number")
        }
        if let loss = metrics["best_val_loss"] { try require(loss >= 0, "metrics.best_val_loss", loss, "a validation loss >= 0") }
        if let n = metrics["evals_without_improvement"] {
            try require(n >= 0 && n <= 1e9 && n.rounded() == n, "metrics.evals_without_improvement", n, "an integer in [0, 1e9]")
        }
        if let link = pretrainedLink {
            try require(pretrained != nil && !link.hasPrefix("/") && link.hasSuffix(".json"), "pretrainedLink", link,
                        "a relative path to a checkpoint's .json, beside a recorded pretrained checkpoint")
        }
        try spec.validate(origin: "\(path): spec")
        try model.validate(origin: path)
        let f = features
        try require(f.icdDepth == model.icdTableSizes.count, "features.icdDepth", f.icdDepth,
                    "the number of ICD tables of the model (\(model.icdTableSizes.count))")
        try require(f.smilesVocabulary.count == model.molVocab, "features.smilesVocabulary", "\(f.smilesVocabulary.count) tokens",
                    "model.molVocab = \(model.molVocab) tokens")
        try require(f.maxMolecules == model.maxMolecules, "features.maxMolecules", f.maxMolecules, "model.maxMolecules = \(model.maxMolecules)")
        try require((1...512).contains(f.maxSentences), "features.maxSentences", f.maxSentences, "an integer in [1, 512]")
        try require((1...4096).contains(f.maxMolTokens), "features.maxMolTokens", f.maxMolTokens, "an integer in [1, 4096]")
        try require((1...256).contains(f.maxCodes), "features.maxCodes", f.maxCodes, "an integer in [1, 256]")
        try require(configHash == Self.trainingIdentity(spec).hash, "configHash", configHash,
                    "the hash of the stored spec's model, loss and data sections (\(Self.trainingIdentity(spec).hash)); the metadata was edited")
        if let ids = sctTrials {
            try require(kind == .pretrain, "sctTrials", "present", "none in a fine-tuning checkpoint")
            try require(ids.allSatisfy { !$0.isEmpty && $0.utf8.count <= 64 } && zip(ids, ids.dropFirst()).allSatisfy { $0 < $1 },
                        "sctTrials", "\(ids.count) ids", "distinct NCT ids of at most 64 bytes, sorted")
            if let c = corpus {
                try require(ids.count == c.train + c.validation, "sctTrials", "\(ids.count) ids", "the corpus's \(c.train) + \(c.validation) trials")
            }
        }
        switch kind {
        case .pretrain:
            try require(head == nil, "head", "present", "none in a pretraining checkpoint")
        case .finetune:
            guard let head else { throw InputError(file: path, "head: missing (a fine-tuning checkpoint describes its LoRA adapters and head)") }
            try head.validate(path: path)
        }
    }
}

/// Checkpoint files: `DIR/step-00000120.safetensors` (parameters by name, optimizer moments as
/// `optimizer.m.NAME` / `optimizer.v.NAME`) and `DIR/step-00000120.json` (CheckpointMeta). Each file is
/// written to a temporary name, fsynced and renamed, the JSON last: a checkpoint whose JSON exists and whose
/// tensors match its recorded checksum is complete.
public enum Checkpoints {
    public static func name(step: Int) -> String { String(format: "step-%08d", step) }

    public static func fileChecksum(_ path: String) throws -> (String, Int) {
        let f = try MappedFile(path: path)
        return (checksumHex(f.bytes), f.bytes.count)
    }

    /// Writes parameters (only those `include` accepts) and optionally the optimizer moments.
    public static func save(dir: String, meta: CheckpointMeta, params: ParameterArena, optimizer: Optimizer?, faults: FaultPlan = .none,
                            include: (ParameterArena.Entry) -> Bool = { _ in true }) throws -> String {
        try makeDirectory(dir, option: "the checkpoint folder")
        let base = dir + "/" + name(step: meta.step)
        var tensors: [(name: String, shape: [Int], data: UnsafePointer<Float>)] = []
        for e in params.entries where include(e) { tensors.append((e.name, e.shape, UnsafePointer(params.values + e.offset))) }
        if let optimizer {
            for e in params.entries where include(e) && !params.groups[e.group].frozen {
                tensors.append(("optimizer.m." + e.name, e.shape, UnsafePointer(optimizer.m + e.offset)))
                tensors.append(("optimizer.v." + e.name, e.shape, UnsafePointer(optimizer.v + e.offset)))
            }
        }
        faults.duringCheckpoint(.before, step: meta.step)
        try writeSafetensors(path: base + ".safetensors", tensors: tensors, metadata: ["format": "cladmop", "step": "\(meta.step)"],
                             replacingInput: true)   // a run's own checkpoint folder: resume may have read a damaged one of this step
        faults.duringCheckpoint(.between, step: meta.step)
        var m = meta
        m.tensorsFile = URL(fileURLWithPath: base + ".safetensors").lastPathComponent
        (m.tensorsChecksum, m.tensorsBytes) = try fileChecksum(base + ".safetensors")
        m.metadataChecksum = try m.computedChecksum()
        let json = try encodeJSON(m, pretty: true)
        try writeFileAtomically(base + ".json", replacingInput: true) { try $0.write(contentsOf: json) }
        return base
    }

    /// Reads and verifies one checkpoint: its metadata decoded and validated (`CheckpointMeta.validate`), its
    /// tensors against the recorded checksum. Throws an InputError naming the file and the problem.
    public static func load(jsonPath: String) throws -> (CheckpointMeta, SafetensorsFile) {
        let data = try readRegularFile(jsonPath, what: "checkpoint metadata", limit: 64 << 20)
        try refuseDuplicateJSONKeys(data, file: jsonPath)
        // A JSON object without `format` is another file (an eval.json, a best.json, metrics): said as such.
        if let probe = try? JSONDecoder().decode(FormatProbe.self, from: data), probe.format == nil,
           !RunLayout.isCheckpointMetadata(URL(fileURLWithPath: jsonPath).lastPathComponent) {
            throw InputError(file: jsonPath, "is not a checkpoint's metadata (a JSON object without the \"format\": \"cladmop-checkpoint\" of step-NNNNNNNN.json; "
                             + "an evaluation's eval.json?): name a run folder, its best.json or a checkpoints/step-NNNNNNNN.json")
        }
        if let probe = try? JSONDecoder().decode(FormatProbe.self, from: data),
           probe.format != "cladmop-checkpoint" || !CheckpointMeta.readableVersions.contains(probe.version ?? -1) {
            throw InputError(file: jsonPath, "unsupported checkpoint format \(probe.format ?? "-") version \(probe.version.map(String.init) ?? "-") (this cladmop reads cladmop-checkpoint versions \(CheckpointMeta.readableVersions.lowerBound)-\(CheckpointMeta.readableVersions.upperBound); retrain or use the cladmop that wrote it)")
        }
        let meta: CheckpointMeta
        do { meta = try JSONDecoder().decode(CheckpointMeta.self, from: data) }
        catch { throw InputError(file: jsonPath, "not a cladmop checkpoint metadata file: \(describeDecodingError(error, data: data))") }
        try meta.validate(path: jsonPath)
        guard try meta.computedChecksum() == meta.metadataChecksum else {
            throw InputError(file: jsonPath, "metadataChecksum \(meta.metadataChecksum) does not match the metadata (\(try meta.computedChecksum())): the file was edited or damaged; a checkpoint's metadata must not be changed by hand")
        }
        let tensorsPath = URL(fileURLWithPath: jsonPath).deletingLastPathComponent().appendingPathComponent(meta.tensorsFile).path
        guard FileManager.default.fileExists(atPath: tensorsPath) else { throw InputError(file: tensorsPath, "missing (named by \(jsonPath))") }
        // One mapping: the bytes checked are the bytes parsed (a file replaced in between is not read unchecked).
        let mapped = try MappedFile(path: tensorsPath)
        let (sum, bytes) = (checksumHex(mapped.bytes), mapped.bytes.count)
        guard sum == meta.tensorsChecksum, bytes == meta.tensorsBytes else {
            throw InputError(file: tensorsPath, "damaged: checksum \(sum) (\(bytes) bytes) differs from the recorded \(meta.tensorsChecksum) (\(meta.tensorsBytes) bytes)")
        }
        return (meta, try SafetensorsFile(mapped: mapped, path: tensorsPath))
    }

    private struct FormatProbe: Decodable { var format: String?; var version: Int? }

    /// Keeps the pretraining checkpoint `jsonPath` (a real file, links resolved; with its tensors) in `dir` (a
    /// fine-tuning run's `pretrained/`): hard links, so no bytes are copied and the files stay when the pretraining
    /// run prunes, replaces or moves its own; a copy (temporary name, then renamed) where the file system cannot link,
    /// its tensors checked against `checksum`. The tensors first, the JSON last, as `save` writes them. Returns the
    /// kept JSON's path.
    public static func keepPretrained(_ jsonPath: String, tensorsFile: String, checksum: String?, in dir: String,
                                      log: (String) -> Void) throws -> String {
        let existed = FileManager.default.fileExists(atPath: dir)
        try makeDirectory(dir, option: "the fine-tuning run's pretrained folder")
        // A failure leaves nothing of its own making: the files it linked or copied, then its folder.
        var kept = false, made: [String] = []
        defer { if !kept { for f in made { unlink(f) }; if !existed { rmdir(dir) } } }
        let source = URL(fileURLWithPath: jsonPath).deletingLastPathComponent().path
        let json = URL(fileURLWithPath: jsonPath).lastPathComponent
        for name in [tensorsFile, json] {
            // Links resolved: link() and copyItem would keep a symbolic link itself, which dangles in `dir`.
            let from = resolvedPath(source + "/" + name), to = dir + "/" + name
            if FileManager.default.fileExists(atPath: to) {
                throw InputError(file: to, "exists; a new fine-tuning run keeps its pretrained checkpoint here (replace the run with --overwrite)")
            }
            if link(from, to) == 0 { made.append(to); continue }
            let reason = String(cString: strerror(errno))
            let temporary = temporaryPath(for: to)
            let slot = TemporaryFiles.register(temporary)
            defer { TemporaryFiles.unregister(slot) }
            do {
                try FileManager.default.copyItem(atPath: from, toPath: temporary)
                if let failure = syncFile(temporary) { throw InputError(file: to, "cannot write \(temporary) to disk (fsync): \(failure)") }
                if name == tensorsFile, let checksum, try fileChecksum(temporary).0 != checksum {
                    throw InputError(file: from, "changed while it was copied (checksum differs from \(checksum))")
                }
                guard rename(temporary, to) == 0 else { throw InputError(file: to, "cannot rename \(temporary) to it: \(String(cString: strerror(errno)))") }
                made.append(to)
            } catch let error as InputError {
                try? FileManager.default.removeItem(atPath: temporary)
                throw error
            } catch {
                try? FileManager.default.removeItem(atPath: temporary)
                throw InputError(file: to, "cannot link (\(reason)) or copy \(from) there: \(describeWriteError(error))")
            }
            log("finetune: \(to): a copy of \(from) (hard link refused: \(reason))")
        }
        syncFolder(of: dir + "/" + json)     // the links and renames survive a crash
        kept = true
        return dir + "/" + json
    }

    /// The checkpoint JSON paths of `dir`, newest step first.
    public static func list(dir: String) -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
        // Newest first: by length, then text (step-100000000 after step-99999999; names are zero-padded to 8 digits).
        return names.filter(RunLayout.isCheckpointMetadata).sorted { ($0.count, $0) > ($1.count, $1) }.map { dir + "/" + $0 }
    }

    /// Newest valid checkpoint of `dir`; damaged newer ones are skipped and reported through `log`.
    public static func newestValid(dir: String, log: (String) -> Void) -> (String, CheckpointMeta, SafetensorsFile)? {
        for path in list(dir: dir) {
            do {
                let (meta, tensors) = try load(jsonPath: path)
                return (path, meta, tensors)
            } catch {
                log("resume: skipping damaged checkpoint \(path): \(error); falling back to the previous one")
            }
        }
        return nil
    }

    /// Copies tensors into the arena by name (shapes checked); `optimizer` receives the moments when present.
    public static func restore(_ file: SafetensorsFile, into params: ParameterArena, optimizer: Optimizer?,
                               only: (ParameterArena.Entry) -> Bool = { _ in true }) throws {
        for e in params.entries where only(e) {
            try file.copy(e.name, shape: e.shape, into: params.values + e.offset)
            if let optimizer, !params.groups[e.group].frozen, file.tensors["optimizer.m." + e.name] != nil {
                try file.copy("optimizer.m." + e.name, shape: e.shape, into: optimizer.m + e.offset)
                try file.copy("optimizer.v." + e.name, shape: e.shape, into: optimizer.v + e.offset)
            }
        }
    }

    /// Deletes the checkpoint `base` (its JSON first: without it the tensors file does not count), if it is there.
    public static func remove(base: String) {
        // (Forgotten as inputs first: read when written, for their checksums.)
        for path in [base + ".json", base + ".safetensors"] { FilesRead.forget(path); unlink(path) }
    }

    /// Deletes all but the newest `keep` checkpoints up to `step` (the one just written), never the one named
    /// `protected`, the tensors files of earlier steps left without their JSON, and the temporary files that a crash in
    /// the middle of a write left behind (once stale: their process gone, a minute old, no writer's flock;
    /// `removeStaleTemporaries`). Checkpoints of later
    /// steps (damaged ones that a resume skipped) neither count nor go: counted, they had pruned the checkpoint just
    /// written (keep_last 1) until the run came back to their step, and left none to resume from (a crash-consistency
    /// review); the run's own checkpoint of that step replaces each when it gets there.
    public static func prune(dir: String, keep: Int, protected: String?, upTo step: Int) {
        removeStaleTemporaries(inFolder: dir)
        let current = name(step: step) + ".json"
        let earlier = list(dir: dir).filter { path in
            let file = URL(fileURLWithPath: path).lastPathComponent
            return (file.count, file) <= (current.count, current)
        }
        for path in earlier.dropFirst(keep) {
            let base = String(path.dropLast(5))
            if let protected, URL(fileURLWithPath: base).lastPathComponent == protected { continue }
            remove(base: base)
        }
        // A tensors file without its JSON is no checkpoint: what a kill between `remove`'s two unlinks, or between a
        // write's two renames, leaves. Those of earlier steps go (one of this step is its checkpoint being written).
        for file in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] where file.hasSuffix(".safetensors") {
            let stem = file.dropLast(".safetensors".count), digits = stem.dropFirst("step-".count)
            let json = String(stem) + ".json"
            // Only the names this code writes (step- and 8 or more digits): a user's step-best.safetensors stays.
            guard stem.hasPrefix("step-"), digits.count >= 8, digits.allSatisfy({ $0.isASCII && $0.isNumber }),
                  (json.count, json) < (current.count, current),
                  !FileManager.default.fileExists(atPath: dir + "/" + json) else { continue }
            FilesRead.forget(dir + "/" + file)
            unlink(dir + "/" + file)
        }
    }
}
