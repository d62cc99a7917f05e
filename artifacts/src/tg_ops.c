/*
 * tg_ops.c -- every elementwise / row-wise op of the ABI, forward and backward (llm.c layout).
 *
 * Sums run in float in a fixed order like llm.c, except where float would lose the answer:
 * the mean cross-entropy is accumulated in double. Backward functions ACCUMULATE (+=).
 */
#include "tg_internal.h"

#ifdef TG_BUG_LN_EPS_1E6 /* a test fault, never shipped: LayerNorm's built-in eps 1e-6, not the
                          * 1e-5 tinygpt.h (and the bundled binding's `fixed`) says */
#define TG_LN_EPS 1e-6f
#else
#define TG_LN_EPS 1e-5f
#endif
/* The element-wise ops' constants. Each TG_BUG_* build (a test fault, never shipped) moves one
 * by 1 part in 1e5, which the ops check's bias stage must catch (docs/tolerance.md). */
#ifdef TG_BUG_GELU_SCALE
#define TG_GELU_SCALE (0.7978845608028654f * 1.00001f)
#else
#define TG_GELU_SCALE 0.7978845608028654f /* sqrt(2/pi) */
#endif
#ifdef TG_BUG_GELU_COEF
#define TG_GELU_COEF (0.044715f * 1.00001f)
#else
#define TG_GELU_COEF 0.044715f
#endif
#ifdef TG_BUG_GELU_COEF_BACKWARD /* the same fault in the backward pass only */
#define TG_GELU_COEF_BWD (0.044715f * 1.00001f)
#else
#define TG_GELU_COEF_BWD TG_GELU_COEF
#endif
#ifdef TG_BUG_GELU_HALF
#define TG_GELU_HALF (0.5f * 1.00001f)
#else
#define TG_GELU_HALF 0.5f
#endif
#ifdef TG_BUG_ONE
#define TG_ONE 1.00001f /* the 1 of crossentropy's one-hot and of AdamW's 1 - beta */
#else
#define TG_ONE 1.0f
#endif

TG_API void tg_embedding_forward(float *out, const int32_t *idx, const float *wte,
                                 const float *wpe, int32_t B, int32_t T, int32_t C) {
    for (int32_t b = 0; b < B; b++) {
        for (int32_t t = 0; t < T; t++) {
            float *restrict o = out + ((size_t)b * T + t) * C;
            const float *restrict e = wte + (size_t)idx[b * T + t] * C;
            const float *restrict p = wpe + (size_t)t * C;
            for (int32_t c = 0; c < C; c++) o[c] = e[c] + p[c];
        }
    }
}

TG_API void tg_embedding_backward(float *dwte, float *dwpe, const float *dout, const int32_t *idx,
                                  int32_t B, int32_t T, int32_t C) {
    for (int32_t b = 0; b < B; b++) {
        for (int32_t t = 0; t < T; t++) {
            const float *restrict d = dout + ((size_t)b * T + t) * C;
            float *restrict de = dwte + (size_t)idx[b * T + t] * C;
            float *restrict dp = dwpe + (size_t)t * C;
            for (int32_t c = 0; c < C; c++) {
                de[c] += d[c];
                dp[c] += d[c];
            }
        }
    }
}

typedef struct {
    float *out, *mean, *rstd;
    const float *inp, *weight, *bias;
    int32_t C;
} ln_job;

/* Rows lo..hi-1 of the forward: rows are independent, so any split is bitwise the serial one. */
static void layernorm_forward_rows(void *ctx, size_t lo, size_t hi) {
    const ln_job *j = ctx;
    float *out = j->out, *mean = j->mean, *rstd = j->rstd;
    const float *inp = j->inp, *weight = j->weight, *bias = j->bias;
    int32_t C = j->C;
    for (size_t n = lo; n < hi; n++) {
        const float *restrict x = inp + (size_t)n * C;
        float *restrict o = out + (size_t)n * C;
        const float *restrict w = weight;
        const float *restrict bi = bias;
        /* Two statistics passes (mean, then centred variance) rather than one sum/sum-of-squares
         * pass: the latter cancels catastrophically for rows with a large mean. */
        float m = tg_sum(x, C) / (float)C;
        float acc[TG_LANES] = {0};
        int32_t c = 0;
        for (; c + TG_LANES <= C; c += TG_LANES) {
            for (int l = 0; l < TG_LANES; l++) {
                float d = x[c + l] - m;
                acc[l] += d * d;
            }
        }
        for (int l = 0; l < TG_LANES - 1 && c + l < C; l++) {
            float d = x[c + l] - m;
            acc[l] += d * d;
        }
        float v = tg_lanes_total(acc) / (float)C;
#ifdef TG_BUG_LN_ONEPASS
        /* fault: the one-pass E[x^2] - E[x]^2 variance */
        v = tg_dot(x, x, C) / (float)C - m * m;
#endif
        float s = 1.0f / __builtin_sqrtf(v + TG_LN_EPS);
        for (c = 0; c < C; c++) o[c] = (x[c] - m) * s * w[c] + bi[c];
        mean[n] = m;
        rstd[n] = s;
    }
}

TG_API void tg_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                                 const float *weight, const float *bias, int32_t N, int32_t C) {
    if (N <= 0) return;
    ln_job job = {out, mean, rstd, inp, weight, bias, C};
    tg_parallel_range((size_t)N, 8.0 * N * C, layernorm_forward_rows, &job);
}

