import Communication
import Foundation
import Config
import Model
import NN
import Support

/// One distributed optimizer step of pair-matching pretraining (SPEC 5), the only one: `Pretrainer` trains
/// with it and `cladmop bench` times it.
///
///   embed (f_C, f_DM of the local rows) -> all-gather both over the global batch -> symmetric InfoNCE over
///   the B x B logits, dL/df_DM for the local rows -> backward -> all-reduce (average) of the gradients ->
///   clip -> update.
///
/// With `train.chunk_size` = c > 0 smaller than the rank's rows, the step runs in two passes (GradCache,
/// Gao et al. 2021): pass 1 embeds the rows c at a time and drops each chunk's activations; the loss over
/// the gathered global batch gives dL/df_DM for every local row; pass 2 re-runs each chunk with its
/// activations and backpropagates its slice. The update is the one-pass update; memory is set by c.
///
/// With `train.bucket_mb` > 0 and W > 1 the all-reduce overlaps backward (`GradientBuckets`): each bucket of the
/// gradient arena is summed with a non-blocking all-reduce as soon as backward has finished its parameters, and
/// the step waits for all of them before clipping. With GradCache chunks, buckets start during the last chunk's
/// backward only (the earlier chunks still add to every gradient). `Timing.allReduce` is then the exposed
/// part: the wait after backward.
public final class ContrastiveStep {
    public let model: CLaDMoP
    public let params: ParameterArena
    public let optimizer: Optimizer
    let comm: Communicator
    let loss: LossSpec
    let chunkSize: Int
    let lossTileRows: Int
    let gradClip: Float
    let faults: FaultPlan
    /// The overlapped all-reduce's buckets; nil: one blocking all-reduce after backward (bucket_mb 0, or W = 1).
    let buckets: GradientBuckets?
    public let arena = ActivationArena()
    /// Called after every chunk of either pass and every block of the loss: a step of a very large global batch is
    /// progress for the stall watchdog (its first step has only the 60 s floor), not a stall.
    public var progress: (() -> Void)?

    /// Seconds this rank spent in each phase of the last step.
    public struct Timing {
        public var embed = 0.0, allGather = 0.0, loss = 0.0, backward = 0.0, allReduce = 0.0, update = 0.0
        /// The all-gathers of both sides and the loss over the gathered batch.
        public var gatherLoss: Double { allGather + loss }
        public var total: Double { embed + allGather + loss + backward + allReduce + update }
    }

    public struct Result {
        /// The InfoNCE loss over the global batch and the gradient norm before clipping.
        public var loss: Float, gradNorm: Float
        public var timing: Timing
    }

    public init(model: CLaDMoP, optimizer: Optimizer, comm: Communicator, loss: LossSpec, train: TrainSpec, faults: FaultPlan) {
        self.model = model; self.params = model.params; self.optimizer = optimizer; self.comm = comm
        self.loss = loss; chunkSize = train.chunkSize; lossTileRows = train.lossTileRows
        gradClip = Float(train.gradClip); self.faults = faults
        let bucketFloats = GradientBuckets.floats(megabytes: train.bucketMB)
        buckets = bucketFloats > 0 && comm.size > 1
            ? GradientBuckets(params: model.params, comm: comm, bucketFloats: bucketFloats, startEarly: faults.bucketsBeforeBackward) : nil
    }

