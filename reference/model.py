"""The numpy GPT: a GPT-2-style character model built only from ``reference.ops``.

Shape letters: B batch, T time, C channels (n_embd), NH heads, hs head size, V vocab, L layers.

Parameters live in a ``{name: array}`` dict whose names, shapes and order are
``reference.presets.param_shapes`` (per-layer tensors stacked along a leading L axis). That order
is also the flat buffer layout of the C ABI, see :func:`flatten_params`.

The LM head is TIED to the token embedding: ``logits = lnf(x) @ wte.T`` with no bias, so ``wte``
receives gradient from both the embedding lookup and the head. There is no dropout (the kernels
implement none).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from reference import ops
from reference.defaults import DEFAULTS, TrainingDefaults
from reference.ops import FloatArray, IntArray
from reference.presets import ModelConfig, param_names, param_shapes

Params = dict[str, FloatArray]
ParamsIn = Mapping[str, FloatArray]  # what functions accept (read-only, so covariant)

DECAYED_PARAMS: frozenset[str] = frozenset({"wte", "wpe", "qkvw", "attprojw", "fcw", "fcprojw"})
"""The 2-D weight matrices (per layer) that get weight decay; biases and LayerNorms do not."""

_RESIDUAL_PROJECTIONS = frozenset({"attprojw", "fcprojw"})
_ONES = frozenset({"ln1w", "ln2w", "lnfw"})


def init_params(
    cfg: ModelConfig,
    defaults: TrainingDefaults = DEFAULTS,
    seed: int | None = None,
    dtype: type[np.floating[Any]] = np.float32,
) -> Params:
    """Return freshly initialised parameters for ``cfg``, deterministic in ``seed``.

    Weights are normal(0, init_std); the residual projections ``attprojw`` and ``fcprojw`` use
    ``init_std / sqrt(2 * n_layer)`` (GPT-2), biases are 0 and LayerNorm weights 1. Values are
    drawn in float64 in ``param_names(cfg)`` order and then cast, so float32 and float64 models
    of one seed hold the same numbers up to rounding. ``seed`` None means ``defaults.seed``.
    """
    rng = np.random.default_rng(defaults.seed if seed is None else seed)
    params: Params = {}
    for name, shape in param_shapes(cfg).items():
        if name in DECAYED_PARAMS:
            std = defaults.init_std
            if name in _RESIDUAL_PROJECTIONS:
                std /= math.sqrt(2 * cfg.n_layer)
            params[name] = rng.normal(0.0, std, size=shape).astype(dtype)
        elif name in _ONES:
            params[name] = np.ones(shape, dtype=dtype)
        else:
            params[name] = np.zeros(shape, dtype=dtype)
    return params


def check_params(cfg: ModelConfig, params: ParamsIn) -> np.dtype[Any]:
    """Raise ``ValueError`` unless ``params`` has exactly ``cfg``'s names and shapes, one dtype."""
    shapes = param_shapes(cfg)
    if set(params) != set(shapes):
        missing = sorted(set(shapes) - set(params))
        extra = sorted(set(params) - set(shapes))
        raise ValueError(f"params for preset {cfg.name!r}: missing {missing}, unexpected {extra}")
    dtypes = {params[n].dtype for n in shapes}
    if len(dtypes) != 1 or next(iter(dtypes)) not in (np.float32, np.float64):
        got = sorted(map(str, dtypes))
        raise ValueError(f"params must share one float32/float64 dtype, got {got}")
    for name, shape in shapes.items():
        if params[name].shape != shape:
            raise ValueError(
                f"param {name} has shape {params[name].shape}, expected {shape} for preset "
                f"{cfg.name!r}"
            )
    return params["wte"].dtype


def flatten_params(cfg: ModelConfig, params: ParamsIn) -> FloatArray:
    """Concatenate ``params`` into one 1-D array in ``param_names(cfg)`` order (the C ABI
    layout)."""
    check_params(cfg, params)
    return np.concatenate([params[name].reshape(-1) for name in param_names(cfg)])


def unflatten_params(cfg: ModelConfig, flat: FloatArray) -> Params:
    """Split a flat buffer in ``param_names(cfg)`` order back into ``{name: array}`` (copies)."""
    shapes = param_shapes(cfg)
    total = sum(math.prod(s) for s in shapes.values())
    if not isinstance(flat, np.ndarray) or flat.ndim != 1 or flat.shape[0] != total:
        got = flat.shape if isinstance(flat, np.ndarray) else type(flat).__name__
        raise ValueError(
            f"unflatten_params: flat has shape {got}, expected ({total},) for preset {cfg.name!r}"
        )
    params: Params = {}
    offset = 0
    for name in shapes:
        n = math.prod(shapes[name])
        params[name] = flat[offset : offset + n].reshape(shapes[name]).copy()
        offset += n
    return params


