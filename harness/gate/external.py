"""External measurement files: a project's own numbers, cited by a claim.

A project measures some of its published numbers with its own scripts, for example a browser
benchmark of a WebGPU backend the harness does not run. A claim cites such a file with
``measurements = "results/browser.json"`` (relative to the claims file) and is then checked
against it (its band and the single-point rule) instead of against a harness run. Two formats,
documented in docs/signoff.md ("External measurements"):

JSON::

    {"format": "tinygpt-measurements/1",
     "provenance": {"commit": "4f2c9e1", "machine": "MacBook Air M2", "date": "2026-11-20",
                    "script": "bench/measure.ts", "hosts": {"chrome": "131.0.6778.86"}},
     "rows": [{"host": "chrome", "artifact": "webgpu", "preset": "small", "subject": "train_step",
               "metric": "speedup", "x": 411648, "value": 9.7}, ...]}

CSV: a header, then one row per value; columns ``host, artifact, preset, subject, metric,
value`` and the provenance ``commit, machine, date, script`` on every row; optional ``check``
(default ``bench``) and ``x``.

Provenance is required: ``commit``, ``machine``, ``date`` and ``script`` (what wrote the file),
non-empty. A value is a finite number: in JSON a number (not a string, not true/false), in CSV
a decimal. Bad files raise GateInputError naming ``file:line``.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.gate.claim_checks import Finding, check_single_point, check_values
from harness.gate.claims import Claim, Quantity, x_text
from harness.gate.errors import GateInputError

FORMAT = "tinygpt-measurements/1"
PROVENANCE_FIELDS = ("commit", "machine", "date", "script")
ROW_FIELDS = ("host", "artifact", "preset", "subject", "metric", "value")


@dataclass(frozen=True)
class ExternalMeasurements:
    """The values of one measurement file and where they come from."""

    path: Path
    provenance: Mapping[str, str]
    table: Mapping[Quantity, float]

    def describe(self) -> str:
        """One line: the file and its provenance, for every finding that used it."""
        p = self.provenance
        return f"{self.path.name} ({p['script']} at {p['commit']}, {p['machine']}, {p['date']})"


def _line_of(text: str, needle: str, start: int = 0) -> int:
    at = text.find(needle, start)
    return text.count("\n", 0, at) + 1 if at >= 0 else 1


# A CSV cell's value: a decimal number as a script prints it ("9.7", "-1e-3", " 4.2"); float()
# alone would also read "1_000" and "1_0.5" (Python literal syntax, not a measurement). "nan"
# and "inf" pass here to be refused as "not finite", the clearer message.
_DECIMAL = re.compile(
    r"\s*[+-]?(?:(?:\d+(?:\.\d*)?|\.\d+)(?:e[+-]?\d+)?|nan|inf(?:inity)?)\s*", re.IGNORECASE
)


def _value(raw: object, where: str, csv_cell: bool) -> float:
    """The row's value: a JSON number (not true/false, which Python reads as 1.0 and 0.0, and
    not a string: "9.7" is text), or in a CSV a decimal number; GateInputError otherwise."""
    if csv_cell:
        if isinstance(raw, str) and _DECIMAL.fullmatch(raw):
            return float(raw)
        raise GateInputError(where, "value", f"not a number: {raw!r}")
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        # an integer beyond a float's range (1e400 written out) is refused as not finite
        return float(raw) if isinstance(raw, float) or abs(raw) < 2**1023 else math.inf
    raise GateInputError(
        where, "value", f"not a number: {json.dumps(raw)} (a JSON number: unquoted, not a boolean)"
    )


def _quantity(
    row: Mapping[str, Any], where: str, path: Path, csv_cell: bool = False
) -> tuple[Quantity, float]:
    for key in ROW_FIELDS:
        if row.get(key) in (None, ""):
            raise GateInputError(where, key, f"missing in {path.name}")
    value = _value(row["value"], where, csv_cell)
    if not math.isfinite(value):
        raise GateInputError(where, "value", f"not finite: {row['value']!r}")
    q = Quantity(
        host=str(row["host"]),
        artifact=str(row["artifact"]),
        preset=str(row["preset"]),
        check=str(row.get("check") or "bench"),
        subject=str(row["subject"]),
        metric=str(row["metric"]),
        x=_x(row.get("x")),
    )
    return q, value


def _x(raw: object) -> str:
    """An x as run rows render it: ``411648`` for 411648, 411648.0 and "411648" alike."""
    if raw is None or raw == "":
        return ""
    try:
        return x_text(float(str(raw)))
    except ValueError:
        return str(raw)


def _provenance(raw: Mapping[str, Any], where: str) -> dict[str, str]:
    for key in PROVENANCE_FIELDS:
        if not isinstance(raw.get(key), str) or not str(raw[key]).strip():
            raise GateInputError(where, f"provenance.{key}", "missing (a non-empty string)")
    return {k: str(v) for k, v in raw.items() if isinstance(v, str)}


def load_measurements(path: Path) -> ExternalMeasurements:
    """Read a JSON or CSV measurement file (by suffix); raise GateInputError on bad input."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise GateInputError(path, "", "measurement file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise GateInputError(path, "", f"cannot read: {exc}") from None
    if path.suffix.lower() == ".csv":
        return _load_csv(path, text)
    if path.suffix.lower() != ".json":
        raise GateInputError(path, "", "a measurement file is .json or .csv")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise GateInputError(f"{path}:{exc.lineno}", "", f"invalid JSON: {exc.msg}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise GateInputError(f"{path}:1", "format", f"must be {FORMAT!r}")
    prov = data.get("provenance")
    if not isinstance(prov, dict):
        raise GateInputError(f"{path}:1", "provenance", "missing (commit, machine, date, script)")
    prov_line = _line_of(text, '"provenance"')
    provenance = _provenance(prov, f"{path}:{prov_line}")
    rows = data.get("rows")
    if not isinstance(rows, list) or not rows:
        raise GateInputError(f"{path}:1", "rows", "expected a non-empty list of rows")
    table: dict[Quantity, float] = {}
    cursor = text.find('"rows"')
    for i, row in enumerate(rows):
        cursor = text.find("{", cursor + 1)
        where = f"{path}:{text.count(chr(10), 0, max(cursor, 0)) + 1}"
        if not isinstance(row, dict):
            raise GateInputError(where, f"rows[{i}]", "must be an object")
        q, v = _quantity(row, where, path)
        _put(table, q, v, where)
    return ExternalMeasurements(path, provenance, table)


def _put(table: dict[Quantity, float], q: Quantity, v: float, where: str) -> None:
    """Add one row's quantity; a repeat would let row order pick the value a claim is judged on."""
    if q in table:
        at = f" at x={q.x}" if q.x else ""
        raise GateInputError(
            where, "", f"repeats {q.cell} {q.subject} {q.metric}{at}: one row each"
        )
    table[q] = v


def _load_csv(path: Path, text: str) -> ExternalMeasurements:
    reader = csv.DictReader(text.splitlines())
    header = reader.fieldnames or []
    missing = [c for c in (*ROW_FIELDS, *PROVENANCE_FIELDS) if c not in header]
    if missing:
        raise GateInputError(f"{path}:1", ",".join(missing), "missing column(s)")
    table: dict[Quantity, float] = {}
    provenance: dict[str, str] = {}
    for row in reader:
        where = f"{path}:{reader.line_num}"
        prov = _provenance(row, where)
        provenance = provenance or prov
        if prov["commit"] != provenance["commit"] or prov["machine"] != provenance["machine"]:
            raise GateInputError(
                where, "commit/machine", "one file holds the measurements of one commit and machine"
            )
        q, v = _quantity(row, where, path, csv_cell=True)
        _put(table, q, v, where)
    if not table:
        raise GateInputError(f"{path}:2", "", "no rows")
    return ExternalMeasurements(path, provenance, table)


def check_claim(claim: Claim, claims_path: Path) -> list[Finding]:
    """A claim that cites a measurement file: its band and the single-point rule, on the file.

    The file's provenance is named in every finding it gives.
    """
    data = load_measurements(claims_path.parent / claim.measurements)
    tag = f" [from {data.describe()}]"
    out = check_values(claim, data.table, source="the file has")
    out += check_single_point(claim, data.table)
    return [Finding(f.claim, f.status, f.message + tag) for f in out]
