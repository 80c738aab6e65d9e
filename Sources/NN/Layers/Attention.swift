import Foundation

/// What `MultiHeadAttention.forward` keeps for backward.
public struct AttentionCache {
    public var q, k, v: FloatPtr          // (B, Lq, d), (B, Lk, d), (B, Lk, d)
    public var probs: FloatPtr            // (B, h, Lq, Lk) softmax weights, 0 on masked keys
    public var context: FloatPtr          // (B, Lq, d) heads concatenated, input of the output projection
    public var qc, kc, vc, oc: LinearCache
}

/// Multi-head attention, self or cross: queries from xq (B, Lq, d), keys and values from xkv (B, Lk, d).
/// For each head: P = softmax(Q_h K_h^T / sqrt(d_h) + mask), O_h = P V_h, out = concat(O_h) W_o^T + b_o.
/// `keyMask` (B, Lk) has 1 for real keys; a query whose keys are all masked gets P = 0 (out = b_o).
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

    /// xq (B, Lq, d), xkv (B, Lk, d) -> out (B, Lq, d).
    public func forward(_ p: ParameterArena, xq: ConstFloatPtr, xkv: ConstFloatPtr, keyMask: UnsafePointer<UInt8>?,
                        batch: Int, queryLength lq: Int, keyLength lk: Int, _ out: FloatPtr,
                        arena: ActivationArena) -> AttentionCache {
        let d = dim, hd = headDim
        let q = arena.allocate(batch * lq * d), k = arena.allocate(batch * lk * d), v = arena.allocate(batch * lk * d)
        let qc = query.forward(p, xq, q, rows: batch * lq, arena: arena)
        let kc = key.forward(p, xkv, k, rows: batch * lk, arena: arena)
        let vc = value.forward(p, xkv, v, rows: batch * lk, arena: arena)
        let probs = arena.allocate(batch * heads * lq * lk)
        let context = arena.allocate(batch * lq * d)
        let scale = 1 / Float(hd).squareRoot()
        for b in 0..<batch {
            let mask = keyMask.map { $0 + b * lk }
            for h in 0..<heads {
                let qbh = q + b * lq * d + h * hd, kbh = k + b * lk * d + h * hd, vbh = v + b * lk * d + h * hd
                let pbh = probs + (b * heads + h) * lq * lk
                // S = scale Q_h K_h^T, (Lq, Lk)
                sgemm(transB: true, m: lq, n: lk, k: hd, alpha: scale, a: qbh, lda: d, b: kbh, ldb: d, c: pbh)
                maskedSoftmaxRows(pbh, rows: lq, cols: lk, mask: mask)
                // O_h = P V_h, written into the head's columns of context
                sgemm(m: lq, n: hd, k: lk, a: pbh, b: vbh, ldb: d, c: context + b * lq * d + h * hd, ldc: d)
            }
        }
        let oc = output.forward(p, context, out, rows: batch * lq, arena: arena)
        return AttentionCache(q: q, k: k, v: v, probs: probs, context: context, qc: qc, kc: kc, vc: vc, oc: oc)
    }

    /// Accumulates into dxq (B, Lq, d) and dxkv (B, Lk, d) (they may be the same buffer for
    /// self-attention) and into the parameter gradients.
    public func backward(_ p: ParameterArena, _ c: AttentionCache, xq: ConstFloatPtr, xkv: ConstFloatPtr,
                         batch: Int, queryLength lq: Int, keyLength lk: Int, dout: ConstFloatPtr,
                         dxq: FloatPtr?, dxkv: FloatPtr?, arena: ActivationArena) {
        let d = dim, hd = headDim
        let dContext = arena.zeros(batch * lq * d)
        output.backward(p, c.context, c.oc, dout, dContext, rows: batch * lq, arena: arena)
        let dq = arena.allocate(batch * lq * d), dk = arena.allocate(batch * lk * d), dv = arena.allocate(batch * lk * d)
        let dp = arena.allocate(lq * lk)
        let scale = 1 / Float(hd).squareRoot()
        for b in 0..<batch {
            for h in 0..<heads {
                let off = h * hd
                let qbh = c.q + b * lq * d + off, kbh = c.k + b * lk * d + off, vbh = c.v + b * lk * d + off
                let dobh = dContext + b * lq * d + off
                let pbh = c.probs + (b * heads + h) * lq * lk
                // dP = dO_h V_h^T, (Lq, Lk); dV_h = P^T dO_h
                sgemm(transB: true, m: lq, n: lk, k: hd, a: dobh, lda: d, b: vbh, ldb: d, c: dp)
                sgemm(transA: true, m: lk, n: hd, k: lq, a: pbh, b: dobh, ldb: d, c: dv + b * lk * d + off, ldc: d)
                // dS = P * (dP - rowsum(dP * P))
                for i in 0..<lq {
                    let pr = pbh + i * lk, dr = dp + i * lk
                    var s: Float = 0
                    for j in 0..<lk { s += pr[j] * dr[j] }
                    for j in 0..<lk { dr[j] = pr[j] * (dr[j] - s) }
                }
                // dQ_h = scale dS K_h, dK_h = scale dS^T Q_h
                sgemm(m: lq, n: hd, k: lk, alpha: scale, a: dp, b: kbh, ldb: d, c: dq + b * lq * d + off, ldc: d)
                sgemm(transA: true, m: lk, n: hd, k: lq, alpha: scale, a: dp, b: qbh, ldb: d,
                      c: dk + b * lk * d + off, ldc: d)
            }
        }
        query.backward(p, xq, c.qc, dq, dxq, rows: batch * lq, arena: arena)
        // The key bias adds q . b_k to every score of a query's row, a constant that softmax removes: its
        // gradient is exactly 0 (the row sums of dS are 0). Summing dK would only accumulate rounding noise,
        // which Adam then amplifies into a random walk that differs between world sizes.
        key.backward(p, xkv, c.kc, dk, dxkv, rows: batch * lk, arena: arena, biasGradientIsZero: true)
        value.backward(p, xkv, c.vc, dv, dxkv, rows: batch * lk, arena: arena)
    }
}
