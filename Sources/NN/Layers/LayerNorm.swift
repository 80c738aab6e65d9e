import Foundation

/// What `LayerNorm.forward` keeps: per-row mean and 1/std, (N).
public struct LayerNormCache { public var mean: FloatPtr; public var rstd: FloatPtr }

/// y = (x - mean(x)) / sqrt(var(x) + eps) * gamma + beta over the last dimension.
public struct LayerNorm {
    public let dim: Int
    public let eps: Float
    public let gamma: ParamRef
    public let beta: ParamRef

    public init(_ params: ParameterArena, _ name: String, dim: Int, eps: Float = 1e-5, group: Int = 0) {
        self.dim = dim; self.eps = eps
        gamma = params.register("\(name).weight", shape: [dim], initializer: .ones, group: group)
        beta = params.register("\(name).bias", shape: [dim], initializer: .zeros, group: group)
    }

    /// x, y are (N, dim); y may equal x only when no backward follows.
    public func forward(_ p: ParameterArena, _ x: ConstFloatPtr, _ y: FloatPtr, rows n: Int,
                        arena: ActivationArena) -> LayerNormCache {
        let cache = LayerNormCache(mean: arena.allocate(n), rstd: arena.allocate(n))
        layerNormForward(x, y, gamma: p.value(gamma), beta: p.value(beta), mean: cache.mean, rstd: cache.rstd, rows: n, dim: dim, eps: eps)
        return cache
    }

    /// y = LayerNorm(x) again from the statistics forward kept (bit-identical to forward's y), for backward
    /// passes that recompute the output instead of storing it.
    public func recompute(_ p: ParameterArena, _ x: ConstFloatPtr, _ cache: LayerNormCache, _ y: FloatPtr, rows n: Int) {
        layerNormApply(x, y, gamma: p.value(gamma), beta: p.value(beta), mean: cache.mean, rstd: cache.rstd, rows: n, dim: dim)
    }

    /// Accumulates dx += rstd * (dy*g - mean(dy*g) - xhat * mean(dy*g*xhat)), dgamma += dy*xhat, dbeta += dy.
    /// x, dy, dx: (N, d).
    public func backward(_ p: ParameterArena, _ cache: LayerNormCache, _ x: ConstFloatPtr, dy: ConstFloatPtr,
                         dx: FloatPtr, rows n: Int) {
        let trainable = !p.isFrozen(gamma)
        layerNormBackward(x, dy, gamma: p.value(gamma), mean: cache.mean, rstd: cache.rstd, dx,
                          dgamma: trainable ? p.grad(gamma) : nil, dbeta: trainable ? p.grad(beta) : nil, rows: n, dim: dim)
    }
}
