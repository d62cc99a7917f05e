"""The report's first lines: the sign-off, whether the run is complete, and the gate's verdict.

Each is a thing a reader must not miss: a failed sign-off used to be visible only in
``signoff/signoff.md``, a run cut short read like a finished one ("51 pass, 3 incompatible"), and
a regression against the target branch's run was in another command's output. The gate's verdict
is the gate's own (:func:`harness.gate.verdicts.evaluate`, the thresholds CAND recorded): the
report only shows it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from harness.gate.compare import load_thresholds, require_finished
from harness.gate.compare_render import headline
from harness.gate.errors import RefusalError
from harness.gate.measurements import timing_samples
from harness.gate.provenance import check_comparable
from harness.gate.signoff_sheet import SHEET_MD, SIGNED_OFF
from harness.gate.verdicts import GateResult, evaluate, oracle_changes
from harness.rundir.meta import RunDirError
from harness.rundir.reader import Run, load_run
from harness.rundir.rows import REFERENCE_HOST
from harness.rundir.verdict import completeness

SIGNOFF_DIR = "signoff"  # the main job writes reports/latest/{run,signoff}: the sheet's home
SHEET = SHEET_MD  # what the report reads of a sign-off sheet directory


@dataclass(frozen=True)
class Alert:
    """One headline line: ``bad`` ones are printed first and in red."""

    bad: bool
    text: str


def signoff_alert(sheet_dir: Path | None) -> Alert | None:
    """The sign-off verdict from ``sheet_dir/signoff.md`` (None when there is no sheet)."""
    if sheet_dir is None or not (sheet_dir / SHEET).is_file():
        return None
    lines = (sheet_dir / SHEET).read_text(encoding="utf-8").splitlines()
    title = lines[0] if lines else ""
    detail = lines[2] if len(lines) > 2 and lines[2] else ""
    where = f"see {sheet_dir / SHEET}"
    if f"NOT {SIGNED_OFF}" in title or not title.endswith(SIGNED_OFF):
        return Alert(True, f"❌ RELEASE NOT SIGNED OFF: {detail or 'the sheet says so'} ({where})")
    return Alert(False, f"✅ release signed off: {detail or SIGNED_OFF.lower()} ({where})")


def completeness_alert(meta: dict[str, Any], rows: pd.DataFrame) -> Alert | None:
    """Why the run is incomplete (status, interrupted, cells without a verdict), or None."""
    judged: set[str] = set()
    if not rows.empty:
        verdict = rows[(rows["check"] == "cell") & (rows["subject"] == "verdict")]
        cols = zip(verdict["host"], verdict["artifact"], verdict["preset"], strict=True)
        judged = {f"{h}/{a}/{p}" for h, a, p in cols}
    why = completeness(meta, judged).reasons()
    if not why:
        return None
    return Alert(True, "⚠️ INCOMPLETE RUN: " + "; ".join(why))


def alerts(meta: dict[str, Any], rows: pd.DataFrame, sheet_dir: Path | None) -> list[Alert]:
    """The headline lines, failing ones first."""
    found = [a for a in (signoff_alert(sheet_dir), completeness_alert(meta, rows)) if a]
    return sorted(found, key=lambda a: not a.bad)


def default_sheet_dir(run_dir: Path) -> Path | None:
    """``signoff/`` beside the run directory (the main job's layout), if it exists."""
    beside = run_dir.resolve().parent / SIGNOFF_DIR
    return beside if beside.is_dir() else None


@dataclass(frozen=True)
class GateView:
    """The gate's verdict on the reported run (CAND) against ``base``, for the first screen."""

    alert: Alert
    result: GateResult | None  # None when the gate refused or could not read CAND


def gate_view(base: Run, cand_dir: Path, shown: int = 3) -> GateView:
    """Decide the gate as ``compare BASE CAND`` does (no adaptive or paired reruns).

    A refusal (other machine, other build) or an unreadable CAND is the gate's verdict here,
    said in one line; BASE itself was read by the caller, so bad input stops earlier.
    """
    where = f"against BASE {base.directory}"
    try:
        cand = load_run(cand_dir)
        require_finished(base, "BASE")  # what compare refuses is not decided here either
        require_finished(cand, "CAND")
        thresholds = load_thresholds(cand, None)
        timed = {k.cell for k in timing_samples(base.rows)} & {
            k.cell for k in timing_samples(cand.rows)
        }
        check_comparable(base.meta, cand.meta, False, timed, perf=bool(timed))
    except RefusalError as exc:
        reason = " ".join(str(exc).split())
        return GateView(Alert(True, f"⛔ GATE REFUSED {where}: {reason}"), None)
    except RunDirError as exc:
        return GateView(Alert(True, f"⛔ GATE NOT DECIDED {where}: {exc}"), None)
    result = dataclasses.replace(
        evaluate(base.rows, cand.rows, thresholds),
        oracle_changes=oracle_changes(base.meta.raw, base.rows, cand.meta.raw, cand.rows),
    )  # as compare says it: the headline names a preset whose model oracle differs
    worst = sorted(result.regressions, key=lambda c: -c.comparison.ratio)[:shown]
    slower = "; ".join(
        f"{c.key.cell} {c.key.name} {(c.comparison.ratio - 1) * 100:+.1f}%" for c in worst
    )
    text = f"{headline(result)} ({where})" + (f". Slowest: {slower}" if slower else "")
    if result.failed:
        return GateView(Alert(True, "❌ " + text.replace("gate FAIL", "GATE FAIL", 1)), result)
    return GateView(Alert(False, "✅ " + text), result)


# statuses of a row that checked or measured something (a skipped row did neither)
RAN = frozenset({"pass", "fail", "error", "measured", "noisy"})


def unmeasured_checks(rows: pd.DataFrame, shown: int = 3) -> list[str]:
    """One sentence per check kind that ran nothing in some cell: every row of it ``skipped``.

    A bench whose every row was skipped (a library bound without tinygpt.h's ABI) leaves no
    figure, and silence must not read as speed measured: the sentence names the cells (or
    "every cell") and the skipped rows' reasons.
    """
    if rows.empty:
        return []
    own = rows[(rows["check"] != "cell") & (rows["host"] != REFERENCE_HOST)]
    out = []
    for check, g in own.groupby("check", sort=True):
        cells = g.groupby(["host", "artifact", "preset"], sort=True)
        empty = [
            (f"{h}/{a}/{p}", c) for (h, a, p), c in cells if not c["status"].isin(list(RAN)).any()
        ]
        if not empty:
            continue
        where = (
            "any cell"
            if len(empty) == cells.ngroups
            else ", ".join(name for name, _ in empty[:shown])
            + (f" and {len(empty) - shown} more" if len(empty) > shown else "")
        )
        reasons = sorted({str(d) for _, c in empty for d in c["detail"] if str(d)})
        why = "; ".join(reasons[:2]) + (
            f"; {len(reasons) - 2} other reasons" if len(reasons) > 2 else ""
        )
        figure = "no speed figure" if check == "bench" else "nothing checked"
        out.append(f"{check}: {figure} in {where}: every row skipped ({why or 'no reason given'})")
    return out
