import NN

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

    /// Centroid tokens of grouping layer g: c / 2^g.
    public func centroidCount(_ g: Int) -> Int { max(centroids >> g, 1) }
    public static let levels = 3
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
}

/// Grouping block x: learnable source-type embeddings (4, d) and G grouping layers, each with its
/// centroid tokens (c / 2^g, d), one cross-attention layer and S self-attention layers.
struct GroupingBlock {
    var typeEmbedding: ParamRef
    var centroids: [ParamRef]
    var cross: [TransformerLayer]
    var selfLayers: [[TransformerLayer]]
}

/// The DM branch of CLaDMoP: molecule and disease enrichment, per-level criteria projections,
/// three grouping blocks (coarse, medium, fine) and the final LayerNorm + projection to the encoder width.
/// Parameters live in one `ParameterArena`; names are stable (docs/checkpoints.md).
public final class CLaDMoP {
    public let config: ModelConfig
    public let params: ParameterArena
    let molToken, molPosition: Embedding
    let molLayers: [TransformerLayer]
    let icdTables: [Embedding]
    let category: Embedding
    let disLayers: [TransformerLayer]
    let levelProjection: [Linear]
    var blocks: [GroupingBlock] = []
    let finalNorm: LayerNorm
    let output: Linear
    /// log s of the InfoNCE logit scale s (frozen when `loss.logit_scale: fixed`).
    public let logScale: ParamRef

    /// Registers every parameter in `params` (not finalized: callers may add LoRA and heads, then finalize).
    public init(_ config: ModelConfig, params: ParameterArena) {
        self.config = config
        self.params = params
        let d = config.dim, p = params, ffn = 4 * d
        molToken = Embedding(p, "mol.token", count: config.molVocab, dim: d)
        molPosition = Embedding(p, "mol.position", count: config.maxMolecules, dim: d)
        molLayers = (0..<config.molLayers).map { TransformerLayer(p, "mol.layer\($0)", dim: d, heads: config.heads, ffnDim: ffn) }
        icdTables = config.icdTableSizes.enumerated().map { Embedding(p, "dis.icd_depth\($0.offset + 1)", count: $0.element, dim: d) }
        category = Embedding(p, "dis.category", count: config.categoryCount, dim: d)
        disLayers = (0..<config.disLayers).map { TransformerLayer(p, "dis.layer\($0)", dim: d, heads: config.heads, ffnDim: ffn) }
        let levelNames = ["coarse", "medium", "fine"]
        levelProjection = levelNames.map { Linear(p, "fusion.\($0).proj", inFeatures: config.encoderDim, outFeatures: d) }
        for x in 0..<ModelConfig.levels {
            let name = "fusion.\(levelNames[x])"
            var block = GroupingBlock(typeEmbedding: p.register("\(name).source_type", shape: [4, d], initializer: .normal(std: 0.02)),
                                      centroids: [], cross: [], selfLayers: [])
            for g in 0..<config.groupingLayers {
                block.centroids.append(p.register("\(name).group\(g).centroids", shape: [config.centroidCount(g), d], initializer: .normal(std: 1)))
                block.cross.append(TransformerLayer(p, "\(name).group\(g).cross", dim: d, heads: config.heads, ffnDim: ffn, cross: true))
                block.selfLayers.append((0..<config.selfLayers).map {
                    TransformerLayer(p, "\(name).group\(g).self\($0)", dim: d, heads: config.heads, ffnDim: ffn)
                })
            }
            blocks.append(block)
        }
        finalNorm = LayerNorm(p, "head.norm", dim: d)
        output = Linear(p, "head.proj", inFeatures: d, outFeatures: config.encoderDim)
        logScale = p.register("loss.log_scale", shape: [1], initializer: .zeros, group: 0)
        // The value is set after finalize (see `initializeLogScale`).
    }

    /// Sets log s to its configured initial value (call once after `params.finalize()`).
    public func initializeLogScale() { params.value(logScale)[0] = config.initialLogScale }

