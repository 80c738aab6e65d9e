import NN

extension CLaDMoP {
    /// Forward FLOPs of one sample at the given padded lengths, counted from the layer shapes
    /// (2 per multiply-add of every matmul, attention scores and weighted sums included).
    public func forwardFLOPs(molLength lm: Int, codeLength lc: Int, sentenceLength ls: Int) -> Double {
        let d = Double(config.dim), e = Double(config.encoderDim)
        func selfLayer(_ l: Double) -> Double { 2 * l * (4 * d * d) + 2 * 2 * l * l * d + 2 * l * 8 * d * d }
        func crossLayer(_ q: Double, _ k: Double) -> Double { 2 * (2 * q * d * d + 2 * k * d * d) + 2 * 2 * q * k * d + 2 * q * 8 * d * d }
        var f = Double(config.molLayers) * selfLayer(Double(lm)) + Double(config.disLayers) * selfLayer(Double(lc))
        let la = Double(config.centroidCount(config.groupingLayers - 1))
        for level in 0..<ModelConfig.levels {
            f += 2 * Double(ls) * e * d
            var kv = Double(lm + lc + ls) + (level > 0 ? la : 0)
            for g in 0..<config.groupingLayers {
                let c = Double(config.centroidCount(g))
                f += crossLayer(c, kv) + Double(config.selfLayers) * selfLayer(c)
                kv = c
            }
        }
        return f + 2 * d * e
    }
}
