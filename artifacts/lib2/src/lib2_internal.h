/* lib2_internal.h -- helpers shared by lib2's ops and model (not exported). */
#ifndef LIB2_INTERNAL_H
#define LIB2_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

/* y (N,O) = x (N,I) @ W (I,O) + b (O); b may be NULL. */
void l2_linear(const float *x, const float *W, const float *b, float *y, int N, int I, int O);
/* db (O) += column sums of dy (N,O). */
void l2_bias_grad(const float *dy, float *db, int N, int O);
/* Tanh-GELU forward over n floats, and its backward dx = gelu'(x) * dy (overwrites dx). */
void l2_gelu_forward(const float *x, float *y, size_t n);
void l2_gelu_backward(const float *x, const float *dy, float *dx, size_t n);

/* The RNG of lib2.h: splitmix64-seeded xorshift64*, uniform doubles in [0, 1). */
uint64_t l2_rng_seed(uint64_t s);
double l2_rng_uniform(uint64_t *state);

#endif
