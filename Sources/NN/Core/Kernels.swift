import CKernels
import Foundation

// The C kernels of CKernels (this file is the one that imports it): GELU (polynomial exp and erf), LayerNorm, Adam,
// the attention core, bf16 conversions and the CPU's features.

/// What this CPU can run (cpuid, with the OS's consent to the AVX-512 state).
public enum CPUFeatures {
    public static let avx512Core = ck_cpu_has_avx512_core() != 0
    public static let avx512BF16 = ck_cpu_has_avx512_bf16() != 0
}

/// y = bf16(x), round to nearest even.
public func convertToBF16(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<UInt16>, count: Int) { ck_f32_to_bf16(x, y, count) }
/// y (rows x cols, dense) = bf16(x), x with a row stride of `ld` floats.
public func convertToBF16(_ x: UnsafePointer<Float>, ld: Int, _ y: UnsafeMutablePointer<UInt16>, rows: Int, cols: Int) {
    ck_f32_to_bf16_strided(x, ld, y, rows, cols)
}
/// y = float(x), exact.
public func convertFromBF16(_ x: UnsafePointer<UInt16>, _ y: UnsafeMutablePointer<Float>, count: Int) { ck_bf16_to_f32(x, y, count) }

/// GELU, erf form: y = x/2 (1 + erf(x/sqrt 2)). x, y are (count).
public func geluForward(_ x: ConstFloatPtr, _ y: FloatPtr, count: Int) { ck_gelu_forward(x, y, count) }

/// y = GELU(x) and its derivative dydx = Phi(x) + x phi(x), Phi the normal CDF and phi its density (backward
/// needs both: y for the next layer's weight gradient, dydx for dx = dy * dydx).
public func geluForwardWithDerivative(_ x: ConstFloatPtr, _ y: FloatPtr, _ dydx: FloatPtr, count: Int) {
    ck_gelu_forward_derivative(x, y, dydx, count)
}

/// A score bias by relative position added to every head's attention scores (MPNet's relative attention bias):
/// head h, query i, key j gets values[h (2 span - 1) + (j - i) + span - 1]; `span` >= every query and key length.
/// Forward only (the frozen text encoder): `attentionBackward` takes none.
public struct RelativeBias {
    public let values: ConstFloatPtr
    public let span: Int
    public init(values: ConstFloatPtr, span: Int) { self.values = values; self.span = span }
}

/// Multi-head attention core (CKernels/attention.c): for each sequence and head,
/// P = softmax(scale Q_h K_h^T (+ R_h, `relativeBias`) over the real keys) and context_h = P V_h. q and context have the rows of
/// `queries`, k and v those of `keys`; `keyKeep` (1 or 0 per key row, nil = all real) masks keys. With
/// `sharedQueries` q holds only `queries.maxLength` rows, the queries of every sequence (all of that length).
/// P is not stored: `lse` (query rows x heads) gets each row's log-sum-exp, from which backward recomputes it.
public func attentionForward(heads: Int, headDim: Int, queries: SequenceLayout, keys: SequenceLayout, sharedQueries: Bool = false,
                      q: ConstFloatPtr, k: ConstFloatPtr, v: ConstFloatPtr, keyKeep: ConstFloatPtr?, scale: Float,
                      relativeBias: RelativeBias? = nil, lse: FloatPtr, context: FloatPtr, arena: ActivationArena) {
    let work = arena.allocate(ck_attention_work_floats(queries.maxLength, keys.maxLength, headDim))
    if let relativeBias {
        precondition(relativeBias.span >= max(queries.maxLength, keys.maxLength), "relative bias span \(relativeBias.span) below the sequence length")
    }
    queries.rowOffsets.withUnsafeBufferPointer { qr in keys.rowOffsets.withUnsafeBufferPointer { kr in
        ck_attention_forward(queries.count, heads, headDim, qr.baseAddress!, kr.baseAddress!, sharedQueries ? 1 : 0, q, k, v, keyKeep, scale,
                             relativeBias?.values, relativeBias?.span ?? 0, lse, context, work)
    } }
}

/// Backward of `attentionForward`, with P = exp(scale Q_h K_h^T - lse) recomputed: context_h = P V_h again
/// (forward does not keep it), dV_h = P^T dO_h, dS = P (dP - rowsum(P dP)) with dP = dO_h V_h^T,
/// dQ_h = scale dS K_h, dK_h = scale dS^T Q_h. context, dq, dk, dv are overwritten; dq has the rows of
/// `queries` (one block per sequence) also with `sharedQueries`.
public func attentionBackward(heads: Int, headDim: Int, queries: SequenceLayout, keys: SequenceLayout, sharedQueries: Bool = false,
                       q: ConstFloatPtr, k: ConstFloatPtr, v: ConstFloatPtr, keyKeep: ConstFloatPtr?, lse: ConstFloatPtr,
                       dContext: ConstFloatPtr, scale: Float, context: FloatPtr, dq: FloatPtr, dk: FloatPtr, dv: FloatPtr,
                       arena: ActivationArena) {
    let work = arena.allocate(ck_attention_work_floats(queries.maxLength, keys.maxLength, headDim))
    queries.rowOffsets.withUnsafeBufferPointer { qr in keys.rowOffsets.withUnsafeBufferPointer { kr in
        ck_attention_backward(queries.count, heads, headDim, qr.baseAddress!, kr.baseAddress!, sharedQueries ? 1 : 0, q, k, v, keyKeep, lse, dContext, scale,
                              context, dq, dk, dv, work)
    } }
}

