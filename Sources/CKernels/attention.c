#include "ckernels.h"
#include "exp_poly.h"
#include <math.h>

// Attention over narrow heads (d_h = 16 in CLaDMoP, 32 in MiniLM). BLAS packs both operands of every call,
// which at an inner dimension of 16 costs more than the multiply; these loops keep a block of outputs in
// vector registers and read the operands in place. Matrices are row-major with explicit row strides.

#if defined(__x86_64__) && defined(__clang__)
#define VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define VECTOR_CLONES
#endif

// Vectors of 8 floats; the helpers are macros (no vector passes a function boundary outside the AVX2 clone),
// and every helper function is always inlined into the two clones of the entry points.
typedef float v8 __attribute__((ext_vector_type(8)));
#define load8(p) ({ v8 v_; __builtin_memcpy(&v_, (p), sizeof v_); v_; })
#define store8(p, x) do { v8 x_ = (x); __builtin_memcpy((p), &x_, sizeof x_); } while (0)
#define splat(x) ((v8)(x))
#define INLINE static inline __attribute__((always_inline))

static size_t padded_length(size_t lk) { return (lk + 7) & ~(size_t)7; }

size_t ck_attention_work_floats(size_t lq, size_t lk, size_t head_dim) {
    size_t lkp = padded_length(lk);
    return head_dim * lkp + 2 * lkp + 2 * lq * lkp;
}

// C[i, j] = alpha sum_t A[i, t] Bt[t, j] for i < m, j < np (np % 8 == 0); Bt is (kd, np), dense.
// R rows of A at a time against 16 columns of Bt (2 R accumulators).
INLINE size_t nt_rows(const int R, const float *a, size_t lda, const float *bt, size_t np, size_t i, size_t m, size_t kd,
                      float alpha, float *c, size_t ldc) {
    for (; i + R <= m; i += R) {
        size_t j = 0;
        for (; j + 16 <= np; j += 16) {
            v8 acc[6][2];
            for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = 0;
            for (size_t t = 0; t < kd; t++) {
                v8 b0 = load8(bt + t * np + j), b1 = load8(bt + t * np + j + 8);
                for (int r = 0; r < R; r++) { v8 x = splat(a[(i + r) * lda + t]); acc[r][0] += x * b0; acc[r][1] += x * b1; }
            }
            for (int r = 0; r < R; r++) { float *o = c + (i + r) * ldc + j; store8(o, alpha * acc[r][0]); store8(o + 8, alpha * acc[r][1]); }
        }
        for (; j < np; j += 8) {
            v8 acc[6];
            for (int r = 0; r < R; r++) acc[r] = 0;
            for (size_t t = 0; t < kd; t++) {
                v8 b0 = load8(bt + t * np + j);
                for (int r = 0; r < R; r++) acc[r] += splat(a[(i + r) * lda + t]) * b0;
            }
            for (int r = 0; r < R; r++) store8(c + (i + r) * ldc + j, alpha * acc[r]);
        }
    }
    return i;
}

INLINE void nt_block(const float *a, size_t lda, const float *bt, size_t np, size_t m, size_t kd,
                     float alpha, float *c, size_t ldc) {
    size_t i = nt_rows(6, a, lda, bt, np, 0, m, kd, alpha, c, ldc);
    i = nt_rows(3, a, lda, bt, np, i, m, kd, alpha, c, ldc);
    nt_rows(1, a, lda, bt, np, i, m, kd, alpha, c, ldc);
}

// C[i, :] = alpha sum_j A(i, j) B[j, :] for i < m, j < k, where A(i, j) = a[i * ars + j * acs] (so A may be
// a transposed view) and rows of B and C are NV vectors of 8. R rows of C are kept in registers at a time,
// from row i; returns the first row not done.
INLINE size_t nn_rows(const int NV, const int R, const float *a, size_t ars, size_t acs, const float *b, size_t ldb,
                      size_t i, size_t m, size_t k, float alpha, float *c, size_t ldc) {
    for (; i + R <= m; i += R) {
        v8 acc[6][4];
        for (int r = 0; r < R; r++) for (int v = 0; v < NV; v++) acc[r][v] = 0;
        for (size_t j = 0; j < k; j++) {
            v8 bv[4];
            for (int v = 0; v < NV; v++) bv[v] = load8(b + j * ldb + 8 * v);
            for (int r = 0; r < R; r++) {
                v8 x = splat(a[(i + r) * ars + j * acs]);
                for (int v = 0; v < NV; v++) acc[r][v] += x * bv[v];
            }
        }
        for (int r = 0; r < R; r++) for (int v = 0; v < NV; v++) store8(c + (i + r) * ldc + 8 * v, alpha * acc[r][v]);
    }
    return i;
}

