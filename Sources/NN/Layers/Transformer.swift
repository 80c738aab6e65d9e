/// What `FeedForward.forward` keeps (GELU(hidden) is recomputed in backward).
public struct FeedForwardCache { public var hidden: FloatPtr; public var c1, c2: LinearCache }

/// FFN(x) = W2 GELU(W1 x + b1) + b2, hidden width `hiddenDim` (4d in CLaDMoP).
public struct FeedForward {
    public let dim: Int
    public let hiddenDim: Int
    public var fc1, fc2: Linear

    public init(_ params: ParameterArena, _ name: String, dim: Int, hiddenDim: Int, group: Int = 0) {
        self.dim = dim; self.hiddenDim = hiddenDim
        fc1 = Linear(params, "\(name).fc1", inFeatures: dim, outFeatures: hiddenDim, group: group)
        fc2 = Linear(params, "\(name).fc2", inFeatures: hiddenDim, outFeatures: dim, group: group)
    }

    /// x (N, d) -> y (N, d).
    public func forward(_ p: ParameterArena, _ x: ConstFloatPtr, _ y: FloatPtr, rows n: Int,
                        arena: ActivationArena) -> FeedForwardCache {
        let hidden = arena.allocate(n * hiddenDim)
        let c1 = fc1.forward(p, x, hidden, rows: n, arena: arena)
        let scratch = arena.scratch, start = scratch.mark()
        defer { scratch.release(to: start) }
        let act = scratch.allocate(n * hiddenDim)
        geluForward(hidden, act, count: n * hiddenDim)
        let c2 = fc2.forward(p, act, y, rows: n, arena: arena)
        return FeedForwardCache(hidden: hidden, c1: c1, c2: c2)
    }

    /// Accumulates dx += dFFN/dx^T dy and the parameter gradients. x, dy, dx: (N, d).
    public func backward(_ p: ParameterArena, _ c: FeedForwardCache, _ x: ConstFloatPtr, dy: ConstFloatPtr,
                         dx: FloatPtr, rows n: Int, arena: ActivationArena) {
        let act = arena.allocate(n * hiddenDim), dAct = arena.zeros(n * hiddenDim), dHidden = arena.allocate(n * hiddenDim)
        geluForwardWithDerivative(c.hidden, act, dHidden, count: n * hiddenDim)     // dHidden holds GELU'(hidden) first
        fc2.backward(p, c.c2, act, dy: dy, dx: dAct, rows: n, arena: arena)
        for i in 0..<n * hiddenDim { dHidden[i] *= dAct[i] }
        fc1.backward(p, c.c1, x, dy: dHidden, dx: dx, rows: n, arena: arena)
    }
}

/// What `TransformerLayer.forward` keeps (the LayerNorm outputs are recomputed in backward).
public struct TransformerCache {
    public var ln1: LayerNormCache, lnKV: LayerNormCache?
    public var attn: AttentionCache
    public var mid: FloatPtr                 // x + MHA(...), (rows, d)
    public var ln2: LayerNormCache
    public var ffn: FeedForwardCache
}

/// Pre-LN transformer layer.
/// Self-attention: x = x + MHA(LN1(x)); x = x + FFN(LN2(x)).
/// Cross-attention (Perceiver style): q = q + MHA(LN_q(q), LN_kv(kv)); q = q + FFN(LN2(q)).
public struct TransformerLayer {
    public let dim: Int
    public let isCross: Bool
    public var ln1: LayerNorm
    public var lnKV: LayerNorm?
    public var attention: MultiHeadAttention
    public var ln2: LayerNorm
    public var ffn: FeedForward

    public init(_ params: ParameterArena, _ name: String, dim: Int, heads: Int, ffnDim: Int,
                cross: Bool = false, group: Int = 0) {
        self.dim = dim; isCross = cross
        ln1 = LayerNorm(params, "\(name).ln_q", dim: dim, group: group)
        lnKV = cross ? LayerNorm(params, "\(name).ln_kv", dim: dim, group: group) : nil
        attention = MultiHeadAttention(params, "\(name).attn", dim: dim, heads: heads, group: group)
        ln2 = LayerNorm(params, "\(name).ln_ffn", dim: dim, group: group)
        ffn = FeedForward(params, "\(name).ffn", dim: dim, hiddenDim: ffnDim, group: group)
    }

