import NN
import Support

/// Sizes of the DM branch (SPEC 5.1). `paper.yaml`: d 128, 8 heads, 4 + 4 enrichment layers,
/// 3 grouping blocks of G = 3 grouping layers with S = 2 self-attention layers, c = 100 centroids.
public struct ModelConfig: Codable, Equatable, Sendable {
    public var dim: Int
    public var heads: Int
    public var molLayers: Int
    public var disLayers: Int
    public var groupingLayers: Int
    public var selfLayers: Int
    public var centroids: Int
    /// Width of the frozen text encoder's sentence vectors (384 for MiniLM).
    public var encoderDim: Int
    /// SMILES vocabulary size (PAD, UNK, NONE and the corpus tokens).
    public var molVocab: Int
    public var maxMolecules: Int
    /// Rows of the ICD-10 table of each depth 1...icdDepth.
    public var icdTableSizes: [Int]
    /// ICD-10 categories (3-character codes) + 1 row for "no code".
    public var categoryCount: Int
    public var learnableScale: Bool
    public var initialLogScale: Float

    public init(dim: Int, heads: Int, molLayers: Int, disLayers: Int, groupingLayers: Int, selfLayers: Int, centroids: Int,
                encoderDim: Int, molVocab: Int, maxMolecules: Int, icdTableSizes: [Int], categoryCount: Int,
                learnableScale: Bool, initialLogScale: Float) {
        self.dim = dim; self.heads = heads; self.molLayers = molLayers; self.disLayers = disLayers
        self.groupingLayers = groupingLayers; self.selfLayers = selfLayers; self.centroids = centroids
        self.encoderDim = encoderDim; self.molVocab = molVocab; self.maxMolecules = maxMolecules
        self.icdTableSizes = icdTableSizes; self.categoryCount = categoryCount
        self.learnableScale = learnableScale; self.initialLogScale = initialLogScale
    }

    /// Every size that allocates or divides, checked (a checkpoint's metadata is read back through this).
    /// `origin` names the file; the error names the key (`model.heads`, ...) and what was expected.
    public func validate(origin: String) throws {
        func require(_ ok: Bool, _ key: String, _ value: Any, _ expected: String) throws {
            guard ok else { throw InputError.invalid("model.\(key)", value, expected: expected, in: origin) }
        }
        try require((1...4096).contains(dim), "dim", dim, "an integer in [1, 4096]")
        try require((1...64).contains(heads) && dim % heads == 0, "heads", heads, "a divisor of model.dim = \(dim) in [1, 64]")
        try require((0...32).contains(molLayers), "molLayers", molLayers, "an integer in [0, 32]")
        try require((0...32).contains(disLayers), "disLayers", disLayers, "an integer in [0, 32]")
        try require((1...8).contains(groupingLayers), "groupingLayers", groupingLayers, "an integer in [1, 8]")
        try require((0...8).contains(selfLayers), "selfLayers", selfLayers, "an integer in [0, 8]")
        try require((1...1024).contains(centroids) && centroids >> (groupingLayers - 1) >= 1, "centroids", centroids,
                    "an integer in [2^(groupingLayers - 1), 1024]")
        try require((1...4096).contains(encoderDim), "encoderDim", encoderDim,
                    "an integer in [1, 4096]: the width of the feature store's sentence vectors (its text encoder's hidden_size)")
        try require((3...10_000_000).contains(molVocab), "molVocab", molVocab, "an integer in [3, 10000000] (PAD, UNK, NONE, tokens)")
        try require((1...64).contains(maxMolecules), "maxMolecules", maxMolecules, "an integer in [1, 64]")
        try require((1...7).contains(icdTableSizes.count) && icdTableSizes.allSatisfy { (1...10_000_000).contains($0) },
                    "icdTableSizes", icdTableSizes, "1 to 7 table sizes in [1, 10000000]")
        try require((1...10_000_000).contains(categoryCount), "categoryCount", categoryCount, "an integer in [1, 10000000]")
        try require(initialLogScale.isFinite && abs(initialLogScale) <= 20, "initialLogScale", initialLogScale, "a finite number in [-20, 20]")
    }

    /// Centroid tokens of grouping layer g: c / 2^g.
    public func centroidCount(_ g: Int) -> Int { max(centroids >> g, 1) }
    public static let levels = levelNames.count
    /// The criteria levels' names, coarse to fine (parameter names `fusion.NAME.*`, `cladmop embed --level`).
    public static let levelNames = ["coarse", "medium", "fine"]
}

/// One padded batch of trials, as the model reads it.
public struct ModelBatch {
    public var count = 0
    /// Molecule tokens (n, Lm, 2): token id, molecule position; mask (n, Lm).
    public var molLength = 1
    public var molIds: [Int32] = []
    public var molMask: [UInt8] = []
    /// ICD codes (n, Lc, icdDepth + 1): ancestor row per depth (-1: none), category row; mask (n, Lc).
    public var codeLength = 1
    public var codeIds: [Int32] = []
    public var codeMask: [UInt8] = []
    /// Criterion sentence vectors (3, n, Ls, E), level-major; mask (n, Ls).
    public var sentenceLength = 1
    public var criteria: [Float] = []
    public var sentenceMask: [UInt8] = []
    public init() {}

    /// f_C: masked mean of the sentence vectors of `level` (0 coarse, 1 medium, 2 fine: the loss's), (n, E)
    /// into `out` (E = `dim`).
    public func criteriaEmbedding(dim e: Int, level: Int = 2, into out: FloatPtr) {
        let ls = sentenceLength, n = count
        criteria.withUnsafeBufferPointer { c in
            sentenceMask.withUnsafeBufferPointer { m in
                maskedMeanForward(c.baseAddress! + level * n * ls * e, mask: m.baseAddress!, batch: n, length: ls, dim: e, out)
            }
        }
    }
}