// nn_rows over all m rows: blocks of R, then of R / 2, then single rows.
INLINE void nn_all(const int NV, const int R, const float *a, size_t ars, size_t acs, const float *b, size_t ldb,
                   size_t m, size_t k, float alpha, float *c, size_t ldc) {
    size_t i = nn_rows(NV, R, a, ars, acs, b, ldb, 0, m, k, alpha, c, ldc);
    if (R >= 4) i = nn_rows(NV, R / 2, a, ars, acs, b, ldb, i, m, k, alpha, c, ldc);
    nn_rows(NV, 1, a, ars, acs, b, ldb, i, m, k, alpha, c, ldc);
}

// Same product for any width n (scalar), for heads whose width is not 8, 16, 24 or 32.
INLINE void nn_any(const float *a, size_t ars, size_t acs, const float *b, size_t ldb, size_t m, size_t k, size_t n,
                   float alpha, float *c, size_t ldc) {
    for (size_t i = 0; i < m; i++) {
        float *ci = c + i * ldc;
        for (size_t x = 0; x < n; x++) ci[x] = 0;
        for (size_t j = 0; j < k; j++) {
            float s = a[i * ars + j * acs];
            for (size_t x = 0; x < n; x++) ci[x] += s * b[j * ldb + x];
        }
        for (size_t x = 0; x < n; x++) ci[x] *= alpha;
    }
}

INLINE void nn(const float *a, size_t ars, size_t acs, const float *b, size_t ldb, size_t m, size_t k, size_t n,
                      float alpha, float *c, size_t ldc) {
    switch (n) {
    case 8: nn_all(1, 6, a, ars, acs, b, ldb, m, k, alpha, c, ldc); break;
    case 16: nn_all(2, 6, a, ars, acs, b, ldb, m, k, alpha, c, ldc); break;
    case 24: nn_all(3, 4, a, ars, acs, b, ldb, m, k, alpha, c, ldc); break;
    case 32: nn_all(4, 2, a, ars, acs, b, ldb, m, k, alpha, c, ldc); break;
    default: nn_any(a, ars, acs, b, ldb, m, k, n, alpha, c, ldc);
    }
}

// C (m, np) = alpha A B^T with A (m, kd) and B (n, kd): B is transposed into bt (kd, np), zero-padded.
INLINE void nt(const float *a, size_t lda, const float *b, size_t ldb, size_t m, size_t n, size_t kd,
                      float alpha, float *bt, float *c, size_t ldc) {
    size_t np = padded_length(n);
    for (size_t t = 0; t < kd; t++) {
        float *row = bt + t * np;
        for (size_t j = 0; j < n; j++) row[j] = b[j * ldb + t];
        for (size_t j = n; j < np; j++) row[j] = 0;
    }
    nt_block(a, lda, bt, np, m, kd, alpha, c, ldc);
}

INLINE float hmax8(const v8 *v) {
    float m = (*v)[0];
    for (int l = 1; l < 8; l++) m = (*v)[l] > m ? (*v)[l] : m;
    return m;
}
INLINE float hsum8(const v8 *v) { return (((*v)[0] + (*v)[1]) + ((*v)[2] + (*v)[3])) + (((*v)[4] + (*v)[5]) + ((*v)[6] + (*v)[7])); }

// exp_poly on 8 lanes (a macro, like the vector helpers above).
typedef int32_t v8i __attribute__((ext_vector_type(8)));
#define exp_poly8(x) ({ v8 x_ = (x), n_, p_; EXP_POLY_PARTS(v8, x_, n_, p_); p_ * (v8)((__builtin_convertvector(n_, v8i) + 127) << 23); })

