"""Result rows: one flat row per measurement or verdict (Sightglass style).

Rows load into pandas with no reshaping. The CSV text of a row is defined here once:
:func:`encode` for the writer, :func:`decode` for the reader.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal, cast

RESULTS_FILE = "results.csv"
# Rows of the numpy reference (bench speedups) carry this host; they belong to the cell whose
# block they were written in and are no cell of their own.
REFERENCE_HOST, REFERENCE_ARTIFACT = "numpy", "reference"

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
    check: str  # check kind: smoke, ops, model, defaults, corpus, bench, memory64, growth
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

    @property
    def is_verdict(self) -> bool:
        """True for the cell's own verdict row (``check="cell"``, ``subject="verdict"``)."""
        return self.check == "cell" and self.subject == "verdict"


COLUMNS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Row))
# Columns an older results.csv may lack; the lenient reader fills them with these texts.
DEFAULT_TEXT: dict[str, str] = {"value": "", "x_value": "", "iteration": "-1"}
REQUIRED: tuple[str, ...] = ("host", "artifact", "check", "subject", "status")


def encode(row: Row) -> list[str]:
    """The CSV fields of ``row`` in :data:`COLUMNS` order (NaN as the empty string)."""
    out: list[str] = []
    for column in COLUMNS:
        v = getattr(row, column)
        out.append("" if isinstance(v, float) and math.isnan(v) else str(v))
    return out


def decode(rec: dict[str, str]) -> Row:
    """The row of a CSV record keyed by column; raises ValueError naming a non-numeric column."""
    numbers: dict[str, float | int] = {}
    for column, kind in (("value", float), ("x_value", float), ("iteration", int)):
        text = rec[column]
        try:
            numbers[column] = kind(text) if text else (-1 if kind is int else math.nan)
        except ValueError:
            raise ValueError(f"{column}: not a number: {text!r}") from None
    return Row(
        host=rec["host"],
        host_version=rec["host_version"],
        artifact=rec["artifact"],
        artifact_sha256=rec["artifact_sha256"],
        preset=rec["preset"],
        check=rec["check"],
        subject=rec["subject"],
        status=cast(Status, rec["status"]),  # validated (or reported) by the reader
        metric=rec["metric"],
        value=float(numbers["value"]),
        unit=rec["unit"],
        detail=rec["detail"],
        x_name=rec["x_name"],
        x_value=float(numbers["x_value"]),
        iteration=int(numbers["iteration"]),
    )
