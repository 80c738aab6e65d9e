import Communication
import Foundation
import NN
import Support

/// What `cladmop bench --kernels` measured (JSON keys as written by `--json`).
public struct KernelBenchmarkResult: Encodable {
    public struct SgemmRate: Codable {
        public var size: Int, gflops: Double, medianGflops: Double, calls: Int
        /// The same square GEMM through oneDNN's fp32 matmul (best, median), nil where oneDNN is unavailable; and the
        /// library `gemm(.fp32, ...)` picks for it (`GEMMBackend.choose`).
        public var onednnGflops: Double?, onednnMedianGflops: Double?, fp32Backend: String
        enum CodingKeys: String, CodingKey {
            case size, gflops, medianGflops = "median_gflops", calls, onednnGflops = "onednn_fp32_gflops"
            case onednnMedianGflops = "onednn_fp32_median_gflops", fp32Backend = "fp32_backend"
        }
    }
    public struct ShapeRate: Codable {
        public var gemm: String, m: Int, n: Int, k: Int, perLayer: Int, gflops: Double, medianGflops: Double
        /// The same GEMM through oneDNN: fp32; bf16 on operands already in bf16; bf16 through `gemm(.bf16, ...)`,
        /// which also rounds both fp32 operands to bf16 on every call (in training the weight's copy is made once
        /// per step, so a layer's GEMM lies between the two bf16 figures). nil where oneDNN or bf16 is unavailable.
        public var onednnGflops: Double?, onednnBf16Gflops: Double?, onednnBf16ConvertingGflops: Double?
        /// The library `gemm(.fp32, ...)` picks for this shape (`GEMMBackend.choose`).
        public var fp32Backend: String
        enum CodingKeys: String, CodingKey {
            case gemm, m, n, k, perLayer = "per_layer", gflops, medianGflops = "median_gflops", onednnGflops = "onednn_fp32_gflops"
            case fp32Backend = "fp32_backend"
            case onednnBf16Gflops = "onednn_bf16_gflops", onednnBf16ConvertingGflops = "onednn_bf16_converting_gflops"
        }
    }
    public struct AttentionRate: Codable {
        public var trials, queries, keys, heads, headDim: Int
        public var forwardMs, forwardMedianMs, backwardMs, backwardMedianMs, forwardGflops, backwardGflops: Double
        enum CodingKeys: String, CodingKey {
            case trials, queries, keys, heads, headDim = "head_dim", forwardMs = "forward_ms", forwardMedianMs = "forward_median_ms"
            case backwardMs = "backward_ms", backwardMedianMs = "backward_median_ms", forwardGflops = "forward_gflops"
            case backwardGflops = "backward_gflops"
        }
    }
    public struct CollectiveRate: Codable {
        public var floats: Int, allreduceMs, allreduceGbytesPerS, allgatherMs, allgatherGbytesPerS: Double
        enum CodingKeys: String, CodingKey {
            case floats, allreduceMs = "allreduce_ms", allreduceGbytesPerS = "allreduce_gbytes_per_s", allgatherMs = "allgather_ms"
            case allgatherGbytesPerS = "allgather_gbytes_per_s"
        }
    }
    public var worldSize: Int, blasThreads: Int, transport: String
    /// OpenBLAS's kernel family in this process (`openblas_get_corename`), after cladmop's restart with
    /// OPENBLAS_CORETYPE where OpenBLAS fell back to Prescott (`blasCoreTypeOverride`).
    public var blasCore: String = blasCoreName()
    /// Whether bf16 GEMMs run here (AVX512-BF16 and oneDNN), and the oneDNN implementation per input type and transposes.
    public var bf16Available = false, onednnImplementations: [String: String] = [:]
    /// How `gemm(.fp32, ...)` picks its library here (`GEMMBackend.fp32RuleDescription`).
    public var fp32Rule: String = GEMMBackend.fp32RuleDescription
    /// Whether subnormal floats are flushed to zero in the benchmark's thread (`Denormals`, CLADMOP_DENORMALS).
    public var flushDenormals: Bool = Denormals.flushToZero
    /// The layer's mix at the best rate of the library `gemm(.fp32, ...)` picks per shape (rank 0).
    public var modelMixFP32Gflops: Double?
    /// Rank 0's kernels (nil on other ranks).
    public var sgemm: [SgemmRate]?, modelShapes: [ShapeRate]?, modelMixGflops: Double?, modelMixMedianGflops: Double?
    public var attention: AttentionRate?
    public var collectives: [CollectiveRate] = []

