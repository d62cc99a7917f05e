/* lib2_ops.c -- lib2's exported ops (lib2.h) and the helpers the model shares. Plain scalar C:
 * the same source builds natively and with emscripten (wasm32, Memory64, pthread). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lib2.h"
#include "lib2_internal.h"

/* ---- memory ---------------------------------------------------------------------------- */

float *tg_malloc(int n_floats) {
    if (n_floats <= 0) return NULL;
    return (float *)calloc((size_t)n_floats, sizeof(float));
}

void tg_free(float *p) { free(p); }

/* ---- helpers --------------------------------------------------------------------------- */

void l2_linear(const float *x, const float *W, const float *b, float *y, int N, int I, int O) {
    for (int n = 0; n < N; n++) {
        float *yr = y + (size_t)n * O;
        for (int o = 0; o < O; o++) yr[o] = b ? b[o] : 0.0f;
        const float *xr = x + (size_t)n * I;
        for (int i = 0; i < I; i++) {
            const float a = xr[i];
            const float *wr = W + (size_t)i * O;
            for (int o = 0; o < O; o++) yr[o] += a * wr[o];
        }
    }
}

void l2_bias_grad(const float *dy, float *db, int N, int O) {
    for (int n = 0; n < N; n++)
        for (int o = 0; o < O; o++) db[o] += dy[(size_t)n * O + o];
}

#define L2_GELU_S 0.7978845608028654f /* sqrt(2/pi) */
#define L2_GELU_C 0.044715f

void l2_gelu_forward(const float *x, float *y, size_t n) {
    for (size_t i = 0; i < n; i++) {
        const float a = x[i];
        y[i] = 0.5f * a * (1.0f + tanhf(L2_GELU_S * (a + L2_GELU_C * a * a * a)));
    }
}

void l2_gelu_backward(const float *x, const float *dy, float *dx, size_t n) {
    for (size_t i = 0; i < n; i++) {
        const float a = x[i];
        const float th = tanhf(L2_GELU_S * (a + L2_GELU_C * a * a * a));
        const float local = 0.5f * (1.0f + th) +
                            a * 0.5f * (1.0f - th * th) * L2_GELU_S * (1.0f + 3.0f * L2_GELU_C * a * a);
        dx[i] = local * dy[i];
    }
}

#define L2_GOLDEN 0x9E3779B97F4A7C15ULL

uint64_t l2_rng_seed(uint64_t s) {
    uint64_t z = s + L2_GOLDEN;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    return z ? z : L2_GOLDEN;
}

double l2_rng_uniform(uint64_t *state) {
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return (double)((x * 0x2545F4914F6CDD1DULL) >> 11) * (1.0 / 9007199254740992.0);
}

/* ---- matmul ---------------------------------------------------------------------------- */

void matmul_forward(const float *A, const float *B, float *C, int M, int K, int N) {
    l2_linear(A, B, NULL, C, M, K, N);
}

void matmul_backward(const float *A, const float *B, const float *dC, float *dA, float *dB, int M,
                     int K, int N) {
    for (int i = 0; i < M; i++) {
        const float *dcr = dC + (size_t)i * N;
        for (int k = 0; k < K; k++) {
            const float *br = B + (size_t)k * N;
            float s = 0.0f;
            for (int j = 0; j < N; j++) s += dcr[j] * br[j];
            dA[(size_t)i * K + k] = s;
        }
    }
    memset(dB, 0, sizeof(float) * (size_t)K * (size_t)N);
    for (int i = 0; i < M; i++) {
        const float *dcr = dC + (size_t)i * N;
        const float *ar = A + (size_t)i * K;
        for (int k = 0; k < K; k++) {
            const float a = ar[k];
            float *dbr = dB + (size_t)k * N;
            for (int j = 0; j < N; j++) dbr[j] += a * dcr[j];
        }
    }
}

/* ---- layernorm ------------------------------------------------------------------------- */

