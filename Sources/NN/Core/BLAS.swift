import Foundation
import COpenBLAS

/// Row-major single-precision GEMM through OpenBLAS:
/// C(m,n) = alpha * op(A)(m,k) * op(B)(k,n) + beta * C, op = transpose when the flag is set.
/// `lda`, `ldb`, `ldc` are row strides (they default to the dense ones).
@inline(__always)
public func sgemm(transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
                  alpha: Float = 1, a: UnsafePointer<Float>, lda: Int? = nil,
                  b: UnsafePointer<Float>, ldb: Int? = nil,
                  beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int? = nil) {
    if m == 0 || n == 0 { return }
    let lda = lda ?? (transA ? m : k)
    let ldb = ldb ?? (transB ? k : n)
    let ldc = ldc ?? n
    if k == 0 {
        // C = beta * C (BLAS would do the same, but some builds reject k = 0 with lda = 0).
        for i in 0..<m { for j in 0..<n { c[i * ldc + j] = beta == 0 ? 0 : beta * c[i * ldc + j] } }
        return
    }
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}

/// Number of threads OpenBLAS uses (set OPENBLAS_NUM_THREADS=1 per rank).
public func blasThreadCount() -> Int { Int(openblas_get_num_threads()) }

/// The OpenBLAS kernel family in use ("Cooperlake", "SkylakeX", "Haswell", "Prescott", ...).
public func blasCoreName() -> String { String(cString: openblas_get_corename()) }

/// OpenBLAS (built with DYNAMIC_ARCH) picks its kernels by CPU model when it loads. A model newer than the library
/// (Debian's 0.3.21 does not know Intel family 6 model 207) gets "Prescott", SSE3 kernels 3-4x slower than the
/// AVX-512 ones the CPU runs. This returns the kernel family that the CPU's instruction sets (the flags of
/// /proc/cpuinfo) support when OpenBLAS fell back to Prescott: Cooperlake (AVX-512 with BF16), SkylakeX
/// (AVX-512 F/BW/VL/DQ) or Haswell (AVX2 + FMA); nil when OpenBLAS's own choice stands, or when
/// OPENBLAS_CORETYPE is already set (the user's choice).
public func blasCoreTypeOverride() -> String? {
    guard getenv("OPENBLAS_CORETYPE") == nil, blasCoreName().lowercased() == "prescott",
          let cpuinfo = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
          let line = cpuinfo.split(separator: "\n").first(where: { $0.hasPrefix("flags") }) else { return nil }
    let flags = Set(line.split(separator: " ").map(String.init))
    if flags.isSuperset(of: ["avx512f", "avx512bw", "avx512vl", "avx512dq"]) {
        return flags.contains("avx512_bf16") ? "Cooperlake" : "SkylakeX"
    }
    return flags.isSuperset(of: ["avx2", "fma"]) ? "Haswell" : nil
}
