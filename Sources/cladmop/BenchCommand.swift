import ArgumentParser
import Communication
import Foundation
import NN
import Config
import TextEncoder
import Training
import TrialData

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmarks: training throughput at a synthetic shape (--config configs/bench.yaml), or kernels (--kernels: sgemm GFLOP/s, collective bandwidth).")

    @Flag(help: "Measure sgemm on one rank and the collectives' bandwidth across ranks.")
    var kernels = false

    @Flag(help: "Measure the frozen text encoder: sentences/s and tokens/s (under mpirun: ranks share the sentences).")
    var encoder = false

    @Option(help: "With --encoder: CSV whose criterion sentences are encoded.")
    var data: String = "data/top/phase_I_valid.csv"

    @Option(help: "With --encoder: also write the sentences, one per line (input of benchmarks/encoder_torch.py).")
    var sentencesOut: String?

    @OptionGroup var options: ConfigOptions

    @Flag(help: "Print one JSON object (rank 0) instead of a table.")
    var json = false

    @Option(help: "Seconds spent per measurement.")
    var seconds: Double = 0.5

    func validate() throws {
        guard kernels || encoder || options.config != nil else {
            throw ValidationError("choose what to benchmark: --config configs/bench.yaml, --kernels or --encoder")
        }
        guard seconds > 0 else { throw ValidationError("--seconds must be > 0") }
    }

    func run() throws {
        runJob { comm in
            if kernels {
                let result = kernelBenchmark(comm: comm, seconds: seconds)
                guard comm.isRoot else { return }
                if json { print(jsonString(result)) } else { printKernelTable(result) }
                return
            }
            if encoder {
                let result = try encoderBenchmark(config: try options.load(), csv: data, comm: comm, sentencesOut: comm.isRoot ? sentencesOut : nil)
                guard comm.isRoot else { return }
                if json { print(jsonString(result)); return }
                print(String(format: "encoder %@: %d distinct sentences (%d tokens) on %d rank(s), one BLAS thread each: %.1f sentences/s, %.0f tokens/s (%.1f s)",
                             result["encoder"] as! String, result["sentences"] as! Int, result["tokens"] as! Int, comm.size,
                             result["sentences_per_second"] as! Double, result["tokens_per_second"] as! Double, result["seconds"] as! Double))
                return
            }
            let result = runTrainingBenchmark(config: try options.load(), comm: comm)
            guard comm.isRoot else { return }
            if json { print(jsonString(result)); return }
            let r = result
            func d(_ k: String) -> Double { r[k] as! Double }
            print("training benchmark: \(r["world_size"]!) rank(s), global batch \(r["global_batch"]!), \((r["variable_lengths"] as! Bool) ? "variable" : "full") lengths, \(r["parameters"]!) parameters")
            print(String(format: "  samples/s          %10.1f", d("samples_per_second")))
            print(String(format: "  ms per step        %10.1f  (forward %.1f, all-gather + loss %.1f, backward %.1f, all-reduce %.1f, optimizer %.1f)",
                         d("ms_step"), d("ms_forward"), d("ms_allgather_loss"), d("ms_backward"), d("ms_allreduce"), d("ms_optimizer")))
            print(String(format: "  communication      %10.1f %% of the step (waiting for the slowest rank: %.1f ms)",
                         100 * d("comm_share"), d("ms_imbalance_wait")))
            print(String(format: "  model FLOPs        %10.3f GFLOP per sample at full length (forward %.3f; useful %.3f per sample here)",
                         d("flops_per_sample") / 1e9, d("forward_flops_per_sample") / 1e9, d("useful_flops_per_sample") / 1e9))
            print(String(format: "  achieved           %10.1f GFLOP/s useful (%.1f counting padding)", d("achieved_gflops"), d("padded_gflops")))
            print(String(format: "  peak RSS per rank  %10.0f MiB (activations and scratch of a step: %.0f MiB)", d("peak_rss_mb"), d("activation_mb")))
        }
    }
}

