"""Load one run directory (``results.csv`` + ``run.json``) for the gate, read-only and strict.

The runner's own reader forgives a truncated last line (a crash mid-write must not lose the rows
before it); the gate does not: a verdict drawn from a half-written run would be a guess, so every
defect is a :class:`~harness.gate.errors.GateInputError` naming the file and the field.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.gate.errors import GateInputError
from harness.results import (
    COLUMNS,
    RESULTS_FILE,
    RUN_FILE,
    SCHEMA_VERSION,
    STATUSES,
    Row,
    read_rows,
)
from harness.run_dir import flat_meta

_NUMERIC = {"value": float, "x_value": float, "iteration": int}


@dataclass(frozen=True)
class RunMeta:
    """The provenance of a run, as ``run.json`` records it."""

    path: Path
    schema_version: int
    commit: str
    dirty: bool
    fingerprint_id: str
    machine: dict[str, Any]
    host_versions: dict[str, str]
    artifacts: dict[str, str]  # artifact name -> sha256
    artifact_builds: dict[str, dict[str, Any]]  # name -> the runner's recipe (target, toolchain)
    matrix: dict[str, Any]  # path, name, sha256, content
    defaults_sha256: str
    corpus_sha256: str
    start: str
    end: str
    raw: dict[str, Any] = field(repr=False)

    @property
    def matrix_name(self) -> str:
        """The matrix's name (its file stem when the run did not record one)."""
        name = self.matrix.get("name") or Path(str(self.matrix.get("path", "matrix"))).stem
        return str(name)

    def shard_fingerprints(self) -> set[str]:
        """Every machine fingerprint that contributed rows (one unless shards were merged)."""
        found = {self.fingerprint_id}
        machines = self.raw.get("machines")
        if isinstance(machines, dict):
            found.update(str(k) for k in machines)
        for shard in self.raw.get("shards", []) or []:
            if not isinstance(shard, dict):
                continue
            machine = shard.get("machine") or shard.get("fingerprint_id")
            if isinstance(machine, dict):
                machine = machine.get("fingerprint_id")
            if machine:
                found.add(str(machine))
        return found

    def cell_fingerprints(self) -> dict[str, str] | None:
        """``{cell: fingerprint}`` when every shard lists its cells and machine, else None.

        A single-machine run maps nothing (None): all its cells share :attr:`fingerprint_id`.
        """
        shards = self.raw.get("shards")
        if not isinstance(shards, list) or not shards:
            return None
        out: dict[str, str] = {}
        for shard in shards:
            if not isinstance(shard, dict):
                return None
            machine, cells = shard.get("machine"), shard.get("cells")
            if isinstance(machine, dict):
                machine = machine.get("fingerprint_id")
            if not isinstance(machine, str) or not isinstance(cells, list):
                return None
            out.update({str(c): machine for c in cells})
        return out

    def mixed_builds(self) -> dict[str, list[str]]:
        """Artifacts whose merged shards used different builds (``merge``'s artifacts_mixed)."""
        mixed = self.raw.get("artifacts_mixed") or {}
        return (
            {str(k): [str(x) for x in v] for k, v in mixed.items()}
            if isinstance(mixed, dict)
            else {}
        )


@dataclass(frozen=True)
class Run:
    """A loaded run directory."""

    directory: Path
    meta: RunMeta
    rows: tuple[Row, ...]


def load_run(directory: Path) -> Run:
    """Load and validate ``directory``; raises GateInputError naming the file and field at fault."""
    if not directory.is_dir():
        raise GateInputError(directory, "", "not a run directory")
    meta = load_meta(directory / RUN_FILE)
    rows = load_results(directory / RESULTS_FILE)
    return Run(directory=directory, meta=meta, rows=rows)


