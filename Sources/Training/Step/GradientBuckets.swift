import Communication
import NN

/// The overlapped gradient all-reduce (`train.bucket_mb` > 0): the gradient arena is cut into buckets of about
/// `bucketFloats` floats, contiguous ranges counted from the arena's end (backward finishes the head first, and
/// the head's parameters are registered last); backward reports each parameter once its gradient is final
/// (`CLaDMoP.backward(gradientsReady:)`), and a bucket's non-blocking in-place sum (MPI_Iallreduce) starts as
/// soon as every float of it was reported. Between reports the started reductions are tested (MPI_Testall),
/// which is what moves them forward in OpenMPI (no progress thread). `finish()` starts what is left, waits
/// for all of them and divides by W: the same per-element operations as one blocking all-reduce of the arena.
///
/// Every rank runs the same backward, so every rank starts the same buckets in the same order (MPI requires it).
final class GradientBuckets {
    let params: ParameterArena
    let comm: Communicator
    /// Bucket b covers `buckets[b]`; b = 0 is the top of the arena.
    let buckets: [Range<Int>]
    private var remaining: [Int]
    private var started: [Bool]
    private var reported = 0
    /// Test hook (CLADMOP_FAULT=buckets_before_backward): every bucket is started before backward has written
    /// anything, a reduction of incomplete gradients (a negative control for the equivalence tests).
    let startEarly: Bool

    /// The most buckets a step starts: a smaller `train.bucket_mb` is raised to arena / maxBuckets floats (the same
    /// sums; a few floats per bucket would start a million non-blocking reductions a step, which never finish in time).
    static let maxBuckets = 4096

    init(params: ParameterArena, comm: Communicator, bucketFloats requested: Int, startEarly: Bool = false) {
        precondition(requested > 0)
        self.params = params; self.comm = comm; self.startEarly = startEarly
        let bucketFloats = max(requested, (params.count + Self.maxBuckets - 1) / Self.maxBuckets)
        var b: [Range<Int>] = [], top = params.count
        while top > 0 { b.append(max(top - bucketFloats, 0)..<top); top -= bucketFloats }
        buckets = b
        remaining = b.map(\.count)
        started = [Bool](repeating: false, count: b.count)
    }

    /// The bucket size in floats for `train.bucket_mb` = `mb` (0: no buckets, the blocking all-reduce).
    static func floats(megabytes mb: Double) -> Int { mb > 0 ? max(Int((mb * 1_048_576 / 4).rounded()), 1) : 0 }

    /// Starts a step: nothing reported, nothing started.
    func begin() {
        for i in buckets.indices { remaining[i] = buckets[i].count; started[i] = false }
        reported = 0
        if startEarly { for i in buckets.indices { start(i) } }
    }

    /// Gradients `range` are final: starts every bucket that is now complete, then lets the started ones progress.
    func ready(_ range: Range<Int>) {
        reported += range.count
        // Buckets are descending ranges of equal size from the top: index of the bucket holding float x.
        let size = buckets[0].count, count = params.count
        var i = (count - range.upperBound) / size
        while i < buckets.count, buckets[i].upperBound > range.lowerBound {
            let overlap = buckets[i].clamped(to: range).count
            if overlap > 0 {
                remaining[i] -= overlap
                precondition(remaining[i] >= 0, "gradient range \(range) reported twice")
                if remaining[i] == 0 { start(i) }
            }
            i += 1
        }
        comm.progressReductions()
    }

    private func start(_ i: Int) {
        guard !started[i] else { return }
        started[i] = true
        comm.startAllReduceSum(params.grads + buckets[i].lowerBound, count: buckets[i].count)
    }

    /// After backward: starts the buckets not started yet (in order), waits for all, averages over ranks.
    /// `complete` says whether backward reported every parameter (the one-pass step and the last GradCache chunk).
    func finish(complete: Bool) {
        precondition(!complete || reported == params.count,
                     "backward reported \(reported) of \(params.count) gradient floats (a parameter missing from CLaDMoP.backward's reports?)")
        for i in buckets.indices { start(i) }
        comm.waitReductions()
        if comm.size > 1 {
            let scale = 1 / Float(comm.size), g = params.grads
            for i in 0..<params.count { g[i] *= scale }
        }
    }
}
