"""The bounds probe (harness.checks.ops_bounds) on fault builds of the bundled library.

gelu_forward's fault builds write one float past the end of ``out`` (``out[N]``), one before
its start (``out[-1]``), into its read-only input ``x``, or 16 KiB past the end (the user's
repro, past any guard). Each passes parity (the values in ``out`` are right), so without the
probe the ops check passed them all. Natively (in-process, ctypes) and in wasmtime; the clean
build passes both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pytest

from harness.artifact import Artifact
from harness.build import Variant, build_variant
from harness.checks import ops
from harness.checks.base import CellContext
from harness.checks.ops_bounds import GUARD_BYTES, BoundsFinding, Guarded, guarded
from harness.engines.ctypes_engine import CtypesInstance
from harness.engines.wasmtime_engine import WasmtimeInstance
from harness.hosts.base import Instance
from harness.kernel import Kernels
from harness.rundir.rows import Row
from reference.presets import PRESETS

# wasm32 builds of the same faults, for wasmtime (the native ones are conftest's FAULTS)
WASM: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("wasm32-bounds-clean", "wasm32", ()),
        Variant("wasm32-bug-gelu-oob", "wasm32", ("TG_BUG_GELU_OOB",)),
        Variant("wasm32-bug-gelu-input", "wasm32", ("TG_BUG_GELU_INPUT_WRITE",)),
        Variant("wasm32-bug-gelu-oob-far", "wasm32", ("TG_BUG_GELU_OOB_FAR",)),
    )
}
# the ops the end-to-end runs use: the faulty one and the two after it that the user's repro
# blamed (a small set keeps the wasmtime runs short)
OPS = ["gelu_forward", "residual_forward", "matmul_forward"]


@pytest.fixture(scope="module")
def wasm(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Artifact]:
    """Build a wasm32 variant of :data:`WASM` by name (once per module)."""
    build = tmp_path_factory.mktemp("bounds-build")
    built: dict[str, Artifact] = {}

    def get(name: str) -> Artifact:
        if name not in built:
            built[name] = build_variant(build, WASM[name])
        return built[name]

    return get


def _rows(instance: Instance, reload: Callable[[], Instance] | None = None) -> list[Row]:
    """The ops check's rows for :data:`OPS` on the small preset."""
    ctx = CellContext(
        "test", "test", instance.artifact, PRESETS["small"], instance,
        options={"ops": OPS}, reload=reload,
    )  # fmt: skip
    return list(ops.run(ctx))


def _failing(rows: list[Row]) -> dict[str, Row]:
    """The rows that do not pass, by subject."""
    return {r.subject: r for r in rows if r.status != "pass"}


@pytest.fixture
def wasmtime(wasm: Callable[[str], Artifact]) -> Iterator[Callable[[str], WasmtimeInstance]]:
    """Load a wasm32 variant in wasmtime; every instance loaded is closed after the test."""
    loaded: list[WasmtimeInstance] = []

    def load(name: str) -> WasmtimeInstance:
        loaded.append(WasmtimeInstance.load(wasm(name)))
        return loaded[-1]

    yield load
    for inst in loaded:
        inst.close()


def test_clean_native_build_passes_every_op(native: CtypesInstance) -> None:
    """The bundled kernels stay inside their buffers and leave their inputs alone: every op of
    the ops check passes, and no row is a bounds or input-written one."""
    ctx = CellContext("native", "test", native.artifact, PRESETS["small"], native)
    rows = list(ops.run(ctx))
    assert rows and all(r.status in ("pass", "skipped") for r in rows), _failing(rows)
    assert not [r for r in rows if ":" in r.subject]


def test_clean_wasm_build_passes(wasmtime: Callable[[str], WasmtimeInstance]) -> None:
    """The clean wasm32 build passes in wasmtime with the guards in place."""
    rows = _rows(wasmtime("wasm32-bounds-clean"))
    assert rows and not _failing(rows)


