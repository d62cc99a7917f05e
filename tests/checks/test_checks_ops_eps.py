"""LayerNorm's eps in the ops check: a value the binding fixes, and an eps argument exercised.

A binding's ``fixed = { eps = ... }`` is the library's built-in value, so the reference is
computed with it: a library consistent with its binding passes, an inconsistent one fails its
LayerNorm rows with the cause named (before: every call asked for eps = 1e-5, the kernel client
refused the fixed 1e-6, and the whole ops check was one ``exception`` row). Where eps is an
argument, the ``ln_eps`` case passes another eps (:data:`harness.checks.ops.LN_EPS_WIDE`), so a
kernel that ignores it fails (before: every case ran at 1e-5, which such a kernel builds in).
The eps-argument library here is lib2 (artifacts/lib2, built natively); the fixed-eps one the
bundled kernels, and their ``TG_BUG_LN_EPS_1E6`` fault build (built-in 1e-6).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from harness.artifact import Artifact
from harness.build_lib2 import build_lib2_native
from harness.checks.base import CellContext
from harness.checks.ops import LAYERNORMS, LN_EPS_WIDE, assert_op_parity, cases, op_parity, run
from harness.engines.ctypes_engine import CtypesInstance
from harness.formats import file_sha256
from harness.hosts.base import Instance, InstanceView, Scalar
from harness.kernel import F32, FixedMismatch, Kernels
from harness.parity import ParityError
from harness.rundir.rows import Row
from reference import ops as ref_ops
from reference.ops import LAYERNORM_EPS
from reference.presets import PRESETS

Fault = Callable[[str], tuple[CtypesInstance, Artifact]]
BindingCopy = Callable[[Callable[[str], str]], Path]
TINY = PRESETS["tiny"]
LIB2_BINDING = Path(__file__).resolve().parents[2] / "artifacts" / "lib2" / "lib2.binding.toml"
FIXED_1E5 = "fixed = { eps = 1e-5 }"
Arr = NDArray[Any]
OPS = [*LAYERNORMS, "gelu_forward"]


def _fix_eps(value: str) -> Callable[[str], str]:
    """A binding edit: layernorm_forward's fixed eps set to ``value``."""

    def edit(text: str) -> str:
        assert FIXED_1E5 in text
        return text.replace(FIXED_1E5, f"fixed = {{ eps = {value} }}")

    return edit


def _rows(instance: Instance, artifact: Artifact, ops: list[str] = OPS) -> list[Row]:
    ctx = CellContext("native", "ctypes", artifact, TINY, instance, options={"ops": ops})
    return list(run(ctx))


def _loaded(artifact: Artifact, binding: Path) -> CtypesInstance:
    return CtypesInstance.load(dataclasses.replace(artifact, binding=binding))


@pytest.fixture(scope="module")
def lib2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CtypesInstance]:
    """lib2 built natively, under its own binding (its LayerNorm takes eps as an argument)."""
    so = build_lib2_native(tmp_path_factory.mktemp("lib2-eps"))
    art = Artifact(name="lib2-native", format="native", path=so, sha256=file_sha256(so),
                   ptr_width=64, target="native", binding=LIB2_BINDING)  # fmt: skip
    inst = CtypesInstance.load(art)
    yield inst
    inst.close()


class IgnoresEps(Kernels):
    """lib2 called as a kernel that ignores its eps argument: it always gets 1e-5."""

    def layernorm_forward(
        self, x: Arr, w: Arr, b: Arr, eps: float | None = None
    ) -> tuple[F32, F32, F32]:
        """The forward at LAYERNORM_EPS whatever ``eps`` the check asks for."""
        return super().layernorm_forward(x, w, b, LAYERNORM_EPS)


class RecomputesRstd(Kernels):
    """A backward that recomputes rstd from x at 1e-5 instead of taking the forward's."""

    def layernorm_backward(
        self, dout: Arr, x: Arr, w: Arr, mean: Arr, rstd: Arr
    ) -> tuple[F32, F32, F32]:
        """lib2's backward given rstd at LAYERNORM_EPS, not the ``rstd`` passed."""
        x64 = np.asarray(x, np.float64)
        C = x64.shape[-1]
        _, _, own = ref_ops.layernorm_forward(x64, np.ones(C), np.zeros(C), LAYERNORM_EPS)
        return super().layernorm_backward(dout, x, w, mean, own.astype(np.float32))


