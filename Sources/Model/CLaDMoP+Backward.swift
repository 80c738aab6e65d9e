import NN

/// Called by `CLaDMoP.backward` with arena ranges of the gradient whose values are final for this pass (backward
/// writes nothing into them afterwards): the distributed step starts the all-reduce of a bucket once all of its
/// ranges were reported. Each parameter is reported exactly once per pass, whether it runs or is skipped.
public typealias GradientsReady = (Range<Int>) -> Void

extension CLaDMoP {
    /// Reports the ranges of the parameters `prefix` / `prefix.*` to `hook`.
    @inline(__always) func ready(_ prefix: String, _ hook: GradientsReady?) {
        guard let hook else { return }
        for r in params.ranges(prefix: prefix) { hook(r) }
    }

    /// Backward pass from dL/df_DM (n, E) and/or dL/d pooled (n, d); accumulates parameter gradients.
    /// `gradientsReady`, when given, hears of every parameter of the model (not `loss.log_scale`) once its
    /// gradient is final, in backward order (docs/performance.md, overlapped all-reduce).
    ///
    /// Arena rule: once the fusion blocks are done, backward releases the arena down to the end of the
    /// enrichment activations (`EnrichmentState.fusionStart`), so the enrichment backward reuses that memory.
    /// Everything the caller allocated after `forward` (loss buffers, dFDM itself) is therefore invalid after
    /// this call; dFDM and dPooled are read only before the release.
    public func backward(_ s: State, dFDM: ConstFloatPtr?, dPooled: ConstFloatPtr?, arena: ActivationArena,
                         gradientsReady hook: GradientsReady? = nil) {
        let p = params, d = config.dim, n = s.count
        let la = config.centroidCount(config.groupingLayers - 1)
        // Head: f_DM = W mean(U) + b, U = LayerNorm(A_fine).
        let gPooled = arena.zeros(n * d)
        if let dFDM { output.backward(p, s.outCache, s.pooled, dy: dFDM, dx: gPooled, rows: n, arena: arena) }
        ready("head.proj", hook)
        if let dPooled { for i in 0..<n * d { gPooled[i] += dPooled[i] } }
        let gNorm = arena.zeros(n * la * d)
        maskedMeanBackward(gPooled, mask: nil, batch: n, length: la, dim: d, gNorm)
        var gA = arena.zeros(n * la * d)
        finalNorm.backward(p, s.normCache, s.levels.last!.outputs.last!, dy: gNorm, dx: gA, rows: n * la)
        ready("head.norm", hook)
        for level in stride(from: ModelConfig.levels - 1, through: 0, by: -1) {
            if let gPrevious = fuseBackward(level: level, s, dA: gA, arena: arena, hook: hook) { gA = gPrevious }
        }
        // Enrichment layers, then the embedding tables: skipped when frozen (fine-tuning puts LoRA only in
        // the fusion blocks), as nothing below them needs a gradient.
        if p.isFrozen(molToken.table) && p.isFrozen(icdTables[0].table) {
            for prefix in enrichmentPrefixes { ready(prefix, hook) }
            return
        }
        arena.release(to: s.enrichment.fusionStart)
        enrichBackward(s.enrichment, arena: arena, hook: hook)
    }

    /// The enrichment's parameters (layers and embedding tables), as `ready` names them.
    var enrichmentPrefixes: [String] {
        disLayers.indices.map { "dis.layer\($0)" } + icdTables.indices.map { "dis.icd_depth\($0 + 1)" } + ["dis.category"]
            + molLayers.indices.map { "mol.layer\($0)" } + ["mol.token", "mol.position"]
    }