@pytest.mark.parametrize(
    ("fault_build", "subject", "phrase"),
    [
        # out[N]: the values still pass parity, and no other op is blamed
        ("native-bug-gelu-oob", "gelu_forward.out:bounds",
         "gelu_forward: out (4 bytes at 0x"),
        ("native-bug-gelu-oob", "gelu_forward.out:bounds",
         "the kernel wrote 4 bytes past its end (1 float(s) out of bounds)"),
        # out[-1]: the guard before the buffer
        ("native-bug-gelu-underrun", "gelu_forward.out:bounds", "wrote 4 bytes before its start"),
        # the read-only x written, with the hint to declare it inout if meant
        ("native-bug-gelu-input", "gelu_forward.x:input-written",
         "the binding makes x a read-only input"),
        ("native-bug-gelu-input", "gelu_forward.x:input-written",
         'declare roles = { x = "inout" }'),
    ],
)  # fmt: skip
def test_native_fault_fails_its_own_row(
    fault: Callable[[str], tuple[CtypesInstance, Artifact]],
    fault_build: str,
    subject: str,
    phrase: str,
) -> None:
    """Each gelu_forward fault build natively: exactly one failing row, ``subject``, whose
    detail names the argument and how far out of bounds (or that the input was written)."""
    inst, _ = fault(fault_build)
    bad = _failing(_rows(inst))
    assert set(bad) == {subject}, bad
    assert bad[subject].status == "fail" and phrase in bad[subject].detail


def test_one_float_past_the_end_fails_in_wasmtime(
    wasmtime: Callable[[str], WasmtimeInstance],
) -> None:
    """The same fault in wasm32 under wasmtime: the same row and message."""
    bad = _failing(_rows(wasmtime("wasm32-bug-gelu-oob")))
    assert set(bad) == {"gelu_forward.out:bounds"}, bad
    assert "wrote 4 bytes past its end" in bad["gelu_forward.out:bounds"].detail


def test_written_input_fails_in_wasmtime(wasmtime: Callable[[str], WasmtimeInstance]) -> None:
    """The input-written fault in wasmtime: the same row."""
    bad = _failing(_rows(wasmtime("wasm32-bug-gelu-input")))
    assert set(bad) == {"gelu_forward.x:input-written"}, bad


def test_overrun_past_the_guard_fails_its_op_and_spares_the_next(
    wasmtime: Callable[[str], WasmtimeInstance],
) -> None:
    """16 KiB past the end (the user's repro): gelu_forward fails, the guard overrun to its far
    end; with a reload the next ops run on a fresh instance and pass, not blamed for it."""
    rows = _rows(wasmtime("wasm32-bug-gelu-oob-far"), lambda: wasmtime("wasm32-bug-gelu-oob-far"))
    bad = _failing(rows)
    assert set(bad) == {"gelu_forward.out:bounds"}, bad
    detail = bad["gelu_forward.out:bounds"].detail
    assert f"wrote at least {GUARD_BYTES} bytes past its end" in detail
    assert "may go further" in detail
    assert {r.subject for r in rows if r.subject.startswith("residual_forward")}


def test_guarded_view_serves_reads_and_frees(native: CtypesInstance) -> None:
    """The view hands out buffers GUARD_BYTES into their allocations, serves the client's read
    after a call from its own check read (same bytes), and frees the whole allocation."""
    kernels, view = guarded(Kernels(native))
    x = np.linspace(-2, 2, 37, dtype=np.float32)
    y = kernels.gelu_forward(x)
    assert np.array_equal(y, Kernels(native).gelu_forward(x))
    assert view.take() == [] and view.sizes == {}  # every buffer freed, nothing found


def test_guard_pattern_is_nan_and_differs_per_buffer(native: CtypesInstance) -> None:
    """Guards are quiet NaNs (a read past an input's end poisons the result, which parity
    reports) and differ between buffers and sides, so a copied guard still counts as a write."""
    view = Guarded(native)
    a, b = view.alloc(16), view.alloc(16)
    view.write(a, bytes(16))
    view.write(b, bytes(16))
    try:
        ga = np.frombuffer(native.read(a + 16, GUARD_BYTES), np.float32)
        gb = np.frombuffer(native.read(b + 16, GUARD_BYTES), np.float32)
        before = native.read(a - GUARD_BYTES, GUARD_BYTES)
        assert np.isnan(ga).all() and np.isnan(gb).all()
        assert ga.tobytes() != gb.tobytes() and before != ga.tobytes()
    finally:
        view.free_all([a, b])


def test_finding_is_frozen() -> None:
    """Findings are values: frozen, with the subject ``<arg>:bounds``."""
    f = BoundsFinding("gelu_forward", "out", "bounds", "m")
    assert f.subject == "out:bounds" and not f.overran
    with pytest.raises(AttributeError):
        f.arg = "x"  # type: ignore[misc]