void layernorm_forward(const float *x, const float *gamma, const float *beta, float *y,
                       float *mean, float *rstd, int N, int D, float eps) {
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * D;
        float s = 0.0f;
        for (int d = 0; d < D; d++) s += xr[d];
        const float m = s / (float)D;
        float var = 0.0f;
        for (int d = 0; d < D; d++) var += (xr[d] - m) * (xr[d] - m);
        var /= (float)D;
        const float rs = 1.0f / sqrtf(var + eps);
        float *yr = y + (size_t)n * D;
        for (int d = 0; d < D; d++) yr[d] = (xr[d] - m) * rs * gamma[d] + beta[d];
        mean[n] = m;
        rstd[n] = rs;
    }
}

void layernorm_backward(const float *x, const float *gamma, const float *mean, const float *rstd,
                        const float *dy, float *dx, float *dgamma, float *dbeta, int N, int D) {
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * D;
        const float *dyr = dy + (size_t)n * D;
        const float m = mean[n], rs = rstd[n];
        float dmean = 0.0f, dnm = 0.0f;
        for (int d = 0; d < D; d++) {
            const float norm = (xr[d] - m) * rs;
            const float dn = dyr[d] * gamma[d];
            dmean += dn;
            dnm += dn * norm;
            dgamma[d] += dyr[d] * norm;
            dbeta[d] += dyr[d];
        }
        dmean /= (float)D;
        dnm /= (float)D;
        float *dxr = dx + (size_t)n * D;
        for (int d = 0; d < D; d++) {
            const float norm = (xr[d] - m) * rs;
            dxr[d] = rs * (dyr[d] * gamma[d] - dmean - norm * dnm);
        }
    }
}

/* ---- attention ------------------------------------------------------------------------- */

/* y (B,T,C) = merge_heads(attn @ v) */
static void attn_apply(const float *attn, const float *v, float *y, int B, int T, int C, int H) {
    const int hs = C / H;
    memset(y, 0, sizeof(float) * (size_t)B * T * C);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int t = 0; t < T; t++) {
                const float *ar = attn + (((size_t)b * H + h) * T + t) * T;
                float *yr = y + ((size_t)b * T + t) * C + (size_t)h * hs;
                for (int s = 0; s <= t; s++) {
                    const float *vr = v + ((size_t)b * T + s) * C + (size_t)h * hs;
                    for (int i = 0; i < hs; i++) yr[i] += ar[s] * vr[i];
                }
            }
}

void attention_forward(const float *x, const float *Wq, const float *bq, const float *Wk,
                       const float *bk, const float *Wv, const float *bv, const float *Wo,
                       const float *bo, float *out, float *q, float *k, float *v, float *attn,
                       int B, int T, int C, int H) {
    const int N = B * T, hs = C / H;
    const float scale = 1.0f / sqrtf((float)hs);
    l2_linear(x, Wq, bq, q, N, C, C);
    l2_linear(x, Wk, bk, k, N, C, C);
    l2_linear(x, Wv, bv, v, N, C, C);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int t = 0; t < T; t++) {
                const float *qr = q + ((size_t)b * T + t) * C + (size_t)h * hs;
                float *ar = attn + (((size_t)b * H + h) * T + t) * T;
                float mx = -INFINITY;
                for (int s = 0; s <= t; s++) {
                    const float *kr = k + ((size_t)b * T + s) * C + (size_t)h * hs;
                    float d = 0.0f;
                    for (int i = 0; i < hs; i++) d += qr[i] * kr[i];
                    ar[s] = d * scale;
                    if (ar[s] > mx) mx = ar[s];
                }
                float sum = 0.0f;
                for (int s = 0; s <= t; s++) {
                    ar[s] = expf(ar[s] - mx);
                    sum += ar[s];
                }
                for (int s = 0; s <= t; s++) ar[s] /= sum;
                for (int s = t + 1; s < T; s++) ar[s] = 0.0f;
            }
    float *y = (float *)malloc(sizeof(float) * (size_t)N * C);
    if (!y) return;
    attn_apply(attn, v, y, B, T, C, H);
    l2_linear(y, Wo, bo, out, N, C, C);
    free(y);
}

/* dW (I,O) += x^T (N,I) @ dy (N,O) */
static void weight_grad_acc(const float *x, const float *dy, float *dW, int N, int I, int O) {
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * I;
        const float *dyr = dy + (size_t)n * O;
        for (int i = 0; i < I; i++) {
            const float a = xr[i];
            float *dwr = dW + (size_t)i * O;
            for (int o = 0; o < O; o++) dwr[o] += a * dyr[o];
        }
    }
}

