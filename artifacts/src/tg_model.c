/*
 * tg_model.c -- the GPT model: flat parameters, forward/backward over the ops, AdamW with
 * clipping, and generation with and without a KV cache.
 *
 * Same structure as reference/model.py (and llm.c): pre-LN blocks, tied LM head, no dropout.
 * Invalid arguments never read out of bounds: forward returns NaN, generate returns 0.
 */
#include "tg_internal.h"

#define NUM_TENSORS 16

typedef struct {
    float *encoded;                /* (N,C) */
    float *ln1, *ln1_mean, *ln1_rstd; /* (L,N,C), (L,N), (L,N) */
    float *qkv;                    /* (L,N,3C) */
    float *atty;                   /* (L,N,C) */
    float *att;                    /* (L,B,NH,T,T) */
    float *res2;                   /* (L,N,C) residual after attention */
    float *ln2, *ln2_mean, *ln2_rstd;
    float *fch, *fch_gelu;         /* (L,N,4C) */
    float *res3;                   /* (L,N,C) block output */
    float *lnf, *lnf_mean, *lnf_rstd;
    float *logits, *probs, *losses; /* (N,V), (N,V), (N) */
    float *dlogits;                 /* (N,V): separate, so tg_model_logits stays valid */
    /* scratch shared by layers (forward and backward) */
    float *preatt, *dpreatt, *datt; /* (B,NH,T,T) */
    float *tmp;                     /* (N,C) */
    float *dres, *dmid, *dln, *datty; /* (N,C) */
    float *dqkv;                    /* (N,3C) */
    float *dfch, *dfch_gelu;        /* (N,4C) */
    int32_t *idx, *targets;         /* (N) copies for backward */
} acts_t;

typedef struct {
    float *k, *v;          /* (L, maxT, C) keys and values of the current window */
    float *x, *ln, *tmp, *atty; /* (maxT, C) */
    float *qkv;            /* (maxT, 3C) */
    float *fch;            /* (maxT, 4C) */
    float *mean, *rstd;    /* (maxT) */
    float *scores, *probs; /* (maxT): one query's attention scores and their softmax */
    float *logits;         /* (V) */
} kv_t;

typedef struct {
    int32_t V, maxT, C, L, NH;
    size_t num_params;
    size_t sizes[NUM_TENSORS];
    float *params, *grads, *m, *v;
    float *p[NUM_TENSORS]; /* tensor views into params, PARAM_NAMES order */
    float *g[NUM_TENSORS]; /* and into grads */
    int32_t cap_B, cap_T;  /* activations fit any (B,T) with B<=cap_B, T<=cap_T */
    void *acts_block;
    acts_t a;
    int32_t B, T;        /* shape of the last forward */
    int has_targets;     /* the last forward had targets, so backward may run */
    kv_t kv;
    void *kv_block;
} model_t;

enum { WTE, WPE, LN1W, LN1B, QKVW, QKVB, ATTPROJW, ATTPROJB, LN2W, LN2B, FCW, FCB, FCPROJW,
       FCPROJB, LNFW, LNFB };

/* The 2-D weight matrices that take weight decay (reference.model.DECAYED_PARAMS). */
static int decayed(int tensor) {
#ifdef TG_BUG_DECAY_ALL
    (void)tensor;
    return 1; /* fault build: biases and LayerNorm parameters decay too */
#endif
    return tensor == WTE || tensor == WPE || tensor == QKVW || tensor == ATTPROJW ||
           tensor == FCW || tensor == FCPROJW;
}

/* Carve `count` float arrays of the given sizes out of one allocation (16-byte aligned each). */
static void *carve(float **ptrs[], const size_t *sizes, int count) {
    size_t total = 0;
    for (int i = 0; i < count; i++) total += (sizes[i] + 3) & ~(size_t)3;
    float *block = tg_alloc(total * sizeof(float));
    if (!block) return 0;
    tg_zero(block, total);
    float *at = block;
    for (int i = 0; i < count; i++) {
        *ptrs[i] = at;
        at += (sizes[i] + 3) & ~(size_t)3;
    }
    return block;
}