// r[j] = keep[j] exp(r[j] + bias[j] - shift) over np columns (np % 8 == 0); returns the sum. Columns before
// `plain` (a multiple of 8) are real keys (keep 1, bias 0), for which that is exp(r[j] - shift).
INLINE float exp_row(float *r, const float *keep, const float *bias, float shift, size_t plain, size_t np) {
    v8 s = 0;
    for (size_t j = 0; j < plain; j += 8) {
        v8 e = exp_poly8(load8(r + j) - shift);
        store8(r + j, e);
        s += e;
    }
    for (size_t j = plain; j < np; j += 8) {
        v8 e = load8(keep + j) * exp_poly8(load8(r + j) + load8(bias + j) - shift);
        store8(r + j, e);
        s += e;
    }
    return hsum8(&s);
}

// Row softmax numerators over np columns (np % 8 == 0) where keep[j] is 1 for a real key and 0 for a masked or
// padding column (bias[j] 0 or -inf), all real before column `plain`: r becomes exp(r - max) on the real keys
// and exactly 0 elsewhere; the row is not normalised (the caller scales P V by *inv_sum). Returns the row's
// log-sum-exp over the real keys (+inf without any, then r = 0 and *inv_sum = 0), from which backward
// recomputes the normalised row.
INLINE float softmax_row(float *r, const float *keep, const float *bias, size_t plain, size_t np, float *inv_sum) {
    v8 mx = splat(-INFINITY);
    for (size_t j = 0; j < plain; j += 8) mx = __builtin_elementwise_max(mx, load8(r + j));
    for (size_t j = plain; j < np; j += 8) mx = __builtin_elementwise_max(mx, load8(r + j) + load8(bias + j));
    float m = hmax8(&mx);
    if (m == -INFINITY) { for (size_t j = 0; j < np; j++) r[j] = 0; *inv_sum = 0; return INFINITY; }
    float sum = exp_row(r, keep, bias, m, plain, np);
    *inv_sum = 1.0f / sum;
    return m + logf(sum);
}

// keep and bias of sample's keys k0 ..< k0 + lk (key_keep: 1 or 0 per key row, NULL = all real), padded to lkp;
// returns the columns before which every key is real in whole vectors of 8 (0 with a key mask).
INLINE size_t key_flags(const float *key_keep, size_t k0, size_t lk, size_t lkp, float *keep, float *bias) {
    for (size_t j = 0; j < lkp; j++) {
        float real = j < lk ? (key_keep ? key_keep[k0 + j] : 1.0f) : 0.0f;
        keep[j] = real;
        bias[j] = real != 0.0f ? 0.0f : -INFINITY;
    }
    return key_keep ? 0 : lk & ~(size_t)7;
}

VECTOR_CLONES
void ck_attention_forward(size_t batch, size_t heads, size_t head_dim, const ptrdiff_t *q_rows, const ptrdiff_t *k_rows,
                          int shared_queries, const float *q, const float *k, const float *v, const float *key_keep,
                          float scale, const float *relative_bias, size_t relative_span, float *lse, float *context, float *work) {
    size_t d = heads * head_dim;
    for (size_t b = 0; b < batch; b++) {
        size_t q0 = q_rows[b], lq = q_rows[b + 1] - q0, k0 = k_rows[b], lk = k_rows[b + 1] - k0;
        size_t lkp = padded_length(lk);
        float *bt = work, *keep = work + head_dim * lkp, *bias = keep + lkp, *p = bias + lkp;
        size_t plain = key_flags(key_keep, k0, lk, lkp, keep, bias);
        for (size_t h = 0; h < heads; h++) {
            const float *qh = q + (shared_queries ? 0 : q0 * d) + h * head_dim, *kh = k + k0 * d + h * head_dim, *vh = v + k0 * d + h * head_dim;
            float *out = context + q0 * d + h * head_dim, *l = lse + (q0 * heads + h * lq);
            if (lk == 0) {  // no keys at all: the output is 0
                for (size_t i = 0; i < lq; i++) { l[i] = INFINITY; for (size_t t = 0; t < head_dim; t++) out[i * d + t] = 0; }
                continue;
            }
            // S = scale Q_h K_h^T (lq, lkp); P = softmax over the real keys, kept only as each row's log-sum-exp
            nt(qh, d, kh, d, lq, lk, head_dim, scale, bt, p, lkp);
            if (relative_bias) {  // + R_h: row i's bias for key j is at (j - i) + span - 1 of the head's 2 span - 1
                const float *rh = relative_bias + h * (2 * relative_span - 1) + relative_span - 1;
                for (size_t i = 0; i < lq; i++) for (size_t j = 0; j < lk; j++) p[i * lkp + j] += rh[(ptrdiff_t)j - (ptrdiff_t)i];
            }
            float *inv_sum = p + lq * lkp;
            for (size_t i = 0; i < lq; i++) l[i] = softmax_row(p + i * lkp, keep, bias, plain, lkp, inv_sum + i);
            // O_h = P V_h into the head's columns of the context: the numerators times V_h, each row / its sum
            nn(p, lkp, 1, vh, d, lq, lk, head_dim, 1.0f, out, d);
            for (size_t i = 0; i < lq; i++) for (size_t t = 0; t < head_dim; t++) out[i * d + t] *= inv_sum[i];
        }
    }
}

