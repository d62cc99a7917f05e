"""The claims file: every published performance number, what it measures, where it is printed.

Schema (TOML, documented with examples in docs/signoff.md)::

    schema_version = 2
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
    # the band, one of:
    band = [1.25, 1.40]              # point claim: the interval the value is published with
    bands = { tiny = [1.0, 1.2], small = [1.2, 1.4] }     # curve claim: one per point
    tolerance = 0.15                 # or: the band is published * (1 -/+ tolerance)
    tolerance_reason = "..."         # why this band survives machine noise
    machine_independent = false      # true: compare against a run of any machine / host version
    [claim.published]
    file = "README.md"               # relative to --root
    marker = "claim:wasm64-vs-wasm32-train"   # or: line = 42
    also = [{ file = "README.md", line = 4 }]  # optional: the same figure printed elsewhere
    [claim.provenance]               # where the band was measured (written by signoff --record)
    commit = "699ec8d"
    fingerprint = "3886613962dc"     # machine fingerprint id (run.json)
    hosts = { wasmtime = "50.0.1" }  # host versions; "156" matches "156.0.8078.114"
    dates = ["2026-11-24"]
    runs = 3                         # how many run directories the band comes from
    band_basis = "runs"              # "runs" (signoff --record) or "tolerance"

A claim needs ``provenance`` unless it is ``machine_independent`` or cites an external
measurement file, ``measurements = "results/browser.json"`` (relative to the claims file; the
file's own provenance is required, :mod:`harness.gate.external`). Such a claim may name any host,
artifact and preset (a backend the harness does not run) and is checked against the file, not a
run.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.gate.errors import GateInputError
from harness.toml_lines import TomlLines

CLAIMS_SCHEMA_VERSION = 2
BAND_BASES = ("runs", "tolerance")
_QUANTITY = ("host", "artifact", "preset", "check", "subject", "metric", "x")
_CLAIM_KEYS = {
    *_QUANTITY, "id", "what", "relative_to", "value", "over", "points", "tolerance",
    "tolerance_reason", "published", "band", "bands", "provenance", "machine_independent",
    "measurements",
}  # fmt: skip
_PROVENANCE_KEYS = {"commit", "fingerprint", "hosts", "dates", "runs", "band_basis"}


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
    """Where a claim is printed: a file plus a marker string or a 1-based line number; ``also``
    the other places that print the same figure (each must carry it; each is covered)."""

    file: str
    marker: str = ""
    line: int = 0
    also: tuple[Published, ...] = ()

    def locations(self) -> tuple[Published, ...]:
        """This location, then the others that print the figure."""
        return (self, *self.also)


@dataclass(frozen=True)
class ClaimProvenance:
    """Where and how a claim's band was measured: the run(s) it may be compared with."""

    commit: str
    fingerprint: str
    hosts: Mapping[str, str]
    dates: tuple[str, ...]
    runs: int
    band_basis: str  # "runs" (measured by signoff --record) or "tolerance" (published +- tol)

    def host_matches(self, host: str, version: str) -> bool:
        """True when ``version`` is the recorded one (a recorded "156" matches "156.0.1")."""
        want = self.hosts.get(host)
        return want is None or version == want or version.startswith(f"{want}.")


@dataclass(frozen=True)
class Claim:
    """A published number (``points`` has one entry for a point claim) and its band."""

    id: str
    what: str
    base: Quantity  # the quantity at ``points``' keys; its preset is "" for a preset curve
    relative_to: Mapping[str, str]  # overrides that define the denominator ("" = none)
    over: str  # "" for a point claim, "preset" or "x" for a curve
    points: Mapping[str, float]  # preset or x label -> published value
    bands: Mapping[str, tuple[float, float]]  # same keys as points: (low, high)
    tolerance: float  # 0 when the band was given explicitly
    tolerance_reason: str
    published: Published
    provenance: ClaimProvenance | None = None
    machine_independent: bool = False
    measurements: str = ""  # an external measurement file (relative to the claims file), or ""

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
    # Checks made after loading (a cell the run lacks) name a line too; not part of the value.
    lines: TomlLines | None = field(default=None, repr=False, compare=False)

    def where(self, key: tuple[str | int, ...]) -> str:
        """``file:line`` of ``key`` (``("claim", 0, "preset")``), or the file without lines."""
        return str(self.path) if self.lines is None else f"{self.path}:{self.lines.line_of(key)}"


