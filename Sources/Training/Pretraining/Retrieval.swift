import Foundation
import Communication
import Model
import NN
import TrialData

/// Pair-matching quality over a whole split: InfoNCE loss and retrieval accuracy in both directions.
public struct RetrievalMetrics {
    public var count: Int
    public var loss: Double
    /// Share of criteria whose own trial's f_DM is the best (top-1) or among the best 5 matches, and back.
    public var top1CtoDM: Double, top5CtoDM: Double, top1DMtoC: Double, top5DMtoC: Double
}

/// The symmetric InfoNCE loss over the whole split (logits z = s a_hat b_hat^T of every (criteria, DM) pair), and
/// retrieval: each true pair ranked among all candidates by a_hat b_hat^T (the ranks of z, as s > 0; ties and NaN
/// scores count against it).
/// Both walk the scores in blocks of `tileRows` rows, so memory stays O(tileRows x n); `onTile` is called at every block
/// (a long evaluation beats the stall watchdog: O(n^2 dim) work, a minute at 50,000 validation trials on one core).
public func retrievalMetrics(fC: ConstFloatPtr, fDM: ConstFloatPtr, count n: Int, dim: Int, logScale: Float,
                             normalize: Bool, tileRows: Int = 512, arena: ActivationArena, onTile: (() -> Void)? = nil) -> RetrievalMetrics {
    guard n > 0 else { return RetrievalMetrics(count: 0, loss: .nan, top1CtoDM: .nan, top5CtoDM: .nan, top1DMtoC: .nan, top5DMtoC: .nan) }
    let loss = symmetricInfoNCE(a: fC, b: fDM, batch: n, dim: dim, logScale: logScale, normalize: normalize, da: nil, db: nil,
                                tileRows: tileRows, arena: arena, onTile: onTile).loss
    let a = arena.allocate(n * dim), b = arena.allocate(n * dim), na = arena.allocate(n), nb = arena.allocate(n)
    normalizeRows(fC, a, na, rows: n, dim: dim, enabled: normalize)
    normalizeRows(fDM, b, nb, rows: n, dim: dim, enabled: normalize)
    let tile = max(1, min(tileRows, n))
    let z = arena.allocate(tile * n)
    // The true pairs' scores, computed like the blocks' so that the comparisons are exact.
    var diagonal = [Float](repeating: 0, count: n)
    for r0 in stride(from: 0, to: n, by: tile) {
        onTile?()
        let rows = min(tile, n - r0)
        sgemm(transB: true, m: rows, n: n, k: dim, a: a + r0 * dim, b: b, c: z)
        for i in 0..<rows { diagonal[r0 + i] = z[i * n + r0 + i] }
    }
    var r1 = 0, r5 = 0
    var rankCol = [Int](repeating: 0, count: n)
    for r0 in stride(from: 0, to: n, by: tile) {
        onTile?()
        let rows = min(tile, n - r0)
        sgemm(transB: true, m: rows, n: n, k: dim, a: a + r0 * dim, b: b, c: z)
        for i in 0..<rows {
            let gi = r0 + i, zr = z + i * n
            var rankRow = 0
            for j in 0..<n where j != gi {
                // `!(x < own)`, not `x >= own`: a NaN score (a diverged model) counts against the pair, not for it.
                if !(zr[j] < diagonal[gi]) { rankRow += 1 }
                if !(zr[j] < diagonal[j]) { rankCol[j] += 1 }
            }
            if rankRow < 1 { r1 += 1 }; if rankRow < 5 { r5 += 1 }
        }
    }
    let c1 = rankCol.filter { $0 < 1 }.count, c5 = rankCol.filter { $0 < 5 }.count
    let d = Double(n)
    return RetrievalMetrics(count: n, loss: Double(loss), top1CtoDM: Double(r1) / d, top5CtoDM: Double(r5) / d,
                            top1DMtoC: Double(c1) / d, top5DMtoC: Double(c5) / d)
}

/// f_C and f_DM of `trials` embedded by `model` (`embedTrials`: rows sharded over the ranks, `chunk` trials per
/// forward, gathered) and compared: the retrieval metrics of the whole list (every rank gets them).
func embedAndCompare(_ trials: [StoredTrial], builder: BatchBuilder, model: CLaDMoP, comm: Communicator, arena: ActivationArena,
                     chunk: Int, normalize: Bool, tileRows: Int, progress: (() -> Void)? = nil) -> RetrievalMetrics {
    let x = embedTrials(trials, model: model, builder: builder, level: 2, comm: comm, chunk: chunk, arena: arena, progress: progress)
    arena.reset()
    return x.fC.withUnsafeBufferPointer { c in
        x.fDM.withUnsafeBufferPointer { dm in
            retrievalMetrics(fC: c.baseAddress ?? UnsafePointer(bitPattern: 64)!, fDM: dm.baseAddress ?? UnsafePointer(bitPattern: 64)!, count: trials.count, dim: x.encoderDim,
                             logScale: model.params.value(model.logScale)[0], normalize: normalize, tileRows: tileRows, arena: arena,
                             onTile: progress)
        }
    }
}
