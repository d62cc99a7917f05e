"""The report's history section: the trends of its key measurements from a ``history`` store.

The store, the series and the change points are ``tinygpt-harness history``'s
(:mod:`harness.gate.history`). To stay quick the report draws only the train step's trend on the
reported run's machine (every machine when the run's is not in the store), lists every change
point, and points at ``history --out`` for the other measurements.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from harness.gate.changepoint import Step
from harness.gate.history import find_steps
from harness.gate.series import Series, build_series
from harness.gate.store import iter_entries
from harness.gate.trend_plots import footer_text, plot_measurement, slug
from harness.report_tables import Table

KEY_SUBJECT = "train_step"  # the trend the report draws, one figure per preset
MIN_STEP = 0.03  # history's default: the smallest relative step listed
HISTORY_DIR = "history"


@dataclass(frozen=True)
class HistoryView:
    """What the report shows of a store."""

    store: Path
    entries: int
    commits: int
    plots: tuple[tuple[str, Path], ...]  # (title, PNG) of each key measurement
    steps: Table | None  # every change point, or None when there is none


def history_view(store: Path, out: Path, machine: str = "") -> HistoryView:
    """Read ``store`` (RunDirError on a corrupt entry) and plot its key trends under ``out``.

    ``machine`` is the reported run's fingerprint id: only its trends are drawn, if stored.
    """
    entries = list(iter_entries(store))
    drawn = {e.fingerprint_id for e in entries}
    if machine in drawn:
        drawn = {machine}
    series = build_series(entries)
    steps = find_steps(series, MIN_STEP)
    by_cell: dict[tuple[str, str], dict[str, list[Step]]] = defaultdict(lambda: defaultdict(list))
    for s, st in steps:
        by_cell[(s.key.fingerprint_id, s.key.measurement)][s.key.cell].append(st)
    groups: dict[tuple[str, str], list[Series]] = defaultdict(list)
    for s in series:
        if s.key.subject == KEY_SUBJECT and s.key.fingerprint_id in drawn:
            groups[(s.key.fingerprint_id, s.key.measurement)].append(s)
    plots = []
    for (fp, measurement), members in sorted(groups.items()):
        mine = [e for e in entries if e.fingerprint_id == fp]
        order = list(dict.fromkeys(e.commit for e in mine))
        stem = out / HISTORY_DIR / slug(fp) / slug(measurement, "median_ns")
        footer = footer_text(fp, mine[-1].machine, len(order))
        png, _svg = plot_measurement(members, by_cell[(fp, measurement)], stem, order, footer)
        plots.append((f"{measurement} on machine {fp}", png))
    table = None
    if steps:
        table = Table(
            f"Change points in the history store ({len(steps)})",
            ("machine", "cell", "measurement", "first commit", "before", "after", "step"),
            tuple(_step_row(s, st) for s, st in steps),
            f"Steps of at least {MIN_STEP:.0%} in median_ns (tinygpt-harness history).",
        )
    commits = len({e.commit for e in entries})
    return HistoryView(store, len(entries), commits, tuple(plots), table)


def _step_row(s: Series, st: Step) -> tuple[str, ...]:
    return (
        s.key.fingerprint_id,
        s.key.cell,
        s.key.measurement,
        st.commit[:12],
        f"{st.before:.4g}",
        f"{st.after:.4g}",
        f"{st.percent:+.1f}%",
    )
