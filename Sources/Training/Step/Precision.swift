import Communication
import Config
import NN

/// The GEMM precision of `key` (`train.precision`, `encoder.precision`) on this machine: bf16 where the CPU has
/// AVX512-BF16 and oneDNN runs, else fp32 with one line from rank 0 saying so. Local: no collective (the encoder's
/// precision is agreed through the encoder fingerprint, which names it).
public func resolvedPrecision(_ requested: PrecisionSpec, key: String, comm: Communicator) -> Precision {
    Precision.resolve(requested == .bf16 ? .bf16 : .fp32, key: key, say: comm.isRoot ? Precision.defaultSay : nil)
}

/// `train.precision` resolved alike on every rank (a collective: every rank calls it at the same point): bf16 only
/// when every rank can run it. The ranks of a data-parallel step must compute in one precision: bf16 scales the
/// gradient by the world size after the all-reduce and fp32 scales the backward's input before it, so ranks on CPUs
/// with and without AVX512-BF16 (nodes of a mixed cluster) would take different steps. Rank 0 says how many ranks lacked it.
public func agreedTrainingPrecision(_ requested: PrecisionSpec, comm: Communicator, scoring: Bool = false) -> Precision {
    // One process says its own fallback (once per process); several ranks, the agreed one below.
    let key = scoring ? "the checkpoint's train.precision" : "train.precision"
    let local = Precision.resolve(requested == .bf16 ? .bf16 : .fp32, key: key,
                                  say: comm.isRoot && comm.size == 1 ? Precision.defaultSay : nil)
    guard requested == .bf16, comm.size > 1 else { return local }
    var lacking = [local == .bf16 ? 0.0 : 1.0]
    lacking.withUnsafeMutableBufferPointer { comm.allReduceSum($0.baseAddress!, count: 1) }
    guard lacking[0] > 0 else { return .bf16 }
    if comm.isRoot && !trainingFallbackReported {
        trainingFallbackReported = true
        Precision.defaultSay("\(key) = bf16: \(Int(lacking[0])) of the \(comm.size) ranks run on a CPU without AVX512-BF16 (or without oneDNN); every rank computes in fp32, "
                             + (scoring ? "so that every trial is scored alike" : "so that all replicas take the same step"))
    }
    return .fp32
}
nonisolated(unsafe) private var trainingFallbackReported = false   // one line per process (a fine-tuning trains many members)

/// `spec` as a checkpoint records it: `train.precision` is the precision the GEMMs computed in, not the one asked for
/// (bf16 asked on a CPU without AVX512-BF16, or on a job with one such rank, computed in fp32), so that evaluate,
/// predict and embed score the model in the precision it was trained in on any machine. The run's config.yaml keeps
/// what was asked.
public func specAsTrained(_ spec: RunSpec, computedIn precision: Precision) -> RunSpec {
    var stored = spec
    stored.train.precision = precision == .bf16 ? .bf16 : .fp32
    return stored
}
