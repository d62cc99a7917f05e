/*
 * tg_math.h -- exp, log and tanh without libc (WASM has none), within 1 ulp in float.
 *
 * Two families:
 * - tg_exp / tg_log (double in, double out) keep a long polynomial and branches: they serve
 *   scalar code that wants double accuracy (sampling, the cross-entropy normaliser).
 * - tg_expf / tg_tanhf are the element-wise workhorses of softmax and GELU. They evaluate in
 *   double (so the float result is within 1 ulp without float error analysis) but are
 *   branch-free: range reduction by the round-to-nearest shifter, a degree-7 minimax
 *   polynomial, 2^k assembled from integer bits, clamps and special cases as selects. That is
 *   what lets clang vectorise the loops that call them (AVX2 and wasm simd128 alike); the old
 *   branchy Taylor code ran one element at a time.
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

/* ---- branch-free element-wise float exp and tanh ------------------------------------------ */

#define TG_SHIFTER 6755399441055744.0 /* 1.5 * 2^52: v + shifter rounds |v| < 2^51 to an integer */
#define TG_LN2 6.93147180559945286227e-01

/* e^x for x already in [-150, 100], relative error < 6e-11 (float needs < 6e-8 for 1 ulp). */
static inline double tg_exp_clamped(double x) {
    /* x = k ln2 + r with |r| <= ln2/2; the shifter leaves k in the low mantissa bits of kd */
    double kd = x * TG_LOG2E + TG_SHIFTER;
    uint64_t kbits = tg_double_to_bits(kd);
    kd -= TG_SHIFTER;
    /* one rounding, |error| <= |x| 2^-53 < 2e-14: no Cody-Waite split needed at float accuracy */
    double r = x - kd * TG_LN2;
    /* degree-7 minimax fit of e^r on [-ln2/2, ln2/2] (relative error 5.7e-11) */
    double p = 0x1.9fb5d50397f18p-13;
    p = p * r + 0x1.6d9421982b8e0p-10;
    p = p * r + 0x1.1111efd4e5b57p-7;
    p = p * r + 0x1.5554837ae8bb8p-5;
    p = p * r + 0x1.5555549e28ffcp-3;
    p = p * r + 0x1.000000411c02cp-1;
    p = p * r + 1.0;
    p = p * r + 1.0;
    /* 2^k: kbits holds 2^51 + k in its mantissa, so (kbits + 1023) << 52 shifts everything
     * but k + 1023 (which is in [806, 1167]) out of the word and lands it on the exponent */
    return p * tg_bits_to_double((kbits + 1023) << 52);
}

static inline float tg_expf(float xf) {
    double x = (double)xf;
    /* selects, not branches; a NaN fails both compares and propagates through the arithmetic */
    x = x > 100.0 ? 100.0 : x;   /* e^100 > FLT_MAX: rounds to +inf below */
    x = x < -150.0 ? -150.0 : x; /* e^-150 < half float's smallest subnormal: rounds to 0 */
    return (float)tg_exp_clamped(x);
}

static inline float tg_tanhf(float xf) {
    double x = (double)xf;
    double a = __builtin_fabs(x);
    a = a > 10.0 ? 10.0 : a; /* 1 - tanh(10) < 2^-25, so float tanh is 1 from there on */
    /* 1 - 2/(e^2a + 1): in double nothing cancels for a >= 1/16 (exp's 6e-11 becomes < 5e-10) */
    double big = 1.0 - 2.0 / (tg_exp_clamped(2.0 * a) + 1.0);
    /* below 1/16, the series to a^7 (truncation < 5e-12 relative) */
    double a2 = a * a;
    double small = a + a * a2 * (-1.0 / 3.0 + a2 * (2.0 / 15.0 + a2 * (-17.0 / 315.0)));
    /* computing both and selecting keeps the loop branch-free; a NaN takes `big` */
    double t = a < 0.0625 ? small : big;
    return (float)__builtin_copysign(t, x);
}
/* ---- row primitives: vectorisable, in a fixed summation order ------------------------------
 * Without -ffast-math clang may not reorder a float `s += x[i]` loop, so such a loop runs one
 * element per add latency. These keep TG_LANES interleaved partial sums and combine them as a
 * pairwise tree: an order written in the C source, so it vectorises (one AVX2 register, two
 * simd128 ones) and yet gives the same float result on every target and at every call site. */

#define TG_LANES 8

/* Combine the TG_LANES partial sums pairwise (lane l with l + w, halving w). */
static inline float tg_lanes_total(float *acc) {
    for (int w = TG_LANES / 2; w > 0; w /= 2) {
        for (int l = 0; l < w; l++) acc[l] += acc[l + w];
    }
    return acc[0];
}

