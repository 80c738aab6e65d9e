public typealias FloatPtr = UnsafeMutablePointer<Float>
public typealias ConstFloatPtr = UnsafePointer<Float>

/// Low-rank adapter of a frozen Linear (LoRA, Hu et al. 2021):
/// y += (alpha / r) * (x A^T) B^T, A is (r, in) ~ U(-1/sqrt(in), 1/sqrt(in)), B is (out, r) = 0.
public struct LoRAAdapter {
    public let rank: Int
    public let scaling: Float
    public let a: ParamRef
    public let b: ParamRef
}

/// What `Linear.forward` keeps for backward: the LoRA intermediate t = x A^T, (N, r).
public struct LinearCache { public var t: FloatPtr? = nil; public init(t: FloatPtr? = nil) { self.t = t } }

/// y = x W^T + b, W is (out, in) as in PyTorch, optionally with a LoRA adapter.
/// Every GEMM runs in the arena's precision (`ParameterArena.precision`) unless a backward call's `precision` overrides it
/// (fp32 for the shared queries' partial sums, `MultiHeadAttention.backward`): in bf16, x, dy and the weights' bf16 copy
/// (made once per optimizer step) are the inputs, products are accumulated in fp32, and y, dx and the gradients are
/// fp32 (the bias add and the bias gradient's row sum are fp32 too).
public struct Linear {
    public let inFeatures: Int
    public let outFeatures: Int
    public let weight: ParamRef
    public let bias: ParamRef?
    public private(set) var adapter: LoRAAdapter?

    public init(_ params: ParameterArena, _ name: String, inFeatures: Int, outFeatures: Int,
                bias: Bool = true, group: Int = 0) {
        self.inFeatures = inFeatures
        self.outFeatures = outFeatures
        weight = params.register("\(name).weight", shape: [outFeatures, inFeatures],
                                 initializer: .uniformFanIn(inFeatures), group: group)
        self.bias = bias ? params.register("\(name).bias", shape: [outFeatures],
                                           initializer: .uniformFanIn(inFeatures), group: group) : nil
    }

    /// Adds a LoRA adapter of rank `rank` whose parameters live in group `group`.
    public mutating func addLoRA(_ params: ParameterArena, _ name: String, rank: Int, alpha: Float, group: Int) {
        let a = params.register("\(name).lora_a", shape: [rank, inFeatures],
                                initializer: .uniformFanIn(inFeatures), group: group)
        let b = params.register("\(name).lora_b", shape: [outFeatures, rank], initializer: .zeros, group: group)
        adapter = LoRAAdapter(rank: rank, scaling: alpha / Float(rank), a: a, b: b)
    }

    /// x is (N, in), y is (N, out). y = x W^T + b [+ scaling (x A^T) B^T].
    @discardableResult
    public func forward(_ p: ParameterArena, _ x: ConstFloatPtr, _ y: FloatPtr, rows n: Int,
                        arena: ActivationArena? = nil) -> LinearCache {
        if let bias {
            let bv = p.value(bias)
            for r in 0..<n { (y + r * outFeatures).update(from: bv, count: outFeatures) }
        }
        gemm(p.precision, transB: true, m: n, n: outFeatures, k: inFeatures, a: x, b: p.value(weight), bBF16: p.valueBF16(weight),
             beta: bias == nil ? 0 : 1, c: y)
        guard let ad = adapter else { return LinearCache() }
        let t = arena!.allocate(n * ad.rank)
        gemm(p.precision, transB: true, m: n, n: ad.rank, k: inFeatures, a: x, b: p.value(ad.a), bBF16: p.valueBF16(ad.a), c: t)
        gemm(p.precision, transB: true, m: n, n: outFeatures, k: ad.rank, alpha: ad.scaling, a: t, b: p.value(ad.b),
             bBF16: p.valueBF16(ad.b), beta: 1, c: y)
        return LinearCache(t: t)
    }