def linear_bias(cfg: ModelConfig, params: ParamsIn, linear: str, layer: int) -> FloatArray | None:
    """Layer ``layer``'s bias of Linear ``linear`` (``"qkv"``, ``"fc"``, ...), or None where
    ``cfg`` has none (a matmul without bias)."""
    return params[f"{linear}b"][layer] if cfg.has_bias(linear) else None


@dataclass
class _LayerCache:
    """Activations of one transformer block that its backward pass needs."""

    x_in: FloatArray  # (B, T, C) block input (residual stream)
    ln1: FloatArray  # (B, T, C)
    ln1_mean: FloatArray  # (B, T)
    ln1_rstd: FloatArray  # (B, T)
    qkv: FloatArray  # (B, T, 3C)
    att: FloatArray  # (B, NH, T, T)
    atty: FloatArray  # (B, T, C) attention output before projection
    x_mid: FloatArray  # (B, T, C) residual after attention
    ln2: FloatArray  # (B, T, C)
    ln2_mean: FloatArray  # (B, T)
    ln2_rstd: FloatArray  # (B, T)
    fch: FloatArray  # (B, T, F) pre-GELU (F: the MLP width, 4C in GPT-2)
    fch_gelu: FloatArray  # (B, T, F)


@dataclass
class _Cache:
    """Everything :meth:`GPT.backward` needs from the last forward."""

    idx: IntArray  # (B, T)
    targets: IntArray  # (B, T)
    layers: list[_LayerCache]
    x_final: FloatArray  # (B, T, C) residual stream entering lnf
    lnf: FloatArray  # (B, T, C)
    lnf_mean: FloatArray  # (B, T)
    lnf_rstd: FloatArray  # (B, T)
    probs: FloatArray  # (B*T, V)


