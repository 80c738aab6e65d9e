import NN

/// What `PredictionHead.forward` keeps.
public struct HeadCache {
    var x: FloatPtr
    var pre: [FloatPtr]      // pre-activations of the 3 hidden layers
    var z: [FloatPtr]        // z1, z2, z3
    var caches: [LinearCache]
}

/// The fine-tuning head on concat(f_C, mean(U^{D,M})): a 3-layer residual feed-forward network with ReLU,
/// z1 = ReLU(W1 x), z2 = z1 + ReLU(W2 z1), z3 = z2 + ReLU(W3 z2), logit = w z3 + b; p = sigmoid(logit).
public struct PredictionHead {
    public let inputDim: Int
    public let hiddenDim: Int
    let layers: [Linear]
    let output: Linear

    public init(_ params: ParameterArena, inputDim: Int, hiddenDim: Int, group: Int) {
        self.inputDim = inputDim; self.hiddenDim = hiddenDim
        layers = [Linear(params, "finetune.head.fc1", inFeatures: inputDim, outFeatures: hiddenDim, group: group),
                  Linear(params, "finetune.head.fc2", inFeatures: hiddenDim, outFeatures: hiddenDim, group: group),
                  Linear(params, "finetune.head.fc3", inFeatures: hiddenDim, outFeatures: hiddenDim, group: group)]
        output = Linear(params, "finetune.head.out", inFeatures: hiddenDim, outFeatures: 1, group: group)
    }

    /// x (n, inputDim) -> logits (n).
    public func forward(_ p: ParameterArena, _ x: FloatPtr, logits: FloatPtr, rows n: Int, arena: ActivationArena) -> HeadCache {
        var c = HeadCache(x: x, pre: [], z: [], caches: [])
        var input = ConstFloatPtr(x)
        for (k, layer) in layers.enumerated() {
            let pre = arena.allocate(n * hiddenDim), z = arena.allocate(n * hiddenDim)
            c.caches.append(layer.forward(p, input, pre, rows: n, arena: arena))
            reluForward(pre, z, count: n * hiddenDim)
            if k > 0 { for i in 0..<n * hiddenDim { z[i] += input[i] } }
            c.pre.append(pre); c.z.append(z)
            input = ConstFloatPtr(z)
        }
        c.caches.append(output.forward(p, input, logits, rows: n, arena: arena))
        return c
    }

    /// Accumulates dx (n, inputDim) when given and the head's parameter gradients from dlogits (n).
    public func backward(_ p: ParameterArena, _ c: HeadCache, dLogits: ConstFloatPtr, dx: FloatPtr?, rows n: Int, arena: ActivationArena) {
        var dz = arena.zeros(n * hiddenDim)
        output.backward(p, c.caches[3], c.z[2], dy: dLogits, dx: dz, rows: n, arena: arena)
        for k in stride(from: 2, through: 0, by: -1) {
            let input: ConstFloatPtr = k == 0 ? ConstFloatPtr(c.x) : ConstFloatPtr(c.z[k - 1])
            let dPre = arena.zeros(n * hiddenDim)
            reluBackward(c.pre[k], dz, dPre, count: n * hiddenDim)
            let dIn = k == 0 ? dx : arena.zeros(n * hiddenDim)
            if k > 0, let dIn { dIn.update(from: dz, count: n * hiddenDim) }   // residual path
            layers[k].backward(p, c.caches[k], input, dy: dPre, dx: dIn, rows: n, arena: arena)
            if let dIn { dz = dIn }
        }
    }
}
