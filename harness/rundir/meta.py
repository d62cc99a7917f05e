"""``run.json``: a run's provenance and status, its schema version and its older layouts.

``run.json`` is always replaced atomically (write a temporary file, fsync, rename), so a reader
never sees half a file even if the run is killed while writing it. Its ``status`` is
``running`` while a run works, then ``complete``, ``interrupted`` (Ctrl-C/SIGTERM) or
``failed`` (the harness itself could not go on: disk full, unwritable directory, a bug);
``merge`` writes ``partial`` when shards are missing.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
RUN_FILE = "run.json"
RUN_STATUSES: tuple[str, ...] = ("running", "complete", "interrupted", "failed", "partial")


class RunDirError(Exception):
    """A run directory the harness cannot use; the message names the file and the field."""

    def __init__(self, path: Path | str, field: str, message: str) -> None:
        where = f"{path}" if not field else f"{path}: field {field!r}"
        super().__init__(f"{where}: {message}")
        self.path = Path(path)
        self.field = field


def git_state(repo: Path) -> dict[str, Any]:
    """Return ``{"commit": sha or None, "dirty": bool or None}`` of the checkout at ``repo``."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"],
            capture_output=True, text=True, check=True, timeout=30,
        ).stdout.strip()  # fmt: skip
        status = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain"],
            capture_output=True, text=True, check=True, timeout=30,
        ).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}  # not a checkout (e.g. an installed wheel)
    return {"commit": commit, "dirty": bool(status.strip())}


def write_run_json(run_dir: Path, meta: dict[str, Any]) -> None:
    """Atomically replace ``run_dir/run.json`` with ``meta`` (OSError if it cannot)."""
    path = run_dir / RUN_FILE
    tmp = path.with_name(f".{RUN_FILE}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as fh:
            json.dump(meta, fh, indent=2, sort_keys=False, default=str)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)  # a half-written temporary is no record; the old one stays
        raise


def flat_meta(data: dict[str, Any]) -> dict[str, Any]:
    """A run.json's provenance under flat keys, whichever layout wrote it (the migration).

    The runner writes ``git: {commit, dirty}``, ``started_at``/``ended_at`` and
    ``hosts: {name: {version, pin}}``; older and hand-written runs use ``commit``, ``dirty``,
    ``start``, ``end`` and ``hosts: {name: version}``. This returns a copy of ``data`` with
    ``commit``, ``dirty``, ``start``, ``end`` set and ``hosts`` as ``{name: version}``, so the
    report and the gate read one shape.
    """
    flat = dict(data)
    raw_git = data.get("git")
    git: dict[str, Any] = raw_git if isinstance(raw_git, dict) else {}
    flat["commit"] = git.get("commit", data.get("commit"))
    flat["dirty"] = bool(git.get("dirty", data.get("dirty", False)))
    flat["start"] = str(data.get("started_at") or data.get("start") or "")
    flat["end"] = str(data.get("ended_at") or data.get("end") or "")
    hosts = data.get("hosts")
    if isinstance(hosts, dict):
        flat["hosts"] = {
            str(k): str(v.get("version", "")) if isinstance(v, dict) else str(v)
            for k, v in hosts.items()
        }
    return flat


@dataclass(frozen=True)
class ProjectCheckout:
    """The project a ``run --project`` measured: its root and its git state at the run (commit
    and dirty are None where the root is not a git checkout)."""

    root: str
    commit: str | None
    dirty: bool | None

    def describe(self) -> str:
        """``ROOT at COMMIT`` (``(dirty)``), or ``ROOT (not a git checkout)``, for messages."""
        if self.commit is None:
            return f"{self.root} (not a git checkout)"
        return f"{self.root} at {self.commit}" + (" (dirty)" if self.dirty else "")


def project_checkout(data: Mapping[str, Any]) -> ProjectCheckout | None:
    """run.json's ``project`` (root and git state) read leniently; None when it has none."""
    table = data.get("project")
    if not isinstance(table, dict) or not isinstance(table.get("root"), str):
        return None
    raw_git = table.get("git")
    git: dict[str, Any] = raw_git if isinstance(raw_git, dict) else {}
    commit, dirty = git.get("commit"), git.get("dirty")
    return ProjectCheckout(
        root=table["root"],
        commit=commit if isinstance(commit, str) and commit else None,
        dirty=dirty if isinstance(dirty, bool) else None,
    )


@dataclass(frozen=True)
class RunMeta:
    """The provenance of a run, as ``run.json`` records it (the strict, typed view)."""

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

    @property
    def project(self) -> ProjectCheckout | None:
        """The project checkout the run measured (``run --project``); None for the harness's
        own library, or a run.json from before the harness recorded it."""
        return project_checkout(self.raw)

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


def parse_meta(path: Path, data: dict[str, Any]) -> RunMeta:
    """Validate a decoded run.json strictly into a :class:`RunMeta` (RunDirError on a defect)."""
    version = data.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise RunDirError(path, "schema_version", f"missing or not an integer: {version!r}")
    if version != SCHEMA_VERSION:
        raise RunDirError(
            path,
            "schema_version",
            f"unknown schema version {version}; this harness reads version {SCHEMA_VERSION}",
        )
    machine = _typed(path, data, "machine", dict, {})
    fingerprint = data.get("fingerprint_id") or machine.get("fingerprint_id")
    if not isinstance(fingerprint, str) or not fingerprint:
        raise RunDirError(path, "machine.fingerprint_id", "missing machine fingerprint id")
    _typed(path, data, "git", dict, {})
    _typed(path, data, "hosts", dict, {})
    flat = flat_meta(data)
    commit = flat["commit"]
    if commit is not None and not isinstance(commit, str):
        raise RunDirError(path, "git.commit", f"expected a commit id, got {commit!r}")
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
            raise RunDirError(path, f"artifacts.{name}", f"expected a sha256: {entry!r}")
    return shas, builds


def _typed(path: Path, data: dict[str, Any], key: str, kind: type, default: Any) -> Any:
    if key not in data:
        return default
    value = data[key]
    if not isinstance(value, kind):
        raise RunDirError(path, key, f"expected {kind.__name__}, got {type(value).__name__}")
    return value
