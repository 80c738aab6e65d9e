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