def x_text(value: object) -> str:
    """Render an x given in TOML the way run rows render it (integers without '.0')."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class _Where:
    """Turns a key path of the claims file into ``file:line`` for an error message."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.lines = TomlLines(text)

    def error(self, key: tuple[str | int, ...], field: str, message: str) -> GateInputError:
        """A GateInputError naming ``file:line`` and the field."""
        return GateInputError(f"{self.path}:{self.lines.line_of(key)}", field, message)


def read_utf8(path: Path, what: str) -> str:
    """The text of ``path`` (a ``what``), or a GateInputError naming ``file:line`` and the byte
    offset that is not UTF-8: a codec traceback would exit 1, the code of a verdict."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise GateInputError(f"{path}:{line}", "", (
            f"the {what} is not UTF-8: byte 0x{data[exc.start]:02x} at offset {exc.start} "
            "(save it as UTF-8)"
        )) from None  # fmt: skip


def _toml_error_line(message: str, text: str) -> int:
    """The line tomllib's ``message`` names; the last line for "at end of document"."""
    m = re.search(r"\(at line (\d+), column \d+\)$", message)
    if m:
        return int(m.group(1))
    return max(1, text.count("\n") + (0 if text.endswith("\n") else 1))


def load_claims(path: Path) -> ClaimsFile:
    """Parse and validate a claims file; errors name ``file:line`` and ``claim[<id>].<field>``."""
    try:
        text = read_utf8(path, "claims file")
    except FileNotFoundError:
        raise GateInputError(path, "", "claims file not found") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # Python 3.11's error has no line attribute; its message ends "(at line 14, column 13)".
        line = _toml_error_line(str(exc), text)
        raise GateInputError(f"{path}:{line}", "", f"not valid TOML ({exc})") from None
    at = _Where(path, text)
    version = data.get("schema_version")
    if isinstance(version, bool) or not isinstance(version, int | type(None)):
        # "unknown version '2' (expected 2)" read as a contradiction: say it is the type.
        raise at.error(
            ("schema_version",),
            "schema_version",
            f"must be an integer, got {_kind(version)} {version!r} "
            f"(write schema_version = {CLAIMS_SCHEMA_VERSION})",
        )
    if version != CLAIMS_SCHEMA_VERSION:
        hint = (
            ": schema 1 had no provenance; add [claim.provenance] or machine_independent "
            "(docs/signoff.md, 'Migrating from schema 1')"
            if version == 1
            else ""
        )
        raise at.error(
            ("schema_version",),
            "schema_version",
            f"unknown version {version!r} (expected {CLAIMS_SCHEMA_VERSION}){hint}",
        )
    raw = data.get("claim", [])
    if not isinstance(raw, list) or not raw:
        raise at.error(("claim",), "claim", "expected at least one [[claim]] table")
    claims = [_claim(at, i, c) for i, c in enumerate(raw)]
    ids = [c.id for c in claims]
    for i, cid in enumerate(ids):
        if ids.index(cid) != i:
            raise at.error(("claim", i, "id"), f"claim[{cid}].id", "duplicate claim id")
    scan = data.get("scan", {})
    if not isinstance(scan, dict):
        raise at.error(("scan",), "scan", "must be a table")
    return ClaimsFile(
        path=path,
        claims=tuple(claims),
        scan_files=tuple(_strings(at, "scan.files", scan.get("files", ["README.md"]))),
        scan_exclude=tuple(_strings(at, "scan.exclude", scan.get("exclude", []))),
        not_claims=tuple(_not_claims(at, scan.get("not_a_claim", []))),
        lines=at.lines,
    )


_TOML_KIND = {str: "a string", float: "a float", bool: "a boolean", list: "an array",
              dict: "a table"}  # fmt: skip


def _kind(value: object) -> str:
    """How TOML names ``value``'s type ("a string"), for a wrong-type message."""
    return _TOML_KIND.get(type(value), f"a {type(value).__name__}")


