import Foundation

/// Result of the symmetric InfoNCE loss and its gradients.
public struct InfoNCEResult {
    public var loss: Float
    /// dL/d(log s), for a learnable logit scale.
    public var dLogScale: Float
}

/// Symmetric InfoNCE (CLIP / CLaDMoP Algorithm 1) over a batch of B pairs:
/// z = s * a_hat b_hat^T (B, B), L = (CE over rows + CE over columns) / 2 with labels on the diagonal,
/// where a_hat, b_hat are the rows of a, b L2-normalised when `normalize` (else a, b themselves)
/// and s = exp(logScale).
/// a, b are (B, D). Writes dL/da into `da` and dL/db into `db` (overwritten, not accumulated) when given.
/// `arena` gives the (B, B) scratch. The gradient is the exact gradient of the whole loss: with a
/// global batch gathered from all ranks, a rank takes the rows of `db` that belong to it.
/// `onlyRows` exists for fault-injection tests: it zeroes dL/dz outside those rows before the gradients,
/// the bug of a rank that forgets the remote rows' part of its columns' gradient.
public func symmetricInfoNCE(a: ConstFloatPtr, b: ConstFloatPtr, batch n: Int, dim: Int, logScale: Float,
                             normalize: Bool, da: FloatPtr?, db: FloatPtr?, arena: ActivationArena,
                             onlyRows: Range<Int>? = nil) -> InfoNCEResult {
    let s = expf(logScale)
    let ah = arena.allocate(n * dim), bh = arena.allocate(n * dim)
    let aNorm = arena.allocate(n), bNorm = arena.allocate(n)
    normalizeRows(a, ah, aNorm, rows: n, dim: dim, enabled: normalize)
    normalizeRows(b, bh, bNorm, rows: n, dim: dim, enabled: normalize)
    // z = s a_hat b_hat^T
    let z = arena.allocate(n * n)
    sgemm(transB: true, m: n, n: n, k: dim, alpha: s, a: ah, b: bh, c: z)
    // Row softmax and column log-sum-exp, in Float64 accumulators.
    let g = arena.allocate(n * n)   // dL/dz
    var loss = 0.0
    for i in 0..<n {
        let zr = z + i * n
        var mx = -Float.infinity
        for j in 0..<n { mx = max(mx, zr[j]) }
        var sum = 0.0
        for j in 0..<n { sum += Double(expf(zr[j] - mx)) }
        let lse = Double(mx) + log(sum)
        loss += lse - Double(zr[i])
        for j in 0..<n { g[i * n + j] = Float(exp(Double(zr[j]) - lse)) }
        g[i * n + i] -= 1
    }
    for j in 0..<n {
        var mx = -Float.infinity
        for i in 0..<n { mx = max(mx, z[i * n + j]) }
        var sum = 0.0
        for i in 0..<n { sum += Double(expf(z[i * n + j] - mx)) }
        let lse = Double(mx) + log(sum)
        loss += lse - Double(z[j * n + j])
        for i in 0..<n { g[i * n + j] += Float(exp(Double(z[i * n + j]) - lse)) }
        g[j * n + j] -= 1
    }
    loss /= Double(2 * n)
    let gs = 1 / Float(2 * n)
    var dLogScale = 0.0
    for i in 0..<n * n { g[i] *= gs; dLogScale += Double(g[i]) * Double(z[i]) }
    if let keep = onlyRows {
        for i in 0..<n where !keep.contains(i) { (g + i * n).update(repeating: 0, count: n) }
    }
    // d a_hat = s G b_hat, d b_hat = s G^T a_hat
    if let da {
        sgemm(m: n, n: dim, k: n, alpha: s, a: g, b: bh, c: da)
        normalizeBackward(ah, aNorm, da, rows: n, dim: dim, enabled: normalize)
    }
    if let db {
        sgemm(transA: true, m: n, n: dim, k: n, alpha: s, a: g, b: ah, c: db)
        normalizeBackward(bh, bNorm, db, rows: n, dim: dim, enabled: normalize)
    }
    return InfoNCEResult(loss: Float(loss), dLogScale: Float(dLogScale))
}

/// y = x / max(||x||, 1e-12) per row (or a copy when disabled); norms receive ||x||.
public func normalizeRows(_ x: ConstFloatPtr, _ y: FloatPtr, _ norms: FloatPtr, rows: Int, dim: Int, enabled: Bool) {
    for r in 0..<rows {
        let xr = x + r * dim, yr = y + r * dim
        guard enabled else { yr.update(from: xr, count: dim); norms[r] = 1; continue }
        var ss: Float = 0
        for i in 0..<dim { ss += xr[i] * xr[i] }
        let nrm = max(ss.squareRoot(), 1e-12)
        norms[r] = nrm
        for i in 0..<dim { yr[i] = xr[i] / nrm }
    }
}

/// In place: d <- (d - y (y . d)) / ||x||, the gradient through y = x / ||x||.
func normalizeBackward(_ y: ConstFloatPtr, _ norms: ConstFloatPtr, _ d: FloatPtr, rows: Int, dim: Int, enabled: Bool) {
    guard enabled else { return }
    for r in 0..<rows {
        let yr = y + r * dim, dr = d + r * dim
        var dot: Float = 0
        for i in 0..<dim { dot += yr[i] * dr[i] }
        let inv = 1 / norms[r]
        for i in 0..<dim { dr[i] = (dr[i] - yr[i] * dot) * inv }
    }
}
