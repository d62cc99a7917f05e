"""compare --paired on real builds: BASE and CAND timed side by side in one host."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from rich.console import Console

from harness.artifact import Artifact
from harness.build import Variant, build_variant, write_manifest
from harness.cli import main
from harness.gate.paired import balanced_loader
from harness.gate.paired_gate import PairedSetup, pair_changes
from harness.gate.rundir import load_run
from harness.gate.thresholds import thresholds_from_table
from harness.gate.verdicts import evaluate
from harness.hosts.base import Host, HostCrashed, Instance, Scalar, TimingResult
from tests.gate.gate_runs import (
    NATIVE_BENCH_MATRIX,
    SHA_NATIVE,
    SHA_WASM,
    bench_rows,
    noisy,
    tree_digest,
    write_run,
)

# The real-runs matrix with the overhead curve (host:noop_call, bridge:noop) and a 10 % band:
# the pipeline is under test here, not the gate's power (docs/gate.md, "Calibration").
MATRIX = NATIVE_BENCH_MATRIX.replace('curves = ["ops"]', 'curves = ["ops", "overhead"]').replace(
    "[32]", "[64]"
) % (5, 5, "0.10")


def _manifest(out: Path, defines: tuple[str, ...]) -> Path:
    built = build_variant(out, Variant("native-paired", "native", defines))
    return write_manifest(out, [dataclasses.replace(built, name="native")])


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The real native library, and the same sources built with a 25 % matmul slowdown."""
    clean = _manifest(tmp_path_factory.mktemp("clean"), ())
    slow = _manifest(tmp_path_factory.mktemp("slow"), ("TG_SLOW_MATMUL_FORWARD=25",))
    return clean, slow


def _run(tmp: Path, name: str, manifest: Path) -> Path:
    matrix = tmp / "paired.toml"
    matrix.write_text(MATRIX)
    out = tmp / name
    assert main(["run", "--matrix", str(matrix), "--out", str(out),
                 "--artifacts", str(manifest)]) == 0  # fmt: skip
    return out


