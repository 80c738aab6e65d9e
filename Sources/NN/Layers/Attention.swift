import Foundation

/// What `MultiHeadAttention.forward` keeps for backward.
public struct AttentionCache {
    public var queries, keys: SequenceLayout
    public var q, k, v: FloatPtr          // (query rows or the shared rows, d), (key rows, d), (key rows, d)
    public var keyKeep: FloatPtr?         // (key rows) 1 for a real key, 0 for a masked one; nil: all real
    public var lse: FloatPtr              // (query rows, h) log-sum-exp of each softmax row (P is recomputed)
    public var sharedQueryRows: Int?      // xq's rows when every sequence shares them (see `forward`)
    public var hasRelativeBias = false    // forward added a relative bias: backward would be wrong (forward only)
    public var qc, kc, vc, oc: LinearCache
}

/// Multi-head attention, self or cross, over a batch of sequences: sequence i's queries are its rows of xq
/// (layout `queries`), its keys and values its rows of xkv (layout `keys`; the same for self-attention).
/// For each head: P = softmax(Q_h K_h^T / sqrt(d_h) (+ R_h, a bias by relative position, forward only) + mask),
/// O_h = P V_h, out = concat(O_h) W_o^T + b_o.
/// `keyMask` (a byte per key row, or nil) has 1 for real keys; a query without keys gets P = 0 (out = b_o).
public struct MultiHeadAttention {
    public let dim: Int
    public let heads: Int
    public let headDim: Int
    public var query, key, value, output: Linear

    public init(_ params: ParameterArena, _ name: String, dim: Int, heads: Int, group: Int = 0) {
        precondition(dim % heads == 0, "\(name): dim \(dim) not divisible by heads \(heads)")
        self.dim = dim; self.heads = heads; headDim = dim / heads
        query = Linear(params, "\(name).q", inFeatures: dim, outFeatures: dim, group: group)
        key = Linear(params, "\(name).k", inFeatures: dim, outFeatures: dim, group: group)
        value = Linear(params, "\(name).v", inFeatures: dim, outFeatures: dim, group: group)
        output = Linear(params, "\(name).o", inFeatures: dim, outFeatures: dim, group: group)
    }

    /// Adds LoRA adapters to the Q, K, V and O projections.
    public mutating func addLoRA(_ params: ParameterArena, _ name: String, rank: Int, alpha: Float, group: Int) {
        query.addLoRA(params, "\(name).q", rank: rank, alpha: alpha, group: group)
        key.addLoRA(params, "\(name).k", rank: rank, alpha: alpha, group: group)
        value.addLoRA(params, "\(name).v", rank: rank, alpha: alpha, group: group)
        output.addLoRA(params, "\(name).o", rank: rank, alpha: alpha, group: group)
    }

    /// xq (query rows, d), xkv (key rows, d) -> out (query rows, d).
    /// `sharedQueries`: every sequence of `queries` has the same length L and the same query inputs, the L rows
    /// of xq (learned latent queries such as centroids); Q = xq W_q^T + b_q is computed and kept once.
    public func forward(_ p: ParameterArena, xq: ConstFloatPtr, xkv: ConstFloatPtr, keyMask: UnsafePointer<UInt8>?,
                        queries: SequenceLayout, keys: SequenceLayout, sharedQueries: Bool = false,
                        relativeBias: RelativeBias? = nil, _ out: FloatPtr, arena: ActivationArena) -> AttentionCache {
        let d = dim, nq = queries.rows, nk = keys.rows
        let shared = sharedQueries ? queries.maxLength : nil
        precondition(shared == nil || nq == queries.count * shared!, "shared queries need sequences of equal length")
        let q = arena.allocate((shared ?? nq) * d), k = arena.allocate(nk * d), v = arena.allocate(nk * d)
        let qc = query.forward(p, xq, q, rows: shared ?? nq, arena: arena)
        let kc = key.forward(p, xkv, k, rows: nk, arena: arena)
        let vc = value.forward(p, xkv, v, rows: nk, arena: arena)
        var keyKeep: FloatPtr? = nil
        if let keyMask {
            let keep = arena.allocate(nk)
            for j in 0..<nk { keep[j] = keyMask[j] != 0 ? 1 : 0 }
            keyKeep = keep
        }
        // The heads' outputs (query rows, d) are the output projection's input; backward recomputes them.
        let lse = arena.allocate(nq * heads)
        let scratch = arena.scratch, start = scratch.mark()
        defer { scratch.release(to: start) }
        let context = scratch.allocate(nq * d)
        attentionForward(heads: heads, headDim: headDim, queries: queries, keys: keys, sharedQueries: shared != nil, q: q, k: k, v: v,
                         keyKeep: keyKeep, scale: 1 / Float(headDim).squareRoot(), relativeBias: relativeBias, lse: lse, context: context,
                         arena: scratch)
        let oc = output.forward(p, context, out, rows: nq, arena: arena)
        return AttentionCache(queries: queries, keys: keys, q: q, k: k, v: v, keyKeep: keyKeep, lse: lse,
                              sharedQueryRows: shared, hasRelativeBias: relativeBias != nil, qc: qc, kc: kc, vc: vc, oc: oc)
    }

