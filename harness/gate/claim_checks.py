"""Check claims against a run and against the text that publishes them."""

from __future__ import annotations

import dataclasses
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from harness.gate.claims import Claim, ClaimsFile, Quantity
from harness.gate.errors import GateInputError
from harness.gate.measurements import timing_samples, x_label
from harness.rundir.rows import Row

FindingStatus = Literal["pass", "fail", "stale", "refused", "uncovered"]
MAX_PRESET_SPREAD = 0.20  # beyond this a single number misrepresents the quantity (9.7x lesson)
_NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?")


@dataclass(frozen=True)
class Finding:
    """The outcome of one check of one claim (or one uncovered number)."""

    claim: str
    status: FindingStatus
    message: str


def quantity_table(rows: Iterable[Row]) -> dict[Quantity, float]:
    """Every summary value of a run by quantity (``median_ns`` derived from raw samples too)."""
    rows = tuple(rows)
    values: dict[Quantity, list[float]] = defaultdict(list)
    for r in rows:
        if r.iteration < 0 and math.isfinite(r.value) and r.metric:
            q = Quantity(r.host, r.artifact, r.preset, r.check, r.subject, r.metric,
                         x_label(r.x_value))  # fmt: skip
            values[q].append(r.value)
    for key, samples in timing_samples(rows).items():
        host, artifact, preset = key.cell.split("/")
        q = Quantity(host, artifact, preset, key.check, key.subject, "median_ns", key.x)
        values.setdefault(q, [float(np.median(samples))])
    # Merged shards can repeat a cell; their median is the value of record.
    return {q: float(np.median(v)) for q, v in values.items()}


def lookup(table: Mapping[Quantity, float], q: Quantity) -> float | None:
    """``q``'s value; a quantity without ``x`` also matches the one row of its cell that has one.

    A preset curve (``over = "preset"``) names no x, but the bench rows of a per-preset curve
    carry the preset's parameter count as their x: the one such row in the cell is the value.
    Two or more candidates are ambiguous and count as not measured.
    """
    if q in table:
        return table[q]
    if q.x:
        return None
    found = [v for k, v in table.items() if dataclasses.replace(k, x="") == q]
    return found[0] if len(found) == 1 else None


def measure(claim: Claim, key: str, table: Mapping[Quantity, float]) -> float | str:
    """The claim's quantity at ``key`` in the run, or why it cannot be measured."""
    num_q = claim.quantity_at(key)
    num = lookup(table, num_q)
    if num is None:
        return f"not measured in the run: {num_q.label()}"
    den_q = claim.denominator_at(key)
    if den_q is None:
        return num
    den = lookup(table, den_q)
    if den is None or den == 0:
        return f"not measured in the run: {den_q.label()}"
    return num / den


def check_cells(claims: ClaimsFile, cells: set[str]) -> None:
    """Refuse a claim naming a cell the run does not have (a typo, or the wrong run)."""
    for claim in claims.claims:
        for key in claim.points:
            for q in (claim.quantity_at(key), claim.denominator_at(key)):
                if q is not None and q.cell not in cells:
                    field = "preset" if claim.over == "preset" else "host/artifact/preset"
                    known = ", ".join(sorted(cells))
                    raise GateInputError(
                        claims.path,
                        f"claim[{claim.id}].{field}",
                        f"unknown cell {q.cell!r}: not in the run (cells: {known})",
                    )


def check_values(claim: Claim, table: Mapping[Quantity, float]) -> list[Finding]:
    """Each published value against the run, within the claim's relative tolerance."""
    out = []
    for key, published in claim.points.items():
        where = f" at {claim.over}={key}" if claim.over else ""
        got = measure(claim, key, table)
        if isinstance(got, str):
            out.append(Finding(claim.id, "fail", f"{claim.id}{where}: {got}"))
            continue
        change = got / published - 1.0
        if abs(change) > claim.tolerance:
            out.append(Finding(claim.id, "stale", (
                f"{claim.id}{where}: published {published:g}, the run measures {got:.4g} "
                f"({change:+.1%}), beyond the tolerance ±{claim.tolerance:.0%}"
            )))  # fmt: skip
        else:
            out.append(Finding(claim.id, "pass", (
                f"{claim.id}{where}: published {published:g}, measured {got:.4g} ({change:+.1%}, "
                f"tolerance ±{claim.tolerance:.0%})"
            )))  # fmt: skip
    return out


