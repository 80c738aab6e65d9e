@testable import NN
import TestSupport
import XCTest

/// bf16 GEMMs (oneDNN, fp32 accumulation) against an independent Float64 reference.
///
/// Bounds. bf16 keeps 8 significant bits: rounding to nearest gives |bf16(x) - x| <= u |x| with u = 2^-9. A product
/// of two rounded inputs is off by at most (2u + u^2) |x w|, so a dot product of length k satisfies
///   |y_bf16 - y_exact| <= (2u + u^2) S + e32,   S = sum_i |x_i| |w_i|,
/// where e32 <= k 2^-24 S (1 + ...) bounds fp32 accumulation (each of at most k additions rounds at 2^-24 relative to a
/// partial sum <= S). The tight check compares with the exact dot product of the *rounded* inputs (Float64 of
/// bf16(x) bf16(w), exact since 8 x 8 bits fit a double): there only accumulation error is left,
///   |y_bf16 - y_rounded| <= 2 k 2^-24 S   (the factor 2 covers the fp32 result's own rounding).
/// Skipping a conversion (fp32 inputs), a stale weight copy, or rounding the output to bf16 again breaks the tight
/// check by orders of magnitude (u S >> k 2^-24 S for k << 2^15), which the negative controls below show.
final class BF16Tests: XCTestCase {
    let u = 1.0 / 512.0, eps32 = 1.0 / 16_777_216.0

    func requireBF16() throws {
        try XCTSkipUnless(Precision.bf16Available, "no AVX512-BF16 here: bf16 runs as fp32 (see testFallbackSaysOneLineAndUsesFP32)")
    }

    /// bf16(x) in Float64, round to nearest even, written independently of CKernels (from the float's bits).
    func rounded(_ x: Float) -> Double {
        let bits = x.bitPattern
        let lower = bits & 0xffff, upper = bits >> 16
        var r = upper
        if lower > 0x8000 || (lower == 0x8000 && (upper & 1) == 1) { r += 1 }
        return Double(Float(bitPattern: r << 16))
    }

    func testConversionRoundsToNearestEven() throws {
        try requireBF16()
        // Normal numbers (VCVTNE2PS2BF16 treats subnormal inputs, |x| < 2^-126, as zero; they never matter here).
        let xs: [Float] = [1, 1 + 1 / 256, 1 + 3 / 512, 1 + 1 / 512, 1 + 1 / 512 + 1 / 4096, -2.75, 3.0e-30, 65504, .infinity]
        var out = [UInt16](repeating: 0, count: 40)
        let many = (0..<40).map { xs[$0 % xs.count] * (1 + Float($0) / 997) }
        many.withUnsafeBufferPointer { convertToBF16($0.baseAddress!, &out, count: 40) }   // 32-wide path and tail
        for (i, x) in many.enumerated() {
            XCTAssertEqual(Double(Float(bitPattern: UInt32(out[i]) << 16)), rounded(x), "bf16(\(x))")
        }
        // Spacing at 1 is 2^-7 = 4/512: 1 + 2/512 is a tie and goes to the even 1 (0x3f80); 1 + 6/512 is a tie
        // between 0x3f81 and 0x3f82 and goes to the even 0x3f82; 1 + 3/512 rounds to the nearer 0x3f81.
        for (t, want) in [(Float(1 + 2.0 / 512), UInt16(0x3f80)), (Float(1 + 6.0 / 512), 0x3f82), (Float(1 + 3.0 / 512), 0x3f81)] {
            var x = t, y: UInt16 = 0
            convertToBF16(&x, &y, count: 1)
            XCTAssertEqual(y, want, "bf16(\(t))")
        }
    }

    /// Largest |got - ref| / (bound factor x S) over a GEMM, for C = op(A) op(B) given as closures.
    struct Check { var worst = 0.0; var looseWorst = 0.0 }

    /// Compares a row-major (m, n) result with the Float64 dot products of rounded inputs (`tight`) and of the
    /// fp32 inputs (`loose`, the (2u + u^2) bound). Returns the worst ratios: <= 1 passes.
    func check(_ c: UnsafePointer<Float>, m: Int, n: Int, k: Int, a: (Int, Int) -> Float, b: (Int, Int) -> Float,
               base: ((Int, Int) -> Double)? = nil) -> Check {
        var r = Check()
        for i in 0..<m {
            for j in 0..<n {
                var exact = base?(i, j) ?? 0, rnd = exact, s = abs(exact)
                for l in 0..<k {
                    let x = a(i, l), w = b(l, j)
                    exact += Double(x) * Double(w); rnd += rounded(x) * rounded(w); s += abs(Double(x) * Double(w))
                }
                let got = Double(c[i * n + j])
                r.worst = max(r.worst, abs(got - rnd) / (2 * Double(k + 1) * eps32 * s + 1e-30))
                r.looseWorst = max(r.looseWorst, abs(got - exact) / ((2 * u + u * u + 2 * Double(k + 1) * eps32) * s + 1e-30))
            }
        }
        return r
    }

