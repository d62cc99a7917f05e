"""Group a run's raw timing samples by (cell, measurement), the unit the gate decides on."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from harness.rundir.rows import Row

TIME_METRIC = "time_ns"


def x_label(x_value: float) -> str:
    """Render a curve point's x exactly and compactly ('' when the row has no x)."""
    if math.isnan(x_value):
        return ""
    return str(int(x_value)) if x_value.is_integer() else repr(x_value)


@dataclass(frozen=True, order=True)
class MeasurementKey:
    """One measurement of one cell: a curve point of a bench subject."""

    cell: str  # host/artifact/preset
    check: str
    subject: str
    x_name: str
    x: str  # x_label(x_value): a string so that "no x" (NaN) is a usable dict key

    @property
    def name(self) -> str:
        """The measurement key thresholds match against: ``subject`` or ``subject@x_name=x``."""
        return f"{self.subject}@{self.x_name}={self.x}" if self.x_name else self.subject

    @property
    def host(self) -> str:
        """The host part of the cell id."""
        return self.cell.split("/", 1)[0]

    @property
    def artifact(self) -> str:
        """The artifact part of the cell id."""
        return self.cell.split("/")[1]


def key_of(row: Row) -> MeasurementKey:
    """The measurement a row belongs to."""
    return MeasurementKey(row.cell, row.check, row.subject, row.x_name, x_label(row.x_value))


def timing_samples(rows: Iterable[Row]) -> dict[MeasurementKey, list[float]]:
    """Return the raw ``time_ns`` samples (``iteration >= 0``) of every measurement."""
    out: dict[MeasurementKey, list[float]] = defaultdict(list)
    for row in rows:
        if row.check == "bench" and row.metric == TIME_METRIC and row.iteration >= 0:
            out[key_of(row)].append(row.value)
    return dict(out)