/* dx (N,I) (+)= dy (N,O) @ W^T, W (I,O); overwrite when acc == 0 */
static void input_grad(const float *dy, const float *W, float *dx, int N, int I, int O, int acc) {
    for (int n = 0; n < N; n++) {
        const float *dyr = dy + (size_t)n * O;
        for (int i = 0; i < I; i++) {
            const float *wr = W + (size_t)i * O;
            float s = 0.0f;
            for (int o = 0; o < O; o++) s += dyr[o] * wr[o];
            if (acc)
                dx[(size_t)n * I + i] += s;
            else
                dx[(size_t)n * I + i] = s;
        }
    }
}

void attention_backward(const float *x, const float *Wq, const float *Wk, const float *Wv,
                        const float *Wo, const float *q, const float *k, const float *v,
                        const float *attn, const float *dout, float *dx, float *dWq, float *dbq,
                        float *dWk, float *dbk, float *dWv, float *dbv, float *dWo, float *dbo,
                        int B, int T, int C, int H) {
    const int N = B * T, hs = C / H;
    const float scale = 1.0f / sqrtf((float)hs);
    const size_t nc = (size_t)N * C;
    float *buf = (float *)calloc(5 * nc + (size_t)T, sizeof(float));
    if (!buf) return;
    float *y = buf, *dy = buf + nc, *dq = buf + 2 * nc, *dk = buf + 3 * nc, *dv = buf + 4 * nc;
    float *datt = buf + 5 * nc;
    attn_apply(attn, v, y, B, T, C, H);
    weight_grad_acc(y, dout, dWo, N, C, C);
    l2_bias_grad(dout, dbo, N, C);
    input_grad(dout, Wo, dy, N, C, C, 0);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int t = 0; t < T; t++) {
                const float *ar = attn + (((size_t)b * H + h) * T + t) * T;
                const size_t row_t = ((size_t)b * T + t) * C + (size_t)h * hs;
                float dot = 0.0f;
                for (int s = 0; s <= t; s++) {
                    const size_t row_s = ((size_t)b * T + s) * C + (size_t)h * hs;
                    float d = 0.0f;
                    for (int i = 0; i < hs; i++) {
                        d += dy[row_t + i] * v[row_s + i];
                        dv[row_s + i] += ar[s] * dy[row_t + i];
                    }
                    datt[s] = d;
                    dot += d * ar[s];
                }
                for (int s = 0; s <= t; s++) {
                    const size_t row_s = ((size_t)b * T + s) * C + (size_t)h * hs;
                    const float dpre = ar[s] * (datt[s] - dot) * scale;
                    for (int i = 0; i < hs; i++) {
                        dq[row_t + i] += dpre * k[row_s + i];
                        dk[row_s + i] += dpre * q[row_t + i];
                    }
                }
            }
    weight_grad_acc(x, dq, dWq, N, C, C);
    weight_grad_acc(x, dk, dWk, N, C, C);
    weight_grad_acc(x, dv, dWv, N, C, C);
    l2_bias_grad(dq, dbq, N, C);
    l2_bias_grad(dk, dbk, N, C);
    l2_bias_grad(dv, dbv, N, C);
    input_grad(dq, Wq, dx, N, C, C, 0);
    input_grad(dk, Wk, dx, N, C, C, 1);
    input_grad(dv, Wv, dx, N, C, C, 1);
    free(buf);
}

/* ---- AdamW ----------------------------------------------------------------------------- */

void adamw_step(float *p, const float *g, float *m, float *v, int n, float lr, float beta1,
                float beta2, float eps, float wd, int t) {
    const float c1 = 1.0f - powf(beta1, (float)t);
    const float c2 = 1.0f - powf(beta2, (float)t);
    for (int i = 0; i < n; i++) {
        m[i] = beta1 * m[i] + (1.0f - beta1) * g[i];
        v[i] = beta2 * v[i] + (1.0f - beta2) * g[i] * g[i];
        const float mh = m[i] / c1, vh = v[i] / c2;
        p[i] -= lr * (mh / (sqrtf(vh) + eps) + wd * p[i]);
    }
}