    struct Key: CodingKey {
        var stringValue: String; var intValue: Int? { nil }
        init(_ s: String) { stringValue = s }
        init?(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }
    /// Flat keys `sgemm_N_gflops` / `sgemm_N_median_gflops` per square size besides the `sgemm` table.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: Key.self)
        try c.encode(worldSize, forKey: Key("world_size")); try c.encode(blasThreads, forKey: Key("blas_threads"))
        try c.encode(blasCore, forKey: Key("blas_core")); try c.encode(fp32Rule, forKey: Key("fp32_rule"))
        try c.encode(flushDenormals, forKey: Key("flush_denormals"))
        try c.encode(transport, forKey: Key("transport")); try c.encode(collectives, forKey: Key("collectives"))
        try c.encode(bf16Available, forKey: Key("bf16_available")); try c.encode(onednnImplementations, forKey: Key("onednn_implementations"))
        if let sgemm {
            try c.encode(sgemm, forKey: Key("sgemm"))
            for r in sgemm {
                try c.encode(r.gflops, forKey: Key("sgemm_\(r.size)_gflops")); try c.encode(r.medianGflops, forKey: Key("sgemm_\(r.size)_median_gflops"))
            }
        }
        try c.encodeIfPresent(modelShapes, forKey: Key("sgemm_model_shapes"))
        try c.encodeIfPresent(modelMixGflops, forKey: Key("sgemm_model_mix_gflops"))
        try c.encodeIfPresent(modelMixMedianGflops, forKey: Key("sgemm_model_mix_median_gflops"))
        try c.encodeIfPresent(modelMixFP32Gflops, forKey: Key("fp32_model_mix_gflops"))
        try c.encodeIfPresent(attention, forKey: Key("attention"))
    }
}

/// Best and median GFLOP/s of C = op(A) op(B) over about `seconds` of calls timed one by one: the best call
/// is the kernel's peak, the median its typical rate (this VM's cores are shared, so single calls are
/// sometimes slowed by neighbours).
public func sgemmRate(transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int, seconds: Double,
                      library: KernelLibrary = .openBLAS) -> (best: Double, median: Double, calls: Int) {
    let a = FloatPtr.allocate(capacity: m * k), b = FloatPtr.allocate(capacity: k * n), c = FloatPtr.allocate(capacity: m * n)
    let a16 = UnsafeMutablePointer<UInt16>.allocate(capacity: m * k), b16 = UnsafeMutablePointer<UInt16>.allocate(capacity: k * n)
    defer { a.deallocate(); b.deallocate(); c.deallocate(); a16.deallocate(); b16.deallocate() }
    var rng = RNG(seed: 1)
    for i in 0..<m * k { a[i] = rng.normal() }
    for i in 0..<k * n { b[i] = rng.normal() }
    convertToBF16(a, a16, count: m * k); convertToBF16(b, b16, count: k * n)
    func call() -> Bool {
        switch library {
        case .openBLAS: sgemm(transA: transA, transB: transB, m: m, n: n, k: k, a: a, b: b, c: c); return true
        case .oneDNNFP32: return oneDNNSgemm(transA: transA, transB: transB, m: m, n: n, k: k, a: a, b: b, c: c)
        case .oneDNNBF16: return oneDNNBF16Gemm(transA: transA, transB: transB, m: m, n: n, k: k, a: a16, b: b16, c: c)
        case .oneDNNBF16Converting:
            guard Precision.bf16Available else { return false }
            gemm(.bf16, transA: transA, transB: transB, m: m, n: n, k: k, a: a, b: b, c: c); return true
        }
    }
    guard call() else { return (0, 0, 0) }   // warm-up (and: is this library available here)
    var times: [Double] = []
    let t0 = monotonicSeconds()
    repeat {
        let t = monotonicSeconds()
        _ = call()
        times.append(monotonicSeconds() - t)
    } while monotonicSeconds() - t0 < seconds || times.count < 3
    times.sort()
    let flop = 2 * Double(m) * Double(n) * Double(k)
    return (flop / times[0] / 1e9, flop / times[times.count / 2] / 1e9, times.count)
}

