// Kernels in C where Swift's scalar code (libm erff and expf, unvectorised loops) made a step slow:
// GELU with polynomial exp and erf, attention over narrow heads, Adam. Only Sources/NN/Core/Kernels.swift imports this.
#pragma once
#include <stddef.h>
#include <stdint.h>

// y = x/2 (1 + erf(x / sqrt 2)), erf by Abramowitz-Stegun 7.1.26 (|error| <= 1.5e-7).
void ck_gelu_forward(const float *x, float *y, size_t n);
// y = GELU(x) and dydx = GELU'(x) = Phi(x) + x phi(x) (one exp for both).
void ck_gelu_forward_derivative(const float *x, float *y, float *dydx, size_t n);

// Multi-head attention over a batch of sequences stored back to back: sample b's queries are rows
// q_rows[b] ..< q_rows[b + 1] of q (rows of d = heads * head_dim floats), its keys and values rows
// k_rows[b] ..< k_rows[b + 1] of k and v; context has q's rows. Head widths 8/16/24/32 take the vector path.
// The probabilities are not stored: lse keeps each query row's log-sum-exp per head (query rows x heads
// floats, sample after sample, head-major within a sample) and backward recomputes P from it.
// With shared_queries nonzero every sample's queries are rows 0 ..< lq_b of q (learned queries such as
// centroids); q_rows still places lse, context and dq. key_keep (1 = real key, 0 = ignore; a float per key row)
// may be NULL; work holds
// ck_attention_work_floats(max lq_b, max lk_b, head_dim) floats.
size_t ck_attention_work_floats(size_t lq, size_t lk, size_t head_dim);
// P = softmax(scale Q_h K_h^T + R_h over the real keys), context_h = P V_h (a query without keys gets P = 0).
// R_h (query i, key j) = relative_bias[h (2 span - 1) + (j - i) + span - 1], a bias by relative position (MPNet's),
// span >= every sample's lq and lk; relative_bias NULL: R = 0. Backward takes no R: a model with one is forward only.
void ck_attention_forward(size_t batch, size_t heads, size_t head_dim, const ptrdiff_t *q_rows, const ptrdiff_t *k_rows,
                          int shared_queries, const float *q, const float *k, const float *v, const float *key_keep, float scale,
                          const float *relative_bias, size_t relative_span, float *lse, float *context, float *work);
// From dcontext, with P = exp(scale Q_h K_h^T - lse) recomputed: context_h = P V_h again, dV_h = P^T dO_h,
// dS = P (dP - D) with dP = dO_h V_h^T and D_i = rowsum(P_i dP_i) = dO_i . context_i, dQ_h = scale dS K_h, dK_h = scale dS^T Q_h.
// context, dq, dk, dv are written (not accumulated).
void ck_attention_backward(size_t batch, size_t heads, size_t head_dim, const ptrdiff_t *q_rows, const ptrdiff_t *k_rows,
                           int shared_queries, const float *q, const float *k, const float *v, const float *key_keep, const float *lse,
                           const float *dcontext, float scale, float *context, float *dq, float *dk, float *dv, float *work);

// One Adam step over n parameters: g += wd p (L2) or p -= lr wd p (decoupled, AdamW); m = b1 m + (1 - b1) g;
// v = b2 v + (1 - b2) g^2; p -= lr (m / bias1) / (sqrt(v / bias2) + eps), bias_k = 1 - b_k^t.
void ck_adam_update(float *restrict p, const float *restrict g, float *restrict m, float *restrict v, size_t n,
                    float lr, float beta1, float beta2, float eps, float bias1, float bias2, float weight_decay,
                    int decoupled);

// LayerNorm over rows of dim floats: mean, rstd = 1 / sqrt(var + eps) per row, y = (x - mean) rstd gamma + beta.
// work holds dim floats (forward) or 3 dim floats (backward).
void ck_layernorm_forward(const float *x, float *y, const float *gamma, const float *beta, float *mean, float *rstd,
                          size_t rows, size_t dim, float eps, float *work);
// y from the kept statistics, bit-identical to forward's.
void ck_layernorm_apply(const float *x, float *y, const float *gamma, const float *beta, const float *mean,
                        const float *rstd, size_t rows, size_t dim);
// dx += rstd (dy gamma - mean(dy gamma) - xhat mean(dy gamma xhat)); dgamma += dy xhat, dbeta += dy unless
// dgamma is NULL (frozen).
void ck_layernorm_backward(const float *x, const float *dy, const float *gamma, const float *mean, const float *rstd,
                           float *dx, float *dgamma, float *dbeta, size_t rows, size_t dim, float *work);

// sum_i x_i^2, accumulated in double (gradient norms).
double ck_sum_squares(const float *x, size_t n);

// bfloat16 (the upper half of a float32). 1 when the CPU executes AVX512-BF16 (VCVTNE2PS2BF16, VDPBF16PS).
int ck_cpu_has_avx512_bf16(void);
// Subnormal floats (|x| < 2^-126) in the calling thread's arithmetic: on = 1 flushes them to zero (x86 MXCSR FTZ and
// DAZ, arm64 FPCR.FZ), on = 0 restores IEEE gradual underflow. Returns 0 where the architecture has no such mode.
// Threads created afterwards inherit the mode.
int ck_set_flush_denormals(int on);
// 1 when the calling thread flushes subnormals (both FTZ and DAZ on x86), else 0.
int ck_flush_denormals(void);
// Restarts OpenBLAS's worker threads (a pthread build's pool, started before main) so that they take the calling
// thread's floating-point mode; 1 when there was a pool of more than one thread to restart, else 0.
int ck_restart_blas_threads(void);
// 1 when the CPU has AVX-512 F, BW, VL and DQ (oneDNN's avx512_core kernels), else 0.
int ck_cpu_has_avx512_core(void);
// y = bf16(x), round to nearest even (VCVTNE2PS2BF16 when the CPU has it, the same rounding in scalar code otherwise;
// the instruction treats subnormal inputs, |x| < 2^-126, as zero).
void ck_f32_to_bf16(const float *x, uint16_t *y, size_t n);
// rows x cols of x (row stride ldx floats) into a dense rows x cols bf16 block.
void ck_f32_to_bf16_strided(const float *x, size_t ldx, uint16_t *y, size_t rows, size_t cols);
// y = float(x), exact.
void ck_bf16_to_f32(const uint16_t *x, float *y, size_t n);
