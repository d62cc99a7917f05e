"""The history store: one schema-versioned, gzipped JSON file per (machine, version, matrix).

A run's *version* is the harness commit it ran at, when every artifact it measured lies in that
checkout (the bundled library, built from that commit). A project's own binaries are not that
commit's: their builds are part of the version (``build``, a hash of their sha256s), so two
builds of a project measured at one harness commit are two points, never one replacing the
other under the other's label.

Layout: ``STORE/<fingerprint_id>/<commit>-<matrix>[-<build>].json.gz``. Adding a run of the
same machine, version and matrix again replaces its file (the latest measurement wins). As in asv,
old files are migrated on read (``_migrate_v0``) and files newer than this code are refused.

A file holds the run's provenance and one *point* per (cell, measurement, metric): the bench
summaries (``iteration == -1``), plus a median computed from raw samples where a run recorded no
``median_ns`` summary.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.gate.errors import GateInputError
from harness.gate.measurements import key_of, timing_samples, x_label
from harness.rundir.reader import Run

STORE_SCHEMA_VERSION = 2
DEFAULT_STORE = Path(".tinygpt-history")
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Point:
    """One summary value of one measurement of one cell at one commit."""

    cell: str
    host: str
    host_version: str
    artifact: str
    artifact_sha256: str
    preset: str
    subject: str
    x_name: str
    x: str
    metric: str
    unit: str
    value: float


@dataclass(frozen=True)
class Entry:
    """One stored run: its provenance and its points."""

    fingerprint_id: str
    commit: str
    dirty: bool
    matrix: str
    start: str
    machine: dict[str, Any]
    hosts: dict[str, str]
    artifacts: dict[str, str]
    points: tuple[Point, ...]
    build: str = ""  # the project builds measured (hash of their sha256s); "" for ours only

    @property
    def version(self) -> str:
        """What a trend's x axis names: the commit, plus the build of a project's binaries."""
        return f"{self.commit[:12]}+{self.build}" if self.build else self.commit

    def to_json(self) -> dict[str, Any]:
        """The current-schema JSON document of this entry."""
        data = asdict(self)
        data["points"] = [asdict(p) for p in self.points]
        return {"schema_version": STORE_SCHEMA_VERSION, **data}


def short_version(version: str, width: int = 12) -> str:
    """``version`` for a label: the commit cut to ``width``, a project build's suffix kept (two
    builds at one commit must not read alike)."""
    commit, plus, build = version.partition("+")
    return commit[:width] + plus + build


def entry_from_run(run: Run) -> Entry:
    """Summarise a run into a history entry."""
    points: list[Point] = []
    have_median: set[tuple[str, str, str, str]] = set()
    for row in run.rows:
        if row.check != "bench" or row.iteration >= 0 or row.status not in ("measured", "noisy"):
            continue
        if math.isnan(row.value):
            continue
        points.append(
            Point(row.cell, row.host, row.host_version, row.artifact, row.artifact_sha256,
                  row.preset, row.subject, row.x_name, x_label(row.x_value), row.metric,
                  row.unit, row.value)
        )  # fmt: skip
        if row.metric == "median_ns":
            have_median.add((row.cell, row.subject, row.x_name, x_label(row.x_value)))
    first = {key_of(r): r for r in run.rows if r.check == "bench" and r.iteration >= 0}
    for key, samples in sorted(timing_samples(run.rows).items()):
        if (key.cell, key.subject, key.x_name, key.x) in have_median:
            continue
        r = first[key]
        points.append(
            Point(r.cell, r.host, r.host_version, r.artifact, r.artifact_sha256, r.preset,
                  r.subject, r.x_name, key.x, "median_ns", "ns", float(np.median(samples)))
        )  # fmt: skip
    meta = run.meta
    outside = sorted(
        (name, sha)
        for name, sha in meta.artifacts.items()
        if not meta.artifact_builds.get(name, {}).get("in_checkout", True)
    )
    build = hashlib.sha256(json.dumps(outside).encode()).hexdigest()[:8] if outside else ""
    return Entry(
        fingerprint_id=meta.fingerprint_id,
        commit=meta.commit,
        dirty=meta.dirty,
        matrix=meta.matrix_name,
        start=meta.start,
        machine=meta.machine,
        hosts=meta.host_versions,
        artifacts=meta.artifacts,
        points=tuple(points),
        build=build,
    )


def entry_path(store: Path, fingerprint_id: str, commit: str, matrix: str, build: str = "") -> Path:
    """Where the entry of (machine, commit, matrix, project build) lives."""
    tail = f"-{_SAFE.sub('_', build)}" if build else ""
    return (
        store
        / _SAFE.sub("_", fingerprint_id)
        / f"{_SAFE.sub('_', commit)}-{_SAFE.sub('_', matrix)}{tail}.json.gz"
    )


def add_run(store: Path, run: Run) -> Path:
    """Store ``run``'s entry; returns the file written."""
    entry = entry_from_run(run)
    path = entry_path(store, entry.fingerprint_id, entry.commit, entry.matrix, entry.build)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = json.dumps(entry.to_json(), sort_keys=True, indent=1).encode()
    tmp = path.with_suffix(".tmp")
    with gzip.GzipFile(tmp, "wb", mtime=0) as fh:  # mtime=0: same run, same bytes
        fh.write(payload)
    tmp.replace(path)  # atomic: a crash never leaves a half-written entry
    return path


