"""``compare --adaptive``: rerun the cells whose verdict is unknown, with more samples.

Pinpoint's UNKNOWN means "measure more": the cells holding an unknown measurement are run again
with the ``bench`` check only, on CAND's own build (the manifest's artifacts must carry CAND's
sha256s) and with ``min_samples = max_samples = --samples``, into a fresh directory beside CAND
(``CAND.adaptive-1``, ...). CAND itself is never written. The new samples of the unknown
measurements are added to CAND's, and the comparison is decided again, until no measurement is
unknown, ``--max-rounds`` reruns were made, or ``--budget-s`` has passed. BASE's build is
usually not at hand (another commit), so only CAND gains samples: that narrows the CI but cannot
remove BASE's own noise, and a measurement may stay unknown.
"""

from __future__ import annotations

import copy
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w
from rich.console import Console

from harness.build import BUNDLED_MANIFEST
from harness.gate.errors import GateInputError, RefusalError
from harness.gate.measurements import MeasurementKey, timing_samples
from harness.gate.provenance import require_build
from harness.gate.thresholds import Thresholds
from harness.gate.verdicts import GateResult, evaluate
from harness.rundir.reader import Run, load_run


@dataclass(frozen=True)
class AdaptiveBudget:
    """How much more measuring compare may do."""

    seconds: float
    max_rounds: int
    samples: int
    manifest: Path = BUNDLED_MANIFEST


def fresh_dir(cand: Path, round_no: int) -> Path:
    """A directory beside CAND that does not exist yet."""
    base = cand.with_name(f"{cand.name}.adaptive-{round_no}")
    out, k = base, 1
    while out.exists():
        k += 1
        out = base.with_name(f"{base.name}.{k}")
    return out


def _bench_matrix(content: Mapping[str, Any], samples: int, budget_s: float) -> dict[str, Any]:
    data = copy.deepcopy(dict(content))
    check = data.setdefault("check", {})
    bench = check.setdefault("bench", {})
    # ops_once would skip op curves already measured in this process (round 2 onwards).
    bench.update(
        min_samples=samples, max_samples=samples, budget_s=max(1.0, budget_s), ops_once=False
    )
    data["checks"] = ["bench"]
    return data


def run_bench_cells(
    run: Run, cells: set[str], manifest: Path, data: dict[str, Any], out: Path, role: str
) -> Run:
    """Run ``cells`` of ``run``'s matrix again, with the matrix ``data`` (the run's own, as the
    caller adapted it), the bench check only, on the very build ``run`` measured (``manifest``),
    into ``out``; returns the new run. Shared by ``compare --adaptive`` and ``signoff
    --recheck``. Raises GateInputError (no parsed matrix, a cell it lacks) or RefusalError
    (another build, another machine) before or after measuring, never a half answer."""
    from harness.hosts.registry import all_hosts
    from harness.matrix import MatrixError, Names, expand_cells, load_matrix
    from harness.runner import RunPlan, run_plan

    artifacts = require_build(run, manifest, {c.split("/")[1] for c in cells}, role)
    factories = all_hosts()
    with tempfile.TemporaryDirectory(prefix="tinygpt-rerun-") as tmp:
        path = Path(tmp) / "rerun.toml"
        path.write_text(tomli_w.dumps(data))
        try:
            matrix = load_matrix(path, Names(hosts=tuple(factories), artifacts=tuple(artifacts)))
        except MatrixError as exc:
            raise GateInputError(run.meta.path, "matrix.content", str(exc)) from exc
        chosen = tuple(c for c in expand_cells(matrix, ("bench",)) if c.id in cells)
        missing = cells - {c.id for c in chosen}
        if missing:
            raise GateInputError(
                run.meta.path, "matrix.content", f"the run's matrix has no cell {sorted(missing)}"
            )
        plan = RunPlan(matrix=matrix, cells=chosen, artifacts=artifacts, out=out, checks=("bench",))
        run_plan(plan, factories, Console(stderr=True))
    again = load_run(out)
    if again.meta.fingerprint_id != run.meta.fingerprint_id:
        raise RefusalError(
            f"this machine ({again.meta.fingerprint_id}) is not the one {role} was measured on "
            f"({run.meta.fingerprint_id}); reruns must be measured where it was"
        )
    return again


def matrix_content(run: Run) -> dict[str, Any]:
    """The parsed matrix ``run`` recorded (a copy); GateInputError when it has none."""
    content = run.meta.matrix.get("content")
    if not isinstance(content, dict):
        raise GateInputError(run.meta.path, "matrix.content", "a rerun needs the parsed matrix")
    return copy.deepcopy(content)


def rerun_cells(
    cand: Run, cells: list[str], budget: AdaptiveBudget, out: Path, seconds: float
) -> Run:
    """Run ``cells`` of CAND's matrix again (bench only) into ``out``; returns the new run."""
    data = _bench_matrix(matrix_content(cand), budget.samples, seconds / len(cells))
    return run_bench_cells(cand, set(cells), budget.manifest, data, out, "CAND")


def resolve_unknown(
    base: Run,
    cand: Run,
    thresholds: Thresholds,
    result: GateResult,
    budget: AdaptiveBudget,
    console: Console,
) -> GateResult:
    """Rerun the unknown cells until decided or out of budget; returns the final result."""
    start = time.monotonic()
    extra: dict[MeasurementKey, list[float]] = {}
    for round_no in range(1, budget.max_rounds + 1):
        unknown = {c.key for c in result.unknown}
        left = budget.seconds - (time.monotonic() - start)
        if not unknown or left <= 0:
            break
        cells = sorted({k.cell for k in unknown})
        out = fresh_dir(cand.directory, round_no)
        console.print(
            f"adaptive round {round_no}: {len(unknown)} unknown in {len(cells)} cells -> {out}",
            markup=False,
        )
        rerun = rerun_cells(cand, cells, budget, out, left)
        for key, samples in timing_samples(rerun.rows).items():
            if key in unknown:
                extra.setdefault(key, []).extend(samples)
        result = evaluate(base.rows, cand.rows, thresholds, extra)
    return result