    /// Adds LoRA adapters to the Q/K/V/O projections of the cross-attention layers (`cross`) and/or of the
    /// self-attention layers (`selfAttention`), in parameter group `group`. Call before finalize.
    public func addLoRA(rank: Int, alpha: Float, cross: Bool, selfAttention: Bool, group: Int) {
        func add(_ layer: inout TransformerLayer, _ name: String) {
            layer.attention.addLoRA(params, name + ".attn", rank: rank, alpha: alpha, group: group)
        }
        let levelNames = ["coarse", "medium", "fine"]
        for x in blocks.indices {
            for g in blocks[x].cross.indices {
                if cross { add(&blocks[x].cross[g], "fusion.\(levelNames[x]).group\(g).cross") }
                if selfAttention {
                    for s in blocks[x].selfLayers[g].indices { add(&blocks[x].selfLayers[g][s], "fusion.\(levelNames[x]).group\(g).self\(s)") }
                }
            }
        }
        // Note: only the fusion blocks get LoRA (the paper's X_LoRA / S_LoRA); enrichment layers stay frozen.
    }

    /// Everything the forward pass keeps for backward.
    public final class State {
        let count: Int
        /// Real tokens only, packed back to back (rows where the batch's mask is 1).
        var molLayout = SequenceLayout(lengths: []), disLayout = SequenceLayout(lengths: []), sentenceLayout = SequenceLayout(lengths: [])
        var molIds: [Int32] = [], codeIds: [Int32] = []
        var criteria: [FloatPtr] = []           // per level, (sentence rows, E)
        var keyLayouts: [SequenceLayout] = []
        var molX: [FloatPtr] = [], molCaches: [TransformerCache] = []
        var disX: [FloatPtr] = [], disCaches: [TransformerCache] = []
        var projected: [FloatPtr] = [], projCaches: [LinearCache] = []
        var keys: [FloatPtr] = []
        /// dL/dU_M and dL/dU_D, allocated below the fusion activations, and the arena position after them:
        /// backward releases everything above it (fusion activations, the caller's loss buffers) before the
        /// enrichment layers' backward, whose temporaries then reuse that memory.
        var gUM: FloatPtr? = nil, gUD: FloatPtr? = nil
        var fusionStart: ActivationArena.Mark? = nil
        /// Per block, per grouping layer: cross cache (its queries are the centroids), self-layer inputs/caches, output.
        var crossCaches: [[TransformerCache]] = []
        var selfInputs: [[[FloatPtr]]] = [], selfCaches: [[[TransformerCache]]] = []
        var groupOutputs: [[FloatPtr]] = []
        var normCache: LayerNormCache? = nil
        var normOut: FloatPtr? = nil
        public var pooled: FloatPtr? = nil     // mean over tokens of U^{D,M}, (n, d)
        var outCache = LinearCache()
        public var fDM: FloatPtr? = nil        // (n, E)
        init(count: Int) { self.count = count }
    }

    /// The rows of a padded (n, L, width) array whose mask byte is 1, back to back, and their layout.
    static func pack<T>(_ values: [T], mask: [UInt8], batch n: Int, length l: Int, width w: Int) -> ([T], SequenceLayout) {
        var packed: [T] = []
        packed.reserveCapacity(values.count)
        for r in 0..<n * l where mask[r] != 0 { packed.append(contentsOf: values[(r * w)..<((r + 1) * w)]) }
        return (packed, SequenceLayout(mask: mask, batch: n, length: l))
    }