/// Which library (and input type) `sgemmRate` times.
public enum KernelLibrary: Sendable { case openBLAS, oneDNNFP32, oneDNNBF16, oneDNNBF16Converting }

/// The GEMMs of a transformer layer of the paper model on one rank's rows of a step (N = 6,400: 64 trials
/// x 100 centroid tokens, d = 128, FFN 4d), with how many of each a layer runs (forward y = x W^T, input
/// gradient dx = dy W, weight gradient dW = dy^T x).
public let modelGEMMs: [(name: String, transA: Bool, transB: Bool, m: Int, n: Int, k: Int, perLayer: Int)] = [
    ("y = x W^T, d -> d", false, true, 6400, 128, 128, 4), ("y = x W^T, d -> 4d", false, true, 6400, 512, 128, 1),
    ("y = x W^T, 4d -> d", false, true, 6400, 128, 512, 1), ("dx = dy W, d <- d", false, false, 6400, 128, 128, 4),
    ("dx = dy W, d <- 4d", false, false, 6400, 128, 512, 1), ("dx = dy W, 4d <- d", false, false, 6400, 512, 128, 1),
    ("dW = dy^T x, d x d", true, false, 128, 128, 6400, 4), ("dW = dy^T x, 4d x d", true, false, 512, 128, 6400, 1),
    ("dW = dy^T x, d x 4d", true, false, 128, 512, 6400, 1),
]

/// The attention core (CKernels/attention.c) at the paper model's first grouping layer: 32 trials of 100
/// centroid queries and 176 keys (128 molecule tokens, 16 codes, 32 sentences), 8 heads of 16. Best and
/// median ms of forward and of backward, and GFLOP/s counting 4 lq lk d FLOPs forward (Q K^T and P V) and
/// 8 lq lk d backward per trial (backward also recomputes P and P V, which is not counted).
public func attentionCoreRate(seconds: Double) -> KernelBenchmarkResult.AttentionRate {
    let trials = 32, lq = 100, lk = 176, heads = 8, headDim = 16, d = heads * headDim
    let queries = SequenceLayout(batch: trials, length: lq), keys = SequenceLayout(batch: trials, length: lk)
    let arena = ActivationArena()
    let q = arena.allocate(queries.rows * d), k = arena.allocate(keys.rows * d), v = arena.allocate(keys.rows * d)
    let dContext = arena.allocate(queries.rows * d), context = arena.allocate(queries.rows * d), lse = arena.allocate(queries.rows * heads)
    let dq = arena.allocate(queries.rows * d), dk = arena.allocate(keys.rows * d), dv = arena.allocate(keys.rows * d)
    var rng = RNG(seed: 2)
    for i in 0..<queries.rows * d { q[i] = rng.normal(); dContext[i] = rng.normal() }
    for i in 0..<keys.rows * d { k[i] = rng.normal(); v[i] = rng.normal() }
    let mark = arena.mark(), scale = 1 / Float(headDim).squareRoot()
    var forward: [Double] = [], backward: [Double] = []
    let t0 = monotonicSeconds()
    repeat {
        var t = monotonicSeconds()
        attentionForward(heads: heads, headDim: headDim, queries: queries, keys: keys, q: q, k: k, v: v, keyKeep: nil,
                         scale: scale, lse: lse, context: context, arena: arena)
        forward.append(monotonicSeconds() - t)
        t = monotonicSeconds()
        attentionBackward(heads: heads, headDim: headDim, queries: queries, keys: keys, q: q, k: k, v: v, keyKeep: nil, lse: lse,
                          dContext: dContext, scale: scale, context: context, dq: dq, dk: dk, dv: dv, arena: arena)
        backward.append(monotonicSeconds() - t)
        arena.release(to: mark)
    } while monotonicSeconds() - t0 < seconds || forward.count < 3
    forward.sort(); backward.sort()
    let flop = Double(4 * trials * lq * lk * d)
    return .init(trials: trials, queries: lq, keys: lk, heads: heads, headDim: headDim, forwardMs: forward[0] * 1e3,
                 forwardMedianMs: forward[forward.count / 2] * 1e3, backwardMs: backward[0] * 1e3,
                 backwardMedianMs: backward[backward.count / 2] * 1e3, forwardGflops: flop / forward[0] / 1e9,
                 backwardGflops: 2 * flop / backward[0] / 1e9)
}

