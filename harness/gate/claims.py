"""The claims file: every published performance number, what it measures, where it is printed.

Schema (TOML, documented with examples in docs/signoff.md)::

    schema_version = 1
    [scan]                           # where to hunt for numbers no claim covers
    files = ["README.md", "docs/*.md"]
    exclude = ["docs/signoff.md"]    # files that discuss claims rather than make them
    [[scan.not_a_claim]]             # a number that reads like a claim but is not one
    file = "README.md"
    text = "MLP (4x)"                # the line must contain this text; the number lies in it
    reason = "the MLP's width multiplier, not a speed"

    [[claim]]
    id = "wasm64-vs-wasm32-train"    # unique; also the default marker "claim:<id>"
    what = "..."                     # one line for the sign-off sheet
    host = "wasmtime"                # the measured quantity: a bench summary row
    artifact = "wasm64"
    subject = "train_step"
    metric = "median_ns"
    x = 256                          # optional curve point
    check = "bench"                  # default
    [claim.relative_to]              # optional: divide by a second quantity of the same run
    artifact = "wasm32"              # (any field not given is the claim's own)
    # a point claim:   preset = "small"  and  value = 1.32
    # a curve claim:   over = "preset"   and  points = { tiny = 1.1, small = 1.3 }
    tolerance = 0.15                 # relative: |measured / published - 1| <= tolerance
    tolerance_reason = "..."         # why this tolerance survives machine noise
    [claim.published]
    file = "README.md"               # relative to --root
    marker = "claim:wasm64-vs-wasm32-train"   # or: line = 42
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.gate.errors import GateInputError

CLAIMS_SCHEMA_VERSION = 1
_QUANTITY = ("host", "artifact", "preset", "check", "subject", "metric", "x")
_CLAIM_KEYS = {
    *_QUANTITY, "id", "what", "relative_to", "value", "over", "points", "tolerance",
    "tolerance_reason", "published",
}  # fmt: skip


@dataclass(frozen=True)
class Quantity:
    """One summary value of a run: a (cell, check, subject, metric, x) row."""

    host: str
    artifact: str
    preset: str
    check: str
    subject: str
    metric: str
    x: str  # "" when the quantity is not a curve point in x

    @property
    def cell(self) -> str:
        """The cell id ``host/artifact/preset``."""
        return f"{self.host}/{self.artifact}/{self.preset}"

    def label(self) -> str:
        """Human-readable name of the quantity."""
        at = f"@{self.x}" if self.x else ""
        return f"{self.cell} {self.check}:{self.subject}{at} {self.metric}"


@dataclass(frozen=True)
class Published:
    """Where a claim is printed: a file plus a marker string or a 1-based line number."""

    file: str
    marker: str = ""
    line: int = 0


@dataclass(frozen=True)
class Claim:
    """A published number (``points`` has one entry for a point claim) and its tolerance."""

    id: str
    what: str
    base: Quantity  # the quantity at ``points``' keys; its preset is "" for a preset curve
    relative_to: Mapping[str, str]  # overrides that define the denominator ("" = none)
    over: str  # "" for a point claim, "preset" or "x" for a curve
    points: Mapping[str, float]  # preset or x label -> published value
    tolerance: float
    tolerance_reason: str
    published: Published

    @property
    def is_curve(self) -> bool:
        """True for a curve claim."""
        return bool(self.over)

    def quantity_at(self, key: str) -> Quantity:
        """The claim's quantity at one point of its curve (or its single point)."""
        if self.over == "preset":
            return _replace(self.base, preset=key)
        if self.over == "x":
            return _replace(self.base, x=key)
        return self.base

    def denominator_at(self, key: str) -> Quantity | None:
        """The ``relative_to`` quantity at one point, or None for an absolute claim."""
        if not self.relative_to:
            return None
        return _replace(self.quantity_at(key), **self.relative_to)


def _replace(q: Quantity, **kw: str) -> Quantity:
    return Quantity(**{f: kw.get(f, getattr(q, f)) for f in _QUANTITY})


@dataclass(frozen=True)
class NotAClaim:
    """A reviewed exception to the uncovered-number scan, with its reason."""

    file: str
    text: str
    reason: str


@dataclass(frozen=True)
class ClaimsFile:
    """A parsed claims file."""

    path: Path
    claims: tuple[Claim, ...]
    scan_files: tuple[str, ...]
    scan_exclude: tuple[str, ...]
    not_claims: tuple[NotAClaim, ...] = ()