    /// Forward pass: returns the state; `state.fDM` is f_DM (n, E) and `state.pooled` mean(U^{D,M}) (n, d).
    /// Padding never enters the computation: each modality's real tokens are packed back to back
    /// (`SequenceLayout`), and attention runs within each trial's rows.
    public func forward(_ b: ModelBatch, arena: ActivationArena) -> State {
        let s = State(count: b.count)
        let p = params, d = config.dim, n = b.count, e = config.encoderDim
        let w = config.icdTableSizes.count + 1
        (s.molIds, s.molLayout) = Self.pack(b.molIds, mask: b.molMask, batch: n, length: b.molLength, width: 2)
        (s.codeIds, s.disLayout) = Self.pack(b.codeIds, mask: b.codeMask, batch: n, length: b.codeLength, width: w)
        let molL = s.molLayout, disL = s.disLayout
        // 1. Molecules: token + molecule-position embeddings -> self-attention layers.  x is (molecule rows, d)
        var x = arena.allocate(molL.rows * d)
        if molL.rows > 0 { s.molIds.withUnsafeBufferPointer { embeddingSumForward(p, tables: [molToken, molPosition], ids: $0.baseAddress!, rows: molL.rows, x) } }
        s.molX.append(x)
        for layer in molLayers {
            let y = arena.allocate(molL.rows * d)
            s.molCaches.append(layer.forward(p, x, keyMask: nil, layout: molL, y, arena: arena))
            x = y; s.molX.append(y)
        }
        // 2. Diseases: sum of ancestor embeddings per depth + category embedding -> self-attention layers.
        x = arena.allocate(disL.rows * d)
        if disL.rows > 0 { s.codeIds.withUnsafeBufferPointer { embeddingSumForward(p, tables: icdTables + [category], ids: $0.baseAddress!, rows: disL.rows, x) } }
        s.disX.append(x)
        for layer in disLayers {
            let y = arena.allocate(disL.rows * d)
            s.disCaches.append(layer.forward(p, x, keyMask: nil, layout: disL, y, arena: arena))
            x = y; s.disX.append(y)
        }
        let uM = s.molX.last!, uD = s.disX.last!
        s.gUM = arena.zeros(molL.rows * d); s.gUD = arena.zeros(disL.rows * d)
        s.fusionStart = arena.mark()
        // 3. Multi-level fusion. Criterion sentences of each level, packed: (sentence rows, E).
        let sentL = SequenceLayout(mask: b.sentenceMask, batch: n, length: b.sentenceLength)
        s.sentenceLayout = sentL
        var previous: FloatPtr? = nil
        let la = config.centroidCount(config.groupingLayers - 1)
        for level in 0..<ModelConfig.levels {
            let crit = arena.allocate(sentL.rows * e)
            b.criteria.withUnsafeBufferPointer { all in
                var row = 0
                for r in 0..<n * b.sentenceLength where b.sentenceMask[r] != 0 {
                    (crit + row * e).update(from: all.baseAddress! + (level * n * b.sentenceLength + r) * e, count: e)
                    row += 1
                }
            }
            s.criteria.append(crit)
            let pc = arena.allocate(sentL.rows * d)
            s.projCaches.append(levelProjection[level].forward(p, crit, pc, rows: sentL.rows, arena: arena))
            s.projected.append(pc)
            // K_x = [U_M; U_D; proj(U_x^C); A_{x-1}] per trial, each part plus its source-type embedding.  (key rows, d)
            let prevRows = previous == nil ? 0 : la
            let keyL = SequenceLayout(lengths: (0..<n).map { molL.length($0) + disL.length($0) + sentL.length($0) + prevRows })
            let keys = arena.allocate(keyL.rows * d)
            let t = p.value(blocks[level].typeEmbedding)
            for i in 0..<n {
                var at = keyL.rowOffsets[i]
                func put(_ src: ConstFloatPtr, rows: Int, type: Int) {
                    for r in 0..<rows { for c in 0..<d { keys[(at + r) * d + c] = src[r * d + c] + t[type * d + c] } }
                    at += rows
                }
                put(uM + molL.rowOffsets[i] * d, rows: molL.length(i), type: 0)
                put(uD + disL.rowOffsets[i] * d, rows: disL.length(i), type: 1)
                put(pc + sentL.rowOffsets[i] * d, rows: sentL.length(i), type: 2)
                if let prev = previous { put(prev + i * la * d, rows: la, type: 3) }
            }
            s.keys.append(keys); s.keyLayouts.append(keyL)
            // Grouping layers: centroids cross-attend to K_x (g = 0) or to the previous layer's tokens.
            var kv = ConstFloatPtr(keys), kvLayout = keyL
            var crossCaches: [TransformerCache] = [], inputs: [[FloatPtr]] = []
            var caches: [[TransformerCache]] = [], outputs: [FloatPtr] = []
            let block = blocks[level]
            for g in 0..<config.groupingLayers {
                let cg = config.centroidCount(g), layout = SequenceLayout(batch: n, length: cg)
                var y = arena.allocate(n * cg * d)
                crossCaches.append(block.cross[g].forward(p, p.value(block.centroids[g]), kv: kv, keyMask: nil, layout: layout,
                                                          keyLayout: kvLayout, sharedQueries: true, y, arena: arena))
                var gi: [FloatPtr] = [], gc: [TransformerCache] = []
                for layer in block.selfLayers[g] {
                    let z = arena.allocate(n * cg * d)
                    gi.append(y)
                    gc.append(layer.forward(p, y, keyMask: nil, layout: layout, z, arena: arena))
                    y = z
                }
                inputs.append(gi); caches.append(gc); outputs.append(y)
                kv = ConstFloatPtr(y); kvLayout = layout
            }
            s.crossCaches.append(crossCaches)
            s.selfInputs.append(inputs); s.selfCaches.append(caches); s.groupOutputs.append(outputs)
            previous = outputs.last!
        }
        // 4. U^{D,M} = LayerNorm(A_fine); f_DM = Linear(mean over tokens).
        let normOut = arena.allocate(n * la * d)
        s.normCache = finalNorm.forward(p, previous!, normOut, rows: n * la, arena: arena)
        s.normOut = normOut
        let pooled = arena.allocate(n * d)
        maskedMeanForward(normOut, mask: nil, batch: n, length: la, dim: d, pooled)
        s.pooled = pooled
        let f = arena.allocate(n * e)
        s.outCache = output.forward(p, pooled, f, rows: n, arena: arena)
        s.fDM = f
        return s
    }

