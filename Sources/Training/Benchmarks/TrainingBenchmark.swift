import Communication
import Config
import Foundation
import Model
import NN
import Support

/// What `cladmop bench --config ...` measured (JSON keys as written by `--json`).
public struct TrainingBenchmarkResult: Codable {
    public var worldSize, globalBatch, parameters, steps: Int
    public var variableLengths: Bool
    public var samplesPerSecond: Double
    public var msStep, msForward, msAllgatherLoss, msBackward, msAllreduce, msOptimizer, msImbalanceWait: Double
    /// (all-gathers + all-reduce) / step, at the ranks that reached them last (since session 46 without the loss).
    public var commShare: Double
    public var flopsPerSample, forwardFlopsPerSample, usefulFlopsPerSample: Double
    public var achievedGflops, paddedGflops: Double
    public var peakRssMb, activationMb: Double
    /// The all-gathers alone (at the rank that reached them last) and the loss over the gathered batch (at its
    /// slowest rank): `msAllgatherLoss`'s two parts; absent in results written before them.
    public var msAllgather, msLoss: Double?
    /// Each rank's peak RSS in MiB, in rank order (`peakRssMb` is their largest); absent in results written before it.
    public var peakRssMbPerRank: [Int]?
    /// The GEMM precision the step ran in (`train.precision`, or fp32 where bf16 is unavailable).
    public var precision: String

    enum CodingKeys: String, CodingKey {
        case worldSize = "world_size", globalBatch = "global_batch", parameters, steps, variableLengths = "variable_lengths"
        case samplesPerSecond = "samples_per_second", msStep = "ms_step", msForward = "ms_forward"
        case msAllgatherLoss = "ms_allgather_loss", msAllgather = "ms_allgather", msLoss = "ms_loss", msBackward = "ms_backward", msAllreduce = "ms_allreduce"
        case msOptimizer = "ms_optimizer", msImbalanceWait = "ms_imbalance_wait", commShare = "comm_share"
        case flopsPerSample = "flops_per_sample", forwardFlopsPerSample = "forward_flops_per_sample"
        case usefulFlopsPerSample = "useful_flops_per_sample", achievedGflops = "achieved_gflops", paddedGflops = "padded_gflops"
        case peakRssMb = "peak_rss_mb", activationMb = "activation_mb", precision, peakRssMbPerRank = "peak_rss_mb_per_rank"
    }
}

