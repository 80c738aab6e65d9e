import CKernels

// The vectorised elementwise kernels of CKernels (polynomial exp and erf), for the layers.

/// GELU, erf form: y = x/2 (1 + erf(x/sqrt 2)). x, y are (count).
public func geluForward(_ x: ConstFloatPtr, _ y: FloatPtr, count: Int) { ck_gelu_forward(x, y, count) }

/// dx += dy * (Phi(x) + x phi(x)), Phi the normal CDF and phi its density.
public func geluBackward(_ x: ConstFloatPtr, _ dy: ConstFloatPtr, _ dx: FloatPtr, count: Int) {
    ck_gelu_backward(x, dy, dx, count)
}

/// Row-wise softmax in place over (rows, cols); masked columns (mask[j] == 0) get 0,
/// and a row with no unmasked column becomes all zeros.
@inline(__always)
func maskedSoftmaxRows(_ s: FloatPtr, rows: Int, cols: Int, mask: UnsafePointer<UInt8>?) {
    ck_masked_softmax_rows(s, rows, cols, mask)
}
