"""An op that traps, hangs or crashes the host costs its own row, never the others' verdicts.

The real native kernels run in-process (the ``native`` fixtures); :class:`Faulty` wraps them and
makes one export fail the way a host reports it (Trap, HostTimeout, HostCrashed), after which
the instance is dead as a pipe host's is when its worker died: every later request raises
HostCrashed ("lost when its worker failed"). That the real hosts raise those errors is tested
in tests/hosts; here it is what the kernel client and the ops check make of them.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

from harness.artifact import Artifact
from harness.checks.base import CellContext
from harness.checks.ops import (
    MAX_LOST_INSTANCES,
    OpsAbandoned,
    Worst,
    cases,
    run,
    run_cases,
)
from harness.engines.ctypes_engine import CtypesInstance
from harness.hosts.base import (
    HostCrashed,
    HostError,
    HostTimeout,
    Instance,
    InstanceView,
    Scalar,
    Trap,
)
from harness.kernel import Kernels, NotBound
from reference.presets import PRESETS

TINY = PRESETS["tiny"]
CASES = [c for c in cases(TINY, seed=0) if c.name in ("one", "odd")]
Errors = {"trap": Trap, "timeout": HostTimeout, "crash": HostCrashed}
TIMEOUT_TEXT = "native: call {export} did not return within 20 s; worker killed"


class Faulty(InstanceView):
    """``inner`` with export ``export`` failing as ``kind`` when ``when(args)`` holds.

    After the failure the instance is dead (``dies``): every request raises HostCrashed, as a
    pipe host's does once its worker is gone. Allocations and frees are counted, so a test can
    see what a failed call left behind.
    """

    def __init__(
        self,
        inner: Instance,
        export: str,
        kind: str = "trap",
        when: Callable[[Faulty, Sequence[Scalar]], bool] = lambda _self, _args: True,
        dies: bool = True,
    ) -> None:
        """Wrap ``inner``; fail ``export`` with the error of ``kind`` (see :data:`Errors`)."""
        super().__init__(inner)
        self.export, self.kind, self.when, self.dies = export, kind, when, dies
        self.dead = False
        self.live: set[int] = set()  # allocated and not yet freed

    def usable(self) -> bool:
        """False once the failing call killed it (``dies``), as a pipe host's after its worker
        died."""
        return not self.dead

    def _usable(self) -> None:
        if self.dead:
            raise HostCrashed(
                f"native: the instance of {self.artifact.name} was lost when its worker failed"
            )

    def call(self, name: str, *args: Scalar) -> Scalar | None:
        """Call through ``inner``, unless dead or this is the failing call."""
        self._usable()
        if name == self.export and self.when(self, args):
            self.dead = self.dies
            if self.kind == "timeout":
                raise HostTimeout(TIMEOUT_TEXT.format(export=name))
            raise Errors[self.kind](f"native: worker died during call {name}: killed by SIGSEGV")
        return self.inner.call(name, *args)

    def alloc(self, nbytes: int) -> int:
        """Allocate through the base class (so through :meth:`call`) and note the pointer."""
        ptr = super().alloc(nbytes)
        self.live.add(ptr)
        return ptr

    def free(self, ptr: int) -> None:
        """Free through the base class (so through :meth:`call`, dead or not)."""
        super().free(ptr)
        self.live.discard(ptr)

    def write(self, ptr: int, data: bytes) -> None:
        """Write through ``inner`` unless dead."""
        self._usable()
        self.inner.write(ptr, data)

    def read(self, ptr: int, nbytes: int) -> bytes:
        """Read through ``inner`` unless dead."""
        self._usable()
        return self.inner.read(ptr, nbytes)


def _export(artifact: Artifact, op: str) -> str:
    return artifact.bound().ops[op].export


def _nan_input(op: str, arg: str) -> Callable[[Faulty, Sequence[Scalar]], bool]:
    """True when ``op``'s ``arg`` buffer starts with NaN: a kernel that hangs on NaN input,
    which is what the diagnosis hands it when it swaps the input with the NaN-filled output."""

    def when(inst: Faulty, args: Sequence[Scalar]) -> bool:
        ptr = int(args[inst.artifact.bound().ops[op].args.index(arg)])
        return math.isnan(float(np.frombuffer(inst.inner.read(ptr, 4), np.float32)[0]))

    return when


def _items(
    kernels: Kernels, ops: list[str], reload: Callable[[], Kernels] | None
) -> list[tuple[str, str, object]]:
    return list(run_cases(kernels, ops, CASES, 0, reload))


def test_a_trap_on_a_dead_instance_keeps_the_trap(native: CtypesInstance) -> None:
    """A trap that killed the instance propagates as the Trap: the frees after it on the dead
    instance must not replace it with their HostCrashed (D1)."""
    inst = Faulty(native, _export(native.artifact, "gelu_forward"), "trap")
    with pytest.raises(Trap, match="SIGSEGV"):
        Kernels(inst).gelu_forward(np.ones((2, 3), np.float32))


def test_a_trap_on_a_live_instance_still_frees_its_buffers(native: CtypesInstance) -> None:
    """When the instance survives the trap (a wasm trap), the call's buffers are still freed."""
    inst = Faulty(native, _export(native.artifact, "gelu_forward"), "trap", dies=False)
    with pytest.raises(Trap):
        Kernels(inst).gelu_forward(np.ones((2, 3), np.float32))
    assert inst.live == set()


