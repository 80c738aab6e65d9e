import Support
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
        abstract: "Benchmarks: training throughput at a synthetic shape (--config configs/bench.yaml), kernels (--kernels), collectives against message size (--collectives) or the frozen text encoder (--encoder).")

    @Flag(help: "Measure square sgemm, oneDNN fp32 and bf16 GEMMs, the model's GEMM shapes and the attention core on one rank, and the collectives' bandwidth across ranks.")
    var kernels = false

    @Flag(help: "Measure all-reduce and all-gather time against message size (64 ... 2^24 floats) across the ranks (mpirun -np 2 or more): the scaling model's input.")
    var collectives = false

    @Flag(help: "Measure the frozen text encoder: sentences/s and tokens/s (under mpirun: ranks share the sentences).")
    var encoder = false

    @Option(help: "With --encoder: CSV whose criterion sentences are encoded (default: data/top/phase_I_valid.csv).")
    var data: String?

    @Option(help: "With --encoder: also write the sentences, one per line (input of benchmarks/encoder_torch.py).")
    var sentencesOut: String?

    @OptionGroup var options: ConfigOptions

    @Flag(help: "Print one JSON object (rank 0) instead of a table.")
    var json = false

    @Option(parsing: .unconditional, help: "With --kernels or --collectives: seconds spent per measurement (default: 0.5).")
    var seconds: Double?

    func validate() throws {
        guard kernels || encoder || collectives || options.config != nil else {
            throw ValidationError("choose what to benchmark: --config configs/bench.yaml, --kernels, --collectives or --encoder")
        }
        guard [kernels, encoder, collectives].filter({ $0 }).count <= 1 else {
            throw ValidationError("choose one of --kernels, --collectives and --encoder")
        }
        // Options of one benchmark given to another had been ignored without a word.
        if !encoder, let given = [data.map { _ in "--data" }, sentencesOut.map { _ in "--sentences-out" }].compactMap({ $0 }).first {
            throw ValidationError("\(given) is an option of --encoder (the encoder benchmark); the \(kernels ? "--kernels" : collectives ? "--collectives" : "training") benchmark does not read it")
        }
        if let seconds {
            guard kernels || collectives else {
                throw ValidationError("--seconds is an option of --kernels and --collectives; the \(encoder ? "encoder benchmark encodes every sentence of --data once" : "training benchmark runs bench.warmup + bench.steps steps")")
            }
            guard seconds > 0 && seconds <= 3600 else { throw ValidationError("--seconds must be > 0 and at most 3600 (per measured point)") }
        }
    }

    /// Seconds per measured point of --kernels and --collectives.
    var secondsPerPoint: Double { seconds ?? 0.5 }

    func run() throws {
        runJob { comm in
            if kernels {
                let result = kernelBenchmark(comm: comm, seconds: secondsPerPoint)
                guard comm.isRoot else { return }
                if json { print(try jsonText(result)) } else { printKernelTable(result) }
                return
            }
            if collectives {
                guard comm.size > 1 else { throw InputError("bench --collectives: run it under mpirun with 2 or more ranks (this is 1)") }
                let result = collectiveBenchmark(comm: comm, seconds: secondsPerPoint)
                guard comm.isRoot else { return }
                if json { print(try jsonText(result)); return }
                printCollectivesTable("collectives, \(result.worldSize) ranks on \(result.nodes) node(s) (\(result.transport)), \(result.secondsPerPoint) s per point; bandwidth = buffer bytes / time",
                                      result.collectives)
                return
            }
            if encoder {
                let spec = try options.load(comm), data = self.data ?? "data/top/phase_I_valid.csv"
                if let sentencesOut {
                    let model = spec.encoder.modelDir
                    try checkOutputs([("--sentences-out", sentencesOut)],
                                     inputs: [("--data", data), ("--config", options.config ?? ""),
                                              ("encoder.model_dir", model + "/config.json"), ("encoder.model_dir", model + "/vocab.txt"),
                                              ("encoder.model_dir", model + "/model.safetensors"), ("encoder.model_dir", model + "/tokenizer_config.json")].filter { !$0.1.isEmpty },
                                     isRoot: comm.isRoot)
                }
                let result = try encoderBenchmark(spec: spec, csv: data, comm: comm, sentencesOut: comm.isRoot ? sentencesOut : nil)
                guard comm.isRoot else { return }
                if json { print(try jsonText(result)); return }
                print(String(format: "encoder %@: %d distinct sentences (%d tokens) on %d rank(s), one BLAS thread each: %.1f sentences/s, %.0f tokens/s (%.1f s)",
                             result.encoder, result.sentences, result.tokens, comm.size, result.sentencesPerSecond, result.tokensPerSecond,
                             result.seconds))
                return
            }
            let r = try runTrainingBenchmark(spec: try options.load(comm), comm: comm)
            guard comm.isRoot else { return }
            if json { print(try jsonText(r)); return }
            print("training benchmark: \(r.worldSize) rank(s), global batch \(r.globalBatch), \(r.variableLengths ? "variable" : "full") lengths, \(r.parameters) parameters, \(r.precision) GEMMs")
            print(String(format: "  samples/s          %10.1f", r.samplesPerSecond))
            print(String(format: "  ms per step        %10.1f  (forward %.1f, all-gather %.1f, loss %.1f, backward %.1f, all-reduce %.1f, optimizer %.1f)",
                         r.msStep, r.msForward, r.msAllgather ?? .nan, r.msLoss ?? .nan, r.msBackward, r.msAllreduce, r.msOptimizer))
            print(String(format: "  communication      %10.1f %% of the step (waiting for the slowest rank: %.1f ms)",
                         100 * r.commShare, r.msImbalanceWait))
            print(String(format: "  model FLOPs        %10.3f GFLOP per sample at full length (forward %.3f; useful %.3f per sample here)",
                         r.flopsPerSample / 1e9, r.forwardFlopsPerSample / 1e9, r.usefulFlopsPerSample / 1e9))
            print(String(format: "  achieved           %10.1f GFLOP/s useful (%.1f counting padding)", r.achievedGflops, r.paddedGflops))
            let ranks = r.worldSize > 1 ? ", the largest of ranks 0-\(r.worldSize - 1): " + (r.peakRssMbPerRank ?? []).map(String.init).joined(separator: ", ") : ""
            print(String(format: "  peak RSS per rank  %10.0f MiB%@ (activations and scratch of a step: %.0f MiB)", r.peakRssMb, ranks, r.activationMb))
        }
    }
}

