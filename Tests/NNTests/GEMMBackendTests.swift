@testable import NN
import Support
import XCTest

/// fp32 GEMMs through both libraries against an independent Float64 reference, and the rule that picks one.
///
/// Bound. Each of the k + 1 terms of alpha op(A) op(B) + beta C (products exact in Float64 of fp32 inputs) is summed
/// in fp32 in some order, so |got - exact| <= (k + 2) 2^-24 S with S = sum |alpha a b| + |beta c| (every partial
/// sum is at most S; the +1 is the result's own rounding). A transposed operand read untransposed, a dropped beta
/// term or a wrong stride breaks it by far more (errors of order S), as the negative control shows.
final class GEMMBackendTests: XCTestCase {
    let eps32 = 1.0 / 16_777_216.0

    struct Case { var transA, transB: Bool; var m, n, k, lda, ldb, ldc: Int; var alpha, beta: Float }

    /// Worst |got - exact| / bound over C, after `run` computed C from A (stored rows x cols with stride lda), B, C0.
    func worstRatio(_ t: Case, seed: UInt64, run: (Case, UnsafePointer<Float>, UnsafePointer<Float>, UnsafeMutablePointer<Float>) -> Bool) -> Double? {
        let aRows = t.transA ? t.k : t.m, bRows = t.transB ? t.n : t.k
        var rng = RNG(seed: seed)
        let a = (0..<aRows * t.lda).map { _ in rng.normal() }, b = (0..<bRows * t.ldb).map { _ in rng.normal() }
        let c0 = (0..<t.m * t.ldc).map { _ in rng.normal() }
        var c = c0
        let ok = a.withUnsafeBufferPointer { pa in b.withUnsafeBufferPointer { pb in c.withUnsafeMutableBufferPointer { pc in
            run(t, pa.baseAddress!, pb.baseAddress!, pc.baseAddress!) } } }
        guard ok else { return nil }
        func A(_ i: Int, _ l: Int) -> Double { Double(t.transA ? a[l * t.lda + i] : a[i * t.lda + l]) }
        func B(_ l: Int, _ j: Int) -> Double { Double(t.transB ? b[j * t.ldb + l] : b[l * t.ldb + j]) }
        var worst = 0.0
        for i in 0..<t.m {
            for j in 0..<t.n {
                var exact = Double(t.beta) * Double(c0[i * t.ldc + j]), s = abs(exact)
                for l in 0..<t.k { let p = Double(t.alpha) * A(i, l) * B(l, j); exact += p; s += abs(p) }
                worst = max(worst, abs(Double(c[i * t.ldc + j]) - exact) / (Double(t.k + 2) * eps32 * s + 1e-30))
            }
            // Columns past n in a strided C are left alone.
            for j in t.n..<t.ldc { if c[i * t.ldc + j] != c0[i * t.ldc + j] { return .infinity } }
        }
        return worst
    }

    /// Every transpose, dense and strided operands, alpha and beta, through OpenBLAS and oneDNN.
    var cases: [Case] {
        var all: [Case] = []
        for transA in [false, true] {
            for transB in [false, true] {
                let (m, n, k) = (37, 29, 53)
                for strided in [false, true] {
                    let pad = strided ? 5 : 0
                    all.append(Case(transA: transA, transB: transB, m: m, n: n, k: k, lda: (transA ? m : k) + pad,
                                    ldb: (transB ? k : n) + pad, ldc: n + pad, alpha: strided ? 0.75 : 1, beta: strided ? 0.5 : 0))
                }
            }
        }
        // The shapes training gives oneDNN: a weight gradient dW = dy^T x over many rows (long k), accumulated into the
        // gradient (beta 1), and a layer's forward y = x W^T.
        all.append(Case(transA: true, transB: false, m: 128, n: 64, k: 640, lda: 128, ldb: 64, ldc: 64, alpha: 1, beta: 1))
        all.append(Case(transA: false, transB: true, m: 640, n: 128, k: 64, lda: 64, ldb: 64, ldc: 128, alpha: 1, beta: 0))
        return all
    }

