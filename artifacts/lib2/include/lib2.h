/*
 * lib2.h -- a second, independent GPT kernel library with its own C ABI ("lib2").
 *
 * It stands for the style of real browser kernel projects, so on purpose it does NOT follow
 * artifacts/include/tinygpt.h: other argument orders, Linear weights stored [in, out], separate
 * biased q/k/v/o projections, some backward passes that overwrite instead of accumulate, and a
 * model-level API whose AdamW constants are literals in the source (not reported by the binary).
 * docs/lib2.md maps every export onto the harness's canonical ops and the reference model.
 *
 * Conventions
 *   - Every tensor is float32, row-major, contiguous. `int` is 32-bit, pointers are 32-bit on
 *     wasm32 and 64-bit on native and Memory64 (a JS caller of a MEMORY64 build passes BigInt).
 *   - A Linear is y = x @ W + b with W stored [in, out] (the transpose of PyTorch's layout).
 *   - Token ids are bytes (unsigned char); the vocabulary is exactly 256.
 *   - LayerNorm: biased variance (divide by D), y = (x - mean) * rstd * gamma + beta,
 *     rstd = 1 / sqrt(var + eps).
 *   - GELU is the tanh form: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
 *   - Attention is causal multi-head self-attention, scale 1/sqrt(C/H); head h owns channels
 *     [h*C/H, (h+1)*C/H) of q, k, v and of the merged output.
 *
 * Model architecture (GPT-2 style, pre-LayerNorm, no dropout)
 *   x = wte[tok] + wpe[pos]
 *   per layer:  x = x + Attn(LN1(x));  x = x + MLP(LN2(x)),  MLP(h) = gelu(h W1 + b1) W2 + b2
 *   logits = LNf(x) @ wte^T          -- the LM head is TIED to wte and has no bias
 *   Attn(h) = softmax_causal((h Wq + bq)(h Wk + bk)^T / sqrt(C/H)) (h Wv + bv), heads merged,
 *             then @ Wo + bo.
 *   LayerNorm eps is 1e-5 inside the model.
 *
 * Parameter layout (one flat float32 buffer, this order, LAYER-MAJOR), C = d_model, F = d_mlp:
 *   wte (256, C), wpe (ctx, C),
 *   for each layer l = 0..n_layers-1, contiguous:
 *     ln1_g (C), ln1_b (C), Wq (C, C), bq (C), Wk (C, C), bk (C), Wv (C, C), bv (C),
 *     Wo (C, C), bo (C), ln2_g (C), ln2_b (C), W1 (C, F), b1 (F), W2 (F, C), b2 (C),
 *   lnf_g (C), lnf_b (C).
 *   num_params = 256 C + ctx C + L (4 C^2 + 2 C F + 9 C + F) + 2 C.
 *
 * Initialisation (tg_model_create): one RNG stream R = rng(seed) (below). For every tensor in
 * layout order: W matrices (wte, wpe, Wq, Wk, Wv, Wo, W1, W2) get normal(0, 0.02) draws in
 * row-major order, Wo and W2 use 0.02 / sqrt(2 n_layers); LayerNorm gammas are 1; biases and
 * betas are 0 and take no draws. One normal takes two uniforms u1, u2 (in that order):
 *   z = sqrt(-2 ln(1 - u1)) cos(2 pi u2)   (double), value = (float)(std * z).
 *
 * RNG used everywhere, rng(s) (the same generator as tinygpt.h's sampler, reference/sampler.py
 * SamplerRNG): state = splitmix64(s) -- z = s + 0x9E3779B97F4A7C15; z = (z ^ z>>30) *
 * 0xBF58476D1CE4E5B9; z = (z ^ z>>27) * 0x94D049BB133111EB; z ^= z>>31; state = z, or
 * 0x9E3779B97F4A7C15 if z == 0 (mod 2^64); each uniform steps xorshift64* (x ^= x>>12;
 * x ^= x<<25; x ^= x>>27; state = x) and is ((x * 0x2545F4914F6CDD1D) >> 11) * 2^-53.
 *
 * Data and batches
 *   tg_set_data copies the bytes; the train split is bytes[0 : n_train), the validation split
 *   bytes[n_train : n), n_train = (int)floor((double)train_frac * (double)n) with train_frac the
 *   float32 argument widened (so 0.9f * 1000 gives 899, not 900; clamped to [0, 1]). It (re)seeds the
 *   batch stream D = rng(seed ^ 0xDA7A5EED) and resets the AdamW step counter to 0 (the moments
 *   are NOT cleared).
 *   tg_train_step draws `batch` windows of T = ctx tokens from the train split: for b in order,
 *     u = next uniform of D; start = (int)(u * (double)(n_train - ctx));
 *     x[b] = train[start : start+ctx], y[b] = train[start+1 : start+ctx+1]  (needs n_train > ctx).
 *   One step: forward, mean cross-entropy over batch*ctx positions (the returned loss, before the
 *   update), backward, global L2 gradient norm (squares summed in double), and if
 *   grad_clip > 0 and norm > grad_clip every gradient is multiplied by (float)(grad_clip / norm);
 *   then t += 1 and adamw_step on every tensor with lr as given (no schedule inside), beta1 0.9,
 *   beta2 0.95, eps 1e-8, weight decay 0.1 on the W matrices listed above and 0 elsewhere.
 *   tg_eval(split 0 = train, 1 = validation) is the mean loss over consecutive non-overlapping
 *   windows k = split[k*ctx : k*ctx + ctx] (targets shifted by one), k < min((len-1)/ctx,
 *   batch * n_batches) (n_batches <= 0: all windows), every position weighted equally; no RNG.
 *
 * Generation: B = 1, the window is the last min(ctx, len so far) tokens, recomputed in full for
 * every new token (no KV cache). The sampler is tinygpt.h's, bit for bit, with stream rng(seed):
 * temperature 0 is greedy (argmax, lowest index on ties, no draw); otherwise one uniform u per
 * token, top_k 0 or >= 256 keeps all, else the k first by (logit desc, index asc); in double
 * z_i = logit_i / temperature, w_i = exp(z_i - max kept z), the token is the lowest kept index
 * whose running sum in index order exceeds u * sum(w) (the last kept index if none does).
 *
 * State (tg_export_state / tg_import_state), little-endian, tg_state_bytes(m) bytes:
 *   offset 0: "L2ST" (4 bytes), 4: u32 version = 1, 8: u32 num_params P, 12: u32 step t,
 *   16: u64 batch-stream state, 24: u64 0 (reserved),
 *   32: params (P float32, layout above), 32 + 4P: AdamW m (P float32), 32 + 8P: AdamW v.
 *
 * Errors: a bad argument makes a function return NULL, -1 or -1.0f (a loss is never negative);
 * it never aborts.
 */
