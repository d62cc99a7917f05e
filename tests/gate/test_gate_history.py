"""history: the store (round trip, v0 migration, refusals), change points, plots and page."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from harness.cli import main
from harness.gate.changepoint import detect_steps
from harness.gate.errors import GateInputError
from harness.gate.series import build_series
from harness.gate.store import STORE_SCHEMA_VERSION, add_run, entry_path, iter_entries, read_entry
from harness.rundir.reader import load_run
from tests.gate.gate_runs import bench_rows, noisy, tree_digest, write_run

FIXTURES = Path(__file__).parent / "fixtures"


def commit(i: int) -> str:
    """A fake 40-hex commit id for position ``i``."""
    return f"{i:02d}" + "c" * 38


def history_runs(tmp_path: Path, n: int, step_at: int, ratio: float) -> list[Path]:
    """``n`` runs at successive commits; matmul gets ``ratio`` times slower from ``step_at``."""
    runs = []
    for i in range(n):
        scale = ratio if i >= step_at else 1.0
        rows = [
            *bench_rows(noisy(1000.0 * scale, 15, seed=i, cv=0.01)),
            *bench_rows(noisy(4000.0, 15, seed=100 + i, cv=0.01), subject="op:gelu_forward"),
        ]
        start = f"2026-01-{i + 1:02d}T00:00:00Z"
        runs.append(write_run(tmp_path / f"run{i}", rows, commit=commit(i), start=start))
    return runs


def test_store_round_trip_is_deterministic(tmp_path: Path) -> None:
    """A stored run reads back with its provenance and medians; re-adding gives the same bytes."""
    (run,) = history_runs(tmp_path, 1, 99, 1.0)
    store = tmp_path / "store"
    path = add_run(store, load_run(run))
    assert path == entry_path(store, "fp-test-machine", commit(0), "gate-test")
    first = path.read_bytes()
    add_run(store, load_run(run))
    assert path.read_bytes() == first
    entry = read_entry(path)
    assert entry.commit == commit(0) and entry.fingerprint_id == "fp-test-machine"
    medians = {p.subject: p.value for p in entry.points if p.metric == "median_ns"}
    assert medians["op:matmul_forward"] == pytest.approx(1000.0, rel=0.02)
    assert json.loads(gzip.decompress(first))["schema_version"] == STORE_SCHEMA_VERSION


def test_v0_file_is_migrated() -> None:
    """The v0 fixture (results keyed 'cell::subject::x') migrates to v1 points field by field."""
    entry = read_entry(FIXTURES / "history-v0.json.gz")
    assert entry.fingerprint_id == "fp-legacy" and entry.matrix == "ci"
    assert entry.start == "2025-12-01T00:00:00Z"
    by = {(p.cell, p.subject, p.x_name, p.x, p.metric): (p.value, p.unit) for p in entry.points}
    assert by == {
        ("native/native/small", "op:matmul_forward", "n", "256", "median_ns"): (1000.0, "ns"),
        ("native/native/small", "op:matmul_forward", "n", "256", "gflops"): (3.5, ""),
        ("wasmtime/wasm32/small", "train_step", "", "", "median_ns"): (2500000.0, "ns"),
    }


def test_newer_schema_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A store file from a newer harness exits 2 naming the file and schema_version."""
    bad = tmp_path / "store" / "fp" / "x-ci.json.gz"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(gzip.compress(json.dumps({"schema_version": 7, "points": []}).encode()))
    assert main(["history", "--store", str(tmp_path / "store")]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "'schema_version'" in err and "newer harness (schema v7)" in err


def test_corrupt_store_file_refused(tmp_path: Path) -> None:
    """A truncated gzip in the store is a GateInputError naming the file."""
    (run,) = history_runs(tmp_path, 1, 99, 1.0)
    path = add_run(tmp_path / "store", load_run(run))
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(GateInputError, match="corrupt or truncated history file"):
        list(iter_entries(tmp_path / "store"))


def test_step_detected_plotted_and_paged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 10 % step at commit 5 of 9 is listed with its size; PNG, SVG and history.html exist."""
    runs = history_runs(tmp_path, 9, step_at=5, ratio=1.10)
    before = [tree_digest(r) for r in runs]
    store, out = tmp_path / "store", tmp_path / "report"
    args = ["history", "--store", str(store), "--out", str(out)]
    for r in runs:
        args += ["--add", str(r)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert commit(5)[:12] in printed and "op:matmul_forward@n=256" in printed
    assert "gelu" not in printed.split("change points")[1]  # the flat series has no step
    page = (out / "history.html").read_text()
    assert commit(5)[:12] in page and "+10." in page
    pngs = sorted((out / "history").rglob("*.png"))
    svgs = sorted((out / "history").rglob("*.svg"))
    assert len(pngs) == len(svgs) == 2
    svg = next(p for p in svgs if "matmul" in p.name).read_text()
    assert "median_ns [µs]" in svg and "native 1.0" in svg and "fp-test-machine" in svg
    assert [tree_digest(r) for r in runs] == before


def test_history_reads_a_store_with_v0_files(tmp_path: Path) -> None:
    """A store holding a v0 file and a v1 file renders without error."""
    store = tmp_path / "store"
    (store / "fp-legacy").mkdir(parents=True)
    shutil.copy(FIXTURES / "history-v0.json.gz", store / "fp-legacy" / "old-ci.json.gz")
    (run,) = history_runs(tmp_path, 1, 99, 1.0)
    assert (
        main(["history", "--store", str(store), "--add", str(run), "--out", str(tmp_path / "o")])
        == 0
    )
    assert {e.fingerprint_id for e in iter_entries(store)} == {"fp-legacy", "fp-test-machine"}


def test_flat_noise_has_no_steps() -> None:
    """Thirty commits of 1 % noise give no change point."""
    values = list(np.random.default_rng(3).normal(100.0, 1.0, 30))
    assert detect_steps(values, [str(i) for i in range(30)]) == []


def test_step_size_and_commit() -> None:
    """A 20 % drop at commit 12 is one step of about -20 % starting at that commit."""
    rng = np.random.default_rng(4)
    values = [*rng.normal(100.0, 1.0, 12), *rng.normal(80.0, 0.8, 10)]
    (step,) = detect_steps(values, [f"c{i}" for i in range(22)])
    assert step.commit == "c12" and step.percent == pytest.approx(-20.0, abs=2.0)


def test_history_bad_run_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--add of a directory with a truncated run.json exits 2 naming the file."""
    (run,) = history_runs(tmp_path, 1, 99, 1.0)
    (run / "run.json").write_text("{")
    assert main(["history", "--store", str(tmp_path / "s"), "--add", str(run)]) == 2
    assert "run.json: corrupt or truncated JSON" in capsys.readouterr().err


def _project_run(directory: Path, sha: str, value: float, start: str) -> Path:
    """A run at commit(0) whose artifact ``mine`` lies outside the harness checkout (a project's
    own .so, build ``sha``)."""
    artifacts = {"mine": {"sha256": sha, "target": "x86_64-linux-gnu", "in_checkout": False}}
    rows = bench_rows(noisy(value, 15, seed=1, cv=0.01), artifact="mine")
    return write_run(directory, rows, commit=commit(0), start=start,
                     extra={"artifacts": artifacts})  # fmt: skip


def test_two_builds_of_a_project_at_one_harness_commit_are_two_points(tmp_path: Path) -> None:
    """A project's own binary, rebuilt slower, measured at the same harness commit: two store
    entries and two points (labelled commit+build), not the second replacing the first under
    the first's label; re-adding one build replaces only its own entry."""
    store = tmp_path / "store"
    same = _project_run(tmp_path / "same", "a" * 64, 1000.0, "2026-01-01T00:00:00Z")
    slow = _project_run(tmp_path / "slow", "b" * 64, 1600.0, "2026-01-02T00:00:00Z")
    paths = {add_run(store, load_run(same)), add_run(store, load_run(slow))}
    assert len(paths) == 2 and add_run(store, load_run(slow)) in paths
    entries = list(iter_entries(store))
    assert [e.commit for e in entries] == [commit(0)] * 2
    builds = [e.build for e in entries]
    assert len(set(builds)) == 2 and all(len(b) == 8 for b in builds)
    (series,) = [s for s in build_series(entries) if s.key.subject == "op:matmul_forward"]
    assert series.commits == tuple(f"{commit(0)[:12]}+{b}" for b in builds)
    assert series.values[1] / series.values[0] == pytest.approx(1.6, rel=0.05)


def test_a_v1_entry_migrates_with_no_build(tmp_path: Path) -> None:
    """A v1 store file (before builds were part of an entry's key) reads as build ""."""
    (run,) = history_runs(tmp_path, 1, 99, 1.0)
    path = add_run(tmp_path / "store", load_run(run))
    data = json.loads(gzip.decompress(path.read_bytes()))
    del data["build"]
    path.write_bytes(gzip.compress(json.dumps({**data, "schema_version": 1}).encode()))
    entry = read_entry(path)
    assert entry.build == "" and entry.version == commit(0)
