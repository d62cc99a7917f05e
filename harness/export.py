"""``tinygpt-harness export --format pytest-benchmark RUN [-o FILE]``: a run's timings as
pytest-benchmark's saved JSON, so ``pytest-benchmark compare`` (and tools built on its files)
can read them.

One benchmark per measurement of the run (a cell's curve point: ``harness.gate.measurements``):
``group`` is the cell ``host/artifact/preset``, ``name`` the subject with its x
(``op:matmul_forward[n=64]``), ``fullname`` ``cell::name``. Its ``stats`` are computed from the
raw ``time_ns`` samples (one per round, in seconds, as pytest-benchmark stores them), with
pytest-benchmark's own definitions (:func:`benchmark_stats`). Each sample is already the mean of
the host's inner repetitions, so ``iterations`` is 1. The harness's own figures (median, its
bootstrap CI, ``noisy``) and the provenance go to ``extra_info``. A directory that is not a run
is exit 2 with one line.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.gate.measurements import MeasurementKey, key_of, timing_samples
from harness.rundir.meta import RunDirError
from harness.rundir.reader import Run, load_run

FORMATS = ("pytest-benchmark",)
NS_PER_S = 1e9
# the summary rows the bench check writes beside the raw samples (docs/architecture.md)
SUMMARY_METRICS = ("median_ns", "ci_low_ns", "ci_high_ns", "cv")


def _quartiles(data: Sequence[float]) -> tuple[float, float]:
    """Q1 and Q3 as pytest-benchmark computes them (Wikipedia's methods 2 and 3)."""
    n = len(data)
    if n == 1:
        return data[0], data[0]
    if n % 2 == 0:  # method 2: medians of the lower and upper halves
        return statistics.median(data[: n // 2]), statistics.median(data[n // 2 :])
    k, r = n // 4, n % 4  # method 3
    if r == 1:
        return 0.25 * data[k - 1] + 0.75 * data[k], 0.75 * data[3 * k] + 0.25 * data[3 * k + 1]
    return 0.75 * data[k] + 0.25 * data[k + 1], 0.25 * data[3 * k + 1] + 0.75 * data[3 * k + 2]


def benchmark_stats(seconds: Sequence[float]) -> dict[str, Any]:
    """pytest-benchmark's ``stats`` of one benchmark's rounds (seconds), field for field.

    The definitions are pytest-benchmark's (``pytest_benchmark.stats.Stats``): sample standard
    deviation, Tukey quartiles, outliers as ``"stddev_outliers;iqr_outliers"``, ops = rounds /
    total. ``tests/export`` checks them against that class on the same data.
    """
    data = list(seconds)
    ordered = sorted(data)
    mean = statistics.mean(data)
    stddev = statistics.stdev(data) if len(data) > 1 else 0.0
    q1, q3 = _quartiles(ordered)
    iqr = q3 - q1
    low, high = q1 - 1.5 * iqr, q3 + 1.5 * iqr
    iqr_outliers = sum(v < low or v > high for v in data)
    stddev_outliers = sum(v < mean - stddev or v > mean + stddev for v in data)
    total = sum(data)
    single = len(data) == 1
    return {
        "min": ordered[0],
        "max": ordered[-1],
        "mean": mean,
        "stddev": stddev,
        "rounds": len(data),
        "median": statistics.median(data),
        "iqr": iqr,
        "q1": q1,
        "q3": q3,
        "iqr_outliers": iqr_outliers,
        "stddev_outliers": stddev_outliers,
        "outliers": f"{stddev_outliers};{iqr_outliers}",
        "ld15iqr": data[0] if single else ordered[bisect_left(ordered, low)],
        "hd15iqr": data[0] if single else ordered[bisect_right(ordered, high) - 1],
        "ops": len(data) / total if total else 0,
        "total": total,
        "data": data,
        "iterations": 1,
    }


def _summaries(run: Run) -> dict[MeasurementKey, dict[str, Any]]:
    """Per measurement: the harness's own summary figures, status and provenance."""
    out: dict[MeasurementKey, dict[str, Any]] = {}
    for row in run.rows:
        if row.check != "bench" or row.iteration >= 0:
            continue
        info = out.setdefault(key_of(row), {})
        if row.metric in SUMMARY_METRICS and not math.isnan(row.value):
            info[f"harness_{row.metric}"] = row.value
        if row.metric == "median_ns":
            info["harness_status"] = row.status  # measured, or noisy (CI wider than +-10 %)
    return out


def _benchmark(
    key: MeasurementKey, samples: Sequence[float], extra: dict[str, Any], run: Run
) -> dict[str, Any]:
    host, artifact, preset = key.cell.split("/")
    name = f"{key.subject}[{key.x_name}={key.x}]" if key.x_name else key.subject
    return {
        "group": key.cell,
        "name": name,
        "fullname": f"{key.cell}::{name}",
        "params": {key.x_name: key.x} if key.x_name else None,
        "param": key.x or None,
        "extra_info": {
            "cell": key.cell,
            "host": host,
            "host_version": run.meta.host_versions.get(host, ""),
            "artifact": artifact,
            "artifact_sha256": run.meta.artifacts.get(artifact, ""),
            "preset": preset,
            "subject": key.subject,
            "unit_of_data": "s per call, each round the mean of the host's inner repetitions",
            **extra,
        },
        "options": {"timer": "in-host", "min_rounds": len(samples), "warmup": None},
        "stats": benchmark_stats([v / NS_PER_S for v in samples]),
    }


def pytest_benchmark_json(run: Run) -> dict[str, Any]:
    """The pytest-benchmark saved-run document of ``run``'s timings."""
    summaries = _summaries(run)
    machine = run.meta.machine
    return {
        "machine_info": {
            "node": machine.get("hostname", ""),
            "processor": machine.get("cpu_model", ""),
            "machine": machine.get("arch", ""),
            "system": machine.get("os", ""),
            "cpu": {"brand_raw": machine.get("cpu_model", ""), "count": machine.get("cpu_count")},
            "fingerprint_id": run.meta.fingerprint_id,
        },
        "commit_info": {
            "id": run.meta.commit,
            "dirty": run.meta.dirty,
            "project": "tinygpt-harness",
            "time": run.meta.start,
        },
        "benchmarks": [
            _benchmark(key, samples, summaries.get(key, {}), run)
            for key, samples in sorted(timing_samples(run.rows).items())
        ],
        "datetime": run.meta.end or run.meta.start,
        "version": "tinygpt-harness export",  # the writer; pytest-benchmark reads no version
    }


def configure(parser: argparse.ArgumentParser) -> None:
    """Add ``export``'s arguments."""
    parser.add_argument("run", type=Path, metavar="RUN", help="run directory")
    parser.add_argument("--format", choices=FORMATS, required=True, help="output format")
    parser.add_argument(
        "-o", "--output", type=Path, metavar="FILE", help="write here (default: stdout)"
    )


def execute(args: argparse.Namespace) -> int:
    """Export; 0 when written, 2 for a directory that is not a readable run."""
    try:
        run = load_run(args.run)
    except RunDirError as exc:
        print(f"tinygpt-harness export: {exc}", file=sys.stderr)
        return 2
    text = json.dumps(pytest_benchmark_json(run), indent=2, allow_nan=False) + "\n"
    if args.output is None:
        sys.stdout.write(text)
        return 0
    try:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text, encoding="utf-8")
    except OSError as exc:
        print(
            f"tinygpt-harness export: cannot write {args.output}: {exc.strerror}", file=sys.stderr
        )
        return 2
    return 0
