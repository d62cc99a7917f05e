"""reference.train: schedule, clipping, AdamW step with selective decay, batches, training runs."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from reference import ops
from reference.corpus import load_corpus
from reference.defaults import DEFAULTS
from reference.model import DECAYED_PARAMS, GPT, init_params
from reference.presets import PRESETS
from reference.tokenizer import encode
from reference.train import (
    AdamWState,
    adamw_step,
    clip_grads,
    eval_loss,
    get_batch,
    grad_norm,
    lr_at,
    train,
    train_model,
)


def test_lr_warms_up_linearly_then_stays_flat() -> None:
    """lr_at is lr*t/warmup for t <= warmup (1-based) and lr afterwards; warmup 0 means lr."""
    lr, w = DEFAULTS.learning_rate, DEFAULTS.warmup_steps
    assert lr_at(1) == pytest.approx(lr / w)
    assert lr_at(w // 2) == pytest.approx(lr / 2)
    assert lr_at(w) == lr and lr_at(10 * w) == lr
    assert lr_at(1, dataclasses.replace(DEFAULTS, warmup_steps=0)) == lr


@pytest.mark.parametrize("t", [0, -1, 1.5, True])
def test_lr_at_refuses_non_positive_or_non_int_steps(t: object) -> None:
    """Steps are 1-based ints; anything else raises ValueError naming t."""
    with pytest.raises(ValueError, match="t must be an int >= 1"):
        lr_at(t)  # type: ignore[arg-type]


def test_clip_scales_to_exactly_the_clip_norm_and_only_when_above() -> None:
    """Above the clip the global norm becomes the clip; below or clip=0 nothing changes."""
    grads = {"a": np.array([3.0, 0.0]), "b": np.array([[4.0]])}
    assert grad_norm(grads) == 5.0
    clipped, norm = clip_grads(grads, 1.0)
    assert norm == 5.0 and grad_norm(clipped) == pytest.approx(1.0)
    np.testing.assert_allclose(clipped["a"], [0.6, 0.0])
    for limit in (10.0, 0.0):
        same, _ = clip_grads(grads, limit)
        np.testing.assert_array_equal(same["b"], grads["b"])


def test_adamw_step_decays_only_2d_weights() -> None:
    """With zero gradients only the decayed tensors move, by exactly lr * wd * p."""
    cfg = PRESETS["tiny"]
    params = init_params(cfg, dtype=np.float64)
    params["qkvb"] = params["qkvb"] + 0.5  # a nonzero bias that decay would visibly shrink
    grads = {n: np.zeros_like(p) for n, p in params.items()}
    new, _, norm = adamw_step(params, grads, AdamWState(), t=DEFAULTS.warmup_steps)
    assert norm == 0.0
    lr, wd = DEFAULTS.learning_rate, DEFAULTS.weight_decay
    for name, p in params.items():
        want = p - lr * wd * p if name in DECAYED_PARAMS else p
        np.testing.assert_allclose(new[name], want, rtol=1e-14, err_msg=name)


def test_adamw_step_clips_then_applies_adamw_update() -> None:
    """adamw_step == clip by min(1, clip/norm) then ops.adamw_update per tensor at lr_at(t)."""
    cfg = PRESETS["tiny"]
    params = init_params(cfg, dtype=np.float64)
    rng = np.random.default_rng(0)
    grads = {n: rng.normal(size=p.shape) for n, p in params.items()}  # norm >> 1: clipped
    state = AdamWState.zeros_like(params)
    new, new_state, norm = adamw_step(params, grads, state, t=3)
    scale = DEFAULTS.grad_clip / norm
    assert scale < 1
    for name in ("wte", "ln1b"):
        wd = DEFAULTS.weight_decay if name in DECAYED_PARAMS else 0.0
        p, m, v = ops.adamw_update(
            params[name], grads[name] * scale, state.m[name], state.v[name], lr_at(3),
            DEFAULTS.beta1, DEFAULTS.beta2, DEFAULTS.eps, wd, 3,
        )  # fmt: skip
        np.testing.assert_allclose(new[name], p, rtol=1e-13)
        np.testing.assert_allclose(new_state.m[name], m, rtol=1e-13)
        np.testing.assert_allclose(new_state.v[name], v, rtol=1e-13)


def test_get_batch_targets_are_inputs_shifted_by_one() -> None:
    """x and y are (B, T) int32 windows with y[:, :-1] == x[:, 1:], reproducible per rng seed."""
    tokens = np.arange(1000, dtype=np.int32) % 128
    x, y = get_batch(tokens, 4, 8, np.random.default_rng(1))
    assert x.shape == y.shape == (4, 8) and x.dtype == np.int32
    np.testing.assert_array_equal(y[:, :-1], x[:, 1:])
    np.testing.assert_array_equal((x + 1) % 128, y)
    x2, _ = get_batch(tokens, 4, 8, np.random.default_rng(1))
    np.testing.assert_array_equal(x, x2)
    with pytest.raises(ValueError, match="need more than context_length=8"):
        get_batch(tokens[:8], 4, 8, np.random.default_rng(1))


def test_training_on_a_repeating_pattern_lowers_loss_and_is_reproducible() -> None:
    """tiny learns a periodic sequence; same seed gives the same losses, another seed differs."""
    tokens = encode("to be or not to be, that is the question. " * 60)
    fast = dataclasses.replace(DEFAULTS, learning_rate=3e-3, warmup_steps=5, batch_size=8)
    losses = train(PRESETS["tiny"], tokens, 60, fast)
    assert len(losses) == 60 and all(math.isfinite(v) for v in losses)
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 1.0
    assert train(PRESETS["tiny"], tokens, 60, fast) == losses
    assert train(PRESETS["tiny"], tokens, 60, fast, seed=9) != losses


def test_eval_loss_is_deterministic_and_equals_a_hand_computed_mean() -> None:
    """eval_loss averages the loss over consecutive windows; recomputed here by hand."""
    cfg = PRESETS["tiny"]
    model = GPT(cfg, init_params(cfg, dtype=np.float64))
    tokens = encode("abcdefghij" * 10)  # 100 tokens, T=16: six windows
    got = eval_loss(model, tokens, batch_size=4)
    losses: list[float] = []
    for k in range(6):
        w = tokens[k * 16 : k * 16 + 17]
        loss = model.forward(w[None, :-1], w[None, 1:])[1]
        assert loss is not None
        losses.append(loss)
    assert got == pytest.approx(float(np.mean(losses)), rel=1e-12)
    assert eval_loss(model, tokens, batch_size=4, max_batches=1) == pytest.approx(
        float(np.mean(losses[:4])), rel=1e-12
    )


@pytest.mark.corpus
@pytest.mark.slow
def test_short_training_on_the_default_corpus_lowers_loss() -> None:
    """100 steps of preset small on Shakespeare lower train and held-out loss by over 0.5.

    Default hyperparameters except batch_size 8, which halves the run time (~1 s); the drop seen
    is ~1.1 nats, so 0.5 fails only if learning is broken.
    """
    tokens = encode(load_corpus())
    cfg = PRESETS["small"]
    held_out = tokens[-20_000:]
    untrained = eval_loss(GPT(cfg, init_params(cfg)), held_out, max_batches=4)
    defaults = dataclasses.replace(DEFAULTS, batch_size=8)
    model, losses = train_model(cfg, tokens[:-20_000], 100, defaults)
    assert np.mean(losses[-10:]) < np.mean(losses[:10]) - 0.5
    assert eval_loss(model, held_out, max_batches=4) < untrained - 0.5
