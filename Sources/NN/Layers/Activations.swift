import Foundation

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