def read_entry(path: Path) -> Entry:
    """Read one store file, migrating older schema versions; refuses newer ones."""
    try:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, EOFError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise GateInputError(path, "", f"corrupt or truncated history file ({exc})") from exc
    if not isinstance(data, dict):
        raise GateInputError(path, "", "expected a JSON object")
    version = data.get("schema_version", data.get("version"))
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise GateInputError(path, "schema_version", f"missing or invalid: {version!r}")
    if version > STORE_SCHEMA_VERSION:
        raise GateInputError(
            path,
            "schema_version",
            f"written by a newer harness (schema v{version}); this one reads up to "
            f"v{STORE_SCHEMA_VERSION}: upgrade tinygpt-harness to read it",
        )
    while version < STORE_SCHEMA_VERSION:
        data = MIGRATIONS[version](data, path)
        version = int(data["schema_version"])
    return _entry_from_current(data, path)


def _migrate_v0(data: dict[str, Any], path: Path) -> dict[str, Any]:
    """v0 (``version``, ``machine`` as the id, ``results`` keyed "cell::subject::x") -> v1."""
    results = data.get("results")
    if not isinstance(results, dict):
        raise GateInputError(path, "results", "v0 file without a results table")
    points = []
    for key, metrics in results.items():
        parts = str(key).split("::")
        if len(parts) != 3 or len(parts[0].split("/")) != 3 or not isinstance(metrics, dict):
            raise GateInputError(
                path, f"results.{key}", "expected 'host/artifact/preset::subject::x_name=x'"
            )
        cell, subject, xpart = parts
        host, artifact, preset = cell.split("/")
        x_name, _, x = xpart.partition("=")
        for metric, value in metrics.items():
            points.append({
                "cell": cell, "host": host, "host_version": "", "artifact": artifact,
                "artifact_sha256": "", "preset": preset, "subject": subject, "x_name": x_name,
                "x": x, "metric": metric, "unit": "ns" if metric.endswith("_ns") else "",
                "value": float(value),
            })  # fmt: skip
    return {
        "schema_version": 1,
        "fingerprint_id": str(data.get("machine", "")),
        "commit": str(data.get("commit", "")),
        "dirty": False,
        "matrix": str(data.get("matrix", "")),
        "start": str(data.get("date", "")),
        "machine": {},
        "hosts": {},
        "artifacts": {},
        "points": points,
    }


def _migrate_v1(data: dict[str, Any], _path: Path) -> dict[str, Any]:
    """v1 -> v2: ``build`` added; a v1 entry was keyed by the harness commit alone (its build
    is not known: "")."""
    return {**data, "schema_version": 2, "build": ""}


MIGRATIONS: dict[int, Callable[[dict[str, Any], Path], dict[str, Any]]] = {
    0: _migrate_v0,
    1: _migrate_v1,
}


def _entry_from_current(data: dict[str, Any], path: Path) -> Entry:
    fields = ("fingerprint_id", "commit", "matrix", "points")
    for name in fields:
        if name not in data:
            raise GateInputError(path, name, "missing")
    try:
        points = tuple(Point(**p) for p in data["points"])
    except TypeError as exc:
        raise GateInputError(path, "points", f"malformed point ({exc})") from exc
    return Entry(
        fingerprint_id=str(data["fingerprint_id"]),
        commit=str(data["commit"]),
        dirty=bool(data.get("dirty", False)),
        matrix=str(data["matrix"]),
        start=str(data.get("start", "")),
        machine=dict(data.get("machine", {})),
        hosts=dict(data.get("hosts", {})),
        artifacts=dict(data.get("artifacts", {})),
        points=points,
        build=str(data.get("build", "")),
    )


def iter_entries(store: Path) -> Iterator[Entry]:
    """Every entry of the store, in measurement order (run start time, then commit)."""
    if not store.exists():
        return
    entries = [read_entry(p) for p in sorted(store.glob("*/*.json.gz"))]
    yield from sorted(entries, key=lambda e: (e.start, e.version))
