import Communication
import Config
import Foundation
import Model
import NN

/// Training throughput at a synthetic shape (SPEC 8): the same distributed step as `Pretrainer.trainStep`,
/// timed phase by phase. FLOPs are counted from the layer shapes (`CLaDMoP.forwardFLOPs`, backward = 2 x
/// forward) over the real, unpadded lengths of each row, so padding work is not counted as useful.
public func runTrainingBenchmark(config c: Config, comm: Communicator) -> [String: Any] {
    let e = c.int("bench.encoder_dim"), lmMax = c.int("bench.mol_tokens"), lcMax = c.int("bench.codes"), lsMax = c.int("bench.sentences")
    let variable = c.bool("bench.variable_lengths")
    let globalBatch = max(c.int("train.global_batch"), comm.size)
    let icdSizes = Array([22, 284, 1917, 10262, 17924, 27407, 40074].prefix(c.int("model.icd_depth")))
    let mc = ModelConfig(dim: c.int("model.dim"), heads: c.int("model.heads"), molLayers: c.int("model.mol_layers"),
                         disLayers: c.int("model.dis_layers"), groupingLayers: c.int("model.grouping_layers"),
                         selfLayers: c.int("model.self_layers"), centroids: c.int("model.centroids"), encoderDim: e,
                         molVocab: 100, maxMolecules: 8, icdTableSizes: icdSizes, categoryCount: icdSizes.count >= 3 ? icdSizes[2] + 1 : 2,
                         learnableScale: false, initialLogScale: 0.6)
    let params = ParameterArena(seed: 1)
    let model = CLaDMoP(mc, params: params)
    params.finalize()
    model.initializeLogScale()
    let optimizer = Optimizer(kind: OptimizerKind(rawValue: c.string("optimizer.name"))!, params: params)
    let arena = ActivationArena()
    let mine = shard(globalBatch, rank: comm.rank, of: comm.size)
    var lengthRNG = RNG(seed: 7)                       // the same on every rank: the global batch's lengths
    var rng = RNG(seed: 8 &+ UInt64(comm.rank))        // the contents of this rank's rows

    /// This rank's rows of a synthetic global batch, dealt by compute as the pretrainer deals them
    /// (`balancedOrder`); returns them and the useful forward FLOPs of its rows.
    func makeBatch() -> (ModelBatch, Double) {
        let n = mine.count
        let global = (0..<globalBatch).map { _ -> (Int, Int, Int) in
            variable ? (lmMax / 4 + lengthRNG.int(below: lmMax - lmMax / 4 + 1),
                        min(2, lcMax) + lengthRNG.int(below: max(lcMax - min(2, lcMax), 0) + 1),
                        max(lsMax / 8, 1) + lengthRNG.int(below: lsMax - max(lsMax / 8, 1) + 1)) : (lmMax, lcMax, lsMax)
        }
        let order = balancedOrder(costs: global.map { model.forwardFLOPs(molLength: $0.0, codeLength: $0.1, sentenceLength: $0.2) },
                                  ranks: comm.size)
        let lengths = mine.map { global[order[$0]] }
        var b = ModelBatch()
        b.count = n
        b.molLength = lengths.map(\.0).max()!; b.codeLength = lengths.map(\.1).max()!; b.sentenceLength = lengths.map(\.2).max()!
        let lm = b.molLength, lc = b.codeLength, ls = b.sentenceLength, w = mc.icdTableSizes.count + 1
        b.molIds = [Int32](repeating: 0, count: n * lm * 2); b.molMask = [UInt8](repeating: 0, count: n * lm)
        b.codeIds = [Int32](repeating: -1, count: n * lc * w); b.codeMask = [UInt8](repeating: 0, count: n * lc)
        b.criteria = (0..<(3 * n * ls * e)).map { _ in rng.normal() * 0.1 }
        b.sentenceMask = [UInt8](repeating: 0, count: n * ls)
        var flops = 0.0
        for i in 0..<n {
            let (m, k, s) = lengths[i]
            for j in 0..<m { b.molIds[(i * lm + j) * 2] = Int32(3 + rng.int(below: 97)); b.molIds[(i * lm + j) * 2 + 1] = Int32(j * 8 / m); b.molMask[i * lm + j] = 1 }
            for j in 0..<k {
                for t in 0..<(w - 1) { b.codeIds[(i * lc + j) * w + t] = Int32(rng.int(below: mc.icdTableSizes[t])) }
                b.codeIds[(i * lc + j) * w + w - 1] = Int32(rng.int(below: mc.categoryCount)); b.codeMask[i * lc + j] = 1
            }
            for j in 0..<s { b.sentenceMask[i * ls + j] = 1 }
            flops += model.forwardFLOPs(molLength: m, codeLength: k, sentenceLength: s)
        }
        return (b, flops)
    }

    var t = (forward: 0.0, gatherLoss: 0.0, backward: 0.0, reduce: 0.0, optimizer: 0.0, wait: 0.0, step: 0.0)
    var usefulFlops = 0.0, paddedFlops = 0.0
    let counts = (0..<comm.size).map { shard(globalBatch, rank: $0, of: comm.size).count * e }
    let warmup = c.int("bench.warmup"), steps = c.int("bench.steps")
    for s in 0..<(warmup + steps) {
        let (batch, flops) = makeBatch()
        comm.barrier()
        let t0 = now()
        arena.reset(); params.zeroGrads()
        let state = model.forward(batch, arena: arena)
        let fC = arena.allocate(batch.count * e)
        batch.criteria.withUnsafeBufferPointer { cr in batch.sentenceMask.withUnsafeBufferPointer { m in
            maskedMeanForward(cr.baseAddress! + 2 * batch.count * batch.sentenceLength * e, mask: m.baseAddress!, batch: batch.count,
                              length: batch.sentenceLength, dim: e, fC)
        } }
        let t1 = now()
        let allC = arena.allocate(globalBatch * e), allDM = arena.allocate(globalBatch * e), local = arena.allocate(batch.count * e)
        comm.allGatherV(send: fC, receive: allC, counts: counts)
        comm.allGatherV(send: state.fDM!, receive: allDM, counts: counts)
        _ = symmetricInfoNCE(a: allC, b: allDM, batch: globalBatch, dim: e, logScale: 0.6, normalize: true, gradientRows: mine,
                             da: nil, db: local, arena: arena)
        for i in 0..<batch.count * e { local[i] *= Float(comm.size) }
        let t2 = now()
        model.backward(state, dFDM: local, dPooled: nil, arena: arena)
        let t3 = now()
        comm.allReduceAverage(params.grads, count: params.count)
        let t4 = now()
        optimizer.update(params)
        let t5 = now()
        if s >= warmup {
            // Across ranks: compute phases at their slowest rank; a collective at the rank that reached it last,
            // whose time in it is the transfer itself (the others also wait there for the slowest rank: that
            // wait, imbalance of packed variable-length rows, is reported apart).
            var worst = [t1 - t0, t3 - t2, t5 - t4, -(t2 - t1), -(t4 - t3), t2 - t1, t4 - t3, t5 - t0]
            worst.withUnsafeMutableBufferPointer { comm.allReduceMax($0.baseAddress!, count: 8) }
            t.forward += worst[0]; t.backward += worst[1]; t.optimizer += worst[2]
            t.gatherLoss += -worst[3]; t.reduce += -worst[4]; t.wait += worst[5] + worst[3] + worst[6] + worst[4]
            t.step += worst[7]
            usefulFlops += 3 * flops
            paddedFlops += 3 * Double(batch.count) * model.forwardFLOPs(molLength: batch.molLength, codeLength: batch.codeLength, sentenceLength: batch.sentenceLength)
        }
    }
    // Across ranks: the phases combined per step (above), the sum of useful FLOPs, the largest RSS.
    let times = [t.forward, t.gatherLoss, t.backward, t.reduce, t.optimizer, t.step, t.wait].map { $0 / Double(steps) }
    var sums = [usefulFlops, paddedFlops]
    sums.withUnsafeMutableBufferPointer { comm.allReduceSum($0.baseAddress!, count: 2) }
    var rss = [peakRSSMiB(), Double(arena.peakFloats * 4) / 1_048_576]
    rss.withUnsafeMutableBufferPointer { comm.allReduceMax($0.baseAddress!, count: 2) }
    let stepTime = times[5]
    let fullFlops = 3 * model.forwardFLOPs(molLength: lmMax, codeLength: lcMax, sentenceLength: lsMax)
    return ["world_size": comm.size, "global_batch": globalBatch, "variable_lengths": variable, "parameters": params.count,
            "samples_per_second": Double(globalBatch) / stepTime,
            "ms_step": stepTime * 1e3, "ms_forward": times[0] * 1e3, "ms_allgather_loss": times[1] * 1e3, "ms_backward": times[2] * 1e3,
            "ms_allreduce": times[3] * 1e3, "ms_optimizer": times[4] * 1e3, "ms_imbalance_wait": times[6] * 1e3,
            "comm_share": (times[1] + times[3]) / stepTime,
            "flops_per_sample": fullFlops, "forward_flops_per_sample": fullFlops / 3,
            "useful_flops_per_sample": sums[0] / Double(steps * globalBatch),
            "achieved_gflops": sums[0] / Double(steps) / stepTime / 1e9,
            "padded_gflops": sums[1] / Double(steps) / stepTime / 1e9,
            "peak_rss_mb": rss[0], "activation_mb": rss[1], "steps": steps]
}

@inline(__always) func now() -> Double {
    var ts = timespec(); clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}
