"""compare and signoff on real runs of the real runner: native kernels, bench check, adaptive."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import pytest

from harness.build import Variant, build_variant, write_manifest
from harness.cli import main
from harness.gate.calibrate import load_instance, matmul_rows
from harness.rundir.reader import load_run
from harness.rundir.rows import Row
from harness.timing import TimingPolicy, measure
from tests.gate.gate_runs import NATIVE_BENCH_MATRIX as MATRIX
from tests.gate.gate_runs import bench_rows, tree_digest, write_run

# A 15 % band: A/A of a real kernel on a shared box drifts a few percent between runs.
LOOSE = Path(__file__).parent / "fixtures" / "loose-thresholds.toml"


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
    """Two real runs of one build on one machine are comparable: compare refuses nothing, finds
    every subject in both, and fails, if at all, only on a timing verdict.

    The timing verdict itself is not asserted here. Two separately measured runs on a shared VM
    can land in its two speed regimes (docs/measured.md: the same native matmul at 0.375 and
    0.6 ms; in one clean-clone run of this test, n=32 measured 2.93 vs 5.66 µs, 1.93x, beyond
    even a 50 % threshold), and the unpaired gate's A/A false-alarm rate is a measured figure
    (docs/gate.md), not something one pair can pass or fail. The A/A verdict is asserted where
    it is built to hold: the paired gate (tests/gate/test_gate_paired.py).
    """
    base = real_run(tmp_path, "base", manifest, 10, "0.5")
    cand = real_run(tmp_path, "cand", manifest, 10, "0.5")
    code = main(["compare", str(base), str(cand)])
    out = capsys.readouterr().out
    assert code in (0, 1), out  # 2 would be a refusal: the runs were not comparable
    assert "Measured in BASE, missing from CAND" not in out and "0 missing from CAND" in out
    assert "0 parity/defaults/corpus failures; 0 broken cells" in out
    assert ("gate PASS: 0 slower" in out) == (code == 0), out  # the exit code carries the verdict


@pytest.mark.slow
def test_adaptive_reruns_beside_cand(
    tmp_path: Path, manifest: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--adaptive reruns the unknown cell beside CAND, merges its samples, never touches CAND.

    With 3 samples per side the U test cannot reach p < 0.01, and a band of +-0.001 % cannot
    hold a 3-sample CI, so the first verdict is unknown by construction. (A +-0.5 % band did
    not: on a quiet machine one clean-clone CI run's 3-sample CI was [-0.3 %, +0.4 %], a
    "same" that left --adaptive nothing to rerun. That CI is ~350 times wider than the band,
    width for width.)
    """
    base = real_run(tmp_path, "base", manifest, 3, "0.00001")
    cand = real_run(tmp_path, "cand", manifest, 3, "0.00001")
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
    del data["artifacts"][0]["files"]  # a one-file entry may omit its file list (docs/formats.md)
    other.write_text(json.dumps(data))
    code = main(["compare", str(base), str(cand), "--adaptive", "--artifacts", str(other)])
    assert code == 2
    assert "build CAND's commit first" in capsys.readouterr().err
    assert not (tmp_path / "cand.adaptive-1").exists()


def _timed_run(directory: Path, samples: Sequence[float]) -> Path:
    """A run dir whose one measurement is ``samples`` of the real native matmul."""
    rows = bench_rows(list(samples), host="native", artifact="native", preset="tiny")
    return write_run(directory, rows)