def test_a_hang_keeps_its_timeout_over_the_frees(native: CtypesInstance) -> None:
    """A hang's HostTimeout ("did not return within") is what the caller sees, not HostCrashed."""
    inst = Faulty(native, _export(native.artifact, "gelu_forward"), "timeout")
    with pytest.raises(HostTimeout, match="did not return within 20 s"):
        Kernels(inst).gelu_forward(np.ones((2, 3), np.float32))


@pytest.mark.parametrize("kind", ["trap", "timeout", "crash"])
def test_a_crashing_op_gets_its_row_and_the_others_run_on_a_fresh_instance(
    native: CtypesInstance, kind: str
) -> None:
    """The op that trapped, hung or crashed is one error row naming the op's case and the cause;
    the ops after it run on the instance ``reload`` gives and keep their verdicts (D2)."""
    gelu = _export(native.artifact, "gelu_forward")
    reloads: list[Faulty] = []

    def reload() -> Kernels:
        reloads.append(Faulty(native, gelu, when=lambda _i, _a: False))
        return Kernels(reloads[-1])

    items = _items(
        Kernels(Faulty(native, gelu, kind)),
        ["gelu_forward", "residual_forward", "gelu_backward"],
        reload,
    )
    assert len(reloads) == 1
    ((op, output, error), *rest) = items
    assert (op, output) == ("gelu_forward", "")
    assert isinstance(error, str) and error.startswith("[one(")
    assert f"{type(Errors[kind]('')).__name__}: " in error
    # the export call as the library got it: its own argument order, N as passed
    assert f"(in {gelu}(out=<4 bytes>, x=<4 bytes>, N=1))" in error, error
    if kind == "timeout":  # a hang stays a hang, not the crash the dead instance reports next
        assert "did not return within 20 s" in error
    assert "fresh instance" in error
    assert {i[0] for i in rest} == {"residual_forward", "gelu_backward"}
    assert all(isinstance(a, Worst) and not a.failure for _o, _out, a in rest)


def test_without_reload_a_crash_still_ends_the_check(native: CtypesInstance) -> None:
    """A caller that cannot reload (the memory64 check) gets today's behaviour: the crash is
    raised for the runner to restart the host."""
    inst = Faulty(native, _export(native.artifact, "gelu_forward"), "timeout")
    with pytest.raises(HostTimeout):
        _items(Kernels(inst), ["gelu_forward", "residual_forward"], None)


def test_the_check_stops_after_too_many_lost_instances(native: CtypesInstance) -> None:
    """Every op crashing: each gets its row until MAX_LOST_INSTANCES, then OpsAbandoned names
    the ops not run (a library this broken is not worth a restart per op)."""
    ops = ["gelu_forward", "gelu_backward", "residual_forward", "residual_backward", "adamw_update"]
    always = lambda _i, _a: True  # noqa: E731 - a predicate shared by every instance

    class EveryCall(Faulty):
        """Crashes on every export but the allocator's."""

        def call(self, name: str, *args: Scalar) -> Scalar | None:
            """Fail every kernel call."""
            self.export = name if name.startswith("tg_") and "alloc" not in name else ""
            return super().call(name, *args)

    got: list[tuple[str, str, object]] = []
    with pytest.raises(OpsAbandoned, match="not run: residual_backward, adamw_update") as info:
        for item in run_cases(
            Kernels(EveryCall(native, "", "crash", always)),
            ops,
            CASES,
            0,
            lambda: Kernels(EveryCall(native, "", "crash", always)),
        ):
            got.append(item)
    assert [op for op, _o, _a in got] == ops[:MAX_LOST_INSTANCES]
    assert isinstance(info.value, HostCrashed)  # so the runner restarts the host after it


def _unbinding(*ops: str) -> Callable[[str], str]:
    """A binding edit: the ``[ops.<op>]`` tables of ``ops`` removed (the library lacks them)."""

    def edit(text: str) -> str:
        for op in ops:
            text, n = re.subn(rf"\[ops\.{op}\]\n(?:[^\n]+\n)+\n", "", text)
            assert n == 1, op
        return text

    return edit