def _not_claims(at: _Where, raw: Any) -> list[NotAClaim]:
    if not isinstance(raw, list):
        raise at.error(("scan", "not_a_claim"), "scan.not_a_claim",
                       "expected [[scan.not_a_claim]] tables")  # fmt: skip
    out = []
    for i, entry in enumerate(raw):
        where = f"scan.not_a_claim[{i}]"
        if not isinstance(entry, dict):
            raise at.error(("scan", "not_a_claim", i), where, "must be a table")
        for key in ("file", "text", "reason"):
            if not isinstance(entry.get(key), str) or not entry[key].strip():
                raise at.error(("scan", "not_a_claim", i, key), f"{where}.{key}",
                               "missing (every exception needs a reason)")  # fmt: skip
        out.append(NotAClaim(entry["file"], entry["text"], entry["reason"]))
    return out


def _strings(at: _Where, field: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise at.error(tuple(field.split(".")), field, "expected a list of strings")
    return list(value)


def _claim(at: _Where, index: int, raw: Any) -> Claim:
    if not isinstance(raw, dict):
        raise at.error(("claim", index), f"claim[{index}]", "must be a table")
    cid = raw.get("id")
    where = f"claim[{cid if isinstance(cid, str) and cid else index}]"

    def err(message: str, *key: str) -> GateInputError:
        return at.error(("claim", index, *key), ".".join((where, *key)), message)

    def need(key: str, kind: type | tuple[type, ...], table: Mapping[str, Any] = raw,
             *outer: str) -> Any:  # fmt: skip
        value = table.get(key)
        if value is None:
            return _raise(err("missing", *outer, key))
        if not isinstance(value, kind) or isinstance(value, bool):
            return _raise(err(f"wrong type: {value!r}", *outer, key))
        return value

    def number(value: Any, *key: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise err(f"expected a number, got {value!r}", *key)
        return float(value)

    need("id", str)
    unknown = sorted(set(raw) - _CLAIM_KEYS)
    if unknown:
        raise err("unknown key", unknown[0])
    over = str(raw.get("over", ""))
    if over not in ("", "preset", "x"):
        raise err(f"must be 'preset' or 'x', got {over!r}", "over")
    if over:
        points_raw = need("points", dict)
        if len(points_raw) < 2:
            raise err("a curve needs at least two points", "points")
        points = {x_text(k): number(v, "points", str(k)) for k, v in points_raw.items()}
        if "value" in raw:
            raise err("a curve claim gives points, not value", "value")
    else:
        points = {"": number(need("value", (int, float)), "value")}
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
            raise err("must be a non-empty table", "relative_to")
        rel = {}
    bad = sorted(set(rel) - set(_QUANTITY))
    if bad:
        raise err("unknown key", "relative_to", bad[0])
    tolerance, bands = _bands(raw, over, points, err, number)
    pub = need("published", dict)
    bad_pub = sorted(set(pub) - {"file", "marker", "line", "also"})
    if bad_pub:
        raise err("unknown key", "published", bad_pub[0])
    also_raw = pub.get("also", [])
    if not isinstance(also_raw, list) or not all(isinstance(a, dict) for a in also_raw):
        raise err("expected an array of { file, line } or { file, marker }", "published", "also")
    also = []
    for i, a in enumerate(also_raw):
        extra = sorted(set(a) - {"file", "marker", "line"})
        if extra or "file" not in a or ("line" in a) == ("marker" in a):
            why = f"unknown key {extra[0]!r}" if extra else "needs file and one of line, marker"
            raise err(why, "published", "also", str(i))
        if not isinstance(a["file"], str) or not isinstance(a.get("line", 1), int):
            raise err(f"wrong type: {a!r}", "published", "also", str(i))
        also.append(Published(a["file"], str(a.get("marker", "")), int(a.get("line", 0))))
    published = Published(
        file=need("file", str, pub, "published"),
        marker=str(pub.get("marker", "" if "line" in pub else f"claim:{raw['id']}")),
        line=int(pub.get("line", 0)),
        also=tuple(also),
    )
    independent = raw.get("machine_independent", False)
    if not isinstance(independent, bool):
        raise err(f"expected true or false, got {independent!r}", "machine_independent")
    provenance = _provenance(raw.get("provenance"), err, number)
    measurements = raw.get("measurements", "")
    if not isinstance(measurements, str) or ("measurements" in raw and not measurements):
        raise err(f"expected the path of a measurement file, got {measurements!r}", "measurements")
    # An external measurement file carries its own provenance (harness/gate/external.py).
    if provenance is None and not independent and not measurements:
        raise err(
            "missing: where the band was measured (signoff --record writes it), "
            "or machine_independent = true",
            "provenance",
        )
    return Claim(
        id=raw["id"],
        what=str(raw.get("what", "")),
        base=base,
        relative_to={k: x_text(v) for k, v in rel.items()},
        over=over,
        points=points,
        bands=bands,
        tolerance=tolerance,
        tolerance_reason=str(raw.get("tolerance_reason", "")),
        published=published,
        provenance=provenance,
        machine_independent=independent,
        measurements=measurements,
    )


def _raise(exc: GateInputError) -> Any:
    raise exc


_Err = Callable[..., GateInputError]
_Num = Callable[..., float]


def _bands(
    raw: Mapping[str, Any], over: str, points: Mapping[str, float], err: _Err, number: _Num
) -> tuple[float, dict[str, tuple[float, float]]]:
    """``(tolerance or 0, {point: (low, high)})``: exactly one of tolerance and band(s)."""
    band_key = "bands" if over else "band"
    other = "band" if over else "bands"
    if other in raw:
        kind = "a curve claim gives bands = { point = [low, high] }" if over else (
            "a point claim gives band = [low, high]")  # fmt: skip
        raise err(kind, other)
    if ("tolerance" in raw) == (band_key in raw):
        raise err(f"give exactly one of tolerance and {band_key}", band_key)
    if "tolerance" in raw:
        tolerance = number(raw["tolerance"], "tolerance")
        if not 0 < tolerance < 1:
            raise err(f"must be in (0, 1), got {tolerance}", "tolerance")
        return tolerance, {k: (v * (1 - tolerance), v * (1 + tolerance)) for k, v in points.items()}
    given = raw[band_key]
    if over:
        if not isinstance(given, dict):
            raise err("expected { point = [low, high], ... }", band_key)
        given = {x_text(k): v for k, v in given.items()}
        if set(given) != set(points):
            raise err(f"must name the same points as points ({', '.join(points)})", band_key)
    else:
        given = {"": given}
    out = {}
    for key, pair in given.items():
        path = (band_key, key) if key else (band_key,)
        if not isinstance(pair, list) or len(pair) != 2:
            raise err(f"expected [low, high], got {pair!r}", *path)
        low, high = number(pair[0], *path), number(pair[1], *path)
        if not low <= points[key] <= high:
            raise err(f"[{low:g}, {high:g}] does not contain the value {points[key]:g}", *path)
        out[key] = (low, high)
    return 0.0, out


def _provenance(raw: Any, err: _Err, number: _Num) -> ClaimProvenance | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise err("must be a table", "provenance")
    unknown = sorted(set(raw) - _PROVENANCE_KEYS)
    if unknown:
        raise err("unknown key", "provenance", unknown[0])
    for key in ("commit", "fingerprint", "band_basis"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise err("missing (a string)", "provenance", key)
    if raw["band_basis"] not in BAND_BASES:
        raise err(f"must be one of {BAND_BASES}, got {raw['band_basis']!r}",
                  "provenance", "band_basis")  # fmt: skip
    hosts = raw.get("hosts", {})
    if not isinstance(hosts, dict) or not all(isinstance(v, str) for v in hosts.values()):
        raise err('expected { host = "version" }', "provenance", "hosts")
    dates = raw.get("dates", [])
    if not isinstance(dates, list) or not all(isinstance(d, str) for d in dates):
        raise err("expected a list of date strings", "provenance", "dates")
    runs = raw.get("runs")
    if not isinstance(runs, int) or isinstance(runs, bool) or runs < 1:
        raise err(f"expected a run count >= 1, got {runs!r}", "provenance", "runs")
    return ClaimProvenance(
        commit=raw["commit"],
        fingerprint=raw["fingerprint"],
        hosts=dict(hosts),
        dates=tuple(dates),
        runs=runs,
        band_basis=raw["band_basis"],
    )