@pytest.mark.slow
def test_real_kernel_slowdown_fails_gate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Real matmul timings with twice the rows in CAND (real extra work) make compare exit 1.

    The injection is the calibration's (docs/gate.md): more rows through the same GEMM loops.
    Twice the work, not 5 %, keeps this a test of the pipeline, not of the gate's power (the
    calibration measures that). Not 25 % either: run alone under 4 busy processes on the
    2-vCPU AMD EPYC VM of s46 (this test's own host, native in-process, and library), the
    unpaired gate rightly abstained on 25 % in 2 of 12 runs (``unknown``, CI [-26%, +102%]),
    and CI's own load can reach that; twice the rows were decided ``slower`` in 12 of 12.
    """
    instance = load_instance("native", tmp_path / "build")
    # 10 rounds of 3 samples, the three workloads interleaved: this VM runs the same code at two
    # speeds in regimes of ms to 100s of ms (docs/measured.md), so timing each workload in one
    # burst let BASE and its A/A twin land in different regimes (a clean-clone run failed so).
    policy = TimingPolicy(min_samples=3, max_samples=3, min_sample_ns=1e6)
    workloads = [matmul_rows(instance, scale) for scale in (1.0, 1.0, 2.0)]
    timed: list[list[float]] = [[], [], []]
    for _ in range(10):
        for samples, workload in zip(timed, workloads, strict=True):
            samples.extend(measure(workload.sampler(instance), policy).samples_ns)
    for workload in workloads:
        workload.release(instance)
    instance.close()
    base = _timed_run(tmp_path / "base", timed[0])
    same = _timed_run(tmp_path / "same", timed[1])
    slow = _timed_run(tmp_path / "slow", timed[2])
    assert main(["compare", str(base), str(slow)]) == 1
    assert "1 slower" in capsys.readouterr().out
    assert main(["compare", str(base), str(same), "--thresholds", str(LOOSE)]) == 0


def sharded_run(tmp: Path, name: str, manifest: Path) -> Path:
    """A real two-cell run made as two shards and merged with ``tinygpt-harness merge``."""
    matrix = tmp / f"{name}.toml"
    matrix.write_text((MATRIX % (10, 10, "0.5")).replace('["tiny"]', '["tiny", "small"]'))
    shards = []
    for k in (1, 2):
        out = tmp / f"{name}-shard{k}"
        assert main(["run", "--matrix", str(matrix), "--out", str(out), "--shard", f"{k}/2",
                     "--artifacts", str(manifest)]) == 0  # fmt: skip
        shards.append(str(out))
    assert main(["merge", *shards, "--out", str(tmp / name)]) == 0
    return tmp / name


@pytest.mark.slow
def test_merged_shards_compare_history_and_signoff(
    tmp_path: Path, manifest: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Merged shard runs are accepted by compare, stored by history, and signed off."""
    base, cand = sharded_run(tmp_path, "base", manifest), sharded_run(tmp_path, "cand", manifest)
    # accepted, not timed equal: two unpaired real runs may land in the VM's two speed regimes
    # (see test_two_real_runs_compare_clean); a refusal (2) or a missing subject would be a bug
    code = main(["compare", str(base), str(cand)])
    out = capsys.readouterr().out
    assert code in (0, 1) and "0 missing from CAND" in out and "0 broken cells" in out, out
    assert ("gate PASS: 0 slower" in out) == (code == 0), out
    assert "native/native/tiny" in out and "native/native/small" in out
    assert main(["history", "--store", str(tmp_path / "store"), "--add", str(cand),
                 "--out", str(tmp_path / "hist")]) == 0  # fmt: skip
    assert (tmp_path / "hist" / "history.html").is_file()
    # The published number is the run's own small/tiny ratio, so the verdict does not hang on
    # speed (the two presets ran in two shards, two processes and two loads of the library; a
    # 32^3 matmul's ratio came out 0.649 and 1.918 in two clean-clone runs). What this test asserts
    # is that merged shards reach signoff and are measured there: the true figure passes, a 10x
    # wrong one is caught.
    ratio = _measured_ratio(load_run(cand).rows, "small", "tiny")
    for published, verdict in ((ratio, "pass"), (ratio * 10, "stale")):
        readme = tmp_path / "README.md"
        text = f"Small over tiny: 1 and {published:.4g}.\n"
        readme.write_text(f"<!-- claim:small-over-tiny -->\n{text}")
        claims = tmp_path / "claims.toml"
        claims.write_text(
            'schema_version = 2\n[[claim]]\nid = "small-over-tiny"\nhost = "native"\n'
            'artifact = "native"\nsubject = "op:matmul_forward"\nmetric = "median_ns"\n'
            'x = 32\nrelative_to = { preset = "tiny" }\nover = "preset"\n'
            f"points = {{ tiny = 1.0, small = {published:.4g} }}\ntolerance = 0.01\n"
            'tolerance_reason = "the published figure is this run\'s own, rounded to 4 digits"\n'
            'published = { file = "README.md" }\nmachine_independent = true\n'
        )
        code = main(["signoff", str(cand), "--claims", str(claims), "--root", str(tmp_path)])
        out = capsys.readouterr().out
        shown = float(f"{published:.4g}")
        said = f"{verdict}  small-over-tiny at preset=small: published {shown:g} "
        assert said in out, out
        if verdict == "stale":
            assert code == 1, out
        else:  # a dirty working tree's run (a developer's) may not sign off; CI's clean one does
            assert code == (1 if load_run(cand).meta.dirty else 0), out


def _measured_ratio(rows: Iterable[Row], preset: str, over: str) -> float:
    """The run's native 32^3 matmul median at ``preset`` over the one at ``over``."""
    medians = {
        r.preset: r.value
        for r in rows
        if r.host == "native" and r.subject == "op:matmul_forward" and r.metric == "median_ns"
        and r.x_value == 32 and r.iteration == -1
    }  # fmt: skip
    return medians[preset] / medians[over]
