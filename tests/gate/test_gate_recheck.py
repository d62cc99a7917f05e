"""signoff --recheck: a stale figure is measured once more, on a real run of the real runner."""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
from pathlib import Path

import pytest
from rich.console import Console

from harness.build import Variant, build_variant, write_manifest
from harness.cli import main
from harness.gate.claim_checks import Finding, ci_table, figure, quantity_table
from harness.gate.claims import Quantity, load_claims
from harness.gate.recheck import RecheckPlan, recheck
from harness.rundir.meta import RUN_FILE
from harness.rundir.reader import load_run
from tests.gate.gate_runs import bench_rows, tree_digest, write_run

# One real native cell timing the side-by-side train-step speedup at tiny, briefly.
MATRIX = """\
name = "recheck-real"
artifacts = ["native"]
presets = ["tiny"]
checks = ["bench"]
[hosts]
native = {}
[check.bench]
curves = ["train_step"]
min_samples = 3
max_samples = 5
warmup = 1
pairs = 10  # 4 pairs once gave a CI of 8.2-15.5 around 8.6: wide enough to overlap a doubled claim
block_ms = 50.0
paired_s = 5.0
budget_s = 10.0
"""
SUBJECT = "train_step:paired"
QUANTITY = Quantity("native", "native", "tiny", "bench", SUBJECT, "speedup", "")


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(manifest, run): the real native library and one real run of MATRIX with it."""
    build = tmp_path_factory.mktemp("build")
    built = build_variant(build, Variant("native-recheck", "native", ()))
    manifest = write_manifest(build, [dataclasses.replace(built, name="native")])
    tmp = tmp_path_factory.mktemp("run")
    (tmp / "m.toml").write_text(MATRIX)
    out = tmp / "run"
    code = main(["run", "--matrix", str(tmp / "m.toml"), "--out", str(out),
                 "--artifacts", str(manifest)])  # fmt: skip
    assert code == 0
    return manifest, out


def _figure(run: Path) -> tuple[float, float, float]:
    rows = load_run(run).rows
    got = figure(quantity_table(rows), ci_table(rows), QUANTITY)
    assert got is not None, "the run measured no side-by-side speedup"
    return got


def _copy(run: Path, to: Path) -> Path:
    """A copy of ``run`` marked as measured from a clean tree (the test's own checkout may be
    dirty; the sign-off fails dirty runs, which is not what these tests are about)."""
    shutil.copytree(run, to)
    meta = json.loads((to / RUN_FILE).read_text())
    meta["git"]["dirty"] = False
    (to / RUN_FILE).write_text(json.dumps(meta))
    return to


def _shifted(run: Path, to: Path, factor: float) -> Path:
    """A copy of ``run`` whose side-by-side speedup (value and CI) is ``factor`` times the
    measured one: what a transient regime of the machine does to one cell's figure."""
    _copy(run, to)
    path = to / "results.csv"
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        fields = reader.fieldnames
        rows = list(reader)
    assert fields is not None
    for r in rows:
        if r["subject"] == SUBJECT and r["metric"].startswith("speedup"):  # value and CI ends
            r["value"] = repr(float(r["value"]) * factor)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return to


def _signoff(tmp: Path, run: Path, manifest: Path, value: float, band: tuple[float, float],
             *extra: str) -> int:  # fmt: skip
    fp = load_run(run).meta.fingerprint_id
    root = tmp / "root"
    root.mkdir(exist_ok=True)
    band = (float(f"{band[0]:.3g}"), float(f"{band[1]:.3g}"))
    (root / "README.md").write_text(f"<!-- claim:sbs -->\n{value:g}x ({band[0]:g}-{band[1]:g})\n")
    (root / "claims.toml").write_text(
        'schema_version = 2\n[scan]\nfiles = ["README.md"]\n[[claim]]\nid = "sbs"\n'
        f'host = "native"\nartifact = "native"\npreset = "tiny"\nsubject = "{SUBJECT}"\n'
        f'metric = "speedup"\nvalue = {value:g}\nband = [{band[0]:g}, {band[1]:g}]\n'
        'published = { file = "README.md", marker = "claim:sbs" }\n'
        f'provenance = {{ commit = "0000000", fingerprint = "{fp}", runs = 3, '
        'band_basis = "runs" }\n'
    )
    args = ["signoff", str(run), "--claims", str(root / "claims.toml"), "--root", str(root)]
    return main([*args, "--artifacts", str(manifest), *extra])


