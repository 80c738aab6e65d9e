import NN

/// What the molecule and disease enrichment keep for backward. Real tokens only, packed back to back (the
/// rows where the batch's mask is 1); U_M = molX.last (molecule rows, d), U_D = disX.last (code rows, d).
struct EnrichmentState {
    let molLayout: SequenceLayout, disLayout: SequenceLayout
    let molIds: [Int32], codeIds: [Int32]
    /// Inputs of every layer and the output (layers + 1 buffers each).
    let molX: [FloatPtr], disX: [FloatPtr]
    let molCaches: [TransformerCache], disCaches: [TransformerCache]
    /// dL/dU_M and dL/dU_D (zeroed), allocated below the fusion activations, and the arena position after
    /// them: backward releases everything above it before the enrichment layers' backward.
    let gUM: FloatPtr, gUD: FloatPtr
    let fusionStart: ActivationArena.Mark
}

/// What one grouping block (one level) keeps for backward.
struct FusionLevelState {
    /// The level's criterion sentence vectors (sentence rows, E), their projection's cache.
    let criteria: FloatPtr
    let projCache: LinearCache
    /// K_x (key rows, d) and its per-trial layout.
    let keys: FloatPtr
    let keyLayout: SequenceLayout
    /// Per grouping layer: the cross layer's cache (its queries are the centroids), the self layers' inputs and
    /// caches, the layer's output (trials x c_g, d).
    let crossCaches: [TransformerCache]
    let selfInputs: [[FloatPtr]], selfCaches: [[TransformerCache]]
    let outputs: [FloatPtr]
}

extension CLaDMoP {
    /// Everything the forward pass keeps for backward.
    public struct State {
        let count: Int
        let enrichment: EnrichmentState
        let sentenceLayout: SequenceLayout
        let levels: [FusionLevelState]
        let normCache: LayerNormCache
        let outCache: LinearCache
        /// mean over tokens of U^{D,M}, (n, d).
        public let pooled: FloatPtr
        /// f_DM, (n, E).
        public let fDM: FloatPtr
    }

    /// The rows of a padded (n, L, width) array whose mask byte is 1, back to back, and their layout.
    static func pack<T>(_ values: [T], mask: [UInt8], batch n: Int, length l: Int, width w: Int) -> ([T], SequenceLayout) {
        var packed: [T] = []
        packed.reserveCapacity(values.count)
        for r in 0..<n * l where mask[r] != 0 { packed.append(contentsOf: values[(r * w)..<((r + 1) * w)]) }
        return (packed, SequenceLayout(mask: mask, batch: n, length: l))
    }

    /// Forward pass: f_DM (n, E) and mean(U^{D,M}) (n, d), and what backward needs.
    /// Padding never enters the computation: each modality's real tokens are packed back to back
    /// (`SequenceLayout`), and attention runs within each trial's rows.
    public func forward(_ b: ModelBatch, arena: ActivationArena) -> State {
        let p = params, d = config.dim, n = b.count, e = config.encoderDim
        let enrichment = enrich(b, arena: arena)
        let sentL = SequenceLayout(mask: b.sentenceMask, batch: n, length: b.sentenceLength)
        var levels: [FusionLevelState] = []
        var previous: FloatPtr? = nil
        for level in 0..<ModelConfig.levels {
            levels.append(fuse(level: level, b, enrichment, sentences: sentL, previous: previous, arena: arena))
            previous = levels[level].outputs.last!
        }
        // U^{D,M} = LayerNorm(A_fine); f_DM = Linear(mean over tokens).
        let la = config.centroidCount(config.groupingLayers - 1)
        let normOut = arena.allocate(n * la * d)
        let normCache = finalNorm.forward(p, previous!, normOut, rows: n * la, arena: arena)
        let pooled = arena.allocate(n * d)
        maskedMeanForward(normOut, mask: nil, batch: n, length: la, dim: d, pooled)
        let f = arena.allocate(n * e)
        let outCache = output.forward(p, pooled, f, rows: n, arena: arena)
        return State(count: n, enrichment: enrichment, sentenceLayout: sentL, levels: levels, normCache: normCache,
                     outCache: outCache, pooled: pooled, fDM: f)
    }

