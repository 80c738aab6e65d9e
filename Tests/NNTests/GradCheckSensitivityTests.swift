import Foundation
import NN
import TestSupport
import XCTest

/// Negative controls: the gradient check must fail when a backward is broken in the ways bugs look.
final class GradCheckSensitivityTests: XCTestCase {
    func linearCase(corrupt: @escaping (ParameterArena, Linear) -> Void) -> GradCheckCase {
        let p = ParameterArena(seed: 1)
        let lin = Linear(p, "lin", inFeatures: 5, outFeatures: 3)
        p.finalize()
        let n = 4
        let x = randomBuffer(n * 5, seed: 2), dx = zeroBuffer(n * 5)
        var c = GradCheckCase(params: p) { arena in
            let y = arena.allocate(n * 3)
            let cache = lin.forward(p, x, y, rows: n, arena: arena)
            return (y, n * 3, { dy in
                lin.backward(p, cache, x, dy: dy, dx: dx, rows: n, arena: arena)
                corrupt(p, lin)
            })
        }
        c.inputs = [("x", x, dx, n * 5)]
        return c
    }

    func testWrongTransposeOfWeightGradientIsCaught() {
        // dW laid out as (in, out) instead of (out, in): the bug of a swapped sgemm transpose flag.
        let report = gradCheck(linearCase { p, lin in
            let g = p.grad(lin.weight)
            let copy = Array(UnsafeBufferPointer(start: g, count: 15))
            for o in 0..<3 { for i in 0..<5 { g[o * 5 + i] = copy[i * 3 + o] } }
        })
        print("wrong transpose: relative error \(report.relativeErrors["lin.weight"]!)")
        XCTAssertGreaterThan(report.relativeErrors["lin.weight"]!, 0.1)
        XCTAssertLessThan(report.relativeErrors["lin.bias"]!, 1e-2)
    }

    func testMissingBiasTermIsCaught() {
        let report = gradCheck(linearCase { p, lin in p.grad(lin.bias!).update(repeating: 0, count: 3) })
        print("missing bias gradient: relative error \(report.relativeErrors["lin.bias"]!)")
        XCTAssertGreaterThan(report.relativeErrors["lin.bias"]!, 0.5)
    }

    func testMissingTermInGELUDerivativeIsCaught() {
        let p = ParameterArena(seed: 0); p.finalize()
        let n = 20
        let x = randomBuffer(n, seed: 3, std: 2), dx = zeroBuffer(n)
        var c = GradCheckCase(params: p) { arena in
            let y = arena.allocate(n)
            geluForward(x, y, count: n)
            // Broken: Phi(x) only, the x phi(x) term forgotten.
            return (y, n, { dy in for i in 0..<n { dx[i] += dy[i] * 0.5 * (1 + erff(x[i] / 2.0.squareRoot().float)) } })
        }
        c.inputs = [("x", x, dx, n)]
        let err = gradCheck(c).relativeErrors["input:x"]!
        print("GELU without x phi(x): relative error \(err)")
        XCTAssertGreaterThan(err, 0.1)
    }

    func testGradientOffByAFactorIsCaught() {
        // A gradient scaled by 1.05 (say, a world-size factor applied to the wrong term) is caught at 1e-2.
        let report = gradCheck(linearCase { p, lin in
            let g = p.grad(lin.weight); for i in 0..<15 { g[i] *= 1.05 }
        })
        XCTAssertGreaterThan(report.relativeErrors["lin.weight"]!, 0.03)
    }
}

extension Double { var float: Float { Float(self) } }