@pytest.mark.slow
def test_a_transient_outlier_is_rechecked_into_its_band(
    tmp_path: Path, real: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """A run whose figure a transient moved 20x, 5x past a band around the true figure: stale
    without --recheck; with it, the cell is measured again beside the run (the run untouched),
    lands in the band, and the sign-off passes saying both measurements."""
    manifest, measured = real
    v = _figure(measured)[0]
    # The recheck measures for real, so the band must hold the figure whatever the machine's
    # regime when the recheck runs: this VM's regimes move a tiny cell's figure up to ~1.7x,
    # and under a load average of ~14 a recheck's CI reached 5.6x its centre (s45 flake audit:
    # 3 of 21 failed with a 1.6x band and a 3x shift). A 4x band and a 20x shift keep the
    # test about the recheck's logic (stale in the run, in band when measured again), with
    # the run's own CI, 20x shifted, still far outside the band.
    run = _shifted(measured, tmp_path / "run", 20.0)
    band = (v / 4, v * 4)
    assert _signoff(tmp_path, run, manifest, round(v, 3), band) == 1
    assert "stale  sbs" in capsys.readouterr().out
    before = tree_digest(run)
    code = _signoff(tmp_path, run, manifest, round(v, 3), band, "--recheck")
    out = capsys.readouterr().out
    assert code == 0, out
    assert "rechecked  sbs: published" in out and "its recheck (run.recheck-1) measures" in out
    assert "the run's own figure missed the band" in out
    assert "1 rechecked: out of band in the run, in band when measured again" in out
    assert tree_digest(run) == before
    assert _figure(tmp_path / "run.recheck-1")  # the recheck's own rows, kept beside the run


@pytest.mark.slow
def test_four_times_the_true_figure_stays_stale_after_its_recheck(
    tmp_path: Path, real: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """A published number 50x the run's figure (band +-15 %) misses in the run and in the
    recheck: stale, exit 1, with the recheck's measurement in the message."""
    manifest, measured = real
    v = _figure(measured)[0]
    run = _copy(measured, tmp_path / "run")
    # 50x: "the true figure" here is the fixture run's, and this VM's regimes move a tiny
    # cell's figure by up to ~1.7x between runs. At 2x, a README 2 run on s35's VM (Intel Xeon,
    # 02d4e908ec7d) measured 9.42 in the fixture and 15.72 in the recheck, inside 2 * 9.42's
    # band, and the claim was rightly rechecked into it; at 4x, under a load average of ~14
    # (s45 flake audit, 2 of 11 failed), a recheck measured 12.55 with a CI of 11.5-70.6,
    # overlapping the band 49.9-66 around 4x the fixture's figure. The recheck logic was not at
    # fault either time.
    wrong = round(50 * v, 3)
    code = _signoff(tmp_path, run, manifest, wrong, (wrong / 1.15, wrong * 1.15), "--recheck")
    out = capsys.readouterr().out
    assert code == 1, out
    assert "stale  sbs: published" in out and "rechecked in run.recheck-1: sbs" in out
    assert "rechecked  sbs" not in out


def _stale(claim: str, point: str) -> Finding:
    return Finding(claim, "stale", f"{claim}: the CI and the band do not overlap", point)


def _two_cell_claims(tmp_path: Path) -> Path:
    text = 'schema_version = 2\n[scan]\nfiles = ["README.md"]\n'
    for name, artifact in (("a", "native"), ("b", "wasm32")):
        text += (
            f'[[claim]]\nid = "{name}"\nhost = "wasmtime"\nartifact = "{artifact}"\n'
            'preset = "small"\nsubject = "train_step"\nmetric = "median_ns"\nvalue = 1\n'
            f'band = [0.5, 2]\npublished = {{ file = "README.md", marker = "claim:{name}" }}\n'
            "machine_independent = true\n"
        )
    path = tmp_path / "claims.toml"
    path.write_text(text)
    return path


def test_more_stale_cells_than_allowed_are_not_rechecked(tmp_path: Path) -> None:
    """Stale figures in more cells than --recheck-cells: a shift, not a transient; nothing is
    rerun, each stays stale and says why."""
    rows = [*bench_rows([5e6] * 3, "wasmtime", "native", "small", "train_step"),
            *bench_rows([5e6] * 3, "wasmtime", "wasm32", "small", "train_step")]  # fmt: skip
    run = load_run(write_run(tmp_path / "run", rows))
    findings = [_stale("a", ""), _stale("a", "small"), _stale("b", "small")]
    findings[0] = dataclasses.replace(findings[0], status="pass")
    got = recheck(run, load_claims(_two_cell_claims(tmp_path)), findings,
                  RecheckPlan(max_cells=1), Console(file=None, quiet=True))  # fmt: skip
    assert [f.status for f in got] == ["pass", "stale", "stale"]
    assert all("not rechecked: 2 stale figures in 2 cells, more than 1" in f.message
               for f in got[1:])  # fmt: skip
    assert not (tmp_path / "run.recheck-1").exists()


def test_a_recheck_of_another_build_is_refused_and_stays_stale(
    tmp_path: Path, real: tuple[Path, Path]
) -> None:
    """The manifest at hand is not the build the run measured: no recheck (it would time
    another binary); the figure stays stale, and says so."""
    manifest, _ = real
    rows = bench_rows([5e6] * 3, "wasmtime", "native", "small", "train_step")
    run = load_run(write_run(tmp_path / "run", rows))
    got = recheck(run, load_claims(_two_cell_claims(tmp_path)), [_stale("a", "small")],
                  RecheckPlan(manifest=manifest), Console(quiet=True))  # fmt: skip
    assert got[0].status == "stale"
    assert "no recheck:" in got[0].message and "build the run's commit first" in got[0].message


def test_recheck_with_record_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--recheck measures a sign-off's stale figures; with --record it is refused (exit 2)."""
    claims = _two_cell_claims(tmp_path)
    runs = [str(tmp_path / f"r{k}") for k in range(3)]
    assert main(["signoff", *runs, "--claims", str(claims), "--record", "--recheck"]) == 2
    assert "--recheck" in capsys.readouterr().err