VECTOR_CLONES
void ck_attention_backward(size_t batch, size_t heads, size_t head_dim, const ptrdiff_t *q_rows, const ptrdiff_t *k_rows,
                           int shared_queries, const float *q, const float *k, const float *v, const float *key_keep, const float *lse,
                           const float *dcontext, float scale, float *context, float *dq, float *dk, float *dv, float *work) {
    size_t d = heads * head_dim;
    for (size_t b = 0; b < batch; b++) {
        size_t q0 = q_rows[b], lq = q_rows[b + 1] - q0, k0 = k_rows[b], lk = k_rows[b + 1] - k0;
        size_t lkp = padded_length(lk);
        float *bt = work, *keep = work + head_dim * lkp, *bias = keep + lkp, *p = bias + lkp, *dp = p + lq * lkp;
        size_t plain = key_flags(key_keep, k0, lk, lkp, keep, bias);
        for (size_t h = 0; h < heads; h++) {
            size_t qo = q0 * d + h * head_dim, ko = k0 * d + h * head_dim;
            const float *qh = q + (shared_queries ? 0 : q0 * d) + h * head_dim;
            const float *dob = dcontext + qo, *l = lse + (q0 * heads + h * lq);
            if (lk == 0) {
                for (size_t i = 0; i < lq; i++) for (size_t t = 0; t < head_dim; t++) dq[qo + i * d + t] = context[qo + i * d + t] = 0;
                continue;
            }
            // P recomputed: exp(scale Q_h K_h^T - lse) on the real keys
            nt(qh, d, k + ko, d, lq, lk, head_dim, scale, bt, p, lkp);
            for (size_t i = 0; i < lq; i++) exp_row(p + i * lkp, keep, bias, l[i], plain, lkp);
            // context_h = P V_h again (the output projection's weight gradient needs it; forward did not keep it)
            nn(p, lkp, 1, v + ko, d, lq, lk, head_dim, 1.0f, context + qo, d);
            // dP = dO_h V_h^T (lq, lkp); dV_h = P^T dO_h
            nt(dob, d, v + ko, d, lq, lk, head_dim, 1.0f, bt, dp, lkp);
            nn(p, 1, lkp, dob, d, lk, lq, head_dim, 1.0f, dv + ko, d);
            // dS = P * (dP - D), D_i = rowsum(P_i * dP_i) = dO_i . O_i (head_dim terms instead of lk); padding
            // columns have P = 0
            for (size_t i = 0; i < lq; i++) {
                const float *pr = p + i * lkp, *o = context + qo + i * d, *g = dob + i * d;
                float *dr = dp + i * lkp, di = 0;
                for (size_t t = 0; t < head_dim; t++) di += g[t] * o[t];
                v8 s = splat(di);
                for (size_t j = 0; j < lkp; j += 8) store8(dr + j, load8(pr + j) * (load8(dr + j) - s));
            }
            // dQ_h = scale dS K_h; dK_h = scale dS^T Q_h
            nn(dp, lkp, 1, k + ko, d, lq, lk, head_dim, scale, dq + qo, d);
            nn(dp, 1, lkp, qh, d, lk, lq, head_dim, scale, dk + ko, d);
        }
    }
}