TG_API void *tg_model_create(int32_t V, int32_t maxT, int32_t C, int32_t L, int32_t NH) {
    if (V <= 0 || maxT <= 0 || C <= 0 || L <= 0 || NH <= 0 || C % NH != 0) return 0;
    if (C > (1 << 16) || V > (1 << 24) || maxT > (1 << 16) || L > 1024) return 0;
    model_t *m = tg_alloc(sizeof(model_t));
    if (!m) return 0;
    tg_zero_bytes(m, sizeof(model_t));
    m->V = V;
    m->maxT = maxT;
    m->C = C;
    m->L = L;
    m->NH = NH;
    size_t c = (size_t)C, l = (size_t)L;
    size_t sizes[NUM_TENSORS] = {
        (size_t)V * c, (size_t)maxT * c, l * c, l * c, l * 3 * c * c, l * 3 * c, l * c * c, l * c,
        l * c, l * c, l * 4 * c * c, l * 4 * c, l * c * 4 * c, l * c, c, c};
    size_t n = 0;
    for (int i = 0; i < NUM_TENSORS; i++) {
        m->sizes[i] = sizes[i];
        n += sizes[i];
    }
    m->num_params = n;
    m->params = tg_alloc(4 * n * sizeof(float));
    if (!m->params) {
        tg_free(m);
        return 0;
    }
#ifdef TG_BUG_MV_NOT_ZEROED
    tg_zero(m->params, 2 * n); /* fault: AdamW moments left as the allocator hands them out */
#else
    tg_zero(m->params, 4 * n);
#endif
    m->grads = m->params + n;
    m->m = m->grads + n;
    m->v = m->m + n;
    size_t off = 0;
    for (int i = 0; i < NUM_TENSORS; i++) {
        m->p[i] = m->params + off;
        m->g[i] = m->grads + off;
        off += sizes[i];
    }
    return m;
}

TG_API void tg_model_free(void *h) {
    model_t *m = h;
    if (!m) return;
    tg_free(m->acts_block);
    tg_free(m->kv_block);
    tg_free(m->params);
    tg_free(m);
}

TG_API size_t tg_model_num_params(void *h) { return h ? ((model_t *)h)->num_params : 0; }
TG_API float *tg_model_params(void *h) { return h ? ((model_t *)h)->params : 0; }
TG_API float *tg_model_grads(void *h) { return h ? ((model_t *)h)->grads : 0; }
TG_API float *tg_model_logits(void *h) { return h ? ((model_t *)h)->a.logits : 0; }

/* Make the activations fit (B,T); returns 0 when out of memory. */
static int ensure_acts(model_t *m, int32_t B, int32_t T) {
#ifdef TG_BUG_ACTS_CAP_TOKENS
    /* fault: capacity tracked in tokens, but att/preatt grow with B*T*T */
    if (m->acts_block && (size_t)B * T <= (size_t)m->cap_B * m->cap_T) return 1;
#else
    if (m->acts_block && B <= m->cap_B && T <= m->cap_T) return 1;
#endif
    int32_t nb = B > m->cap_B ? B : m->cap_B;
    int32_t nt = T > m->cap_T ? T : m->cap_T;
    tg_free(m->acts_block);
    m->acts_block = 0;
    m->cap_B = m->cap_T = 0;
    size_t N = (size_t)nb * nt, C = (size_t)m->C, L = (size_t)m->L, V = (size_t)m->V;
    size_t TT = (size_t)nb * m->NH * nt * nt;
    acts_t *a = &m->a;
    float **ptrs[] = {&a->encoded, &a->ln1, &a->ln1_mean, &a->ln1_rstd, &a->qkv, &a->atty,
                      &a->att, &a->res2, &a->ln2, &a->ln2_mean, &a->ln2_rstd, &a->fch,
                      &a->fch_gelu, &a->res3, &a->lnf, &a->lnf_mean, &a->lnf_rstd, &a->logits,
                      &a->probs, &a->losses, &a->dlogits, &a->preatt, &a->dpreatt, &a->datt, &a->tmp,
                      &a->dres, &a->dmid, &a->dln, &a->datty, &a->dqkv, &a->dfch,
                      &a->dfch_gelu, (float **)&a->idx, (float **)&a->targets};
    size_t sizes[] = {N * C, L * N * C, L * N, L * N, L * N * 3 * C, L * N * C,
                      L * TT, L * N * C, L * N * C, L * N, L * N, L * N * 4 * C,
                      L * N * 4 * C, L * N * C, N * C, N, N, N * V,
                      N * V, N, N * V, TT, TT, TT, N * C,
                      N * C, N * C, N * C, N * C, N * 3 * C, N * 4 * C,
                      N * 4 * C, N, N};
    _Static_assert(sizeof(int32_t) == sizeof(float), "token ids share float-sized slots");
    m->acts_block = carve(ptrs, sizes, (int)(sizeof(sizes) / sizeof(sizes[0])));
    if (!m->acts_block) return 0;
    m->cap_B = nb;
    m->cap_T = nt;
    return 1;
}

