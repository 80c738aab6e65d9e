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
/// and s = exp(logScale). dL/dz = G = (P_row + P_col - 2 I) / 2B, with P_row = softmax over each row and
/// P_col = softmax over each column.
///
/// a, b are (B, D). The (B, B) logits are never held whole: pass 1 walks blocks of `tileRows` rows, finishing
/// each row's log-sum-exp and merging the block into running column log-sum-exps; pass 2 recomputes the
/// blocks it needs for the gradient. Scratch is O(tileRows x B).
/// The gradient is exact for the whole loss, but only produced for the rows in `gradientRows` (default all):
/// dL/da and dL/db of those rows are added to `da` and `db` (|gradientRows| x D, accumulated, like every
/// backward) when given. With a global batch gathered from all ranks, a rank asks for its own rows.
public func symmetricInfoNCE(a: ConstFloatPtr, b: ConstFloatPtr, batch n: Int, dim: Int, logScale: Float,
                             normalize: Bool, gradientRows: Range<Int>? = nil, da: FloatPtr?, db: FloatPtr?,
                             tileRows: Int = 512, arena: ActivationArena, onTile: (() -> Void)? = nil) -> InfoNCEResult {
    let s = expf(logScale)
    let mark = arena.mark()
    defer { arena.release(to: mark) }
    let ah = arena.allocate(n * dim), bh = arena.allocate(n * dim)
    let aNorm = arena.allocate(n), bNorm = arena.allocate(n)
    normalizeRows(a, ah, aNorm, rows: n, dim: dim, enabled: normalize)
    normalizeRows(b, bh, bNorm, rows: n, dim: dim, enabled: normalize)
    let tile = max(1, min(tileRows, n))
    let z = arena.allocate(tile * n)
    // Pass 1. Per row i: lse_i and E_i = sum_j P_row_ij z_ij. Per column j, running over blocks (Float64):
    // max m_j, sum exp(z - m_j), sum exp(z - m_j) z.
    let rowLSE = arena.allocate(n), colLSE = arena.allocate(n)
    var colMax = [Float](repeating: -.infinity, count: n), colSum = [Double](repeating: 0, count: n)
    var colZ = [Double](repeating: 0, count: n), blockMax = [Float](repeating: 0, count: n)
    var loss = 0.0, dLogScale = 0.0, diagonal = 0.0
    for r0 in stride(from: 0, to: n, by: tile) {
        onTile?()     // a long evaluation is progress (the stall watchdog)
        let rows = min(tile, n - r0)
        // z = s a_hat[r0 ..< r0 + rows] b_hat^T, (rows, B)
        sgemm(transB: true, m: rows, n: n, k: dim, alpha: s, a: ah + r0 * dim, b: bh, c: z)
        for i in 0..<rows {
            let zr = z + i * n
            var mx = -Float.infinity
            for j in 0..<n { mx = max(mx, zr[j]) }
            var sum = 0.0, weighted = 0.0
            for j in 0..<n { let e = Double(expf(zr[j] - mx)); sum += e; weighted += e * Double(zr[j]) }
            let lse = Double(mx) + log(sum)
            rowLSE[r0 + i] = Float(lse)
            loss += lse - Double(zr[r0 + i])
            diagonal += Double(zr[r0 + i])
            dLogScale += weighted / sum
        }
        for j in 0..<n { blockMax[j] = colMax[j] }
        for i in 0..<rows { let zr = z + i * n; for j in 0..<n { blockMax[j] = max(blockMax[j], zr[j]) } }
        for j in 0..<n where blockMax[j] > colMax[j] {
            let rescale = colMax[j] == -.infinity ? 0 : exp(Double(colMax[j] - blockMax[j]))
            colSum[j] *= rescale; colZ[j] *= rescale; colMax[j] = blockMax[j]
        }
        for i in 0..<rows {
            let zr = z + i * n
            for j in 0..<n { let e = Double(expf(zr[j] - colMax[j])); colSum[j] += e; colZ[j] += e * Double(zr[j]) }
        }
    }
    for j in 0..<n {
        let lse = Double(colMax[j]) + log(colSum[j])
        colLSE[j] = Float(lse)
        loss += lse
        dLogScale += colZ[j] / colSum[j]
    }
    loss = (loss - diagonal) / Double(2 * n)
    // sum_ij G_ij z_ij = (sum_i E_i + sum_j E_j - 2 sum_i z_ii) / 2B
    dLogScale = (dLogScale - 2 * diagonal) / Double(2 * n)
    let result = InfoNCEResult(loss: Float(loss), dLogScale: Float(dLogScale))
    let wanted = gradientRows ?? 0..<n
    guard da != nil || db != nil, !wanted.isEmpty else { return result }
    let gs = 1 / Float(2 * n)
    /// Overwrites z[i, j] (rows r0 ..< r0 + rows, columns c0 ..< c0 + cols, leading dimension cols) with G.
    func gradientBlock(r0: Int, rows: Int, c0: Int, cols: Int) {
        for i in 0..<rows {
            let zr = z + i * cols, gi = r0 + i
            let lr = rowLSE[gi]
            for j in 0..<cols { zr[j] = (expf(zr[j] - lr) + expf(zr[j] - colLSE[c0 + j])) * gs }
            if gi >= c0 && gi < c0 + cols { zr[gi - c0] -= 2 * gs }
        }
    }
    let m = wanted.count
    // Pass 2. d a_hat[wanted] = s G[wanted, :] b_hat, in row blocks.
    if let da {
        let ga = arena.allocate(m * dim)
        for r0 in stride(from: wanted.lowerBound, to: wanted.upperBound, by: tile) {
            onTile?()
            let rows = min(tile, wanted.upperBound - r0)
            sgemm(transB: true, m: rows, n: n, k: dim, alpha: s, a: ah + r0 * dim, b: bh, c: z)
            gradientBlock(r0: r0, rows: rows, c0: 0, cols: n)
            sgemm(m: rows, n: dim, k: n, alpha: s, a: z, b: bh, c: ga + (r0 - wanted.lowerBound) * dim)
        }
        normalizeBackward(ah + wanted.lowerBound * dim, aNorm + wanted.lowerBound, ga, rows: m, dim: dim, enabled: normalize)
        for i in 0..<m * dim { da[i] += ga[i] }
    }
    // d b_hat[wanted] = s G[:, wanted]^T a_hat, accumulated over row blocks of G[:, wanted] (tile x m).
    if let db {
        let rowsPerBlock = max(1, tile * n / max(m, 1))
        let gb = arena.zeros(m * dim)
        for r0 in stride(from: 0, to: n, by: rowsPerBlock) {
            onTile?()
            let rows = min(rowsPerBlock, n - r0)
            sgemm(transB: true, m: rows, n: m, k: dim, alpha: s, a: ah + r0 * dim, b: bh + wanted.lowerBound * dim, c: z)
            gradientBlock(r0: r0, rows: rows, c0: wanted.lowerBound, cols: m)
            sgemm(transA: true, m: m, n: dim, k: rows, alpha: s, a: z, b: ah + r0 * dim, beta: 1, c: gb)
        }
        normalizeBackward(bh + wanted.lowerBound * dim, bNorm + wanted.lowerBound, gb, rows: m, dim: dim, enabled: normalize)
        for i in 0..<m * dim { db[i] += gb[i] }
    }
    return result
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