TG_API void tg_layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                                  const float *inp, const float *weight, const float *mean,
                                  const float *rstd, int32_t N, int32_t C) {
    for (int32_t n = 0; n < N; n++) {
        const float *restrict d = dout + (size_t)n * C;
        const float *restrict x = inp + (size_t)n * C;
        const float *restrict w = weight;
        float *restrict dx = dinp + (size_t)n * C;
        float *restrict dw = dweight;
        float *restrict db = dbias;
        float m = mean[n];
        float s = rstd[n];
        /* the two row reductions share one pass */
        float acc_d[TG_LANES] = {0};
        float acc_dn[TG_LANES] = {0};
        int32_t c = 0;
        for (; c + TG_LANES <= C; c += TG_LANES) {
            for (int l = 0; l < TG_LANES; l++) {
                float norm = (x[c + l] - m) * s;
                float dnorm = w[c + l] * d[c + l];
                acc_d[l] += dnorm;
                acc_dn[l] += dnorm * norm;
            }
        }
        for (int l = 0; l < TG_LANES - 1 && c + l < C; l++) {
            float norm = (x[c + l] - m) * s;
            float dnorm = w[c + l] * d[c + l];
            acc_d[l] += dnorm;
            acc_dn[l] += dnorm * norm;
        }
        float dnorm_mean = tg_lanes_total(acc_d) / (float)C;
        float dnorm_norm_mean = tg_lanes_total(acc_dn) / (float)C;
#ifdef TG_BUG_LAYERNORM_BACKWARD
        /* Deliberate bug for the harness's own tests: drop the mean-gradient term. Forward
         * and dweight/dbias stay right, so only a backward parity check can catch it. */
        dnorm_mean = 0.0f;
#endif
        for (c = 0; c < C; c++) {
            float norm = (x[c] - m) * s;
            float dnorm = w[c] * d[c];
            db[c] += d[c];
            dw[c] += norm * d[c];
            dx[c] += (dnorm - dnorm_mean - norm * dnorm_norm_mean) * s;
        }
    }
}

/* Attention over one (batch, head) at a time. q, k and v of a time step are contiguous runs
 * of hs floats (rows C3 apart), so every inner loop is a dot product or a weighted row sum
 * over hs (tg_dot, tg_rows_axpy) or a pass along one row of att: all vectorise, and masked
 * entries (t2 > t) are never computed, only zeroed. Weighted row sums go two outputs at a
 * time (tg_rows_axpy2): output t takes rows 0..t, output t+1 the same plus row t+1 last,
 * which keeps every element's summation order that of one row at a time (and so of the
 * KV-cache path in tg_model.c). */