    func testLinearForwardAndBackwardInBF16() throws {
        try requireBF16()
        let p = ParameterArena(seed: 11)
        let inF = 96, outF = 40, n = 33
        let lin = Linear(p, "lin", inFeatures: inF, outFeatures: outF)
        p.finalize()
        p.setPrecision(.bf16)
        let x = randomBuffer(n * inF, seed: 12), dy = randomBuffer(n * outF, seed: 13)
        let arena = ActivationArena()
        let y = arena.allocate(n * outF)
        let cache = lin.forward(p, x, y, rows: n, arena: arena)
        let w = p.value(lin.weight), bias = p.value(lin.bias!)
        let fwd = check(y, m: n, n: outF, k: inF, a: { x[$0 * inF + $1] }, b: { w[$1 * inF + $0] }, base: { Double(bias[$1]) })
        XCTAssertLessThanOrEqual(fwd.worst, 1, "forward y = x W^T + b vs the rounded inputs' exact product")
        XCTAssertLessThanOrEqual(fwd.looseWorst, 1, "forward within (2u + u^2) S of the fp32 product")
        let dx = arena.zeros(n * inF)
        lin.backward(p, cache, x, dy: dy, dx: dx, rows: n, arena: arena)
        let dxc = check(dx, m: n, n: inF, k: outF, a: { dy[$0 * outF + $1] }, b: { w[$0 * inF + $1] })
        XCTAssertLessThanOrEqual(dxc.worst, 1, "dx = dy W"); XCTAssertLessThanOrEqual(dxc.looseWorst, 1)
        let dW = p.grad(lin.weight)
        let dwc = check(dW, m: outF, n: inF, k: n, a: { dy[$1 * outF + $0] }, b: { x[$0 * inF + $1] })
        XCTAssertLessThanOrEqual(dwc.worst, 1, "dW = dy^T x"); XCTAssertLessThanOrEqual(dwc.looseWorst, 1)
        // The bias gradient is an fp32 row sum, not a GEMM: exact to fp32 accumulation.
        for j in 0..<outF {
            let s = (0..<n).reduce(0.0) { $0 + Double(dy[$1 * outF + j]) }, sAbs = (0..<n).reduce(0.0) { $0 + abs(Double(dy[$1 * outF + j])) }
            XCTAssertEqual(Double(p.grad(lin.bias!)[j]), s, accuracy: 2 * Double(n) * eps32 * sAbs)
        }
    }

    /// Negative controls: each mistake the tight check exists for makes it fail.
    func testTightCheckCatchesSkippedStaleAndDoubledRounding() throws {
        try requireBF16()
        let p = ParameterArena(seed: 21)
        let inF = 64, outF = 24, n = 17
        let lin = Linear(p, "lin", inFeatures: inF, outFeatures: outF, bias: false)
        p.finalize()
        let x = randomBuffer(n * inF, seed: 22)
        let arena = ActivationArena()
        let y = arena.allocate(n * outF)
        let w = p.value(lin.weight)
        func verdict() -> Double {
            check(y, m: n, n: outF, k: inF, a: { x[$0 * inF + $1] }, b: { w[$1 * inF + $0] }).worst
        }
        // Skipped conversion: the same layer in fp32.
        p.setPrecision(.fp32)
        lin.forward(p, x, y, rows: n, arena: arena)
        XCTAssertGreaterThan(verdict(), 10, "fp32 inputs must fail the bf16 tight check")
        // Stale copy: the fp32 weights change after the copy was made and nobody refreshes it.
        p.setPrecision(.bf16)
        for i in 0..<outF * inF { w[i] += 0.01 * Float(i % 7) }
        lin.forward(p, x, y, rows: n, arena: arena)
        XCTAssertGreaterThan(verdict(), 10, "a stale bf16 weight copy must fail")
        p.refreshLowPrecisionCopy()
        lin.forward(p, x, y, rows: n, arena: arena)
        XCTAssertLessThanOrEqual(verdict(), 1, "after the refresh the check passes")
        // Rounded twice: the fp32 output rounded to bf16 again.
        var y16 = [UInt16](repeating: 0, count: n * outF)
        convertToBF16(y, &y16, count: n * outF); convertFromBF16(y16, y, count: n * outF)
        XCTAssertGreaterThan(verdict(), 10, "an output rounded to bf16 must fail")
    }

