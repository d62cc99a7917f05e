"""Element-wise tolerances from float32 error analysis (issue 15 part 3).

Each element-wise op output is judged against its per-element float32 bound (values stage) and
by the least-squares estimate of each of its constants' relative error (bias stage). Clean: every
case of every seed within 0.5x of both bounds. Each fault build moves one constant of one op by
1 part in 1e5 and must fail that op.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from harness.artifact import Artifact
from harness.checks.ops import SPECS, Case, cases, op_parity
from harness.engines.ctypes_engine import CtypesInstance
from harness.kernel import Kernels
from harness.parity import ParityResult
from harness.tolerance import ELEMENTWISE_RULES
from reference.presets import PRESETS

Fault = Callable[[str], tuple[CtypesInstance, Artifact]]
ELEMENTWISE_OPS = sorted({op for op, _ in ELEMENTWISE_RULES})


def _results(kernels: Kernels, op: str, seed: int) -> list[tuple[Case, ParityResult]]:
    out = []
    for case in cases(PRESETS["tiny"], seed):
        if case.logit and not SPECS[op].softmax:
            continue
        out += [(case, r) for r in op_parity(kernels, op, case, seed)]
    return out


@pytest.mark.parametrize("op", ELEMENTWISE_OPS)
def test_clean_build_sits_within_half_of_every_bound(native_kernels: Kernels, op: str) -> None:
    """Seeds 0..2, every case (the dense one included): values and bias ratios <= 0.5."""
    for seed in range(3):
        for case, r in _results(native_kernels, op, seed):
            assert r.ok, r.message
            assert r.worst_ratio <= 0.5, f"[{case.describe()}] {r.message}"


def test_dense_case_reaches_the_bias_stage(native_kernels: Kernels) -> None:
    """The dense case reports every gelu constant's estimated error and its limit."""
    dense = next(c for c in cases(PRESETS["tiny"], 0) if c.dense)
    (r,) = op_parity(native_kernels, "gelu_forward", dense, 0)
    for name in ("sqrt(2/pi)", "0.044715", "0.5"):
        assert f"constant {name}: estimated relative error" in r.message


@pytest.mark.parametrize(
    ("variant", "op", "stage"),
    [
        ("native-bug-gelu-coef", "gelu_forward", "bias"),
        ("native-bug-gelu-coef", "gelu_backward", "bias"),
        ("native-bug-gelu-coef-bwd", "gelu_backward", "bias"),
        ("native-bug-gelu-scale", "gelu_forward", "values"),
        ("native-bug-gelu-scale", "gelu_backward", "values"),
        ("native-bug-gelu-half", "gelu_forward", "values"),
        ("native-bug-gelu-half", "gelu_backward", "values"),
        ("native-bug-one", "crossentropy_backward", "values"),
        ("native-bug-one", "adamw_update", "values"),
    ],
)
def test_a_constant_off_by_1e5_fails(fault: Fault, variant: str, op: str, stage: str) -> None:
    """The fault build fails ``op`` (at seed 0) at the stage that should see it."""
    instance, _ = fault(variant)
    failed = [(c, r) for c, r in _results(Kernels(instance), op, 0) if not r.ok]
    assert failed, f"{variant} passed every {op} case"
    assert stage in {r.stage for _, r in failed}, [r.message for _, r in failed]


def test_backward_only_fault_leaves_the_forward_clean(fault: Fault) -> None:
    """The bias stage names the op that carries the fault: gelu_forward still passes."""
    instance, _ = fault("native-bug-gelu-coef-bwd")
    assert all(r.ok for _, r in _results(Kernels(instance), "gelu_forward", 0))
