"""Training the numpy GPT: learning-rate schedule, gradient clipping, AdamW, batches, eval loss.

The update mirrors ``tg_model_adamw`` in ``artifacts/include/tinygpt.h``: gradients are first
scaled by ``min(1, grad_clip / global_norm)`` (when ``grad_clip > 0``), then every tensor takes
one AdamW step, with weight decay only on the 2-D weight matrices in
``reference.model.DECAYED_PARAMS``.

Randomness: parameters are initialised from ``default_rng(seed)`` and batches are drawn from an
independent ``default_rng((seed, 1))``, with ``seed`` defaulting to ``defaults.seed``.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from reference import ops
from reference.defaults import DEFAULTS, TrainingDefaults
from reference.model import DECAYED_PARAMS, GPT, Params, ParamsIn, init_params
from reference.ops import IntArray
from reference.presets import ModelConfig

BATCH_STREAM = 1
"""Second word of the batching RNG's seed, ``default_rng((seed, BATCH_STREAM))``."""


def lr_at(t: int, defaults: TrainingDefaults = DEFAULTS) -> float:
    """Learning rate at 1-based step ``t``: linear warmup ``lr * min(1, t / warmup)``, then flat."""
    if isinstance(t, bool) or not isinstance(t, int) or t < 1:
        raise ValueError(f"lr_at: t must be an int >= 1 (steps are 1-based), got {t!r}")
    if defaults.warmup_steps <= 0:
        return defaults.learning_rate
    return defaults.learning_rate * min(1.0, t / defaults.warmup_steps)


def grad_norm(grads: ParamsIn) -> float:
    """Global L2 norm over every gradient tensor (accumulated in float64)."""
    return math.sqrt(sum(float(np.sum(np.square(g, dtype=np.float64))) for g in grads.values()))


def clip_grads(grads: ParamsIn, grad_clip: float) -> tuple[Params, float]:
    """Return ``(grads * min(1, grad_clip / norm), norm)``; ``grad_clip <= 0`` disables clipping."""
    norm = grad_norm(grads)
    if grad_clip <= 0 or norm <= grad_clip:
        return dict(grads), norm
    scale = grad_clip / norm
    return {name: g * g.dtype.type(scale) for name, g in grads.items()}, norm


@dataclass
class AdamWState:
    """AdamW first and second moments, one array per parameter name."""

    m: Params = field(default_factory=dict)
    v: Params = field(default_factory=dict)

    @classmethod
    def zeros_like(cls, params: ParamsIn) -> AdamWState:
        """Fresh all-zero moments shaped like ``params``."""
        return cls(
            m={name: np.zeros_like(p) for name, p in params.items()},
            v={name: np.zeros_like(p) for name, p in params.items()},
        )


def adamw_step(
    params: ParamsIn,
    grads: ParamsIn,
    state: AdamWState,
    t: int,
    defaults: TrainingDefaults = DEFAULTS,
    lr: float | None = None,
    decayed: Collection[str] = DECAYED_PARAMS,
) -> tuple[Params, AdamWState, float]:
    """One clipped AdamW step at 1-based ``t``; return ``(new_params, new_state, grad_norm)``.

    ``lr`` None means ``lr_at(t, defaults)``. ``decayed`` names the tensors that take weight
    decay (another library's choice, replayed). Inputs are not modified. The returned norm is
    the one measured before clipping.
    """
    if set(grads) != set(params):
        raise ValueError(
            f"adamw_step: grads names {sorted(grads)} differ from params names {sorted(params)}"
        )
    if not state.m:
        state = AdamWState.zeros_like(params)
    rate = lr_at(t, defaults) if lr is None else lr
    clipped, norm = clip_grads(grads, defaults.grad_clip)
    new_params: Params = {}
    new_state = AdamWState()
    for name, p in params.items():
        wd = defaults.weight_decay if name in decayed else 0.0
        new_params[name], new_state.m[name], new_state.v[name] = ops.adamw_update(
            p, clipped[name], state.m[name], state.v[name],
            rate, defaults.beta1, defaults.beta2, defaults.eps, wd, t,
        )  # fmt: skip
    return new_params, new_state, norm


