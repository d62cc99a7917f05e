"""``signoff --recheck``: measure a stale figure once more before calling it stale.

A claim's band is a prediction interval for one more run under the between-run spread its
recording runs showed (docs/signoff.md, "Recording bands"). A shared VM also has transient speed
regimes that move one cell's figure for the length of that cell: at ``fa690f4``,
``speedup-node24-wasm32`` at large measured 0.636 (its whole CI above the band 0.52-0.61) in one
main job, where seven other main jobs of that week measured 0.558-0.572 (docs/measured.md).
Such a figure is an outlier of the machine, not of the claim.

So a stale figure is measured again, once, before the verdict: the cells its quantities come
from (the figure's cell, its ``relative_to`` cell, and numpy's reference cell for a speedup timed
apart) are run again with the bench check only, restricted to the curve that measures the
figure, on the very build the run measured (:func:`harness.gate.provenance.require_build`), on the
same machine, into a fresh directory beside the run (``RUN.recheck-1``, ...). The run itself is
never written. The finding is then:

- ``rechecked`` (passing) when the recheck's CI overlaps the band; its message gives both
  measurements, so the sheet shows what happened;
- ``stale`` when the recheck misses too, or when no recheck could be made (the message says why).

A published number that is wrong (say 2x the true figure) misses in both measurements, so it is
still caught every time; a transient must hit two cells' measurements minutes apart. A recheck
is not a wider band: the same band judges both measurements. At most ``max_cells`` cells are
rerun: more stale figures than that is a shift of the machine or the build, not a transient,
and rechecking it would only spend time (the rest stay stale, and say so).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from harness.build import BUNDLED_MANIFEST
from harness.checks.bench import curve_of
from harness.gate.adaptive import matrix_content, run_bench_cells
from harness.gate.claim_checks import (
    REFERENCE_CELL,
    Finding,
    FindingStatus,
    check_values,
    ci_table,
    quantity_table,
    resolve,
)
from harness.gate.claims import Claim, ClaimsFile, Quantity
from harness.gate.errors import RefusalError
from harness.rundir.meta import RunDirError
from harness.rundir.reader import Run

RECHECKED: FindingStatus = (
    "rechecked"  # the status of a stale figure that its recheck measured in its band
)
SUFFIX = ".recheck"  # RUN.recheck-1, RUN.recheck-2, ...: beside the run, never in it
DEFAULT_MAX_CELLS = 6  # more stale cells than this is a shift, not a transient (docstring)


@dataclass(frozen=True)
class RecheckPlan:
    """What ``signoff --recheck`` may rerun, and with which build."""

    manifest: Path = BUNDLED_MANIFEST
    max_cells: int = DEFAULT_MAX_CELLS


def fresh_dir(run: Path) -> Path:
    """``RUN.recheck-<k>`` beside ``run`` for the first ``k`` not taken."""
    k = 1
    while (out := run.with_name(f"{run.name}{SUFFIX}-{k}")).exists():
        k += 1
    return out


def cells_of(
    claim: Claim,
    key: str,
    table: Mapping[Quantity, float],
    cis: Mapping[Quantity, tuple[float, float]],
) -> set[str]:
    """The cells a claim's figure at ``key`` is computed from, in the run whose ``table`` and
    ``cis`` these are (:func:`quantity_table`, :func:`ci_table`)."""
    cells: set[str] = set()
    for q in (claim.quantity_at(key), claim.denominator_at(key)):
        if q is None:
            continue
        cells.add(q.cell)
        found = resolve(table, q)
        if q.metric == "speedup" and (found is None or found not in cis):
            # a speedup timed apart: numpy's median is its numerator (claim_checks.figure)
            cells.add("/".join((*REFERENCE_CELL, q.preset)))
    return cells


def _matrix(content: Mapping[str, Any], curves: Sequence[str]) -> dict[str, Any]:
    """The run's own matrix with the bench check only, measuring only ``curves``."""
    data = dict(content)
    bench = data.setdefault("check", {}).setdefault("bench", {})
    bench["curves"] = list(curves)  # the stale figure's curve, and nothing else
    data["checks"] = ["bench"]
    return data


def recheck(
    run: Run,
    claims: ClaimsFile,
    findings: Sequence[Finding],
    plan: RecheckPlan,
    console: Console,
) -> list[Finding]:
    """``findings`` with each stale figure measured once more (module docstring)."""
    by_id = {c.id: c for c in claims.claims}
    stale = [
        (i, by_id[f.claim], f.point)
        for i, f in enumerate(findings)
        if f.status == "stale" and f.point is not None and f.claim in by_id
    ]
    if not stale:
        return list(findings)
    out = list(findings)
    table, cis = quantity_table(run.rows), ci_table(run.rows)
    cells: set[str] = set()
    curves: set[str] = set()
    for i, claim, key in list(stale):
        try:
            if claim.base.check != "bench":
                raise ValueError(f"a {claim.base.check!r} figure, and only bench figures are timed")
            curves.add(curve_of(claim.base.subject))
        except ValueError as exc:
            out[i] = _note(out[i], f"no recheck: {exc}")
            stale.remove((i, claim, key))
            continue
        cells |= cells_of(claim, key, table, cis)
    if not stale:
        return out
    if len(cells) > plan.max_cells:
        why = (
            f"not rechecked: {len(stale)} stale figures in {len(cells)} cells, more than "
            f"{plan.max_cells}: a shift of the machine or the build, not a transient"
        )
        return [_note(f, why) if n in {i for i, _, _ in stale} else f for n, f in enumerate(out)]
    where = fresh_dir(run.directory)
    console.print(
        f"recheck: {len(stale)} stale figures, {len(cells)} cells "
        f"({', '.join(sorted(cells))}; curves {', '.join(sorted(curves))}) -> {where}",
        markup=False,
    )
    try:
        data = _matrix(matrix_content(run), sorted(curves))
        again = run_bench_cells(run, cells, plan.manifest, data, where, "the run")
    except (RunDirError, RefusalError) as exc:  # not the same build, matrix or machine
        for i, _, _ in stale:
            out[i] = _note(out[i], f"no recheck: {exc}")
        return out
    table, cis = quantity_table(again.rows), ci_table(again.rows)
    for i, claim, key in stale:
        one = dataclasses.replace(claim, points={key: claim.points[key]})
        second = check_values(one, table, cis, source=f"its recheck ({where.name}) measures")[0]
        if second.status == "pass":
            out[i] = dataclasses.replace(
                out[i], status=RECHECKED, message=f"{second.message}; the run's own figure "
                f"missed the band: {out[i].message}",
            )  # fmt: skip
        else:
            out[i] = _note(out[i], f"rechecked in {where.name}: {second.message}")
    return out


def _note(f: Finding, note: str) -> Finding:
    return dataclasses.replace(f, message=f"{f.message}; {note}")
