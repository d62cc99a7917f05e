"""A run directory's metadata (``run.json``) and the cell-verdict rule, shared by run and merge.

``run.json`` is always replaced atomically (write a temporary file, then rename), so a reader
never sees half a file even if the run is killed while writing it.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from harness.results import RUN_FILE, SCHEMA_VERSION, VERDICTS, Row, Status

# Worst first: a cell's verdict is the worst status among its verdict rows.
SEVERITY: tuple[Status, ...] = ("error", "fail", "incompatible", "skipped", "pass")
FAILING: frozenset[str] = frozenset({"error", "fail"})


class RunDirError(Exception):
    """A run directory is missing, unreadable, or of an unsupported schema."""


def cell_verdict(rows: Iterable[Row]) -> tuple[Status, str]:
    """Return ``(verdict, first cause)`` of a cell's rows.

    The verdict is the worst verdict status present (``pass`` if there are only measurements);
    the cause is the detail of the first row with that status, prefixed by its check and subject.
    A ``skipped`` row (e.g. a bench point past the cell's time budget) does not turn a cell that
    passed its checks into ``skipped``: the cell stays ``pass`` and the cause says what was
    skipped. A cell is ``skipped`` only when nothing in it passed or was measured.
    """
    worst: Status = "pass"
    cause = ""
    passed = False
    skipped_cause = ""
    for row in rows:
        if row.check == "cell" and row.subject == "verdict":
            continue
        passed = passed or row.status in ("pass", "measured", "noisy")
        if row.status not in VERDICTS:
            continue
        where = f"{row.check}:{row.subject}" if row.subject else row.check
        here = f"{where}: {row.detail}" if row.detail else where
        if row.status == "skipped" and not skipped_cause:
            skipped_cause = here
        if SEVERITY.index(row.status) < SEVERITY.index(worst):
            worst = row.status
            cause = here
    if worst == "skipped" and passed:
        return "pass", f"partly skipped: {skipped_cause}"
    return worst, cause if worst != "pass" else ""


def count_verdicts(rows: Iterable[Row]) -> dict[str, int]:
    """Count the cell verdict rows (``check="cell"``, ``subject="verdict"``) by status."""
    counts: Counter[str] = Counter(
        r.status for r in rows if r.check == "cell" and r.subject == "verdict"
    )
    return {v: counts.get(v, 0) for v in SEVERITY}


def exit_code(verdicts: dict[str, int]) -> int:
    """0 when every cell is pass/incompatible/skipped, 1 when any cell failed or errored."""
    return 1 if any(verdicts.get(v, 0) for v in FAILING) else 0


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
    """Atomically replace ``run_dir/run.json`` with ``meta``."""
    path = run_dir / RUN_FILE
    tmp = path.with_name(f".{RUN_FILE}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        json.dump(meta, fh, indent=2, sort_keys=False, default=str)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_run_json(run_dir: Path) -> dict[str, Any]:
    """Read ``run_dir/run.json``; refuses files of a schema version this code does not know."""
    path = run_dir / RUN_FILE
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunDirError(f"{run_dir} is not a run directory: no {RUN_FILE}") from None
    except (OSError, ValueError) as exc:
        raise RunDirError(f"{path}: cannot read: {exc}") from None
    if not isinstance(meta, dict):
        raise RunDirError(f"{path}: expected a JSON object")
    version = meta.get("schema_version")
    if version != SCHEMA_VERSION:
        raise RunDirError(
            f"{path}: schema_version {version!r}, this harness reads {SCHEMA_VERSION}"
        )
    return meta


def flat_meta(data: dict[str, Any]) -> dict[str, Any]:
    """A run.json's provenance under flat keys, whichever layout wrote it.

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