/// `text` padded with spaces to |width| characters: on the left for width > 0, on the right for width < 0.
func padded(_ text: String, _ width: Int) -> String {
    let fill = String(repeating: " ", count: max(abs(width) - text.count, 0))
    return width > 0 ? fill + text : text + fill
}

func printKernelTable(_ r: KernelBenchmarkResult) {
    print("sgemm, one rank, \(r.blasThreads) BLAS thread(s), OpenBLAS kernels: \(r.blasCore); fp32 gemm(): \(r.fp32Rule); subnormals \(r.flushDenormals ? "flushed to zero" : "kept (CLADMOP_DENORMALS=keep)")")
    print("square GEMMs, GFLOP/s: OpenBLAS sgemm and oneDNN fp32 matmul (best, median), and the library gemm() picks")
    print(padded("size", 8) + padded("OpenBLAS", 10) + padded("median", 8) + padded("oneDNN", 8) + padded("median", 8) + "  gemm() uses")
    func rate(_ x: Double?) -> String { x.map { String(format: "%.1f", $0) } ?? "-" }
    for row in r.sgemm ?? [] {
        print(String(format: "%8d %9.1f %7.1f", row.size, row.gflops, row.medianGflops) + padded(rate(row.onednnGflops), 8)
              + padded(rate(row.onednnMedianGflops), 8) + "  " + row.fp32Backend)
    }
    print("\nthe model's GEMMs (one rank's rows of a step; per layer)")
    print("best GFLOP/s per library: OpenBLAS sgemm (median beside it), oneDNN fp32, oneDNN bf16 on bf16 operands, oneDNN bf16 rounding both fp32 operands first"
          + (r.bf16Available ? "" : " (bf16: not available on this machine)"))
    print(padded("gemm", -22) + padded("m", 7) + padded("n", 7) + padded("k", 7) + padded("count", 6) + padded("OpenBLAS", 10)
          + padded("median", 8) + padded("oneDNN fp32", 12) + padded("oneDNN bf16", 12) + padded("bf16+conv", 10) + "  gemm() uses")
    for row in r.modelShapes ?? [] {
        print(padded(row.gemm, -22) + String(format: " %6d %6d %6d %5d %9.1f %7.1f", row.m, row.n, row.k, row.perLayer, row.gflops,
                                             row.medianGflops)
              + padded(rate(row.onednnGflops), 12) + padded(rate(row.onednnBf16Gflops), 12) + padded(rate(row.onednnBf16ConvertingGflops), 10)
              + "  " + row.fp32Backend)
    }
    if !r.onednnImplementations.isEmpty {
        print("oneDNN implementations: " + r.onednnImplementations.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
    }
    if let mix = r.modelMixGflops, let median = r.modelMixMedianGflops {
        print(padded("a layer's mix (FLOP-weighted)", -48) + String(format: " %14.1f %16.1f", mix, median)
              + (r.modelMixFP32Gflops.map { String(format: "   (with the library gemm() picks per shape: %.1f)", $0) } ?? ""))
    }
    if let a = r.attention {
        print(String(format: "\nattention core, %d trials x %d queries x %d keys, %d heads of %d: forward %.2f ms (median %.2f, %.1f GFLOP/s), backward %.2f ms (median %.2f, %.1f GFLOP/s)",
                     a.trials, a.queries, a.keys, a.heads, a.headDim, a.forwardMs, a.forwardMedianMs, a.forwardGflops,
                     a.backwardMs, a.backwardMedianMs, a.backwardGflops))
    }
    guard r.worldSize > 1 else { print("\n(collectives: run under mpirun -np 2 or more)"); return }
    printCollectivesTable("\ncollectives, \(r.worldSize) rank(s) (\(r.transport)), bandwidth = buffer bytes / time", r.collectives)
}

/// The all-reduce / all-gather rates of `bench --collectives` and of the kernel benchmark, one row per buffer size.
func printCollectivesTable(_ title: String, _ rows: [KernelBenchmarkResult.CollectiveRate]) {
    print(title)
    print(padded("floats", 10) + padded("allreduce ms", 15) + padded("allreduce GB/s", 15) + padded("allgather ms", 15) + padded("allgather GB/s", 15))
    for row in rows {
        print(String(format: "%10d %14.3f %14.3f %14.3f %14.3f", row.floats, row.allreduceMs, row.allreduceGbytesPerS, row.allgatherMs,
                     row.allgatherGbytesPerS))
    }
}
