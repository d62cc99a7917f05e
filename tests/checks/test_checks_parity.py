"""The one comparison helper: stages shape -> dtype -> nonfinite -> values, and its metrics."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from harness.parity import ParityError, assert_parity, compare
from harness.tolerance import BASELINE, GELU_COEF, GELU_SCALE, Tolerance, elementwise_bound

TOL = BASELINE["float32"]


def test_shape_stage_is_named_first() -> None:
    """A wrong shape fails at the shape stage even when dtype and values are also wrong."""
    r = compare("op.out", np.zeros((2, 3), np.float64), np.zeros((3, 2)), TOL)
    assert r.stage == "shape" and "(2, 3)" in r.message and "(3, 2)" in r.message


def test_dtype_stage() -> None:
    """A float64 kernel output where float32 is promised fails at the dtype stage."""
    r = compare("op.out", np.zeros(4, np.float64), np.zeros(4), TOL)
    assert r.stage == "dtype" and "float64" in r.message


def test_nonfinite_stage_reports_the_first_index() -> None:
    """A NaN or Inf in the output fails with the first such index and both values."""
    found = np.ones((3, 4), np.float32)
    found[1, 2] = np.inf
    found[2, 0] = np.nan
    r = compare("softmax.probs", found, np.ones((3, 4)), TOL)
    assert r.stage == "nonfinite"
    assert r.worst_index == (1, 2)
    assert "index (1, 2)" in r.message and "inf" in r.message and "2 of 12" in r.message


def test_matching_infinities_are_not_nonfinite_failures() -> None:
    """An -inf the reference also has (a masked score) is a match, not a failure."""
    found = np.array([-np.inf, 1.0], np.float32)
    assert compare("att.preatt", found, np.array([-np.inf, 1.0]), TOL).ok


def test_values_stage_reports_worst_index_both_values_and_tolerance() -> None:
    """The worst element by tolerance ratio is named with found, expected and the bound."""
    expected = np.linspace(-1, 1, 12).reshape(3, 4)
    found = expected.astype(np.float32)
    found[2, 1] += np.float32(1e-3)
    r = compare("matmul.out", found, expected, TOL)
    assert r.stage == "values"
    assert r.worst_index == (2, 1)
    assert r.found_at_worst == pytest.approx(expected[2, 1] + 1e-3, rel=1e-6)
    assert r.expected_at_worst == expected[2, 1]
    assert r.max_abs_err == pytest.approx(1e-3, rel=1e-3)
    assert r.max_ulp > 1000
    assert "rtol=1.3e-06 atol=1e-05" in r.message and "(2, 1)" in r.message


def test_rounding_to_float32_passes_with_zero_ulps() -> None:
    """The float64 reference rounded to float32 is 0 ULP away and passes."""
    expected = np.random.default_rng(1).standard_normal(100)
    r = compare("x", expected.astype(np.float32), expected, TOL)
    assert r.ok and r.max_ulp == 0 and r.max_abs_err < 1e-6


def test_exact_rule_rejects_one_ulp() -> None:
    """Under an exact rule a one-ULP difference fails with an infinite ratio."""
    exact = Tolerance(0.0, 0.0, "exact")
    e = np.array([1.0, 2.0])
    f = np.array([1.0, np.nextafter(np.float32(2), np.float32(3))], np.float32)
    r = compare("residual.out", f, e, exact)
    assert r.stage == "values" and r.max_ulp == 1 and r.worst_index == (1,)


def test_relative_to_max_scales_atol_by_the_tensor() -> None:
    """With relative_to_max an error of 1e-8 on a 1e-4-scale gradient counts (atol -> 1e-9)."""
    e = np.array([1e-4, 0.0])
    f = np.array([1e-4, 1e-8], np.float32)
    assert compare("g", f, e, TOL).ok
    assert compare("g", f, e, TOL, relative_to_max=True).stage == "values"


def test_max_blocks_scale_atol_by_each_blocks_own_max() -> None:
    """A gradient of two blocks, 1e-2 and 1e-5 in scale (v's and q's in a fused qkv): a 2x error
    in the small block passes against the whole tensor's max and fails against its own."""
    e = np.array([[1e-2, -1e-2], [1e-5, -2e-5]])
    f = np.array([[1e-2, -1e-2], [1e-5, -4e-5]], np.float32)
    tol = Tolerance(0.0, 0.01, "1% of the max")  # 1e-4 against the whole, 2e-7 against q's
    assert compare("g", f, e, tol, relative_to_max=True).ok
    r = compare("g", f, e, tol, relative_to_max=True, max_blocks=(2,))
    assert r.stage == "values" and r.worst_index == (1, 1)
    assert "of its block of 2" in r.message
    with pytest.raises(ValueError, match="do not divide"):
        compare("g", f, e, tol, relative_to_max=True, max_blocks=(3,))


def test_integer_outputs_compare_exactly() -> None:
    """Token ids must be identical; the first differing position is named."""
    r = compare("tokens", np.array([5, 6, 9], np.int32), np.array([5, 7, 8]), TOL, dtype="int32")
    assert r.stage == "values" and r.worst_index == (1,) and "found 6, expected 7" in r.message


def test_assert_parity_raises_with_the_stage() -> None:
    """assert_parity raises ParityError whose message names the failing stage."""
    with pytest.raises(ParityError, match="dtype stage"):
        assert_parity("x", np.zeros(2, np.float16), np.zeros(2), TOL)
    assert assert_parity("x", np.zeros(2, np.float32), np.zeros(2), TOL).ok


def _gelu(x: NDArray[np.float64], coef: float) -> NDArray[np.float64]:
    """tanh-approximation gelu in float64 with ``coef`` for 0.044715."""
    out: NDArray[np.float64] = 0.5 * x * (1 + np.tanh(GELU_SCALE * (x + coef * x**3)))
    return out


def test_the_bias_headline_names_the_constant_furthest_over_its_limit() -> None:
    """gelu with 0.044715 made 0.0447155 (1.12e-5 relative, gpuformer's gelu_subtle): every
    constant's estimate goes over its limit, 0.044715's the most; the headline names it and its
    estimate (was: the first over its limit in listing order, sqrt(2/pi), off by 6e-7)."""
    x = np.random.default_rng(0).uniform(-4, 4, 65536).astype(np.float32)
    expected = _gelu(x.astype(np.float64), GELU_COEF)
    found = _gelu(x.astype(np.float64), GELU_COEF * (1 + 1.12e-5)).astype(np.float32)
    bound = elementwise_bound("gelu_forward", "out", {"x": x}, expected)
    estimates = {c.name: c for c in bound.constants(found.astype(np.float64) - expected)}
    # the premise: more than one constant is over its limit, and not the first listed the most
    over = [name for name, c in estimates.items() if c.ratio > 1.0]
    assert over[0] == "sqrt(2/pi)" and "0.044715" in over
    assert estimates["0.044715"].ratio > estimates["sqrt(2/pi)"].ratio
    r = compare("gelu_forward.out", found, expected, TOL, bound=bound)
    assert r.stage == "bias"
    head = r.message.split("; ")[0]
    coef = estimates["0.044715"]
    assert head == (
        f"gelu_forward.out: bias stage: a systematic error, as if constant 0.044715 were off by "
        f"{coef.estimate:.3g} relative ({coef.ratio:.3g}x its limit)"
    )
    assert abs(coef.estimate - 1.12e-5) < 1e-6  # the estimate recovers the injected error
    # every constant's estimate stays in the detail (docs/checks.md)
    for name in estimates:
        assert f"constant {name}: estimated relative error" in r.message
