/*
 * tinygpt.h -- the TinyGPT kernel library's C ABI, version 5.
 *
 * One C11 source tree (artifacts/src/) builds three binaries: wasm32 (simd128), wasm64 (Memory64,
 * simd128) and native x86-64. Every export is prefixed `tg_`. The harness reads the same
 * signatures from harness/abi.py (the machine-readable twin of this header; a test keeps them in
 * sync) and writes them into artifacts/build/manifest.json, so hosts never guess argument kinds.
 *
 * Argument kinds used by harness/abi.py:
 *   ptr  -- a pointer or size_t: 32 bits on wasm32, 64 bits on wasm64 and native.
 *           Under Memory64 a JS caller must pass BigInt; passing a Number is the TinyGPT bug.
 *   i32  -- int32_t
 *   f32  -- float
 * A pointer argument documented "may be 0" accepts NULL.
 *
 * Conventions:
 *   - All tensors are float32, row-major, contiguous. Token ids are int32_t.
 *   - Linear weights are (OC, C) as in PyTorch: out = inp @ W^T + b.
 *   - Backward functions ACCUMULATE (+=) into every gradient buffer they are given, as llm.c does,
 *     so that residual branches sum. Callers zero the buffers first.
 *   - LayerNorm eps is 1e-5. GELU is the tanh form:
 *       gelu(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
 *   - Softmax subtracts the row max (logits of +-80 must not overflow).
 *   - Attention is causal multi-head self-attention with scale 1/sqrt(head_size).
 *   - Parameters of a model live in ONE flat buffer in the order of reference/presets.py
 *     PARAM_NAMES: wte (V,C), wpe (maxT,C), ln1w (L,C), ln1b (L,C), qkvw (L,3C,C), qkvb (L,3C),
 *     attprojw (L,C,C), attprojb (L,C), ln2w (L,C), ln2b (L,C), fcw (L,4C,C), fcb (L,4C),
 *     fcprojw (L,C,4C), fcprojb (L,C), lnfw (C), lnfb (C). Gradients use the same layout.
 *     The LM head is tied to wte: logits = lnf(x) @ wte^T (no bias).
 *   - The qkv projection output (B,T,3C) holds q, k, v in that order along the last axis; head h
 *     of q is channels [h*hs, (h+1)*hs).
 */
#ifndef TINYGPT_H
#define TINYGPT_H

#include <stddef.h>
#include <stdint.h>

#define TG_ABI_VERSION 5
/* The most threads tg_set_threads accepts (the pool's size); harness/abi.py MAX_THREADS. */
#define TG_MAX_THREADS 16