static inline float tg_sum(const float *restrict x, int32_t n) {
    float acc[TG_LANES] = {0};
    int32_t i = 0;
    for (; i + TG_LANES <= n; i += TG_LANES) {
        for (int l = 0; l < TG_LANES; l++) acc[l] += x[i + l];
    }
    for (int l = 0; i + l < n; l++) acc[l] += x[i + l];
    return tg_lanes_total(acc);
}

static inline float tg_dot(const float *restrict x, const float *restrict y, int32_t n) {
    float acc[TG_LANES] = {0};
    int32_t i = 0;
    for (; i + TG_LANES <= n; i += TG_LANES) {
        for (int l = 0; l < TG_LANES; l++) acc[l] += x[i + l] * y[i + l];
    }
    for (int l = 0; i + l < n; l++) acc[l] += x[i + l] * y[i + l];
    return tg_lanes_total(acc);
}

/* Largest of x[0..n), n >= 1; NaNs are skipped (as `if (x > m) m = x` would). */
static inline float tg_max(const float *restrict x, int32_t n) {
    float acc[TG_LANES];
    for (int l = 0; l < TG_LANES; l++) acc[l] = x[0];
    int32_t i = 0;
    for (; i + TG_LANES <= n; i += TG_LANES) {
        for (int l = 0; l < TG_LANES; l++) acc[l] = x[i + l] > acc[l] ? x[i + l] : acc[l];
    }
    for (int l = 0; i + l < n; l++) acc[l] = x[i + l] > acc[l] ? x[i + l] : acc[l];
    for (int w = TG_LANES / 2; w > 0; w /= 2) {
        for (int l = 0; l < w; l++) acc[l] = acc[l + w] > acc[l] ? acc[l + w] : acc[l];
    }
    return acc[0];
}

/* out[i] = e^(in[i] - shift); returns the sum of out. One vectorised pass, then tg_sum. */
static inline float tg_exp_shifted(float *restrict out, const float *restrict in, int32_t n,
                                   float shift) {
    for (int32_t i = 0; i < n; i++) out[i] = tg_expf(in[i] - shift);
    return tg_sum(out, n);
}

/* out = softmax(in) over n >= 1 entries, max-subtracted so no exp overflows. */
static inline void tg_softmax_row(float *restrict out, const float *restrict in, int32_t n) {
    float inv = 1.0f / tg_exp_shifted(out, in, n, tg_max(in, n));
    for (int32_t i = 0; i < n; i++) out[i] *= inv;
}

/* y[0..n) += sum over r = 0..nr-1 of (w[r*ws] * scale) * x[r*xs + 0..n).
 * Per element that is exactly nr sequential `y += g * x` steps in r order (the order a plain
 * loop of axpys has), but a block of channels stays in registers across all r instead of
 * going through memory each step. Weighted row sums are attention's att @ v and its
 * gradients; ws lets the weights be a column of a row-major matrix. */
#define TG_ROW_BLOCK 32
static inline void tg_rows_axpy(float *restrict y, const float *restrict w, ptrdiff_t ws,
                                float scale, const float *restrict x, ptrdiff_t xs, int32_t nr,
                                int32_t n) {
    int32_t i = 0;
    for (; i + TG_ROW_BLOCK <= n; i += TG_ROW_BLOCK) {
        float acc[TG_ROW_BLOCK];
        for (int l = 0; l < TG_ROW_BLOCK; l++) acc[l] = y[i + l];
        for (int32_t r = 0; r < nr; r++) {
            float g = w[r * ws] * scale;
            const float *restrict xr = x + r * xs + i;
            for (int l = 0; l < TG_ROW_BLOCK; l++) acc[l] += g * xr[l];
        }
        for (int l = 0; l < TG_ROW_BLOCK; l++) y[i + l] = acc[l];
    }
    for (; i + TG_LANES <= n; i += TG_LANES) {
        float acc[TG_LANES];
        for (int l = 0; l < TG_LANES; l++) acc[l] = y[i + l];
        for (int32_t r = 0; r < nr; r++) {
            float g = w[r * ws] * scale;
            const float *restrict xr = x + r * xs + i;
            for (int l = 0; l < TG_LANES; l++) acc[l] += g * xr[l];
        }
        for (int l = 0; l < TG_LANES; l++) y[i + l] = acc[l];
    }
    for (; i < n; i++) {
        float acc = y[i];
        for (int32_t r = 0; r < nr; r++) acc += (w[r * ws] * scale) * x[r * xs + i];
        y[i] = acc;
    }
}

#endif /* TG_MATH_H */