    /// Backward pass from dL/df_DM (n, E) and/or dL/d pooled (n, d); accumulates parameter gradients.
    /// Once the fusion blocks are done it releases the arena down to the end of the enrichment layers'
    /// activations: what was allocated after `forward` (the loss buffers) must not be read after backward.
    public func backward(_ s: State, dFDM: ConstFloatPtr?, dPooled: ConstFloatPtr?, arena: ActivationArena) {
        let p = params, d = config.dim, n = s.count
        let molL = s.molLayout, disL = s.disLayout, sentL = s.sentenceLayout
        let la = config.centroidCount(config.groupingLayers - 1)
        let gPooled = arena.zeros(n * d)
        if let dFDM { output.backward(p, s.pooled!, s.outCache, dFDM, gPooled, rows: n, arena: arena) }
        if let dPooled { for i in 0..<n * d { gPooled[i] += dPooled[i] } }
        let gNorm = arena.zeros(n * la * d)
        maskedMeanBackward(gPooled, mask: nil, batch: n, length: la, dim: d, gNorm)
        var gA = arena.zeros(n * la * d)
        finalNorm.backward(p, s.groupOutputs.last!.last!, s.normCache!, gNorm, gA, rows: n * la)
        let gUM = s.gUM!, gUD = s.gUD!
        for level in stride(from: ModelConfig.levels - 1, through: 0, by: -1) {
            let block = blocks[level]
            var gY = gA
            for g in stride(from: config.groupingLayers - 1, through: 0, by: -1) {
                let cg = config.centroidCount(g)
                for k in stride(from: block.selfLayers[g].count - 1, through: 0, by: -1) {
                    backwardInPlace(gY, count: n * cg * d, arena: arena) { gIn in
                        block.selfLayers[g][k].backward(p, s.selfCaches[level][g][k], s.selfInputs[level][g][k], dy: gY, dx: gIn, arena: arena)
                    }
                }
                let kv: FloatPtr = g == 0 ? s.keys[level] : s.groupOutputs[level][g - 1]
                let kvRows = g == 0 ? s.keyLayouts[level].rows : n * config.centroidCount(g - 1)
                // Every trial's queries are the centroids: their gradient (summed over trials) goes straight to dC.
                let centroids = block.centroids[g]
                let gCentroids = p.isFrozen(centroids) ? arena.zeros(cg * d) : p.grad(centroids), gKV = arena.zeros(kvRows * d)
                block.cross[g].backward(p, s.crossCaches[level][g], p.value(centroids), kv: kv, dy: gY, dx: gCentroids, dkv: gKV, arena: arena)
                gY = gKV
            }
            // gY is dL/dK_x (key rows, d): split into the parts and the source-type embeddings.
            let keyL = s.keyLayouts[level]
            let gPC = arena.zeros(sentL.rows * d)
            let gPrev = level > 0 ? arena.zeros(n * la * d) : nil
            let trainableType = !p.isFrozen(block.typeEmbedding)
            let gt = p.grad(block.typeEmbedding)
            for i in 0..<n {
                var at = keyL.rowOffsets[i]
                func take(_ dst: FloatPtr, rows: Int, type: Int) {
                    for r in 0..<rows {
                        for c in 0..<d {
                            let v = gY[(at + r) * d + c]
                            dst[r * d + c] += v
                            if trainableType { gt[type * d + c] += v }
                        }
                    }
                    at += rows
                }
                take(gUM + molL.rowOffsets[i] * d, rows: molL.length(i), type: 0)
                take(gUD + disL.rowOffsets[i] * d, rows: disL.length(i), type: 1)
                take(gPC + sentL.rowOffsets[i] * d, rows: sentL.length(i), type: 2)
                if let gPrev { take(gPrev + i * la * d, rows: la, type: 3) }
            }
            levelProjection[level].backward(p, s.criteria[level], s.projCaches[level], gPC, nil, rows: sentL.rows, arena: arena)
            if let gPrev { gA = gPrev }
        }
        // Enrichment layers, then the embedding tables: skipped when frozen (fine-tuning puts LoRA only in
        // the fusion blocks), as nothing below them needs a gradient.
        if p.isFrozen(molToken.table) && p.isFrozen(icdTables[0].table) { return }
        arena.release(to: s.fusionStart!)
        for k in stride(from: disLayers.count - 1, through: 0, by: -1) {
            backwardInPlace(gUD, count: disL.rows * d, arena: arena) { gIn in
                disLayers[k].backward(p, s.disCaches[k], s.disX[k], dy: gUD, dx: gIn, arena: arena)
            }
        }
        if disL.rows > 0 { s.codeIds.withUnsafeBufferPointer { embeddingSumBackward(p, tables: icdTables + [category], ids: $0.baseAddress!, rows: disL.rows, gUD) } }
        for k in stride(from: molLayers.count - 1, through: 0, by: -1) {
            backwardInPlace(gUM, count: molL.rows * d, arena: arena) { gIn in
                molLayers[k].backward(p, s.molCaches[k], s.molX[k], dy: gUM, dx: gIn, arena: arena)
            }
        }
        if molL.rows > 0 { s.molIds.withUnsafeBufferPointer { embeddingSumBackward(p, tables: [molToken, molPosition], ids: $0.baseAddress!, rows: molL.rows, gUM) } }
    }

