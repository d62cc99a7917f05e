"""reference.model: whole-model gradients against finite differences, init, and flat layout.

The gradient check runs a 2-layer, 2-head float64 model whose every parameter (LayerNorms and
biases included) is randomised, so no gradient path is trivially zero. For each parameter tensor
a handful of entries is perturbed by +-h and the central difference of the mean loss compared
with ``GPT.backward``. Tolerance: h = 1e-5 gives truncation error ~h^2 * |L'''| ~ 1e-10 and
rounding ~1e-16/h ~ 1e-11 on a loss of ~5, so ``atol = 1e-7, rtol = 1e-4`` is loose enough to
never flake yet a wrong term (O(|grad|) error) fails.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from reference.defaults import DEFAULTS
from reference.model import (
    DECAYED_PARAMS,
    GPT,
    check_params,
    flatten_params,
    init_params,
    unflatten_params,
)
from reference.presets import PARAM_NAMES, PRESETS, ModelConfig, param_count, param_shapes

GRADCHECK = ModelConfig("gradcheck", n_layer=2, n_head=2, n_embd=8, block_size=6, vocab_size=11)
# What real byte-level GPTs vary: an explicit MLP width (not 4C), two Linears without bias, and
# another LayerNorm eps (large enough that a forward ignoring it moves the loss).
VARIANT = dataclasses.replace(
    GRADCHECK, name="variant", d_mlp=12, biases=("qkv", "fc"), ln_eps=1e-2
)
H = 1e-5
ATOL = 1e-7
RTOL = 1e-4
ENTRIES_PER_TENSOR = 6


def randomised_params(cfg: ModelConfig, seed: int) -> dict[str, np.ndarray]:
    """float64 params with every tensor drawn from N(0, 0.3^2) (LN weights around 1)."""
    rng = np.random.default_rng(seed)
    params = {}
    for name, shape in param_shapes(cfg).items():
        base = 1.0 if name in ("ln1w", "ln2w", "lnfw") else 0.0
        params[name] = base + 0.3 * rng.normal(size=shape)
    return params


@pytest.mark.parametrize(
    ("cfg", "name"),
    [(GRADCHECK, n) for n in PARAM_NAMES] + [(VARIANT, n) for n in param_shapes(VARIANT)],
    ids=lambda v: v.name if isinstance(v, ModelConfig) else v,
)
def test_model_gradient_matches_finite_differences(cfg: ModelConfig, name: str) -> None:
    """GPT.backward's gradient of the mean loss w.r.t. ``name`` at sampled entries, for GPT-2's
    architecture and for a variant (MLP width 12, no attproj/fcproj bias, eps 1e-2)."""
    params = randomised_params(cfg, seed=5)
    model = GPT(cfg, params)
    rng = np.random.default_rng(11)
    idx = rng.integers(0, 11, size=(2, 5))
    targets = rng.integers(0, 11, size=(2, 5))
    model.forward(idx, targets)
    grad = model.backward()[name]
    assert grad.shape == params[name].shape

    flat = params[name].reshape(-1)  # a view: perturbing it perturbs the model
    picks = rng.choice(flat.size, size=min(ENTRIES_PER_TENSOR, flat.size), replace=False)
    if name == "wte":  # make sure ids that occur (embedding + head paths) are sampled
        picks = np.concatenate([picks, [int(idx[0, 0]) * cfg.n_embd]])
    for i in picks:
        old = flat[i]
        flat[i] = old + H
        up = model.forward(idx, targets)[1]
        flat[i] = old - H
        down = model.forward(idx, targets)[1]
        flat[i] = old
        assert up is not None and down is not None
        numeric = (up - down) / (2 * H)
        analytic = grad.reshape(-1)[i]
        assert abs(analytic - numeric) <= ATOL + RTOL * abs(numeric), (
            f"{name}[flat {i}]: analytic {analytic!r} vs numeric {numeric!r}"
        )


def test_variant_config_shapes_count_and_eps() -> None:
    """A variant drops the biases it turns off, sizes the MLP by d_mlp, counts exactly what its
    shapes hold, and its forward uses its own LayerNorm eps (the same weights under GPT-2's eps
    give another loss)."""
    shapes = param_shapes(VARIANT)
    assert "attprojb" not in shapes and "fcprojb" not in shapes and "qkvb" in shapes
    assert shapes["fcw"] == (2, 12, 8) and shapes["fcprojw"] == (2, 8, 12)
    assert param_count(VARIANT) == sum(math.prod(s) for s in shapes.values())
    C, F, L, V, T = 8, 12, 2, 11, 6
    by_hand = V * C + T * C + L * (2 * C + 3 * C * C + 3 * C + C * C + 2 * C + F * C + F + C * F)
    assert param_count(VARIANT) == by_hand + 2 * C
    params = randomised_params(VARIANT, seed=3)
    idx = np.random.default_rng(1).integers(0, V, size=(2, 5))
    loss = GPT(VARIANT, params).forward(idx, idx)[1]
    gpt2_eps = dataclasses.replace(VARIANT, ln_eps=1e-5)
    assert loss is not None and loss != GPT(gpt2_eps, params).forward(idx, idx)[1]
    assert not VARIANT.is_gpt2 and GRADCHECK.is_gpt2
    flat = flatten_params(VARIANT, params)
    assert flat.size == param_count(VARIANT)
    assert all(np.array_equal(a, params[n]) for n, a in unflatten_params(VARIANT, flat).items())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"vocab_size": 300}, "at most 256"),
        ({"d_mlp": -1}, "d_mlp"),
        ({"biases": ("qkv", "lm_head")}, "biases"),
        ({"ln_eps": 0.0}, "ln_eps"),
        ({"n_layer": 0}, "n_layer"),
    ],
)
def test_bad_configs_are_refused_by_name(change: dict[str, object], message: str) -> None:
    """Each invalid field is a ValueError naming it."""
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(GRADCHECK, **change)  # type: ignore[arg-type]


def test_lm_head_is_tied_to_wte() -> None:
    """logits equal lnf(x) @ wte.T: changing wte alone changes logits through both uses."""
    cfg = PRESETS["tiny"]
    params = init_params(cfg, dtype=np.float64)
    model = GPT(cfg, params)
    idx = np.array([[3, 1, 4]])
    _, loss_before = model.forward(idx, idx)
    grads = model.backward()
    # the id-0 row of wte never appears in idx, so its gradient can only come from the head
    assert np.any(grads["wte"][0] != 0)
    assert param_count(cfg) == sum(p.size for p in params.values())  # no separate head tensor
    assert loss_before is not None


def test_forward_without_targets_returns_logits_only_and_backward_refuses() -> None:
    """No targets: (logits (B, T, V), None) and backward raises RuntimeError."""
    cfg = PRESETS["tiny"]
    model = GPT(cfg, init_params(cfg))
    logits, loss = model.forward(np.zeros((2, 3), dtype=np.int32))
    assert logits.shape == (2, 3, 128) and logits.dtype == np.float32 and loss is None
    with pytest.raises(RuntimeError, match="targets"):
        model.backward()


def test_init_is_deterministic_and_follows_the_gpt2_scheme() -> None:
    """Same seed same params; std 0.02, residual projections /sqrt(2L), biases 0, LN weights 1."""
    cfg = PRESETS["large"]
    a, b = init_params(cfg, seed=3), init_params(cfg, seed=3)
    c = init_params(cfg, seed=4)
    for name in PARAM_NAMES:
        np.testing.assert_array_equal(a[name], b[name])
        assert a[name].dtype == np.float32 and a[name].shape == param_shapes(cfg)[name]
    assert not np.array_equal(a["wte"], c["wte"])
    assert math.isclose(float(a["fcw"].std()), 0.02, rel_tol=0.02)
    scaled = 0.02 / math.sqrt(2 * cfg.n_layer)
    assert math.isclose(float(a["attprojw"].std()), scaled, rel_tol=0.02)
    assert math.isclose(float(a["fcprojw"].std()), scaled, rel_tol=0.02)
    for name in ("qkvb", "attprojb", "fcb", "fcprojb", "ln1b", "ln2b", "lnfb"):
        assert np.all(a[name] == 0), name
    for name in ("ln1w", "ln2w", "lnfw"):
        assert np.all(a[name] == 1), name


def test_init_seed_defaults_to_defaults_seed_and_dtypes_share_values() -> None:
    """seed=None uses defaults.seed; float64 init rounds to the float32 init exactly."""
    cfg = PRESETS["tiny"]
    np.testing.assert_array_equal(
        init_params(cfg)["wte"], init_params(cfg, seed=DEFAULTS.seed)["wte"]
    )
    other = dataclasses.replace(DEFAULTS, seed=DEFAULTS.seed + 1)
    assert not np.array_equal(init_params(cfg)["wte"], init_params(cfg, other)["wte"])
    p64 = init_params(cfg, dtype=np.float64)
    np.testing.assert_array_equal(p64["qkvw"].astype(np.float32), init_params(cfg)["qkvw"])


def test_flatten_follows_param_names_order_and_round_trips() -> None:
    """flatten concatenates in PARAM_NAMES order; unflatten restores every tensor."""
    cfg = PRESETS["small"]
    params = init_params(cfg)
    flat = flatten_params(cfg, params)
    assert flat.shape == (param_count(cfg),) and flat.dtype == np.float32
    np.testing.assert_array_equal(flat[: 128 * 64], params["wte"].reshape(-1))
    np.testing.assert_array_equal(flat[-64:], params["lnfb"])
    np.testing.assert_array_equal(flat[-128:-64], params["lnfw"])
    back = unflatten_params(cfg, flat)
    assert list(back) == list(PARAM_NAMES)
    for name in PARAM_NAMES:
        np.testing.assert_array_equal(back[name], params[name])


def test_bad_params_and_tokens_are_named() -> None:
    """Wrong flat length, a misshapen tensor and out-of-range ids raise ValueError naming them."""
    cfg = PRESETS["tiny"]
    with pytest.raises(ValueError, match=r"flat has shape \(10,\), expected \(\d+,\)"):
        unflatten_params(cfg, np.zeros(10, np.float32))
    params = init_params(cfg)
    params["qkvb"] = np.zeros((1, 47), np.float32)
    with pytest.raises(ValueError, match=r"param qkvb has shape \(1, 47\), expected \(1, 48\)"):
        check_params(cfg, params)
    model = GPT(cfg, init_params(cfg))
    with pytest.raises(ValueError, match=r"idx has shape \(1, 17\)"):
        model.forward(np.zeros((1, 17), np.int32))
    with pytest.raises(ValueError, match=r"targets holds ids in \[0, 128\]"):
        model.forward(np.zeros((1, 2), np.int32), np.array([[0, 128]]))


def test_decayed_params_are_exactly_the_2d_weight_matrices() -> None:
    """Weight decay targets wte, wpe and the four per-layer weight matrices, nothing else."""
    shapes = param_shapes(PRESETS["small"])
    stacked = {n for n, s in shapes.items() if len(s) == 3} | {"wte", "wpe"}
    assert stacked == DECAYED_PARAMS
