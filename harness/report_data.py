"""Load a run directory forgivingly and derive the report's tables.

Unlike the gate (which refuses any defect), the report renders whatever a run left behind: a
missing ``run.json``, a truncated last line, rows of an older schema lacking columns. Each defect
becomes a sentence in :attr:`LoadedRun.problems`, shown at the top of the report.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.rundir.meta import project_checkout
from harness.rundir.oracles import model_oracles
from harness.rundir.reader import read_run
from harness.rundir.rows import COLUMNS, REFERENCE_HOST, Row
from harness.rundir.verdict import INCOMPLETE, cell_verdicts


@dataclass(frozen=True)
class LoadedRun:
    """A run directory as far as it could be read."""

    directory: Path
    meta: dict[str, Any]  # run.json, or {} when missing or unreadable
    rows: pd.DataFrame  # COLUMNS, typed: value/x_value float, iteration int
    problems: tuple[str, ...]  # what is missing or was skipped, one sentence each

    @property
    def usable(self) -> bool:
        """True when at least one row could be read."""
        return not self.rows.empty


def load_run_dir(directory: Path) -> LoadedRun:
    """Read ``directory`` with the run directory's lenient reader, as a typed DataFrame."""
    run = read_run(directory)
    problems = list(run.problems)
    rows = _frame(run.rows)
    cells = cell_verdicts(r for r in run.rows if r.host != REFERENCE_HOST)
    unfinished = sorted(c for c, (status, _) in cells.items() if status == INCOMPLETE)
    if unfinished:
        problems.append(
            f"{len(unfinished)} cell(s) have no verdict row (check=cell): shown as "
            f"{INCOMPLETE}, the run did not finish them: {', '.join(unfinished)}"
        )
    return LoadedRun(directory, run.meta, rows, tuple(problems))


def _frame(rows: tuple[Row, ...]) -> pd.DataFrame:
    dtypes = {c: _dtype(c) for c in COLUMNS}
    if not rows:
        return pd.DataFrame({c: pd.Series(dtype=d) for c, d in dtypes.items()})
    records = [dataclasses.astuple(r) for r in rows]
    return pd.DataFrame(records, columns=list(COLUMNS)).astype(dtypes)


def _dtype(column: str) -> str:
    return {"value": "float64", "x_value": "float64", "iteration": "int64"}.get(column, "object")


# ---- derived tables -----------------------------------------------------------------------


def cell_id(host: str, artifact: str, preset: str) -> str:
    """The cell id ``host/artifact/preset``."""
    return f"{host}/{artifact}/{preset}"


@dataclass(frozen=True)
class CellVerdict:
    """One cell's verdict and its first cause."""

    host: str
    artifact: str
    preset: str
    status: str
    detail: str
    derived: bool  # True when the cell has no verdict row (it is incomplete)
    noisy: int  # number of noisy bench figures (summary rows of median_ns) in the cell


def verdicts(rows: pd.DataFrame) -> list[CellVerdict]:
    """Every cell's verdict by the one rule (``cell_verdicts``): its verdict row or incomplete."""
    own = rows[rows["host"] != REFERENCE_HOST]
    decided = cell_verdicts(
        Row(**{str(k): v for k, v in rec.items()}) for rec in own.to_dict("records")
    )
    out: list[CellVerdict] = []
    for key, g in own.groupby(["host", "artifact", "preset"], sort=True):
        host, artifact, preset = (str(k) for k in key)
        noisy = int(((g["status"] == "noisy") & (g["metric"] == "median_ns")).sum())
        status, detail = decided[f"{host}/{artifact}/{preset}"]
        out.append(CellVerdict(host, artifact, preset, status, detail, status == INCOMPLETE, noisy))
    return out


def summary_value(rows: pd.DataFrame, **where: str) -> pd.DataFrame:
    """Bench summary rows (``iteration == -1``) matching ``where`` (column=value)."""
    mask = (rows["check"] == "bench") & (rows["iteration"] == -1)
    for column, value in where.items():
        mask &= rows[column] == value
    return rows[mask]


def curve(rows: pd.DataFrame, subject: str, metric: str) -> pd.DataFrame:
    """One curve: ``host, artifact, preset, x_value, value, status`` plus its CI when present.

    ``ci_low``/``ci_high`` are the bounds of the same point's ``ci_low_ns``/``ci_high_ns`` rows
    (time, not the metric; callers convert) and ``median`` its ``median_ns``.
    """
    keys = ["host", "artifact", "preset", "x_value"]
    pts = summary_value(rows, subject=subject, metric=metric)[[*keys, "value", "status", "detail"]]
    pts = pts.drop_duplicates(subset=keys, keep="first")
    for stat in ("median_ns", "ci_low_ns", "ci_high_ns", "cv"):
        s = summary_value(rows, subject=subject, metric=stat)[[*keys, "value"]]
        s = s.drop_duplicates(subset=keys, keep="first").rename(columns={"value": stat})
        pts = pts.merge(s, on=keys, how="left")
    return pts.sort_values(keys).reset_index(drop=True)


