/// Masked mean over the sequence: y[b] = sum_l mask[b,l] x[b,l] / max(1, sum_l mask[b,l]).
/// x is (B, L, d), mask is (B, L) with 1 for real positions (nil: all real), y is (B, d).
public func maskedMeanForward(_ x: ConstFloatPtr, mask: UnsafePointer<UInt8>?, batch: Int, length: Int,
                              dim: Int, _ y: FloatPtr) {
    for b in 0..<batch {
        let yb = y + b * dim
        yb.update(repeating: 0, count: dim)
        var n = 0
        for l in 0..<length where mask == nil || mask![b * length + l] != 0 {
            let xr = x + (b * length + l) * dim
            for i in 0..<dim { yb[i] += xr[i] }
            n += 1
        }
        let s = 1 / Float(max(n, 1))
        for i in 0..<dim { yb[i] *= s }
    }
}

/// dx[b,l] += mask[b,l] dy[b] / count[b].
public func maskedMeanBackward(_ dy: ConstFloatPtr, mask: UnsafePointer<UInt8>?, batch: Int, length: Int,
                               dim: Int, _ dx: FloatPtr) {
    for b in 0..<batch {
        var n = 0
        for l in 0..<length where mask == nil || mask![b * length + l] != 0 { n += 1 }
        let s = 1 / Float(max(n, 1))
        for l in 0..<length where mask == nil || mask![b * length + l] != 0 {
            let dxr = dx + (b * length + l) * dim, dyb = dy + b * dim
            for i in 0..<dim { dxr[i] += dyb[i] * s }
        }
    }
}