    /// Adam updates the fp32 master weights and remakes the bf16 copy once per update, not per GEMM call.
    func testWeightsConvertedOncePerOptimizerStep() throws {
        try requireBF16()
        let p = ParameterArena(seed: 31)
        let lin = Linear(p, "lin", inFeatures: 16, outFeatures: 8)
        p.finalize()
        p.setPrecision(.bf16)
        XCTAssertEqual(p.lowPrecisionRefreshes, 1)
        let opt = Optimizer(kind: .adam, params: p)
        let x = randomBuffer(5 * 16, seed: 32), dy = randomBuffer(5 * 8, seed: 33)
        let arena = ActivationArena()
        for step in 1...3 {
            let y = arena.allocate(5 * 8), dx = arena.zeros(5 * 16)
            for _ in 0..<4 {   // several forward/backward calls in one step
                let c = lin.forward(p, x, y, rows: 5, arena: arena)
                lin.backward(p, c, x, dy: dy, dx: dx, rows: 5, arena: arena)
            }
            opt.update(p)
            XCTAssertEqual(p.lowPrecisionRefreshes, 1 + step)
            let w = p.value(lin.weight), w16 = p.valueBF16(lin.weight)!
            for i in 0..<16 * 8 { XCTAssertEqual(Double(Float(bitPattern: UInt32(w16[i]) << 16)), rounded(w[i])) }
        }
    }

    func testLoRAInBF16MatchesRoundedReference() throws {
        try requireBF16()
        let p = ParameterArena(seed: 41)
        p.groups = [ParamGroup(name: "base", frozen: true), ParamGroup(name: "lora")]
        var lin = Linear(p, "lin", inFeatures: 32, outFeatures: 12, bias: false, group: 0)
        lin.addLoRA(p, "lin", rank: 4, alpha: 8, group: 1)
        p.finalize()
        let bl = p.value(lin.adapter!.b)
        for i in 0..<12 * 4 { bl[i] = Float(i % 5) * 0.1 - 0.2 }
        let bf16 = lin.forwardTwice(p, rows: 9, precision: .bf16), fp32 = lin.forwardTwice(p, rows: 9, precision: .fp32)
        // y = x W^T + s (x A^T) B^T: three GEMMs with rounded inputs; relative to |y| scale the error is a few u.
        let scale = fp32.map { abs(Double($0)) }.max()!
        let diff = zip(bf16, fp32).map { abs(Double($0) - Double($1)) }.max()!
        XCTAssertLessThan(diff, 3 * 32 * u * scale)
        XCTAssertGreaterThan(diff, 0, "bf16 must differ from fp32 somewhere (a skipped conversion would not)")
    }

    func testFallbackSaysOneLineAndUsesFP32() throws {
        var lines: [String] = []
        let got = Precision.resolve(.bf16, key: "train.precision", say: { lines.append($0) }, available: false)
        let again = Precision.resolve(.bf16, key: "train.precision", say: { lines.append($0) }, available: false)
        XCTAssertEqual(got, .fp32); XCTAssertEqual(again, .fp32)
        XCTAssertEqual(lines.count, 1, "one line per process")
        XCTAssertTrue(lines.first?.contains("train.precision = bf16") == true && lines.first?.contains("fp32") == true, "\(lines)")
        XCTAssertEqual(Precision.resolve(.fp32, key: "train.precision", say: { lines.append($0) }, available: false), .fp32)
        XCTAssertEqual(Precision.resolve(.bf16, key: "train.precision", say: { lines.append($0) }, available: true), .bf16)
        XCTAssertEqual(lines.count, 1)
    }
}

private extension Linear {
    /// y of the same inputs in `precision` (x from a fixed seed).
    func forwardTwice(_ p: ParameterArena, rows n: Int, precision: Precision) -> [Float] {
        p.setPrecision(precision)
        let x = randomBuffer(n * inFeatures, seed: 42)
        let arena = ActivationArena()
        let y = arena.allocate(n * outFeatures)
        forward(p, x, y, rows: n, arena: arena)
        return Array(UnsafeBufferPointer(start: y, count: n * outFeatures))
    }
}