    /// 1. Molecules: token + molecule-position embeddings -> self-attention layers.
    /// 2. Diseases: sum of ancestor embeddings per depth + category embedding -> self-attention layers.
    func enrich(_ b: ModelBatch, arena: ActivationArena) -> EnrichmentState {
        let p = params, d = config.dim, n = b.count
        let w = config.icdTableSizes.count + 1
        let (molIds, molL) = Self.pack(b.molIds, mask: b.molMask, batch: n, length: b.molLength, width: 2)
        let (codeIds, disL) = Self.pack(b.codeIds, mask: b.codeMask, batch: n, length: b.codeLength, width: w)
        func run(_ layers: [TransformerLayer], tables: [Embedding], ids: [Int32], layout: SequenceLayout)
            -> ([FloatPtr], [TransformerCache]) {
            var x = arena.allocate(layout.rows * d)        // (rows, d)
            if layout.rows > 0 { ids.withUnsafeBufferPointer { embeddingSumForward(p, tables: tables, ids: $0.baseAddress!, rows: layout.rows, x) } }
            var xs = [x], caches: [TransformerCache] = []
            for layer in layers {
                let y = arena.allocate(layout.rows * d)
                caches.append(layer.forward(p, x, keyMask: nil, layout: layout, y, arena: arena))
                x = y; xs.append(y)
            }
            return (xs, caches)
        }
        let (molX, molCaches) = run(molLayers, tables: [molToken, molPosition], ids: molIds, layout: molL)
        let (disX, disCaches) = run(disLayers, tables: icdTables + [category], ids: codeIds, layout: disL)
        let gUM = arena.zeros(molL.rows * d), gUD = arena.zeros(disL.rows * d)
        return EnrichmentState(molLayout: molL, disLayout: disL, molIds: molIds, codeIds: codeIds, molX: molX, disX: disX,
                               molCaches: molCaches, disCaches: disCaches, gUM: gUM, gUD: gUD, fusionStart: arena.mark())
    }

    /// 3. One level of the multi-level fusion: the level's criterion sentences projected to d, the keys
    /// K_x = [U_M; U_D; proj(U_x^C); A_{x-1}] per trial (each part plus its source-type embedding), then the
    /// grouping layers: centroids cross-attend to K_x (g = 0) or to the previous layer's tokens, then S
    /// self-attention layers.
    func fuse(level: Int, _ b: ModelBatch, _ en: EnrichmentState, sentences sentL: SequenceLayout, previous: FloatPtr?,
              arena: ActivationArena) -> FusionLevelState {
        let p = params, d = config.dim, n = b.count, e = config.encoderDim
        let molL = en.molLayout, disL = en.disLayout, uM = en.molX.last!, uD = en.disX.last!
        let la = config.centroidCount(config.groupingLayers - 1)
        let crit = arena.allocate(sentL.rows * e)           // (sentence rows, E)
        b.criteria.withUnsafeBufferPointer { all in
            var row = 0
            for r in 0..<n * b.sentenceLength where b.sentenceMask[r] != 0 {
                (crit + row * e).update(from: all.baseAddress! + (level * n * b.sentenceLength + r) * e, count: e)
                row += 1
            }
        }
        let pc = arena.allocate(sentL.rows * d)             // (sentence rows, d)
        let projCache = levelProjection[level].forward(p, crit, pc, rows: sentL.rows, arena: arena)
        let prevRows = previous == nil ? 0 : la
        let keyL = SequenceLayout(lengths: (0..<n).map { molL.length($0) + disL.length($0) + sentL.length($0) + prevRows })
        let keys = arena.allocate(keyL.rows * d)            // (key rows, d)
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
        var kv = ConstFloatPtr(keys), kvLayout = keyL
        var crossCaches: [TransformerCache] = [], inputs: [[FloatPtr]] = []
        var caches: [[TransformerCache]] = [], outputs: [FloatPtr] = []
        let block = blocks[level]
        for g in 0..<config.groupingLayers {
            let cg = config.centroidCount(g), layout = SequenceLayout(batch: n, length: cg)
            var y = arena.allocate(n * cg * d)              // (trials x c_g, d)
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
        return FusionLevelState(criteria: crit, projCache: projCache, keys: keys, keyLayout: keyL, crossCaches: crossCaches,
                                selfInputs: inputs, selfCaches: caches, outputs: outputs)
    }
}