    /// Backward of one fusion level from dL/dA_x (trials x c_last, d): grouping layers, the split of dL/dK_x
    /// into U_M, U_D (accumulated into the enrichment's gUM, gUD), the projected sentences and A_{x-1}.
    /// Returns dL/dA_{x-1} (nil for the first level).
    func fuseBackward(level: Int, _ s: State, dA: FloatPtr, arena: ActivationArena, hook: GradientsReady?) -> FloatPtr? {
        let p = params, d = config.dim, n = s.count, ls = s.levels[level]
        let molL = s.enrichment.molLayout, disL = s.enrichment.disLayout, sentL = s.sentenceLayout
        let la = config.centroidCount(config.groupingLayers - 1)
        let block = blocks[level]
        let name = "fusion.\(ModelConfig.levelNames[level])"
        var gY = dA
        for g in stride(from: config.groupingLayers - 1, through: 0, by: -1) {
            let cg = config.centroidCount(g)
            for k in stride(from: block.selfLayers[g].count - 1, through: 0, by: -1) {
                backwardInPlace(gY, count: n * cg * d, arena: arena) { gIn in
                    block.selfLayers[g][k].backward(p, ls.selfCaches[g][k], ls.selfInputs[g][k], dy: gY, dx: gIn, arena: arena)
                }
                ready("\(name).group\(g).self\(k)", hook)
            }
            let kv: FloatPtr = g == 0 ? ls.keys : ls.outputs[g - 1]
            let kvRows = g == 0 ? ls.keyLayout.rows : n * config.centroidCount(g - 1)
            // Every trial's queries are the centroids: their gradient (summed over trials) goes straight to dC.
            let centroids = block.centroids[g]
            let gCentroids = p.isFrozen(centroids) ? arena.zeros(cg * d) : p.grad(centroids), gKV = arena.zeros(kvRows * d)
            block.cross[g].backward(p, ls.crossCaches[g], p.value(centroids), kv: kv, dy: gY, dx: gCentroids, dkv: gKV, arena: arena)
            ready("\(name).group\(g).cross", hook)
            ready("\(name).group\(g).centroids", hook)
            gY = gKV
        }
        // gY is dL/dK_x (key rows, d): split into the parts and the source-type embeddings.
        let gUM = s.enrichment.gUM, gUD = s.enrichment.gUD
        let gPC = arena.zeros(sentL.rows * d)
        let gPrev = level > 0 ? arena.zeros(n * la * d) : nil
        let trainableType = !p.isFrozen(block.typeEmbedding)
        let gt = p.grad(block.typeEmbedding)
        for i in 0..<n {
            var at = ls.keyLayout.rowOffsets[i]
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
        ready("\(name).source_type", hook)
        levelProjection[level].backward(p, ls.projCache, ls.criteria, dy: gPC, dx: nil, rows: sentL.rows, arena: arena)
        ready("\(name).proj", hook)
        return gPrev
    }

    /// Backward of the disease and molecule enrichment from gUM, gUD (in place), into the embedding tables.
    func enrichBackward(_ en: EnrichmentState, arena: ActivationArena, hook: GradientsReady?) {
        let p = params, d = config.dim
        let molL = en.molLayout, disL = en.disLayout, gUM = en.gUM, gUD = en.gUD
        for k in stride(from: disLayers.count - 1, through: 0, by: -1) {
            backwardInPlace(gUD, count: disL.rows * d, arena: arena) { gIn in
                disLayers[k].backward(p, en.disCaches[k], en.disX[k], dy: gUD, dx: gIn, arena: arena)
            }
            ready("dis.layer\(k)", hook)
        }
        if disL.rows > 0 { en.codeIds.withUnsafeBufferPointer { embeddingSumBackward(p, tables: icdTables + [category], ids: $0.baseAddress!, rows: disL.rows, gUD) } }
        for t in icdTables.indices { ready("dis.icd_depth\(t + 1)", hook) }
        ready("dis.category", hook)
        for k in stride(from: molLayers.count - 1, through: 0, by: -1) {
            backwardInPlace(gUM, count: molL.rows * d, arena: arena) { gIn in
                molLayers[k].backward(p, en.molCaches[k], en.molX[k], dy: gUM, dx: gIn, arena: arena)
            }
            ready("mol.layer\(k)", hook)
        }
        if molL.rows > 0 { en.molIds.withUnsafeBufferPointer { embeddingSumBackward(p, tables: [molToken, molPosition], ids: $0.baseAddress!, rows: molL.rows, gUM) } }
        ready("mol.token", hook)
        ready("mol.position", hook)
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
}