#ifdef __cplusplus
extern "C" {
#endif

/* ---- library ---------------------------------------------------------------------------- */

/* ABI version of this binary; the harness refuses a mismatch with harness/abi.py. */
int32_t tg_abi_version(void);
/* Pointer to a NUL-terminated JSON object of the binary's embedded default hyperparameters, with
 * the same keys as reference/defaults.py TrainingDefaults (key-sorted, compact). */
const char *tg_defaults_json(void);
/* Does nothing; hosts time it to measure the per-call bridge cost. */
void tg_noop(void);
/* 16-byte aligned allocation of nbytes from the library's own allocator (no libc in WASM; WASM
 * grows linear memory with memory.grow). Returns 0 when out of memory. */
void *tg_alloc(size_t nbytes);
/* Free a pointer from tg_alloc or 0. */
void tg_free(void *p);
/* Use n threads (the caller plus n - 1 pool workers) for the kernels from now on. Returns the
 * count in effect: n on a threaded (native) build, 1 on the freestanding wasm builds (no
 * threads), fewer than n if the system refused a thread. n < 1, n > TG_MAX_THREADS, or a call
 * from inside a kernel returns -1 and changes nothing. Results are deterministic for a given
 * count, and bitwise equal to 1 thread: every kernel splits only work whose per-element
 * summation order does not depend on the split (docs/threads.md). Default: 1. */
int32_t tg_set_threads(int32_t n);
/* The thread count in effect. */
int32_t tg_get_threads(void);
/* How many parallel regions have really run on more than one thread since the library was
 * loaded: a kernel's split counts once, at its join, if a pool worker (not the caller) ran at
 * least one of its tasks. 0 on the builds without threads and for everything run at 1 thread
 * or below the split threshold. Hosts read it before and after a call: the difference is the
 * call's regions, each of which paid one wake + join of the pool. A uint32 counter returned as
 * its two's-complement int32_t: it wraps modulo 2^32, so take differences modulo 2^32
 * (harness/abi.py regions_between). Added in ABI 4. */
int32_t tg_parallel_regions(void);
/* The pool's own cost, timed inside the library: runs `regions` parallel regions of an empty
 * task, one task per thread in effect, and returns the mean nanoseconds per region (wake the
 * workers, each runs its empty task, join), clock_gettime(CLOCK_MONOTONIC) around the loop.
 * asleep = 0 starts each region right after the last, while the workers still spin for it
 * (back-to-back kernels, as inside a train step); asleep = 1 waits ~1 ms before each region,
 * past the workers' spin, so they sleep on the condition variable (the first kernel after a
 * pause), and only the region is timed. Returns -1 on the builds without threads, at 1 thread,
 * for regions < 1 or inside a kernel; -2 if the workers did not take part in every region.
 * The harness's bench check reports it as pool:wake_join (docs/threads.md). Added in ABI 5. */
int32_t tg_pool_probe_ns(int32_t regions, int32_t asleep);

/* ---- ops: forward and backward ---------------------------------------------------------- */

/* out[b,t,:] = wte[idx[b,t],:] + wpe[t,:].   out (B,T,C), idx (B,T) int32 */
void tg_embedding_forward(float *out, const int32_t *idx, const float *wte, const float *wpe,
                          int32_t B, int32_t T, int32_t C);
/* dwte[idx[b,t],:] += dout[b,t,:]; dwpe[t,:] += dout[b,t,:] */
void tg_embedding_backward(float *dwte, float *dwpe, const float *dout, const int32_t *idx,
                           int32_t B, int32_t T, int32_t C);

/* LayerNorm over the last axis of inp (N,C). Writes out (N,C), mean (N), rstd (N). */
void tg_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                          const float *weight, const float *bias, int32_t N, int32_t C);
/* dinp (N,C), dweight (C), dbias (C) accumulate. */
void tg_layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                           const float *inp, const float *weight, const float *mean,
                           const float *rstd, int32_t N, int32_t C);

/* out (N,OC) = inp (N,C) @ weight(OC,C)^T + bias(OC); bias may be 0. */
void tg_matmul_forward(float *out, const float *inp, const float *weight, const float *bias,
                       int32_t N, int32_t C, int32_t OC);
/* dinp (N,C) += dout @ weight; dweight (OC,C) += dout^T @ inp; dbias (OC) += sum_n dout.
 * dbias may be 0. */
void tg_matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                        const float *inp, const float *weight, int32_t N, int32_t C, int32_t OC);

/* Causal multi-head attention. inp (B,T,3C) = [q|k|v]; out (B,T,C);
 * preatt and att (B,NH,T,T) are scratch the backward pass reuses (att = softmax probabilities,
 * entries above the diagonal are written as 0). */
void tg_attention_forward(float *out, float *preatt, float *att, const float *inp, int32_t B,
                          int32_t T, int32_t C, int32_t NH);
/* dinp (B,T,3C) accumulates; dpreatt, datt (B,NH,T,T) are scratch the caller zeroes. */
void tg_attention_backward(float *dinp, float *dpreatt, float *datt, const float *dout,
                           const float *inp, const float *att, int32_t B, int32_t T, int32_t C,
                           int32_t NH);

/* Elementwise tanh-GELU over N floats. */
void tg_gelu_forward(float *out, const float *inp, int32_t N);
void tg_gelu_backward(float *dinp, const float *inp, const float *dout, int32_t N);

/* out = a + b over N floats; backward: da += dout, db += dout. */
void tg_residual_forward(float *out, const float *a, const float *b, int32_t N);
void tg_residual_backward(float *da, float *db, const float *dout, int32_t N);

/* Softmax over V of logits (N,V) into probs (N,V); losses[n] = -log probs[n, targets[n]].
 * Returns the mean loss. */
float tg_crossentropy_forward(float *losses, float *probs, const float *logits,
                              const int32_t *targets, int32_t N, int32_t V);
/* dlogits (N,V) += (probs - onehot(targets)) * dloss, with dloss the same for every row
 * (1/N for a mean loss). */
void tg_crossentropy_backward(float *dlogits, const float *probs, const int32_t *targets,
                              float dloss, int32_t N, int32_t V);

