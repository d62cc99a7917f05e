/*
 * tg_matmul.c -- one cache-blocked GEMM behind all three matmul directions.
 *
 * GotoBLAS structure: B is packed into KC x NR micro-panels (one stays in L1 while a column of
 * A micro-panels streams past), A into MR x KC micro-panels (the MC x KC block stays in L2), and
 * a register-tiled MR x NR micro-kernel does the flops. Packing with arbitrary strides is what
 * lets forward (W^T), backward-input (W) and backward-weight (dout^T) share the kernel.
 *
 * Native: the micro-kernel is plain C with constant trip counts and restrict pointers, which
 * clang fully unrolls and vectorises (AVX2 + FMA at the build's x86-64-v3 baseline).
 * WASM: the micro-kernel uses simd128 intrinsics, since wasm has 4-lane vectors only and no FMA.
 */
#include "tg_internal.h"

#ifdef TG_WASM_SIMD
/* 4x8 = 8 accumulators + 2 B vectors + 1 A: fits the 15 xmm registers V8 and Cranelift
 * allocate on x86-64; a 6x8 tile spilled and ran at half the speed under Node 24 */
#define TG_MR 4
#define TG_NR 8
/* A is packed pre-splatted (each value 4 times) so the kernel loads a ready vector instead of
 * spending a shuffle per row (measured ~15% faster on wasm64, neutral on wasm32) */
#define TG_AREP 4
#else
#define TG_MR 6
#define TG_NR 16
#define TG_AREP 1
#endif
#define TG_KC 256
#define TG_MC 96  /* multiple of both TG_MR values */
#define TG_NC 512 /* multiple of TG_NR */

/* Scratch for packed blocks. Static, because the library is single-threaded and a per-call
 * allocation would cost more than packing for small matrices. */
static float pack_a[TG_MC * TG_KC * TG_AREP] __attribute__((aligned(64)));
static float pack_b[TG_NC * TG_KC] __attribute__((aligned(64)));

static void pack_a_block(int32_t mc, int32_t kc, const float *A, ptrdiff_t a_i, ptrdiff_t a_k) {
    for (int32_t ip = 0; ip < mc; ip += TG_MR) {
        float *dst = pack_a + (size_t)ip * kc * TG_AREP;
        int32_t rows = mc - ip < TG_MR ? mc - ip : TG_MR;
        for (int32_t p = 0; p < kc; p++) {
            for (int32_t i = 0; i < TG_MR; i++) {
                float v = i < rows ? A[(ip + i) * a_i + p * a_k] : 0.0f;
                for (int r = 0; r < TG_AREP; r++) dst[(p * TG_MR + i) * TG_AREP + r] = v;
            }
        }
    }
}

static void pack_b_block(int32_t kc, int32_t nc, const float *B, ptrdiff_t b_k, ptrdiff_t b_j) {
    for (int32_t jp = 0; jp < nc; jp += TG_NR) {
        float *dst = pack_b + (size_t)jp * kc;
        int32_t cols = nc - jp < TG_NR ? nc - jp : TG_NR;
        if (cols == TG_NR && b_k == 1) {
            /* forward's W^T: read each W row contiguously */
            for (int32_t j = 0; j < TG_NR; j++) {
                const float *src = B + (jp + j) * b_j;
                for (int32_t p = 0; p < kc; p++) dst[p * TG_NR + j] = src[p];
            }
            continue;
        }
        for (int32_t p = 0; p < kc; p++) {
            for (int32_t j = 0; j < TG_NR; j++) {
                dst[p * TG_NR + j] = j < cols ? B[p * b_k + (jp + j) * b_j] : 0.0f;
            }
        }
    }
}

#ifdef TG_WASM_SIMD
/* mul + add: simd128 has no fused multiply-add (relaxed-simd's madd measured slower under
 * Node 24 and Node 20 cannot load it) */
