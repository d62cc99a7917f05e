"""The ONE reader of a run directory: strict for the gate, lenient for the report.

Both modes parse the same way; they differ only in what a defect does. Strict
(:func:`load_run`, :func:`read_rows`) raises :class:`~harness.rundir.meta.RunDirError` naming
the file and the field: a verdict drawn from a half-written run would be a guess. Lenient
(:func:`read_run`) returns the rows it could read plus one sentence per defect (a missing
run.json, a truncated last line from a crash mid-write, an older schema lacking columns), so
the report renders whatever a run left behind and says what is missing.

Cells with rows but no verdict row read the same in both modes: ``incomplete``
(:func:`harness.rundir.verdict.cell_verdicts`).
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.rundir.meta import (
    RUN_FILE,
    SCHEMA_VERSION,
    RunDirError,
    RunMeta,
    flat_meta,
    parse_meta,
)
from harness.rundir.rows import COLUMNS, DEFAULT_TEXT, REQUIRED, RESULTS_FILE, STATUSES, Row, decode


class _Defects:
    """Where defects go: raised (strict) or collected as sentences (lenient)."""

    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self.problems: list[str] = []

    def found(self, path: Path, field: str, message: str, sentence: str) -> None:
        """A defect: raise ``path: field: message`` when strict, else keep ``sentence``."""
        if self.strict:
            raise RunDirError(path, field, message)
        self.problems.append(sentence)


@dataclass(frozen=True)
class Run:
    """A run directory read strictly (the gate's input)."""

    directory: Path
    meta: RunMeta
    rows: tuple[Row, ...]


@dataclass(frozen=True)
class LenientRun:
    """A run directory as far as it could be read (the report's input)."""

    directory: Path
    meta: dict[str, Any]  # run.json under flat keys (meta.flat_meta), {} when unreadable
    rows: tuple[Row, ...]
    problems: tuple[str, ...]  # one sentence per defect


def load_run(directory: Path) -> Run:
    """Read ``directory`` strictly; raises RunDirError naming the file and field at fault."""
    if not directory.is_dir():
        raise RunDirError(directory, "", "not a run directory")
    defects = _Defects(strict=True)
    data = _read_json(directory / RUN_FILE, defects)
    meta = parse_meta(directory / RUN_FILE, data)
    rows = _read_rows(directory / RESULTS_FILE, defects)
    return Run(directory=directory, meta=meta, rows=tuple(rows))


def read_rows(path: Path) -> list[Row]:
    """Every row of a ``results.csv``, strictly (RunDirError on any defect)."""
    return _read_rows(path, _Defects(strict=True))


def read_run(directory: Path) -> LenientRun:
    """Read ``directory`` leniently: the readable rows and run.json, and every defect said."""
    defects = _Defects(strict=False)
    data = _read_json(directory / RUN_FILE, defects)
    meta: dict[str, Any] = {}
    if data:
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            age = "unknown"
            if isinstance(version, int):
                age = "older" if version < SCHEMA_VERSION else "newer"
            defects.problems.append(
                f"{RUN_FILE} has schema_version {version!r} ({age}; this harness writes "
                f"{SCHEMA_VERSION}): rendering the fields it has"
            )
        meta = flat_meta(data)
        if not meta.get("end"):
            defects.problems.append(f"{RUN_FILE} has no end time: the run may have stopped early")
    rows = _read_rows(directory / RESULTS_FILE, defects)
    return LenientRun(directory, meta, tuple(rows), tuple(defects.problems))


def _read_json(path: Path, defects: _Defects) -> dict[str, Any]:
    if not path.is_file():
        defects.found(
            path,
            "",
            "missing (is this a run directory?)",
            f"{path.name} is missing: commit, machine and host versions are unknown",
        )
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        defects.found(
            path,
            "",
            f"corrupt or truncated JSON ({exc})",
            f"{path.name} is unreadable ({exc}): provenance is unknown",
        )
        return {}
    if not isinstance(data, dict):
        defects.found(
            path,
            "",
            "expected a JSON object",
            f"{path.name} is not a JSON object: provenance is unknown",
        )
        return {}
    return data


def _read_rows(path: Path, defects: _Defects) -> list[Row]:
    name = path.name
    if not path.is_file():
        defects.found(
            path,
            "",
            "missing (is this a run directory?)",
            f"{name} is missing: there are no results to show",
        )
        return []
    try:
        text = path.read_text(encoding="utf-8", errors="strict" if defects.strict else "replace")
    except (OSError, UnicodeDecodeError) as exc:
        defects.found(path, "", f"unreadable ({exc})", f"{name} is unreadable ({exc})")
        return []
    if not text and defects.strict:
        # The writer puts the header in before any row, so an empty file was cut (a partial
        # copy, a full disk): a gate that read it as "no rows" would fail CAND as a regression.
        raise RunDirError(path, "", "empty (0 bytes, not even the header): the file was cut")
    lines = text.splitlines(keepends=True)
    cut = bool(lines) and not lines[-1].endswith("\n")
    if cut and not defects.strict:  # strict: the record checks below name what is missing
        defects.problems.append(f"{name}: the last line is truncated (a crash mid-write); skipped")
        lines = lines[:-1]
    try:
        rows = _parse(path, lines, defects)
    except csv.Error as exc:
        defects.found(path, "", f"corrupt CSV ({exc})", f"{name}: corrupt CSV ({exc})")
        return []
    if cut and defects.strict:
        raise RunDirError(path, "", f"line {len(lines)} is truncated (no end of line)")
    if (
        not rows
        and not defects.strict
        and not any(p.startswith(f"{name} lacks required") for p in defects.problems)
    ):
        defects.problems.append(f"{name} holds no result rows")
    return rows


def _parse(path: Path, lines: list[str], defects: _Defects) -> list[Row]:
    name = path.name
    reader = csv.reader(lines)
    header = next(reader, None)
    if header is None:
        return []
    missing = [c for c in COLUMNS if c not in header]
    extra = [c for c in header if c not in COLUMNS]
    if missing:
        absent = [c for c in missing if c in REQUIRED]
        if absent:
            defects.found(
                path,
                missing[0],
                "column missing from the header",
                f"{name} lacks required columns {absent}: no rows are usable",
            )
            return []
        defects.found(
            path,
            missing[0],
            "column missing from the header",
            f"{name} lacks columns {missing} (an older schema?): filled with defaults",
        )
    if extra:
        defects.found(
            path,
            extra[0],
            "unknown column in the header",
            f"{name} has unknown columns {extra} (a newer schema?): ignored",
        )
    rows: list[Row] = []
    malformed = unparsable = 0
    unknown_status: set[str] = set()
    for fields in reader:
        line = reader.line_num
        if len(fields) != len(header):
            if defects.strict:
                if len(fields) > len(header):
                    raise RunDirError(path, "", f"line {line} has more fields than the header")
                column = header[len(fields)]
                raise RunDirError(path, column, f"line {line} is truncated (no {column})")
            malformed += 1
            continue
        rec = dict(zip(header, fields, strict=True))
        rec = {c: rec.get(c, DEFAULT_TEXT.get(c, "")) for c in COLUMNS}
        try:
            row = decode(rec)
        except ValueError as exc:
            column = str(exc).split(":", 1)[0]
            if defects.strict:
                raise RunDirError(
                    path, column, f"line {line}: {str(exc).split(': ', 1)[1]}"
                ) from None
            unparsable += 1
            continue
        if defects.strict and math.isinf(row.x_value):
            raise RunDirError(path, "x_value", f"line {line}: infinite x value")
        if row.status not in STATUSES:
            if defects.strict:
                raise RunDirError(path, "status", f"line {line}: unknown status {row.status!r}")
            unknown_status.add(row.status)
        rows.append(row)
    if malformed:
        defects.problems.append(f"{name}: {malformed} malformed line(s) skipped")
    if unparsable:
        defects.problems.append(f"{name}: {unparsable} line(s) with non-numeric numbers skipped")
    if unknown_status:
        defects.problems.append(
            f"{name}: unknown status values {sorted(unknown_status)} kept as-is"
        )
    return rows
