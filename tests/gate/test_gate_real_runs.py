"""compare and signoff on real runs of the real runner: native kernels, bench check, adaptive."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from gate_runs import tree_digest

from harness.build import Variant, build_variant, write_manifest
from harness.cli import main
from harness.gate.rundir import load_run

MATRIX = """\
name = "gate-real"
artifacts = ["native"]
presets = ["tiny"]
checks = ["bench"]
[hosts]
native = {}
[check.bench]
curves = ["ops"]
ops = ["matmul_forward"]
sizes = { matmul_forward = [32] }
min_samples = %d
max_samples = %d
warmup = 1
reference = false
ops_once = false  # every run of this process measures its op curve (the default skips repeats)
budget_s = 5.0
[thresholds]
alpha = 0.01
min_effect = %s
"""


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real native library, built from artifacts/src, named 'native' in its own manifest."""
    out = tmp_path_factory.mktemp("build")
    built = build_variant(out, Variant("native-gate", "native", ()))
    return write_manifest(out, [dataclasses.replace(built, name="native")])


def real_run(tmp: Path, name: str, manifest: Path, samples: int, min_effect: str) -> Path:
    """One real run of the native matmul curve into ``tmp/name``."""
    matrix = tmp / f"{name}.toml"
    matrix.write_text(MATRIX % (samples, samples, min_effect))
    out = tmp / name
    code = main(["run", "--matrix", str(matrix), "--out", str(out), "--artifacts", str(manifest)])
    assert code == 0
    return out


@pytest.mark.slow
def test_two_real_runs_compare_clean(
    tmp_path: Path, manifest: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two real runs of one build on one machine are comparable and exit 0 at a 50 % threshold."""
    base = real_run(tmp_path, "base", manifest, 10, "0.5")
    cand = real_run(tmp_path, "cand", manifest, 10, "0.5")
    assert main(["compare", str(base), str(cand)]) == 0
    out = capsys.readouterr().out
    assert "gate PASS: 0 slower, 0 faster, 1 same, 0 unknown" in out
    assert "missing from CAND" not in out


@pytest.mark.slow
def test_adaptive_reruns_beside_cand(
    tmp_path: Path, manifest: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--adaptive reruns the unknown cell beside CAND, merges its samples, never touches CAND.

    With 3 samples per side the U test cannot reach p < 0.01 and a 0.5 % band is narrower than
    any 3-sample CI, so the first verdict is unknown by construction.
    """
    base = real_run(tmp_path, "base", manifest, 3, "0.005")
    cand = real_run(tmp_path, "cand", manifest, 3, "0.005")
    before = tree_digest(cand), tree_digest(base)
    args = ["compare", str(base), str(cand), "--markdown", str(tmp_path / "g.md")]
    assert main(args) == 0
    assert "| unknown |" in (tmp_path / "g.md").read_text()
    code = main([*args, "--adaptive", "--max-rounds", "1", "--samples", "12",
                 "--artifacts", str(manifest)])  # fmt: skip
    rerun = tmp_path / "cand.adaptive-1"
    assert load_run(rerun).meta.fingerprint_id == load_run(cand).meta.fingerprint_id
    md = (tmp_path / "g.md").read_text()
    row = next(line for line in md.splitlines() if "op:matmul_forward@n=32" in line)
    assert "| 3/15 |" in row  # 3 samples of CAND plus 12 from the rerun
    assert code == (1 if "**slower**" in row else 0)
    assert (tree_digest(cand), tree_digest(base)) == before


@pytest.mark.slow
def test_adaptive_refuses_another_build(
    tmp_path: Path, manifest: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--adaptive with a manifest whose binary is not CAND's build exits 2 and reruns nothing."""
    base = real_run(tmp_path, "base", manifest, 3, "0.005")
    cand = real_run(tmp_path, "cand", manifest, 3, "0.005")
    other = tmp_path / "other" / "manifest.json"
    other.parent.mkdir()
    data = json.loads(manifest.read_text())
    data["artifacts"][0]["sha256"] = "0" * 64
    data["artifacts"][0]["path"] = str(manifest.parent / data["artifacts"][0]["path"])
    other.write_text(json.dumps(data))
    code = main(["compare", str(base), str(cand), "--adaptive", "--artifacts", str(other)])
    assert code == 2
    assert "build CAND's commit first" in capsys.readouterr().err
    assert not (tmp_path / "cand.adaptive-1").exists()
