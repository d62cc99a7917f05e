"""Fabricate run directories for ``signoff --record`` tests: copies of a real run, scaled."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from harness.rundir.meta import RUN_FILE
from harness.rundir.rows import RESULTS_FILE
from reference.defaults import DEFAULTS

_TIMES = ("median_ns", "ci_low_ns", "ci_high_ns", "time_ns")


def scaled_run(source: Path, target: Path, factor: float, **meta: object) -> Path:
    """A copy of ``source`` where every ``speedup`` figure is ``factor`` times the original.

    numpy's times (and the run's ``speedup`` rows) are scaled, the kernels' are not, so each
    speedup's value and CI scale by ``factor`` exactly. The copy is of a clean checkout unless
    ``meta`` says otherwise, and measured with this code's training defaults (the copies stand
    for fresh runs of this checkout); ``meta`` overrides top-level run.json keys.
    """
    target.mkdir(parents=True)
    run = json.loads((source / RUN_FILE).read_text())
    run["git"] = {**run.get("git", {}), "dirty": False}
    run["defaults_sha256"] = DEFAULTS.sha256()
    run.update(meta)
    (target / RUN_FILE).write_text(json.dumps(run))
    with (source / RESULTS_FILE).open(newline="") as fh:
        reader = csv.DictReader(fh)
        fields = list(reader.fieldnames or ())
        rows = list(reader)
    for row in rows:
        numpy = row["host"] == "numpy" and row["metric"] in _TIMES
        if (numpy or row["metric"] == "speedup") and row["value"]:
            row["value"] = repr(float(row["value"]) * factor)
    with (target / RESULTS_FILE).open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return target
