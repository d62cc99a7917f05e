"""History series: one value per commit for each (machine, cell, measurement, metric)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from harness.gate.store import Entry, Point


@dataclass(frozen=True, order=True)
class SeriesKey:
    """What one trend line follows across commits."""

    fingerprint_id: str
    subject: str
    x_name: str
    x: str
    metric: str
    cell: str

    @property
    def measurement(self) -> str:
        """``subject`` or ``subject@x_name=x`` (the key thresholds use)."""
        return f"{self.subject}@{self.x_name}={self.x}" if self.x_name else self.subject


@dataclass(frozen=True)
class Series:
    """A trend line: commits in measurement order and the value at each."""

    key: SeriesKey
    commits: tuple[str, ...]
    values: tuple[float, ...]
    unit: str
    last: Point  # the newest point: host version and artifact sha for the legend
    ci: tuple[tuple[float, float], ...] = ()  # (low, high) per commit when the run recorded it


def build_series(entries: Iterable[Entry], metric: str = "median_ns") -> list[Series]:
    """Group the store's points into series of ``metric``, one per machine, cell, measurement."""
    values: dict[SeriesKey, list[tuple[str, Point]]] = defaultdict(list)
    bounds: dict[tuple[SeriesKey, str], dict[str, float]] = defaultdict(dict)
    # The bench check records the median's bootstrap CI beside it: draw it as a band.
    band = ("ci_low_ns", "ci_high_ns") if metric == "median_ns" else None
    for entry in entries:
        for p in entry.points:
            key = SeriesKey(entry.fingerprint_id, p.subject, p.x_name, p.x, metric, p.cell)
            if p.metric == metric:
                values[key].append((entry.version, p))
            elif band is not None and p.metric in band:
                bounds[(key, entry.version)][p.metric] = p.value
    out = []
    for key, items in sorted(values.items()):
        ci: list[tuple[float, float]] = []
        if band is not None and all(len(bounds.get((key, c), {})) == 2 for c, _ in items):
            ci = [(bounds[(key, c)][band[0]], bounds[(key, c)][band[1]]) for c, _ in items]
        out.append(
            Series(
                key=key,
                commits=tuple(c for c, _ in items),
                values=tuple(p.value for _, p in items),
                unit=items[-1][1].unit,
                last=items[-1][1],
                ci=tuple(ci),
            )
        )
    return out
