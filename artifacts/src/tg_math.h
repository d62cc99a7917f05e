/*
 * tg_math.h -- exp, log and tanh without libc (WASM has none), within 1 ulp in float.
 *
 * Two families:
 * - tg_exp / tg_log (double in, double out) keep a long polynomial and branches: they serve
 *   scalar code that wants double accuracy (sampling, the cross-entropy normaliser).
 * - tg_expf / tg_tanhf are the element-wise workhorses of softmax and GELU: float only and
 *   branch-free (range reduction by the round-to-nearest shifter, minimax polynomials, 2^k
 *   assembled from integer bits, clamps and special cases as selects). That is what lets
 *   clang vectorise the loops that call them (AVX2 and wasm simd128 alike); the old code went
 *   through double with branches and ran one element at a time.
 * Every operation is plain IEEE arithmetic, so a lane of a vector loop computes bit-for-bit what
 * the scalar tail of the same loop computes: results do not depend on where an element falls.
 * static inline so elementwise loops inline them instead of calling across translation units.
 *
 * The row primitives at the end (sum, max, dot, softmax, weighted row sums) are here for the
 * same reason, and so that batched attention (tg_ops.c) and the KV-cache path (tg_model.c) run
 * literally the same arithmetic: greedy generation with and without the cache must agree.
 */
#ifndef TG_MATH_H
#define TG_MATH_H

#include <stddef.h>
#include <stdint.h>

#define TG_LN2_HI 6.93147180369123816490e-01 /* ln2 with its low 32 bits zeroed: k*hi is exact */
#define TG_LN2_LO 1.90821492927058770002e-10
#define TG_LOG2E 1.44269504088896338700e+00

static inline double tg_bits_to_double(uint64_t u) {
    union { uint64_t u; double d; } c = {u};
    return c.d;
}

static inline uint64_t tg_double_to_bits(double d) {
    union { double d; uint64_t u; } c = {d};
    return c.u;
}

/* e^r - 1 for |r| <= ln2/2, Taylor to r^12 (truncation < 3e-16 relative). */
static inline double tg_expm1_reduced(double r) {
    double p = 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    return p * r;
}

/* Split x = k ln2 + r with |r| <= ln2/2; valid for |x| < 700. */
static inline double tg_reduce(double x, int *k) {
    double kd = x * TG_LOG2E;
    int ki = (int)(kd < 0 ? kd - 0.5 : kd + 0.5);
    *k = ki;
    return (x - (double)ki * TG_LN2_HI) - (double)ki * TG_LN2_LO;
}

/* 2^k for -1022 <= k <= 1023. */
static inline double tg_pow2i(int k) { return tg_bits_to_double((uint64_t)(k + 1023) << 52); }

static inline double tg_exp(double x) {
    if (x != x) return x;
    if (x > 709.0) return __builtin_inf();
    if (x < -700.0) return 0.0; /* far below float's smallest subnormal, e^-104 */
    int k;
    double r = tg_reduce(x, &k);
    return (1.0 + tg_expm1_reduced(r)) * tg_pow2i(k);
}

static inline double tg_log(double x) {
    if (x != x) return x;
    if (x < 0.0) return __builtin_nan("");
    if (x == 0.0) return -__builtin_inf();
    if (x == __builtin_inf()) return x;
    int e = 0;
    uint64_t u = tg_double_to_bits(x);
    if ((u >> 52) == 0) { /* subnormal: scale into the normal range first */
        x *= 18014398509481984.0; /* 2^54 */
        u = tg_double_to_bits(x);
        e = -54;
    }
    e += (int)((u >> 52) & 0x7ff) - 1023;
    double m = tg_bits_to_double((u & 0x000fffffffffffffULL) | 0x3ff0000000000000ULL); /* [1,2) */
    if (m > 1.41421356237309504880) {
        m *= 0.5;
        e += 1;
    }
    /* log m = 2 atanh(s), s = (m-1)/(m+1), |s| <= 0.1716: the odd series converges fast. */
    double s = (m - 1.0) / (m + 1.0);
    double s2 = s * s;
    double p = 1.0 / 23.0;
    p = p * s2 + 1.0 / 21.0;
    p = p * s2 + 1.0 / 19.0;
    p = p * s2 + 1.0 / 17.0;
    p = p * s2 + 1.0 / 15.0;
    p = p * s2 + 1.0 / 13.0;
    p = p * s2 + 1.0 / 11.0;
    p = p * s2 + 1.0 / 9.0;
    p = p * s2 + 1.0 / 7.0;
    p = p * s2 + 1.0 / 5.0;
    p = p * s2 + 1.0 / 3.0;
    double logm = 2.0 * s + 2.0 * s * s2 * p;
    return ((double)e * TG_LN2_HI + logm) + (double)e * TG_LN2_LO;
}

