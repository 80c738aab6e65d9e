import Support
import Foundation

/// The number format of the GEMM inputs. `.bf16`: A and B rounded to bfloat16 (8 significant bits, relative
/// rounding error at most 2^-9 per input), products accumulated in fp32 into an fp32 C; everything else (master
/// weights, gradients, optimizer state, LayerNorm, softmax, GELU, the loss, reductions) stays fp32.
public enum Precision: String, Sendable, Codable, CaseIterable {
    case fp32, bf16

    /// Whether this process can run bf16 GEMMs: the CPU has AVX512-BF16 and oneDNN made an engine.
    /// `CLADMOP_FORCE_NO_BF16=1` answers false (the tests' way to exercise the fallback on a bf16 machine).
    public static let bf16Available: Bool = {
        if ProcessInfo.processInfo.environment["CLADMOP_FORCE_NO_BF16"] == "1" { return false }
        return CPUFeatures.avx512BF16 && OneDNN.shared != nil
    }()

    /// The precision a run uses: bf16 falls back to fp32, with one line on stderr (`say` is called once per
    /// process; pass nil to stay silent), when this machine cannot run it.
    /// `available` is this machine's answer unless a test forces it.
    public static func resolve(_ requested: Precision, key: String, say: ((String) -> Void)? = defaultSay,
                               available: Bool = bf16Available) -> Precision {
        guard requested == .bf16, !available else { return requested }
        if !fallbackReported {
            fallbackReported = true
            say?("\(key) = bf16: this CPU has no AVX512-BF16 (or oneDNN is unavailable); computing in fp32")
        }
        return .fp32
    }
    nonisolated(unsafe) private static var fallbackReported = false
    public static let defaultSay: (String) -> Void = { standardErrorWrite(("warning: " + $0 + "\n").data(using: .utf8)!) }
}

/// Which library computes a GEMM.
public enum GEMMBackend: String, Sendable, CaseIterable {
    case openBLAS = "openblas", oneDNN = "onednn"

    /// The backend of a GEMM of this precision and shape. bf16 exists only in oneDNN (OpenBLAS 0.3.21 has no sbgemm).
    /// fp32: oneDNN's avx512_core brgemm where the CPU has AVX-512, the GEMM has at least `oneDNNMinimumMACs`
    /// multiply-adds and its smallest operand at most `oneDNNMaximumSmallestOperand` floats; OpenBLAS otherwise
    /// (`cladmop bench --kernels` measures both per shape; the tables and the crossover are in docs/performance.md). The rule depends on the shape alone, so ranks on the same kind of CPU,
    /// and every run of a configuration there, compute each GEMM with the same library (resumed runs stay
    /// bit-identical; across CPU models OpenBLAS's own kernels differ anyway).
    /// `CLADMOP_GEMM_BACKEND=openblas|onednn` forces one library for fp32 (comparisons, tests).
    public static func choose(_ precision: Precision, m: Int, n: Int, k: Int) -> GEMMBackend {
        if precision == .bf16 { return Precision.bf16Available ? .oneDNN : .openBLAS }
        switch fp32Rule {
        case .openBLAS: return .openBLAS
        case .oneDNN: return .oneDNN
        case .byShape:
            return m * n * k >= oneDNNMinimumMACs && min(m * k, k * n, m * n) <= oneDNNMaximumSmallestOperand ? .oneDNN : .openBLAS
        }
    }

    /// The smallest fp32 GEMM (m n k multiply-adds) given to oneDNN under the shape rule: below it oneDNN's per-call
    /// cost outweighs its faster kernel (measured with `cladmop bench --kernels`, square sizes).
    public static let oneDNNMinimumMACs = 1 << 20
    /// The largest "smallest operand" (floats of the smallest of A, B, C) given to oneDNN under the shape rule. The
    /// paper model's layer GEMMs have one of at most d x 4d = 128 x 512 (a weight or its gradient) and ran about 10 %
    /// faster through oneDNN; the frozen encoder's 384 x 384 and 384 x 1536 weights ran 4 % slower there in
    /// featurization, so its GEMMs stay on OpenBLAS unless a batch has fewer than 171 token rows (docs/performance.md).
    public static let oneDNNMaximumSmallestOperand = 1 << 16

