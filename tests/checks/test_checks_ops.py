"""Op parity through the native engine: one-line tests over ops x cases, and the check's rows."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.artifact import Artifact
from harness.bindings import bundled
from harness.checks.base import CellContext
from harness.checks.ops import OPS, SPECS, Case, assert_op_parity, cases, op_parity, run
from harness.engines.ctypes_engine import CtypesInstance
from harness.kernel import Kernels, Override
from harness.parity import ParityError
from reference.presets import PRESETS

SMALL = PRESETS["small"]
CASES = {c.name: c for c in cases(SMALL, seed=0)}
BOUND = [op for op in OPS if op in bundled().ops]  # the bundled library's ops
# ln_eps exercises an eps argument; the bundled binding fixes eps, so the check skips it there
# (lib2 takes eps: tests/checks/test_checks_ops_eps.py)
GRID = [(op, name) for op in BOUND for name, c in CASES.items()
        if (not c.logit or SPECS[op].softmax) and name != "ln_eps"]  # fmt: skip


@pytest.mark.parametrize(("op", "case"), GRID)
def test_op_parity(native_kernels: Kernels, op: str, case: str) -> None:
    """Each op matches the float64 reference on each shape case, within the written tolerance."""
    assert_op_parity(native_kernels, op, CASES[case])


@settings(max_examples=12, deadline=None, derandomize=True)
@given(
    op=st.sampled_from(["layernorm_backward", "matmul_backward", "attention_forward",
                        "crossentropy_forward"]),
    B=st.integers(1, 3), T=st.integers(1, 19), NH=st.integers(1, 3), hs=st.integers(1, 11),
    N=st.integers(1, 23), OC=st.integers(1, 29), V=st.integers(1, 70),
)  # fmt: skip
def test_op_parity_property(
    native_kernels: Kernels, op: str, B: int, T: int, NH: int, hs: int, N: int, OC: int, V: int
) -> None:
    """Hypothesis-drawn shapes (sizes 1, odd, SIMD tails) keep parity on the reduction-heavy ops."""
    dims = {"B": B, "T": T, "NH": NH, "hs": hs, "C": NH * hs, "N": N, "OC": OC, "V": V}
    assert_op_parity(native_kernels, op, Case("hypothesis", dims))


def test_lnback_bug_fails_naming_layernorm_backward(lnback: CtypesInstance) -> None:
    """The TG_BUG_LAYERNORM_BACKWARD build fails the values stage of layernorm_backward.dinp."""
    with pytest.raises(ParityError, match=r"layernorm_backward\.dinp.*values stage") as info:
        assert_op_parity(Kernels(lnback), "layernorm_backward", CASES["odd"])
    assert "rtol=" in str(info.value) and "worst at index" in str(info.value)


def test_lnback_bug_leaves_forward_and_weight_grads_passing(lnback: CtypesInstance) -> None:
    """The bug only touches dinp: forward, dweight and dbias still pass (the check is precise)."""
    k = Kernels(lnback)
    assert_op_parity(k, "layernorm_forward", CASES["odd"])
    by_name = {r.name: r.ok for r in op_parity(k, "layernorm_backward", CASES["odd"])}
    assert by_name == {
        "layernorm_backward.dinp": False,
        "layernorm_backward.dweight": True,
        "layernorm_backward.dbias": True,
    }


def test_large_logits_include_a_row_past_float32_exp_overflow() -> None:
    """The large case spans +-80 and one row goes past log(FLT_MAX) = 88.7."""
    c = CASES["large"]
    inputs = SPECS["crossentropy_forward"].make(np.random.default_rng(0), c)
    logits = inputs["logits"]
    assert logits[1:].max() <= 80 and logits.min() >= -80
    assert logits[0].max() > math.log(np.finfo(np.float32).max)


def test_cases_cover_one_odd_and_simd_tails() -> None:
    """The fixed cases include all-ones dims and channel counts that are not a multiple of 4/8."""
    assert set(CASES["one"].dims.values()) == {1}
    assert CASES["simd_tail"].dims["C"] % 4 and CASES["simd_tail"].dims["OC"] % 8
    assert cases(SMALL, seed=1)[3].dims != cases(SMALL, seed=2)[3].dims  # the random case is seeded


def _ctx(instance: CtypesInstance, artifact: Artifact, **options: object) -> CellContext:
    return CellContext("native", "ctypes", artifact, PRESETS["tiny"], instance, options=options)


def test_check_rows_pass_on_the_real_kernels(
    native: CtypesInstance, native_artifact: Artifact
) -> None:
    """The ops check yields three metric rows per op output, all passing, with the tolerance."""
    all_rows = list(run(_ctx(native, native_artifact)))
    skipped = {r.subject: r.detail for r in all_rows if r.status == "skipped"}
    assert sorted(skipped) == sorted(set(OPS) - set(BOUND))
    assert all("not bound by the tinygpt binding" in d for d in skipped.values())
    rows = [r for r in all_rows if r.status != "skipped"]
    outputs = {r.subject for r in rows}
    assert len(rows) == 3 * len(outputs) and "layernorm_backward.dinp" in outputs
    assert {r.metric for r in rows} == {"max_abs_err", "max_rel_err", "max_ulp"}
    assert {r.status for r in rows} == {"pass"}, [r.detail for r in rows if r.status != "pass"][:3]
    assert all(r.check == "ops" for r in rows)
    assert all(any(k in r.detail for k in ("rtol=", "max_ulp=", "per-element")) for r in rows)


def test_check_rows_fail_on_the_lnback_bug(
    lnback: CtypesInstance, lnback_artifact: Artifact
) -> None:
    """On the bug variant exactly layernorm_backward.dinp fails, its detail naming the values."""
    rows = list(run(_ctx(lnback, lnback_artifact, ops=["layernorm_forward", "layernorm_backward"])))
    failed = {r.subject for r in rows if r.status == "fail"}
    assert failed == {"layernorm_backward.dinp"}
    detail = next(r.detail for r in rows if r.status == "fail")
    assert "values stage" in detail and "found" in detail and "expected" in detail


@pytest.mark.parametrize(
    ("options", "message"),
    [({"seed": -1}, "seed"), ({"ops": ["softmax"]}, "unknown op"), ({"x": 1}, "unknown option")],
)
def test_validate_options(options: dict[str, object], message: str) -> None:
    """A bad [check.ops] table is refused naming the field."""
    from harness.checks.ops import validate_options

    with pytest.raises(ValueError, match=message):
        validate_options(options)


def test_off_by_one_dim_is_named(native_kernels: Kernels) -> None:
    """A call passing N one short (the last element stays NaN) is diagnosed as off by one."""
    short = native_kernels.overridden(Override(native_kernels.bound("gelu_forward"), {"N": -1}))
    with pytest.raises(ParityError, match=r"gelu_forward\.out fails parity; with N passed as N\+1"):
        assert_op_parity(short, "gelu_forward", CASES["odd"])


def test_nan_sentinel_catches_an_unwritten_output(native_kernels: Kernels) -> None:
    """An output the library never writes stays NaN and fails the non-finite stage by name."""
    n = CASES["odd"].dims["N"] * CASES["odd"].dims["C"]  # residual's N counts every element
    call = native_kernels.bound("residual_forward")
    silent = native_kernels.overridden(Override(call, {"N": -n}))  # the library gets N = 0
    by_name = {r.name: r for r in op_parity(silent, "residual_forward", CASES["odd"])}
    assert by_name["residual_forward.out"].stage == "nonfinite"


def test_layernorm_eps_other_than_the_fixed_one_is_refused(native_kernels: Kernels) -> None:
    """The bundled binding fixes eps at 1e-5: asking for another eps is a ValueError."""
    x, w = np.ones((2, 3), np.float32), np.ones(3, np.float32)
    with pytest.raises(ValueError, match="fixes layernorm_forward's eps at 1e-05"):
        native_kernels.layernorm_forward(x, w, w, eps=1e-6)


def test_a_kernel_wrong_at_odd_sizes_is_not_blamed_on_the_binding(
    fault: Callable[[str], tuple[CtypesInstance, Artifact]],
) -> None:
    """gelu wrong at odd N only: its first case (N = 1) fails, later even ones pass with the
    declared N, so "N passed as N+1" (which makes N even) is not offered as the cause: the
    diagnosis runs once every case has, and a declared dim that passed a case is not off by
    one. The failure says what differs, with no wrong-binding diagnosis."""
    inst, artifact = fault("native-bug-gelu-odd")
    rows = list(run(_ctx(inst, artifact, ops=["gelu_forward"])))
    failed = [r for r in rows if r.status == "fail"]
    assert failed and {r.subject for r in failed} == {"gelu_forward.out"}
    assert all("off by one" not in r.detail and "it passes" not in r.detail for r in failed)
    assert "found 0.5, expected" in failed[0].detail
