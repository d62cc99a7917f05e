"""The determinism check's thread axis (``[check.determinism] threads``): every op at every
count on sizes that split, against the reference and the 1-thread bytes, and the pool's
regions counter. Native, in process: the clean build and fault builds of the pool."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness.artifact import Artifact
from harness.build import Variant, build_variant
from harness.checks.base import CellContext
from harness.checks.determinism import run, validate_options
from harness.engines.ctypes_engine import CtypesInstance
from harness.hosts.base import Instance
from harness.rundir.rows import Row
from reference.presets import PRESETS
from tests.bench.test_bench_bound_ops import loaded
from tests.bench.test_bench_bound_threads import build_thg

Fault = Callable[[str], tuple[CtypesInstance, Artifact]]
THREADED_OPS = ["matmul_forward", "matmul_backward", "layernorm_forward", "gelu_forward",
                "gelu_backward", "attention_forward"]  # fmt: skip


def _rows(instance: CtypesInstance, artifact: Artifact, **options: object) -> dict[str, Row]:
    opts = {"threads": [1, 2, 3], "ops": THREADED_OPS, **options}
    ctx = CellContext("native", "ctypes", artifact, PRESETS["tiny"], instance, options=opts)
    return {r.subject: r for r in run(ctx) if ":threads=" in r.subject or "threads=" in r.subject}


def test_the_clean_pool_passes_at_every_count_and_splits(
    native: CtypesInstance, native_artifact: Artifact
) -> None:
    """The bundled library at 1, 2 and 3 threads: every op within tolerance and bitwise equal
    to its 1-thread bytes, and regions ran on pool workers at 2 and 3; the count is back to 1."""
    rows = _rows(native, native_artifact)
    assert {f"{op}:threads={n}" for op in THREADED_OPS for n in (1, 2, 3)} <= set(rows)
    bad = {s: r.detail for s, r in rows.items() if r.status != "pass"}
    assert not bad, bad
    assert rows["threads=2:split"].value > 0 and rows["threads=3:split"].value > 0
    assert native.call("tg_get_threads") == 1


def test_a_range_that_drops_its_remainder_fails_at_two_threads(fault: Fault) -> None:
    """TG_BUG_RANGE_TAIL (a worker's range of tg_parallel_range loses its last element): the
    ops check, at 1 thread, never runs it; here GELU at 2 threads leaves an element unwritten,
    so it fails against the reference and the 1-thread bytes, while 1 thread passes."""
    rows = _rows(*fault("native-bug-range-tail"))
    assert rows["gelu_forward:threads=1"].status == "pass"
    failed = rows["gelu_forward:threads=2"]
    assert failed.status == "fail" and failed.value > 0, failed.detail
    assert "differ bitwise from the 1-thread run (in 3 of 3 runs compared)" in failed.detail


def test_a_pool_that_never_splits_fails_the_split_row(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """TG_BUG_SERIAL_POOL (counts take effect, every region runs on the caller): its bytes are
    one thread's, so every op row passes, and only the regions counter shows it: the split
    rows fail, or are ``measured`` with require_split = false."""
    serial = Variant("native-bug-serial", "native", ("TG_BUG_SERIAL_POOL",))
    art = build_variant(tmp_path_factory.mktemp("serial"), serial)
    inst = CtypesInstance.load(art)
    try:
        rows = _rows(inst, art, ops=["matmul_forward", "gelu_forward"], repeats=1)
        assert rows["matmul_forward:threads=2"].status == "pass"
        assert rows["threads=2:split"].status == "fail" and rows["threads=2:split"].value == 0
        relaxed = _rows(inst, art, ops=["gelu_forward"], repeats=1, require_split=False)
        assert relaxed["threads=3:split"].status == "measured"
    finally:
        inst.close()


@pytest.mark.parametrize(
    ("options", "said"),
    [
        ({"threads": [2, 3]}, "including 1"),
        ({"threads": [1, 1]}, "distinct"),
        ({"threads": [1, 0]}, "positive"),
        ({"across_threads": "close"}, "across_threads: 'close' is not one of"),
        ({"repeats": 0}, "repeats: expected 1 to 100"),
        ({"require_split": "yes"}, "require_split: expected true or false"),
    ],
)
def test_bad_thread_options_are_refused(options: dict[str, object], said: str) -> None:
    """Each bad option of the thread axis is a ValueError naming it (exit 2 at matrix load)."""
    with pytest.raises(ValueError, match=said):
        validate_options(options)


@pytest.fixture
def thg_inst(tmp_path: Path) -> Iterator[Instance]:
    """The thg library of the bench's thread tests (its setter runs 1 or 2 threads, its
    binding says max = 4), loaded by the native host."""
    with loaded(build_thg(tmp_path)) as inst:
        yield inst


def test_a_binding_whose_max_the_setter_does_not_reach_fails(thg_inst: Instance) -> None:
    """A project's library bound with ``[threads] max = 4`` whose setter runs at most 2: at 3
    the rows fail, naming the setter's count and the binding's max (the binding overstates the
    library: skipped rows and exit 0 hid that no 3-thread path was tested); at 2 they pass, and
    without a regions counter the split row is skipped, saying so."""
    opts = {"threads": [1, 2, 3], "ops": ["matmul_forward"], "repeats": 1}
    ctx = CellContext("native", "x", thg_inst.artifact, PRESETS["tiny"], thg_inst, options=opts)
    rows = {r.subject: r for r in run(ctx) if "threads=" in r.subject}
    assert rows["matmul_forward:threads=2"].status == "pass", rows["matmul_forward:threads=2"]
    three = rows["matmul_forward:threads=3"]
    assert three.status == "fail"
    assert "thg_set_threads(3) put 2 in effect" in three.detail
    assert "though its binding's [threads] max is 4" in three.detail
    assert rows["threads=2:split"].status == "skipped"
    assert "names no regions counter" in rows["threads=2:split"].detail
    assert thg_inst.call("thg_get_threads") == 1
