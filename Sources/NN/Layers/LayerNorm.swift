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
        let g = p.value(gamma), b = p.value(beta)
        for r in 0..<n {
            let xr = x + r * dim, yr = y + r * dim
            var m: Float = 0
            for i in 0..<dim { m += xr[i] }
            m /= Float(dim)
            var v: Float = 0
            for i in 0..<dim { let d = xr[i] - m; v += d * d }
            let rs = 1 / (v / Float(dim) + eps).squareRoot()
            for i in 0..<dim { yr[i] = (xr[i] - m) * rs * g[i] + b[i] }
            cache.mean[r] = m; cache.rstd[r] = rs
        }
        return cache
    }

    /// y = LayerNorm(x) again from the statistics forward kept (bit-identical to forward's y), for backward
    /// passes that recompute the output instead of storing it.
    public func recompute(_ p: ParameterArena, _ x: ConstFloatPtr, _ cache: LayerNormCache, _ y: FloatPtr, rows n: Int) {
        let g = p.value(gamma), b = p.value(beta)
        for r in 0..<n {
            let xr = x + r * dim, yr = y + r * dim, m = cache.mean[r], rs = cache.rstd[r]
            for i in 0..<dim { yr[i] = (xr[i] - m) * rs * g[i] + b[i] }
        }
    }

    /// Accumulates dx += rstd * (dy*g - mean(dy*g) - xhat * mean(dy*g*xhat)), dgamma += dy*xhat, dbeta += dy.
    public func backward(_ p: ParameterArena, _ x: ConstFloatPtr, _ cache: LayerNormCache, _ dy: ConstFloatPtr,
                         _ dx: FloatPtr, rows n: Int) {
        let g = p.value(gamma)
        let trainable = !p.isFrozen(gamma)
        let dg = p.grad(gamma), db = p.grad(beta)
        for r in 0..<n {
            let xr = x + r * dim, dyr = dy + r * dim, dxr = dx + r * dim
            let m = cache.mean[r], rs = cache.rstd[r]
            var meanDyg: Float = 0, meanDygX: Float = 0
            for i in 0..<dim {
                let xhat = (xr[i] - m) * rs
                let dyg = dyr[i] * g[i]
                meanDyg += dyg; meanDygX += dyg * xhat
                if trainable { dg[i] += dyr[i] * xhat; db[i] += dyr[i] }
            }
            meanDyg /= Float(dim); meanDygX /= Float(dim)
            for i in 0..<dim {
                let xhat = (xr[i] - m) * rs
                dxr[i] += rs * (dyr[i] * g[i] - meanDyg - xhat * meanDygX)
            }
        }
    }
}