    /// x (rows of `layout`, d) -> y (same rows). Cross layers read keys/values from kv (rows of `keyLayout`, d)
    /// with keyMask (a byte per kv row, or nil); self layers attend within each sequence of x.
    /// `sharedQueries` (cross layers): x is one sequence of L rows that every sequence of `layout` (all of
    /// length L) starts from, such as learned centroids; LN_q and the query projection run on those L rows once.
    public func forward(_ p: ParameterArena, _ x: ConstFloatPtr, kv: ConstFloatPtr? = nil, keyMask: UnsafePointer<UInt8>?,
                        layout: SequenceLayout, keyLayout: SequenceLayout? = nil, sharedQueries: Bool = false, _ y: FloatPtr,
                        arena: ActivationArena) -> TransformerCache {
        precondition(!sharedQueries || isCross, "shared queries are for cross-attention layers")
        let n = layout.rows, d = dim, xRows = sharedQueries ? layout.maxLength : n
        let keys = isCross ? keyLayout! : layout
        let scratch = arena.scratch, start = scratch.mark()
        defer { scratch.release(to: start) }
        let ln1Out = scratch.allocate(xRows * d)
        let ln1c = ln1.forward(p, x, ln1Out, rows: xRows, arena: arena)
        var kvOut: FloatPtr? = nil
        var lnKVc: LayerNormCache? = nil
        if isCross {
            kvOut = scratch.allocate(keys.rows * d)
            lnKVc = lnKV!.forward(p, kv!, kvOut!, rows: keys.rows, arena: arena)
        }
        let mid = arena.allocate(n * d)
        let ac = attention.forward(p, xq: ln1Out, xkv: kvOut.map { ConstFloatPtr($0) } ?? ConstFloatPtr(ln1Out),
                                   keyMask: keyMask, queries: layout, keys: keys, sharedQueries: sharedQueries, mid, arena: arena)
        for r in stride(from: 0, to: n, by: max(xRows, 1)) { for i in 0..<xRows * d { mid[r * d + i] += x[i] } }
        let ln2Out = scratch.allocate(n * d)
        let ln2c = ln2.forward(p, mid, ln2Out, rows: n, arena: arena)
        let fc = ffn.forward(p, ln2Out, y, rows: n, arena: arena)
        for i in 0..<n * d { y[i] += mid[i] }
        return TransformerCache(ln1: ln1c, lnKV: lnKVc, attn: ac, mid: mid, ln2: ln2c, ffn: fc)
    }

    /// Padded batch: x (B, Lq, d), kv (B, Lk, d), keyMask (B, Lk) (self layers: (B, Lq)) -> y (B, Lq, d).
    public func forward(_ p: ParameterArena, _ x: ConstFloatPtr, kv: ConstFloatPtr? = nil,
                        keyMask: UnsafePointer<UInt8>?, batch: Int, length lq: Int, keyLength: Int? = nil,
                        _ y: FloatPtr, arena: ActivationArena) -> TransformerCache {
        forward(p, x, kv: kv, keyMask: keyMask, layout: SequenceLayout(batch: batch, length: lq),
                keyLayout: isCross ? SequenceLayout(batch: batch, length: keyLength!) : nil, y, arena: arena)
    }

    /// Accumulates dx (rows of x, d) and, for cross layers, dkv (rows of kv, d).
    public func backward(_ p: ParameterArena, _ c: TransformerCache, _ x: ConstFloatPtr, kv: ConstFloatPtr? = nil,
                         dy: ConstFloatPtr, dx: FloatPtr, dkv: FloatPtr? = nil, arena: ActivationArena) {
        let n = c.attn.queries.rows, nk = c.attn.keys.rows, d = dim, xRows = c.attn.sharedQueryRows ?? n
        // Temporaries of this layer's backward are released at the end (dx and dkv belong to the caller).
        let start = arena.mark()
        defer { arena.release(to: start) }
        // y = mid + FFN(LN2(mid))
        let dMid = arena.allocate(n * d)
        dMid.update(from: dy, count: n * d)
        let dLn2 = arena.zeros(n * d), ln2Out = arena.allocate(n * d)
        ln2.recompute(p, c.mid, c.ln2, ln2Out, rows: n)
        ffn.backward(p, c.ffn, ln2Out, dy: dy, dx: dLn2, rows: n, arena: arena)
        ln2.backward(p, c.ln2, c.mid, dy: dLn2, dx: dMid, rows: n)
        // mid = x + MHA(LN1(x), kv')
        for r in stride(from: 0, to: n, by: max(xRows, 1)) { for i in 0..<xRows * d { dx[i] += dMid[r * d + i] } }
        let dLn1 = arena.zeros(xRows * d), ln1Out = arena.allocate(xRows * d)
        ln1.recompute(p, x, c.ln1, ln1Out, rows: xRows)
        if isCross {
            let dKVOut = arena.zeros(nk * d), kvOut = arena.allocate(nk * d)
            lnKV!.recompute(p, kv!, c.lnKV!, kvOut, rows: nk)
            attention.backward(p, c.attn, ln1Out, kv: kvOut, dy: dMid, dx: dLn1, dkv: dKVOut, arena: arena)
            lnKV!.backward(p, c.lnKV!, kv!, dy: dKVOut, dx: dkv ?? arena.zeros(nk * d), rows: nk)
        } else {
            attention.backward(p, c.attn, ln1Out, kv: ln1Out, dy: dMid, dx: dLn1, dkv: dLn1, arena: arena)
        }
        ln1.backward(p, c.ln1, x, dy: dLn1, dx: dx, rows: xRows)
    }
}