#ifndef LIB2_H
#define LIB2_H

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#define L2_API __attribute__((visibility("default"), used))
#else
#define L2_API
#endif

/* ---- memory ----------------------------------------------------------------------------- */

/* n_floats zeroed floats from the C heap (calloc), or NULL when n_floats <= 0 or out of memory. */
L2_API float *tg_malloc(int n_floats);
L2_API void tg_free(float *p);

/* ---- ops -------------------------------------------------------------------------------- */

/* C (M,N) = A (M,K) @ B (K,N). No bias. */
L2_API void matmul_forward(const float *A, const float *B, float *C, int M, int K, int N);
/* dA (M,K) = dC @ B^T and dB (K,N) = A^T @ dC, both OVERWRITTEN. */
L2_API void matmul_backward(const float *A, const float *B, const float *dC, float *dA, float *dB,
                            int M, int K, int N);

/* LayerNorm over the last axis of x (N,D): y (N,D), mean (N), rstd (N) written. */
L2_API void layernorm_forward(const float *x, const float *gamma, const float *beta, float *y,
                              float *mean, float *rstd, int N, int D, float eps);
/* dx (N,D) OVERWRITTEN; dgamma (D) and dbeta (D) ACCUMULATE (+=). */
L2_API void layernorm_backward(const float *x, const float *gamma, const float *mean,
                               const float *rstd, const float *dy, float *dx, float *dgamma,
                               float *dbeta, int N, int D);