/// Best and median GFLOP/s of C = op(A) op(B) over about `seconds` of calls timed one by one: the best call
/// is the kernel's peak, the median its typical rate (this VM's cores are shared, so single calls are
/// sometimes slowed by neighbours).
func sgemmRate(transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int, seconds: Double) -> (best: Double, median: Double, calls: Int) {
    let a = FloatPtr.allocate(capacity: m * k), b = FloatPtr.allocate(capacity: k * n), c = FloatPtr.allocate(capacity: m * n)
    defer { a.deallocate(); b.deallocate(); c.deallocate() }
    var rng = RNG(seed: 1)
    for i in 0..<m * k { a[i] = rng.normal() }
    for i in 0..<k * n { b[i] = rng.normal() }
    sgemm(transA: transA, transB: transB, m: m, n: n, k: k, a: a, b: b, c: c)   // warm-up
    var times: [Double] = []
    let t0 = wallClock()
    repeat {
        let t = wallClock()
        sgemm(transA: transA, transB: transB, m: m, n: n, k: k, a: a, b: b, c: c)
        times.append(wallClock() - t)
    } while wallClock() - t0 < seconds || times.count < 3
    times.sort()
    let flop = 2 * Double(m) * Double(n) * Double(k)
    return (flop / times[0] / 1e9, flop / times[times.count / 2] / 1e9, times.count)
}