    /// How this process picks the fp32 backend, in words (`bench --kernels`). Evaluating it also refuses a bad
    /// `CLADMOP_GEMM_BACKEND` (the CLI does so before MPI starts).
    public static var fp32RuleDescription: String {
        switch fp32Rule {
        case .openBLAS: return "OpenBLAS"
        case .oneDNN: return "oneDNN"
        case .byShape: return "oneDNN from \(oneDNNMinimumMACs) multiply-adds with an operand of at most \(oneDNNMaximumSmallestOperand) floats, else OpenBLAS"
        }
    }

    enum FP32Rule { case openBLAS, oneDNN, byShape }

    /// `CLADMOP_GEMM_BACKEND` parsed once: `.success(nil)` when unset or auto, the forced library, or the error
    /// message for any other value.
    static let environmentRequest: Result<GEMMBackend?, EnvironmentError> = {
        switch ProcessInfo.processInfo.environment["CLADMOP_GEMM_BACKEND"] {
        case nil, "", "auto": return .success(nil)
        case let v?:
            guard let b = GEMMBackend(rawValue: v) else {
                return .failure(EnvironmentError(message: "CLADMOP_GEMM_BACKEND=\(v): expected auto, openblas or onednn"))
            }
            return .success(b)
        }
    }()
    struct EnvironmentError: Error { var message: String }

    /// What is wrong with `CLADMOP_GEMM_BACKEND` (unset or one of auto, openblas, onednn) or `CLADMOP_FORCE_NO_BF16`
    /// (unset, 0 or 1: another value had been taken as unset without a word), or nil. The CLI checks it before MPI
    /// starts; a library user reaching `fp32Rule` with a bad backend exits 2 there.
    public static var environmentError: String? {
        if case .failure(let e) = environmentRequest { return e.message }
        if let v = ProcessInfo.processInfo.environment["CLADMOP_FORCE_NO_BF16"], !["", "0", "1"].contains(v) {
            return "CLADMOP_FORCE_NO_BF16=\(v): expected 1 (compute as on a CPU without AVX512-BF16), or 0 or unset"
        }
        return nil
    }

    /// The forced library, else by shape where oneDNN runs its AVX-512 kernels, else OpenBLAS.
    static let fp32Rule: FP32Rule = {
        let available = OneDNN.shared != nil
        switch environmentRequest {
        case .failure(let e):
            standardErrorWrite("error: \(e.message)\n".data(using: .utf8)!)
            exit(2)
        case .success(nil): return available && CPUFeatures.avx512Core ? .byShape : .openBLAS
        case .success(.openBLAS?): return .openBLAS
        case .success(.oneDNN?):
            if available { return .oneDNN }
            Precision.defaultSay("CLADMOP_GEMM_BACKEND=onednn: oneDNN is unavailable here; using OpenBLAS")
            return .openBLAS
        }
    }()
}

/// A bf16 copy of an fp32 operand made beforehand (a weight, converted once per optimizer step), or nil.
public typealias BF16Ptr = UnsafePointer<UInt16>

