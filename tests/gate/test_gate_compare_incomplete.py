"""compare: a run that is not whole is bad input (exit 2), never a silent pass.

An interrupted BASE, a results.csv cut at a line boundary (run.json planned cells that have
no verdict row) and an empty results.csv each used to pass or to fail as a regression.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main
from harness.rundir.meta import RUN_FILE
from harness.rundir.rows import RESULTS_FILE, Row
from tests.gate.gate_runs import bench_rows, noisy, verdict_row, write_run

CELLS = ["native/native/small", "wasmtime/wasm32/small"]


def cell_rows(seed: int, cells: tuple[str, ...] = ("native", "wasmtime")) -> list[Row]:
    """Bench rows and a passing verdict row for each of ``cells`` (by host)."""
    rows: list[Row] = []
    for i, host in enumerate(cells):
        artifact = "native" if host == "native" else "wasm32"
        rows += bench_rows(noisy(1000.0, 20, seed + i), host=host, artifact=artifact)
        rows.append(verdict_row("cell", "pass", host=host, artifact=artifact))
    return rows


def run(path: Path, rows: list[Row], **meta: Any) -> Path:
    """A run whose run.json plans :data:`CELLS`, with ``meta`` over the complete defaults."""
    return write_run(path, rows, extra={"cells": CELLS, **meta})


def test_whole_runs_still_pass(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Both runs finished every planned cell: the gate decides as before (exit 0)."""
    base = run(tmp_path / "base", cell_rows(1))
    cand = run(tmp_path / "cand", cell_rows(100))
    assert main(["compare", str(base), str(cand)]) == 0
    assert "gate PASS" in capsys.readouterr().out


@pytest.mark.parametrize("status", ["interrupted", "running", "failed", "partial"])
def test_incomplete_base_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], status: str
) -> None:
    """A BASE stopped after one cell: exit 2 naming BASE, its status, the cells not run, and
    how to finish it (it used to pass, comparing only the cell it had)."""
    base = run(tmp_path / "base", cell_rows(1, ("native",)), status=status, interrupted=True)
    cand = run(tmp_path / "cand", cell_rows(100))
    assert main(["compare", str(base), str(cand)]) == 2
    captured = capsys.readouterr()
    assert "gate PASS" not in captured.out
    err = captured.err
    assert err.count("\n") == 1 and f"compare: {base}: BASE is incomplete" in err
    assert f"run status {status!r}, not 'complete'" in err
    assert "1 cells not run (wasmtime/wasm32/small)" in err
    if status == "partial":
        assert "merge its missing shards" in err
    else:
        assert f"run --resume {base} --matrix matrices/gate-test.toml" in err


def test_incomplete_cand_still_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An interrupted CAND stays the gate's failure (exit 1, its lost cell missing)."""
    base = run(tmp_path / "base", cell_rows(1))
    cand = run(tmp_path / "cand", cell_rows(100, ("native",)), status="interrupted")
    assert main(["compare", str(base), str(cand)]) == 1
    assert "1 missing from CAND" in capsys.readouterr().out


def cut_at_line(path: Path, keep: int) -> None:
    """Keep the first ``keep`` lines of ``path``: a copy cut at a line boundary."""
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:keep]))


@pytest.mark.parametrize("side", ["base", "cand"])
def test_results_cut_at_a_line_boundary_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], side: str
) -> None:
    """run.json says complete, the second cell's rows are gone: exit 2 naming results.csv and
    the cell without a verdict (BASE used to pass on the first cell alone)."""
    runs = {s: run(tmp_path / s, cell_rows(seed)) for s, seed in (("base", 1), ("cand", 100))}
    target = runs[side] / RESULTS_FILE
    cut_at_line(target, 1 + 21 + 1 + 5)  # header, cell 1's samples, median, verdict; 5 of cell 2
    assert main(["compare", str(runs["base"]), str(runs["cand"])]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"compare: {target}: " in err
    assert "1 cells not run (wasmtime/wasm32/small)" in err
    assert "run.json says the run is complete" in err


def test_report_and_compare_share_the_not_run_cells(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The report's headline names the same cells not run as compare (one owner)."""
    base = run(tmp_path / "base", cell_rows(1, ("native",)))
    cand = run(tmp_path / "cand", cell_rows(100))
    assert main(["compare", str(base), str(cand)]) == 2
    said = capsys.readouterr().err
    assert main(["report", str(base), "--out", str(tmp_path / "rep")]) == 0
    summary = (tmp_path / "rep" / "summary.md").read_text()
    assert "1 cells not run (wasmtime/wasm32/small)" in said
    assert "1 cells not run (wasmtime/wasm32/small)" in summary


@pytest.mark.parametrize("side", ["base", "cand"])
def test_empty_results_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], side: str
) -> None:
    """A 0-byte results.csv on either side is a cut file: exit 2 naming it (it was exit 1,
    "NOTHING COMPARED", which reads as a regression)."""
    runs = {s: write_run(tmp_path / s, cell_rows(seed)) for s, seed in (("base", 1), ("cand", 9))}
    target = runs[side] / RESULTS_FILE
    target.write_bytes(b"")
    assert main(["compare", str(runs["base"]), str(runs["cand"])]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"compare: {target}: empty" in err
    assert json.loads((runs[side] / RUN_FILE).read_text())["status"] == "complete"


def test_report_base_incomplete_gate_not_decided(tmp_path: Path) -> None:
    """``report CAND --base BASE`` decides the gate as compare does: an interrupted BASE is
    headlined as not decided, not as a pass."""
    base = run(tmp_path / "base", cell_rows(1, ("native",)), status="interrupted")
    cand = run(tmp_path / "cand", cell_rows(100))
    out = tmp_path / "rep"
    assert main(["report", str(cand), "--base", str(base), "--out", str(out)]) == 0
    summary = (out / "summary.md").read_text()
    assert "GATE NOT DECIDED" in summary and "BASE is incomplete" in summary
    assert "gate PASS" not in summary
