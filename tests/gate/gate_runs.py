"""Build synthetic run directories for the gate's tests, through the real RowWriter."""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from harness.rundir.meta import RUN_FILE, SCHEMA_VERSION
from harness.rundir.rows import Row, Status
from harness.rundir.writer import RowWriter
from reference.defaults import DEFAULTS

SHA_NATIVE = "1" * 64
SHA_WASM = "2" * 64
MATRIX_TEXT = """\
name = "gate-test"
[thresholds]
alpha = 0.01
min_effect = 0.03
"""


def bench_rows(
    samples: Sequence[float],
    host: str = "native",
    artifact: str = "native",
    preset: str = "small",
    subject: str = "op:matmul_forward",
    x: float = 256.0,
) -> list[Row]:
    """Raw time_ns sample rows plus a median summary row, as the bench check writes them."""
    sha = SHA_NATIVE if artifact == "native" else SHA_WASM
    common: dict[str, Any] = dict(
        host=host, host_version="1.0", artifact=artifact, artifact_sha256=sha, preset=preset
    )
    rows = [
        Row(**common, check="bench", subject=subject, status="measured", metric="time_ns",
            value=float(v), unit="ns", x_name="n", x_value=x, iteration=i)
        for i, v in enumerate(samples)
    ]  # fmt: skip
    rows.append(
        Row(**common, check="bench", subject=subject, status="measured", metric="median_ns",
            value=float(np.median(samples)), unit="ns", x_name="n", x_value=x)
    )  # fmt: skip
    return rows


def verdict_row(
    check: str,
    status: Status,
    subject: str = "verdict",
    host: str = "native",
    artifact: str = "native",
    preset: str = "small",
    detail: str = "",
) -> Row:
    """A verdict row (a cell-level one by default)."""
    sha = SHA_NATIVE if artifact == "native" else SHA_WASM
    return Row(host, "1.0", artifact, sha, preset, check, subject, status, detail=detail)


def noisy(median: float, n: int, seed: int, cv: float = 0.01) -> list[float]:
    """``n`` normally distributed samples around ``median`` with coefficient of variation ``cv``."""
    rng = np.random.default_rng(seed)
    return [float(v) for v in rng.normal(median, median * cv, n)]


def write_run(
    directory: Path,
    rows: Iterable[Row],
    commit: str = "a" * 40,
    fingerprint: str = "fp-test-machine",
    artifacts: dict[str, str] | None = None,
    matrix_text: str = MATRIX_TEXT,
    start: str = "2026-01-01T00:00:00Z",
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``results.csv`` (RowWriter) and a run.json shaped like the runner's."""
    writer = RowWriter(directory)
    writer.write(rows)
    writer.close()
    shas = artifacts or {"native": SHA_NATIVE, "wasm32": SHA_WASM}
    meta: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "status": "complete",
        "git": {"commit": commit, "dirty": False},
        "machine": {
            "cpu_model": "test cpu",
            "cpu_count": 2,
            "os": "Debian",
            "arch": "x86_64",
            "fingerprint_id": fingerprint,
        },
        "hosts": {
            "native": {"version": "1.0", "pin": None},
            "wasmtime": {"version": "50.0.1", "pin": None},
        },
        "artifacts": {
            name: {
                "sha256": sha,
                "kind": "native" if name == "native" else "wasm",
                "target": name,
                "toolchain": "zig 0.17.1",
                "features": [],
            }
            for name, sha in shas.items()
        },
        "matrix": {
            "path": "matrices/gate-test.toml",
            "name": "gate-test",
            "sha256": hashlib.sha256(matrix_text.encode()).hexdigest(),
            "content": tomllib.loads(matrix_text),
        },
        "shard": {"index": 1, "count": 1},
        "started_at": start,
        "ended_at": start,
        "defaults_sha256": DEFAULTS.sha256(),
        "corpus_sha256": "c" * 64,
    }
    meta.update(extra or {})
    (directory / RUN_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return directory


def tree_digest(directory: Path) -> dict[str, str]:
    """sha256 of every file under ``directory`` (to prove a command modified nothing)."""
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


# One real native cell timing the matmul curve: (min_samples, max_samples, min_effect) to fill.
NATIVE_BENCH_MATRIX = """\
name = "gate-real"
artifacts = ["native"]
presets = ["tiny"]
checks = ["bench"]
[hosts]
native = {}
[check.bench]
curves = ["ops"]
ops = ["matmul_forward"]
sizes = { matmul_forward = [32] }
min_samples = %d
max_samples = %d
warmup = 1
reference = false
ops_once = false  # every run of this process measures its op curve (the default skips repeats)
budget_s = 5.0
[thresholds]
alpha = 0.01
min_effect = %s
"""