static int tokens_ok(const model_t *m, const int32_t *tok, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (tok[i] < 0 || tok[i] >= m->V) return 0;
    }
    return 1;
}

/* Forward over (B,T) into the activations; the logits end in a.logits. */
static void forward_acts(model_t *m, int32_t B, int32_t T) {
    acts_t *a = &m->a;
    int32_t C = m->C, NH = m->NH, N = B * T;
    size_t NC = (size_t)N * C, TT = (size_t)B * NH * T * T;
    float *const *p = m->p;
    tg_embedding_forward(a->encoded, a->idx, p[WTE], p[WPE], B, T, C);
    for (int32_t l = 0; l < m->L; l++) {
        const float *x_in = l == 0 ? a->encoded : a->res3 + (size_t)(l - 1) * NC;
        float *ln1 = a->ln1 + l * NC, *qkv = a->qkv + l * NC * 3, *atty = a->atty + l * NC;
        float *res2 = a->res2 + l * NC, *ln2 = a->ln2 + l * NC, *res3 = a->res3 + l * NC;
        float *fch = a->fch + l * NC * 4, *fch_gelu = a->fch_gelu + l * NC * 4;
        size_t c = (size_t)C;
        tg_layernorm_forward(ln1, a->ln1_mean + (size_t)l * N, a->ln1_rstd + (size_t)l * N, x_in,
                             p[LN1W] + l * c, p[LN1B] + l * c, N, C);
        tg_matmul_forward(qkv, ln1, p[QKVW] + l * 3 * c * c, p[QKVB] + l * 3 * c, N, C, 3 * C);
        tg_attention_forward(atty, a->preatt, a->att + l * TT, qkv, B, T, C, NH);
        tg_matmul_forward(a->tmp, atty, p[ATTPROJW] + l * c * c, p[ATTPROJB] + l * c, N, C, C);
        tg_residual_forward(res2, x_in, a->tmp, N * C);
        tg_layernorm_forward(ln2, a->ln2_mean + (size_t)l * N, a->ln2_rstd + (size_t)l * N, res2,
                             p[LN2W] + l * c, p[LN2B] + l * c, N, C);
        tg_matmul_forward(fch, ln2, p[FCW] + l * 4 * c * c, p[FCB] + l * 4 * c, N, C, 4 * C);
        tg_gelu_forward(fch_gelu, fch, N * 4 * C);
        tg_matmul_forward(a->tmp, fch_gelu, p[FCPROJW] + l * 4 * c * c, p[FCPROJB] + l * c, N,
                          4 * C, C);
        tg_residual_forward(res3, res2, a->tmp, N * C);
    }
    const float *x_final = a->res3 + (size_t)(m->L - 1) * NC;
    tg_layernorm_forward(a->lnf, a->lnf_mean, a->lnf_rstd, x_final, p[LNFW], p[LNFB], N, C);
    tg_matmul_forward(a->logits, a->lnf, p[WTE], 0, N, C, m->V);
}

TG_API float tg_model_forward(void *h, const int32_t *idx, const int32_t *targets, int32_t B,
                              int32_t T) {
    model_t *m = h;
    if (!m || !idx || B < 1 || T < 1 || T > m->maxT || B > (1 << 20)) return __builtin_nanf("");
    size_t N = (size_t)B * T;
    if (!tokens_ok(m, idx, N) || (targets && !tokens_ok(m, targets, N))) return __builtin_nanf("");
    m->has_targets = 0;
    if (!ensure_acts(m, B, T)) return __builtin_nanf("");
    acts_t *a = &m->a;
    for (size_t i = 0; i < N; i++) a->idx[i] = idx[i];
    m->B = B;
    m->T = T;
    forward_acts(m, B, T);
    if (!targets) return -1.0f;
    for (size_t i = 0; i < N; i++) a->targets[i] = targets[i];
    m->has_targets = 1;
    return tg_crossentropy_forward(a->losses, a->probs, a->logits, a->targets, (int32_t)N, m->V);
}