#define TG_MADD(acc, a, b) wasm_f32x4_add((acc), wasm_f32x4_mul((a), (b)))
/* tile (MR x NR, row stride ldt) += Ap @ Bp over kc */
static void micro_kernel(int32_t kc, const float *restrict ap, const float *restrict bp,
                         float *restrict tile, ptrdiff_t ldt) {
    enum { NV = TG_NR / 4 };
    v128_t acc[TG_MR][NV];
    for (int i = 0; i < TG_MR; i++) {
        for (int v = 0; v < NV; v++) acc[i][v] = wasm_f32x4_splat(0.0f);
    }
    for (int32_t p = 0; p < kc; p++) {
        v128_t b[NV];
        for (int v = 0; v < NV; v++) b[v] = wasm_v128_load(bp + p * TG_NR + 4 * v);
        for (int i = 0; i < TG_MR; i++) {
#if TG_AREP == 4
            v128_t a = wasm_v128_load(ap + (p * TG_MR + i) * TG_AREP);
#else
            v128_t a = wasm_f32x4_splat(ap[p * TG_MR + i]);
#endif
            for (int v = 0; v < NV; v++) acc[i][v] = TG_MADD(acc[i][v], a, b[v]);
        }
    }
    for (int i = 0; i < TG_MR; i++) {
        float *t = tile + i * ldt;
        for (int v = 0; v < NV; v++) {
            wasm_v128_store(t + 4 * v, wasm_f32x4_add(wasm_v128_load(t + 4 * v), acc[i][v]));
        }
    }
}
#else
static void micro_kernel(int32_t kc, const float *restrict ap, const float *restrict bp,
                         float *restrict tile, ptrdiff_t ldt) {
    float acc[TG_MR][TG_NR] = {{0}};
    for (int32_t p = 0; p < kc; p++) {
        const float *restrict b = bp + p * TG_NR;
        const float *restrict a = ap + p * TG_MR;
        for (int i = 0; i < TG_MR; i++) {
            for (int j = 0; j < TG_NR; j++) acc[i][j] += a[i] * b[j];
        }
    }
    for (int i = 0; i < TG_MR; i++) {
        for (int j = 0; j < TG_NR; j++) tile[i * ldt + j] += acc[i][j];
    }
}
#endif

/* Dot products for a few rows against rows of B^T (generation's one-token matmuls), where
 * packing would cost as much as the flops. Lane-wise partial sums keep it vectorisable
 * without -ffast-math. */
static float dot(const float *restrict x, const float *restrict y, int32_t n) {
    int32_t k = 0;
#ifdef TG_WASM_SIMD
    v128_t s0 = wasm_f32x4_splat(0.0f), s1 = s0;
    for (; k + 8 <= n; k += 8) {
        s0 = wasm_f32x4_add(s0, wasm_f32x4_mul(wasm_v128_load(x + k), wasm_v128_load(y + k)));
        s1 = wasm_f32x4_add(s1,
                            wasm_f32x4_mul(wasm_v128_load(x + k + 4), wasm_v128_load(y + k + 4)));
    }
    s0 = wasm_f32x4_add(s0, s1);
    float s = (wasm_f32x4_extract_lane(s0, 0) + wasm_f32x4_extract_lane(s0, 1)) +
              (wasm_f32x4_extract_lane(s0, 2) + wasm_f32x4_extract_lane(s0, 3));
#else
    float lanes[16] = {0};
    for (; k + 16 <= n; k += 16) {
        for (int j = 0; j < 16; j++) lanes[j] += x[k + j] * y[k + j];
    }
    float s = 0.0f;
    for (int j = 0; j < 16; j++) s += lanes[j];
#endif
    for (; k < n; k++) s += x[k] * y[k];
    return s;
}

