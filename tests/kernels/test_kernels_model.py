"""The model exports on every bundled artifact: a training step and generation vs the reference."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from numpy.typing import NDArray

from harness.hosts.base import Instance
from harness.kernel import KernelModel
from harness.parity import assert_parity
from harness.tolerance import grad_blocks, model_tolerance
from reference.defaults import DEFAULTS
from reference.generate import generate
from reference.model import GPT, flatten_params, init_params
from reference.presets import PARAM_NAMES, PRESETS, ModelConfig
from reference.train import AdamWState, adamw_step

TINY = PRESETS["tiny"]
LR = 1e-3
B, T = 4, 12


def _batch(cfg: ModelConfig) -> tuple[NDArray[np.int32], NDArray[np.int32]]:
    rng = np.random.default_rng(7)
    x = rng.integers(0, cfg.vocab_size, (B, T)).astype(np.int32)
    y = rng.integers(0, cfg.vocab_size, (B, T)).astype(np.int32)
    return x, y


@pytest.fixture
def tiny_model(instance: Instance) -> Iterator[KernelModel]:
    """A tiny-preset model in the instance holding init_params(seed=3) in float32."""
    params = init_params(TINY, DEFAULTS, seed=3, dtype=np.float32)
    model = KernelModel.create(instance, TINY, flatten_params(TINY, params))
    try:
        yield model
    finally:
        model.free()


def test_training_step_matches_reference(tiny_model: KernelModel) -> None:
    """Loss, logits, every gradient by name and every parameter after AdamW match float64."""
    p64 = init_params(TINY, DEFAULTS, seed=3, dtype=np.float32)
    p64 = {k: v.astype(np.float64) for k, v in p64.items()}
    x, y = _batch(TINY)
    ref = GPT(TINY, p64)
    ref_logits, ref_loss = ref.forward(x, y)
    ref_grads = ref.backward()
    dims = {"n_layer": TINY.n_layer, "n_embd": TINY.n_embd, "seq_len": T, "batch": B}

    logits, loss = tiny_model.forward(x, y)
    assert loss is not None and ref_loss is not None
    name = tiny_model.instance.artifact.name
    assert_parity(f"{name}:logits", logits, ref_logits, model_tolerance("logits", **dims).tolerance)
    assert_parity(f"{name}:loss", np.float32(loss), np.float64(ref_loss),
                  model_tolerance("loss", **dims).tolerance)  # fmt: skip
    grads = tiny_model.backward()
    assert list(grads) == list(PARAM_NAMES)
    rule = model_tolerance("grad", **dims)
    for g in PARAM_NAMES:
        assert_parity(f"{name}:grad:{g}", grads[g], ref_grads[g], rule.tolerance,
                      relative_to_max=rule.relative_to_max,
                      max_blocks=grad_blocks(g, TINY.n_layer))  # fmt: skip
    # AdamW is checked on the kernel's own gradients: near-zero gradients (q and k at init are
    # ~1e-8, the size of eps) turn a tiny gradient error into a large update error, which is
    # the gradient check's business, not the optimizer's
    kernel_grads = {g: a.astype(np.float64) for g, a in grads.items()}
    state = AdamWState.zeros_like(p64)
    ref_params, _, _ = adamw_step(p64, kernel_grads, state, 1, DEFAULTS, lr=LR)
    tiny_model.adamw(LR, DEFAULTS, 1)
    after = tiny_model.params()
    tol = model_tolerance("adamw", **dims, lr=LR).tolerance
    for g in PARAM_NAMES:
        assert_parity(f"{name}:adamw:{g}", after[g], ref_params[g], tol)


def test_train_step_equals_its_parts(instance: Instance) -> None:
    """tg_model_train_step gives bit-identical loss and params to forward+backward+adamw."""
    flat = flatten_params(TINY, init_params(TINY, DEFAULTS, seed=4, dtype=np.float32))
    x, y = _batch(TINY)
    one, parts = KernelModel.create(instance, TINY, flat), KernelModel.create(instance, TINY, flat)
    try:
        losses_one = [one.train_step(x, y, LR, DEFAULTS, t) for t in (1, 2)]
        losses_parts = []
        for t in (1, 2):
            losses_parts.append(parts.forward(x, y)[1])
            parts.backward()
            parts.adamw(LR, DEFAULTS, t)
        assert losses_one == losses_parts
        assert losses_one[1] < losses_one[0]  # the same batch twice: the step went downhill
        for g, a in one.params().items():
            np.testing.assert_array_equal(a, parts.params()[g], err_msg=g)
    finally:
        one.free()
        parts.free()


def test_grad_clip_scales_gradients(tiny_model: KernelModel) -> None:
    """With grad_clip below the norm, AdamW sees gradients scaled to exactly that norm."""
    x, y = _batch(TINY)
    tiny_model.forward(x, y)
    tiny_model.backward()
    norm = tiny_model.grad_norm()
    ref = float(
        np.sqrt(sum(np.sum(g.astype(np.float64) ** 2) for g in tiny_model.grads().values()))
    )
    assert norm == pytest.approx(ref, rel=1e-6)
    clip = norm / 4
    tiny_model.adamw(LR, DEFAULTS.__class__(**{**DEFAULTS.as_dict(), "grad_clip": clip}), 1)
    assert tiny_model.grad_norm() == pytest.approx(clip, rel=1e-5)


@pytest.mark.parametrize(
    ("prompt", "n_new"),
    [([1, 2, 3, 4, 5], 30), (list(range(40, 60)), 6), ([65], 1)],
    ids=["window-slides", "prompt-longer-than-block", "one-token"],
)
def test_greedy_generation_matches_reference(
    tiny_model: KernelModel, prompt: list[int], n_new: int
) -> None:
    """KV-cache and full-recompute greedy tokens are identical and equal the reference's."""
    params = tiny_model.params()
    expected = generate(TINY, params, prompt, n_new, use_kv_cache=False)
    assert generate(TINY, params, prompt, n_new, use_kv_cache=True) == expected
    assert tiny_model.generate(prompt, n_new, use_kv_cache=True) == expected
    assert tiny_model.generate(prompt, n_new, use_kv_cache=False) == expected