/// Row-major C(m,n) = alpha op(A)(m,k) op(B)(k,n) + beta C in `precision`, op = transpose when the flag is set.
/// fp32: OpenBLAS's `sgemm` or oneDNN's fp32 matmul, by `GEMMBackend.choose`. bf16: A and B are rounded to bf16 (RNE) unless their bf16 copies `aBF16`/`bBF16` are
/// given (same layout and strides as the fp32 operand), then oneDNN multiplies them with fp32 accumulation.
/// A bf16 request on a machine without bf16 (`Precision.bf16Available` false) computes in fp32.
public func gemm(_ precision: Precision, transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
                 alpha: Float = 1, a: UnsafePointer<Float>, lda: Int? = nil, aBF16: BF16Ptr? = nil,
                 b: UnsafePointer<Float>, ldb: Int? = nil, bBF16: BF16Ptr? = nil,
                 beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int? = nil) {
    if m == 0 || n == 0 { return }
    switch GEMMBackend.choose(precision, m: m, n: n, k: k) {
    case .openBLAS:
        sgemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
    case .oneDNN:
        let lda = lda ?? (transA ? m : k), ldb = ldb ?? (transB ? k : n), ldc = ldc ?? n
        if k == 0 {
            sgemm(transA: transA, transB: transB, m: m, n: n, k: 0, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
            return
        }
        if precision == .fp32 {
            if OneDNN.shared!.matmul(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda,
                                     b: b, ldb: ldb, beta: beta, c: c, ldc: ldc, input: .fp32) { return }
            reportOneDNNFailure("oneDNN fp32 matmul \(m)x\(n)x\(k) failed; such GEMMs are computed by OpenBLAS")
            sgemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
            return
        }
        // Stored rows x columns of each operand as laid out in memory.
        let (aRows, aCols) = transA ? (k, m) : (m, k), (bRows, bCols) = transB ? (n, k) : (k, n)
        let scratch = BF16Scratch.shared
        let a16 = aBF16 ?? scratch.convert(a, rows: aRows, cols: aCols, ld: lda, slot: 0)
        let b16 = bBF16 ?? scratch.convert(b, rows: bRows, cols: bCols, ld: ldb, slot: 1)
        // A converted copy is dense: its row stride is its column count.
        let ldaBF16 = aBF16 == nil ? aCols : lda, ldbBF16 = bBF16 == nil ? bCols : ldb
        let ok = OneDNN.shared!.matmul(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a16, lda: ldaBF16,
                                       b: b16, ldb: ldbBF16, beta: beta, c: c, ldc: ldc, input: .bf16)
        if !ok {
            // oneDNN refused this shape (primitive creation or execution failed): compute it in fp32 rather than stop
            // the job, and say so once.
            reportOneDNNFailure("oneDNN bf16 matmul \(m)x\(n)x\(k) failed; such GEMMs are computed in fp32 (OpenBLAS)")
            sgemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
        }
    }
}
nonisolated(unsafe) private var oneDNNFailureReported = false
/// One warning line per process the first time oneDNN refuses a GEMM (the GEMM is then computed by OpenBLAS).
private func reportOneDNNFailure(_ message: String) {
    if !oneDNNFailureReported { oneDNNFailureReported = true; Precision.defaultSay(message) }
}

/// fp32 GEMM through oneDNN (for `bench --kernels`, which prints it beside OpenBLAS's `sgemm`). Returns false when
/// oneDNN is unavailable.
public func oneDNNSgemm(transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int, alpha: Float = 1,
                        a: UnsafePointer<Float>, lda: Int? = nil, b: UnsafePointer<Float>, ldb: Int? = nil,
                        beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int? = nil) -> Bool {
    guard let dnnl = OneDNN.shared else { return false }
    return dnnl.matmul(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda ?? (transA ? m : k),
                       b: b, ldb: ldb ?? (transB ? k : n), beta: beta, c: c, ldc: ldc ?? n, input: .fp32)
}

/// bf16 GEMM through oneDNN on operands already in bf16 (`bench --kernels`). Returns false when unavailable.
public func oneDNNBF16Gemm(transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int, alpha: Float = 1,
                           a: BF16Ptr, lda: Int? = nil, b: BF16Ptr, ldb: Int? = nil,
                           beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int? = nil) -> Bool {
    guard Precision.bf16Available, let dnnl = OneDNN.shared else { return false }
    return dnnl.matmul(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda ?? (transA ? m : k),
                       b: b, ldb: ldb ?? (transB ? k : n), beta: beta, c: c, ldc: ldc ?? n, input: .bf16)
}

/// The oneDNN implementation chosen per input type and transposes (e.g. "bf16 NT" -> "gemm:jit"), once used.
public func oneDNNImplementations() -> [String: String] { OneDNN.shared?.implementations ?? [:] }

/// Grow-only buffers for the bf16 copies of a GEMM's activation operands (slot 0: A, slot 1: B). GEMMs run one at
/// a time on a rank's thread.
final class BF16Scratch: @unchecked Sendable {
    static let shared = BF16Scratch()
    private var buffers: [UnsafeMutablePointer<UInt16>?] = [nil, nil]
    private var capacities = [0, 0]

    /// Dense rows x cols bf16 copy of x (row stride ld floats), valid until the next call with the same slot.
    func convert(_ x: UnsafePointer<Float>, rows: Int, cols: Int, ld: Int, slot: Int) -> BF16Ptr {
        let need = rows * cols
        if capacities[slot] < need {
            buffers[slot]?.deallocate()
            let cap = max(need, capacities[slot] * 2)
            buffers[slot] = UnsafeMutableRawPointer.allocate(byteCount: cap * 2, alignment: 64).bindMemory(to: UInt16.self, capacity: cap)
            capacities[slot] = cap
        }
        let y = buffers[slot]!
        if ld == cols { convertToBF16(x, y, count: need) } else { convertToBF16(x, ld: ld, y, rows: rows, cols: cols) }
        return BF16Ptr(y)
    }
}
