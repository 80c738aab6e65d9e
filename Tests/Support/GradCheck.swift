import Support
import NN

/// A differentiable computation under test: `run` does the forward pass into the arena and returns the
/// output and a closure that, given dL/dout, runs the backward pass (accumulating into `inputGrads` and the
/// parameter gradients of `params`).
public struct GradCheckCase {
    public init(params: ParameterArena, run: @escaping (ActivationArena) -> (output: FloatPtr, count: Int, backward: (ConstFloatPtr) -> Void)) {
        self.params = params; self.run = run
    }
    public let params: ParameterArena
    /// Inputs whose gradients are checked: (name, values, gradient accumulator, count).
    public var inputs: [(name: String, value: FloatPtr, grad: FloatPtr, count: Int)] = []
    public let run: (ActivationArena) -> (output: FloatPtr, count: Int, backward: (ConstFloatPtr) -> Void)
}

/// Outcome of comparing analytic and central-difference gradients, per tensor.
public struct GradCheckReport {
    /// tensor name -> ||analytic - numeric|| / max(||numeric||, 1e-3) over the checked coordinates.
    public var relativeErrors: [String: Double] = [:]
    public var worst: (name: String, error: Double) { relativeErrors.max { $0.value < $1.value }.map { ($0.key, $0.value) } ?? ("", 0) }
}

/// Central differences with step `eps` on L = sum_i out_i R_i (R fixed random, L accumulated in Float64),
/// at up to `samples` coordinates of every parameter tensor and every input.
///
/// Tolerance: every tensor's relative error (norm of the difference over the norm of the numeric gradient,
/// floored as explained below) must be below `tolerance` (default 1e-2). Float32 forward rounding gives about 1e-4 here; a wrong transpose,
/// a missing term or a wrong scale gives 1e-1 or more (see GradCheckSensitivityTests).
public func gradCheck(_ c: GradCheckCase, eps: Float = 1e-3, samples: Int = 24, seed: UInt64 = 7) -> GradCheckReport {
    let arena = ActivationArena(blockFloats: 1 << 16)
    var rng = RNG(seed: seed)
    // Analytic gradients.
    c.params.zeroGrads()
    for input in c.inputs { input.grad.update(repeating: 0, count: input.count) }
    arena.reset()
    let (out, n, backward) = c.run(arena)
    var r = [Float](repeating: 0, count: n)
    for i in 0..<n { r[i] = rng.normal() }
    _ = out
    r.withUnsafeBufferPointer { backward($0.baseAddress!) }

    func loss() -> Double {
        arena.reset()
        let (o, m, _) = c.run(arena)
        var s = 0.0
        for i in 0..<m { s += Double(o[i]) * Double(r[i]) }
        return s
    }
    var report = GradCheckReport()
    var sums: [String: (diff: Double, norm: Double, k: Int)] = [:]
    func check(name: String, values: FloatPtr, analytic: [Float]) {
        let count = analytic.count
        let idx: [Int] = count <= samples ? Array(0..<count) : (0..<samples).map { _ in rng.int(below: count) }
        var diff = 0.0, norm = 0.0
        for i in idx {
            let old = values[i]
            values[i] = old + eps; let lp = loss()
            values[i] = old - eps; let lm = loss()
            values[i] = old
            let numeric = (lp - lm) / (2 * Double(eps))
            diff += (Double(analytic[i]) - numeric) * (Double(analytic[i]) - numeric)
            norm += numeric * numeric
        }
        sums[name] = (diff, norm, idx.count)
    }
    for e in c.params.entries where !c.params.groups[e.group].frozen {
        let analytic = Array(UnsafeBufferPointer(start: c.params.grads + e.offset, count: e.count))
        check(name: e.name, values: c.params.values + e.offset, analytic: analytic)
    }
    for input in c.inputs {
        check(name: "input:" + input.name, values: input.value, analytic: Array(UnsafeBufferPointer(start: input.grad, count: input.count)))
    }
    // Some true gradients are exactly zero (an attention key bias: softmax ignores a constant per row).
    // Their relative error would compare two rounding noises, so the denominator is floored at a tenth of
    // the typical gradient size of the whole case: a wrong nonzero gradient there still fails.
    let total = sums.values.reduce((0.0, 0)) { ($0.0 + $1.norm, $0.1 + $1.k) }
    let rms = (total.0 / Double(max(total.1, 1))).squareRoot()
    for (name, s) in sums {
        let floor = max(0.1 * rms * Double(s.k).squareRoot(), 1e-6)
        report.relativeErrors[name] = s.diff.squareRoot() / max(s.norm.squareRoot(), floor)
    }
    return report
}

/// A buffer of `count` N(0, std) floats that the test owns.
public func randomBuffer(_ count: Int, seed: UInt64, std: Float = 1) -> FloatPtr {
    var rng = RNG(seed: seed)
    let p = FloatPtr.allocate(capacity: count)
    for i in 0..<count { p[i] = rng.normal() * std }
    return p
}

public func zeroBuffer(_ count: Int) -> FloatPtr {
    let p = FloatPtr.allocate(capacity: count)
    p.update(repeating: 0, count: count)
    return p
}

