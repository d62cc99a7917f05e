"""End to end through the real CLI: the native and wasmtime hosts run the smoke check.

Uses artifacts/build when its manifest is fresh, else builds the three artifacts into a
temporary directory first (zig, ~half a minute).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.build import DEFAULT_OUT, MANIFEST, build_all, manifest_is_fresh
from harness.cli import main
from harness.rundir.meta import RUN_FILE
from harness.rundir.reader import read_rows
from harness.rundir.rows import RESULTS_FILE

MATRIX = """\
name = "e2e"
artifacts = ["wasm32", "wasm64", "native"]
presets = ["tiny", "small"]
checks = ["smoke"]
timeout_s = 120
[hosts]
native = {}
wasmtime = {}
"""


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh artifact manifest: the repo's build if current, else a new build."""
    if manifest_is_fresh(DEFAULT_OUT):
        return DEFAULT_OUT / MANIFEST
    out = tmp_path_factory.mktemp("build")
    build_all(out)
    return out / MANIFEST


@pytest.mark.slow
def test_sharded_run_and_merge_on_native_and_wasmtime(tmp_path: Path, manifest: Path) -> None:
    """Two shards via the CLI, then merge: smoke passes where the host loads the artifact,
    the rest is incompatible with the host's reason, and every exit code is 0."""
    m = tmp_path / "e2e.toml"
    m.write_text(MATRIX)
    shards = []
    for k in (1, 2):
        out = tmp_path / f"shard{k}"
        argv = ["run", "--matrix", str(m), "--out", str(out), "--artifacts", str(manifest)]
        assert main([*argv, "--shard", f"{k}/2"]) == 0
        shards.append(str(out))
    merged = tmp_path / "merged"
    assert main(["merge", *shards, "--out", str(merged)]) == 0

    rows = list(read_rows(merged / RESULTS_FILE))
    verdicts = {r.cell: r for r in rows if r.check == "cell" and r.subject == "verdict"}
    passing = {f"{h}/{a}/{p}" for h, a in [("native", "native"), ("wasmtime", "wasm32"),
               ("wasmtime", "wasm64")] for p in ("tiny", "small")}  # fmt: skip
    assert {c for c, r in verdicts.items() if r.status == "pass"} == passing
    incompatible = {c: r.detail for c, r in verdicts.items() if r.status == "incompatible"}
    assert set(incompatible) == {
        "native/wasm32/tiny", "native/wasm32/small", "native/wasm64/tiny",
        "native/wasm64/small", "wasmtime/native/tiny", "wasmtime/native/small",
    }  # fmt: skip
    assert all(d.startswith("cell:load: ") and len(d) > 20 for d in incompatible.values())
    smoke = [r for r in rows if r.check == "smoke"]
    assert len(smoke) == 5 * len(passing) and all(r.status == "pass" for r in smoke)
    assert {r.subject for r in smoke} == {
        "op:matmul_forward", "train_step:loss", "train_step:grad_norm", "train_step:update",
        "bounds",
    }  # fmt: skip
    assert all(r.host_version for r in smoke)

    meta = json.loads((merged / RUN_FILE).read_text())
    assert meta["status"] == "complete" and meta["exit_code"] == 0
    assert set(meta["hosts"]) == {"native", "wasmtime"}
    assert meta["verdicts"] == {"error": 0, "fail": 0, "incompatible": 6, "skipped": 0, "pass": 6}


BENCH_MATRIX = """\
name = "bench-twice"
artifacts = ["native"]
presets = ["tiny"]
checks = ["bench"]
timeout_s = 120
[hosts]
native = {}
[check.bench]
curves = ["ops", "train_step"]
ops = ["matmul_forward"]
sizes = { matmul_forward = [32] }
min_samples = 5
max_samples = 5
budget_s = 5.0
"""


@pytest.mark.slow
def test_two_runs_in_one_process_each_record_their_baselines(
    tmp_path: Path, manifest: Path
) -> None:
    """A second run in the same process (as compare --adaptive does) records its own numpy
    reference rows and op curve instead of assuming the first run's."""
    m = tmp_path / "bench.toml"
    m.write_text(BENCH_MATRIX)
    for name in ("first", "second"):
        argv = ["run", "--matrix", str(m), "--out", str(tmp_path / name)]
        assert main([*argv, "--artifacts", str(manifest)]) == 0
        rows = list(read_rows(tmp_path / name / RESULTS_FILE))
        assert any(r.host == "numpy" and r.subject == "train_step" for r in rows), name
        assert any(r.subject == "op:matmul_forward" and r.host == "native" for r in rows), name
        assert any(r.subject == "train_step" and r.metric == "speedup" for r in rows), name