    /// Padded batch: xq (B, Lq, d), xkv (B, Lk, d), keyMask (B, Lk) -> out (B, Lq, d). `relativeBias` (MPNet's
    /// bias by relative position, added to every score) makes the cache unfit for `backward`: forward only.
    public func forward(_ p: ParameterArena, xq: ConstFloatPtr, xkv: ConstFloatPtr, keyMask: UnsafePointer<UInt8>?,
                        batch: Int, queryLength lq: Int, keyLength lk: Int, relativeBias: RelativeBias? = nil, _ out: FloatPtr,
                        arena: ActivationArena) -> AttentionCache {
        forward(p, xq: xq, xkv: xkv, keyMask: keyMask, queries: SequenceLayout(batch: batch, length: lq),
                keys: SequenceLayout(batch: batch, length: lk), relativeBias: relativeBias, out, arena: arena)
    }

    /// Accumulates into dx (query rows, d; with shared queries xq's rows, each the sum over the sequences) and
    /// dkv (key rows, d) (they may be the same buffer for self-attention) and into the parameter gradients.
    /// xq (query rows, d), xkv (key rows, d), dy (query rows, d).
    public func backward(_ p: ParameterArena, _ c: AttentionCache, _ xq: ConstFloatPtr, kv xkv: ConstFloatPtr, dy dout: ConstFloatPtr,
                         dx dxq: FloatPtr?, dkv dxkv: FloatPtr?, arena: ActivationArena) {
        precondition(!c.hasRelativeBias, "attention with a relative bias is forward only")
        let d = dim, nq = c.queries.rows, nk = c.keys.rows
        let dContext = arena.zeros(nq * d)
        output.backwardInput(p, c.oc, dy: dout, dx: dContext, rows: nq, arena: arena)
        let context = arena.allocate(nq * d)
        let dq = arena.allocate(nq * d), dk = arena.allocate(nk * d), dv = arena.allocate(nk * d)
        attentionBackward(heads: heads, headDim: headDim, queries: c.queries, keys: c.keys, sharedQueries: c.sharedQueryRows != nil,
                          q: c.q, k: c.k, v: c.v,
                          keyKeep: c.keyKeep, lse: c.lse, dContext: dContext, scale: 1 / Float(headDim).squareRoot(),
                          context: context, dq: dq, dk: dk, dv: dv, arena: arena)
        output.backwardParameters(p, c.oc, context, dy: dout, rows: nq, arena: arena)
        if let shared = c.sharedQueryRows {    // dQ of the shared rows: the sum over the sequences
            for i in 1..<max(c.queries.count, 1) {
                let di = dq + i * shared * d
                for j in 0..<shared * d { dq[j] += di[j] }
            }
        }
        // Shared queries: dQ is a sum over this rank's sequences, a part of the sum over the global batch that the
        // all-reduce completes; rounded to bf16 here it would give each world size (and chunk size) its own rounding
        // (bf16 W = 2 against W = 1: 8e-5 on the first step's gradient, 6e-4 on the parameters after 20 steps). In fp32
        // the query projection's backward is linear in the partial sums (SPEC 9: every reduction stays fp32).
        query.backward(p, c.qc, xq, dy: dq, dx: dxq, rows: c.sharedQueryRows ?? nq, arena: arena,
                       precision: c.sharedQueryRows != nil ? .fp32 : nil)
        // The key bias adds q . b_k to every score of a query's row, a constant that softmax removes: its
        // gradient is exactly 0 (the row sums of dS are 0). Summing dK would only accumulate rounding noise,
        // which Adam then amplifies into a random walk that differs between world sizes.
        key.backward(p, c.kc, xkv, dy: dk, dx: dxkv, rows: nk, arena: arena, biasGradientIsZero: true)
        value.backward(p, c.vc, xkv, dy: dv, dx: dxkv, rows: nk, arena: arena)
    }
}