void tg_gemm(int32_t M, int32_t N, int32_t K, const float *A, ptrdiff_t a_i, ptrdiff_t a_k,
             const float *B, ptrdiff_t b_k, ptrdiff_t b_j, float *Cmat, ptrdiff_t ldc) {
    if (M <= 0 || N <= 0 || K <= 0) return;
    if (M < 4 && a_k == 1 && b_k == 1) {
        for (int32_t i = 0; i < M; i++) {
            for (int32_t j = 0; j < N; j++) Cmat[i * ldc + j] += dot(A + i * a_i, B + j * b_j, K);
        }
        return;
    }
    float edge[TG_MR * TG_NR] __attribute__((aligned(16)));
    for (int32_t jc = 0; jc < N; jc += TG_NC) {
        int32_t nc = N - jc < TG_NC ? N - jc : TG_NC;
        for (int32_t pc = 0; pc < K; pc += TG_KC) {
            int32_t kc = K - pc < TG_KC ? K - pc : TG_KC;
            pack_b_block(kc, nc, B + pc * b_k + jc * b_j, b_k, b_j);
            for (int32_t ic = 0; ic < M; ic += TG_MC) {
                int32_t mc = M - ic < TG_MC ? M - ic : TG_MC;
                pack_a_block(mc, kc, A + ic * a_i + pc * a_k, a_i, a_k);
                for (int32_t jr = 0; jr < nc; jr += TG_NR) {
                    const float *bp = pack_b + (size_t)jr * kc;
                    int32_t n = nc - jr < TG_NR ? nc - jr : TG_NR;
                    for (int32_t ir = 0; ir < mc; ir += TG_MR) {
                        const float *ap = pack_a + (size_t)ir * kc * TG_AREP;
                        int32_t m = mc - ir < TG_MR ? mc - ir : TG_MR;
                        float *c = Cmat + (ic + ir) * ldc + jc + jr;
                        if (m == TG_MR && n == TG_NR) {
                            micro_kernel(kc, ap, bp, c, ldc);
                            continue;
                        }
                        /* ragged edge: run the full tile into a buffer, add the valid part */
                        for (int t = 0; t < TG_MR * TG_NR; t++) edge[t] = 0.0f;
                        micro_kernel(kc, ap, bp, edge, TG_NR);
                        for (int32_t i = 0; i < m; i++) {
                            for (int32_t j = 0; j < n; j++) c[i * ldc + j] += edge[i * TG_NR + j];
                        }
                    }
                }
            }
        }
    }
}

TG_API void tg_matmul_forward(float *out, const float *inp, const float *weight, const float *bias,
                              int32_t N, int32_t C, int32_t OC) {
    for (int32_t n = 0; n < N; n++) {
        float *o = out + (size_t)n * OC;
        if (bias) tg_copy(o, bias, (size_t)OC);
        else tg_zero(o, (size_t)OC);
    }
    tg_gemm(N, OC, C, inp, C, 1, weight, 1, C, out, OC);
#ifdef TG_SLOW_MATMUL_FORWARD
    /* Deliberate slowdown for the gate's own tests and calibration: recompute the first
     * TG_SLOW_MATMUL_FORWARD percent of the rows through the same GEMM. The result is the
     * same, so parity holds; only the time grows, by that share of the product's work. */
    int32_t extra = (int32_t)(((int64_t)N * (TG_SLOW_MATMUL_FORWARD) + 99) / 100);
    if (extra > N) extra = N;
    for (int32_t n = 0; n < extra; n++) {
        float *o = out + (size_t)n * OC;
        if (bias) tg_copy(o, bias, (size_t)OC);
        else tg_zero(o, (size_t)OC);
    }
    tg_gemm(extra, OC, C, inp, C, 1, weight, 1, C, out, OC);
#endif
}

TG_API void tg_matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                               const float *inp, const float *weight, int32_t N, int32_t C,
                               int32_t OC) {
    tg_gemm(N, C, OC, dout, OC, 1, weight, C, 1, dinp, C);
    tg_gemm(OC, C, N, dout, 1, OC, inp, C, 1, dweight, C);
    if (dbias) {
        for (int32_t n = 0; n < N; n++) {
            const float *restrict d = dout + (size_t)n * OC;
            for (int32_t o = 0; o < OC; o++) dbias[o] += d[o];
        }
    }
}
