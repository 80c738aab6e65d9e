#include "ckernels.h"
#include <string.h>

// bfloat16 = the upper 16 bits of an IEEE float32 (1 sign, 8 exponent, 7 stored mantissa bits).
// Conversion rounds to nearest, ties to even: u + 0x7fff + ((u >> 16) & 1), then the upper half; NaN stays NaN.
static inline uint16_t to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);   // quiet NaN
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

int ck_cpu_has_avx512_bf16(void) {
#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512bf16") ? 1 : 0;
#else
    return 0;
#endif
}

int ck_cpu_has_avx512_core(void) {
#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl")
        && __builtin_cpu_supports("avx512dq") ? 1 : 0;
#else
    return 0;
#endif
}

#if defined(__x86_64__) && defined(__clang__)
#include <immintrin.h>
// 32 floats per step with VCVTNE2PS2BF16 (the same rounding as to_bf16), the tail scalar.
__attribute__((target("avx512f,avx512bf16,avx512bw")))
static void f32_to_bf16_avx512(const float *x, uint16_t *y, size_t n) {
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512 lo = _mm512_loadu_ps(x + i), hi = _mm512_loadu_ps(x + i + 16);
        __m512bh packed = _mm512_cvtne2ps_pbh(hi, lo);
        _mm512_storeu_si512((void *)(y + i), (__m512i)packed);
    }
    for (; i < n; i++) y[i] = to_bf16(x[i]);
}
#endif

static int has_bf16 = -1;

void ck_f32_to_bf16(const float *x, uint16_t *y, size_t n) {
#if defined(__x86_64__) && defined(__clang__)
    if (has_bf16 < 0) has_bf16 = ck_cpu_has_avx512_bf16();
    if (has_bf16) { f32_to_bf16_avx512(x, y, n); return; }
#endif
    for (size_t i = 0; i < n; i++) y[i] = to_bf16(x[i]);
}

void ck_f32_to_bf16_strided(const float *x, size_t ldx, uint16_t *y, size_t rows, size_t cols) {
    for (size_t r = 0; r < rows; r++) ck_f32_to_bf16(x + r * ldx, y + r * cols, cols);
}

void ck_bf16_to_f32(const uint16_t *x, float *y, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)x[i] << 16;
        memcpy(y + i, &u, 4);
    }
}
