"""``export --format pytest-benchmark``: the JSON that pytest-benchmark itself reads.

pytest-benchmark is the judge: its ``Stats`` class recomputes every field from the same data,
and its ``compare`` command loads two exported files and renders (and CSV-dumps) them.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pytest_benchmark.stats import Stats

from harness.cli import main
from harness.export import benchmark_stats
from tests.gate.gate_runs import bench_rows, noisy, verdict_row, write_run

RUN_SMALL = Path(__file__).resolve().parents[1] / "bench" / "fixtures" / "run_small"


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 30])
def test_stats_match_pytest_benchmarks_own_stats(n: int) -> None:
    """Every stats field equals what pytest_benchmark.stats.Stats computes from the same rounds."""
    data = [float(v) for v in np.random.default_rng(n).lognormal(-9, 0.3, n)]
    theirs = Stats()
    for v in data:
        theirs.update(v)
    ours = benchmark_stats(data)
    for field, value in theirs.as_dict().items():
        expected = value if isinstance(value, str) else pytest.approx(value, rel=1e-12)
        assert ours[field] == expected, field
    assert ours["data"] == data


def _export(run: Path, out: Path) -> dict[str, object]:
    assert main(["export", "--format", "pytest-benchmark", str(run), "-o", str(out)]) == 0
    doc: dict[str, object] = json.loads(out.read_text())
    return doc


def _compare(tmp_path: Path, *files: Path) -> dict[tuple[str, str], tuple[str, float]]:
    """Run ``pytest-benchmark compare FILES`` (its own CLI), one group per benchmark, median
    column; return ``{(group, source): (unit, median)}`` as it printed them."""
    proc = subprocess.run(
        [sys.executable, "-m", "pytest_benchmark", "compare", *map(str, files),
         "--columns=median", "--group-by=fullname"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    # it only warns (and skips the file) when a file does not load: that must not happen
    assert "Failed to load" not in proc.stdout + proc.stderr
    found: dict[tuple[str, str], tuple[str, float]] = {}
    group = unit = ""
    for line in proc.stdout.splitlines():
        if m := re.match(r" benchmark '(.+)': \d+ tests", line):
            group = m.group(1)
        elif m := re.match(r"Name \(time in (\w+)\)", line):
            unit = m.group(1)
        # the source is the file's name, shortened by what the files' paths share
        elif m := re.match(r"(\S+) \((?:\S*/)?(\w+)\)\s+([\d,.]+)", line):
            found[(group, m.group(2))] = (unit, float(m.group(3).replace(",", "")))
    assert found, proc.stdout
    return found


SCALE = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}


def test_compare_reads_two_exported_runs(tmp_path: Path) -> None:
    """BASE and CAND exported, then compared by pytest-benchmark: every measurement of both is
    there under its cell, with the medians the harness measured."""
    base_s, cand_s = noisy(1000.0, 12, seed=1), noisy(2000.0, 12, seed=2)
    wasm = noisy(5000.0, 7, seed=3)
    for name, samples in (("base", base_s), ("cand", cand_s)):
        rows = [*bench_rows(samples), *bench_rows(wasm, "wasmtime", "wasm32", x=64.0)]
        write_run(tmp_path / name, [*rows, verdict_row("cell", "pass")])
        _export(tmp_path / name, tmp_path / f"{name}.json")
    got = _compare(tmp_path, tmp_path / "base.json", tmp_path / "cand.json")
    native = "native/native/small::op:matmul_forward[n=256]"
    wasm_key = "wasmtime/wasm32/small::op:matmul_forward[n=64]"
    assert set(got) == {(g, s) for g in (native, wasm_key) for s in ("base", "cand")}
    for source, samples in (("base", base_s), ("cand", cand_s)):
        unit, median = got[(native, source)]
        # it prints 4 decimals in its chosen unit
        assert median * SCALE[unit] == pytest.approx(np.median(samples) * 1e-9, rel=1e-5)
    unit, median = got[(wasm_key, "cand")]
    assert median * SCALE[unit] == pytest.approx(np.median(wasm) * 1e-9, rel=1e-5)


def test_a_recorded_run_exports_every_measurement_with_its_provenance(tmp_path: Path) -> None:
    """The recorded run_small fixture: one benchmark per measured curve point, each with the
    run's host version, artifact sha256 and the harness's own median; pytest-benchmark loads it."""
    doc = _export(RUN_SMALL, tmp_path / "small.json")
    benchmarks = doc["benchmarks"]
    assert isinstance(benchmarks, list) and len(benchmarks) > 10
    for b in benchmarks:
        info = b["extra_info"]
        assert b["fullname"] == f"{info['cell']}::{b['name']}"
        assert b["stats"]["rounds"] == len(b["stats"]["data"]) >= 1
        assert info["harness_status"] in ("measured", "noisy")
        # the harness's median is the same figure pytest-benchmark's median shows (ns vs s)
        assert info["harness_median_ns"] == pytest.approx(b["stats"]["median"] * 1e9, rel=1e-9)
    commit = doc["commit_info"]
    assert isinstance(commit, dict) and commit["id"].startswith("58dc7c7")
    shown = _compare(tmp_path, tmp_path / "small.json")
    assert {g for g, _ in shown} == {b["fullname"] for b in benchmarks}


def test_a_directory_that_is_not_a_run_is_exit_2_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """export of an empty directory, or of a missing one: exit 2, one line naming it."""
    for target in (tmp_path, tmp_path / "missing"):
        assert main(["export", "--format", "pytest-benchmark", str(target)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("tinygpt-harness export: ")
        assert str(target) in err
