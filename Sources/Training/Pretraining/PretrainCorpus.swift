import Communication
import Config
import Foundation
import Support
import TrialData

/// Everything pretraining reads: the feature store (refusing a stale one), the ICD-10 tree and the SCT
/// corpus built from the store's rows (training and validation splits).
public struct PretrainSetup {
    public let spec: RunSpec
    public let store: FeatureStore
    public let hierarchy: ICD10Hierarchy
    public let train: [StoredTrial]
    public let validation: [StoredTrial]
    public let corpusReport: [String]
    /// What this corpus is, recorded in every checkpoint for a resumed run to compare (`CheckpointMeta.corpus`).
    public let fingerprint: CorpusFingerprint

    /// `encoder`: the text encoder's `identity` and `weightsChecksum` the store must have been made with (nil: synthetic).
    public init(spec: RunSpec, encoder: (identity: String, weights: String)?, comm: Communicator) throws {
        self.spec = spec
        let data = spec.data
        guard data.synthetic || !data.files.isEmpty else {
            throw InputError("data.files is empty: pretraining on trial CSVs needs at least one TOP-format CSV (or data.synthetic: true with a store of cladmop synth)")
        }
        let expected = data.synthetic ? nil : try encoder.map {
            try currentStoreIdentity(paths: data.files, encoderIdentity: $0.identity, encoderWeights: $0.weights, maxTokens: spec.encoder.maxTokens)
        }
        store = try FeatureStore(path: data.featureStore, expected: expected, sourcesForHint: data.files, synthetic: data.synthetic)
        if data.synthetic && store.identity.encoder != "synthetic" {
            throw InputError(file: data.featureStore, "data.synthetic is true but this store was featurized from CSV files")
        }
        // Every rank must read the same data (nodes may hold their own copies of the store).
        let id = store.identity
        try requireAgreement([("feature store", "\(id.encoder) \(id.encoderWeights ?? "-") \(id.maxTokens) \(id.featurizerVersion) "
                                + id.sources.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")),
                              ("feature store rows", "\(store.trials.count) x \(store.dim)")]
                              // A synthetic store's identity (seed, size, noise) does not name the ICD tree its codes
                              // were drawn from: its metadata (the trials, their codes) is compared too. (A CSV store's
                              // metadata holds its source paths and, when it was built onto an older store, another
                              // order of sentence rows: not compared; its codes come from the files compared above and
                              // the ICD tree at featurization, which its identity does not name.)
                              + (data.synthetic ? [("feature store trials (its metadata)", String(store.metadataChecksum, radix: 16))] : []),
                             comm: comm, what: "feature stores")
        let skippedNote = data.synthetic ? [] : try store.requireSkippedRowsAllowed(of: data.files, skipBadRows: data.skipBadRows)
        hierarchy = try ICD10Hierarchy(path: data.icdHierarchy, comm: comm)
        try hierarchy.requireDepth(spec.model.icdDepth)
        var excluded = data.synthetic ? [] : try data.excludeFile.map(readExclusionList) ?? []
        // Only their ids are needed: trials to predict (no labels) can be kept out too.
        for csv in data.excludeCSVs { excluded.formUnion(try readTrials(paths: [csv], labels: .optional).0.map(\.nctid)) }
        let wanted = Set(data.synthetic ? ["synthetic"] : data.files.map { URL(fileURLWithPath: $0).lastPathComponent })
        let phases = data.sctPhases.compactMap { Int($0) }
        let rows = store.trials.filter { t in
            wanted.contains(t.source.file) && (phases.isEmpty || !Set(phaseNumbers(t.phase)).isDisjoint(with: phases))
        }
        if !phases.isEmpty && comm.isRoot {
            // Rows of data.files whose phase names no number are in no phase's SCT: said, not dropped unseen.
            let unread = store.trials.filter { wanted.contains($0.source.file) && $0.label == 1 && !excluded.contains($0.nctid) && phaseNumbers($0.phase).isEmpty }
            if let first = unread.first {
                let kinds = Set(unread.map(\.phase)).sorted().prefix(5).map { "\"\($0)\"" }.joined(separator: ", ")
                standardErrorWrite(Data(("warning: data.sct_phases \(phases): \(unread.count) successful trial(s) of data.files name no phase "
                    + "1-4 (\(kinds); first \(first.source)) and are left out of SCT\n").utf8))
            }
        }
        // SCT is the successful trials: a row without a label (a store featurized for predict) cannot be told apart.
        if let t = rows.first(where: { $0.label == nil && !excluded.contains($0.nctid) }) {
            let file = data.files.first { URL(fileURLWithPath: $0).lastPathComponent == t.source.file } ?? t.source.file
            throw InputError(file: file, line: t.source.line, "trial \(t.nctid) has no label (in \(data.featureStore)); pretraining takes the successful trials (label 1) of data.files, so every row needs 0 or 1")
        }
        let corpus = SCTCorpus(trials: rows, excluded: excluded, validationFraction: data.validationFraction)
        if comm.isRoot, !data.synthetic {
            warnOfUnexcludedTestTrials((corpus.train + corpus.validation).map(\.nctid), file: "data.files", excludeFile: data.excludeFile,
                                       role: "are in the SCT corpus (pretraining)")
        }
        let (trainCount, validCount) = (corpus.train.count, corpus.validation.count)
        guard trainCount + validCount > 0 else {
            if rows.isEmpty && !phases.isEmpty {
                throw InputError("no successful trial is left for pretraining: data.sct_phases = \(phases), and data.files hold no row of "
                                 + (phases.count == 1 ? "that phase" : "those phases") + " in \(data.featureStore)")
            }
            let breakdown = corpus.report.dropFirst().dropLast().map { $0.trimmingCharacters(in: .whitespaces) }.joined(separator: "; ")
            throw InputError("no successful trial is left for pretraining: data.files hold \(rows.count) row(s) in \(data.featureStore)"
                             + (phases.isEmpty ? "" : " of phases \(phases)") + ", none both labelled 1 and outside data.exclude_file / data.exclude_csvs"
                             + (breakdown.isEmpty ? "" : " (\(breakdown))"))
        }
        // The validation loss and retrieval contrast each validation trial with the others; best.json needs one.
        guard validCount >= 2 else {
            throw InputError("data.validation_fraction = \(data.validationFraction) of the \(trainCount + validCount) SCT trials gives \(validCount) "
                             + "validation trial(s); validation needs at least 2 (raise data.validation_fraction or "
                             + (data.synthetic ? "make the synthetic store with more --trials)" : "add successful trials to data.files)"))
        }
        train = corpus.train
        validation = corpus.validation
        corpusReport = corpus.report + skippedNote
        let f = PretrainSetup.fingerprint(store: store, train: corpus.train, validation: corpus.validation)
        fingerprint = f
        // The exclusion lists are read on every rank (each node may hold its own copies): the splits must agree.
        try requireAgreement([("SCT corpus", "\(f.store) \(f.train) \(f.validation) \(f.trials)")], comm: comm,
                             what: "SCT corpora (data.exclude_file, data.exclude_csvs and the store must be the same on every node)")
    }

    static func fingerprint(store: FeatureStore, train: [StoredTrial], validation: [StoredTrial]) -> CorpusFingerprint {
        let id = store.identity
        let storeText = "\(id.encoder) \(id.maxTokens) \(id.featurizerVersion) \(store.dim) "
            + id.sources.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
        let ids = train.map(\.nctid).joined(separator: ",") + "|" + validation.map(\.nctid).joined(separator: ",")
        return CorpusFingerprint(store: checksumHex(storeText), train: train.count, validation: validation.count, trials: checksumHex(ids))
    }
}

/// The SCT corpus a pretraining checkpoint was trained on: the feature store's identity (encoder, sources and their
/// checksums, width) and the trials of each split, in order. Resuming on another corpus (a store featurized again from
/// edited files, other exclusions) is refused: the sampler's position and the best validation loss mean nothing there.
public struct CorpusFingerprint: Codable, Equatable, Sendable {
    /// Checksum of the store's identity and width.
    public var store: String
    public var train: Int
    public var validation: Int
    /// Checksum of the training and validation NCT ids, in split order.
    public var trials: String

    /// What differs, in words (`self`: the checkpoint's).
    public func differences(from now: CorpusFingerprint) -> [String] {
        var out: [String] = []
        if store != now.store { out.append("the feature store (data.feature_store) holds other data (other source files or contents, another encoder or width, another synthetic seed)") }
        if train != now.train || validation != now.validation {
            out.append("\(train) training / \(validation) validation trials in the checkpoint, \(now.train) / \(now.validation) now")
        } else if trials != now.trials {
            out.append("the same number of trials, but other ones (data.exclude_file, data.exclude_csvs or the store's rows changed)")
        }
        return out
    }
}