/* One AdamW step over n params, in place, with bias correction at step t (1-based):
 *   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;  mh = m/(1-b1^t);  vh = v/(1-b2^t)
 *   p -= lr * (mh / (sqrt(vh) + eps) + wd * p)
 * Weight decay is applied by the caller's choice of wd per tensor (the model applies wd only to
 * 2-D weight matrices: wte, wpe, qkvw, attprojw, fcw, fcprojw). */
void tg_adamw_update(float *params, const float *grads, float *m, float *v, size_t n, float lr,
                     float beta1, float beta2, float eps, float weight_decay, int32_t t);

/* ---- model ------------------------------------------------------------------------------ */

/* A model handle (opaque). Create with dims; the caller then writes weights into
 * tg_model_params(h). Returns 0 on bad dims or out of memory. */
void *tg_model_create(int32_t V, int32_t maxT, int32_t C, int32_t L, int32_t NH);
void tg_model_free(void *h);
size_t tg_model_num_params(void *h);
float *tg_model_params(void *h);  /* flat, PARAM_NAMES order */
float *tg_model_grads(void *h);   /* flat, same layout */
/* Forward over idx (B,T). targets (B,T) may be 0: then no loss, returns -1.0f.
 * Otherwise returns the mean cross-entropy loss. Activations are kept for backward. */
float tg_model_forward(void *h, const int32_t *idx, const int32_t *targets, int32_t B, int32_t T);
/* Logits (B,T,V) of the last forward. */
float *tg_model_logits(void *h);
void tg_model_zero_grad(void *h);
/* Backward of the last forward's mean loss; accumulates into tg_model_grads(h). */
void tg_model_backward(void *h);
/* Global L2 norm of the gradients. */
float tg_model_grad_norm(void *h);
/* AdamW over all parameters at step t (1-based) with lr, with weight decay only on 2-D weights.
 * If grad_clip > 0 the gradients are first scaled by min(1, grad_clip / global_norm). */
void tg_model_adamw(void *h, float lr, float beta1, float beta2, float eps, float weight_decay,
                    float grad_clip, int32_t t);
/* forward + zero_grad + backward + adamw; returns the loss before the update. */
float tg_model_train_step(void *h, const int32_t *idx, const int32_t *targets, int32_t B,
                          int32_t T, float lr, float beta1, float beta2, float eps,
                          float weight_decay, float grad_clip, int32_t t);
/* Generate n_new tokens after prompt (len tokens, B=1) into out (n_new int32). With use_kv_cache
 * != 0 each new token costs one position of compute; otherwise the whole window is recomputed.
 * When the sequence exceeds maxT the window slides (the cache is then rebuilt).
 * logits_out may be 0; otherwise it receives, for every step s, the V float32 logits the token
 * of step s was picked from, at logits_out + s*V (n_new * V floats), so a caller can check the
 * logits of both paths and re-run the sampler on exactly what the kernel saw.
 * Returns the number of tokens written.
 *
 * The sampler (reference/sampler.py implements the same, docs/checks.md "Generation and sampling parity"):
 *   temperature == 0: greedy, the argmax of the logits, lowest index on ties; no random draw.
 *   temperature > 0: exactly one uniform draw u per generated token, from one stream per call:
 *     state = splitmix64(seed): z = seed + 0x9E3779B97F4A7C15; z = (z ^ z>>30) * 0xBF58476D1CE4E5B9;
 *             z = (z ^ z>>27) * 0x94D049BB133111EB; z ^= z>>31; state = z, or
 *             0x9E3779B97F4A7C15 if z == 0 (all arithmetic mod 2^64);
 *     next:   xorshift64*: x ^= x>>12; x ^= x<<25; x ^= x>>27; state = x;
 *             u = ((x * 0x2545F4914F6CDD1D) >> 11) * 2^-53, a double in [0, 1).
 *   top_k: 0, or >= V, keeps every token; otherwise the k tokens first in the order (logit
 *     descending, index ascending) are kept, the others get probability 0. top_k < 0 is invalid
 *     (returns 0).
 *   Then, in double: z_i = (double)logit_i / (double)temperature; w_i = exp(z_i - max_kept z)
 *   for kept i, else 0; total = sum of w_i in index order; the token is the lowest kept index
 *   whose running sum (index order) exceeds u * total, or the last kept index if rounding
 *   leaves none. */
int32_t tg_model_generate(void *h, const int32_t *prompt, int32_t len, int32_t n_new,
                          int32_t *out, float *logits_out, int32_t use_kv_cache,
                          float temperature, int32_t top_k, uint32_t seed);

#ifdef __cplusplus
}
#endif
#endif /* TINYGPT_H */