TG_API void tg_model_zero_grad(void *h) {
    model_t *m = h;
    if (m) tg_zero(m->grads, m->num_params);
}

TG_API void tg_model_backward(void *h) {
    model_t *m = h;
    if (!m || !m->has_targets) return;
    acts_t *a = &m->a;
    int32_t B = m->B, T = m->T, C = m->C, NH = m->NH, V = m->V, N = B * T;
    size_t NC = (size_t)N * C, TT = (size_t)B * NH * T * T, c = (size_t)C;
    float *const *p = m->p;
    float *const *g = m->g;
    float *dlogits = a->dlogits;
    tg_zero(dlogits, (size_t)N * V);
#ifdef TG_BUG_STALE_N
    /* fault: the mean's count from the activations' capacity, not this batch's shape */
    tg_crossentropy_backward(dlogits, a->probs, a->targets, 1.0f / (float)(m->cap_B * m->cap_T), N, V);
#else
    tg_crossentropy_backward(dlogits, a->probs, a->targets, 1.0f / (float)N, N, V);
#endif
    tg_zero(a->dln, NC);
    tg_matmul_backward(a->dln, g[WTE], 0, dlogits, a->lnf, p[WTE], N, C, V);
    tg_zero(a->dres, NC);
    const float *x_final = a->res3 + (size_t)(m->L - 1) * NC;
    tg_layernorm_backward(a->dres, g[LNFW], g[LNFB], a->dln, x_final, p[LNFW], a->lnf_mean,
                          a->lnf_rstd, N, C);
    for (int32_t l = m->L - 1; l >= 0; l--) {
        const float *x_in = l == 0 ? a->encoded : a->res3 + (size_t)(l - 1) * NC;
        /* dres holds d(block output); it flows unchanged into the mid residual and fcproj */
        tg_copy(a->dmid, a->dres, NC);
        tg_zero(a->dfch_gelu, NC * 4);
        tg_matmul_backward(a->dfch_gelu, g[FCPROJW] + l * 4 * c * c, g[FCPROJB] + l * c, a->dres,
                           a->fch_gelu + l * NC * 4, p[FCPROJW] + l * 4 * c * c, N, 4 * C, C);
        tg_zero(a->dfch, NC * 4);
        tg_gelu_backward(a->dfch, a->fch + l * NC * 4, a->dfch_gelu, N * 4 * C);
        tg_zero(a->dln, NC);
        tg_matmul_backward(a->dln, g[FCW] + l * 4 * c * c, g[FCB] + l * 4 * c, a->dfch,
                           a->ln2 + l * NC, p[FCW] + l * 4 * c * c, N, C, 4 * C);
        tg_layernorm_backward(a->dmid, g[LN2W] + l * c, g[LN2B] + l * c, a->dln, a->res2 + l * NC,
                              p[LN2W] + l * c, a->ln2_mean + (size_t)l * N,
                              a->ln2_rstd + (size_t)l * N, N, C);
        /* dmid now holds d(mid residual); it flows into the block input and attproj */
        tg_copy(a->dres, a->dmid, NC);
        tg_zero(a->datty, NC);
        tg_matmul_backward(a->datty, g[ATTPROJW] + l * c * c, g[ATTPROJB] + l * c, a->dmid,
                           a->atty + l * NC, p[ATTPROJW] + l * c * c, N, C, C);
        tg_zero(a->dqkv, NC * 3);
        tg_zero(a->dpreatt, TT);
        tg_zero(a->datt, TT);
        tg_attention_backward(a->dqkv, a->dpreatt, a->datt, a->datty, a->qkv + l * NC * 3,
                              a->att + l * TT, B, T, C, NH);
        tg_zero(a->dln, NC);
        tg_matmul_backward(a->dln, g[QKVW] + l * 3 * c * c, g[QKVB] + l * 3 * c, a->dqkv,
                           a->ln1 + l * NC, p[QKVW] + l * 3 * c * c, N, C, 3 * C);
        tg_layernorm_backward(a->dres, g[LN1W] + l * c, g[LN1B] + l * c, a->dln, x_in,
                              p[LN1W] + l * c, a->ln1_mean + (size_t)l * N,
                              a->ln1_rstd + (size_t)l * N, N, C);
    }
    tg_embedding_backward(g[WTE], g[WPE], a->dres, a->idx, B, T, C);
}

