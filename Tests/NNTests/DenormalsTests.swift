import NN
import XCTest

/// Opaque to the optimizer: the products below are computed at run time, under the thread's floating-point mode.
@inline(never) private func opaque(_ x: Float) -> Float { x }

final class DenormalsTests: XCTestCase {
    /// With the mode on, a product whose exact value is subnormal comes out 0 (FTZ), a subnormal operand reads as 0
    /// (DAZ), in Swift's arithmetic and in a GEMM of either library; with it off, IEEE gradual underflow keeps them.
    func testFlushToZeroModeFlushesResultsAndOperands() throws {
        let before = Denormals.flushToZero
        defer { Denormals.setFlushToZero(before) }
        guard Denormals.setFlushToZero(false) else { throw XCTSkip("no flush-to-zero mode on this architecture") }
        let normal = opaque(Float.leastNormalMagnitude), subnormal = opaque(Float.leastNonzeroMagnitude * 4)
        XCTAssertFalse(Denormals.flushToZero)
        XCTAssertEqual(normal * opaque(0.5), Float.leastNormalMagnitude / 2)
        XCTAssertEqual(subnormal * opaque(2), Float.leastNonzeroMagnitude * 8)
        XCTAssertEqual(gemm1x1(subnormal, 1, .openBLAS), subnormal)

        XCTAssertTrue(Denormals.setFlushToZero(true))
        XCTAssertTrue(Denormals.flushToZero)
        XCTAssertEqual(normal * opaque(0.5), 0)
        XCTAssertEqual(subnormal * opaque(2), 0)
        XCTAssertEqual(opaque(1) * normal, Float.leastNormalMagnitude)   // normal numbers are untouched
        XCTAssertEqual(gemm1x1(subnormal, 1, .openBLAS), 0)
        XCTAssertEqual(gemm1x1(normal, 0.5, .openBLAS), 0)

        XCTAssertTrue(Denormals.setFlushToZero(false))
        XCTAssertEqual(normal * opaque(0.5), Float.leastNormalMagnitude / 2)
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

    /// a * b through `gemm` as a 1 x 1 x 1 product (the library forced by the shape rule: OpenBLAS at this size).
    private func gemm1x1(_ a: Float, _ b: Float, _ expected: GEMMBackend) -> Float {
        XCTAssertEqual(GEMMBackend.choose(.fp32, m: 1, n: 1, k: 1), expected)
        var x = a, y = b, c: Float = -1
        gemm(.fp32, m: 1, n: 1, k: 1, a: &x, b: &y, c: &c)
        return c
    }
}