def check_single_point(claim: Claim, table: Mapping[Quantity, float]) -> list[Finding]:
    """Refuse a point claim whose quantity varies by more than 20 % across the run's presets."""
    if claim.is_curve:
        return []
    base = claim.base
    presets = sorted(
        {q.preset for q in table if q.cell.rsplit("/", 1)[0] == f"{base.host}/{base.artifact}"}
    )
    by_preset: dict[str, float] = {}
    for preset in presets:
        moved = dataclasses.replace(claim, over="preset")
        got = measure(moved, preset, table)
        if not isinstance(got, str):
            by_preset[preset] = got
    if len(by_preset) < 2:
        return []
    low, high = min(by_preset.values()), max(by_preset.values())
    spread = high / low - 1.0 if low > 0 else math.inf
    if spread <= MAX_PRESET_SPREAD:
        return []
    listing = ", ".join(f"{p} {v:.3g}" for p, v in by_preset.items())
    return [Finding(claim.id, "refused", (
        f"{claim.id}: a single point ({base.preset}) of a quantity that varies by {spread:.0%} "
        f"across presets ({listing}); publish it as a curve (over = \"preset\")"
    ))]  # fmt: skip


def published_region(
    claim: Claim, root: Path, claims_path: Path
) -> tuple[str, int, list[str]] | str:
    """``(file label, first line number, lines)`` that publish the claim, or why it is stale."""
    pub = claim.published
    path = root / pub.file
    if not path.is_file():
        raise GateInputError(
            claims_path, f"claim[{claim.id}].published.file", f"{path} does not exist"
        )
    lines = path.read_text(encoding="utf-8").splitlines()
    if pub.line:
        if pub.line > len(lines):
            return f"{pub.file} has {len(lines)} lines, the claim points at line {pub.line}"
        return pub.file, pub.line, [lines[pub.line - 1]]
    for i, line in enumerate(lines):
        if pub.marker in line:
            end = i + 1
            while end < len(lines) and lines[end].strip():
                end += 1  # the marker's paragraph or table: up to the next blank line
            return pub.file, i + 1, lines[i:end]
    return f"marker {pub.marker!r} is not in {pub.file}"


def check_text(claim: Claim, root: Path, claims_path: Path) -> list[Finding]:
    """The published text must still carry every claimed value."""
    region = published_region(claim, root, claims_path)
    if isinstance(region, str):
        return [Finding(claim.id, "fail", f"{claim.id}: {region}")]
    label, first, lines = region
    numbers = {float(n) for line in lines for n in _NUMBER.findall(line)}
    missing = [v for v in claim.points.values() if not any(math.isclose(v, n) for n in numbers)]
    if missing:
        span = f"{label}:{first}" + (f"-{first + len(lines) - 1}" if len(lines) > 1 else "")
        return [Finding(claim.id, "fail", (
            f"{claim.id}: {span} no longer carries the claimed "
            f"{', '.join(f'{v:g}' for v in missing)} (numbers there: "
            f"{', '.join(f'{n:g}' for n in sorted(numbers)) or 'none'})"
        ))]  # fmt: skip
    return []


def covered_spans(claims: ClaimsFile, root: Path) -> dict[str, list[tuple[int, int]]]:
    """For each published file, the 1-based line spans that claims cover."""
    spans: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for claim in claims.claims:
        region = published_region(claim, root, claims.path)
        if not isinstance(region, str):
            label, first, lines = region
            spans[str(Path(label))].append((first, first + len(lines) - 1))
    return spans