/* Sum of squared gradients in double, over TG_LANES interleaved partial sums (a sequential sum
 * would wait one add latency per parameter; see tg_math.h). */
static double grad_sq_sum(const model_t *m) {
    const float *restrict g = m->grads;
    size_t n = m->num_params, i = 0;
    double acc[TG_LANES] = {0};
    for (; i + TG_LANES <= n; i += TG_LANES) {
        for (int l = 0; l < TG_LANES; l++) acc[l] += (double)g[i + l] * (double)g[i + l];
    }
    for (int l = 0; l < TG_LANES - 1 && i + l < n; l++) {
        acc[l] += (double)g[i + l] * (double)g[i + l];
    }
    for (int w = TG_LANES / 2; w > 0; w /= 2) {
        for (int l = 0; l < w; l++) acc[l] += acc[l + w];
    }
    return acc[0];
}

TG_API float tg_model_grad_norm(void *h) {
    model_t *m = h;
    return m ? (float)__builtin_sqrt(grad_sq_sum(m)) : 0.0f;
}

TG_API void tg_model_adamw(void *h, float lr, float beta1, float beta2, float eps,
                           float weight_decay, float grad_clip, int32_t t) {
    model_t *m = h;
    if (!m || t < 1) return;
#ifdef TG_BUG_MODEL_ADAMW_T1
    t = t + 1; /* fault: the step counter bumped before its use */
#endif
    if (grad_clip > 0.0f) {
#ifdef TG_BUG_CLIP_NO_SQRT
        double norm = grad_sq_sum(m); /* fault: squared norm compared with the clip */
#else
        double norm = __builtin_sqrt(grad_sq_sum(m));
#endif
        if (norm > (double)grad_clip) {
            float scale = (float)((double)grad_clip / norm);
            for (size_t i = 0; i < m->num_params; i++) m->grads[i] *= scale;
        }
    }
    size_t off = 0;
    for (int i = 0; i < NUM_TENSORS; i++) {
        tg_adamw_update(m->params + off, m->grads + off, m->m + off, m->v + off, m->sizes[i], lr,
                        beta1, beta2, eps, decayed(i) ? weight_decay : 0.0f, t);
        off += m->sizes[i];
    }
}

TG_API float tg_model_train_step(void *h, const int32_t *idx, const int32_t *targets, int32_t B,
                                 int32_t T, float lr, float beta1, float beta2, float eps,
                                 float weight_decay, float grad_clip, int32_t t) {
    if (!targets) return __builtin_nanf("");
    float loss = tg_model_forward(h, idx, targets, B, T);
    if (loss != loss) return loss;
#ifndef TG_BUG_TRAIN_NO_ZERO /* fault: gradients accumulate across train steps */
    tg_model_zero_grad(h);
#endif
    tg_model_backward(h);
    tg_model_adamw(h, lr, beta1, beta2, eps, weight_decay, grad_clip, t);
    return loss;
}

/* ---- generation ------------------------------------------------------------------------- */

static int ensure_kv(model_t *m) {
    if (m->kv_block) return 1;
    kv_t *k = &m->kv;
    size_t T = (size_t)m->maxT, C = (size_t)m->C, L = (size_t)m->L;
    float **ptrs[] = {&k->k, &k->v, &k->x, &k->ln, &k->tmp, &k->atty, &k->qkv, &k->fch,
                      &k->mean, &k->rstd, &k->scores, &k->probs, &k->logits};
    size_t sizes[] = {L * T * C, L * T * C, T * C, T * C, T * C, T * C, T * 3 * C, T * 4 * C,
                      T, T, T, T, (size_t)m->V};
    m->kv_block = carve(ptrs, sizes, (int)(sizeof(sizes) / sizeof(sizes[0])));
    return m->kv_block != 0;
}