static inline float tg_logf(float x) { return (float)tg_log((double)x); }

/* ---- branch-free element-wise float exp and tanh ------------------------------------------
 * All in float, so a vector holds 8 lanes (AVX2) or 4 (simd128), and all within 1 ulp of the
 * float64 result rounded to float: checked exhaustively over every float input in [-105, 105]
 * (exp) and [0, 12] (tanh; beyond that it is exactly +-1), both with FMA contraction (the
 * x86-64-v3 build) and without (wasm, baseline x86-64). */

static inline float tg_bits_to_float(uint32_t u) {
    union { uint32_t u; float f; } c = {u};
    return c.f;
}

static inline uint32_t tg_float_to_bits(float f) {
    union { float f; uint32_t u; } c = {f};
    return c.u;
}

#define TG_SHIFTER_F 12582912.0f /* 1.5 * 2^23: v + shifter rounds |v| < 2^22 to an integer */

/* e^x for x in [-104, 89] (no clamping here). */
static inline float tg_exp_core(float x) {
    /* x = k ln2 + r, |r| <~ ln2/2; the shifter leaves k in the low mantissa bits of kf */
    float kf = x * 1.44269502f + TG_SHIFTER_F;
    uint32_t kbits = tg_float_to_bits(kf);
    kf -= TG_SHIFTER_F;
    /* Cody-Waite: ln2 = 0.693359375 (8 significant bits, so kf * it is exact) + a small tail */
    float r = x - kf * 0.693359375f;
    r = r - kf * -2.12194440e-4f;
    /* degree-6 minimax fit of e^r on [-0.35, 0.35] (relative error 3.3e-9) */
    float p = 0x1.6a1a8ep-10f;
    p = p * r + 0x1.123fb4p-7f;
    p = p * r + 0x1.555916p-5f;
    p = p * r + 0x1.55548ap-3f;
    p = p * r + 0x1.fffffcp-2f;
    p = 1.0f + (r + r * r * p);
    /* 2^k as two normal factors 2^k1 * 2^k2 (k in [-150, 129] does not fit one float
     * exponent): p * 2^k1 is exact, the second multiply rounds once, also into subnormals or
     * to +inf. k >> 1 (clang's arithmetic shift: floor(k/2)), not k / 2: simd128 has no
     * vector division, and clang scalarised the lanes for it */
    int32_t k = (int32_t)(kbits - 0x4B400000u); /* 0x4B400000 = bits of the shifter */
    int32_t k1 = k >> 1, k2 = k - k1;
    return p * tg_bits_to_float((uint32_t)(k1 + 127) << 23) *
           tg_bits_to_float((uint32_t)(k2 + 127) << 23);
}

static inline float tg_expf(float x) {
    /* selects, not branches; a NaN fails both compares and propagates through the arithmetic */
    x = x > 89.0f ? 89.0f : x;     /* e^89 > FLT_MAX: +inf */
    x = x < -104.0f ? -104.0f : x; /* e^-104 < half the smallest subnormal: 0 */
    return tg_exp_core(x);
}

static inline float tg_tanhf(float x) {
    float a = __builtin_fabsf(x);
    a = a > 10.0f ? 10.0f : a; /* 1 - tanh(10) < 2^-25, so float tanh is 1 from there on */
    /* from e^2a for a >= 0.8, where 1 - 2/(e^2a + 1) is well conditioned */
    float big = 1.0f - 2.0f / (tg_exp_core(2.0f * a) + 1.0f);
    /* below 0.8, a + a^3 P(a^2) with P a degree-5 minimax fit (relative error 3.7e-9) */
    float s = a * a;
    float p = 0x1.9f6f32p-10f;
    p = p * s + -0x1.e597c0p-8f;
    p = p * s + 0x1.5d0738p-6f;
    p = p * s + -0x1.b92886p-5f;
    p = p * s + 0x1.110b3cp-3f;
    p = p * s + -0x1.55553ep-2f;
    float small = a + a * s * p;
    /* computing both and selecting keeps the loop branch-free; a NaN takes `big` */
    float t = a < 0.8f ? small : big;
    return __builtin_copysignf(t, x);
}

