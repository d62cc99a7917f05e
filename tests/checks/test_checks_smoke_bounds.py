"""The smoke check's calls run over the bounds probe (harness.checks.ops_bounds), as the ops and
model checks' do: a matmul writing one float past its output returns the right values, so a
smoke-only run (``run --checks smoke``, the quickest gate) passed it."""

from __future__ import annotations

from collections.abc import Callable

from harness.artifact import Artifact
from harness.checks.base import CellContext
from harness.checks.smoke import run
from harness.engines.ctypes_engine import CtypesInstance
from reference.presets import PRESETS

Fault = Callable[[str], tuple[CtypesInstance, Artifact]]


def _rows(instance: CtypesInstance, artifact: Artifact) -> dict[str, tuple[str, str]]:
    ctx = CellContext("native", "ctypes", artifact, PRESETS["tiny"], instance, options={})
    return {r.subject: (r.status, r.detail) for r in run(ctx)}


def test_a_matmul_writing_past_its_output_fails_smoke_by_name(fault: Fault) -> None:
    """TG_BUG_MATMUL_OOB (``out[N * OC]`` written): the op's values are right, so its parity
    row passes; ``matmul_forward.out:bounds`` fails naming the 4 bytes."""
    rows = _rows(*fault("native-bug-matmul-oob"))
    assert rows["op:matmul_forward"][0] == "pass"
    status, detail = rows["matmul_forward.out:bounds"]
    assert status == "fail" and "wrote 4 bytes past its end" in detail, detail
    assert "bounds" not in rows  # the pass row is only for a clean probe


def test_the_clean_build_passes_the_probe(
    native: CtypesInstance, native_artifact: Artifact
) -> None:
    """Every smoke row of the clean build passes, and ``bounds`` counts the guarded calls."""
    rows = _rows(native, native_artifact)
    assert {s for s, _ in rows.values()} == {"pass"}, rows
    assert "calls with client buffers" in rows["bounds"][1]