def cold_ratios(rows: pd.DataFrame) -> pd.DataFrame:
    """Per cell: the cold first train step (``cold_ns``) over the steady train-step median.

    Columns ``host, artifact, x_value, value_cold, value_steady, status, ratio``; ``status`` is
    the steady figure's (a noisy steady median makes the ratio noisy too). Empty when the run
    has no cold figures.
    """
    from harness.checks.bench import COLD_SUBJECT  # the one name of the cold figure

    keys = ["host", "artifact", "x_value"]
    cold = summary_value(rows, subject=COLD_SUBJECT, metric="cold_ns")[[*keys, "value"]]
    steady = curve(rows, "train_step", "median_ns")[[*keys, "value", "status"]]
    pts = cold.merge(steady, on=keys, suffixes=("_cold", "_steady"))
    pts["ratio"] = pts["value_cold"] / pts["value_steady"]
    return pts.sort_values(keys).reset_index(drop=True)


def speedup_curve(rows: pd.DataFrame) -> pd.DataFrame:
    """The train-step speedup curve the report shows: the side-by-side one
    (``train_step:paired``, the figure sign-off reads, with ``speedup_ci_low``/``_high``
    columns) where the run has it, else (older runs) the ratio of the two medians timed apart."""
    from harness.checks.bench_paired import SUBJECT  # the one name of the side-by-side curve

    pts = curve(rows, SUBJECT, "speedup")
    if pts.empty:
        return curve(rows, "train_step", "speedup")
    keys = ["host", "artifact", "preset", "x_value"]
    for stat in ("speedup_ci_low", "speedup_ci_high"):  # its own CI, over block pairs
        s = summary_value(rows, subject=SUBJECT, metric=stat)[[*keys, "value"]]
        s = s.drop_duplicates(subset=keys, keep="first").rename(columns={"value": stat})
        pts = pts.merge(s, on=keys, how="left")
    return pts


@dataclass(frozen=True)
class SlopeFit:
    """Fitted slope of log10(speedup) against log10(parameter count) for one host/artifact."""

    host: str
    artifact: str
    slope: float  # change of log10(speedup) per decade of parameters
    points: int
    noisy: bool  # True when fewer than two clean points existed and noisy ones were used


def speedup_slopes(rows: pd.DataFrame) -> list[SlopeFit]:
    """Least-squares slope per host/artifact over its clean speedup points.

    With fewer than two clean points the fit uses the noisy ones too and says so.
    """
    pts = speedup_curve(rows)
    out: list[SlopeFit] = []
    for (host, artifact), g in pts.groupby(["host", "artifact"], sort=True):
        g = g[(g["value"] > 0) & (g["x_value"] > 0)]
        clean = g[g["status"] == "measured"]
        noisy = clean["x_value"].nunique() < 2
        used = g if noisy else clean
        if used["x_value"].nunique() < 2:
            continue
        slope = float(np.polyfit(np.log10(used["x_value"]), np.log10(used["value"]), 1)[0])
        out.append(SlopeFit(str(host), str(artifact), slope, len(used), noisy))
    return out


def noisy_figures(rows: pd.DataFrame) -> pd.DataFrame:
    """Every noisy figure (one line per point) with its CV: never shown as a clean number."""
    noisy = summary_value(rows, metric="cv")
    noisy = noisy[noisy["status"] == "noisy"]
    return noisy[["host", "artifact", "preset", "subject", "x_name", "x_value", "value"]].rename(
        columns={"value": "cv"}
    )


# parity.compare's message states the worst element's error over its bound: "(0.006x the bound;".
_BOUND_RATIO = re.compile(r"\(([-+0-9.eE]+|inf|nan)x the bound")
# Runs recorded before that message name the worst element instead (tests/bench/fixtures).
_OLD_WORST = re.compile(r"got (\S+) want (\S+) \(atol (\S+), rtol (\S+)\)")


def parity_margin(detail: str, status: str) -> float:
    """Error over tolerance bound of a parity row's worst element: a pass is at most 1.

    Read from the row's detail (the bound is not a column). A failure whose detail names no
    ratio (wrong shape, a NaN) is infinitely far out; an unreadable pass is NaN (unknown).
    """
    hit = _BOUND_RATIO.search(detail)
    if hit:
        return float(hit.group(1))
    old = _OLD_WORST.search(detail)
    if old:
        got, want, atol, rtol = (float(v) for v in old.groups())
        diff = abs(got - want)
        return 0.0 if diff == 0 else diff / (atol + rtol * abs(want))
    return math.inf if status == "fail" else math.nan


