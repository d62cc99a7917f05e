"""The accumulator probe (harness.checks.ops_accumulate) on the bundled library, built natively.

The bundled kernels add into every buffer the bundled binding calls an accumulator, so each
probes clean. The overwriting kernels are real ones bound with the wrong role: the bundled
matmul_forward writes ``out`` (an ``output``) and crossentropy_backward's ``dlogits`` is bound
as an ``output`` below; plus a view of the native instance that zeroes a gradient buffer just
before the call, which turns the real ``dx += ...`` into exactly the user's ``dx = ...``.
"""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType

import pytest

from harness.bindings import CallBinding
from harness.bindings.canonical import Role
from harness.checks.ops import Case, cases, kernel_parity, prepare
from harness.checks.ops_accumulate import (
    PROBE_CASE,
    AccumulatorFinding,
    _NaNPrefill,
    accumulators,
    overwritten_accumulators,
    probe_accumulators,
    probe_case,
)
from harness.hosts.base import Instance, Scalar
from harness.kernel import Kernels, Override
from reference.presets import PRESETS

CASES = cases(PRESETS["small"], seed=0)
CASE = probe_case(CASES)
# The bundled binding's accumulators (harness/bindings/tinygpt.toml, the canonical defaults),
# in each export's argument order.
BUNDLED: dict[str, tuple[str, ...]] = {
    "embedding_backward": ("dwte", "dwpe"),
    "layernorm_backward": ("dx", "dw", "db"),
    "matmul_backward": ("dx", "dW", "db"),
    "attention_backward": ("dqkv",),
    "gelu_backward": ("dx",),
    "residual_backward": ("da", "db"),
    "crossentropy_backward": ("dlogits",),
}


def _with_roles(kernels: Kernels, op: str, **roles: Role) -> Kernels:
    """``kernels`` with ``op``'s binding given ``roles`` (what a ``roles = {...}`` line does)."""
    call = kernels.bound(op)
    changed = replace(call, roles=MappingProxyType({**call.roles, **roles}))
    return kernels.overridden(Override(changed))


class _Zeroing(_NaNPrefill):
    """A fake library: ``inner`` whose export for ``call`` zeroes ``args`` before it runs (the
    probe's view is reused for its bookkeeping of buffer sizes; it probes nothing itself).

    The bundled kernels accumulate, so zeroing first makes them overwrite (``dx = g``), the
    fault of the user's repro, while every other element stays the real kernel's.
    """

    def __init__(self, inner: Instance, call: CallBinding, args: tuple[str, ...]) -> None:
        """Zero ``args`` of ``call``'s export before each call of it."""
        super().__init__(inner, call)
        self.zeroed = args

    def call(self, name: str, *args: Scalar) -> Scalar | None:
        """Zero the chosen buffers, then call the real export."""
        if name == self.target.export:
            for arg in self.zeroed:
                ptr = int(args[self.target.args.index(arg)] or 0)
                if ptr and self.sizes.get(ptr, 0):
                    self.inner.write(ptr, bytes(self.sizes[ptr]))
        return self.inner.call(name, *args)


def _overwriting(kernels: Kernels, op: str, *args: str) -> Kernels:
    """``kernels`` whose ``op`` overwrites ``args`` instead of adding into them."""
    return Kernels(_Zeroing(kernels.instance, kernels.bound(op), args))


def test_probe_case_is_small_with_a_bias() -> None:
    """The probe runs on ``simd_tail`` (a bias, odd sizes), or the first case when it is absent."""
    assert CASE.name == PROBE_CASE
    assert probe_case([c for c in CASES if c.name != PROBE_CASE]).name == CASES[0].name
    with pytest.raises(ValueError, match="no case"):
        probe_case([])


def test_bundled_binding_accumulators(native_kernels: Kernels) -> None:
    """The bundled binding declares exactly these accumulators, so the probe covers them all."""
    bound = native_kernels.instance.artifact.bound().ops
    found = {op: accumulators(call) for op, call in bound.items() if accumulators(call)}
    assert found == BUNDLED


@pytest.mark.parametrize("op", sorted(BUNDLED))
def test_bundled_library_adds_into_every_accumulator(native_kernels: Kernels, op: str) -> None:
    """Every bundled backward op leaves all of a NaN-prefilled accumulator NaN: it reads it."""
    probes = probe_accumulators(native_kernels, prepare(native_kernels, op, CASE))
    assert [p.arg for p in probes] == list(BUNDLED[op])  # every one judged (db: a bias case)
    assert all(p.ok and p.total > 0 for p in probes), [p.message for p in probes]
    assert overwritten_accumulators(native_kernels, prepare(native_kernels, op, CASE)) == []


