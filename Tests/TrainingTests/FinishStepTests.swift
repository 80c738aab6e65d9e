import NN
import Training
import XCTest

/// The end of a training step (`finishStep`): the clipped update by hand, and a non-finite loss or gradient norm
/// refused before any parameter moves.
final class FinishStepTests: XCTestCase {
    func makeArena() -> (ParameterArena, ParamRef) {
        let p = ParameterArena(seed: 0)
        p.groups = [ParamGroup(name: "a", learningRate: 0.1)]
        let w = p.register("w", shape: [2], initializer: .zeros, group: 0)
        p.finalize()
        p.value(w)[0] = 1; p.value(w)[1] = -2
        return (p, w)
    }

    func testClipsThenUpdates() throws {
        let (p, w) = makeArena()
        let opt = Optimizer(kind: .sgd, params: p)
        p.grad(w)[0] = 3; p.grad(w)[1] = 4                 // ||g|| = 5, clipped to 1: g = [0.6, 0.8]
        let norm = try finishStep(p, optimizer: opt, loss: 0.7, maxNorm: 1)
        XCTAssertEqual(norm, 5, accuracy: 1e-6)
        XCTAssertEqual(p.value(w)[0], 1 - 0.1 * 0.6, accuracy: 1e-6)
        XCTAssertEqual(p.value(w)[1], -2 - 0.1 * 0.8, accuracy: 1e-6)
    }

    func testNonFiniteLossOrNormLeavesTheParameters() {
        for (loss, g0) in [(Double.nan, Float(1)), (.infinity, 1), (0.7, .infinity), (0.7, .nan)] {
            let (p, w) = makeArena()
            let opt = Optimizer(kind: .sgd, params: p)
            p.grad(w)[0] = g0; p.grad(w)[1] = 1
            XCTAssertThrowsError(try finishStep(p, optimizer: opt, loss: loss, maxNorm: 1)) { error in
                XCTAssertTrue("\(error)".contains(loss.isFinite ? "gradient norm is" : "loss is"), "\(error)")
            }
            XCTAssertEqual([p.value(w)[0], p.value(w)[1]], [1, -2], "loss \(loss), gradient \(g0): the parameters moved")
        }
    }
}