def test_sampling_is_seeded_and_path_independent(tiny_model: KernelModel) -> None:
    """At temperature 1 one seed gives one token sequence on both paths; another seed differs."""
    prompt = [10, 20, 30]
    a = tiny_model.generate(prompt, 24, use_kv_cache=True, temperature=1.0, seed=11)
    assert a == tiny_model.generate(prompt, 24, use_kv_cache=False, temperature=1.0, seed=11)
    assert a != tiny_model.generate(prompt, 24, use_kv_cache=True, temperature=1.0, seed=12)
    assert len(set(a)) > 3  # a near-uniform random model samples many distinct tokens
    top = tiny_model.generate(prompt, 8, use_kv_cache=True, temperature=1.0, seed=2**32 - 1)
    assert top == tiny_model.generate(prompt, 8, use_kv_cache=False, temperature=1.0, seed=-1)


def test_model_exports_reject_bad_arguments(tiny_model: KernelModel) -> None:
    """Out-of-range T or token ids make tg_model_forward return NaN, generate return 0."""
    inst, h = tiny_model.instance, tiny_model.handle
    ids = inst.alloc(4 * 32)
    try:
        inst.write(ids, np.full(32, 5, np.int32).tobytes())
        assert np.isnan(
            float(inst.call("tg_model_forward", h, ids, 0, 1, TINY.block_size + 1) or 0)
        )
        inst.write(ids, np.full(32, TINY.vocab_size, np.int32).tobytes())
        assert np.isnan(float(inst.call("tg_model_forward", h, ids, 0, 1, 4) or 0))
        assert inst.call("tg_model_generate", h, ids, 4, 3, ids + 64, 0, 1, 0.0, 0, 0) == 0
    finally:
        inst.free(ids)
    assert inst.call("tg_model_create", 128, 16, 15, 1, 2) == 0  # C not divisible by NH


def test_backward_keeps_logits_and_accumulates(tiny_model: KernelModel) -> None:
    """tg_model_logits still holds the logits after backward; a second backward doubles grads."""
    x, y = _batch(TINY)
    logits, _ = tiny_model.forward(x, y)
    once = tiny_model.backward()
    tiny_model.instance.call("tg_model_backward", tiny_model.handle)
    twice = tiny_model.grads()
    for g in PARAM_NAMES:
        # the second pass re-sums up to B*T = 48 terms onto a non-zero start, so only rounding
        # differs: allow 48 float32 ulps of the tensor's scale (a missing or doubled term is
        # ~1e5 times larger)
        scale = float(np.abs(once[g]).max())
        np.testing.assert_allclose(twice[g], 2 * once[g], rtol=0, atol=48 * 1.2e-7 * scale,
                                   err_msg=g)  # fmt: skip
    ptr = int(tiny_model.instance.call("tg_model_logits", tiny_model.handle) or 0)
    after = np.frombuffer(tiny_model.instance.read(ptr, logits.nbytes), np.float32)
    np.testing.assert_array_equal(after.reshape(logits.shape), logits)
