"""The tolerance policy table: baselines, reduction scaling, exact rules, ULP distance."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.tolerance import (
    BASELINE,
    OP_RULES,
    model_tolerance,
    op_tolerance,
    reduction_scale,
    ulp_distance,
)


def test_baselines_are_torch_testing_defaults() -> None:
    """float32 is rtol 1.3e-6 / atol 1e-5 and float64 is 1e-7 / 1e-7, as torch.testing."""
    assert (BASELINE["float32"].rtol, BASELINE["float32"].atol) == (1.3e-6, 1e-5)
    assert (BASELINE["float64"].rtol, BASELINE["float64"].atol) == (1e-7, 1e-7)


def test_reduction_scales_by_sqrt_of_length_and_names_it() -> None:
    """A dot product over C=256 gets 16x the baseline, and the reason names C=256."""
    tol = op_tolerance("matmul_forward", "out", {"N": 3, "C": 256, "OC": 5})
    assert tol.rtol == pytest.approx(1.3e-6 * 16)
    assert tol.atol == pytest.approx(1e-5 * 16)
    assert "C=256" in tol.reason and "torch.testing" in tol.reason


def test_elementwise_and_exact_rules() -> None:
    """gelu gets a per-element bound; residual and embedding forward must be correctly rounded."""
    gelu = op_tolerance("gelu_forward", "out", {"N": 7})
    assert gelu.per_element and "tanh" in gelu.reason
    assert op_tolerance("residual_forward", "out", {"N": 7}).max_ulp == 0
    assert op_tolerance("embedding_forward", "out", {}).max_ulp == 0
    assert "correctly rounded" in op_tolerance("residual_backward", "da", {}).reason


def test_exp_conditioning_scales_softmax_outputs_by_the_logit_magnitude() -> None:
    """Softmax probabilities with logits of +-100 get 100x, and the reason says exp's |x|."""
    plain = op_tolerance("crossentropy_forward", "probs", {"V": 128, "logit": 0.5})
    large = op_tolerance("crossentropy_forward", "probs", {"V": 128, "logit": 100.0})
    assert large.rtol == pytest.approx(plain.rtol * 100)
    assert "condition number" in large.reason
    with pytest.raises(KeyError, match="'logit'"):
        op_tolerance("attention_forward", "att", {"T": 4, "hs": 2})


def test_every_rule_has_a_reason() -> None:
    """No tolerance in the table is without its written reason."""
    assert all(rule.reason for rule in OP_RULES.values())


def test_unknown_op_output_and_missing_dim_are_named() -> None:
    """Asking for an op with no rule, or a rule whose dim the case lacks, says which."""
    with pytest.raises(KeyError, match=r"softmax_forward\.out"):
        op_tolerance("softmax_forward", "out", {})
    with pytest.raises(KeyError, match="'OC'"):
        op_tolerance("matmul_backward", "dinp", {"N": 2, "C": 3})


def test_reduction_scale_rejects_empty_reductions() -> None:
    """A reduction over zero terms is a bug in the caller, not a factor of 0."""
    assert reduction_scale(1) == 1.0
    with pytest.raises(ValueError, match="reduction length"):
        reduction_scale(0)


def test_model_gradient_rule_is_relative_to_the_tensor() -> None:
    """Gradient tolerances scale atol by the tensor's magnitude and say why."""
    rule = model_tolerance("grad", n_layer=2, n_embd=64, seq_len=64, batch=4)
    assert rule.relative_to_max
    assert "1/(B*T)" in rule.tolerance.reason
    with pytest.raises(KeyError, match="known"):
        model_tolerance("nope", n_layer=1, n_embd=1, seq_len=1, batch=1)


def test_ulp_distance_counts_across_zero_and_ignores_signed_zero() -> None:
    """ULPs follow float order: +0 and -0 are equal, and -tiny..+tiny is 2 apart."""
    tiny = np.float32(np.finfo(np.float32).smallest_subnormal)
    found = np.array([1.0, -0.0, -tiny, np.nextafter(np.float32(1), np.float32(2))], np.float32)
    expected = np.array([1.0, 0.0, tiny, 1.0], np.float64)
    assert ulp_distance(found, expected).tolist() == [0, 0, 2, 1]