def test_abandoning_counts_only_the_bound_ops_not_run(
    native: CtypesInstance, binding_copy: Callable[[Callable[[str], str]], Path]
) -> None:
    """Every bound op hanging, with unbound ops among the rest (gpuformer's hang3): the third
    loss's row says the check stops there (not that the rest run on a fresh instance), the
    unbound ops after it still get their skipped rows, and OpsAbandoned counts and names only
    the bound op it did not run (was: "3 op(s) not run" for one bound op and two never bound)."""
    binding = binding_copy(_unbinding("residual_backward", "attention_forward"))
    ops = ["gelu_forward", "gelu_backward", "residual_forward", "residual_backward",
           "adamw_update", "attention_forward"]  # fmt: skip

    class EveryCall(Faulty):
        """Hangs on every export but the allocator's, under the edited binding."""

        def __init__(self) -> None:
            super().__init__(native, "", "timeout", lambda _i, _a: True)
            self.artifact = dataclasses.replace(native.artifact, binding=binding)

        def call(self, name: str, *args: Scalar) -> Scalar | None:
            """Hang in every kernel call."""
            self.export = name if name.startswith("tg_") and "alloc" not in name else ""
            return super().call(name, *args)

    got: list[tuple[str, str, object]] = []
    with pytest.raises(OpsAbandoned) as info:
        for item in run_cases(Kernels(EveryCall()), ops, CASES, 0, lambda: Kernels(EveryCall())):
            got.append(item)
    assert str(info.value).endswith("the check stopped, 1 bound op(s) not run: adamw_update")
    errors = [str(a) for _op, _o, a in got if isinstance(a, str)]
    assert len(errors) == MAX_LOST_INSTANCES == 3
    assert all(e.endswith("; the remaining ops run on a fresh instance") for e in errors[:2])
    assert errors[2].endswith("; the check stops here (3 ops lost the instance)"), errors[2]
    skipped = [op for op, _o, a in got if isinstance(a, NotBound)]
    assert skipped == ["residual_backward", "attention_forward"]


def test_a_failed_reload_stops_the_check_saying_so(native: CtypesInstance) -> None:
    """A reload that fails ends the check with OpsAbandoned naming the reload's error."""

    def reload() -> Kernels:
        raise HostError("load failed: no worker")

    inst = Faulty(native, _export(native.artifact, "gelu_forward"), "crash")
    with pytest.raises(OpsAbandoned, match=r"reloading the artifact after gelu_forward.*no worker"):
        _items(Kernels(inst), ["gelu_forward", "residual_forward"], reload)


def _ctx(instance: Instance, reload: Callable[[], Instance] | None, ops: list[str]) -> CellContext:
    return CellContext(
        "native", "ctypes", instance.artifact, TINY, instance, options={"ops": ops}, reload=reload
    )


@pytest.mark.parametrize(("kind", "error"), [("timeout", "HostTimeout"), ("trap", "Trap")])
def test_a_diagnosis_guess_that_hangs_or_segfaults_keeps_the_fail_and_blames_nothing(
    fault: Callable[[str], tuple[CtypesInstance, Artifact]], kind: str, error: str
) -> None:
    """gelu with a constant off (a parity fail) whose kernel hangs, or segfaults (a Trap that
    kills the native worker), on NaN input: the diagnosis's swap of x and the NaN-filled out
    sets it off. The op's rows stay ``fail`` (its own verdict), the detail names THAT guess (not
    the next one, which would meet the lost instance) and blames no binding (never "it
    passes", and after the failure itself, which leads), and the next op runs on a fresh
    instance (D3)."""
    inst, artifact = fault("native-bug-gelu-coef")
    hangs = _nan_input("gelu_forward", "x")
    gelu = _export(artifact, "gelu_forward")
    reloads: list[Faulty] = []

    def reload() -> Instance:
        reloads.append(Faulty(inst, gelu, kind, hangs))
        return reloads[-1]

    first = Faulty(inst, gelu, kind, hangs)
    rows = list(run(_ctx(first, reload, ["gelu_forward", "residual_forward"])))
    gelu_rows = [r for r in rows if r.subject == "gelu_forward.out"]
    assert gelu_rows and {r.status for r in gelu_rows} == {"fail"}
    detail = gelu_rows[0].detail
    # the failure itself leads; the crashed guess (no evidence) follows it
    assert "fails parity; the wrong-binding diagnosis" not in detail  # not as its cause
    assert detail.index("gelu_forward.out") < detail.index("the wrong-binding diagnosis")
    assert "guess (args 'out' and 'x' swapped) crashed the host" in detail
    assert f"({error}: " in detail and "no evidence of a binding mistake" in detail
    assert "it passes" not in detail and "wrong order" not in detail
    assert first.dead and len(reloads) == 1
    residual = [r for r in rows if r.subject.startswith("residual_forward")]
    assert residual and {r.status for r in residual} == {"pass"}


def test_the_cell_context_reload_defaults_to_none(native: CtypesInstance) -> None:
    """A check called outside a run has no reload: the ops check then raises a crash as before."""
    ctx = CellContext("native", "ctypes", native.artifact, TINY, native)
    assert ctx.reload is None
