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

/* ---- threads (tg_threads.c) ----------------------------------------------------------------
 * Native builds (and emscripten -pthread builds) have a pthread pool; the freestanding wasm
 * builds have no threads and run every parallel region serially on the caller. */
#if !defined(__wasm__) || defined(__EMSCRIPTEN_PTHREADS__)
#define TG_THREADS 1
#endif
/* A region below this much work (flops, or elementwise operations) stays on the caller: one
 * wake + join of the pool costs tens of microseconds, as much as ~2 MFLOP of GEMM. Only speed
 * depends on it; results do not (every partition keeps each output's summation order). */
#define TG_PAR_MIN_WORK 2e6
/* Run fn(ctx, task, worker) for task 0..count-1; worker w (0 = the caller) takes the
 * contiguous tasks [w*count/n, (w+1)*count/n) of the n = min(threads, count) workers. */
void tg_parallel_for(int32_t count, void (*fn)(void *ctx, int32_t task, int32_t worker),
                     void *ctx);
/* How many chunks to cut `units` independent units of `work` into: the threads in effect,
 * at most `units`, and 1 below TG_PAR_MIN_WORK or inside a parallel region. */
int32_t tg_parallel_chunks(double work, int32_t units);
/* Run fn(ctx, lo, hi) over [0, n) cut into contiguous ranges, one per worker (or one range on
 * the caller below the threshold): for independent rows or elements. */
void tg_parallel_range(size_t n, double work, void (*fn)(void *ctx, size_t lo, size_t hi),
                       void *ctx);
/* Give workers 1..workers-1 their GEMM pack buffers; returns how many workers have them. */
int32_t tg_gemm_reserve(int32_t workers);

#endif /* TG_INTERNAL_H */
