import Foundation
import NN

/// Pair-matching quality over a whole split: InfoNCE loss and retrieval accuracy in both directions.
public struct RetrievalMetrics {
    public var count: Int
    public var loss: Double
    /// Share of criteria whose own trial's f_DM is the best (top-1) or among the best 5 matches, and back.
    public var top1CtoDM: Double, top5CtoDM: Double, top1DMtoC: Double, top5DMtoC: Double
}

/// Scores z = s a_hat b_hat^T of every (criteria, DM) pair of the split; the loss is the symmetric InfoNCE
/// over the whole split and retrieval ranks each true pair among all candidates (ties count against it).
public func retrievalMetrics(fC: ConstFloatPtr, fDM: ConstFloatPtr, count n: Int, dim: Int, logScale: Float,
                             normalize: Bool, arena: ActivationArena) -> RetrievalMetrics {
    guard n > 0 else { return RetrievalMetrics(count: 0, loss: .nan, top1CtoDM: .nan, top5CtoDM: .nan, top1DMtoC: .nan, top5DMtoC: .nan) }
    let loss = symmetricInfoNCE(a: fC, b: fDM, batch: n, dim: dim, logScale: logScale, normalize: normalize, da: nil, db: nil, arena: arena).loss
    let a = arena.allocate(n * dim), b = arena.allocate(n * dim), na = arena.allocate(n), nb = arena.allocate(n)
    normalizeRows(fC, a, na, rows: n, dim: dim, enabled: normalize)
    normalizeRows(fDM, b, nb, rows: n, dim: dim, enabled: normalize)
    let z = arena.allocate(n * n)
    sgemm(transB: true, m: n, n: n, k: dim, a: a, b: b, c: z)
    var r1 = 0, r5 = 0, c1 = 0, c5 = 0
    for i in 0..<n {
        var rankRow = 0, rankCol = 0
        for j in 0..<n where j != i {
            if z[i * n + j] >= z[i * n + i] { rankRow += 1 }
            if z[j * n + i] >= z[i * n + i] { rankCol += 1 }
        }
        if rankRow < 1 { r1 += 1 }; if rankRow < 5 { r5 += 1 }
        if rankCol < 1 { c1 += 1 }; if rankCol < 5 { c5 += 1 }
    }
    let d = Double(n)
    return RetrievalMetrics(count: n, loss: Double(loss), top1CtoDM: Double(r1) / d, top5CtoDM: Double(r5) / d,
                            top1DMtoC: Double(c1) / d, top5DMtoC: Double(c5) / d)
}