def get_batch(
    tokens: IntArray, batch_size: int, context_length: int, rng: np.random.Generator
) -> tuple[IntArray, IntArray]:
    """Draw ``batch_size`` random windows: ``x`` (B, T) and next-token targets ``y`` (B, T)."""
    if tokens.ndim != 1 or not np.issubdtype(tokens.dtype, np.integer):
        raise ValueError(
            f"get_batch: tokens has shape {tokens.shape} dtype {tokens.dtype}, "
            "expected a 1-D integer array"
        )
    if batch_size < 1 or context_length < 1:
        raise ValueError(
            f"get_batch: batch_size={batch_size} and context_length={context_length} must be >= 1"
        )
    if len(tokens) <= context_length:
        raise ValueError(
            f"get_batch: tokens has shape {tokens.shape}, need more than "
            f"context_length={context_length} tokens"
        )
    starts = rng.integers(0, len(tokens) - context_length, size=batch_size)  # (B,)
    offsets = starts[:, None] + np.arange(context_length)[None, :]  # (B, T)
    x = tokens[offsets].astype(np.int32)  # (B, T)
    y = tokens[offsets + 1].astype(np.int32)  # (B, T)
    return x, y


def train_context_length(cfg: ModelConfig, defaults: TrainingDefaults = DEFAULTS) -> int:
    """Sequence length used in training: ``defaults.context_length`` capped at ``block_size``."""
    return min(defaults.context_length, cfg.block_size)


def train_model(
    cfg: ModelConfig,
    tokens: IntArray,
    steps: int,
    defaults: TrainingDefaults = DEFAULTS,
    seed: int | None = None,
    dtype: type[np.floating[Any]] = np.float32,
) -> tuple[GPT, list[float]]:
    """Train a fresh model for ``steps`` steps; return the model and the loss of every step.

    Each step's loss is measured before that step's update (as ``tg_model_train_step`` returns).
    """
    if steps < 0:
        raise ValueError(f"train: steps must be >= 0, got {steps}")
    seed = defaults.seed if seed is None else seed
    model = GPT(cfg, init_params(cfg, defaults, seed=seed, dtype=dtype))
    rng = np.random.default_rng((seed, BATCH_STREAM))
    T = train_context_length(cfg, defaults)
    state = AdamWState.zeros_like(model.params)
    losses: list[float] = []
    for t in range(1, steps + 1):
        x, y = get_batch(tokens, defaults.batch_size, T, rng)
        _, loss = model.forward(x, y)
        assert loss is not None  # targets were given
        grads = model.backward()
        model.params, state, _ = adamw_step(model.params, grads, state, t, defaults)
        losses.append(loss)
    return model, losses


def train(
    cfg: ModelConfig,
    tokens: IntArray,
    steps: int,
    defaults: TrainingDefaults = DEFAULTS,
    seed: int | None = None,
) -> list[float]:
    """Train a fresh float32 model for ``steps`` steps; return the loss of every step."""
    return train_model(cfg, tokens, steps, defaults, seed)[1]


def eval_loss(
    model: GPT,
    tokens: IntArray,
    context_length: int | None = None,
    batch_size: int = DEFAULTS.batch_size,
    max_batches: int | None = None,
) -> float:
    """Mean next-token loss over consecutive non-overlapping windows of ``tokens`` (no RNG).

    Window ``k`` is ``tokens[k*T : k*T + T]`` with targets shifted by one; ``T`` defaults to the
    training context length. Windows are evaluated ``batch_size`` at a time, at most
    ``max_batches`` batches (None = all).
    """
    T = train_context_length(model.cfg) if context_length is None else context_length
    n_windows = (len(tokens) - 1) // T
    if n_windows < 1:
        raise ValueError(f"eval_loss: tokens has shape {tokens.shape}, too short for T={T}")
    if max_batches is not None:
        n_windows = min(n_windows, max_batches * batch_size)
    total, count = 0.0, 0
    for first in range(0, n_windows, batch_size):
        starts = np.arange(first, min(first + batch_size, n_windows)) * T  # (B,)
        offsets = starts[:, None] + np.arange(T)[None, :]  # (B, T)
        x = tokens[offsets].astype(np.int32)  # (B, T)
        y = tokens[offsets + 1].astype(np.int32)  # (B, T)
        _, loss = model.forward(x, y)
        assert loss is not None
        total += loss * offsets.size
        count += offsets.size
    return total / count
