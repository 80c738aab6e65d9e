// Elementwise kernels that Swift's scalar libm calls (erff, expf) made the slowest part of a step:
// polynomial exp and erf in loops the C compiler vectorises. Only Sources/NN/Core/Kernels.swift imports this.
#pragma once
#include <stddef.h>
#include <stdint.h>

// y = x/2 (1 + erf(x / sqrt 2)), erf by Abramowitz-Stegun 7.1.26 (|error| <= 1.5e-7).
void ck_gelu_forward(const float *x, float *y, size_t n);
// dx += dy (Phi(x) + x phi(x)).
void ck_gelu_backward(const float *x, const float *dy, float *dx, size_t n);
// Row-wise softmax in place over (rows, cols); columns with mask[j] == 0 (mask may be NULL) get 0, and a
// row without an unmasked column becomes all zeros.
void ck_masked_softmax_rows(float *s, size_t rows, size_t cols, const uint8_t *mask);