/* ---- row primitives: vectorisable, in a fixed summation order ------------------------------
 * Without -ffast-math clang may not reorder a float `s += x[i]` loop, so such a loop runs one
 * element per add latency. These keep TG_LANES interleaved partial sums and combine them as a
 * pairwise tree: an order written in the C source, so it vectorises (one AVX2 register, two
 * simd128 ones) and yet gives the same float result on every target and at every call site. */

#define TG_LANES 8
/* The primitives sit in inner loops; a call per dot product would cost as much as the dot. */
#define TG_ROW static inline __attribute__((always_inline))

/* Combine the TG_LANES partial sums pairwise (lane l with l + w, halving w). */
TG_ROW float tg_lanes_total(float *acc) {
    for (int w = TG_LANES / 2; w > 0; w /= 2) {
        for (int l = 0; l < w; l++) acc[l] += acc[l + w];
    }
    return acc[0];
}

TG_ROW float tg_sum(const float *restrict x, int32_t n) {
    float acc[TG_LANES] = {0};
    int32_t i = 0;
    for (; i + TG_LANES <= n; i += TG_LANES) {
        for (int l = 0; l < TG_LANES; l++) acc[l] += x[i + l];
    }
    for (int l = 0; l < TG_LANES - 1 && i + l < n; l++) acc[l] += x[i + l];
    return tg_lanes_total(acc);
}

TG_ROW float tg_dot(const float *restrict x, const float *restrict y, int32_t n) {
    float acc[TG_LANES] = {0};
    int32_t i = 0;
    for (; i + TG_LANES <= n; i += TG_LANES) {
        for (int l = 0; l < TG_LANES; l++) acc[l] += x[i + l] * y[i + l];
    }
    for (int l = 0; l < TG_LANES - 1 && i + l < n; l++) acc[l] += x[i + l] * y[i + l];
    return tg_lanes_total(acc);
}

/* Largest of x[0..n), n >= 1; NaNs are skipped (as `if (x > m) m = x` would). */
TG_ROW float tg_max(const float *restrict x, int32_t n) {
    float acc[TG_LANES];
    for (int l = 0; l < TG_LANES; l++) acc[l] = x[0];
    int32_t i = 0;
    for (; i + TG_LANES <= n; i += TG_LANES) {
        for (int l = 0; l < TG_LANES; l++) acc[l] = x[i + l] > acc[l] ? x[i + l] : acc[l];
    }
    for (int l = 0; l < TG_LANES - 1 && i + l < n; l++) {
        acc[l] = x[i + l] > acc[l] ? x[i + l] : acc[l];
    }
    for (int w = TG_LANES / 2; w > 0; w /= 2) {
        for (int l = 0; l < w; l++) acc[l] = acc[l + w] > acc[l] ? acc[l + w] : acc[l];
    }
    return acc[0];
}

/* out[i] = e^(in[i] - shift); returns the sum of out. One vectorised pass, then tg_sum. */
TG_ROW float tg_exp_shifted(float *restrict out, const float *restrict in, int32_t n,
                                   float shift) {
    for (int32_t i = 0; i < n; i++) out[i] = tg_expf(in[i] - shift);
    return tg_sum(out, n);
}

/* out = softmax(in) over n >= 1 entries, max-subtracted so no exp overflows. */
TG_ROW void tg_softmax_row(float *restrict out, const float *restrict in, int32_t n) {
#ifdef TG_BUG_SOFTMAX_NOMAX
    float inv = 1.0f / tg_exp_shifted(out, in, n, 0.0f);
#else
    float inv = 1.0f / tg_exp_shifted(out, in, n, tg_max(in, n));
#endif
    for (int32_t i = 0; i < n; i++) out[i] *= inv;
}

