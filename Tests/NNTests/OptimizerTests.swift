import Foundation
import NN
import XCTest

/// Optimizer steps against values computed by hand from the update formulas.
final class OptimizerTests: XCTestCase {
    func makeArena() -> (ParameterArena, ParamRef, ParamRef) {
        let p = ParameterArena(seed: 0)
        p.groups = [ParamGroup(name: "a", learningRate: 0.1, weightDecay: 0.5), ParamGroup(name: "frozen", frozen: true)]
        let w = p.register("w", shape: [2], initializer: .zeros, group: 0)
        let f = p.register("f", shape: [1], initializer: .zeros, group: 1)
        p.finalize()
        p.value(w)[0] = 1; p.value(w)[1] = -2; p.value(f)[0] = 3
        return (p, w, f)
    }

    func testAdamTwoStepsByHand() {
        let (p, w, f) = makeArena()
        let opt = Optimizer(kind: .adam, params: p)
        // Step 1: g = [0.2, -0.4]; L2 decay adds 0.5 p -> g' = [0.7, -1.4].
        p.grad(w)[0] = 0.2; p.grad(w)[1] = -0.4; p.grad(f)[0] = 9
        opt.update(p)
        // m = 0.1 g', v = 0.001 g'^2; m_hat = g', v_hat = g'^2 -> p -= 0.1 * g'/(|g'| + 1e-8)
        XCTAssertEqual(p.value(w)[0], 1 - 0.1 * 0.7 / (0.7 + 1e-8), accuracy: 1e-6)
        XCTAssertEqual(p.value(w)[1], -2 + 0.1 * 1.4 / (1.4 + 1e-8), accuracy: 1e-6)
        XCTAssertEqual(p.value(f)[0], 3, "frozen group must not move")
        // Step 2, by hand for coordinate 0: g = 0.1 + 0.5 * 0.9 = 0.55.
        p.grad(w)[0] = 0.1; p.grad(w)[1] = 0
        opt.update(p)
        let g1 = 0.7, g2 = 0.1 + 0.5 * 0.9
        let m = 0.9 * (0.1 * g1) + 0.1 * g2
        let v = 0.999 * (0.001 * g1 * g1) + 0.001 * g2 * g2
        let mHat = m / (1 - 0.81), vHat = v / (1 - 0.999 * 0.999)
        XCTAssertEqual(Double(p.value(w)[0]), 0.9 - 0.1 * mHat / (vHat.squareRoot() + 1e-8), accuracy: 1e-5)
    }

    func testAdamWDecouplesWeightDecay() {
        let (p, w, _) = makeArena()
        let opt = Optimizer(kind: .adamw, params: p)
        p.grad(w)[0] = 0.2; p.grad(w)[1] = -0.4
        opt.update(p)
        // p = p (1 - lr wd) - lr * sign(g)
        XCTAssertEqual(p.value(w)[0], 1 * (1 - 0.05) - 0.1, accuracy: 1e-6)
        XCTAssertEqual(p.value(w)[1], -2 * (1 - 0.05) + 0.1, accuracy: 1e-6)
    }

    func testSGDAndScheduleFactor() {
        let (p, w, _) = makeArena()
        let opt = Optimizer(kind: .sgd, params: p)
        p.grad(w)[0] = 0.2; p.grad(w)[1] = -0.4
        opt.update(p, lrScale: 0.5)
        XCTAssertEqual(p.value(w)[0], 1 - 0.05 * (0.2 + 0.5), accuracy: 1e-7)
        XCTAssertEqual(p.value(w)[1], -2 - 0.05 * (-0.4 - 1.0), accuracy: 1e-7)
    }

    func testClipByGlobalNormIgnoresFrozen() {
        let (p, w, f) = makeArena()
        p.grad(w)[0] = 3; p.grad(w)[1] = 4; p.grad(f)[0] = 100
        let norm = clipGradientNorm(p, maxNorm: 1)
        XCTAssertEqual(norm, 5, accuracy: 1e-6)
        XCTAssertEqual(p.grad(w)[0], 0.6, accuracy: 1e-5)
        XCTAssertEqual(p.grad(w)[1], 0.8, accuracy: 1e-5)
        XCTAssertEqual(clipGradientNorm(p, maxNorm: 10), 1, accuracy: 1e-5)
        XCTAssertEqual(p.grad(w)[0], 0.6, accuracy: 1e-5, "below the limit: unchanged")
    }

    func testWarmupCosineSchedule() {
        let s = LearningRateSchedule.warmupCosine(warmupSteps: 10, totalSteps: 110, minRatio: 0.1)
        XCTAssertEqual(s.factor(step: 5), 0.5, accuracy: 1e-6)
        XCTAssertEqual(s.factor(step: 10), 1, accuracy: 1e-6)
        XCTAssertEqual(s.factor(step: 60), 0.1 + 0.9 * 0.5, accuracy: 1e-6)
        XCTAssertEqual(s.factor(step: 110), 0.1, accuracy: 1e-6)
        XCTAssertEqual(s.factor(step: 500), 0.1, accuracy: 1e-6)
        XCTAssertEqual(LearningRateSchedule.constant.factor(step: 7), 1)
    }

    func testActivationArenaReusesMemory() {
        let a = ActivationArena(blockFloats: 1024)
        for _ in 0..<3 {
            a.reset()
            _ = a.allocate(700); _ = a.allocate(700); _ = a.zeros(10)
        }
        XCTAssertEqual(a.peakFloats, 704 + 704 + 16, "requests are rounded up to 16 floats")
        XCTAssertEqual(a.reservedFloats, (704 + 704 + 16) * 3 / 2, "blocks coalesce into one of 1.5 x the peak size; no new block after that")
    }
}