    /// Runs `body(dx)` with a zeroed temporary dx, then overwrites `gradient` (the layer's dy) with it and
    /// releases the temporary: a chain of layers needs one gradient buffer, not one per layer.
    func backwardInPlace(_ gradient: FloatPtr, count: Int, arena: ActivationArena, _ body: (FloatPtr) -> Void) {
        let start = arena.mark()
        let dx = arena.zeros(count)
        body(dx)
        gradient.update(from: dx, count: count)
        arena.release(to: start)
    }

    /// Forward FLOPs of one sample at the given padded lengths, counted from the layer shapes
    /// (2 per multiply-add of every matmul, attention scores and weighted sums included).
    public func forwardFLOPs(molLength lm: Int, codeLength lc: Int, sentenceLength ls: Int) -> Double {
        let d = Double(config.dim), e = Double(config.encoderDim)
        func selfLayer(_ l: Double) -> Double { 2 * l * (4 * d * d) + 2 * 2 * l * l * d + 2 * l * 8 * d * d }
        func crossLayer(_ q: Double, _ k: Double) -> Double { 2 * (2 * q * d * d + 2 * k * d * d) + 2 * 2 * q * k * d + 2 * q * 8 * d * d }
        var f = Double(config.molLayers) * selfLayer(Double(lm)) + Double(config.disLayers) * selfLayer(Double(lc))
        let la = Double(config.centroidCount(config.groupingLayers - 1))
        for level in 0..<ModelConfig.levels {
            f += 2 * Double(ls) * e * d
            var kv = Double(lm + lc + ls) + (level > 0 ? la : 0)
            for g in 0..<config.groupingLayers {
                let c = Double(config.centroidCount(g))
                f += crossLayer(c, kv) + Double(config.selfLayers) * selfLayer(c)
                kv = c
            }
        }
        return f + 2 * d * e
    }
}