/// The GEMMs of a transformer layer of the paper model on one rank's rows of a step (N = 6,400: 64 trials
/// x 100 centroid tokens, d = 128, FFN 4d), with how many of each a layer runs (forward y = x W^T, input
/// gradient dx = dy W, weight gradient dW = dy^T x).
let modelGEMMs: [(name: String, transA: Bool, transB: Bool, m: Int, n: Int, k: Int, perLayer: Int)] = [
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
func attentionCoreRate(seconds: Double) -> [String: Any] {
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
    let t0 = wallClock()
    repeat {
        var t = wallClock()
        attentionForward(heads: heads, headDim: headDim, queries: queries, keys: keys, q: q, k: k, v: v, keyKeep: nil,
                         scale: scale, lse: lse, context: context, arena: arena)
        forward.append(wallClock() - t)
        t = wallClock()
        attentionBackward(heads: heads, headDim: headDim, queries: queries, keys: keys, q: q, k: k, v: v, keyKeep: nil, lse: lse,
                          dContext: dContext, scale: scale, context: context, dq: dq, dk: dk, dv: dv, arena: arena)
        backward.append(wallClock() - t)
        arena.release(to: mark)
    } while wallClock() - t0 < seconds || forward.count < 3
    forward.sort(); backward.sort()
    let flop = Double(4 * trials * lq * lk * d)
    return ["trials": trials, "queries": lq, "keys": lk, "heads": heads, "head_dim": headDim,
            "forward_ms": forward[0] * 1e3, "forward_median_ms": forward[forward.count / 2] * 1e3,
            "backward_ms": backward[0] * 1e3, "backward_median_ms": backward[backward.count / 2] * 1e3,
            "forward_gflops": flop / forward[0] / 1e9, "backward_gflops": 2 * flop / backward[0] / 1e9]
}

/// sgemm GFLOP/s for square sizes and for the model's own GEMM shapes on rank 0 (other ranks idle at a
/// barrier, so a lone core is measured), then all-reduce and all-gatherv bandwidth across all ranks.
func kernelBenchmark(comm: Communicator, seconds: Double) -> [String: Any] {
    var result: [String: Any] = ["world_size": comm.size, "blas_threads": blasThreadCount()]
    if comm.isRoot {
        var rows: [[String: Any]] = []
        for n in [128, 256, 512, 1024, 2048] {
            let r = sgemmRate(m: n, n: n, k: n, seconds: seconds)
            result["sgemm_\(n)_gflops"] = r.best
            result["sgemm_\(n)_median_gflops"] = r.median
            rows.append(["size": n, "gflops": r.best, "median_gflops": r.median, "calls": r.calls])
        }
        result["sgemm"] = rows
        // The model's shapes; their mix weights each by its FLOPs in a layer (total FLOPs / total time).
        var shapes: [[String: Any]] = [], flops = 0.0, bestTime = 0.0, medianTime = 0.0
        for g in modelGEMMs {
            let r = sgemmRate(transA: g.transA, transB: g.transB, m: g.m, n: g.n, k: g.k, seconds: seconds / 2)
            let f = 2 * Double(g.m * g.n * g.k * g.perLayer)
            flops += f; bestTime += f / r.best; medianTime += f / r.median
            shapes.append(["gemm": g.name, "m": g.m, "n": g.n, "k": g.k, "per_layer": g.perLayer, "gflops": r.best, "median_gflops": r.median])
        }
        result["sgemm_model_shapes"] = shapes
        result["sgemm_model_mix_gflops"] = flops / bestTime
        result["sgemm_model_mix_median_gflops"] = flops / medianTime
        result["attention"] = attentionCoreRate(seconds: seconds)
    }
    comm.barrier()
    var comms: [[String: Any]] = []
    // Collectives only mean something across ranks (run under mpirun -np 2 or more).
    for floats in [1 << 12, 1 << 16, 1 << 20, 1 << 22] where comm.size > 1 {
        // [0, floats): all-reduce buffer and all-gather send block; [floats, 2 floats): all-gather output.
        let buf = FloatPtr.allocate(capacity: 2 * floats)
        buf.update(repeating: 1, count: 2 * floats)
        // all-reduce: same repetitions on every rank (decided by rank 0's timing of a first pass).
        comm.allReduceSum(buf, count: floats)
        var t0 = wallClock()
        var reps = 0
        var go = [1.0]
        repeat {
            comm.allReduceSum(buf, count: floats); reps += 1
            go[0] = wallClock() - t0 < seconds / 4 ? 1 : 0
            go.withUnsafeMutableBufferPointer { comm.allReduceMax($0.baseAddress!, count: 1) }
        } while go[0] > 0
        let reduceSec = (wallClock() - t0) / Double(reps)
        // all-gatherv: every rank sends floats / size, gathers floats.
        let per = floats / comm.size
        let counts = [Int](repeating: per, count: comm.size)
        t0 = wallClock(); reps = 0
        repeat {
            comm.allGatherV(send: buf, receive: buf + floats, counts: counts); reps += 1
            go[0] = wallClock() - t0 < seconds / 4 ? 1 : 0
            go.withUnsafeMutableBufferPointer { comm.allReduceMax($0.baseAddress!, count: 1) }
        } while go[0] > 0
        let gatherSec = (wallClock() - t0) / Double(reps)
        // Algorithm bandwidth: bytes of the buffer / time.
        let bytes = Double(floats * 4)
        comms.append(["floats": floats,
                      "allreduce_ms": reduceSec * 1e3, "allreduce_gbytes_per_s": bytes / reduceSec / 1e9,
                      "allgather_ms": gatherSec * 1e3, "allgather_gbytes_per_s": bytes / gatherSec / 1e9])
        buf.deallocate()
    }
    result["collectives"] = comms
    result["transport"] = comm.name
    return result
}

/// `text` padded with spaces to |width| characters: on the left for width > 0, on the right for width < 0.
func padded(_ text: String, _ width: Int) -> String {
    let fill = String(repeating: " ", count: max(abs(width) - text.count, 0))
    return width > 0 ? fill + text : text + fill
}

func printKernelTable(_ r: [String: Any]) {
    print("sgemm, one rank, \(r["blas_threads"]!) BLAS thread(s)")
    print(padded("size", 8) + padded("best GFLOP/s", 15) + padded("median GFLOP/s", 17))
    for row in r["sgemm"] as? [[String: Any]] ?? [] {
        print(String(format: "%8d %14.1f %16.1f", row["size"] as! Int, row["gflops"] as! Double,
                     row["median_gflops"] as! Double))
    }
    print("\nthe model's GEMMs (one rank's rows of a step; per layer)")
    print(padded("gemm", -22) + padded("m", 7) + padded("n", 7) + padded("k", 7) + padded("count", 6) + padded("best GFLOP/s", 15)
          + padded("median GFLOP/s", 17))
    for row in r["sgemm_model_shapes"] as? [[String: Any]] ?? [] {
        print(padded(row["gemm"] as! String, -22) + String(format: " %6d %6d %6d %5d %14.1f %16.1f", row["m"] as! Int, row["n"] as! Int,
                     row["k"] as! Int, row["per_layer"] as! Int, row["gflops"] as! Double, row["median_gflops"] as! Double))
    }
    print(padded("a layer's mix (FLOP-weighted)", -48) + String(format: " %14.1f %16.1f",
                 r["sgemm_model_mix_gflops"] as! Double, r["sgemm_model_mix_median_gflops"] as! Double))
    if let a = r["attention"] as? [String: Any] {
        print(String(format: "\nattention core, %d trials x %d queries x %d keys, %d heads of %d: forward %.2f ms (median %.2f, %.1f GFLOP/s), backward %.2f ms (median %.2f, %.1f GFLOP/s)",
                     a["trials"] as! Int, a["queries"] as! Int, a["keys"] as! Int, a["heads"] as! Int, a["head_dim"] as! Int,
                     a["forward_ms"] as! Double, a["forward_median_ms"] as! Double, a["forward_gflops"] as! Double,
                     a["backward_ms"] as! Double, a["backward_median_ms"] as! Double, a["backward_gflops"] as! Double))
    }
    guard (r["world_size"] as! Int) > 1 else { print("\n(collectives: run under mpirun -np 2 or more)"); return }
    print("\ncollectives, \(r["world_size"]!) rank(s) (\(r["transport"]!)), bandwidth = buffer bytes / time")
    print(padded("floats", 10) + padded("allreduce ms", 15) + padded("allreduce GB/s", 15) + padded("allgather ms", 15)
          + padded("allgather GB/s", 15))
    for row in r["collectives"] as? [[String: Any]] ?? [] {
        print(String(format: "%10d %14.3f %14.2f %14.3f %14.2f", row["floats"] as! Int,
                     row["allreduce_ms"] as! Double, row["allreduce_gbytes_per_s"] as! Double,
                     row["allgather_ms"] as! Double, row["allgather_gbytes_per_s"] as! Double))
    }
}

/// Encodes the distinct criterion sentences of `csv` with the configured encoder; ranks take batches
/// round-robin (as featurize does). Model loading is not timed.
func encoderBenchmark(config: Config, csv: String, comm: Communicator, sentencesOut: String?) throws -> [String: Any] {
    let (trials, _) = try readTrials(paths: [csv])
    var seen = Set<String>(), texts: [String] = []
    for t in trials { for c in splitCriteria(t.criteria) where !seen.contains(c.text) { seen.insert(c.text); texts.append(c.text) } }
    if let sentencesOut {
        try writeFileAtomically(sentencesOut) { try $0.write(contentsOf: Data(texts.map { $0.replacingOccurrences(of: "\n", with: " ") }.joined(separator: "\n").utf8 + [0x0A])) }
    }
    let enc = try BertEncoder(modelDir: config.string("encoder.model_dir"), maxLength: config.int("encoder.max_tokens"))
    let tokens = texts.map { enc.tokenizer.encode($0) }
    let batches = BertEncoder.batches(lengths: tokens.map(\.count), maxBatchTokens: config.int("encoder.batch_tokens"))
    let out = FloatPtr.allocate(capacity: max(texts.count * 3 * enc.hidden, 1))
    defer { out.deallocate() }
    comm.barrier()
    let t0 = wallClock()
    for (k, b) in batches.enumerated() where k % comm.size == comm.rank { enc.encode(indices: b, tokens: tokens, into: out) }
    comm.barrier()
    let seconds = wallClock() - t0
    let tokenCount = tokens.reduce(0) { $0 + $1.count }
    return ["encoder": enc.identity, "sentences": texts.count, "tokens": tokenCount, "world_size": comm.size, "seconds": seconds,
            "sentences_per_second": Double(texts.count) / seconds, "tokens_per_second": Double(tokenCount) / seconds]
}
