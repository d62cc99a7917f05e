"""``tinygpt-harness merge``: combine shard run directories into one run directory.

Rows are concatenated in shard order; metadata is unioned. Shards must come from the same
matrix file (sha256), the same git commit and the same training defaults, and must not overlap;
anything else is refused with exit code 2. Shards may come from different machines (sharding
across CI runners): each shard's machine fingerprint is kept under ``shards``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from harness.rundir.meta import RUN_FILE, RunDirError, write_run_json
from harness.rundir.reader import load_run
from harness.rundir.rows import RESULTS_FILE, Row
from harness.rundir.verdict import count_verdicts, exit_code
from harness.rundir.writer import RowWriter

EXIT_INTERRUPTED = 130


class MergeError(Exception):
    """Shards that cannot be merged; the message names the shards and the field that differs."""


def _same(
    metas: Sequence[tuple[Path, dict[str, Any]]], what: str, get: Callable[[dict[str, Any]], Any]
) -> Any:
    def value(d: Path, meta: dict[str, Any]) -> Any:
        try:
            return get(meta)
        except (KeyError, TypeError):
            raise MergeError(f"{d / RUN_FILE} does not record the {what}") from None

    first_dir, first = metas[0]
    want = value(first_dir, first)
    for d, meta in metas[1:]:
        if value(d, meta) != want:
            raise MergeError(
                f"cannot merge runs with different {what}: {first_dir} has {want!r}, "
                f"{d} has {value(d, meta)!r}"
            )
    return want


def merge_runs(dirs: Sequence[Path], out: Path) -> dict[str, Any]:
    """Merge the run directories ``dirs`` into ``out``; return the merged run.json content."""
    if not dirs:
        raise MergeError("no run directories given")
    if (out / RESULTS_FILE).exists() or (out / RUN_FILE).exists():
        raise MergeError(f"{out} already holds a run; give --out a new directory")
    metas: list[tuple[Path, dict[str, Any]]] = []
    shard_rows: dict[Path, tuple[Row, ...]] = {}
    for d in dirs:
        try:
            run = load_run(d)  # strict: a merged run must not hide a shard's defect
        except RunDirError as exc:
            raise MergeError(str(exc)) from None
        metas.append((d, run.meta.raw))
        shard_rows[d] = run.rows
    for d, meta in metas:
        for key in ("matrix", "git", "shard", "defaults_sha256", "started_at"):
            if key not in meta:
                raise MergeError(f"{d / RUN_FILE} lacks {key!r}")
    metas.sort(key=lambda dm: int(dm[1]["shard"].get("index", 0)))

    matrix = _same(metas, "matrices (sha256)", lambda m: m["matrix"]["sha256"])
    commit = _same(metas, "git commits", lambda m: m["git"]["commit"])
    _same(metas, "training defaults (sha256)", lambda m: m["defaults_sha256"])
    count = _same(metas, "shard counts (--shard K/N)", lambda m: m["shard"]["count"])
    del matrix, commit  # checked; the merged metadata takes them from the first shard

    seen_cells: dict[str, Path] = {}
    seen_shards: dict[int, Path] = {}
    for d, meta in metas:
        index = int(meta["shard"]["index"])
        if index in seen_shards:
            raise MergeError(f"shard {index}/{count} given twice: {seen_shards[index]} and {d}")
        seen_shards[index] = d
        for cell in meta.get("cells", []):
            if cell in seen_cells:
                raise MergeError(f"cell {cell} is in both {seen_cells[cell]} and {d}")
            seen_cells[cell] = d

    rows: list[Row] = []
    writer = RowWriter(out)
    try:
        for d, _ in metas:
            writer.write(shard_rows[d])
            rows.extend(shard_rows[d])
    finally:
        writer.close()

    merged = _merged_meta(metas, rows, count, seen_shards)
    write_run_json(out, merged)
    return merged


def _merged_meta(
    metas: Sequence[tuple[Path, dict[str, Any]]],
    rows: Sequence[Row],
    count: int,
    seen_shards: dict[int, Path],
) -> dict[str, Any]:
    first = metas[0][1]
    hosts: dict[str, Any] = {}
    artifacts: dict[str, Any] = {}
    mixed: dict[str, list[str]] = {}
    machines: dict[str, Any] = {}
    checks: list[str] = []
    for _, meta in metas:
        for name, info in meta.get("hosts", {}).items():
            hosts.setdefault(name, info)
        for name, info in meta.get("artifacts", {}).items():
            known = artifacts.setdefault(name, info)
            if known.get("sha256") != info.get("sha256"):
                shas = mixed.setdefault(name, [known.get("sha256")])
                shas.append(info.get("sha256"))
        machine = meta.get("machine", {})
        machines.setdefault(machine.get("fingerprint_id", "?"), machine)
        checks.extend(c for c in meta.get("checks", []) if c not in checks)
    interrupted = any(m.get("interrupted") for _, m in metas)
    verdicts = count_verdicts(rows)
    missing = [k for k in range(1, count + 1) if k not in seen_shards]
    complete = not missing and all(m.get("status") == "complete" for _, m in metas)
    ended = [m["ended_at"] for _, m in metas if m.get("ended_at")]
    corpus = [m["corpus_sha256"] for _, m in metas if m.get("corpus_sha256")]
    return {
        "schema_version": first["schema_version"],
        "status": "complete" if complete else "partial",
        "interrupted": interrupted,
        "git": {
            "commit": first["git"]["commit"],
            "dirty": any(m["git"].get("dirty") for _, m in metas),
        },
        # The first shard's machine; when shards ran on several machines all are in `machines`.
        "machine": first.get("machine", {}),
        "machines": machines,
        "hosts": hosts,
        "artifacts": artifacts,
        "artifacts_mixed": mixed,
        "matrix": first["matrix"],
        "shard": {"merged": sorted(seen_shards), "count": count, "missing": missing},
        "checks": checks,
        "cells": [c for _, m in metas for c in m.get("cells", [])],
        "cells_done": sum(int(m.get("cells_done", 0)) for _, m in metas),
        "started_at": min(m["started_at"] for _, m in metas),
        "ended_at": max(ended) if ended else None,
        "defaults_sha256": first["defaults_sha256"],
        "corpus_sha256": corpus[0] if corpus else None,
        "verdicts": verdicts,
        "exit_code": EXIT_INTERRUPTED if interrupted else exit_code(verdicts),
        "shards": [
            {
                "dir": str(d),
                "shard": m["shard"],
                "status": m.get("status"),
                "machine": m.get("machine", {}).get("fingerprint_id"),
                "hosts": m.get("hosts", {}),
                "artifacts": {k: v.get("sha256") for k, v in m.get("artifacts", {}).items()},
                "git_dirty": m["git"].get("dirty"),
                "started_at": m.get("started_at"),
                "ended_at": m.get("ended_at"),
                "verdicts": m.get("verdicts", {}),
                # which cells each shard measured, so compare can check machines per cell
                "cells": m.get("cells", []),
            }
            for d, m in metas
        ],
    }


def configure(parser: argparse.ArgumentParser) -> None:
    """Add ``merge``'s arguments to ``parser``."""
    parser.add_argument("dirs", type=Path, nargs="+", metavar="DIR", help="shard run directories")
    parser.add_argument("--out", type=Path, required=True, help="merged run directory to create")


def execute(args: argparse.Namespace) -> int:
    """Merge; exit 0 when merged, 2 when the shards cannot be merged."""
    try:
        merged = merge_runs(args.dirs, args.out)
    except MergeError as exc:
        print(f"tinygpt-harness merge: {exc}", file=sys.stderr)
        return 2
    missing = merged["shard"]["missing"]
    note = f"; missing shards {missing} of {merged['shard']['count']}" if missing else ""
    print(f"merged {len(args.dirs)} runs into {args.out} ({merged['status']}{note})")
    return 0