/* Run n tokens at positions pos0.. through the model, appending their K/V to the cache (which
 * must already hold positions 0..pos0-1); leaves the last token's logits in kv.logits. The
 * attention runs tg_attention_forward's own row primitives (tg_dot, tg_softmax_row,
 * tg_rows_axpy) in the same order, so both generation paths compute bit-identical rows. */
static void kv_forward(model_t *m, const int32_t *tokens, int32_t n, int32_t pos0) {
    kv_t *k = &m->kv;
    float *const *p = m->p;
    int32_t C = m->C, NH = m->NH, hs = C / NH, C3 = 3 * C;
    size_t c = (size_t)C, cacheL = (size_t)m->maxT * c;
#ifdef TG_BUG_ATTN_SCALE_D
    float scale = 1.0f / (float)hs;
#else
    float scale = 1.0f / __builtin_sqrtf((float)hs);
#endif
    for (int32_t i = 0; i < n; i++) {
        const float *e = p[WTE] + (size_t)tokens[i] * c;
        const float *pe = p[WPE] + (size_t)(pos0 + i) * c;
        for (int32_t j = 0; j < C; j++) k->x[i * c + j] = e[j] + pe[j];
    }
    for (int32_t l = 0; l < m->L; l++) {
        float *kc = k->k + l * cacheL, *vc = k->v + l * cacheL;
        tg_layernorm_forward(k->ln, k->mean, k->rstd, k->x, p[LN1W] + l * c, p[LN1B] + l * c, n,
                             C);
        tg_matmul_forward(k->qkv, k->ln, p[QKVW] + l * 3 * c * c, p[QKVB] + l * 3 * c, n, C, C3);
        for (int32_t i = 0; i < n; i++) {
            tg_copy(kc + (size_t)(pos0 + i) * c, k->qkv + i * 3 * c + c, c);
            tg_copy(vc + (size_t)(pos0 + i) * c, k->qkv + i * 3 * c + 2 * c, c);
        }
        for (int32_t i = 0; i < n; i++) {
            int32_t last = pos0 + i; /* query at this position sees keys 0..last */
            for (int32_t h = 0; h < NH; h++) {
                const float *q = k->qkv + i * 3 * c + h * hs;
                for (int32_t t2 = 0; t2 <= last; t2++) {
                    k->scores[t2] = tg_dot(q, kc + (size_t)t2 * c + h * hs, hs) * scale;
                }
                tg_softmax_row(k->probs, k->scores, last + 1);
                float *o = k->atty + i * c + h * hs;
                for (int32_t j = 0; j < hs; j++) o[j] = 0.0f;
                tg_rows_axpy(o, k->probs, 1, 1.0f, vc + h * hs, (ptrdiff_t)c, last + 1, hs);
            }
        }
        tg_matmul_forward(k->tmp, k->atty, p[ATTPROJW] + l * c * c, p[ATTPROJB] + l * c, n, C, C);
        tg_residual_forward(k->x, k->x, k->tmp, n * C);
        tg_layernorm_forward(k->ln, k->mean, k->rstd, k->x, p[LN2W] + l * c, p[LN2B] + l * c, n,
                             C);
        tg_matmul_forward(k->fch, k->ln, p[FCW] + l * 4 * c * c, p[FCB] + l * 4 * c, n, C, 4 * C);
        tg_gelu_forward(k->fch, k->fch, n * 4 * C);
        tg_matmul_forward(k->tmp, k->fch, p[FCPROJW] + l * 4 * c * c, p[FCPROJB] + l * c, n,
                          4 * C, C);
        tg_residual_forward(k->x, k->x, k->tmp, n * C);
    }
    const float *x_last = k->x + (size_t)(n - 1) * c;
    tg_layernorm_forward(k->ln, k->mean, k->rstd, x_last, p[LNFW], p[LNFB], 1, C);
    tg_matmul_forward(k->logits, k->ln, p[WTE], 0, 1, C, m->V);
}

/* xorshift64* seeded through splitmix64, so nearby seeds give unrelated streams */
static uint64_t rng_seed(uint32_t seed) {
#ifdef TG_BUG_SEED_SIGNEXT
    uint64_t z = (uint64_t)(int64_t)(int32_t)seed + 0x9E3779B97F4A7C15ULL; /* fault: sign-extended */
#else
    uint64_t z = (uint64_t)seed + 0x9E3779B97F4A7C15ULL;
#endif
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    return z ? z : 0x9E3779B97F4A7C15ULL;
}

