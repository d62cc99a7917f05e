"""The memory64 check: buffers above 4 GiB, and the 32-bit pointer truncation only it catches.

Builds wasm64 twice (clean, and ``-D TG_BUG_PTR_TRUNC32``: matmul_forward's weight pointer cut
to 32 bits) and runs them in wasmtime in this process, one instance at a time: each grows its
linear memory past 4 GiB (virtual; the ballast is never touched), see docs/memory64.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.artifact import Artifact
from harness.build import Variant, build_variant
from harness.checks import memory64, smoke
from harness.checks.base import CellContext
from harness.checks.ops import cases, op_parity
from harness.engines.wasmtime_engine import WasmtimeInstance
from harness.hosts.node import NodeHost, pinned_node
from harness.kernel import Kernels
from harness.rundir.rows import Row
from reference.presets import PRESETS

CLEAN = Variant("wasm64-m64", "wasm64", ())
PTR32 = Variant("wasm64-bug-ptr32", "wasm64", ("TG_BUG_PTR_TRUNC32",))
WASM32 = Variant("wasm32-m64", "wasm32", ())


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A build directory for this module's variants."""
    yield tmp_path_factory.mktemp("memory64-build")


def _rows(artifact: Artifact) -> list[Row]:
    """The memory64 check's rows for ``artifact`` in wasmtime (tiny preset), instance closed."""
    inst = WasmtimeInstance.load(artifact)
    try:
        ctx = CellContext("wasmtime", "test", artifact, PRESETS["tiny"], inst)
        return list(memory64.run(ctx))
    finally:
        inst.close()


def _by_subject(rows: list[Row]) -> dict[str, Row]:
    return {r.subject: r for r in rows}


@pytest.fixture(scope="module")
def clean_rows(build: Path) -> list[Row]:
    """The check's rows on the clean wasm64 build."""
    return _rows(build_variant(build, CLEAN))


def test_clean_build_passes_above_4gib(clean_rows: list[Row]) -> None:
    """Every op and train-step row passes, and every buffer the check used is above 4 GiB."""
    rows = _by_subject(clean_rows)
    verdicts = [r for r in clean_rows if r.status != "measured"]
    assert [r for r in verdicts if r.status != "pass"] == []
    assert {f"op:{op}" for op in memory64.OPS} <= set(rows)
    assert {"train_step:loss", "train_step:grad_norm", "train_step:update"} <= set(rows)
    assert rows["placement"].value >= memory64.BOUNDARY
    assert rows["cost:ballast"].value > 0  # the wasm heap starts low: a ballast was needed


def test_truncated_pointer_fails_only_above_4gib(build: Path) -> None:
    """The TG_BUG_PTR_TRUNC32 build passes matmul parity and the smoke check below 4 GiB, and
    fails matmul_forward and the train step once its buffers sit above it."""
    art = build_variant(build, PTR32)
    inst = WasmtimeInstance.load(art)
    try:  # today's checks, where every buffer is below 4 GiB
        kernels = Kernels(inst)
        for case in cases(PRESETS["tiny"], 0, include_large=False):
            assert all(r.ok for r in op_parity(kernels, "matmul_forward", case))
        ctx = CellContext("wasmtime", "test", art, PRESETS["tiny"], inst)
        assert {r.status for r in smoke.run(ctx)} == {"pass"}
    finally:
        inst.close()
    rows = _by_subject(_rows(art))
    assert rows["placement"].status == "pass"
    assert rows["op:matmul_forward"].status == "fail"
    assert rows["train_step:loss"].status == "fail"
    assert rows["op:layernorm_forward"].status == "pass"  # the fault is matmul's alone


def test_wasm32_is_incompatible(build: Path) -> None:
    """A 32-bit artifact gets one incompatible row saying its memory ends at 4 GiB."""
    rows = _rows(build_variant(build, WASM32))
    assert [(r.subject, r.status) for r in rows] == [("placement", "incompatible")]
    assert "ends at 4 GiB" in rows[0].detail


@pytest.mark.node
def test_engine_capped_below_4gib_is_incompatible(build: Path) -> None:
    """Node 24 with V8 capped at 65536 pages (4 GiB, --wasm-max-mem-pages): the ballast's
    memory.grow fails, and the check says incompatible, naming the allocation that failed."""
    node = pinned_node("node24")
    capped = NodeHost("node24-capped", node.executable, node.install_hint,
                      v8_flags=("--wasm-max-mem-pages=65536",))  # fmt: skip
    try:
        art = build_variant(build, CLEAN)
        inst = capped.load(art)
        ctx = CellContext("node24-capped", capped.version(), art, PRESETS["tiny"], inst)
        rows = list(memory64.run(ctx))
    finally:
        capped.close()
    assert [(r.subject, r.status) for r in rows] == [("placement", "incompatible")]
    assert "tg_alloc(" in rows[0].detail and "returned 0" in rows[0].detail


def test_options_are_validated() -> None:
    """An unknown op or option is a ValueError naming it."""
    with pytest.raises(ValueError, match="nope"):
        memory64.validate_options({"ops": ["nope"]})
    with pytest.raises(ValueError, match="size"):
        memory64.validate_options({"size": 1})