@pytest.mark.slow
def test_paired_gate_fails_a_built_slowdown_and_passes_the_same_build(
    tmp_path: Path, builds: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """A build that redoes 25 % of matmul's rows is paired-slower (exit 1); A/A exits 0.

    Nothing in BASE or CAND is written. The bridge round trip is paired too: unpaired, two runs'
    round trips differ by more than 10 % often enough to fail an A/A gate (seen while writing
    this test: +11.9 %, p = 2e-10).
    """
    clean, slow = builds
    base, same, cand = (_run(tmp_path, n, m) for n, m in
                        (("base", clean), ("same", clean), ("cand", slow)))  # fmt: skip
    before = tree_digest(base), tree_digest(cand)
    md = tmp_path / "gate.md"
    # Two builds of one commit are refused by default (same source, other binary): here that is
    # the point, so the override is given, as a bisect of compiler flags would give it.
    code = main(["compare", str(base), str(cand), "--paired", "--base-artifacts", str(clean),
                 "--artifacts", str(slow), "--markdown", str(md),
                 "--allow-cross-machine"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 1
    row = next(line for line in md.read_text().splitlines() if "op:matmul_forward@n=64" in line)
    assert "**slower** (paired)" in row
    assert "| 120/120 |" in row  # slower after round 1, so 2 rounds x 12 blocks x 5 pairs
    assert "3 measurements paired on native" in out
    assert (tree_digest(base), tree_digest(cand)) == before

    code = main(["compare", str(base), str(same), "--paired", "--base-artifacts", str(clean),
                 "--artifacts", str(clean), "--markdown", str(md)])  # fmt: skip
    assert code == 0, capsys.readouterr().out
    row = next(line for line in md.read_text().splitlines() if "op:matmul_forward@n=64" in line)
    assert "(paired)" in row and "slower" not in row


@pytest.mark.slow
def test_paired_gate_refuses_wrong_or_missing_builds(
    tmp_path: Path, builds: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """--paired without BASE's manifest, or with another binary's manifest: exit 2, unmeasured."""
    clean, slow = builds
    base = _run(tmp_path, "base", clean)
    cand = _run(tmp_path, "cand", clean)
    assert main(["compare", str(base), str(cand), "--paired", "--artifacts", str(clean)]) == 2
    assert "--paired: needs --base-artifacts" in capsys.readouterr().err
    code = main(["compare", str(base), str(cand), "--paired", "--base-artifacts", str(slow),
                 "--artifacts", str(clean)])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert "build BASE's commit first" in err and "paired rerun" not in err
    assert main(["compare", str(base), str(cand), "--paired", "--adaptive"]) == 2  # argparse


def test_paired_policy_rejects_empty_sampling(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Zero blocks is bad input (exit 2, before any run is read), not a vacuous pass."""
    run = tmp_path / "r"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({}))
    code = main(["compare", str(run), str(run), "--paired", "--base-artifacts", "m.json",
                 "--blocks", "0"])  # fmt: skip
    assert code == 2
    assert "needs blocks, pairs_per_block, loads, rounds >= 1" in capsys.readouterr().err


class _CrashingHost(Host):
    """A host whose every load dies, as a crashed worker would."""

    name = "native"

    def version(self) -> str:
        return "crash-1"

    def can_load(self, artifact: Artifact) -> str | None:
        return None

    def load(self, artifact: Artifact) -> Instance:
        raise HostCrashed("worker died during load: killed by SIGKILL")


def _manifest_for(directory: Path, shas: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    entries = [{"name": n, "kind": "native" if n == "native" else "wasm", "path": f"{n}.bin",
                "sha256": sha, "ptr_width": 64 if n == "native" else 32, "target": n}
               for n, sha in shas.items()]  # fmt: skip
    (directory / "manifest.json").write_text(json.dumps({"artifacts": entries}))
    return directory / "manifest.json"


def test_a_crashing_host_keeps_recorded_verdicts_and_the_next_cell_goes_on(
    tmp_path: Path,
) -> None:
    """A host that dies during the paired rerun ends that cell's rerun with its cause; the
    recorded verdicts stay, the other cell is still reached (here: an unknown host name)."""
    rows = bench_rows(noisy(1000, 20, 1)) + bench_rows(
        noisy(1000, 20, 2), host="wasmtime", artifact="wasm32"
    )
    slow = bench_rows(noisy(1300, 20, 3)) + bench_rows(
        noisy(1000, 20, 4), host="wasmtime", artifact="wasm32"
    )
    base = load_run(write_run(tmp_path / "b", rows))
    cand = load_run(write_run(tmp_path / "c", slow))
    thresholds = thresholds_from_table({}, "t")
    result = evaluate(base.rows, cand.rows, thresholds)
    manifest = _manifest_for(tmp_path / "m", {"native": SHA_NATIVE, "wasm32": SHA_WASM})
    setup = PairedSetup(manifest, manifest)
    out = pair_changes(base, cand, thresholds, result, setup, Console(quiet=True),
                       hosts={"native": _CrashingHost})  # fmt: skip
    assert [c.comparison for c in out.changes] == [c.comparison for c in result.changes]
    assert out.regressions and out.failed  # the recorded 30 % slowdown still fails the gate
    notes = "\n".join(out.notes)
    assert "native/native/small: paired rerun failed, recorded verdicts kept: HostCrashed" in notes
    assert "wasmtime/wasm32/small: recorded verdicts kept (host 'wasmtime' is not known" in notes


class _RecordingHost(_CrashingHost):
    """Loads succeed (as stand-ins) until the n-th, which raises; records order and closes."""

    def __init__(self, fail_at: int = 0) -> None:
        self.order: list[str] = []
        self.closed: list[str] = []
        self.fail_at = fail_at

    def load(self, artifact: Artifact) -> Instance:
        self.order.append(artifact.name)
        if len(self.order) == self.fail_at:
            raise HostCrashed("died on load")
        host = self

        class _Stub(Instance):
            def call(self, name: str, *args: Scalar) -> Scalar | None:
                return None

            def write(self, ptr: int, data: bytes) -> None: ...

            def read(self, ptr: int, nbytes: int) -> bytes:
                return b""

            def time_calls(self, name: str, args: tuple[Scalar, ...], inner_reps: int,
                           samples: int, warmup: int) -> TimingResult:  # fmt: skip
                raise NotImplementedError

            def bridge_roundtrip_ns(self, n: int) -> tuple[float, ...]:
                return ()

            def close(self) -> None:
                host.closed.append(artifact.name)

        return _Stub()


def test_balanced_loader_alternates_which_build_loads_first() -> None:
    """Loads go B C, C B, B C; a failed load closes what was loaded and raises."""
    base, cand = (Artifact(n, "native", Path(n), n * 8, 64, "x") for n in ("base", "cand"))
    host = _RecordingHost()
    bases, cands = balanced_loader(host, base, cand, 3)()
    assert host.order == ["base", "cand", "cand", "base", "base", "cand"]
    assert len(bases) == len(cands) == 3
    failing = _RecordingHost(fail_at=3)
    with pytest.raises(HostCrashed):
        balanced_loader(failing, base, cand, 3)()
    assert failing.closed == ["base", "cand"]
