"""``tinygpt-harness history``: store runs across commits, plot trends, find change points.

``--add RUN`` stores a run's summary in the store (one file per machine, version and matrix;
the version is the commit, plus the build of a project's own binaries: harness.gate.store);
``--out DIR`` writes ``DIR/history.html`` and one PNG+SVG per measurement under
``DIR/history/<machine>/``; the change points are always printed.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

from rich.console import Console
from rich.table import Table

from harness.gate.changepoint import Step, detect_steps
from harness.gate.series import Series, build_series
from harness.gate.store import DEFAULT_STORE, Entry, add_run, iter_entries, short_version
from harness.gate.trend_plots import footer_text, plot_measurement, slug, write_page
from harness.rundir.meta import RunDirError
from harness.rundir.reader import load_run


def configure(parser: argparse.ArgumentParser) -> None:
    """Add history's arguments."""
    parser.add_argument("--store", type=Path, default=DEFAULT_STORE, help="history store dir")
    parser.add_argument(
        "--add", type=Path, action="append", default=[], metavar="RUN", help="store this run"
    )
    parser.add_argument("--out", type=Path, help="write history.html and the plots here")
    parser.add_argument("--metric", default="median_ns", help="summary metric to follow")
    parser.add_argument(
        "--min-step", type=float, default=0.03, help="smallest relative step to report"
    )


def find_steps(series: list[Series], min_step: float) -> list[tuple[Series, Step]]:
    """Every change point of every series."""
    return [(s, st) for s in series for st in detect_steps(s.values, s.commits, min_step)]


def render(out: Path, entries: list[Entry], series: list[Series], min_step: float) -> Path:
    """Plot one figure per (machine, measurement) and write the page; returns its path."""
    steps = find_steps(series, min_step)
    by_cell: dict[tuple[str, str], dict[str, list[Step]]] = defaultdict(lambda: defaultdict(list))
    for s, st in steps:
        by_cell[(s.key.fingerprint_id, s.key.measurement)][s.key.cell].append(st)
    groups: dict[tuple[str, str, str], list[Series]] = defaultdict(list)
    for s in series:
        groups[(s.key.fingerprint_id, s.key.measurement, s.key.metric)].append(s)
    plots: dict[str, list[tuple[str, Path]]] = defaultdict(list)
    for (fp, measurement, metric), members in sorted(groups.items()):
        mine = [e for e in entries if e.fingerprint_id == fp]
        order = list(dict.fromkeys(e.version for e in mine))
        footer = footer_text(fp, mine[-1].machine, len(order))
        stem = out / "history" / slug(fp) / slug(measurement, metric)
        png, _svg = plot_measurement(members, by_cell[(fp, measurement)], stem, order, footer)
        plots[fp].append((f"{measurement} ({metric})", png))
    return write_page(out, plots, steps)


def print_steps(steps: list[tuple[Series, Step]], console: Console) -> None:
    """Print the change-point table."""
    if not steps:
        console.print("history: no change points")
        return
    table = Table(title="change points")
    for h in ("machine", "cell", "measurement", "first commit", "before", "after", "step"):
        table.add_column(h)
    for s, st in steps:
        table.add_row(
            s.key.fingerprint_id, s.key.cell, s.key.measurement, short_version(st.commit),
            f"{st.before:.4g}", f"{st.after:.4g}", f"{st.percent:+.1f}%",
        )  # fmt: skip
    console.print(table)


def execute(args: argparse.Namespace) -> int:
    """Add runs, then report; 0 on success, 2 on bad input."""
    console = Console(width=160)
    try:
        for run_dir in args.add:
            path = add_run(args.store, load_run(run_dir))
            console.print(f"history: stored {run_dir} as {path}", markup=False)
        entries = list(iter_entries(args.store))
    except RunDirError as exc:  # GateInputError is a RunDirError
        print(f"history: {exc}", file=sys.stderr)
        return 2
    series = build_series(entries, args.metric)
    print_steps(find_steps(series, args.min_step), console)
    if args.out is not None:
        if not series:
            print(f"history: no {args.metric} points in {args.store}", file=sys.stderr)
            return 2
        page = render(args.out, entries, series, args.min_step)
        console.print(f"history: wrote {page}", markup=False)
    return 0
