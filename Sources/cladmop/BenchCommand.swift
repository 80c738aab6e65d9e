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

/// sgemm GFLOP/s for square sizes on rank 0 (other ranks idle at a barrier, so a lone core is measured),
/// then all-reduce and all-gatherv bandwidth across all ranks.
func kernelBenchmark(comm: Communicator, seconds: Double) -> [String: Any] {
    var result: [String: Any] = ["world_size": comm.size, "blas_threads": blasThreadCount()]
    var rows: [[String: Any]] = []
    if comm.isRoot {
        for n in [128, 256, 512, 1024, 2048] {
            let a = FloatPtr.allocate(capacity: n * n), b = FloatPtr.allocate(capacity: n * n)
            let c = FloatPtr.allocate(capacity: n * n)
            var rng = RNG(seed: 1)
            for i in 0..<n * n { a[i] = rng.normal(); b[i] = rng.normal() }
            sgemm(m: n, n: n, k: n, a: a, b: b, c: c)   // warm-up
            // Time calls one by one: the best call is the kernel's peak, the median its typical rate
            // (this VM's cores are shared, so single calls are sometimes slowed by neighbours).
            var times: [Double] = []
            let t0 = wallClock()
            repeat {
                let t = wallClock()
                sgemm(m: n, n: n, k: n, a: a, b: b, c: c)
                times.append(wallClock() - t)
            } while wallClock() - t0 < seconds || times.count < 3
            times.sort()
            let flop = 2 * Double(n * n * n)
            let best = flop / times[0] / 1e9, median = flop / times[times.count / 2] / 1e9
            result["sgemm_\(n)_gflops"] = best
            result["sgemm_\(n)_median_gflops"] = median
            rows.append(["size": n, "gflops": best, "median_gflops": median, "calls": times.count])
            a.deallocate(); b.deallocate(); c.deallocate()
        }
        result["sgemm"] = rows
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

func printKernelTable(_ r: [String: Any]) {
    print("sgemm, one rank, \(r["blas_threads"]!) BLAS thread(s)")
    print(String(format: "%8@ %14@ %16@", "size" as NSString, "best GFLOP/s" as NSString, "median GFLOP/s" as NSString))
    for row in r["sgemm"] as? [[String: Any]] ?? [] {
        print(String(format: "%8d %14.1f %16.1f", row["size"] as! Int, row["gflops"] as! Double,
                     row["median_gflops"] as! Double))
    }
    guard (r["world_size"] as! Int) > 1 else { print("\n(collectives: run under mpirun -np 2 or more)"); return }
    print("\ncollectives, \(r["world_size"]!) rank(s) (\(r["transport"]!)), bandwidth = buffer bytes / time")
    print(String(format: "%10@ %14@ %14@ %14@ %14@", "floats" as NSString, "allreduce ms" as NSString,
                 "allreduce GB/s" as NSString, "allgather ms" as NSString, "allgather GB/s" as NSString))
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