typedef struct {
    float *out, *preatt, *att, *dinp, *dpreatt, *datt;
    const float *inp, *dout, *att_in;
    int32_t B, T, C, NH;
} attn_job;

/* One (batch, head) of the forward pass: task = b * NH + h. Heads write disjoint slices of
 * out, preatt and att, so any split over tasks is bitwise the serial result. */
static void attention_forward_head(void *ctx, int32_t task, int32_t worker) {
    (void)worker;
    const attn_job *j = ctx;
    float *out = j->out, *preatt = j->preatt, *att = j->att;
    const float *inp = j->inp;
    int32_t T = j->T, C = j->C, NH = j->NH;
    int32_t b = task / NH, h = task % NH;
    int32_t C3 = 3 * C;
    int32_t hs = C / NH;
#ifdef TG_BUG_ATTN_SCALE_D
    float scale = 1.0f / (float)hs;
#else
    float scale = 1.0f / __builtin_sqrtf((float)hs);
#endif
    size_t head = ((size_t)b * NH + h) * T * T;
    const float *q0 = inp + (size_t)b * T * C3 + h * hs;
    const float *k0 = q0 + C;
    const float *v0 = q0 + 2 * C;
    float *o0 = out + (size_t)b * T * C + h * hs;
    for (int32_t t = 0; t < T; t++) {
        float *restrict pre = preatt + head + (size_t)t * T;
        float *restrict a = att + head + (size_t)t * T;
        const float *q = q0 + (size_t)t * C3;
        for (int32_t t2 = 0; t2 <= t; t2++) {
            pre[t2] = tg_dot(q, k0 + (size_t)t2 * C3, hs) * scale;
        }
        tg_softmax_row(a, pre, t + 1);
        for (int32_t t2 = t + 1; t2 < T; t2++) {
            a[t2] = 0.0f;
            pre[t2] = 0.0f;
        }
    }
    /* out[t] = att[t, 0..t] @ v */
    for (int32_t t = 0; t < T; t++) {
        float *o = o0 + (size_t)t * C;
        for (int32_t i = 0; i < hs; i++) o[i] = 0.0f;
    }
    int32_t t = 0;
    for (; t + 1 < T; t += 2) {
        float *oa = o0 + (size_t)t * C, *ob = oa + C;
        const float *aa = att + head + (size_t)t * T, *ab = aa + T;
        tg_rows_axpy2(oa, aa, ob, ab, 1, 1.0f, v0, C3, t + 1, hs);
        tg_rows_axpy(ob, ab + t + 1, 1, 1.0f, v0 + (size_t)(t + 1) * C3, C3, 1, hs);
    }
    if (t < T) {
        tg_rows_axpy(o0 + (size_t)t * C, att + head + (size_t)t * T, 1, 1.0f, v0, C3,
                     t + 1, hs);
    }
}

TG_API void tg_attention_forward(float *out, float *preatt, float *att, const float *inp,
                                 int32_t B, int32_t T, int32_t C, int32_t NH) {
    attn_job job = {.out = out, .preatt = preatt, .att = att, .inp = inp,
                    .B = B, .T = T, .C = C, .NH = NH};
    int32_t heads = B * NH;
    /* q.k, softmax and att.v: about 2 T^2 hs flops per head, x2 for the two products */
    double work = 2.0 * heads * (double)T * T * (C / NH);
    int32_t chunks = tg_parallel_chunks(work, heads);
    if (chunks <= 1) {
        for (int32_t i = 0; i < heads; i++) attention_forward_head(&job, i, 0);
    } else {
        tg_parallel_for(heads, attention_forward_head, &job);
    }
}

/* One (batch, head) of the backward pass: dq, dk, dv of head h in batch b and that head's
 * dpreatt/datt rows are written by this task alone, so any split is bitwise the serial one. */
