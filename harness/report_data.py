"""Load a run directory forgivingly and derive the report's tables.

Unlike the gate (which refuses any defect), the report renders whatever a run left behind: a
missing ``run.json``, a truncated last line, rows of an older schema lacking columns. Each defect
becomes a sentence in :attr:`LoadedRun.problems`, shown at the top of the report.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.results import COLUMNS, RESULTS_FILE, RUN_FILE, SCHEMA_VERSION, STATUSES, VERDICTS
from harness.run_dir import flat_meta

REFERENCE_HOST = "numpy"
SEVERITY: tuple[str, ...] = ("error", "fail", "incompatible", "skipped", "pass")
_DEFAULTS: dict[str, str] = {"value": "", "x_value": "", "iteration": "-1"}
_REQUIRED = ("host", "artifact", "check", "subject", "status")


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
    """Read ``directory``'s run.json and results.csv, recording every defect as a problem."""
    problems: list[str] = []
    meta = _load_meta(directory / RUN_FILE, problems)
    rows = _load_rows(directory / RESULTS_FILE, problems)
    if not rows.empty and (rows["check"] == "cell").sum() == 0:
        problems.append(
            "no cell verdict rows (check=cell): verdicts below are derived from the other rows"
        )
    return LoadedRun(directory, meta, rows, tuple(problems))


def _load_meta(path: Path, problems: list[str]) -> dict[str, Any]:
    if not path.is_file():
        problems.append(f"{path.name} is missing: commit, machine and host versions are unknown")
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        problems.append(f"{path.name} is unreadable ({exc}): provenance is unknown")
        return {}
    if not isinstance(data, dict):
        problems.append(f"{path.name} is not a JSON object: provenance is unknown")
        return {}
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        age = "older" if isinstance(version, int) and version < SCHEMA_VERSION else "unknown"
        if isinstance(version, int) and version > SCHEMA_VERSION:
            age = "newer"
        problems.append(
            f"{path.name} has schema_version {version!r} ({age}; this harness writes "
            f"{SCHEMA_VERSION}): rendering the fields it has"
        )
    data = flat_meta(data)
    if not data.get("end"):
        problems.append(f"{path.name} has no end time: the run may have stopped early")
    return data


def _records(path: Path, problems: list[str]) -> Iterator[dict[str, str]]:
    text = path.read_text(encoding="utf-8", errors="replace")
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        problems.append(f"{path.name}: the last line is truncated (a crash mid-write); skipped")
        lines = lines[:-1]
    reader = csv.reader(lines)
    header = next(reader, None)
    if header is None:
        return
    missing = [c for c in COLUMNS if c not in header]
    extra = [c for c in header if c not in COLUMNS]
    if missing:
        absent = [c for c in missing if c in _REQUIRED]
        if absent:
            problems.append(f"{path.name} lacks required columns {absent}: no rows are usable")
            return
        problems.append(
            f"{path.name} lacks columns {missing} (an older schema?): filled with defaults"
        )
    if extra:
        problems.append(f"{path.name} has unknown columns {extra} (a newer schema?): ignored")
    bad = 0
    for fields in reader:
        if len(fields) != len(header):
            bad += 1
            continue
        rec = dict(zip(header, fields, strict=True))
        yield {c: rec.get(c, _DEFAULTS.get(c, "")) for c in COLUMNS}
    if bad:
        problems.append(f"{path.name}: {bad} malformed line(s) skipped")


def _load_rows(path: Path, problems: list[str]) -> pd.DataFrame:
    empty = pd.DataFrame({c: pd.Series(dtype=_dtype(c)) for c in COLUMNS})
    if not path.is_file():
        problems.append(f"{path.name} is missing: there are no results to show")
        return empty
    kept: list[dict[str, Any]] = []
    unparsable = 0
    unknown_status: set[str] = set()
    for rec in _records(path, problems):
        try:
            row: dict[str, Any] = dict(rec)
            row["value"] = float(rec["value"]) if rec["value"] else math.nan
            row["x_value"] = float(rec["x_value"]) if rec["x_value"] else math.nan
            row["iteration"] = int(rec["iteration"]) if rec["iteration"] else -1
        except ValueError:
            unparsable += 1
            continue
        if row["status"] not in STATUSES:
            unknown_status.add(row["status"])
        kept.append(row)
    if unparsable:
        problems.append(f"{path.name}: {unparsable} line(s) with non-numeric numbers skipped")
    if unknown_status:
        problems.append(f"{path.name}: unknown status values {sorted(unknown_status)} kept as-is")
    if not kept:
        problems.append(f"{path.name} holds no result rows")
        return empty
    return pd.DataFrame(kept, columns=list(COLUMNS)).astype({c: _dtype(c) for c in COLUMNS})


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
    derived: bool  # True when no cell row existed and the verdict comes from the check rows
    noisy: int  # number of noisy bench figures (summary rows of median_ns) in the cell


def verdicts(rows: pd.DataFrame) -> list[CellVerdict]:
    """Every cell's verdict, from its ``check=cell`` row or else its worst verdict row."""
    own = rows[rows["host"] != REFERENCE_HOST]
    out: list[CellVerdict] = []
    for key, g in own.groupby(["host", "artifact", "preset"], sort=True):
        host, artifact, preset = (str(k) for k in key)
        noisy = int(((g["status"] == "noisy") & (g["metric"] == "median_ns")).sum())
        cell = g[(g["check"] == "cell") & (g["subject"] == "verdict")]
        if not cell.empty:
            last = cell.iloc[-1]
            out.append(
                CellVerdict(host, artifact, preset, last["status"], last["detail"], False, noisy)
            )
            continue
        status, detail = "pass", ""
        for _, r in g[g["status"].isin(VERDICTS)].iterrows():
            if SEVERITY.index(r["status"]) < SEVERITY.index(status):
                status, detail = r["status"], f"{r['check']}:{r['subject']}: {r['detail']}"
        if g["status"].isin(VERDICTS).sum() == 0:
            status, detail = "partial", "no verdict rows (the cell did not finish)"
        out.append(CellVerdict(host, artifact, preset, status, detail, True, noisy))
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
    pts = curve(rows, "train_step", "speedup")
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


def parity_matrix(rows: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Cells x ops of the worst parity error: ``max_rel_err`` if any, else ``max_ulp``."""
    ops = rows[(rows["check"] == "ops") & rows["metric"].isin(["max_rel_err", "max_ulp"])]
    if ops.empty:
        return pd.DataFrame(), ""
    metric = "max_rel_err" if (ops["metric"] == "max_rel_err").any() else "max_ulp"
    ops = ops[ops["metric"] == metric].copy()
    ops["cell"] = ops["host"] + "/" + ops["artifact"] + "/" + ops["preset"]
    # The ops check names tensors ("matmul_backward.dinp"); the map shows the worst per op.
    ops["op"] = ops["subject"].str.split(".").str[0]
    table = ops.pivot_table(index="cell", columns="op", values="value", aggfunc="max")
    return table, metric


def provenance(run: LoadedRun) -> dict[str, str]:
    """Commit, machine, host versions and artifact sha256 prefixes, as short strings."""
    meta, rows = run.meta, run.rows
    commit = str(meta.get("commit") or "unknown")[:12] + (" (dirty)" if meta.get("dirty") else "")
    machine = meta.get("machine") if isinstance(meta.get("machine"), dict) else {}
    assert isinstance(machine, dict)
    cpu = machine.get("cpu_model", "unknown machine")
    cores = machine.get("usable_cores") or machine.get("cpu_count")
    fid = meta.get("fingerprint_id") or machine.get("fingerprint_id") or "?"
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