/* y[0..n) += sum over r = 0..nr-1 of (w[r*ws] * scale) * x[r*xs + 0..n).
 * Per element that is exactly nr sequential `y += g * x` steps in r order (the order a plain
 * loop of axpys has), but a block of channels stays in registers across all r instead of
 * going through memory each step. Weighted row sums are attention's att @ v and its
 * gradients; ws lets the weights be a column of a row-major matrix. */
#ifdef __wasm_simd128__
#define TG_ROW_BLOCK 16 /* channels held in registers per output: 4 simd128 vectors */
#else
#define TG_ROW_BLOCK 32 /* 4 AVX2 vectors */
#endif
/* One width-W pass of tg_rows_axpy over y[i..): W channels in registers across all rows. A
 * macro rather than a function so W stays a constant the compiler unrolls into registers. */
#define TG_ROWS_AXPY_TILES(W)                                                                  \
    for (; i + (W) <= n; i += (W)) {                                                           \
        float acc[W];                                                                          \
        for (int l = 0; l < (W); l++) acc[l] = y[i + l];                                       \
        for (int32_t r = 0; r < nr; r++) {                                                     \
            float g = w[r * ws] * scale;                                                       \
            const float *restrict xr = x + r * xs + i;                                         \
            for (int l = 0; l < (W); l++) acc[l] += g * xr[l];                                 \
        }                                                                                      \
        for (int l = 0; l < (W); l++) y[i + l] = acc[l];                                       \
    }

TG_ROW void tg_rows_axpy(float *restrict y, const float *restrict w, ptrdiff_t ws, float scale,
                         const float *restrict x, ptrdiff_t xs, int32_t nr, int32_t n) {
    int32_t i = 0;
    TG_ROWS_AXPY_TILES(TG_ROW_BLOCK)
    TG_ROWS_AXPY_TILES(TG_LANES)
    for (; i < n; i++) {
        float acc = y[i];
        for (int32_t r = 0; r < nr; r++) acc += (w[r * ws] * scale) * x[r * xs + i];
        y[i] = acc;
    }
}

/* tg_rows_axpy for two outputs over the same rows x: ya with weights wa, yb with wb. Each
 * element gets exactly the steps tg_rows_axpy would give it, so the results are identical;
 * but with one output the loop waits a multiply-add latency per row, and two outputs give the
 * core twice the independent accumulators: 2 x 4 AVX2 registers per channel block, or
 * 2 x 4 simd128 ones (Cranelift and V8 have 16 xmm registers). */
/* One width-W pass of tg_rows_axpy2 over ya/yb[i..) (see TG_ROWS_AXPY_TILES). */
#define TG_ROWS_AXPY2_TILES(W)                                                                 \
    for (; i + (W) <= n; i += (W)) {                                                           \
        float acc_a[W], acc_b[W];                                                              \
        for (int l = 0; l < (W); l++) {                                                        \
            acc_a[l] = ya[i + l];                                                              \
            acc_b[l] = yb[i + l];                                                              \
        }                                                                                      \
        for (int32_t r = 0; r < nr; r++) {                                                     \
            float ga = wa[r * ws] * scale;                                                     \
            float gb = wb[r * ws] * scale;                                                     \
            const float *restrict xr = x + r * xs + i;                                         \
            for (int l = 0; l < (W); l++) {                                                    \
                acc_a[l] += ga * xr[l];                                                        \
                acc_b[l] += gb * xr[l];                                                        \
            }                                                                                  \
        }                                                                                      \
        for (int l = 0; l < (W); l++) {                                                        \
            ya[i + l] = acc_a[l];                                                              \
            yb[i + l] = acc_b[l];                                                              \
        }                                                                                      \
    }

TG_ROW void tg_rows_axpy2(float *restrict ya, const float *restrict wa, float *restrict yb,
                          const float *restrict wb, ptrdiff_t ws, float scale,
                          const float *restrict x, ptrdiff_t xs, int32_t nr, int32_t n) {
    int32_t i = 0;
    TG_ROWS_AXPY2_TILES(TG_ROW_BLOCK)
    TG_ROWS_AXPY2_TILES(TG_LANES) /* e.g. head size 16 on AVX2 */
    if (i < n) {
        tg_rows_axpy(ya + i, wa, ws, scale, x + i, xs, nr, n - i);
        tg_rows_axpy(yb + i, wb, ws, scale, x + i, xs, nr, n - i);
    }
}

#endif /* TG_MATH_H */
