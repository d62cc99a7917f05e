"""Write recorded bands back: targeted line edits of claims.toml, and the published text.

claims.toml keeps its comments and every line that ``--record`` does not own: of each recorded
``[[claim]]`` only the ``value``/``points``, ``band``/``bands``/``tolerance``,
``tolerance_reason`` and ``provenance`` entries are replaced (written as one-line inline
tables; a claim written with ``[claim.provenance]`` sub-tables cannot be rewritten and exits 2).

In the published file, each figure is located in the claim's region (the marker's paragraph or
table) by the number published today: in a table, at the column whose header starts with the
point's name, in the one row whose cells carry the claim's current points; in prose, as the one
occurrence of the current value. It becomes ``value× (low–high)``, the form the text check wants.
"""

from __future__ import annotations

import json
import math
import re
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.gate.claim_checks import published_region
from harness.gate.claims import Claim, ClaimsFile
from harness.gate.errors import GateInputError
from harness.toml_lines import TomlLines

_VALUE_KEYS = ("value", "points")
_BAND_KEYS = ("band", "bands", "tolerance")
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
# A published figure: a number, its unit sign, and the band a previous --record printed after it.
_FIGURE = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)(×|x)?(\s*\(\d+(?:\.\d+)?–\d+(?:\.\d+)?\))?")


@dataclass(frozen=True)
class ClaimUpdate:
    """What ``--record`` writes for one claim: texts exactly as they are to be printed."""

    points: Mapping[str, str]  # point ("" for a point claim) -> value text, e.g. "1.94"
    bands: Mapping[str, tuple[str, str]]  # point -> (low text, high text)
    reason: str  # the new tolerance_reason: how the band was measured
    provenance: Mapping[str, Any]  # commit, fingerprint, hosts, dates, runs, band_basis