def x_text(value: object) -> str:
    """Render an x given in TOML the way run rows render it (integers without '.0')."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def load_claims(path: Path) -> ClaimsFile:
    """Parse and validate a claims file; errors name the file and ``claim[<id>].<field>``."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GateInputError(path, "", "claims file not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise GateInputError(path, "", f"not valid TOML ({exc})") from exc
    version = data.get("schema_version")
    if version != CLAIMS_SCHEMA_VERSION:
        raise GateInputError(
            path,
            "schema_version",
            f"unknown version {version!r} (expected {CLAIMS_SCHEMA_VERSION})",
        )
    raw = data.get("claim", [])
    if not isinstance(raw, list) or not raw:
        raise GateInputError(path, "claim", "expected at least one [[claim]] table")
    claims = [_claim(path, i, c) for i, c in enumerate(raw)]
    ids = [c.id for c in claims]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise GateInputError(path, f"claim[{dupes[0]}].id", "duplicate claim id")
    scan = data.get("scan", {})
    if not isinstance(scan, dict):
        raise GateInputError(path, "scan", "must be a table")
    return ClaimsFile(
        path=path,
        claims=tuple(claims),
        scan_files=tuple(_strings(path, "scan.files", scan.get("files", ["README.md"]))),
        scan_exclude=tuple(_strings(path, "scan.exclude", scan.get("exclude", []))),
        not_claims=tuple(_not_claims(path, scan.get("not_a_claim", []))),
    )


def _not_claims(path: Path, raw: Any) -> list[NotAClaim]:
    if not isinstance(raw, list):
        raise GateInputError(path, "scan.not_a_claim", "expected [[scan.not_a_claim]] tables")
    out = []
    for i, entry in enumerate(raw):
        where = f"scan.not_a_claim[{i}]"
        if not isinstance(entry, dict):
            raise GateInputError(path, where, "must be a table")
        for key in ("file", "text", "reason"):
            if not isinstance(entry.get(key), str) or not entry[key].strip():
                raise GateInputError(
                    path, f"{where}.{key}", "missing (every exception needs a reason)"
                )
        out.append(NotAClaim(entry["file"], entry["text"], entry["reason"]))
    return out


def _strings(path: Path, field: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise GateInputError(path, field, "expected a list of strings")
    return list(value)


def _claim(path: Path, index: int, raw: Any) -> Claim:
    if not isinstance(raw, dict):
        raise GateInputError(path, f"claim[{index}]", "must be a table")
    cid = raw.get("id")
    where = f"claim[{cid if isinstance(cid, str) and cid else index}]"

    def need(key: str, kind: type | tuple[type, ...], table: Mapping[str, Any] = raw) -> Any:
        value = table.get(key)
        if value is None:
            raise GateInputError(path, f"{where}.{key}", "missing")
        if not isinstance(value, kind) or isinstance(value, bool):
            raise GateInputError(path, f"{where}.{key}", f"wrong type: {value!r}")
        return value

    need("id", str)
    unknown = sorted(set(raw) - _CLAIM_KEYS)
    if unknown:
        raise GateInputError(path, f"{where}.{unknown[0]}", "unknown key")
    over = str(raw.get("over", ""))
    if over not in ("", "preset", "x"):
        raise GateInputError(path, f"{where}.over", f"must be 'preset' or 'x', got {over!r}")
    if over:
        points_raw = need("points", dict)
        if len(points_raw) < 2:
            raise GateInputError(path, f"{where}.points", "a curve needs at least two points")
        points = {
            x_text(k): float(_number(path, f"{where}.points.{k}", v)) for k, v in points_raw.items()
        }
        if "value" in raw:
            raise GateInputError(path, f"{where}.value", "a curve claim gives points, not value")
    else:
        points = {"": float(_number(path, f"{where}.value", need("value", (int, float))))}
    base = Quantity(
        host=need("host", str),
        artifact=need("artifact", str),
        preset="" if over == "preset" else need("preset", str),
        check=str(raw.get("check", "bench")),
        subject=need("subject", str),
        metric=need("metric", str),
        x="" if over == "x" else x_text(raw.get("x", "")),
    )
    rel = raw.get("relative_to", {})
    if not isinstance(rel, dict) or not rel:
        if "relative_to" in raw:
            raise GateInputError(path, f"{where}.relative_to", "must be a non-empty table")
        rel = {}
    bad = sorted(set(rel) - set(_QUANTITY))
    if bad:
        raise GateInputError(path, f"{where}.relative_to.{bad[0]}", "unknown key")
    tolerance = float(_number(path, f"{where}.tolerance", need("tolerance", (int, float))))
    if not 0 < tolerance < 1:
        raise GateInputError(path, f"{where}.tolerance", f"must be in (0, 1), got {tolerance}")
    pub = need("published", dict)
    published = Published(
        file=need("file", str, pub),
        marker=str(pub.get("marker", "" if "line" in pub else f"claim:{raw['id']}")),
        line=int(pub.get("line", 0)),
    )
    return Claim(
        id=raw["id"],
        what=str(raw.get("what", "")),
        base=base,
        relative_to={k: x_text(v) for k, v in rel.items()},
        over=over,
        points=points,
        tolerance=tolerance,
        tolerance_reason=str(raw.get("tolerance_reason", "")),
        published=published,
    )


def _number(path: Path, field: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise GateInputError(path, field, f"expected a number, got {value!r}")
    return float(value)