static double rng_uniform(uint64_t *s) {
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return (double)((x * 0x2545F4914F6CDD1DULL) >> 11) * (1.0 / 9007199254740992.0);
}

/* True if (la, ia) comes before (lb, ib) in the top-k order: logit descending, index ascending. */
static int topk_before(float la, int32_t ia, float lb, int32_t ib) {
#ifdef TG_BUG_TOPK_TIE
    return la > lb || (la == lb && ia > ib); /* fault: index descending on ties */
#else
    return la > lb || (la == lb && ia < ib);
#endif
}

/* The k-th (logit, index) pair in the top-k order, by insertion into `best` (k pairs of scratch);
 * token i is kept iff it does not come after that pair. */
static void topk_threshold(const float *logits, int32_t V, int32_t k, float *best_v,
                           int32_t *best_i, float *thr_v, int32_t *thr_i) {
    int32_t n = 0;
    for (int32_t i = 0; i < V; i++) {
        float l = logits[i];
        if (n == k && !topk_before(l, i, best_v[k - 1], best_i[k - 1])) continue;
        int32_t j = n < k ? n++ : k - 1;
        while (j > 0 && topk_before(l, i, best_v[j - 1], best_i[j - 1])) {
            best_v[j] = best_v[j - 1];
            best_i[j] = best_i[j - 1];
            j--;
        }
        best_v[j] = l;
        best_i[j] = i;
    }
    *thr_v = best_v[k - 1];
    *thr_i = best_i[k - 1];
}

/* The sampler of tinygpt.h: greedy argmax (lowest index on ties) at temperature 0, else one
 * inverse-CDF draw from softmax(logits / temperature) over the top_k kept tokens (k == 0 or
 * k >= V keeps all). best_v/best_i are k entries of scratch. */
static int32_t pick(const float *logits, int32_t V, float temperature, int32_t top_k,
                    float *best_v, int32_t *best_i, uint64_t *rng) {
    if (temperature == 0.0f) {
        int32_t best = 0;
        for (int32_t i = 1; i < V; i++) {
#ifdef TG_BUG_GREEDY_TIE
            if (logits[i] >= logits[best]) best = i; /* fault: last index wins a tie */
#else
            if (logits[i] > logits[best]) best = i;
#endif
        }
        return best;
    }
#ifdef TG_BUG_SAMPLER_TEMPERATURE
    temperature = 1.0f; /* fault build: the sampler ignores its temperature */
#endif
    int keep_all = top_k == 0 || top_k >= V;
#ifdef TG_BUG_SAMPLER_TOPK
    keep_all = 1; /* fault build: the sampler ignores top_k */
#endif
    float thr_v = 0.0f;
    int32_t thr_i = V;
    if (!keep_all) topk_threshold(logits, V, top_k, best_v, best_i, &thr_v, &thr_i);
#define TG_KEPT(i) (keep_all || !topk_before(thr_v, thr_i, logits[i], (i)))
    double t = (double)temperature;
    double maxz = -__builtin_inf();
    for (int32_t i = 0; i < V; i++) {
        double z = (double)logits[i] / t;
        if (TG_KEPT(i) && z > maxz) maxz = z;
    }
#ifdef TG_BUG_SAMPLER_FLOAT_CDF
    float total = 0.0f; /* fault: the CDF summed in float */
#else
    double total = 0.0;
#endif
    for (int32_t i = 0; i < V; i++) {
        if (TG_KEPT(i)) total += tg_exp((double)logits[i] / t - maxz);
    }
    double u = rng_uniform(rng) * total;
#ifdef TG_BUG_SAMPLER_FLOAT_CDF
    float cdf = 0.0f;
#else
    double cdf = 0.0;
#endif
    int32_t last = 0;
    for (int32_t i = 0; i < V; i++) {
        if (!TG_KEPT(i)) continue;
        cdf += tg_exp((double)logits[i] / t - maxz);
        last = i;
        if (cdf > u) return i;
    }
#undef TG_KEPT
    return last;
}

