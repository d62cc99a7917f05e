"""Result rows: one flat row per measurement or verdict (Sightglass style).

Rows load into pandas with no reshaping. ``RESULTS_FILE`` in a run directory is appended and
flushed row by row as each cell ends, so a crash or Ctrl-C loses nothing already recorded.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

SCHEMA_VERSION = 1
RESULTS_FILE = "results.csv"
RUN_FILE = "run.json"

Status = Literal["pass", "fail", "error", "incompatible", "skipped", "measured", "noisy"]
# Verdict statuses are the five a cell can end with; "measured" and "noisy" mark pure
# measurements (a bench figure), which carry no verdict but "noisy" flags a figure whose CI is
# wider than +-10% of its median.
VERDICTS: tuple[str, ...] = ("pass", "fail", "error", "incompatible", "skipped")
STATUSES: tuple[str, ...] = (*VERDICTS, "measured", "noisy")


@dataclass(frozen=True)
class Row:
    """One measurement or verdict of one check in one cell."""

    host: str  # e.g. "node24"
    host_version: str  # e.g. "v24.21.0"
    artifact: str  # e.g. "wasm64"
    artifact_sha256: str
    preset: str  # e.g. "small"; "" when the check has no preset
    check: str  # check kind: smoke, ops, model, defaults, corpus, bench
    subject: str  # what was checked: op name, tensor name, surface key, curve name
    status: Status
    metric: str = ""  # e.g. max_abs_err, median_ns, speedup
    value: float = math.nan
    unit: str = ""
    detail: str = ""  # the exact cause or context, in the host's own words where it has any
    x_name: str = ""  # the sweep variable of a curve point, e.g. "n", "params", "context"
    x_value: float = math.nan
    iteration: int = -1  # sample index for raw timing samples, -1 for summaries

    @property
    def cell(self) -> str:
        """The cell id ``host/artifact/preset``."""
        return f"{self.host}/{self.artifact}/{self.preset}"


COLUMNS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Row))


class RowWriter:
    """Append rows to ``DIR/results.csv``, flushing and fsyncing at each :meth:`commit`."""

    def __init__(self, run_dir: Path) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        self.path = run_dir / RESULTS_FILE
        new = not self.path.exists() or self.path.stat().st_size == 0
        self._fh: IO[str] = self.path.open("a", newline="", encoding="utf-8")
        self._csv = csv.writer(self._fh)
        if new:
            self._csv.writerow(COLUMNS)
            self.commit()

    def write(self, rows: Iterable[Row]) -> None:
        """Append ``rows`` (buffered until :meth:`commit`)."""
        for r in rows:
            self._csv.writerow(_encode(getattr(r, c)) for c in COLUMNS)

    def commit(self) -> None:
        """Make everything written so far durable."""
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        """Commit and close the file."""
        self.commit()
        self._fh.close()


def _encode(v: object) -> object:
    if isinstance(v, float) and math.isnan(v):
        return ""
    return v


def read_rows(path: Path) -> Iterator[Row]:
    """Yield the rows of a results.csv; a truncated last line (a crash mid-write) is skipped."""
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        for rec in reader:
            if None in rec or any(rec.get(c) is None for c in COLUMNS):
                continue  # partial line from an interrupted write
            yield Row(
                host=rec["host"],
                host_version=rec["host_version"],
                artifact=rec["artifact"],
                artifact_sha256=rec["artifact_sha256"],
                preset=rec["preset"],
                check=rec["check"],
                subject=rec["subject"],
                status=rec["status"],  # type: ignore[arg-type]
                metric=rec["metric"],
                value=float(rec["value"]) if rec["value"] else math.nan,
                unit=rec["unit"],
                detail=rec["detail"],
                x_name=rec["x_name"],
                x_value=float(rec["x_value"]) if rec["x_value"] else math.nan,
                iteration=int(rec["iteration"]) if rec["iteration"] else -1,
            )
