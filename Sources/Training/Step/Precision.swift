import Communication
import Config
import NN

/// The GEMM precision of `key` (`train.precision`, `encoder.precision`) on this machine: bf16 where the CPU has
/// AVX512-BF16 and oneDNN runs, else fp32 with one line from rank 0 saying so.
public func resolvedPrecision(_ requested: PrecisionSpec, key: String, comm: Communicator) -> Precision {
    Precision.resolve(requested == .bf16 ? .bf16 : .fp32, key: key, say: comm.isRoot ? Precision.defaultSay : nil)
}
