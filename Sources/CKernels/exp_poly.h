// Branch-free exp for the kernels' vectorisable loops (private to Sources/CKernels).
#pragma once
#include <stdint.h>

// exp(x) = 2^n e^r, n = round(x / ln 2), r = x - n ln 2 (Cody-Waite split), e^r by Cephes' degree-6
// polynomial on [-ln2/2, ln2/2]; x is clamped to [-87, 88]. T is float or a clang vector of floats (the same
// operations lane by lane): sets n and p = e^r; the caller scales p by 2^n.
#define EXP_POLY_PARTS(T, x, n, p) do {                                  \
    x = x < (T)-87.0f ? (T)-87.0f : x;                                   \
    x = x > (T)88.0f ? (T)88.0f : x;                                     \
    n = __builtin_elementwise_floor(x * 1.44269504088896341f + 0.5f);    \
    T r_ = x - n * 0.693359375f + n * 2.12194440e-4f;                    \
    p = (T)1.9875691500e-4f;                                             \
    p = p * r_ + 1.3981999507e-3f;                                       \
    p = p * r_ + 8.3334519073e-3f;                                       \
    p = p * r_ + 4.1665795894e-2f;                                       \
    p = p * r_ + 1.6666665459e-1f;                                       \
    p = p * r_ + 5.0000001201e-1f;                                       \
    p = p * r_ * r_ + r_ + 1.0f;                                         \
} while (0)

static inline __attribute__((always_inline)) float exp_poly(float x) {
    float n, p;
    EXP_POLY_PARTS(float, x, n, p);
    union { int32_t i; float f; } scale = { .i = ((int32_t)n + 127) << 23 };
    return p * scale.f;
}