/* Causal MHA over x (B,T,C) with separate biased projections, all W (C,C) [in,out], b (C):
 * q = x Wq + bq, k = x Wk + bk, v = x Wv + bv (each (B,T,C), written: the backward's cache),
 * attn (B,H,T,T) = softmax probabilities, exact 0 above the diagonal (written),
 * out (B,T,C) = merge_heads(attn @ v) @ Wo + bo. */
L2_API void attention_forward(const float *x, const float *Wq, const float *bq, const float *Wk,
                              const float *bk, const float *Wv, const float *bv, const float *Wo,
                              const float *bo, float *out, float *q, float *k, float *v,
                              float *attn, int B, int T, int C, int H);
/* Gradients of attention_forward given dout (B,T,C) and the forward's q, k, v, attn.
 * dx (B,T,C) is OVERWRITTEN; dWq, dbq, dWk, dbk, dWv, dbv, dWo, dbo ACCUMULATE (+=). */
L2_API void attention_backward(const float *x, const float *Wq, const float *Wk, const float *Wv,
                               const float *Wo, const float *q, const float *k, const float *v,
                               const float *attn, const float *dout, float *dx, float *dWq,
                               float *dbq, float *dWk, float *dbk, float *dWv, float *dbv,
                               float *dWo, float *dbo, int B, int T, int C, int H);

/* One AdamW step over n floats, in place, at 1-based step t:
 *   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;  mh = m / (1 - b1^t);  vh = v / (1 - b2^t);
 *   p -= lr * (mh / (sqrt(vh) + eps) + wd * p). */
L2_API void adamw_step(float *p, const float *g, float *m, float *v, int n, float lr, float beta1,
                       float beta2, float eps, float wd, int t);

/* ---- model ------------------------------------------------------------------------------ */

/* NULL unless vocab == 256, ctx >= 1, n_layers >= 1, n_heads >= 1, d_model % n_heads == 0,
 * d_mlp >= 1, and the state fits in 2^31 - 1 bytes. */
L2_API void *tg_model_create(int vocab, int ctx, int n_layers, int n_heads, int d_model, int d_mlp,
                             unsigned seed);
L2_API void tg_model_free(void *m);
L2_API int tg_model_num_params(void *m);
/* Does nothing when m is NULL, n < 0, or bytes is NULL with n > 0. */
L2_API void tg_set_data(void *m, const unsigned char *bytes, int n, float train_frac);
/* Loss of the batch before the update, or -1.0f (no data, n_train <= ctx, batch < 1). */
L2_API float tg_train_step(void *m, int batch, float lr, float grad_clip);
/* Mean loss over the split's windows, or -1.0f (bad split, no full window, batch < 1). */
L2_API float tg_eval(void *m, int split, int batch, int n_batches);
/* Writes max_new bytes to out; returns max_new, or -1 (len < 1, max_new < 0,
 * temperature < 0, top_k < 0). */
L2_API int tg_generate(void *m, const unsigned char *prompt, int len, unsigned char *out,
                       int max_new, float temperature, int top_k, unsigned seed);
L2_API int tg_state_bytes(void *m);
/* Writes tg_state_bytes(m) bytes to dst; returns that count. */
L2_API int tg_export_state(void *m, unsigned char *dst);
/* Reads a state written by tg_export_state of a model of the same config; returns 0, or -1 when
 * the magic, version or parameter count differ (the model is then unchanged). */
L2_API int tg_import_state(void *m, const unsigned char *src);

#ifdef __cplusplus
}
#endif
#endif /* LIB2_H */