def load_meta(path: Path) -> RunMeta:
    """Parse and validate a ``run.json``."""
    if not path.is_file():
        raise GateInputError(path, "", "missing (is this a run directory?)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise GateInputError(path, "", f"corrupt or truncated JSON ({exc})") from exc
    except UnicodeDecodeError as exc:
        raise GateInputError(path, "", f"not UTF-8 text ({exc})") from exc
    if not isinstance(data, dict):
        raise GateInputError(path, "", "expected a JSON object")
    version = data.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise GateInputError(path, "schema_version", f"missing or not an integer: {version!r}")
    if version != SCHEMA_VERSION:
        raise GateInputError(
            path,
            "schema_version",
            f"unknown schema version {version}; this harness reads version {SCHEMA_VERSION}",
        )
    machine = _typed(path, data, "machine", dict, {})
    fingerprint = data.get("fingerprint_id") or machine.get("fingerprint_id")
    if not isinstance(fingerprint, str) or not fingerprint:
        raise GateInputError(path, "machine.fingerprint_id", "missing machine fingerprint id")
    _typed(path, data, "git", dict, {})
    _typed(path, data, "hosts", dict, {})
    flat = flat_meta(data)
    commit = flat["commit"]
    if commit is not None and not isinstance(commit, str):
        raise GateInputError(path, "git.commit", f"expected a commit id, got {commit!r}")
    artifacts, builds = _artifacts(path, _typed(path, data, "artifacts", dict, {}))
    matrix = _typed(path, data, "matrix", dict, {})
    return RunMeta(
        path=path,
        schema_version=version,
        commit=commit or "unknown",
        dirty=flat["dirty"],
        fingerprint_id=fingerprint,
        machine=machine,
        host_versions=flat.get("hosts", {}),
        artifacts=artifacts,
        artifact_builds=builds,
        matrix=matrix,
        defaults_sha256=str(data.get("defaults_sha256") or ""),
        corpus_sha256=str(data.get("corpus_sha256") or ""),
        start=flat["start"],
        end=flat["end"],
        raw=data,
    )


def _artifacts(
    path: Path, table: dict[str, Any]
) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
    # The runner records {name: {sha256, target, toolchain, ...}}; a bare {name: sha256} is
    # accepted too (older or hand-written runs) and simply carries no build recipe.
    shas: dict[str, str] = {}
    builds: dict[str, dict[str, Any]] = {}
    for name, entry in table.items():
        if isinstance(entry, str):
            shas[name] = entry
        elif isinstance(entry, dict) and isinstance(entry.get("sha256"), str):
            shas[name] = entry["sha256"]
            builds[name] = entry
        else:
            raise GateInputError(path, f"artifacts.{name}", f"expected a sha256: {entry!r}")
    return shas, builds


def _typed(path: Path, data: dict[str, Any], key: str, kind: type, default: Any) -> Any:
    if key not in data:
        if default is None:
            raise GateInputError(path, key, "missing")
        return default
    value = data[key]
    if not isinstance(value, kind):
        raise GateInputError(path, key, f"expected {kind.__name__}, got {type(value).__name__}")
    return value


def load_results(path: Path) -> tuple[Row, ...]:
    """Validate every line of a ``results.csv`` strictly, then read it with the shared reader."""
    if not path.is_file():
        raise GateInputError(path, "", "missing (is this a run directory?)")
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            header = tuple(reader.fieldnames or ())
            missing = [c for c in COLUMNS if c not in header]
            if missing:
                raise GateInputError(path, missing[0], "column missing from the header")
            for rec in reader:
                _check_record(path, reader.line_num, rec)
    except (csv.Error, UnicodeDecodeError) as exc:
        raise GateInputError(path, "", f"corrupt CSV ({exc})") from exc
    return tuple(read_rows(path))


def _check_record(path: Path, line: int, rec: dict[str | Any, str | Any]) -> None:
    if None in rec:
        raise GateInputError(path, "", f"line {line} has more fields than the header")
    for column in COLUMNS:
        if rec.get(column) is None:
            raise GateInputError(path, column, f"line {line} is truncated (no {column})")
    for column, kind in _NUMERIC.items():
        text = rec[column]
        if text == "":
            continue
        try:
            number = kind(text)
        except ValueError:
            raise GateInputError(path, column, f"line {line}: not a number: {text!r}") from None
        if isinstance(number, float) and math.isinf(number) and column == "x_value":
            raise GateInputError(path, column, f"line {line}: infinite x value")
    if rec["status"] not in STATUSES:
        raise GateInputError(path, "status", f"line {line}: unknown status {rec['status']!r}")