static void attention_backward_head(void *ctx, int32_t task, int32_t worker) {
    (void)worker;
    const attn_job *j = ctx;
    float *dinp = j->dinp, *dpreatt = j->dpreatt, *datt = j->datt;
    const float *dout = j->dout, *inp = j->inp, *att = j->att_in;
    int32_t T = j->T, C = j->C, NH = j->NH;
    int32_t b = task / NH, h = task % NH;
    int32_t C3 = 3 * C;
    int32_t hs = C / NH;
#ifdef TG_BUG_ATTN_SCALE_D
    float scale = 1.0f / (float)hs;
#else
    float scale = 1.0f / __builtin_sqrtf((float)hs);
#endif
    size_t head = ((size_t)b * NH + h) * T * T;
    const float *q0 = inp + (size_t)b * T * C3 + h * hs;
    const float *k0 = q0 + C;
    const float *v0 = q0 + 2 * C;
    float *dq0 = dinp + (size_t)b * T * C3 + h * hs;
    float *dk0 = dq0 + C;
    float *dv0 = dq0 + 2 * C;
    const float *d0 = dout + (size_t)b * T * C + h * hs;
    const float *a0 = att + head;
    const float *dp0 = dpreatt + head;
    for (int32_t t = 0; t < T; t++) {
        const float *restrict a = a0 + (size_t)t * T;
        float *restrict da = datt + head + (size_t)t * T;
        float *restrict dpre = dpreatt + head + (size_t)t * T;
        const float *d = d0 + (size_t)t * C;
        /* out = att @ v: gradient into att (into v below, a column of att at a time) */
        for (int32_t t2 = 0; t2 <= t; t2++) {
            da[t2] += tg_dot(v0 + (size_t)t2 * C3, d, hs);
        }
        /* softmax backward: dpre = a * (da - sum(a * da)) */
        float dot = tg_dot(a, da, t + 1);
        for (int32_t t2 = 0; t2 <= t; t2++) dpre[t2] += a[t2] * (da[t2] - dot);
    }
    /* pre = scale * q.k: dq[t] sums row t of dpre against the keys 0..t */
    int32_t t = 0;
    for (; t + 1 < T; t += 2) {
        float *dqa = dq0 + (size_t)t * C3, *dqb = dqa + C3;
        const float *wa = dp0 + (size_t)t * T, *wb = wa + T;
        tg_rows_axpy2(dqa, wa, dqb, wb, 1, scale, k0, C3, t + 1, hs);
        tg_rows_axpy(dqb, wb + t + 1, 1, scale, k0 + (size_t)(t + 1) * C3, C3, 1, hs);
    }
    if (t < T) {
        tg_rows_axpy(dq0 + (size_t)t * C3, dp0 + (size_t)t * T, 1, scale, k0, C3, t + 1,
                     hs);
    }
    /* dk[t2] (dv[t2]) sums column t2 of dpre (att) against q (dout) over t >= t2; in
     * pairs, t2's own row t = t2 goes first, then rows t2+1.. for both */
    int32_t t2 = 0;
    for (; t2 + 1 < T; t2 += 2) {
        size_t diag = (size_t)t2 * T + t2;
        const float *qn = q0 + (size_t)(t2 + 1) * C3, *dn = d0 + (size_t)(t2 + 1) * C;
        float *dka = dk0 + (size_t)t2 * C3, *dva = dv0 + (size_t)t2 * C3;
        tg_rows_axpy(dka, dp0 + diag, T, scale, q0 + (size_t)t2 * C3, C3, 1, hs);
        tg_rows_axpy2(dka, dp0 + diag + T, dka + C3, dp0 + diag + T + 1, T, scale, qn, C3,
                      T - t2 - 1, hs);
        tg_rows_axpy(dva, a0 + diag, T, 1.0f, d0 + (size_t)t2 * C, C, 1, hs);
        tg_rows_axpy2(dva, a0 + diag + T, dva + C3, a0 + diag + T + 1, T, 1.0f, dn, C,
                      T - t2 - 1, hs);
    }
    if (t2 < T) {
        size_t diag = (size_t)t2 * T + t2;
        tg_rows_axpy(dk0 + (size_t)t2 * C3, dp0 + diag, T, scale, q0 + (size_t)t2 * C3, C3,
                     T - t2, hs);
        tg_rows_axpy(dv0 + (size_t)t2 * C3, a0 + diag, T, 1.0f, d0 + (size_t)t2 * C, C,
                     T - t2, hs);
    }
}

