import Support
import Foundation
import Model
import NN
import TrialData

/// How stored trials become model inputs: the SMILES vocabulary (built from the training split) and the
/// truncation limits. Saved in every checkpoint so that fine-tuning and evaluation map inputs identically.
public struct FeatureSpace: Codable, Equatable, Sendable {
    public var smilesVocabulary: Vocabulary
    public var icdDepth: Int
    public var maxSentences: Int
    public var maxMolTokens: Int
    public var maxMolecules: Int
    public var maxCodes: Int
    public static let noneToken = "<none>"

    /// Vocabulary from the SMILES tokens of `trials` (first-seen order), with the <none> token at id 2.
    public init(trials: [StoredTrial], icdDepth: Int, maxSentences: Int, maxMolTokens: Int, maxMolecules: Int, maxCodes: Int) {
        var v = Vocabulary()
        v.add(Self.noneToken)
        for t in trials { for m in t.smiles { for tok in m { v.add(tok) } } }
        smilesVocabulary = v
        self.icdDepth = icdDepth; self.maxSentences = maxSentences; self.maxMolTokens = maxMolTokens
        self.maxMolecules = maxMolecules; self.maxCodes = maxCodes
    }
}

/// What the model sees of `trials` under `space`'s limits, so that nothing is left out unsaid: trials with an
/// empty side (a "none" token stands in: no criterion sentence, no SMILES, no ICD code), trials cut to
/// `maxSentences` sentences, `maxMolTokens` SMILES tokens or `maxCodes` distinct ICD codes (the first ones kept), and SMILES tokens outside the
/// vocabulary (read as <unk>: drugs the pretraining never saw). nil when there is nothing to say. `warning`: half
/// or more of the trials have no criterion sentence, or none has a SMILES token or an ICD code: a side the model
/// can learn nothing from.
public func inputCoverage(_ trials: [StoredTrial], space: FeatureSpace, what: String) -> (line: String, warning: String?)? {
    guard !trials.isEmpty else { return nil }
    var noCriteria = 0, noSmiles = 0, noCodes = 0, cutSentences = 0, cutTokens = 0, cutCodes = 0, tokens = 0, unknown = 0
    for t in trials {
        if t.sentences.isEmpty { noCriteria += 1 }
        if t.sentences.count > space.maxSentences { cutSentences += 1 }
        let count = t.smiles.reduce(0) { $0 + $1.count }
        if count == 0 { noSmiles += 1 }
        if count > space.maxMolTokens { cutTokens += 1 }
        if t.icd.allSatisfy(\.isEmpty) { noCodes += 1 }
        if Set(t.icd.joined()).count > space.maxCodes { cutCodes += 1 }
        for m in t.smiles { for tok in m { tokens += 1; if space.smilesVocabulary.id(tok) == Vocabulary.unk { unknown += 1 } } }
    }
    var parts: [String] = []
    if noCriteria > 0 { parts.append("\(noCriteria) without criterion sentences") }
    if noSmiles > 0 { parts.append("\(noSmiles) without SMILES") }
    if noCodes > 0 { parts.append("\(noCodes) without ICD codes") }
    if cutSentences > 0 { parts.append("\(cutSentences) cut to their first \(space.maxSentences) sentences (data.max_sentences)") }
    if cutTokens > 0 { parts.append("\(cutTokens) cut to their first \(space.maxMolTokens) SMILES tokens (data.max_mol_tokens)") }
    if cutCodes > 0 { parts.append("\(cutCodes) cut to their first \(space.maxCodes) ICD codes (data.max_codes)") }
    if unknown > 0 { parts.append("\(unknown) of their \(tokens) SMILES tokens outside the model's vocabulary (read as <unk>)") }
    guard !parts.isEmpty else { return nil }
    let n = trials.count
    var empty: [String] = []
    if 2 * noCriteria >= n { empty.append("\(noCriteria) of the \(n) have no criterion sentence (f_C is the same for them)") }
    if noSmiles == n { empty.append("none has a SMILES token") }
    if noCodes == n { empty.append("none has an ICD code") }
    return ("\(what): of \(n) trials, " + parts.joined(separator: ", "),
            empty.isEmpty ? nil : "warning: \(what): " + empty.joined(separator: "; ") + ": the model can learn little from \(empty.count == 1 ? "that side" : "those sides"); check the criteria, smiless and icdcodes columns")
}

/// Builds padded `ModelBatch`es from stored trials: sentence vectors are read from the memory-mapped store.
public final class BatchBuilder {
    public let store: FeatureStore
    public let hierarchy: ICD10Hierarchy
    public let space: FeatureSpace
    public let tableSizes: [Int]
    public let categoryCount: Int

    /// Refuses a hierarchy without nodes down to `space.icdDepth` and depth 3 (`ICD10Hierarchy.requireDepth`).
    public init(store: FeatureStore, hierarchy: ICD10Hierarchy, space: FeatureSpace) throws {
        try hierarchy.requireDepth(space.icdDepth)
        self.store = store; self.hierarchy = hierarchy; self.space = space
        tableSizes = Array(hierarchy.nodesPerDepth.prefix(space.icdDepth))
        categoryCount = hierarchy.nodesPerDepth[2] + 1
    }

    /// Molecule tokens (id, molecule position) of a trial; [<none>] when it has no SMILES.
    func molecules(_ t: StoredTrial) -> [(Int32, Int32)] {
        var out: [(Int32, Int32)] = []
        outer: for (m, tokens) in t.smiles.enumerated() {
            for tok in tokens {
                if out.count >= space.maxMolTokens { break outer }
                out.append((space.smilesVocabulary.id(tok), Int32(min(m, space.maxMolecules - 1))))
            }
        }
        return out.isEmpty ? [(space.smilesVocabulary.id(FeatureSpace.noneToken), Int32(0))] : out
    }