    func testBothLibrariesMatchTheFloat64Reference() throws {
        for (i, t) in cases.enumerated() {
            let blas = worstRatio(t, seed: UInt64(i)) { t, a, b, c in
                sgemm(transA: t.transA, transB: t.transB, m: t.m, n: t.n, k: t.k, alpha: t.alpha, a: a, lda: t.lda, b: b, ldb: t.ldb,
                      beta: t.beta, c: c, ldc: t.ldc); return true
            }
            XCTAssertLessThanOrEqual(try XCTUnwrap(blas), 1, "OpenBLAS \(t)")
            let dnnl = worstRatio(t, seed: UInt64(i)) { t, a, b, c in
                oneDNNSgemm(transA: t.transA, transB: t.transB, m: t.m, n: t.n, k: t.k, alpha: t.alpha, a: a, lda: t.lda, b: b, ldb: t.ldb,
                            beta: t.beta, c: c, ldc: t.ldc)
            }
            guard let dnnl else { throw XCTSkip("oneDNN is unavailable here") }
            XCTAssertLessThanOrEqual(dnnl, 1, "oneDNN fp32 \(t)")
        }
    }

    /// The check fails when a transpose flag is lost or the beta term dropped.
    func testTheBoundCatchesAWrongTransposeOrDroppedBeta() throws {
        let t = Case(transA: false, transB: true, m: 24, n: 24, k: 24, lda: 24, ldb: 24, ldc: 24, alpha: 1, beta: 0.5)
        let wrongTranspose = try XCTUnwrap(worstRatio(t, seed: 9) { t, a, b, c in
            sgemm(transA: false, transB: false, m: t.m, n: t.n, k: t.k, a: a, b: b, beta: t.beta, c: c); return true
        })
        XCTAssertGreaterThan(wrongTranspose, 100)
        let droppedBeta = try XCTUnwrap(worstRatio(t, seed: 9) { t, a, b, c in
            sgemm(transA: false, transB: true, m: t.m, n: t.n, k: t.k, a: a, b: b, beta: 0, c: c); return true
        })
        XCTAssertGreaterThan(droppedBeta, 100)
    }

    /// The fp32 library depends on the shape alone: oneDNN (where the CPU runs its AVX-512 kernels) from
    /// `oneDNNMinimumMACs` with a smallest operand of at most `oneDNNMaximumSmallestOperand` floats, OpenBLAS otherwise;
    /// `gemm(.fp32, ...)` then gives oneDNN's exact result.
    func testTheShapeRulePicksOneDNNForLargeGEMMsOnly() throws {
        guard GEMMBackend.fp32Rule == .byShape else { throw XCTSkip("fp32 rule here: \(GEMMBackend.fp32RuleDescription)") }
        XCTAssertEqual(GEMMBackend.choose(.fp32, m: 32, n: 32, k: 32), .openBLAS)
        XCTAssertEqual(GEMMBackend.choose(.fp32, m: 64, n: 64, k: 255), .openBLAS)      // 1,044,480 < 2^20
        XCTAssertEqual(GEMMBackend.choose(.fp32, m: 64, n: 64, k: 256), .oneDNN)        // 2^20
        XCTAssertEqual(GEMMBackend.choose(.fp32, m: 6400, n: 128, k: 128), .oneDNN)
        XCTAssertEqual(GEMMBackend.choose(.fp32, m: 128, n: 512, k: 6400), .oneDNN)     // a weight gradient, 2^16 floats
        XCTAssertEqual(GEMMBackend.choose(.fp32, m: 4096, n: 1536, k: 384), .openBLAS)  // the encoder's FFN
        // Which library ran shows only where the two round differently: the first of these oneDNN shapes on which
        // they do (on one host both gave the same bits at 256 x 96 x 64, whose k is short), and there gemm must give
        // oneDNN's bits. Where they agree on every shape, the results cannot tell the libraries apart.
        var told = false
        for (m, n, k) in [(256, 96, 64), (256, 64, 1024), (128, 96, 2048)] {
            XCTAssertEqual(GEMMBackend.choose(.fp32, m: m, n: n, k: k), .oneDNN, "\(m) x \(n) x \(k)")
            var rng = RNG(seed: 3)
            let a = (0..<m * k).map { _ in rng.normal() }, b = (0..<k * n).map { _ in rng.normal() }
            var viaGemm = [Float](repeating: 0, count: m * n), viaDNNL = viaGemm, viaBLAS = viaGemm
            XCTAssertTrue(oneDNNSgemm(m: m, n: n, k: k, a: a, b: b, c: &viaDNNL))
            sgemm(m: m, n: n, k: k, a: a, b: b, c: &viaBLAS)
            guard viaBLAS != viaDNNL else { continue }
            gemm(.fp32, transB: false, m: m, n: n, k: k, a: a, b: b, c: &viaGemm)
            XCTAssertEqual(viaGemm, viaDNNL, "\(m) x \(n) x \(k): gemm(.fp32) did not give oneDNN's result")
            told = true
            break
        }
        if !told { throw XCTSkip("oneDNN and OpenBLAS give the same bits on every shape tried here: the results cannot tell which ran") }
    }
}