def test_a_binding_fixing_another_eps_fails_the_layernorm_rows_not_the_check(
    native: CtypesInstance, native_artifact: Artifact, binding_copy: BindingCopy
) -> None:
    """The bundled kernels (eps 1e-5) under a binding that fixes 1e-6: layernorm_forward fails,
    naming both values; the other ops keep their verdicts and no ``exception`` row is written
    (was: ValueError "the library fixes layernorm_forward's eps at 1e-06", no op judged)."""
    inst = _loaded(native_artifact, binding_copy(_fix_eps("1e-6")))
    try:
        rows = _rows(inst, inst.artifact)
    finally:
        inst.close()
    status = {r.subject: r.status for r in rows}
    assert "exception" not in status
    assert status["layernorm_forward.rstd"] == status["layernorm_forward.out"] == "fail"
    assert status["gelu_forward.out"] == "pass"
    detail = next(r.detail for r in rows if r.subject == "layernorm_forward.rstd")
    assert "the library computes with eps 1e-05, not the 1e-06 its binding fixes" in detail
    assert "eps=1e-06" in detail  # the case as run: at the fixed eps


def test_a_library_consistent_with_its_fixed_eps_passes(
    fault: Fault, binding_copy: BindingCopy
) -> None:
    """TG_BUG_LN_EPS_1E6 (built-in eps 1e-6) passes under a binding fixing 1e-6, each row saying
    the reference used it, and fails under the bundled binding's 1e-5 with the cause named."""
    _, artifact = fault("native-bug-ln-eps-1e6")
    inst = _loaded(artifact, binding_copy(_fix_eps("1e-6")))
    try:
        rows = _rows(inst, inst.artifact)
    finally:
        inst.close()
    assert {r.status for r in rows} == {"pass"}, [r.detail for r in rows if r.status != "pass"]
    for subject in ("layernorm_forward.out", "layernorm_backward.dinp"):
        detail = next(r.detail for r in rows if r.subject == subject)
        assert "the reference uses the binding's fixed eps = 1e-06" in detail, detail
    bundled, _ = fault("native-bug-ln-eps-1e6")
    failed = {r.subject: r.detail for r in _rows(bundled, artifact) if r.status != "pass"}
    assert "layernorm_forward.rstd" in failed
    assert (
        "computes with eps 1e-06, not the 1e-05 its binding fixes"
        in failed["layernorm_forward.rstd"]
    )


class BuiltIn(InstanceView):
    """The bundled kernels as a library that builds one argument in: calls of ``export`` (made
    by the edited binding, without it) get ``value`` inserted at ``index`` on their way to the
    real export. The bundled exports take every argument, and a binding leaving one out fails
    their arity check at load, so a library with a built-in value is modelled here."""

    def __init__(
        self, inner: Instance, artifact: Artifact, export: str, index: int, value: Scalar
    ) -> None:
        """Serve ``artifact`` (the edited binding) over ``inner`` (loaded with the bundled one)."""
        super().__init__(inner)
        self.artifact = artifact
        self.export, self.index, self.value = export, index, value

    def call(self, name: str, *args: Scalar) -> Scalar | None:
        """Call through ``inner``, with the built-in value put back for ``export``."""
        if name == self.export:
            args = (*args[: self.index], self.value, *args[self.index :])
        return self.inner.call(name, *args)


def _built_in(
    native: CtypesInstance, binding: Path, export: str, index: int, value: Scalar
) -> BuiltIn:
    artifact = dataclasses.replace(native.artifact, binding=binding)
    return BuiltIn(native, artifact, export, index, value)


def test_a_fixed_adamw_constant_is_the_references(
    native: CtypesInstance, binding_copy: BindingCopy
) -> None:
    """adamw_update with eps built in at 1e-6 (100x the defaults' 1e-8) and fixed so in its
    binding: the reference uses 1e-6 and the update passes, the row saying so (was: a
    ValueError "the library fixes adamw_update's eps at 1e-06" that ended the check)."""

    def edit(text: str) -> str:
        old = '"beta2", "eps", "weight_decay", "t"]'
        assert old in text
        return text.replace(old, '"beta2", "weight_decay", "t"]\nfixed = { eps = 1e-6 }')

    inst = _built_in(native, binding_copy(edit), "tg_adamw_update", 8, 1e-6)
    rows = _rows(inst, inst.artifact, ["adamw_update"])
    assert {r.status for r in rows} == {"pass"}, [r.detail for r in rows]
    assert all("the reference uses the binding's fixed eps = 1e-06" in r.detail for r in rows)
    # the fixed value is what the reference used: the same library under a binding that fixes
    # the defaults' 1e-8 fails
    wrong = _built_in(native, binding_copy(lambda t: edit(t).replace("1e-6", "1e-8")),
                      "tg_adamw_update", 8, 1e-6)  # fmt: skip
    assert "fail" in {r.status for r in _rows(wrong, wrong.artifact, ["adamw_update"])}


