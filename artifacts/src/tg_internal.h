/*
 * tg_internal.h -- declarations shared by the kernel library's translation units.
 *
 * Nothing here is exported; the ABI is artifacts/include/tinygpt.h. The library needs no libc
 * on WASM, so the few helpers libc would give (memset, memcpy, expf, logf, tanhf) live here.
 */
#ifndef TG_INTERNAL_H
#define TG_INTERNAL_H

#include "tinygpt.h"

#include <stddef.h>
#include <stdint.h>

#if defined(__wasm__) && defined(__wasm_simd128__)
#define TG_WASM_SIMD 1
#include <wasm_simd128.h>
#endif

/* Exported symbols: default visibility on the native shared library; on wasm the build passes
 * --export= for each ABI name. */
#define TG_API __attribute__((visibility("default")))

/* ---- memory ------------------------------------------------------------------------------ */

void tg_zero(float *p, size_t n);
void tg_copy(float *restrict dst, const float *restrict src, size_t n);
void tg_zero_bytes(void *p, size_t nbytes);

#include "tg_math.h"

/* ---- GEMM ------------------------------------------------------------------------------
 * Cmat (M,N; row stride ldc) += A (M,K) @ B (K,N), where A(i,k) = A[i*a_i + k*a_k] and
 * B(k,j) = B[k*b_k + j*b_j]. Strides make the three matmul directions one routine. */
void tg_gemm(int32_t M, int32_t N, int32_t K, const float *A, ptrdiff_t a_i, ptrdiff_t a_k,
             const float *B, ptrdiff_t b_k, ptrdiff_t b_j, float *Cmat, ptrdiff_t ldc);

#endif /* TG_INTERNAL_H */