@pytest.mark.parametrize("op", ["matmul_forward", "layernorm_forward", "adamw_update"])
def test_op_without_accumulators_has_no_probe(native_kernels: Kernels, op: str) -> None:
    """An op whose binding declares no accumulator (outputs, AdamW's inouts): nothing to probe."""
    assert probe_accumulators(native_kernels, prepare(native_kernels, op, CASE)) == []


def test_real_overwriting_kernel_bound_as_accumulator(native_kernels: Kernels) -> None:
    """The bundled matmul_forward overwrites ``out``: bound as an accumulator, the probe says so,
    where parity on a zeroed buffer passes it."""
    wrong = _with_roles(native_kernels, "matmul_forward", out="accumulator")
    prepared = prepare(wrong, "matmul_forward", CASE)
    (finding,) = overwritten_accumulators(wrong, prepared)
    N, OC = CASE.dims["N"], CASE.dims["OC"]
    assert (finding.op, finding.arg, finding.written, finding.total) == (
        "matmul_forward", "out", N * OC, N * OC,
    )  # fmt: skip
    assert finding.subject == "matmul_forward.out:accumulates"
    assert "by its roles table" in finding.message
    assert 'declare roles = { out = "output" }' in finding.message


def test_overwritten_gradient_is_found_by_name(native_kernels: Kernels) -> None:
    """matmul_backward overwriting ``dx`` (the user's repro) is one finding, for ``dx`` alone,
    with every element written; dW and db still accumulate."""
    fake = _overwriting(native_kernels, "matmul_backward", "dx")
    probes = probe_accumulators(fake, prepare(fake, "matmul_backward", CASE))
    bad = [p for p in probes if not p.ok]
    assert [p.arg for p in bad] == ["dx"]
    n = CASE.dims["N"] * CASE.dims["C"]  # dx has x's shape (N, C)
    assert (bad[0].written, bad[0].total) == (n, n)
    assert bad[0].message.startswith(
        "matmul_backward: dx is an accumulator in the tinygpt binding (tg_matmul_backward"
    )
    assert "by the canonical default of matmul_backward.dx" in bad[0].message
    assert f"wrote {n} of {n} elements over a NaN prefill without adding to it: it overwrites" in (
        bad[0].message
    )


def test_kernel_that_zeroes_its_accumulator_first_is_found(native_kernels: Kernels) -> None:
    """A kernel that clears its accumulator before adding (memset, then +=) overwrites too: all
    of dwte counts as written, the rows no id hits included (they come back 0, not NaN)."""
    fake = _overwriting(native_kernels, "embedding_backward", "dwte")
    prepared = prepare(fake, "embedding_backward", CASE)
    rows = len(set(prepared.inputs["idx"].ravel().tolist()))
    assert rows < CASE.dims["V"]  # some rows are not hit: only the clear writes them
    (finding,) = overwritten_accumulators(fake, prepared)
    assert finding.arg == "dwte"
    assert finding.written == finding.total == CASE.dims["V"] * CASE.dims["C"]


def test_output_role_is_not_probed(native_kernels: Kernels) -> None:
    """An argument the binding switches to ``output`` (lib2's dx) may be overwritten: not probed,
    so an overwriting kernel bound that way has no finding."""
    fake = _overwriting(native_kernels, "matmul_backward", "dx")
    declared = _with_roles(fake, "matmul_backward", dx="output")
    probes = probe_accumulators(declared, prepare(declared, "matmul_backward", CASE))
    assert [p.arg for p in probes] == ["dW", "db"]
    assert all(p.ok for p in probes)


def test_null_optional_accumulator_is_not_judged(native_kernels: Kernels) -> None:
    """The ``odd`` case passes no bias (db is NULL): dx and dW are probed, db is not."""
    odd: Case = next(c for c in CASES if c.name == "odd")
    probes = probe_accumulators(native_kernels, prepare(native_kernels, "matmul_backward", odd))
    assert [p.arg for p in probes] == ["dx", "dW"]


def test_probe_leaves_parity_unchanged(native_kernels: Kernels) -> None:
    """The probe changes only its own call's prefill: the op still passes parity after it, and
    its inputs (reused by the ops check) are untouched."""
    prepared = prepare(native_kernels, "layernorm_backward", CASE)
    inputs = {k: v.copy() for k, v in prepared.inputs.items()}
    assert overwritten_accumulators(native_kernels, prepared) == []
    assert all(r.ok for r in kernel_parity(native_kernels, prepared))
    for k, v in inputs.items():
        assert (prepared.inputs[k] == v).all(), k


def test_finding_is_frozen() -> None:
    """Findings are values: frozen, with the row subject ``<op>.<arg>:accumulates``."""
    f = AccumulatorFinding("gelu_backward", "dx", 3, 4, "m")
    assert f.subject == "gelu_backward.dx:accumulates" and not f.ok
    with pytest.raises(AttributeError):
        f.written = 0  # type: ignore[misc]
