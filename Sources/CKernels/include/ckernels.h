// Elementwise kernels that Swift's scalar libm calls (erff, expf) made the slowest part of a step:
// polynomial exp and erf in loops the C compiler vectorises. Only Sources/NN/Core/Kernels.swift imports this.
#pragma once
#include <stddef.h>
#include <stdint.h>

// y = x/2 (1 + erf(x / sqrt 2)), erf by Abramowitz-Stegun 7.1.26 (|error| <= 1.5e-7).
void ck_gelu_forward(const float *x, float *y, size_t n);
// dx += dy (Phi(x) + x phi(x)).
void ck_gelu_backward(const float *x, const float *dy, float *dx, size_t n);

// Multi-head attention over a batch of sequences stored back to back: sample b's queries are rows
// q_rows[b] ..< q_rows[b + 1] of q (rows of d = heads * head_dim floats), its keys and values rows
// k_rows[b] ..< k_rows[b + 1] of k and v; context has q's rows. Head widths 8/16/24/32 take the vector path.
// probs holds, sample after sample and head after head, (lq_b, ck_attention_padded(lk_b)) blocks with
// padding columns 0; mask (a byte per key row, 0 = ignore) may be NULL; work holds
// ck_attention_work_floats(max lq_b, max lk_b, head_dim) floats.
size_t ck_attention_padded(size_t lk);
size_t ck_attention_work_floats(size_t lq, size_t lk, size_t head_dim);
// P = softmax(scale Q_h K_h^T over the unmasked keys), context_h = P V_h (a query without keys gets P = 0).
void ck_attention_forward(size_t batch, size_t heads, size_t head_dim, const ptrdiff_t *q_rows, const ptrdiff_t *k_rows,
                          const float *q, const float *k, const float *v, const uint8_t *mask, float scale,
                          float *probs, float *context, float *work);
// From dcontext: dV_h = P^T dO_h, dS = P (dP - rowsum(P dP)) with dP = dO_h V_h^T, dQ_h = scale dS K_h,
// dK_h = scale dS^T Q_h. dq, dk, dv are written (not accumulated).
void ck_attention_backward(size_t batch, size_t heads, size_t head_dim, const ptrdiff_t *q_rows, const ptrdiff_t *k_rows,
                           const float *q, const float *k, const float *v, const float *probs, const float *dcontext,
                           float scale, float *dq, float *dk, float *dv, float *work);