/// One Adam step over `count` parameters (see `Optimizer`): weight decay as L2 on the gradient, or decoupled.
func adamUpdate(_ p: FloatPtr, _ g: ConstFloatPtr, _ m: FloatPtr, _ v: FloatPtr, count: Int, learningRate: Float,
                beta1: Float, beta2: Float, eps: Float, bias1: Float, bias2: Float, weightDecay: Float, decoupled: Bool) {
    ck_adam_update(p, g, m, v, count, learningRate, beta1, beta2, eps, bias1, bias2, weightDecay, decoupled ? 1 : 0)
}

/// sum_i x_i^2 over `count` floats, in double.
func sumOfSquares(_ x: ConstFloatPtr, count: Int) -> Double { ck_sum_squares(x, count) }

/// LayerNorm rows of `dim`: mean and rstd = 1 / sqrt(var + eps) per row into `mean`, `rstd`;
/// y = (x - mean) rstd gamma + beta.
func layerNormForward(_ x: ConstFloatPtr, _ y: FloatPtr, gamma: ConstFloatPtr, beta: ConstFloatPtr, mean: FloatPtr, rstd: FloatPtr,
                      rows: Int, dim: Int, eps: Float) {
    withUnsafeTemporaryAllocation(of: Float.self, capacity: dim) {
        ck_layernorm_forward(x, y, gamma, beta, mean, rstd, rows, dim, eps, $0.baseAddress!)
    }
}

/// y = (x - mean) rstd gamma + beta from kept statistics (bit-identical to `layerNormForward`'s y).
func layerNormApply(_ x: ConstFloatPtr, _ y: FloatPtr, gamma: ConstFloatPtr, beta: ConstFloatPtr, mean: ConstFloatPtr,
                    rstd: ConstFloatPtr, rows: Int, dim: Int) {
    ck_layernorm_apply(x, y, gamma, beta, mean, rstd, rows, dim)
}

/// dx += rstd (dy gamma - mean(dy gamma) - xhat mean(dy gamma xhat)); dgamma += dy xhat and dbeta += dy
/// when `dgamma` is given.
func layerNormBackward(_ x: ConstFloatPtr, _ dy: ConstFloatPtr, gamma: ConstFloatPtr, mean: ConstFloatPtr, rstd: ConstFloatPtr,
                       _ dx: FloatPtr, dgamma: FloatPtr?, dbeta: FloatPtr?, rows: Int, dim: Int) {
    withUnsafeTemporaryAllocation(of: Float.self, capacity: 3 * dim) {
        ck_layernorm_backward(x, dy, gamma, mean, rstd, dx, dgamma, dbeta, rows, dim, $0.baseAddress!)
    }
}

/// Subnormal floats (|x| < 2^-126, Float.leastNormalMagnitude): the CPU computes with them in microcode, dozens of
/// times slower than with normal numbers. A fine-tuning run whose attention saturates (LoRA at the paper's rate
/// 5e-2) fills its GEMMs with them and ran 3-4 times slower (benchmarks/denormals.sh, docs/performance.md).
/// The CLI flushes them to zero for the whole process (`CLADMOP_DENORMALS=flush`, the default) at start-up; `CLADMOP_DENORMALS=keep` keeps IEEE gradual underflow (the comparison). A value below 2^-126 then
/// reads and is written as 0: nothing this model computes is that small and still matters.
public enum Denormals {
    /// Sets the calling thread's mode (threads created later inherit it) and restarts OpenBLAS's worker threads,
    /// started when the library loaded, so that they take it too; false where the CPU has no such mode. A thread
    /// pool started earlier by anything else (oneDNN's OpenMP workers) keeps its mode: the CLI calls this at
    /// start-up, before oneDNN runs.
    @discardableResult
    public static func setFlushToZero(_ on: Bool) -> Bool {
        let supported = ck_set_flush_denormals(on ? 1 : 0) != 0
        ck_restart_blas_threads()
        return supported
    }

    /// Whether the calling thread flushes subnormal operands and results to zero.
    public static var flushToZero: Bool { ck_flush_denormals() != 0 }

    /// `CLADMOP_DENORMALS` parsed: true for unset, empty or `flush`, false for `keep`; nil for any other value.
    public static func requested(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> Bool? {
        switch environment["CLADMOP_DENORMALS"] {
        case nil, "", "flush": return true
        case "keep": return false
        default: return nil
        }
    }
}