    /// One step on a global batch of `globalBatch` rows, of which this rank holds slots `mine` of the gathered
    /// batch; `rows(range)` builds the model inputs of local rows `range` (0-based within `mine`).
    /// `firstStep` makes rank 0 dump the averaged gradient when the fault plan asks for it.
    public func run(globalBatch: Int, mine: Range<Int>, rows: (Range<Int>) -> ModelBatch, lrScale: Float,
                    firstStep: Bool = false) throws -> Result {
        let e = model.config.encoderDim, n = mine.count, W = comm.size
        let chunk = chunkSize > 0 ? min(chunkSize, n) : n
        var timing = Timing()
        var t = monotonicSeconds()
        func lap(_ phase: WritableKeyPath<Timing, Double>) { let now = monotonicSeconds(); timing[keyPath: phase] += now - t; t = now }

        arena.reset()
        params.zeroGrads()
        // Pass 1: f_C and f_DM of the local rows, (n, E) each.
        let fC = arena.allocate(n * e), fDM = arena.allocate(n * e)
        var onePass: CLaDMoP.State?
        for c0 in stride(from: 0, to: n, by: max(chunk, 1)) {
            let batch = rows(c0..<min(c0 + chunk, n))
            batch.criteriaEmbedding(dim: e, into: fC + c0 * e)
            let mark = arena.mark()
            let state = model.forward(batch, arena: arena)
            (fDM + c0 * e).update(from: state.fDM, count: batch.count * e)
            if chunk == n { onePass = state } else { arena.release(to: mark) }
            progress?()
        }
        lap(\.embed)
        // Both sides of every pair of the global batch, in the ranks' slot order.
        let counts = (0..<W).map { shard(globalBatch, rank: $0, of: W).count * e }
        let allC = arena.allocate(globalBatch * e), allDM = arena.allocate(globalBatch * e)
        comm.allGatherV(send: fC, receive: allC, counts: counts)
        comm.allGatherV(send: fDM, receive: allDM, counts: counts)
        lap(\.allGather)
        let dDM = arena.zeros(n * e)
        let logScale = params.value(model.logScale)[0]
        let result = symmetricInfoNCE(a: allC, b: allDM, batch: globalBatch, dim: e, logScale: logScale, normalize: loss.normalize,
                                      gradientRows: mine, da: nil, db: faults.localGradientOnly ? nil : dDM, tileRows: lossTileRows,
                                      arena: arena, onTile: progress)
        if faults.localGradientOnly {
            // Negative control: the gradient of the local pairs' loss only (the other ranks' columns are missing).
            _ = symmetricInfoNCE(a: fC, b: fDM, batch: n, dim: e, logScale: logScale, normalize: loss.normalize, da: nil, db: dDM,
                                 tileRows: lossTileRows, arena: arena)
        }
        // Each rank backpropagates the exact gradient of the global loss for its rows, scaled by W so that
        // the average over ranks is the sum (the gradient of the global loss).
        // In bf16 the factor is applied after the all-reduce instead: bf16(W g) != W bf16(g) unless W is a power of two,
        // so scaling the backward input would round every rank's GEMM inputs differently from W = 1's.
        let scaleAfterReduce = params.precision == .bf16 && W > 1
        if !faults.noWorldScale && !scaleAfterReduce { for i in 0..<n * e { dDM[i] *= Float(W) } }
        lap(\.loss)
        // d log s is known before backward, which never writes it: final at once.
        if !params.isFrozen(model.logScale) { params.grad(model.logScale)[0] = result.dLogScale }
        let hook: GradientsReady?
        if let buckets {
            buckets.begin()
            for r in params.ranges(prefix: "loss.log_scale") { buckets.ready(r) }
            hook = { buckets.ready($0) }
        } else {
            hook = nil
        }
        if let state = onePass {
            model.backward(state, dFDM: dDM, dPooled: nil, arena: arena, gradientsReady: hook)
        } else {
            // Pass 2: each chunk again, with activations, and its slice of dL/df_DM.
            for c0 in stride(from: 0, to: n, by: chunk) {
                let mark = arena.mark()
                let state = model.forward(rows(c0..<min(c0 + chunk, n)), arena: arena)
                model.backward(state, dFDM: dDM + c0 * e, dPooled: nil, arena: arena, gradientsReady: c0 + chunk >= n ? hook : nil)
                arena.release(to: mark)
                progress?()
            }
        }
        lap(\.backward)
        if let buckets {
            buckets.finish(complete: true)
        } else {
            comm.allReduceAverage(params.grads, count: params.count)
        }
        if scaleAfterReduce && !faults.noWorldScale {
            // average over ranks x W = the sum; d log s was the same global value on every rank, so it stays.
            let g = params.grads, w = Float(W)
            for i in 0..<params.count { g[i] *= w }
            if !params.isFrozen(model.logScale) { params.grad(model.logScale)[0] = result.dLogScale }
        }
        lap(\.allReduce)
        if firstStep, let path = faults.dumpGradient, comm.isRoot {
            try writeFileAtomically(path) { try $0.write(contentsOf: Data(bytes: params.grads, count: params.count * 4)) }
        }
        let norm = try finishStep(params, optimizer: optimizer, loss: Double(result.loss), maxNorm: gradClip, lrScale: lrScale)
        lap(\.update)
        return Result(loss: result.loss, gradNorm: norm, timing: timing)
    }
}

public struct TrainingError: Error, CustomStringConvertible {
    public let description: String
    /// The model diverged (a non-finite loss, gradient norm or validation loss). Training is deterministic, so a
    /// restart from a checkpoint would diverge again: the job ends with exit status 3, which `Launch/pretrain
    /// --max-restarts` does not restart (other training errors: 1).
    public let diverged: Bool
    public init(_ d: String, diverged: Bool = false) { description = d; self.diverged = diverged }
    public var exitStatus: Int32 { diverged ? 3 : 1 }
}

extension ContrastiveStep {
    /// A pretraining replica as `Pretrainer` and `cladmop bench` build it: parameters in two groups (the
    /// model; log s, frozen unless `loss.logit_scale: learnable`), the model at its initial values, the
    /// optimizer of `spec.optimizer`, and the step.
    public convenience init(_ config: ModelConfig, spec: RunSpec, comm: Communicator, faults: FaultPlan) {
        let params = ParameterArena(seed: UInt64(spec.model.seed))
        let lr = Float(spec.optimizer.lr), wd = Float(spec.optimizer.weightDecay)
        params.groups = [ParamGroup(name: "model", learningRate: lr, weightDecay: wd),
                         ParamGroup(name: "logit_scale", learningRate: lr, weightDecay: 0, frozen: !config.learnableScale)]
        let model = CLaDMoP(config, params: params)
        params.assign(prefix: "loss.log_scale", toGroup: 1)
        params.finalize()
        model.initializeLogScale()
        let o = spec.optimizer
        let optimizer = Optimizer(kind: OptimizerKind(o.name), params: params, beta1: Float(o.beta1), beta2: Float(o.beta2), eps: Float(o.eps))
        self.init(model: model, optimizer: optimizer, comm: comm, loss: spec.loss, train: spec.train, faults: faults)
    }
}
