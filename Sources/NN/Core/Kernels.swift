import CKernels

// The C kernels of CKernels for the layers: vectorised GELU (polynomial exp and erf) and the attention core.

/// GELU, erf form: y = x/2 (1 + erf(x/sqrt 2)). x, y are (count).
public func geluForward(_ x: ConstFloatPtr, _ y: FloatPtr, count: Int) { ck_gelu_forward(x, y, count) }

/// dx += dy * (Phi(x) + x phi(x)), Phi the normal CDF and phi its density.
public func geluBackward(_ x: ConstFloatPtr, _ dy: ConstFloatPtr, _ dx: FloatPtr, count: Int) {
    ck_gelu_backward(x, dy, dx, count)
}

/// Multi-head attention core (CKernels/attention.c): for each sequence and head,
/// P = softmax(scale Q_h K_h^T over the unmasked keys) and context_h = P V_h. q and context have the rows of
/// `queries`, k and v those of `keys`; `probs` holds `attentionProbabilityCount` floats; mask is per key row.
func attentionForward(heads: Int, headDim: Int, queries: SequenceLayout, keys: SequenceLayout,
                      q: ConstFloatPtr, k: ConstFloatPtr, v: ConstFloatPtr, mask: UnsafePointer<UInt8>?, scale: Float,
                      probs: FloatPtr, context: FloatPtr, arena: ActivationArena) {
    let work = arena.allocate(ck_attention_work_floats(queries.maxLength, keys.maxLength, headDim))
    queries.rowOffsets.withUnsafeBufferPointer { qr in keys.rowOffsets.withUnsafeBufferPointer { kr in
        ck_attention_forward(queries.count, heads, headDim, qr.baseAddress!, kr.baseAddress!, q, k, v, mask, scale, probs, context, work)
    } }
}

/// Backward of `attentionForward`: dV_h = P^T dO_h, dS = P (dP - rowsum(P dP)) with dP = dO_h V_h^T,
/// dQ_h = scale dS K_h, dK_h = scale dS^T Q_h. dq, dk, dv are overwritten.
func attentionBackward(heads: Int, headDim: Int, queries: SequenceLayout, keys: SequenceLayout,
                       q: ConstFloatPtr, k: ConstFloatPtr, v: ConstFloatPtr, probs: ConstFloatPtr, dContext: ConstFloatPtr,
                       scale: Float, dq: FloatPtr, dk: FloatPtr, dv: FloatPtr, arena: ActivationArena) {
    let work = arena.allocate(ck_attention_work_floats(queries.maxLength, keys.maxLength, headDim))
    queries.rowOffsets.withUnsafeBufferPointer { qr in keys.rowOffsets.withUnsafeBufferPointer { kr in
        ck_attention_backward(queries.count, heads, headDim, qr.baseAddress!, kr.baseAddress!, q, k, v, probs, dContext, scale,
                              dq, dk, dv, work)
    } }
}

/// Floats of the stored attention probabilities: per sequence and head, (Lq, Lk rounded up to 8).
func attentionProbabilityCount(heads: Int, queries: SequenceLayout, keys: SequenceLayout) -> Int {
    (0..<queries.count).reduce(0) { $0 + heads * queries.length($1) * ck_attention_padded(keys.length($1)) }
}
