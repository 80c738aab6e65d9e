// Branch-free exp for the kernels' vectorisable loops (private to Sources/CKernels).
#pragma once
#include <stdint.h>

// exp(x) = 2^n e^r, n = round(x / ln 2), r = x - n ln 2 (Cody-Waite split), e^r by Cephes' degree-6
// polynomial on [-ln2/2, ln2/2]; x is clamped to [-87, 88].
static inline __attribute__((always_inline)) float exp_poly(float x) {
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    float n = __builtin_floorf(x * 1.44269504088896341f + 0.5f);
    float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    union { int32_t i; float f; } scale = { .i = ((int32_t)n + 127) << 23 };
    return p * scale.f;
}
