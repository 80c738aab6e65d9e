import Foundation

/// Which update rule `Optimizer.update(_:lrScale:)` applies.
public enum OptimizerKind: String, Sendable, CaseIterable {
    /// p -= lr (g + wd p)
    case sgd
    /// Adam with L2 weight decay added to the gradient (PyTorch `Adam`).
    case adam
    /// Adam with decoupled weight decay: p -= lr wd p before the Adam update (PyTorch `AdamW`).
    case adamw
}

/// Adam / AdamW / SGD over a `ParameterArena`, one loop per parameter group; frozen groups are skipped.
/// Adam: m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; p -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps).
/// Its moment arenas have the parameter arena's layout, so they checkpoint as plain vectors.
public final class Optimizer {
    public let kind: OptimizerKind
    public var beta1: Float
    public var beta2: Float
    public var eps: Float
    public private(set) var step = 0
    public let m: UnsafeMutablePointer<Float>
    public let v: UnsafeMutablePointer<Float>
    public let count: Int

    public init(kind: OptimizerKind, params: ParameterArena, beta1: Float = 0.9, beta2: Float = 0.999, eps: Float = 1e-8) {
        precondition(params.isFinalized)
        self.kind = kind; self.beta1 = beta1; self.beta2 = beta2; self.eps = eps
        count = params.count
        m = .allocate(capacity: max(count, 1)); m.update(repeating: 0, count: max(count, 1))
        v = .allocate(capacity: max(count, 1)); v.update(repeating: 0, count: max(count, 1))
    }

    deinit { m.deallocate(); v.deallocate() }

    /// Restores the step counter (from a checkpoint).
    public func restore(step: Int) { self.step = step }

    /// One update with every group's learning rate multiplied by `lrScale` (the schedule's factor).
    public func update(_ params: ParameterArena, lrScale: Float = 1) {
        step += 1
        let bc1 = 1 - powf(beta1, Float(step)), bc2 = 1 - powf(beta2, Float(step))
        let p = params.values, g = params.grads
        for e in params.entries {
            let group = params.groups[e.group]
            if group.frozen { continue }
            let lr = group.learningRate * lrScale, wd = group.weightDecay
            let lo = e.offset, hi = e.offset + e.count
            switch kind {
            case .sgd:
                for i in lo..<hi { p[i] -= lr * (g[i] + wd * p[i]) }
            case .adam, .adamw:
                adamUpdate(p + lo, g + lo, m + lo, v + lo, count: hi - lo, learningRate: lr, beta1: beta1, beta2: beta2,
                           eps: eps, bias1: bc1, bias2: bc2, weightDecay: wd, decoupled: kind == .adamw)
            }
        }
        // bf16 GEMMs read the weights' bf16 copy: made here, once per update, not per GEMM call.
        params.refreshLowPrecisionCopy()
    }
}

/// Scales the gradients of non-frozen groups so that their global L2 norm is at most `maxNorm`:
/// g <- g * maxNorm / (||g|| + 1e-6) when ||g|| > maxNorm > 0 (PyTorch's `clip_grad_norm_`).
/// Returns the norm before clipping.
@discardableResult
public func clipGradientNorm(_ params: ParameterArena, maxNorm: Float) -> Float {
    var ss = 0.0
    for e in params.entries where !params.groups[e.group].frozen { ss += sumOfSquares(params.grads + e.offset, count: e.count) }
    let norm = Float(ss.squareRoot())
    if maxNorm > 0 && norm > maxNorm {
        let c = maxNorm / (norm + 1e-6)
        for e in params.entries where !params.groups[e.group].frozen {
            let g = params.grads + e.offset
            for i in 0..<e.count { g[i] *= c }
        }
    }
    return norm
}