TG_API void tg_attention_backward(float *dinp, float *dpreatt, float *datt, const float *dout,
                                  const float *inp, const float *att, int32_t B, int32_t T,
                                  int32_t C, int32_t NH) {
    attn_job job = {.dinp = dinp, .dpreatt = dpreatt, .datt = datt, .dout = dout, .inp = inp,
                    .att_in = att, .B = B, .T = T, .C = C, .NH = NH};
    int32_t heads = B * NH;
    double work = 4.0 * heads * (double)T * T * (C / NH);
    int32_t chunks = tg_parallel_chunks(work, heads);
    if (chunks <= 1) {
        for (int32_t i = 0; i < heads; i++) attention_backward_head(&job, i, 0);
    } else {
        tg_parallel_for(heads, attention_backward_head, &job);
    }
}

/* GELU is element-wise and tg_tanhf computes in a vector lane what it computes in the scalar
 * tail (tg_math.h), so a split at any element is bitwise the serial result. */
typedef struct {
    float *out;
    const float *inp, *dout;
} gelu_job;

/* about 30 flops an element: tanh's polynomial and the cube */
#define TG_GELU_WORK 30.0

static void gelu_forward_range(void *ctx, size_t lo, size_t hi) {
    const gelu_job *j = ctx;
    float *out = j->out;
    const float *inp = j->inp;
    for (size_t i = lo; i < hi; i++) {
        float x = inp[i];
        float cube = TG_GELU_COEF * x * x * x;
        out[i] = TG_GELU_HALF * x * (1.0f + tg_tanhf(TG_GELU_SCALE * (x + cube)));
    }
}

TG_API void tg_gelu_forward(float *out, const float *inp, int32_t N) {
    if (N <= 0) return;
    gelu_job job = {out, inp, 0};
    tg_parallel_range((size_t)N, TG_GELU_WORK * N, gelu_forward_range, &job);
#ifdef TG_BUG_GELU_OOB /* a test fault, never shipped: one float past the end of out */
    out[N] = out[N - 1];
#endif
#ifdef TG_BUG_GELU_OOB_FAR /* a test fault: 4096 floats past the end (16 KiB, past any guard) */
    for (int32_t i = 0; i < 4096; i++) out[N + i] = 1.0f;
#endif
#ifdef TG_BUG_GELU_UNDERRUN /* a test fault: one float before the start of out */
    out[-1] = out[0];
#endif
#ifdef TG_BUG_GELU_ODD /* a test fault: the last element wrong when N is odd (a tail bug) */
    if (N % 2) out[N - 1] += 0.5f;
#endif
#ifdef TG_BUG_GELU_INPUT_WRITE /* a test fault: the read-only input overwritten in place */
    ((float *)inp)[N - 1] = out[N - 1];
#endif
}

static void gelu_backward_range(void *ctx, size_t lo, size_t hi) {
    const gelu_job *j = ctx;
    float *dinp = j->out;
    const float *inp = j->inp, *dout = j->dout;
    for (size_t i = lo; i < hi; i++) {
        float x = inp[i];
        float cube = TG_GELU_COEF_BWD * x * x * x;
        float th = tg_tanhf(TG_GELU_SCALE * (x + cube));
        /* 1 - tanh^2 instead of sech^2: cosh overflows for large |x| */
        float local = TG_GELU_HALF * (1.0f + th) + x * TG_GELU_HALF * (1.0f - th * th) *
                                                      TG_GELU_SCALE *
                                                      (1.0f + 3.0f * TG_GELU_COEF_BWD * x * x);
        dinp[i] += local * dout[i];
    }
}