/// sgemm GFLOP/s for square sizes and for the model's own GEMM shapes on rank 0 (other ranks idle at a
/// barrier, so a lone core is measured), then all-reduce and all-gatherv bandwidth across all ranks.
public func kernelBenchmark(comm: Communicator, seconds: Double) -> KernelBenchmarkResult {
    var result = KernelBenchmarkResult(worldSize: comm.size, blasThreads: blasThreadCount(), transport: comm.name)
    if comm.isRoot {
        var rows: [KernelBenchmarkResult.SgemmRate] = []
        for n in [32, 48, 64, 96, 128, 256, 512, 1024, 2048] {
            let r = sgemmRate(m: n, n: n, k: n, seconds: seconds)
            let o = sgemmRate(m: n, n: n, k: n, seconds: seconds, library: .oneDNNFP32)
            rows.append(.init(size: n, gflops: r.best, medianGflops: r.median, calls: r.calls, onednnGflops: o.calls > 0 ? o.best : nil,
                              onednnMedianGflops: o.calls > 0 ? o.median : nil,
                              fp32Backend: GEMMBackend.choose(.fp32, m: n, n: n, k: n).rawValue))
        }
        result.sgemm = rows
        // The model's shapes; their mix weights each by its FLOPs in a layer (total FLOPs / total time).
        var shapes: [KernelBenchmarkResult.ShapeRate] = [], flops = 0.0, bestTime = 0.0, medianTime = 0.0, chosenTime = 0.0
        for g in modelGEMMs {
            let r = sgemmRate(transA: g.transA, transB: g.transB, m: g.m, n: g.n, k: g.k, seconds: seconds / 2)
            let f = 2 * Double(g.m * g.n * g.k * g.perLayer)
            flops += f; bestTime += f / r.best; medianTime += f / r.median
            var row = KernelBenchmarkResult.ShapeRate(gemm: g.name, m: g.m, n: g.n, k: g.k, perLayer: g.perLayer, gflops: r.best, medianGflops: r.median,
                                                      fp32Backend: GEMMBackend.choose(.fp32, m: g.m, n: g.n, k: g.k).rawValue)
            func other(_ library: KernelLibrary) -> Double? {
                let o = sgemmRate(transA: g.transA, transB: g.transB, m: g.m, n: g.n, k: g.k, seconds: seconds / 2, library: library)
                return o.calls > 0 ? o.best : nil
            }
            row.onednnGflops = other(.oneDNNFP32); row.onednnBf16Gflops = other(.oneDNNBF16)
            chosenTime += f / (row.fp32Backend == GEMMBackend.oneDNN.rawValue ? row.onednnGflops ?? r.best : r.best)
            row.onednnBf16ConvertingGflops = other(.oneDNNBF16Converting)
            shapes.append(row)
        }
        result.modelShapes = shapes
        result.modelMixGflops = flops / bestTime
        result.modelMixMedianGflops = flops / medianTime
        result.modelMixFP32Gflops = flops / chosenTime
        result.attention = attentionCoreRate(seconds: seconds)
        result.bf16Available = Precision.bf16Available
        result.onednnImplementations = oneDNNImplementations()
    }
    comm.barrier()
    // Collectives only mean something across ranks (run under mpirun -np 2 or more).
    result.collectives = collectiveRates(comm: comm, floats: [1 << 12, 1 << 16, 1 << 20, 1 << 22], seconds: seconds / 4)
    return result
}

