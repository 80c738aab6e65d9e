import Foundation

/// GELU, erf form: y = x/2 (1 + erf(x/sqrt 2)). x, y are (count).
public func geluForward(_ x: ConstFloatPtr, _ y: FloatPtr, count: Int) {
    for i in 0..<count { y[i] = 0.5 * x[i] * (1 + erff(x[i] * 0.70710678)) }
}

/// dx += dy * (Phi(x) + x phi(x)), Phi the normal CDF and phi its density.
public func geluBackward(_ x: ConstFloatPtr, _ dy: ConstFloatPtr, _ dx: FloatPtr, count: Int) {
    for i in 0..<count {
        let v = x[i]
        let cdf = 0.5 * (1 + erff(v * 0.70710678))
        let pdf = expf(-0.5 * v * v) * 0.39894228
        dx[i] += dy[i] * (cdf + v * pdf)
    }
}

/// y = max(x, 0).
public func reluForward(_ x: ConstFloatPtr, _ y: FloatPtr, count: Int) {
    for i in 0..<count { y[i] = max(x[i], 0) }
}

/// dx += dy where x > 0.
public func reluBackward(_ x: ConstFloatPtr, _ dy: ConstFloatPtr, _ dx: FloatPtr, count: Int) {
    for i in 0..<count where x[i] > 0 { dx[i] += dy[i] }
}

/// Sigmoid 1 / (1 + exp(-z)), stable for large |z|.
@inline(__always) public func sigmoid(_ z: Float) -> Float {
    z >= 0 ? 1 / (1 + expf(-z)) : expf(z) / (1 + expf(z))
}