def _key(name: str) -> str:
    return name if _BARE_KEY.match(name) else json.dumps(name)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # JSON's escapes are TOML basic-string ones
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{_key(k)} = {_toml(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {value!r} as TOML")


def claim_lines(claim: Claim, update: ClaimUpdate) -> dict[str, list[str]]:
    """The new lines of each rewritten key of ``claim``."""
    if claim.is_curve:
        value = [
            "points = { " + ", ".join(f"{_key(k)} = {v}" for k, v in update.points.items()) + " }"
        ]
        band = [
            "bands = { "
            + ", ".join(f"{_key(k)} = [{lo}, {hi}]" for k, (lo, hi) in update.bands.items())
            + " }"
        ]
    else:
        lo, hi = update.bands[""]
        value, band = [f"value = {update.points['']}"], [f"band = [{lo}, {hi}]"]
    if '"""' in update.reason or "\\" in update.reason:
        raise ValueError("a recorded reason is plain text")
    reason = ['tolerance_reason = """\\', *textwrap.wrap(update.reason, 96)]
    reason[-1] += '"""'
    return {
        "value": value,
        "band": band,
        "tolerance_reason": reason,
        "provenance": [f"provenance = {_toml(dict(update.provenance))}"],
    }


def rewrite_claims(text: str, claims: ClaimsFile, updates: Mapping[str, ClaimUpdate]) -> str:
    """``text`` of ``claims`` with each updated claim's value, band, reason and provenance."""
    where = TomlLines(text).lines
    lines = text.splitlines()
    edits: list[tuple[int, int, list[str]]] = []  # 0-based [start, end) -> replacement
    for index, claim in enumerate(claims.claims):
        if claim.id not in updates:
            continue
        spans = _key_spans(where, index, lines)
        new = claim_lines(claim, updates[claim.id])
        for group, keys in (
            ("value", _VALUE_KEYS),
            ("band", _BAND_KEYS),
            ("tolerance_reason", ("tolerance_reason",)),
            ("provenance", ("provenance",)),
        ):
            found = [spans[k] for k in keys if k in spans]
            if not found and group != "tolerance_reason":
                raise GateInputError(
                    claims.path,
                    f"claim[{claim.id}].{keys[0]}",
                    "not found as a key of the [[claim]] table: --record rewrites one-line "
                    "(inline) entries only",
                )
            if not found:  # no reason yet: it goes right after the band
                start = spans[next(k for k in _BAND_KEYS if k in spans)][1]
                edits.append((start, start, new[group]))
                continue
            first, *rest = sorted(found)
            edits.append((first[0], first[1], new[group]))
            edits += [(s, e, []) for s, e in rest]
    for start, end, replacement in sorted(edits, reverse=True):
        lines[start:end] = replacement
    return "\n".join(lines) + "\n"


def _key_spans(
    where: Mapping[tuple[str | int, ...], int], index: int, lines: Sequence[str]
) -> dict[str, tuple[int, int]]:
    """0-based ``[start, end)`` line span of each top-level key of the ``index``-th claim."""
    header = where[("claim", index)]
    starts = {
        str(p[2]): line - 1
        for p, line in where.items()
        if len(p) == 3 and p[:2] == ("claim", index)
    }
    after = [line - 1 for p, line in where.items() if line > header and p[:2] != ("claim", index)]
    block_end = min(after, default=len(lines))
    ordered = sorted(starts.items(), key=lambda kv: kv[1])
    spans = {}
    for i, (key, start) in enumerate(ordered):
        end = ordered[i + 1][1] if i + 1 < len(ordered) else block_end
        # Blank and comment lines before the next key belong to the gap, not to this value.
        while end - 1 > start and (
            not lines[end - 1].strip() or lines[end - 1].lstrip()[:1] == "#"
        ):
            end -= 1
        spans[key] = (start, end)
    return spans


def figure_text(value: str, low: str, high: str, unit: str) -> str:
    """A recorded figure as published: ``1.94× (1.80–2.10)``."""
    return f"{value}{unit} ({low}–{high})"


def rewrite_published(
    root: Path, claims: ClaimsFile, updates: Mapping[str, ClaimUpdate]
) -> dict[Path, str]:
    """The new text of each file that publishes an updated claim (relative path -> text).

    Every figure is located against the text as it is now, before any edit, so two claims of
    one table cannot mistake each other's new numbers for their old ones.
    """
    texts: dict[Path, list[str]] = {}
    edits: dict[Path, dict[tuple[int, int, int], str]] = {}  # (line, start, end) -> text
    for claim in claims.claims:
        if claim.id not in updates:
            continue
        for pub in claim.published.locations():  # every place that prints the figure
            region = published_region(claim, root, claims.path, pub)
            file = Path(pub.file)
            if isinstance(region, str):
                raise GateInputError(claims.path, f"claim[{claim.id}].published", region)
            _, first, region_lines = region
            texts.setdefault(file, (root / file).read_text(encoding="utf-8").splitlines())
            update = updates[claim.id]
            found = _locate(claim, first, region_lines)
            if isinstance(found, str):
                raise GateInputError(
                    f"{file}:{first}", f"claim[{claim.id}]", f"{found}; edit it by hand"
                )
            for key, (line, match) in found.items():
                spot = (line, match.start(), match.end())
                if spot in edits.setdefault(file, {}):
                    raise GateInputError(
                        f"{file}:{line + 1}",
                        f"claim[{claim.id}]",
                        "the same number is located for two claims; edit by hand",
                    )
                lo, hi = update.bands[key]
                edits[file][spot] = figure_text(update.points[key], lo, hi, match.group(2) or "")
    out = {}
    for file, file_lines in texts.items():
        for (line, start, end), new in sorted(edits[file].items(), reverse=True):
            file_lines[line] = file_lines[line][:start] + new + file_lines[line][end:]
        out[file] = "\n".join(file_lines) + "\n"
    return out


def _locate(
    claim: Claim, first: int, region: Sequence[str]
) -> dict[str, tuple[int, re.Match[str]]] | str:
    """Each point's figure in the region: ``{point: (0-based file line, match)}``, or why not."""
    table = [i for i, line in enumerate(region) if line.lstrip().startswith("|")]
    if claim.is_curve and table:
        header = _cells(region[table[0]])
        columns = {}
        for key in claim.points:
            named = [c for c, h in enumerate(header) if h.split()[:1] == [key]]
            if len(named) != 1:
                return f"the table has no single column headed {key!r}"
            columns[key] = named[0]
        rows = []
        for i in table[1:]:
            cells = _cells(region[i])
            got = {}
            for key, col in columns.items():
                match = _FIGURE.search(cells[col]) if col < len(cells) else None
                if match is None or not math.isclose(float(match.group(1)), claim.points[key]):
                    break
                got[key] = (first - 1 + i, _shift(match, region[i], cells, col))
            else:
                rows.append(got)
        if len(rows) != 1:
            points = ", ".join(f"{v:g}" for v in claim.points.values())
            return f"{len(rows)} rows of the table carry the points {points} (need exactly one)"
        return rows[0]
    out = {}
    for key, value in claim.points.items():
        hits = [
            (first - 1 + i, m)
            for i, line in enumerate(region)
            for m in _FIGURE.finditer(line)
            if math.isclose(float(m.group(1)), value)
        ]
        if len(hits) != 1:
            return f"{len(hits)} occurrences of the published {value:g} (need exactly one)"
        out[key] = hits[0]
    return out


def _cells(line: str) -> list[str]:
    return line.strip().strip("|").split("|")


def _shift(match: re.Match[str], line: str, cells: Sequence[str], col: int) -> re.Match[str]:
    """The figure's match re-found in the whole line (a cell's match has cell offsets)."""
    offset = line.index("|") + 1 + sum(len(c) + 1 for c in cells[:col])
    found = _FIGURE.match(line, offset + match.start())
    assert found is not None and found.group(0) == match.group(0)
    return found