TG_API void tg_gelu_backward(float *dinp, const float *inp, const float *dout, int32_t N) {
    if (N <= 0) return;
    gelu_job job = {dinp, inp, dout};
    tg_parallel_range((size_t)N, TG_GELU_WORK * N, gelu_backward_range, &job);
}

TG_API void tg_residual_forward(float *out, const float *a, const float *b, int32_t N) {
    for (int32_t i = 0; i < N; i++) out[i] = a[i] + b[i];
}

TG_API void tg_residual_backward(float *da, float *db, const float *dout, int32_t N) {
    for (int32_t i = 0; i < N; i++) {
        da[i] += dout[i];
        db[i] += dout[i];
    }
}

TG_API float tg_crossentropy_forward(float *losses, float *probs, const float *logits,
                                     const int32_t *targets, int32_t N, int32_t V) {
#ifdef TG_BUG_CE_FLOAT_MEAN
    float total = 0.0f; /* precision shortcut: the mean loss summed in float */
#else
    double total = 0.0;
#endif
    for (int32_t n = 0; n < N; n++) {
        const float *restrict z = logits + (size_t)n * V;
        float *restrict p = probs + (size_t)n * V;
#ifdef TG_BUG_SOFTMAX_NOMAX
        float maxv = 0.0f;
#else
        float maxv = tg_max(z, V);
#endif
        float sum = tg_exp_shifted(p, z, V, maxv);
        float inv = 1.0f / sum;
        for (int32_t i = 0; i < V; i++) p[i] *= inv;
        /* log-sum-exp form of -log p[target]: stays finite when p[target] underflows to 0 */
        float loss = tg_logf(sum) - (z[targets[n]] - maxv);
        losses[n] = loss;
        total += (double)loss;
    }
    return N > 0 ? (float)(total / (double)N) : 0.0f;
}

TG_API void tg_crossentropy_backward(float *dlogits, const float *probs, const int32_t *targets,
                                     float dloss, int32_t N, int32_t V) {
    for (int32_t n = 0; n < N; n++) {
        float *restrict d = dlogits + (size_t)n * V;
        const float *restrict p = probs + (size_t)n * V;
        int32_t t = targets[n];
        for (int32_t i = 0; i < V; i++) d[i] += (p[i] - (i == t ? TG_ONE : 0.0f)) * dloss;
    }
}

TG_API void tg_adamw_update(float *params, const float *grads, float *m, float *v, size_t n,
                            float lr, float beta1, float beta2, float eps, float weight_decay,
                            int32_t t) {
    /* beta^t in double by repeated squaring: exact enough for any step count */
    double p1 = 1.0, p2 = 1.0, b1 = beta1, b2 = beta2;
    for (int32_t e = t; e > 0; e >>= 1) {
        if (e & 1) {
            p1 *= b1;
            p2 *= b2;
        }
        b1 *= b1;
        b2 *= b2;
    }
    float c1 = (float)(1.0 / (1.0 - p1));
    float c2 = (float)(1.0 / (1.0 - p2));
    for (size_t i = 0; i < n; i++) {
        float g = grads[i];
        float mi = beta1 * m[i] + (TG_ONE - beta1) * g;
        float vi = beta2 * v[i] + (TG_ONE - beta2) * g * g;
        m[i] = mi;
        v[i] = vi;
        float mh = mi * c1;
        float vh = vi * c2;
#ifdef TG_BUG_EPS_IN_SQRT
        params[i] -= lr * (mh / __builtin_sqrtf(vh + eps) + weight_decay * params[i]);
#else
        params[i] -= lr * (mh / (__builtin_sqrtf(vh) + eps) + weight_decay * params[i]);
#endif
    }
}
