import Foundation

/// Class-weighted binary cross-entropy on logits (CLaDMoP eq. 7):
/// L = -1/N sum_i [ w1 y_i log p_i + w0 (1 - y_i) log(1 - p_i) ], p_i = sigmoid(z_i).
/// Writes dL/dz into `dz` when given: (w1 y (p - 1) + w0 (1 - y) p) / N.
public func weightedBCE(logits z: ConstFloatPtr, labels y: ConstFloatPtr, count n: Int,
                        positiveWeight w1: Float, negativeWeight w0: Float, dz: FloatPtr?) -> Float {
    var loss = 0.0
    for i in 0..<n {
        // log p = -softplus(-z), log(1 - p) = -softplus(z)
        let logP = -softplus(-z[i]), log1mP = -softplus(z[i])
        loss -= Double(w1 * y[i] * logP + w0 * (1 - y[i]) * log1mP)
        if let dz {
            let p = sigmoid(z[i])
            dz[i] = (w1 * y[i] * (p - 1) + w0 * (1 - y[i]) * p) / Float(n)
        }
    }
    return Float(loss / Double(max(n, 1)))
}

/// Eq. 7's class weights: w_c = N / (2 N_c) for N trials of which N_c are of class c, so that both classes weigh
/// the same in total (a class without trials counts as one, as it then weighs nothing anyway).
public func classWeights(positives: Int, count n: Int) -> (positive: Float, negative: Float) {
    (Float(n) / Float(2 * max(positives, 1)), Float(n) / Float(2 * max(n - positives, 1)))
}

/// log(1 + exp(x)) without overflow.
@inline(__always) public func softplus(_ x: Float) -> Float {
    x > 0 ? x + log1pf(expf(-x)) : log1pf(expf(x))
}
