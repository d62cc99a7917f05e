/*
 * tg_math.h -- exp, log and tanh without libc (WASM has none), accurate to about 1 ulp in float.
 *
 * The float functions evaluate in double and round once at the end: a double polynomial has
 * ~1e-15 relative error, so the float result is correctly rounded except in rare near-halfway
 * cases (<= 1 ulp). These feed parity checks against numpy, so accuracy beats speed here.
 * static inline so elementwise loops (GELU, softmax) inline them instead of calling across
 * translation units.
 */
#ifndef TG_MATH_H
#define TG_MATH_H

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

static inline double tg_expm1(double x) {
    if (x > 709.0) return __builtin_inf();
    if (x < -40.0) return -1.0;
    int k;
    double r = tg_reduce(x, &k);
    double p = tg_expm1_reduced(r);
    if (k == 0) return p; /* no cancellation near 0: this is why expm1 exists */
    return (1.0 + p) * tg_pow2i(k) - 1.0;
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

static inline float tg_expf(float x) { return (float)tg_exp((double)x); }

static inline float tg_logf(float x) { return (float)tg_log((double)x); }

static inline float tg_tanhf(float x) {
    double ax = x < 0 ? -(double)x : (double)x;
    if (x != x) return x;
    if (ax > 10.0) return x < 0 ? -1.0f : 1.0f; /* 1 - tanh(10) < 2^-25: rounds to 1 */
    double e = tg_expm1(2.0 * ax);
    double t = e / (e + 2.0);
    return (float)(x < 0 ? -t : t);
}

#endif /* TG_MATH_H */
