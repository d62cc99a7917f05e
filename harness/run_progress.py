"""What ``run`` shows while it works: a progress bar over cells, then a summary table.

Progress goes to stderr: a rich bar on a terminal, one plain line per cell otherwise (CI logs).
The summary table goes to stdout.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from harness.rundir.verdict import SEVERITY

CAUSE_CHARS = 160
LOG_WIDTH = 160  # columns of the summary when stdout is a log file rather than a terminal
STYLE = {
    "pass": "green",
    "fail": "bold red",
    "error": "bold red",
    "incompatible": "yellow",
    "skipped": "dim",
}


class CellProgress:
    """Progress over ``total`` cells on ``console`` (rich bar on a TTY, plain lines otherwise)."""

    def __init__(self, total: int, console: Console) -> None:
        self.total = total
        self.console = console
        self.count = 0
        self.started = 0.0
        self.bar: Progress | None = None
        if console.is_terminal:
            self.bar = Progress(
                TextColumn("[bold]run"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.description}"),
                console=console,
                transient=True,
            )
            self.task = self.bar.add_task("", total=total)
            self.bar.start()

    def start(self, cell: str) -> None:
        """A cell begins."""
        self.started = time.perf_counter()
        if self.bar is not None:
            self.bar.update(self.task, description=cell)

    def done(self, cell: str, verdict: str) -> None:
        """A cell ended with ``verdict``."""
        self.count += 1
        seconds = time.perf_counter() - self.started
        if self.bar is not None:
            self.bar.advance(self.task)
            line = Text.assemble((f"{verdict:>12}", STYLE.get(verdict, "")), f" {cell}")
            self.bar.console.print(line)
        else:
            self.console.print(
                f"[{self.count}/{self.total}] {cell} {verdict} ({seconds:.1f}s)",
                highlight=False,
                markup=False,
            )

    def close(self) -> None:
        """Stop the bar (a no-op in plain mode)."""
        if self.bar is not None:
            self.bar.stop()


def print_summary(
    cells: Sequence[tuple[str, str, str, float]],
    verdicts: dict[str, int],
    interrupted: bool,
    console: Console,
    total: int | None = None,
) -> None:
    """Print one line per cell (id, verdict, seconds, first cause) and the verdict counts:
    "N cells: ..." when all ``total`` cells (default: the rows of ``cells``) have a verdict,
    "N of M cells finished: ..." when some have none."""
    table = Table(title="cells", show_lines=False)
    table.add_column("cell", no_wrap=True)
    table.add_column("verdict")
    table.add_column("s", justify="right")
    table.add_column("first cause", overflow="fold")
    for cell, verdict, cause, seconds in cells:
        style = STYLE.get(verdict, "")
        shown = "" if seconds != seconds else f"{seconds:.1f}"  # NaN for interrupted cells
        if len(cause) > CAUSE_CHARS:  # a glance; the full cause is in the verdict row
            cause = cause[: CAUSE_CHARS - 1] + "…"
        # Text, not markup: causes quote engine messages that may contain [brackets].
        table.add_row(Text(cell), Text(verdict, style=style), shown, Text(cause))
    console.print(table)
    counts = ", ".join(f"{verdicts.get(v, 0)} {v}" for v in SEVERITY)
    # Counted from the verdicts, not the table: an interrupted cell has a row there but no
    # verdict, and "1 cells" with every count 0 reads as a cell that was counted nowhere.
    finished = sum(verdicts.get(v, 0) for v in SEVERITY)
    total = len(cells) if total is None else total
    said = f"{total} cells" if finished == total else f"{finished} of {total} cells finished"
    console.print(f"{said}: {counts}" + (" (interrupted)" if interrupted else ""))