def test_float32_reference_passes_and_a_real_error_fails() -> None:
    """The policy admits a float32 matmul against float64 but not a 1e-3 relative error."""
    rng = np.random.default_rng(0)
    C = 777
    x = rng.standard_normal((9, C)).astype(np.float32)
    w = rng.standard_normal((5, C)).astype(np.float32)
    exact = x.astype(np.float64) @ w.astype(np.float64).T
    f32 = x @ w.T
    tol = op_tolerance("matmul_forward", "out", {"C": C})
    bound = tol.atol + tol.rtol * np.abs(exact)
    assert (np.abs(f32 - exact) <= bound).all()
    assert not (np.abs(f32 * np.float32(1.001) - exact) <= bound).all()
    assert math.isclose(tol.rtol, 1.3e-6 * math.sqrt(C))


def test_wgsl_arithmetic_allows_a_flushed_subnormal_and_ieee_does_not() -> None:
    """The GPU policy's subnormal floor (docs/tolerance.md "GPU (WGSL) kernels"): WGSL may
    flush a subnormal result to 0, so (p - onehot) * dloss = 9.9e-39 coming back as 0 (measured
    on SwiftShader, the large case) is within the wgsl bound and outside the IEEE one, where
    gradual underflow keeps it to half a subnormal spacing."""
    from harness.tolerance import FLT_MIN, ROUNDINGS, SUBNORMAL_HALF_SPACING, elementwise_bound

    probs = np.array([[8.9e-38, 0.5]], dtype=np.float32)
    inputs = {"probs": probs, "targets": np.array([1], dtype=np.int32), "dloss": 1 / 9}
    expected = np.array([[8.9e-38 / 9, -0.5 / 9]])  # 9.9e-39: a subnormal float32
    key = ("crossentropy_backward", "dlogits")
    ieee = elementwise_bound(*key, inputs, expected)
    wgsl = elementwise_bound(*key, inputs, expected, "wgsl")
    lost = expected[0, 0]  # a flushed result loses all of itself
    assert ieee.bound[0, 0] < lost <= wgsl.bound[0, 0]
    assert wgsl.bound[0, 0] - ieee.bound[0, 0] == pytest.approx(
        ROUNDINGS[key] * (FLT_MIN - SUBNORMAL_HALF_SPACING)
    )


def test_wgsl_arithmetic_widens_gelu_by_the_inherited_tanh_and_adamw_by_divide_and_sqrt() -> None:
    """WGSL's tanh is inherited from exp (3 + 2|z| ULP each) and its / and sqrt are 2.5 and
    4.5 ULP: the wgsl bounds are wider than the IEEE ones, element by element, and by no more
    than the exp term allows for gelu (|z| <= 10 after the kernel's clamp)."""
    from harness.checks.ops import _make_adamw, cases
    from harness.tolerance import FLT_MIN, ROUNDINGS, U32, elementwise_bound
    from reference import ops as ref_ops
    from reference.presets import PRESETS

    x = np.linspace(-6, 6, 101).astype(np.float32)
    x64 = x.astype(np.float64)
    expected = 0.5 * x64 * (1 + np.tanh(np.sqrt(2 / np.pi) * (x64 + 0.044715 * x64**3)))
    ieee = elementwise_bound("gelu_forward", "out", {"x": x}, expected)
    wgsl = elementwise_bound("gelu_forward", "out", {"x": x}, expected, "wgsl")
    assert np.all(wgsl.bound > ieee.bound)
    # the added tanh error is at most (2 e_exp + 7u) |0.5 x|, e_exp = (3 + 2*10) * 2u, plus the
    # flushed-subnormal floor
    added = np.abs(0.5 * x.astype(np.float64)) * (2 * 46 * U32 + 7 * U32)
    assert np.all(wgsl.bound - ieee.bound <= added + ROUNDINGS[("gelu_forward", "out")] * FLT_MIN)
    case = next(c for c in cases(PRESETS["tiny"], seed=0) if c.name == "odd")
    a = _make_adamw(np.random.default_rng(0), case)
    wide = {k: np.asarray(a[k], np.float64) for k in "pgmv"}
    p_new, _, _ = ref_ops.adamw_update(
        wide["p"], wide["g"], wide["m"], wide["v"],
        a["lr"], a["beta1"], a["beta2"], a["eps"], a["wd"], a["t"],
    )  # fmt: skip
    p = np.asarray(p_new, dtype=np.float64)
    ieee_p = elementwise_bound("adamw_update", "params", a, p)
    wgsl_p = elementwise_bound("adamw_update", "params", a, p, "wgsl")
    assert np.all(wgsl_p.bound >= ieee_p.bound) and np.any(wgsl_p.bound > ieee_p.bound)
    with pytest.raises(ValueError, match="unknown arithmetic"):
        elementwise_bound("adamw_update", "params", a, p, "cuda")