TG_API int32_t tg_model_generate(void *h, const int32_t *prompt, int32_t len, int32_t n_new,
                                 int32_t *out, float *logits_out, int32_t use_kv_cache,
                                 float temperature, int32_t top_k, uint32_t seed) {
    model_t *m = h;
    if (!m || !prompt || !out || len < 1 || n_new < 0 || !(temperature >= 0.0f)) return 0;
    if (temperature > 3.4028234663852886e38f || top_k < 0) return 0; /* +inf, or a bad k */
    if (!tokens_ok(m, prompt, (size_t)len) || n_new == 0) return 0;
#ifdef TG_BUG_TOPK_VM1
    int32_t k = top_k < m->V - 1 ? top_k : 0; /* fault: k = V-1 treated as keep-all */
#else
    int32_t k = top_k < m->V ? top_k : 0;
#endif
    /* the sequence, then k (logit, index) pairs of top-k scratch */
    size_t n_seq = (size_t)len + (size_t)n_new;
    int32_t *seq = tg_alloc((n_seq + 2 * (size_t)k) * sizeof(int32_t));
    if (!seq) return 0;
    float *best_v = (float *)(seq + n_seq);
    int32_t *best_i = seq + n_seq + k;
    for (int32_t i = 0; i < len; i++) seq[i] = prompt[i];
    int32_t maxT = m->maxT;
    if (use_kv_cache ? !ensure_kv(m) : !ensure_acts(m, 1, len < maxT ? len : maxT)) {
        tg_free(seq);
        return 0;
    }
    uint64_t rng = rng_seed(seed);
    int32_t cache_start = -1, cache_len = 0, written = 0;
    m->has_targets = 0; /* generation overwrites the activations a backward would need */
    for (int32_t step = 0; step < n_new; step++) {
        int32_t n = len + step;
#ifdef TG_BUG_NOKV_WINDOW
        int32_t start = n > maxT ? (use_kv_cache ? n - maxT : n - maxT + 1) : 0;
#else
        int32_t start = n > maxT ? n - maxT : 0;
#endif
        int32_t wlen = n - start;
        const float *logits;
        if (!use_kv_cache) {
            if (!ensure_acts(m, 1, wlen)) break;
            for (int32_t i = 0; i < wlen; i++) m->a.idx[i] = seq[start + i];
            m->B = 1;
            m->T = wlen;
            forward_acts(m, 1, wlen);
            logits = m->a.logits + (size_t)(wlen - 1) * m->V;
#ifdef TG_BUG_KV_ROLL
        } else if (start != cache_start && cache_start >= 0 && start == cache_start + 1) {
            /* fault: a rolling cache: drop the oldest K/V, keep the rest as computed at their
             * old positions, append the new token at the last position */
            size_t c = (size_t)m->C, cacheL = (size_t)maxT * c;
            for (int32_t l = 0; l < m->L; l++) {
                float *kc = m->kv.k + l * cacheL, *vc = m->kv.v + l * cacheL;
                for (size_t i = 0; i + c < (size_t)maxT * c; i++) {
                    kc[i] = kc[i + c];
                    vc[i] = vc[i + c];
                }
            }
            kv_forward(m, seq + n - 1, 1, maxT - 1);
            cache_start = start;
            logits = m->kv.logits;
#endif
        } else if (start != cache_start) {
            /* the window moved: every position shifts, so rebuild the cache over it */
            kv_forward(m, seq + start, wlen, 0);
            cache_start = start;
            cache_len = wlen;
            logits = m->kv.logits;
        } else {
#ifdef TG_BUG_KV_POSITION
            /* fault build: the new token's K/V and position embedding land one slot early */
            kv_forward(m, seq + n - 1, 1, cache_len - 1);
#else
            kv_forward(m, seq + n - 1, 1, cache_len);
#endif
            cache_len += 1;
            logits = m->kv.logits;
        }
        if (logits_out) tg_copy(logits_out + (size_t)step * m->V, logits, (size_t)m->V);
        int32_t token = pick(logits, m->V, temperature, k, best_v, best_i, &rng);
        seq[n] = token;
        out[step] = token;
        written++;
    }
#ifdef TG_BUG_GENERATE_TERMINATOR
    /* fault build: the token array is terminated like a C string, one int past its end */
    out[written] = -1;
#endif
    tg_free(seq);
    return written;
}