@dataclass(frozen=True)
class ParityMap:
    """Cells x ops: the worst margin (error / bound) and whether any output of the op failed."""

    margin: pd.DataFrame  # index: cell, columns: op; NaN where not measured or unreadable
    failed: pd.DataFrame  # same shape, bool
    errored: pd.DataFrame  # same shape, bool: the op raised (no margin)


def parity_map(rows: pd.DataFrame) -> ParityMap | None:
    """The ops check's worst margin per cell and op (the max over the op's outputs), or None."""
    ops = rows[(rows["check"] == "ops") & (rows["host"] != REFERENCE_HOST)].copy()
    if ops.empty:
        return None
    ops["cell"] = ops["host"] + "/" + ops["artifact"] + "/" + ops["preset"]
    # The ops check names tensors ("matmul_backward.dinp"); the map shows the worst per op.
    ops["op"] = ops["subject"].str.split(".").str[0]
    # Three metric rows per output share one detail: one margin per output.
    ops = ops.drop_duplicates(subset=["cell", "subject"], keep="first")
    ops["margin"] = [
        parity_margin(str(d), str(s)) for d, s in zip(ops["detail"], ops["status"], strict=True)
    ]
    # As floats: a pivot of bools with gaps turns object-typed; NaN > 0 is False.
    ops["failed"] = (ops["status"] == "fail").astype(float)
    ops["errored"] = (ops["status"] == "error").astype(float)

    def table(column: str) -> pd.DataFrame:
        return ops.pivot_table(
            index="cell", columns="op", values=column, aggfunc="max", dropna=False
        )

    margin = table("margin")
    failed = table("failed").reindex_like(margin) > 0
    errored = table("errored").reindex_like(margin) > 0
    return ParityMap(margin, failed, errored)


def fingerprint_id(meta: dict[str, Any]) -> str:
    """The run's machine id ('' when run.json does not say), in either layout of run.json."""
    machine = meta.get("machine") if isinstance(meta.get("machine"), dict) else {}
    assert isinstance(machine, dict)
    return str(meta.get("fingerprint_id") or machine.get("fingerprint_id") or "")


def provenance(run: LoadedRun) -> dict[str, str]:
    """Commit, machine, host versions and artifact sha256 prefixes, as short strings."""
    meta, rows = run.meta, run.rows
    commit = str(meta.get("commit") or "unknown")[:12] + (" (dirty)" if meta.get("dirty") else "")
    project = project_checkout(meta)
    if project is not None:  # a project's binaries and claims are its commit's, not ours
        state = "not a git checkout" if project.commit is None else project.commit[:12]
        dirty = " (dirty)" if project.dirty else ""
        commit = f"{Path(project.root).name} {state}{dirty}; harness {commit}"
    machine = meta.get("machine") if isinstance(meta.get("machine"), dict) else {}
    assert isinstance(machine, dict)
    cpu = machine.get("cpu_model", "unknown machine")
    cores = machine.get("usable_cores") or machine.get("cpu_count")
    fid = fingerprint_id(meta) or "?"
    hosts = meta.get("hosts") or meta.get("host_versions") or {}
    if not isinstance(hosts, dict) or not hosts:
        own = rows[rows["host_version"] != ""].drop_duplicates("host")
        hosts = dict(zip(own["host"], own["host_version"], strict=True))
    arts: dict[str, str] = {}
    raw_arts = meta.get("artifacts")
    if isinstance(raw_arts, dict):
        for name, v in raw_arts.items():
            arts[str(name)] = str(v.get("sha256", "") if isinstance(v, dict) else v)
    if not arts:
        own = rows[rows["artifact_sha256"] != ""].drop_duplicates("artifact")
        arts = dict(zip(own["artifact"], own["artifact_sha256"], strict=True))
    return {
        "commit": commit,
        "machine": f"{cpu}, {cores} cores, id {fid}" if cores else f"{cpu}, id {fid}",
        "hosts": ", ".join(f"{k} {v}" for k, v in sorted(hosts.items())) or "unknown",
        "artifacts": ", ".join(f"{k} {v[:10]}" for k, v in sorted(arts.items()) if v) or "unknown",
        "start": str(meta.get("start", "")),
        "end": str(meta.get("end", "")),
    }


def oracle_lines(run: LoadedRun) -> list[str]:
    """Per preset the model check judged, what it was judged against: ``PRESET: reference dump
    FILE (WRITER, sha256 PREFIX)`` or ``PRESET: the harness's numpy reference``.

    A green report of a project's dump and one of the harness's own reference rendered the
    same verdict table: the oracle is what tells them apart (run.json ``references``).
    """
    if run.rows.empty:
        return []
    model = run.rows[(run.rows["check"] == "model") & (run.rows["host"] != REFERENCE_HOST)]
    oracles = model_oracles(run.meta, (str(p) for p in model["preset"].unique()))
    return [f"{preset}: {oracle.describe()}" for preset, oracle in oracles.items()]