/// Training throughput at a synthetic shape (SPEC 8): `ContrastiveStep`, the step pretraining runs, with the
/// configuration's loss, clipping, chunking, loss tiles and optimizer, on synthetic batches, timed phase by
/// phase. FLOPs are counted from the layer shapes (`CLaDMoP.forwardFLOPs`, backward = 2 x forward) over the
/// real, unpadded lengths of each row, so padding work is not counted as useful.
public func runTrainingBenchmark(spec: RunSpec, comm: Communicator) throws -> TrainingBenchmarkResult {
    let bench = spec.bench
    let e = bench.encoderDim, lmMax = bench.molTokens, lcMax = bench.codes, lsMax = bench.sentences
    let variable = bench.variableLengths
    let globalBatch = spec.train.globalBatch
    try requireRowPerRank(globalBatch: globalBatch, worldSize: comm.size)
    let icdSizes = Array([22, 284, 1917, 10262, 17924, 27407, 40074].prefix(spec.model.icdDepth))
    let config = ModelConfig(spec.model, loss: spec.loss, encoderDim: e, molVocab: 100, maxMolecules: 8, icdTableSizes: icdSizes,
                             categoryCount: icdSizes.count >= 3 ? icdSizes[2] + 1 : 2)
    // Bounded up front, against this machine's memory.
    try MemoryBudget.requireContrastiveStep(config, train: spec.train, molTokens: lmMax, codes: lcMax, sentences: lsMax, widthName: "bench.encoder_dim",
                                            hint: "use a smaller model, train.global_batch or train.loss_tile_rows, or set train.chunk_size", comm: comm)
    let step = ContrastiveStep(config, spec: spec, comm: comm, faults: .none)
    let precision = agreedTrainingPrecision(spec.train.precision, comm: comm)
    step.params.setPrecision(precision)
    let model = step.model
    let mine = shard(globalBatch, rank: comm.rank, of: comm.size)
    var lengthRNG = RNG(seed: 7)                       // the same on every rank: the global batch's lengths
    var rng = RNG(seed: 8 &+ UInt64(comm.rank))        // the contents of this rank's rows

    /// The padded batch of rows with `lengths` (molecule tokens, codes, sentences), synthetic contents.
    func makeBatch(_ lengths: [(Int, Int, Int)]) -> ModelBatch {
        let n = lengths.count
        var b = ModelBatch()
        b.count = n
        b.molLength = lengths.map(\.0).max()!; b.codeLength = lengths.map(\.1).max()!; b.sentenceLength = lengths.map(\.2).max()!
        let lm = b.molLength, lc = b.codeLength, ls = b.sentenceLength, w = config.icdTableSizes.count + 1
        b.molIds = [Int32](repeating: 0, count: n * lm * 2); b.molMask = [UInt8](repeating: 0, count: n * lm)
        b.codeIds = [Int32](repeating: -1, count: n * lc * w); b.codeMask = [UInt8](repeating: 0, count: n * lc)
        b.criteria = (0..<(3 * n * ls * e)).map { _ in rng.normal() * 0.1 }
        b.sentenceMask = [UInt8](repeating: 0, count: n * ls)
        for i in 0..<n {
            let (m, k, s) = lengths[i]
            for j in 0..<m { b.molIds[(i * lm + j) * 2] = Int32(3 + rng.int(below: 97)); b.molIds[(i * lm + j) * 2 + 1] = Int32(j * 8 / m); b.molMask[i * lm + j] = 1 }
            for j in 0..<k {
                for t in 0..<(w - 1) { b.codeIds[(i * lc + j) * w + t] = Int32(rng.int(below: config.icdTableSizes[t])) }
                b.codeIds[(i * lc + j) * w + w - 1] = Int32(rng.int(below: config.categoryCount)); b.codeMask[i * lc + j] = 1
            }
            for j in 0..<s { b.sentenceMask[i * ls + j] = 1 }
        }
        return b
    }

    /// This rank's rows of a synthetic global batch, dealt by compute as the pretrainer deals them
    /// (`balancedOrder`), as the step's chunks (keyed by their first row); and the useful and padded
    /// forward FLOPs of its rows.
    func makeStep() -> (chunks: [Int: ModelBatch], useful: Double, padded: Double) {
        let global = (0..<globalBatch).map { _ -> (Int, Int, Int) in
            variable ? (lmMax / 4 + lengthRNG.int(below: lmMax - lmMax / 4 + 1),
                        min(2, lcMax) + lengthRNG.int(below: max(lcMax - min(2, lcMax), 0) + 1),
                        max(lsMax / 8, 1) + lengthRNG.int(below: lsMax - max(lsMax / 8, 1) + 1)) : (lmMax, lcMax, lsMax)
        }
        let order = balancedOrder(costs: global.map { model.forwardFLOPs(molLength: $0.0, codeLength: $0.1, sentenceLength: $0.2) },
                                  ranks: comm.size)
        let lengths = mine.map { global[order[$0]] }
        let n = lengths.count, chunk = spec.train.chunkSize > 0 ? min(spec.train.chunkSize, n) : n
        var chunks: [Int: ModelBatch] = [:], useful = 0.0, padded = 0.0
        for c0 in stride(from: 0, to: n, by: chunk) {
            let b = makeBatch(Array(lengths[c0..<min(c0 + chunk, n)]))
            chunks[c0] = b
            padded += Double(b.count) * model.forwardFLOPs(molLength: b.molLength, codeLength: b.codeLength, sentenceLength: b.sentenceLength)
        }
        for (m, k, s) in lengths { useful += model.forwardFLOPs(molLength: m, codeLength: k, sentenceLength: s) }
        return (chunks, useful, padded)
    }

    var t = (forward: 0.0, gatherLoss: 0.0, gather: 0.0, loss: 0.0, backward: 0.0, reduce: 0.0, optimizer: 0.0, wait: 0.0, step: 0.0)
    var usefulFlops = 0.0, paddedFlops = 0.0
    for s in 0..<(bench.warmup + bench.steps) {
        let (chunks, useful, padded) = makeStep()
        comm.barrier()
        let r = try step.run(globalBatch: globalBatch, mine: mine, rows: { chunks[$0.lowerBound]! }, lrScale: 1)
        if s >= bench.warmup {
            // Across ranks: compute phases at their slowest rank; a collective at the rank that reached it last,
            // whose time in it is the transfer itself (the others also wait there for the slowest rank: that
            // wait, imbalance of packed variable-length rows, is reported apart).
            let p = r.timing
            var worst = [p.embed, p.backward, p.update, -p.gatherLoss, -p.allReduce, p.gatherLoss, p.allReduce, p.total, -p.allGather, p.loss]
            worst.withUnsafeMutableBufferPointer { comm.allReduceMax($0.baseAddress!, count: 10) }
            t.forward += worst[0]; t.backward += worst[1]; t.optimizer += worst[2]
            t.gatherLoss += -worst[3]; t.reduce += -worst[4]; t.wait += worst[5] + worst[3] + worst[6] + worst[4]
            t.step += worst[7]; t.gather += -worst[8]; t.loss += worst[9]
            usefulFlops += 3 * useful
            paddedFlops += 3 * padded
        }
    }
    // Across ranks: the phases combined per step (above), the sum of useful FLOPs, the largest RSS.
    let steps = Double(bench.steps)
    let times = [t.forward, t.gatherLoss, t.backward, t.reduce, t.optimizer, t.step, t.wait].map { $0 / steps }
    var sums = [usefulFlops, paddedFlops]
    sums.withUnsafeMutableBufferPointer { comm.allReduceSum($0.baseAddress!, count: 2) }
    let ownRSS = peakRSSMiB()
    let rssPerRank = comm.allGatherCounts(Int(ownRSS.rounded()))
    var rss = [ownRSS, Double(step.arena.peakFloats * 4) / 1_048_576]
    rss.withUnsafeMutableBufferPointer { comm.allReduceMax($0.baseAddress!, count: 2) }
    let stepTime = times[5]
    let fullFlops = 3 * model.forwardFLOPs(molLength: lmMax, codeLength: lcMax, sentenceLength: lsMax)
    var result = TrainingBenchmarkResult(
        worldSize: comm.size, globalBatch: globalBatch, parameters: step.params.count, steps: bench.steps, variableLengths: variable,
        samplesPerSecond: Double(globalBatch) / stepTime, msStep: stepTime * 1e3, msForward: times[0] * 1e3,
        msAllgatherLoss: times[1] * 1e3, msBackward: times[2] * 1e3, msAllreduce: times[3] * 1e3, msOptimizer: times[4] * 1e3,
        msImbalanceWait: times[6] * 1e3, commShare: (t.gather / steps + times[3]) / stepTime, flopsPerSample: fullFlops,
        forwardFlopsPerSample: fullFlops / 3, usefulFlopsPerSample: sums[0] / (steps * Double(globalBatch)),
        achievedGflops: sums[0] / steps / stepTime / 1e9, paddedGflops: sums[1] / steps / stepTime / 1e9,
        peakRssMb: rss[0], activationMb: rss[1], precision: precision.rawValue)
    result.peakRssMbPerRank = rssPerRank
    result.msAllgather = t.gather / steps * 1e3
    result.msLoss = t.loss / steps * 1e3
    return result
}
