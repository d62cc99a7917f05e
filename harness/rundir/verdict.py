"""The ONE cell-verdict rule, used by the runner when a cell ends and by every reader.

A cell's verdict is decided once, by the runner, from the cell's check rows
(:func:`decide`), and recorded as the cell's verdict row. Readers (merge, report, gate) never
re-derive it: a cell's verdict is its verdict row, and a cell with rows but no verdict row did
not finish (a crash or a kill mid-cell) and is :data:`INCOMPLETE` (:func:`cell_verdicts`).

The outcome of one check of a cell (a JUnit testcase, a pytest item) follows from the same rule
applied to that check's rows (:func:`check_outcomes`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

from harness.rundir.rows import REFERENCE_HOST, VERDICTS, Row, Status

# Worst first: a cell's verdict is the worst status among its verdict rows.
SEVERITY: tuple[Status, ...] = ("error", "fail", "incompatible", "skipped", "pass")
FAILING: frozenset[str] = frozenset({"error", "fail"})
# A cell that has rows but no verdict row: it was cut short and `run --resume` re-runs it.
INCOMPLETE: Literal["incomplete"] = "incomplete"
INCOMPLETE_DETAIL = "no verdict row: the cell did not finish (re-run it with `run --resume`)"
CellStatus = Literal["pass", "fail", "error", "incompatible", "skipped", "incomplete"]


# The cause of a ``pass`` cell some of whose rows were ``skipped`` (decide) starts with this
PARTLY_SKIPPED = "partly skipped: "


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
        return "pass", f"{PARTLY_SKIPPED}{skipped_cause}"
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


@dataclass(frozen=True)
class Completeness:
    """Whether a run finished: what its run.json says and which planned cells lack a verdict.

    The one owner of "is this run complete", shared by the report's headline and the gate.
    """

    recorded: bool  # False when there is no run.json to ask (the report still renders)
    status: object  # run.json's ``status``: complete, or why not (None when it records none)
    interrupted: bool  # run.json's ``interrupted`` flag
    not_run: tuple[str, ...]  # cells run.json planned (``cells``) that have no verdict row

    @property
    def complete(self) -> bool:
        """True when nothing below says otherwise."""
        return not self.reasons()

    def reasons(self, shown: int = 5) -> list[str]:
        """One phrase per reason the run is incomplete (first ``shown`` cells named)."""
        why = []
        # a run.json that records no status (hand-written, or older than the field) is judged
        # by its flag and its cells alone, by every reader alike
        if self.recorded and self.status is not None and self.status != "complete":
            why.append(f"run status {self.status!r}, not 'complete'")
        if self.interrupted:
            why.append("interrupted")
        if self.not_run:
            more = ", ..." if len(self.not_run) > shown else ""
            named = ", ".join(self.not_run[:shown]) + more
            why.append(f"{len(self.not_run)} cells not run ({named})")
        return why

    def how_to_finish(self, directory: Path, matrix: str) -> str:
        """What makes the run whole: merge the missing shards, or resume it."""
        if self.status == "partial":  # harness/merge.py: not every shard was merged
            return "merge its missing shards"
        return f"finish it with `tinygpt-harness run --resume {directory} --matrix {matrix}`"


def completeness(meta: Mapping[str, Any], judged: Iterable[str]) -> Completeness:
    """How complete a run is, from its run.json (``meta``, {} when missing) and ``judged``,
    the cells that have a verdict row (:func:`finished_cells`)."""
    planned = meta.get("cells")
    done = set(judged)
    not_run = [str(c) for c in planned if str(c) not in done] if isinstance(planned, list) else []
    return Completeness(
        bool(meta),
        meta.get("status"),
        meta.get("interrupted") is True,
        tuple(not_run),
    )


def count_verdicts(rows: Iterable[Row]) -> dict[str, int]:
    """Count the cell verdict rows by status (every :data:`SEVERITY` key, zeros included)."""
    counts: Counter[str] = Counter(r.status for r in rows if r.is_verdict)
    return {v: counts.get(v, 0) for v in SEVERITY}


def exit_code(verdicts: dict[str, int]) -> int:
    """0 when every cell is pass/incompatible/skipped, 1 when any cell failed or errored."""
    return 1 if any(verdicts.get(v, 0) for v in FAILING) else 0


# Why a planned check has no outcome of its own: the cell never started.
NOT_RUN = "not run: the run stopped before this cell (interrupted, or --fail-fast)"
NO_ROWS = "the check wrote no rows: nothing was checked"


@dataclass(frozen=True)
class CheckOutcome:
    """The outcome of one check of one cell: a JUnit testcase, a pytest item."""

    cell: str  # host/artifact/preset
    check: str
    status: CellStatus
    cause: str  # one line: the first cause at the outcome's severity ("" on a pass)
    # every row of the check that failed, errored or was skipped, one line each, for the body
    details: tuple[str, ...] = ()


def _line(row: Row) -> str:
    where = f"{row.check}:{row.subject}" if row.subject else row.check
    metric = f" {row.metric}" if row.metric else ""
    return f"{where} {row.status}{metric}" + (f": {row.detail}" if row.detail else "")


def check_outcomes(cell: str, checks: Sequence[str], rows: Iterable[Row]) -> list[CheckOutcome]:
    """The outcome of each of ``checks`` in ``cell``, from the cell's rows (any others ignored).

    A check with rows of its own takes :func:`decide` of those rows. A check without rows takes
    the cell-level problem that stopped it (host unavailable, artifact refused or not loaded:
    the runner records those as ``check="cell"`` rows and runs no later check); without one it
    is an ``error`` (:data:`NO_ROWS`; the runner writes that row itself: a check that checked
    nothing must not pass CI as skipped). A cell with rows but no verdict row did not finish:
    its checks are :data:`INCOMPLETE`; a cell with no rows at all never started (:data:`NOT_RUN`).
    """
    mine = [r for r in rows if r.cell == cell and r.host != REFERENCE_HOST]
    if not mine:
        return [CheckOutcome(cell, kind, "skipped", NOT_RUN) for kind in checks]
    finished = any(r.is_verdict for r in mine)
    problems = [r for r in mine if r.check == "cell" and not r.is_verdict]
    out: list[CheckOutcome] = []
    for kind in checks:
        own = [r for r in mine if r.check == kind]
        bad = tuple(_line(r) for r in own if r.status in VERDICTS and r.status != "pass")
        if not finished:
            cause = INCOMPLETE_DETAIL + (f"; {bad[0]}" if bad else "")
            out.append(CheckOutcome(cell, kind, INCOMPLETE, cause, bad))
        elif own:
            verdict, cause = decide(own)  # a VERDICTS status: decide returns no measurement
            out.append(CheckOutcome(cell, kind, cast(CellStatus, verdict), cause, bad))
        elif problems:
            first = problems[0]
            status = cast(CellStatus, first.status)  # the runner writes cell rows as verdicts
            cause = f"cell:{first.subject}: {first.detail}" if first.detail else "cell"
            out.append(CheckOutcome(cell, kind, status, cause, (_line(first),)))
        else:
            out.append(CheckOutcome(cell, kind, "error", NO_ROWS))
    return out
