import Foundation
import NN
import XCTest

/// Opaque to the optimizer: the products below are computed at run time, under the thread's floating-point mode.
@inline(never) private func opaque(_ x: Float) -> Float { x }

final class DenormalsTests: XCTestCase {
    /// With the mode on, a product whose exact value is subnormal comes out as the bits of +0 (FTZ), a subnormal
    /// operand reads as 0 (DAZ), in Swift's arithmetic and in GEMMs, a large one included (OpenBLAS's worker
    /// threads, where the library runs more than one, get the mode too); with it off, IEEE gradual underflow keeps
    /// them. Bit patterns, not ==: under DAZ a subnormal compares equal to 0.
    func testFlushToZeroModeFlushesResultsAndOperands() throws {
        let before = Denormals.flushToZero
        defer { Denormals.setFlushToZero(before) }
        guard Denormals.setFlushToZero(false) else { throw XCTSkip("no flush-to-zero mode on this architecture") }
        // OpenBLAS with 2 worker threads, started now, without the mode (Launch/test runs one thread per process):
        // the large GEMM below is split over them, and only a restart of the pool gives them the mode.
        let threads = OpenBLASThreads()
        defer { threads?.set(threads?.initial ?? 1) }
        threads?.set(2)
        let normal = opaque(Float.leastNormalMagnitude), subnormal = opaque(Float.leastNonzeroMagnitude * 4)
        XCTAssertFalse(Denormals.flushToZero)
        XCTAssertEqual((normal * opaque(0.5)).bitPattern, (Float.leastNormalMagnitude / 2).bitPattern)
        XCTAssertEqual((subnormal * opaque(2)).bitPattern, (Float.leastNonzeroMagnitude * 8).bitPattern)
        XCTAssertEqual(gemm1x1(subnormal, 1).bitPattern, subnormal.bitPattern)
        XCTAssertEqual(subnormalEntries(largeGEMM()), 1024 * 1024)

        XCTAssertTrue(Denormals.setFlushToZero(true))
        XCTAssertTrue(Denormals.flushToZero)
        XCTAssertEqual((normal * opaque(0.5)).bitPattern, 0)
        XCTAssertEqual((subnormal * opaque(2)).bitPattern, 0)
        XCTAssertEqual(opaque(1) * normal, Float.leastNormalMagnitude)   // normal numbers are untouched
        XCTAssertEqual(gemm1x1(subnormal, 1).bitPattern, 0)
        XCTAssertEqual(gemm1x1(normal, 0.5).bitPattern, 0)
        XCTAssertEqual(subnormalEntries(largeGEMM()), 0)

        XCTAssertTrue(Denormals.setFlushToZero(false))
        XCTAssertEqual((normal * opaque(0.5)).bitPattern, (Float.leastNormalMagnitude / 2).bitPattern)
    }

    /// CLADMOP_DENORMALS: unset, empty or `flush` flushes, `keep` keeps, anything else is refused (nil: the CLI
    /// exits 2 naming it, CLITests).
    func testEnvironmentValues() {
        XCTAssertEqual(Denormals.requested([:]), true)
        XCTAssertEqual(Denormals.requested(["CLADMOP_DENORMALS": ""]), true)
        XCTAssertEqual(Denormals.requested(["CLADMOP_DENORMALS": "flush"]), true)
        XCTAssertEqual(Denormals.requested(["CLADMOP_DENORMALS": "keep"]), false)
        XCTAssertNil(Denormals.requested(["CLADMOP_DENORMALS": "on"]))
    }

    /// a * b through `gemm` as a 1 x 1 x 1 product.
    private func gemm1x1(_ a: Float, _ b: Float) -> Float {
        var x = a, y = b, c: Float = -1
        gemm(.fp32, m: 1, n: 1, k: 1, a: &x, b: &y, c: &c)
        return c
    }

    /// C = A B with m = n = 1024, k = 128 and every product 1e-20 * 1e-21: each entry is 1.28e-39, subnormal.
    /// OpenBLAS's by the shape rule (its smallest operand is over 2^16 floats), and large enough that OpenBLAS splits
    /// it over its worker threads.
    private func largeGEMM() -> [Float] {
        let m = 1024, n = 1024, k = 128
        XCTAssertEqual(GEMMBackend.choose(.fp32, m: m, n: n, k: k), .openBLAS)
        let a = [Float](repeating: opaque(1e-20), count: m * k), b = [Float](repeating: opaque(1e-21), count: k * n)
        var c = [Float](repeating: -1, count: m * n)
        gemm(.fp32, m: m, n: n, k: k, a: a, b: b, c: &c)
        return c
    }

    private func subnormalEntries(_ c: [Float]) -> Int { c.filter { $0.isSubnormal }.count }
}

/// OpenBLAS's thread count, through the library's own functions (looked up at run time: a build without them
/// leaves the GEMM check on the threads OpenBLAS already has).
private struct OpenBLASThreads {
    typealias Get = @convention(c) () -> Int32
    typealias Set = @convention(c) (Int32) -> Void
    let get: Get, setter: Set, initial: Int32
    init?() {
        guard let g = dlsym(nil, "openblas_get_num_threads"), let s = dlsym(nil, "openblas_set_num_threads") else { return nil }
        get = unsafeBitCast(g, to: Get.self); setter = unsafeBitCast(s, to: Set.self); initial = get()
    }
    func set(_ n: Int32) { setter(n) }
}