    /// Per code: ancestor row at each depth 1...icdDepth and the category row; the "none" category
    /// row (and no ancestor) when the trial has no code.
    func codes(_ t: StoredTrial) -> [[Int32]] {
        var seen = Set<String>(), out: [[Int32]] = []
        for code in t.icd.joined() where !seen.contains(code) && out.count < space.maxCodes {
            seen.insert(code)
            guard let resolved = hierarchy.resolve(code) else { continue }
            var rows = hierarchy.ancestorRows(resolved, maxDepth: space.icdDepth)
            let cat = hierarchy.category(resolved).flatMap { hierarchy.nodeIndex[2][$0] } ?? Int32(categoryCount - 1)
            rows.append(cat)
            out.append(rows)
        }
        if out.isEmpty { out.append([Int32](repeating: -1, count: space.icdDepth) + [Int32(categoryCount - 1)]) }
        return out
    }

    /// Forward FLOPs of the model for one trial at its own lengths (what `batch` gives it): the cost by which
    /// the pretrainer deals a global batch to the ranks (`balancedOrder`).
    func cost(_ t: StoredTrial, model: CLaDMoP) -> Double {
        model.forwardFLOPs(molLength: molecules(t).count, codeLength: codes(t).count,
                           sentenceLength: min(t.sentences.count, space.maxSentences))
    }

    /// The padded batch of `trials` (in order).
    public func batch(_ trials: [StoredTrial]) -> ModelBatch {
        var b = ModelBatch()
        let n = trials.count
        b.count = n
        let mols = trials.map(molecules), codeRows = trials.map(codes)
        let sentences = trials.map { Array($0.sentences.prefix(space.maxSentences)) }
        b.molLength = max(mols.map(\.count).max() ?? 1, 1)
        b.codeLength = max(codeRows.map(\.count).max() ?? 1, 1)
        b.sentenceLength = max(sentences.map(\.count).max() ?? 1, 1)
        let lm = b.molLength, lc = b.codeLength, ls = b.sentenceLength, e = store.dim, w = space.icdDepth + 1
        b.molIds = [Int32](repeating: 0, count: n * lm * 2)
        b.molMask = [UInt8](repeating: 0, count: n * lm)
        b.codeIds = [Int32](repeating: -1, count: n * lc * w)
        b.codeMask = [UInt8](repeating: 0, count: n * lc)
        b.criteria = [Float](repeating: 0, count: 3 * n * ls * e)
        b.sentenceMask = [UInt8](repeating: 0, count: n * ls)
        for i in 0..<n {
            for (j, (tok, pos)) in mols[i].enumerated() {
                b.molIds[(i * lm + j) * 2] = tok; b.molIds[(i * lm + j) * 2 + 1] = pos; b.molMask[i * lm + j] = 1
            }
            for (j, rows) in codeRows[i].enumerated() {
                for k in 0..<w { b.codeIds[(i * lc + j) * w + k] = rows[k] }
                b.codeMask[i * lc + j] = 1
            }
            for (j, s) in sentences[i].enumerated() {
                b.sentenceMask[i * ls + j] = 1
                for level in 0..<3 {
                    let v = store.vector(sentence: s, level: level)
                    let base = ((level * n + i) * ls + j) * e
                    for k in 0..<e { b.criteria[base + k] = v[k] }
                }
            }
        }
        return b
    }
}

extension ICD10Hierarchy {
    /// Refuses a tree without nodes down to max(3, `icdDepth`): every code has a row in the table of each depth
    /// 1...icdDepth, and the disease categories are the nodes of depth 3.
    /// `source` says what asks for the depth (the configuration's key, or a checkpoint's tables).
    public func requireDepth(_ icdDepth: Int, source: String? = nil) throws {
        let needed = max(3, icdDepth)
        guard maxDepth >= needed else {
            throw InputError(file: path, "has nodes down to depth \(maxDepth) only; expected nodes down to depth \(needed) "
                             + "(\(source ?? "model.icd_depth = \(icdDepth)"); the disease categories are the nodes of depth 3) (data.icd_hierarchy)")
        }
    }

    /// A checkpoint's ICD tables are rows of the hierarchy it was trained with: this one must give the same table
    /// sizes (depths 1...model.icdTableSizes.count) and category count, or codes would index other (or missing) rows;
    /// and, where the checkpoint records the tree's checksum (`trainedTree`, version 7 on), be that tree: one of the
    /// same sizes in another order gives codes other rows without a word.
    public func requireTables(of model: ModelConfig, trainedTree: String?, checkpoint: String) throws {
        let depth = model.icdTableSizes.count
        try requireDepth(depth, source: "\(checkpoint) has ICD tables of depths 1-\(depth)")
        let tableSizes = Array(nodesPerDepth.prefix(depth)), categoryCount = nodesPerDepth[2] + 1
        guard tableSizes == model.icdTableSizes && categoryCount == model.categoryCount else {
            throw InputError(file: path, "gives ICD tables of \(tableSizes) rows (depths 1-\(tableSizes.count)) and \(categoryCount - 1) "
                             + "categories; \(checkpoint) was trained with \(model.icdTableSizes) and \(model.categoryCount - 1): "
                             + "data.icd_hierarchy must be the file the checkpoint was trained with")
        }
        if let trainedTree, trainedTree != checksum {
            throw InputError(file: path, "is not the ICD-10 tree \(checkpoint) was trained with: its nodes (ids, parents, depths in file order) "
                             + "have checksum \(checksum), the checkpoint's tree \(trainedTree); the same table sizes, but another order or other "
                             + "nodes give codes other rows: data.icd_hierarchy must be the file the checkpoint was trained with")
        }
    }
}