def test_a_case_at_another_fixed_dim_is_skipped_not_the_check(
    native: CtypesInstance, binding_copy: BindingCopy
) -> None:
    """gelu with N built in at 1 and fixed so: the check runs the case of that size (``one``)
    and says which it did not run, instead of a ValueError that ends the check."""

    def edit(text: str) -> str:
        old = 'args = ["out", "x", "N"]'
        assert old in text
        return text.replace(old, 'args = ["out", "x"]\nfixed = { N = 1 }', 1)

    inst = _built_in(native, binding_copy(edit), "tg_gelu_forward", 2, 1)
    rows = _rows(inst, inst.artifact, ["gelu_forward"])
    assert {r.status for r in rows} == {"pass"}, [r.detail for r in rows]
    (detail,) = {r.detail for r in rows}
    assert "ok over 1 cases" in detail, detail
    assert "5 case(s) not run at a fixed dim: odd (N=105), simd_tail (N=273)" in detail, detail
    assert "the library fixes gelu_forward's N at 1 (its binding of tg_gelu_forward" in detail


def test_the_kernel_client_defaults_to_the_librarys_own_eps(
    fault: Fault, binding_copy: BindingCopy
) -> None:
    """A layernorm_forward call without eps uses the eps the binding fixes (was: 1e-5 always, a
    ValueError against a library fixing 1e-6); asking for another is a FixedMismatch."""
    _, artifact = fault("native-bug-ln-eps-1e6")
    inst = _loaded(artifact, binding_copy(_fix_eps("1e-6")))
    try:
        kernels = Kernels(inst)
        x, w = np.ones((2, 3), np.float32), np.ones(3, np.float32)
        _, _, rstd = kernels.layernorm_forward(x, w, w)  # constant rows: rstd = 1/sqrt(eps)
        assert np.allclose(rstd, 1e3, rtol=1e-6)
        with pytest.raises(FixedMismatch, match="fixes layernorm_forward's eps at 1e-06"):
            kernels.layernorm_forward(x, w, w, eps=LAYERNORM_EPS)
    finally:
        inst.close()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_kernel_that_ignores_its_eps_argument_fails_only_the_eps_case(
    lib2: CtypesInstance, seed: int
) -> None:
    """lib2 takes eps; called as if it ignored it, every case at 1e-5 passes and ``ln_eps``
    fails out and rstd by far (over 100x their bounds), with the cause named; correct lib2
    passes ``ln_eps`` within 0.01 of every bound (LN_EPS_WIDE's comment)."""
    for case in cases(TINY, seed):
        if not case.applies_to("layernorm_forward"):
            continue
        got = {r.name: r for r in op_parity(IgnoresEps(lib2), "layernorm_forward", case, seed)}
        if case.eps == LAYERNORM_EPS:
            assert all(r.ok for r in got.values()), case.describe()
            continue
        assert case.eps == LN_EPS_WIDE
        for output in ("out", "rstd"):
            r = got[f"layernorm_forward.{output}"]
            assert not r.ok and r.worst_ratio > 100, r.message
        right = op_parity(Kernels(lib2), "layernorm_forward", case, seed)
        assert all(r.ok and r.worst_ratio < 0.01 for r in right), [r.message for r in right]


def test_the_eps_case_names_an_ignored_eps_argument(lib2: CtypesInstance) -> None:
    """The diagnosis of the ``ln_eps`` failure reads the library's eps off its rstd."""
    (case,) = [c for c in cases(TINY, 0) if c.eps == LN_EPS_WIDE]
    with pytest.raises(ParityError, match=r"computes with eps 1e-05 although .* is passed eps"):
        assert_op_parity(IgnoresEps(lib2), "layernorm_forward", case)


def test_a_backward_that_recomputes_rstd_at_its_own_eps_fails_the_eps_case(
    lib2: CtypesInstance,
) -> None:
    """layernorm_backward takes the forward's rstd; on ``ln_eps`` that rstd is at 2^-7, so a
    backward that recomputes it at 1e-5 fails dinp and dweight (before: every case's rstd was
    at 1e-5, the same as the recomputed one)."""
    (case,) = [c for c in cases(TINY, 0) if c.eps == LN_EPS_WIDE]
    got = {r.name: r for r in op_parity(RecomputesRstd(lib2), "layernorm_backward", case)}
    assert not got["layernorm_backward.dinp"].ok and not got["layernorm_backward.dweight"].ok
    assert all(r.ok for r in op_parity(Kernels(lib2), "layernorm_backward", case))