class GPT:
    """A GPT-2-style model over ``params`` (computes in the params' dtype).

    ``forward(idx, targets)`` keeps a cache of activations; ``backward()`` then returns the
    gradients of that forward's mean loss, by parameter name.
    """

    def __init__(self, cfg: ModelConfig, params: ParamsIn) -> None:
        """Wrap ``params`` (validated against ``cfg``; the arrays are shared, not copied)."""
        self.cfg = cfg
        self.dtype = check_params(cfg, params)
        self.params: Params = dict(params)
        self._cache: _Cache | None = None

    def _check_tokens(self, name: str, tokens: object) -> IntArray:
        """Validate a (B, T) integer token array with 1 <= T <= block_size."""
        cfg = self.cfg
        if not isinstance(tokens, np.ndarray) or not np.issubdtype(tokens.dtype, np.integer):
            raise ValueError(f"GPT.forward: {name} must be an integer numpy array")
        if tokens.ndim != 2 or not 1 <= tokens.shape[1] <= cfg.block_size or tokens.shape[0] < 1:
            raise ValueError(
                f"GPT.forward: {name} has shape {tokens.shape}, expected (B, T) with "
                f"1 <= T <= block_size={cfg.block_size}"
            )
        if int(tokens.min()) < 0 or int(tokens.max()) >= cfg.vocab_size:
            raise ValueError(
                f"GPT.forward: {name} holds ids in [{int(tokens.min())}, {int(tokens.max())}], "
                f"expected [0, {cfg.vocab_size})"
            )
        return tokens

    def forward(
        self, idx: IntArray, targets: IntArray | None = None
    ) -> tuple[FloatArray, float | None]:
        """Return ``(logits (B, T, V), mean loss or None)``; the cache is kept only with targets."""
        idx = self._check_tokens("idx", idx)
        p, cfg = self.params, self.cfg
        B, T = idx.shape
        eps = cfg.ln_eps
        x = ops.embedding_forward(idx, p["wte"], p["wpe"])  # (B, T, C)
        layers: list[_LayerCache] = []
        for i in range(cfg.n_layer):
            x_in = x  # (B, T, C)
            ln1, ln1_mean, ln1_rstd = ops.layernorm_forward(x_in, p["ln1w"][i], p["ln1b"][i], eps)
            qkv = ops.matmul_forward(ln1, p["qkvw"][i], self._bias("qkv", i))  # (B, T, 3C)
            atty, att = ops.attention_forward(qkv, cfg.n_head)  # (B, T, C), (B, NH, T, T)
            attproj = ops.matmul_forward(atty, p["attprojw"][i], self._bias("attproj", i))
            x_mid = ops.residual_forward(x_in, attproj)  # (B, T, C)
            ln2, ln2_mean, ln2_rstd = ops.layernorm_forward(x_mid, p["ln2w"][i], p["ln2b"][i], eps)
            fch = ops.matmul_forward(ln2, p["fcw"][i], self._bias("fc", i))  # (B, T, F)
            fch_gelu = ops.gelu_forward(fch)  # (B, T, F)
            fcproj = ops.matmul_forward(fch_gelu, p["fcprojw"][i], self._bias("fcproj", i))
            x = ops.residual_forward(x_mid, fcproj)  # (B, T, C)
            layers.append(
                _LayerCache(
                    x_in=x_in,
                    ln1=ln1,
                    ln1_mean=ln1_mean,
                    ln1_rstd=ln1_rstd,
                    qkv=qkv,
                    att=att,
                    atty=atty,
                    x_mid=x_mid,
                    ln2=ln2,
                    ln2_mean=ln2_mean,
                    ln2_rstd=ln2_rstd,
                    fch=fch,
                    fch_gelu=fch_gelu,
                )
            )
        lnf, lnf_mean, lnf_rstd = ops.layernorm_forward(x, p["lnfw"], p["lnfb"], eps)
        logits = ops.matmul_forward(lnf, p["wte"], None)  # (B, T, V) tied LM head
        if targets is None:
            self._cache = None
            return logits, None
        targets = self._check_tokens("targets", targets)
        if targets.shape != idx.shape:
            raise ValueError(
                f"GPT.forward: targets has shape {targets.shape}, expected {idx.shape} to match idx"
            )
        V = cfg.vocab_size
        loss, _, probs = ops.crossentropy_forward(logits.reshape(B * T, V), targets.reshape(-1))
        self._cache = _Cache(idx, targets, layers, x, lnf, lnf_mean, lnf_rstd, probs)
        return logits, loss

    def _bias(self, linear: str, layer: int) -> FloatArray | None:
        return linear_bias(self.cfg, self.params, linear, layer)

    def _set_grads(
        self, grads: Params, linear: str, layer: int, dW: FloatArray, db: FloatArray | None
    ) -> None:
        grads[f"{linear}w"][layer] = dW
        if db is not None:
            grads[f"{linear}b"][layer] = db

    def backward(self) -> Params:
        """Return ``{name: gradient}`` of the last forward's mean loss (same shapes as params)."""
        if self._cache is None:
            raise RuntimeError("GPT.backward: call forward(idx, targets) with targets first")
        c, p, cfg = self._cache, self.params, self.cfg
        B, T = c.idx.shape
        V = cfg.vocab_size
        grads: Params = {name: np.zeros_like(a) for name, a in p.items()}

        dlogits = ops.crossentropy_backward(c.probs, c.targets.reshape(-1), 1.0 / (B * T))
        dlogits = dlogits.reshape(B, T, V)  # (B, T, V)
        dlnf, dwte_head, _ = ops.matmul_backward(dlogits, c.lnf, p["wte"], has_bias=False)
        grads["wte"] += dwte_head  # (V, C) tied head: first of two contributions
        dx, grads["lnfw"], grads["lnfb"] = ops.layernorm_backward(
            dlnf, c.x_final, p["lnfw"], c.lnf_mean, c.lnf_rstd
        )  # dx (B, T, C)

        for i in reversed(range(cfg.n_layer)):
            a = c.layers[i]
            dx_mid, dfcproj = ops.residual_backward(dx)  # (B, T, C) each
            dfch_gelu, dW, db = ops.matmul_backward(
                dfcproj, a.fch_gelu, p["fcprojw"][i], cfg.has_bias("fcproj")
            )
            self._set_grads(grads, "fcproj", i, dW, db)
            dfch = ops.gelu_backward(dfch_gelu, a.fch)  # (B, T, F)
            dln2, dW, db = ops.matmul_backward(dfch, a.ln2, p["fcw"][i], cfg.has_bias("fc"))
            self._set_grads(grads, "fc", i, dW, db)
            dxm, grads["ln2w"][i], grads["ln2b"][i] = ops.layernorm_backward(
                dln2, a.x_mid, p["ln2w"][i], a.ln2_mean, a.ln2_rstd
            )
            dx_mid = dx_mid + dxm  # (B, T, C) both branches reach the mid residual
            dx_in, dattproj = ops.residual_backward(dx_mid)  # (B, T, C) each
            datty, dW, db = ops.matmul_backward(
                dattproj, a.atty, p["attprojw"][i], cfg.has_bias("attproj")
            )
            self._set_grads(grads, "attproj", i, dW, db)
            dqkv = ops.attention_backward(datty, a.qkv, a.att, cfg.n_head)  # (B, T, 3C)
            dln1, dW, db = ops.matmul_backward(dqkv, a.ln1, p["qkvw"][i], cfg.has_bias("qkv"))
            self._set_grads(grads, "qkv", i, dW, db)
            dxi, grads["ln1w"][i], grads["ln1b"][i] = ops.layernorm_backward(
                dln1, a.x_in, p["ln1w"][i], a.ln1_mean, a.ln1_rstd
            )
            dx = dx_in + dxi  # (B, T, C)

        dwte_emb, dwpe = ops.embedding_backward(dx, c.idx, V, cfg.block_size)
        grads["wte"] += dwte_emb  # (V, C) tied head: second contribution
        grads["wpe"] = dwpe  # (maxT, C)
        return grads