    /// Accumulates: dx += dy W (when dx is given), dW += dy^T x, db += sum over rows of dy
    /// (skipped for frozen groups), and for LoRA dB += s dy^T t, dA += s (dy B)^T x, dx += s (dy B) A.
    /// `biasGradientIsZero`: the caller knows db = 0 exactly (see `MultiHeadAttention.backward`), so the
    /// rounding noise of the row sum is not accumulated. `precision`: the GEMMs' precision when not the arena's; fp32
    /// for a dy that is a partial sum over the batch's rows (shared queries), which must not be rounded to bf16 before
    /// the sum is complete (SPEC 9: every reduction stays fp32).
    /// x (N, in), dy (N, out), dx (N, in).
    public func backward(_ p: ParameterArena, _ cache: LinearCache, _ x: ConstFloatPtr, dy: ConstFloatPtr,
                         dx: FloatPtr?, rows n: Int, arena: ActivationArena? = nil, biasGradientIsZero: Bool = false,
                         precision: Precision? = nil) {
        let dt = backwardParameters(p, cache, x, dy: dy, rows: n, arena: arena, biasGradientIsZero: biasGradientIsZero,
                                    precision: precision)
        if let dx { backwardInput(p, cache, dy: dy, dx: dx, rows: n, arena: arena, loraDt: dt, precision: precision) }
    }

    /// The input half of `backward`: dx += dy W (+ s (dy B) A with LoRA). Needs no x. `loraDt`: s dy B when
    /// `backwardParameters` already computed it.
    public func backwardInput(_ p: ParameterArena, _ cache: LinearCache, dy: ConstFloatPtr, dx: FloatPtr, rows n: Int,
                              arena: ActivationArena? = nil, loraDt: FloatPtr? = nil, precision: Precision? = nil) {
        let precision = precision ?? p.precision
        gemm(precision, m: n, n: inFeatures, k: outFeatures, a: dy, b: p.value(weight), bBF16: p.valueBF16(weight),
             beta: 1, c: dx)
        guard let ad = adapter, cache.t != nil else { return }
        let dt = loraDt ?? loraInputGradient(p, ad, dy, rows: n, arena: arena!, precision: precision)
        gemm(precision, m: n, n: inFeatures, k: ad.rank, a: dt, b: p.value(ad.a), bBF16: p.valueBF16(ad.a), beta: 1, c: dx)
    }

    /// dt = s dy B, (N, r): the gradient at the LoRA intermediate t = x A^T.
    private func loraInputGradient(_ p: ParameterArena, _ ad: LoRAAdapter, _ dy: ConstFloatPtr, rows n: Int,
                                   arena: ActivationArena, precision: Precision) -> FloatPtr {
        let dt = arena.allocate(n * ad.rank)
        gemm(precision, m: n, n: ad.rank, k: outFeatures, alpha: ad.scaling, a: dy, b: p.value(ad.b), bBF16: p.valueBF16(ad.b),
             c: dt)
        return dt
    }

    /// The parameter half of `backward`: dW += dy^T x, db += sum of dy, LoRA dB and dA. Returns dt = s dy B
    /// when it computed it (A trainable), for `backwardInput`.
    @discardableResult
    public func backwardParameters(_ p: ParameterArena, _ cache: LinearCache, _ x: ConstFloatPtr, dy: ConstFloatPtr,
                                   rows n: Int, arena: ActivationArena? = nil, biasGradientIsZero: Bool = false,
                                   precision: Precision? = nil) -> FloatPtr? {
        let precision = precision ?? p.precision
        if !p.isFrozen(weight) {
            gemm(precision, transA: true, m: outFeatures, n: inFeatures, k: n, a: dy, b: x, beta: 1, c: p.grad(weight))
        }
        if let bias, !p.isFrozen(bias), !biasGradientIsZero {
            let gb = p.grad(bias)
            for r in 0..<n {
                let row = dy + r * outFeatures
                for j in 0..<outFeatures { gb[j] += row[j] }
            }
        }
        guard let ad = adapter, let t = cache.t else { return nil }
        if !p.isFrozen(ad.b) {
            gemm(precision, transA: true, m: outFeatures, n: ad.rank, k: n, alpha: ad.scaling, a: dy, b: t,
                 beta: 1, c: p.grad(ad.b))
        }
        guard !p.isFrozen(ad.a) else { return nil }
        let dt = loraInputGradient(p, ad, dy, rows: n, arena: arena!, precision: precision)
        gemm(precision, transA: true, m: ad.rank, n: inFeatures, k: n, a: dt, b: x, beta: 1, c: p.grad(ad.a))
        return dt
    }
}

extension ParameterArena {
    @inline(__always) public func isFrozen(_ ref: ParamRef) -> Bool { groups[entries[ref.index].group].frozen }
}
