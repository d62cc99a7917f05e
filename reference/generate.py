"""Autoregressive generation from the numpy GPT, with and without a KV cache.

Window rule (shared by both paths, and what ``tg_model_generate`` must match): with the
sequence so far ``s[0:n]`` (prompt then generated tokens), the next token is predicted from the
window ``s[start:n]`` with ``start = max(0, n - block_size)``, placed at positions
``0 .. n - start - 1``, using the logits of its last position. This is nanoGPT's
``idx[:, -block_size:]``: while ``n <= block_size`` nothing slides; afterwards the window drops
its oldest token every step.

The KV-cache path keeps per-layer K and V of the current window. A new token costs one position
of compute while the window's start stays put; whenever ``start`` changes (the prompt itself, or
every step once ``n > block_size``, because every position's embedding shifts) the cache is
rebuilt by one full forward over the window. Both paths therefore compute the same function and
greedy outputs are token-identical.

Tokens are picked by :mod:`reference.sampler`, the sampler tinygpt.h specifies bit for bit (its
RNG stream, top-k rule and inverse-CDF draw), so the kernels and this reference draw identical
tokens for the same seed, temperature and top-k.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from reference import ops
from reference.defaults import DEFAULTS
from reference.model import GPT, ParamsIn, check_params, linear_bias
from reference.ops import FloatArray
from reference.presets import ModelConfig
from reference.sampler import SamplerRNG, pick


def window_start(n: int, block_size: int) -> int:
    """First index of the window the model sees when ``n`` tokens exist (the slide rule)."""
    return max(0, n - block_size)


@dataclass
class _KVCache:
    """Keys and values of every layer for the positions of the current window."""

    k: FloatArray  # (L, NH, block_size, hs)
    v: FloatArray  # (L, NH, block_size, hs)
    length: int = 0  # positions filled


def _forward_cached(
    cfg: ModelConfig, p: ParamsIn, tokens: list[int], cache: _KVCache
) -> FloatArray:
    """Run ``tokens`` at positions ``cache.length ...``, extend the cache, return logits (n, V)."""
    n, pos0 = len(tokens), cache.length
    NH, hs = cfg.n_head, cfg.head_size
    C, eps = cfg.n_embd, cfg.ln_eps
    total = pos0 + n
    idx = np.asarray(tokens, dtype=np.int32)[None, :]  # (1, n)
    x = ops.embedding_forward(idx, p["wte"], p["wpe"][pos0:])  # (1, n, C)
    scale = x.dtype.type(1.0 / math.sqrt(hs))
    # query i sits at position pos0 + i and may see keys 0 .. pos0 + i
    future = np.arange(total)[None, :] > (pos0 + np.arange(n))[:, None]  # (n, total)
    for i in range(cfg.n_layer):
        ln1, _, _ = ops.layernorm_forward(x, p["ln1w"][i], p["ln1b"][i], eps)  # (1, n, C)
        qkv = ops.matmul_forward(ln1, p["qkvw"][i], linear_bias(cfg, p, "qkv", i))  # (1, n, 3C)
        heads = qkv[0].reshape(n, 3, NH, hs).transpose(1, 2, 0, 3)  # (3, NH, n, hs)
        cache.k[i, :, pos0:total] = heads[1]
        cache.v[i, :, pos0:total] = heads[2]
        keys, values = cache.k[i, :, :total], cache.v[i, :, :total]  # (NH, total, hs)
        preatt = (heads[0] @ keys.transpose(0, 2, 1)) * scale  # (NH, n, total)
        preatt = np.where(future, x.dtype.type(-np.inf), preatt)  # (NH, n, total)
        e = np.exp(preatt - preatt.max(axis=-1, keepdims=True))  # (NH, n, total)
        att = e / e.sum(axis=-1, keepdims=True)  # (NH, n, total)
        atty = (att @ values).transpose(1, 0, 2).reshape(1, n, C)  # (1, n, C)
        attproj = ops.matmul_forward(atty, p["attprojw"][i], linear_bias(cfg, p, "attproj", i))
        x = ops.residual_forward(x, attproj)  # (1, n, C)
        ln2, _, _ = ops.layernorm_forward(x, p["ln2w"][i], p["ln2b"][i], eps)  # (1, n, C)
        fch = ops.gelu_forward(ops.matmul_forward(ln2, p["fcw"][i], linear_bias(cfg, p, "fc", i)))
        fcproj = ops.matmul_forward(fch, p["fcprojw"][i], linear_bias(cfg, p, "fcproj", i))
        x = ops.residual_forward(x, fcproj)  # (1, n, C)
    cache.length = total
    lnf, _, _ = ops.layernorm_forward(x, p["lnfw"], p["lnfb"], eps)  # (1, n, C)
    return ops.matmul_forward(lnf[0], p["wte"], None)  # (n, V) tied LM head


def generate(
    cfg: ModelConfig,
    params: ParamsIn,
    prompt: list[int],
    n_new: int,
    use_kv_cache: bool,
    temperature: float = 0.0,
    seed: int | None = None,
    top_k: int = 0,
    logits_out: list[FloatArray] | None = None,
) -> list[int]:
    """Return the ``n_new`` tokens generated after ``prompt`` (the prompt is not included).

    ``seed`` None is ``DEFAULTS.seed``; ``top_k`` 0 keeps every token. ``logits_out``, if given,
    receives each step's logits (V,) the token was picked from.
    """
    check_params(cfg, params)
    if len(prompt) == 0:
        raise ValueError("generate: prompt is empty; it needs at least one token")
    bad = [t for t in prompt if not 0 <= int(t) < cfg.vocab_size]
    if bad:
        raise ValueError(f"generate: prompt holds ids {bad[:5]} outside [0, {cfg.vocab_size})")
    if n_new < 0:
        raise ValueError(f"generate: n_new must be >= 0, got {n_new}")
    if not math.isfinite(temperature) or temperature < 0:
        raise ValueError(f"generate: temperature must be finite and >= 0, got {temperature}")
    if top_k < 0:
        raise ValueError(f"generate: top_k must be >= 0, got {top_k}")
    rng = SamplerRNG(DEFAULTS.seed if seed is None else seed)
    seq = [int(t) for t in prompt]
    bs = cfg.block_size
    model = GPT(cfg, params)
    shape = (cfg.n_layer, cfg.n_head, bs, cfg.head_size)
    cache: _KVCache | None = None
    cache_start = -1
    out: list[int] = []
    for _ in range(n_new):
        start = window_start(len(seq), bs)
        if not use_kv_cache:
            logits, _ = model.forward(np.asarray([seq[start:]], dtype=np.int32))  # (1, n, V)
            last = logits[0, -1]  # (V,)
        elif cache is None or start != cache_start:
            dtype = params["wte"].dtype
            cache = _KVCache(np.zeros(shape, dtype), np.zeros(shape, dtype))
            cache_start = start
            last = _forward_cached(cfg, params, seq[start:], cache)[-1]  # (V,) rebuild
        else:
            last = _forward_cached(cfg, params, seq[-1:], cache)[-1]  # (V,) one position
        if logits_out is not None:
            logits_out.append(last)
        u = None if temperature == 0.0 else rng.uniform()
        token = pick(last, temperature, top_k, u)
        seq.append(token)
        out.append(token)
    return out