/// The all-reduce (sum) and all-gatherv of `floats` Float32 values on every rank, each timed over about `seconds`
/// (every rank runs the same repetitions: rank 0's clock decides, by an all-reduce of the continue flag, which adds
/// one 8-byte all-reduce per repetition to the time). All-gatherv: every rank sends floats / size and receives
/// floats. Empty on one rank.
public func collectiveRates(comm: Communicator, floats sizes: [Int], seconds: Double) -> [KernelBenchmarkResult.CollectiveRate] {
    guard comm.size > 1 else { return [] }
    var comms: [KernelBenchmarkResult.CollectiveRate] = []
    for floats in sizes {
        // [0, floats): all-reduce buffer and all-gather send block; [floats, 2 floats): all-gather output.
        let buf = FloatPtr.allocate(capacity: 2 * floats)
        buf.update(repeating: 1, count: 2 * floats)
        comm.allReduceSum(buf, count: floats)          // warm-up (connections, registration)
        var go = [1.0]
        func timed(_ body: () -> Void) -> Double {
            let t0 = monotonicSeconds()
            var reps = 0
            repeat {
                body(); reps += 1
                go[0] = monotonicSeconds() - t0 < seconds ? 1 : 0
                go.withUnsafeMutableBufferPointer { comm.allReduceMax($0.baseAddress!, count: 1) }
            } while go[0] > 0
            return (monotonicSeconds() - t0) / Double(reps)
        }
        let reduceSec = timed { comm.allReduceSum(buf, count: floats) }
        let counts = [Int](repeating: floats / comm.size, count: comm.size)
        let gatherSec = timed { comm.allGatherV(send: buf, receive: buf + floats, counts: counts) }
        // Algorithm bandwidth: bytes of the buffer / time.
        let bytes = Double(floats * 4)
        comms.append(.init(floats: floats, allreduceMs: reduceSec * 1e3, allreduceGbytesPerS: bytes / reduceSec / 1e9,
                           allgatherMs: gatherSec * 1e3, allgatherGbytesPerS: bytes / gatherSec / 1e9))
        buf.deallocate()
    }
    return comms
}

/// What `cladmop bench --collectives` measured: the collectives at every message size, with where the ranks ran.
public struct CollectiveBenchmarkResult: Codable {
    public var worldSize: Int, nodes: Int, hosts: [String], transport: String, secondsPerPoint: Double
    public var collectives: [KernelBenchmarkResult.CollectiveRate]
    enum CodingKeys: String, CodingKey {
        case worldSize = "world_size", nodes, hosts, transport, secondsPerPoint = "seconds_per_point", collectives
    }
}

/// All-reduce and all-gather time against message size (64 ... 2^24 floats, x4 apart) across the job's ranks:
/// the input of the scaling model (benchmarks/scaling_model.py).
public func collectiveBenchmark(comm: Communicator, seconds: Double, maxFloats: Int = 1 << 24) -> CollectiveBenchmarkResult {
    let sizes = stride(from: 6, through: 24, by: 2).map { 1 << $0 }.filter { $0 <= maxFloats }
    let rates = collectiveRates(comm: comm, floats: sizes, seconds: seconds)
    return CollectiveBenchmarkResult(worldSize: comm.size, nodes: Set(comm.hostNames).count, hosts: comm.hostNames, transport: comm.name,
                                     secondsPerPoint: seconds, collectives: rates)
}
