#include "ckernels.h"
#include "exp_poly.h"

// On x86-64 each kernel is compiled twice, for AVX2+FMA and for the baseline, and the loader picks one.
#if defined(__x86_64__) && defined(__clang__)
#define VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define VECTOR_CLONES
#endif

// Phi(x) = (1 + erf(x / sqrt 2)) / 2 with erf(u) = sign(u) (1 - t (a1 + t (a2 + ... t a5)) e^{-u^2}),
// t = 1 / (1 + p |u|); e = e^{-x^2/2} is passed in (the backward pass reuses it for phi).
static inline float normal_cdf(float x, float e) {
    float u = x * 0.70710678118654752f;
    float au = u < 0 ? -u : u;
    float t = 1.0f / (1.0f + 0.3275911f * au);
    float poly = t * (0.254829592f + t * (-0.284496736f + t * (1.421413741f + t * (-1.453152027f + t * 1.061405429f))));
    float erf_abs = 1.0f - poly * e;
    return 0.5f * (1.0f + (u < 0 ? -erf_abs : erf_abs));
}

VECTOR_CLONES
void ck_gelu_forward(const float *x, float *y, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        y[i] = v * normal_cdf(v, exp_poly(-0.5f * v * v));
    }
}

VECTOR_CLONES
void ck_gelu_forward_derivative(const float *x, float *y, float *dydx, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        float e = exp_poly(-0.5f * v * v), cdf = normal_cdf(v, e);
        y[i] = v * cdf;
        dydx[i] = cdf + v * e * 0.39894228040143268f;
    }
}

VECTOR_CLONES
void ck_adam_update(float *restrict p, const float *restrict g, float *restrict m, float *restrict v, size_t n,
                    float lr, float beta1, float beta2, float eps, float bias1, float bias2, float weight_decay,
                    int decoupled) {
    for (size_t i = 0; i < n; i++) {
        float gi = g[i], pi = p[i];
        if (decoupled) pi -= lr * weight_decay * pi; else gi += weight_decay * pi;
        float mi = beta1 * m[i] + (1 - beta1) * gi;
        float vi = beta2 * v[i] + (1 - beta2) * gi * gi;
        m[i] = mi; v[i] = vi;
        p[i] = pi - lr * (mi / bias1) / (__builtin_sqrtf(vi / bias2) + eps);
    }
}

// Sum of n floats in 8 lanes (the lanes let the compiler vectorise the reduction), then the tail.
#define LANES 8
static inline float lane_sum(const float *x, size_t n) {
    float acc[LANES] = {0};
    size_t i = 0;
    for (; i + LANES <= n; i += LANES) for (int l = 0; l < LANES; l++) acc[l] += x[i + l];
    float s = 0;
    for (int l = 0; l < LANES; l++) s += acc[l];
    for (; i < n; i++) s += x[i];
    return s;
}

VECTOR_CLONES
void ck_layernorm_apply(const float *x, float *y, const float *gamma, const float *beta, const float *mean,
                        const float *rstd, size_t rows, size_t dim) {
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * dim;
        float *yr = y + r * dim, m = mean[r], rs = rstd[r];
        for (size_t i = 0; i < dim; i++) yr[i] = (xr[i] - m) * rs * gamma[i] + beta[i];
    }
}

VECTOR_CLONES
void ck_layernorm_forward(const float *x, float *y, const float *gamma, const float *beta, float *mean, float *rstd,
                          size_t rows, size_t dim, float eps, float *work) {
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * dim;
        float m = lane_sum(xr, dim) / (float)dim;
        for (size_t i = 0; i < dim; i++) { float c = xr[i] - m; work[i] = c * c; }
        mean[r] = m;
        rstd[r] = 1.0f / __builtin_sqrtf(lane_sum(work, dim) / (float)dim + eps);
    }
    ck_layernorm_apply(x, y, gamma, beta, mean, rstd, rows, dim);
}

VECTOR_CLONES
void ck_layernorm_backward(const float *x, const float *dy, const float *gamma, const float *mean, const float *rstd,
                           float *dx, float *dgamma, float *dbeta, size_t rows, size_t dim, float *work) {
    float *xhat = work, *dyg = work + dim;
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * dim, *dyr = dy + r * dim;
        float *dxr = dx + r * dim, m = mean[r], rs = rstd[r];
        for (size_t i = 0; i < dim; i++) { xhat[i] = (xr[i] - m) * rs; dyg[i] = dyr[i] * gamma[i]; }
        if (dgamma) for (size_t i = 0; i < dim; i++) { dgamma[i] += dyr[i] * xhat[i]; dbeta[i] += dyr[i]; }
        float mean_dyg = lane_sum(dyg, dim) / (float)dim;
        for (size_t i = 0; i < dim; i++) dyg[i + dim] = dyg[i] * xhat[i];
        float mean_dyg_xhat = lane_sum(dyg + dim, dim) / (float)dim;
        for (size_t i = 0; i < dim; i++) dxr[i] += rs * (dyr[i] * gamma[i] - mean_dyg - xhat[i] * mean_dyg_xhat);
    }
}

// sum_i x_i^2 in double, eight independent accumulators (the loop vectorises; one chain would be latency-bound).
VECTOR_CLONES
double ck_sum_squares(const float *x, size_t n) {
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) acc[j] += (double)x[i + j] * (double)x[i + j];
    double total = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; i < n; i++) total += (double)x[i] * (double)x[i];
    return total;
}
