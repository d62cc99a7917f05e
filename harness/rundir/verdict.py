"""The ONE cell-verdict rule, used by the runner when a cell ends and by every reader.

A cell's verdict is decided once, by the runner, from the cell's check rows
(:func:`decide`), and recorded as the cell's verdict row. Readers (merge, report, gate) never
re-derive it: a cell's verdict is its verdict row, and a cell with rows but no verdict row did
not finish (a crash or a kill mid-cell) and is :data:`INCOMPLETE` (:func:`cell_verdicts`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Literal

from harness.rundir.rows import REFERENCE_HOST, VERDICTS, Row, Status

# Worst first: a cell's verdict is the worst status among its verdict rows.
SEVERITY: tuple[Status, ...] = ("error", "fail", "incompatible", "skipped", "pass")
FAILING: frozenset[str] = frozenset({"error", "fail"})
# A cell that has rows but no verdict row: it was cut short and `run --resume` re-runs it.
INCOMPLETE: Literal["incomplete"] = "incomplete"
INCOMPLETE_DETAIL = "no verdict row: the cell did not finish (re-run it with `run --resume`)"
CellStatus = Literal["pass", "fail", "error", "incompatible", "skipped", "incomplete"]


def decide(rows: Iterable[Row]) -> tuple[Status, str]:
    """Return ``(verdict, first cause)`` of a finished cell's check rows.

    The verdict is the worst verdict status present (``pass`` if there are only measurements);
    the cause is the detail of the first row with that status, prefixed by its check and subject.
    A ``skipped`` row (e.g. a bench point past the cell's time budget) does not turn a cell that
    passed its checks into ``skipped``: the cell stays ``pass`` and the cause says what was
    skipped. A cell is ``skipped`` only when nothing in it passed or was measured.
    """
    worst: Status = "pass"
    cause = ""
    passed = False
    skipped_cause = ""
    for row in rows:
        if row.is_verdict:
            continue
        passed = passed or row.status in ("pass", "measured", "noisy")
        if row.status not in VERDICTS:
            continue
        where = f"{row.check}:{row.subject}" if row.subject else row.check
        here = f"{where}: {row.detail}" if row.detail else where
        if row.status == "skipped" and not skipped_cause:
            skipped_cause = here
        if SEVERITY.index(row.status) < SEVERITY.index(worst):
            worst = row.status
            cause = here
    if worst == "skipped" and passed:
        return "pass", f"partly skipped: {skipped_cause}"
    return worst, cause if worst != "pass" else ""


def cell_verdicts(rows: Iterable[Row]) -> dict[str, tuple[CellStatus, str]]:
    """``{cell: (status, detail)}`` of every cell with rows: its verdict row, else incomplete.

    A cell's last verdict row wins (a resumed run appends; the runner never writes two).
    """
    out: dict[str, tuple[CellStatus, str]] = {}
    for r in rows:
        if r.host == REFERENCE_HOST:
            continue  # a reference measurement, not a cell
        if r.is_verdict:
            out[r.cell] = (r.status, r.detail)  # type: ignore[assignment]  # a VERDICTS status
        else:
            out.setdefault(r.cell, (INCOMPLETE, INCOMPLETE_DETAIL))
    return out


def finished_cells(rows: Iterable[Row]) -> set[str]:
    """The cells that have a verdict row."""
    return {r.cell for r in rows if r.is_verdict}


def count_verdicts(rows: Iterable[Row]) -> dict[str, int]:
    """Count the cell verdict rows by status (every :data:`SEVERITY` key, zeros included)."""
    counts: Counter[str] = Counter(r.status for r in rows if r.is_verdict)
    return {v: counts.get(v, 0) for v in SEVERITY}


def exit_code(verdicts: dict[str, int]) -> int:
    """0 when every cell is pass/incompatible/skipped, 1 when any cell failed or errored."""
    return 1 if any(verdicts.get(v, 0) for v in FAILING) else 0
