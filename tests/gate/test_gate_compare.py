"""compare: exit codes, refusals, bad input, and that BASE and CAND are never modified."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli import main
from harness.rundir.meta import RUN_FILE
from harness.rundir.rows import Row
from tests.gate.gate_runs import bench_rows, noisy, tree_digest, verdict_row, write_run


def clean_rows(seed: int, matmul_scale: float = 1.0, cv: float = 0.01) -> list[Row]:
    """Two bench cells plus passing verdicts; ``matmul_scale`` slows one kernel in one cell."""
    return [
        *bench_rows(noisy(1000.0 * matmul_scale, 20, seed, cv)),
        *bench_rows(noisy(5000.0, 20, seed + 1, cv), subject="op:layernorm_forward", x=64),
        *bench_rows(noisy(3000.0, 20, seed + 2, cv), host="wasmtime", artifact="wasm32"),
        verdict_row("ops", "pass", subject="matmul_forward"),
        verdict_row("cell", "pass"),
        verdict_row("cell", "pass", host="wasmtime", artifact="wasm32"),
    ]


def pair(tmp_path: Path, cand_rows: list[Row], **cand_meta: object) -> tuple[Path, Path]:
    """A clean BASE run and a CAND run with ``cand_rows``."""
    base = write_run(tmp_path / "base", clean_rows(1))
    cand = write_run(tmp_path / "cand", cand_rows, **cand_meta)  # type: ignore[arg-type]
    return base, cand


def test_two_clean_runs_pass(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two runs of the same code on the same machine exit 0 and call the cells 'same'."""
    base, cand = pair(tmp_path, clean_rows(100))
    assert main(["compare", str(base), str(cand)]) == 0
    out = capsys.readouterr().out
    assert "gate PASS" in out and "0 slower" in out


def test_injected_slowdown_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A 10 % slower matmul in one cell is a confirmed regression: exit 1, named in Markdown."""
    base, cand = pair(tmp_path, clean_rows(100, matmul_scale=1.10))
    md = tmp_path / "pr" / "gate.md"
    assert main(["compare", str(base), str(cand), "--markdown", str(md)]) == 1
    text = md.read_text()
    assert "FAIL" in text
    slower = [line for line in text.splitlines() if "**slower**" in line]
    assert len(slower) == 1 and "native/native/small" in slower[0]
    assert "op:matmul_forward@n=256" in slower[0]


def test_faster_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A 10 % speedup is reported as faster and does not fail the gate."""
    base, cand = pair(tmp_path, clean_rows(100, matmul_scale=0.90))
    assert main(["compare", str(base), str(cand)]) == 0
    assert "1 faster" in capsys.readouterr().out


def test_threshold_override_from_matrix(tmp_path: Path) -> None:
    """A per-measurement min_effect of 20 % in [thresholds] tolerates a 10 % slowdown."""
    matrix = '[thresholds]\nmin_effect = 0.03\n[thresholds.measurement]\n"op:matmul_*" = 0.2\n'
    base, cand = pair(tmp_path, clean_rows(100, matmul_scale=1.10), matrix_text=matrix)
    assert main(["compare", str(base), str(cand)]) == 0


def test_threshold_override_per_check(tmp_path: Path) -> None:
    """A per-check min_effect in a --thresholds matrix file applies to every bench measurement."""
    matrix = tmp_path / "m.toml"
    matrix.write_text("[thresholds.check]\nbench = 0.25\n")
    base, cand = pair(tmp_path, clean_rows(100, matmul_scale=1.10))
    assert main(["compare", str(base), str(cand), "--thresholds", str(matrix)]) == 0


def test_noise_gives_unknown_not_failure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Samples too noisy to decide give 'unknown' (exit 0), not a false alarm."""
    base = write_run(tmp_path / "base", clean_rows(1, cv=0.3))
    cand = write_run(tmp_path / "cand", clean_rows(2, cv=0.3))
    assert main(["compare", str(base), str(cand)]) == 0
    assert "unknown" in capsys.readouterr().out


def test_parity_failure_in_cand_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A parity failure in CAND exits 1 even when every timing is the same."""
    rows = [*clean_rows(100), verdict_row("ops", "fail", subject="gelu_forward", detail="ulp 9")]
    base, cand = pair(tmp_path, rows)
    assert main(["compare", str(base), str(cand)]) == 1
    assert "ops:gelu_forward fail (ulp 9)" in capsys.readouterr().out


@pytest.mark.parametrize("check", ["defaults", "corpus", "model"])
def test_contract_failures_fail(tmp_path: Path, check: str) -> None:
    """A defaults, corpus or model-parity failure in CAND exits 1."""
    base, cand = pair(tmp_path, [*clean_rows(100), verdict_row(check, "fail", subject="x")])
    assert main(["compare", str(base), str(cand)]) == 1


@pytest.mark.parametrize("status", ["error", "incompatible"])
def test_cell_broken_since_base_fails(
    tmp_path: Path, status: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A cell that passed in BASE and is error/incompatible in CAND exits 1, with its cause."""
    rows = [r for r in clean_rows(100) if not (r.check == "cell" and r.host == "wasmtime")]
    rows.append(verdict_row("cell", status, host="wasmtime", artifact="wasm32", detail="boom"))  # type: ignore[arg-type]
    base, cand = pair(tmp_path, rows)
    assert main(["compare", str(base), str(cand)]) == 1
    assert f"wasmtime/wasm32/small: pass -> {status} (boom)" in capsys.readouterr().out


def test_cell_incompatible_in_both_passes(tmp_path: Path) -> None:
    """A cell already incompatible in BASE is no regression when it stays incompatible."""
    rows = [*clean_rows(1), verdict_row("cell", "incompatible", host="node22", artifact="wasm64")]
    base = write_run(tmp_path / "base", rows)
    cand = write_run(tmp_path / "cand", [*clean_rows(100), rows[-1]])
    assert main(["compare", str(base), str(cand)]) == 0


def test_cross_machine_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Runs from two machine fingerprints exit 2 with both ids, unless allowed."""
    base, cand = pair(tmp_path, clean_rows(100), fingerprint="fp-other")
    assert main(["compare", str(base), str(cand)]) == 2
    err = capsys.readouterr().err
    assert "different machine fingerprints" in err and "fp-other" in err
    assert main(["compare", str(base), str(cand), "--allow-cross-machine"]) == 0
    assert "Refusals overridden" in capsys.readouterr().out


def test_other_build_of_same_commit_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same artifact name with another sha256 at the same commit is another build: exit 2."""
    base, cand = pair(tmp_path, clean_rows(100), artifacts={"native": "f" * 64})
    assert main(["compare", str(base), str(cand)]) == 2
    assert "artifact 'native': two different builds" in capsys.readouterr().err


def test_other_build_of_a_project_library_at_the_same_harness_commit_is_compared(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A project's own library (outside the harness checkout: run.json's in_checkout false)
    is not built from the harness's commit, so two builds of it under one harness commit are
    the change being gated: compared (exit 0 here), not refused as two builds of one commit."""
    theirs = {"sha256": "f" * 64, "format": "native", "target": "native", "in_checkout": False}
    base = write_run(tmp_path / "base", clean_rows(1))
    meta = json.loads((base / RUN_FILE).read_text())
    meta["artifacts"]["native"] = {**theirs, "sha256": "e" * 64}
    (base / RUN_FILE).write_text(json.dumps(meta))
    cand = write_run(tmp_path / "cand", clean_rows(100), extra={"artifacts": {"native": theirs}})
    assert main(["compare", str(base), str(cand)]) == 0, capsys.readouterr().err
    # the same two builds from inside the checkout are refused, as the bundled library's are
    for run in (base, cand):
        meta = json.loads((run / RUN_FILE).read_text())
        meta["artifacts"]["native"]["in_checkout"] = True
        (run / RUN_FILE).write_text(json.dumps(meta))
    assert main(["compare", str(base), str(cand)]) == 2
    assert "artifact 'native': two different builds" in capsys.readouterr().err


def test_new_commit_new_binary_is_compared(tmp_path: Path) -> None:
    """Another commit's binary differs by design: compared, not refused."""
    base, cand = pair(tmp_path, clean_rows(100), artifacts={"native": "f" * 64}, commit="b" * 40)
    assert main(["compare", str(base), str(cand)]) == 0


def test_shards_from_two_machines_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A merged CAND whose shards came from two fingerprints is refused for perf comparison."""
    shards = {"machines": {"fp-test-machine": {}, "fp-b": {}}, "shards": [{"machine": "fp-b"}]}
    base, cand = pair(tmp_path, clean_rows(100), extra=shards)
    assert main(["compare", str(base), str(cand)]) == 2
    assert "merged from shards of 2 machine fingerprints" in capsys.readouterr().err


def test_base_and_cand_never_modified(tmp_path: Path) -> None:
    """Every file of BASE and CAND hashes the same before and after compare (even failing)."""
    base, cand = pair(tmp_path, clean_rows(100, matmul_scale=1.2))
    before = (tree_digest(base), tree_digest(cand))
    assert main(["compare", str(base), str(cand), "--markdown", str(tmp_path / "g.md")]) == 1
    assert (tree_digest(base), tree_digest(cand)) == before


def _break(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


@pytest.mark.parametrize(
    ("file", "damage", "expected"),
    [
        ("run.json", lambda t: t[: len(t) // 2], "run.json: corrupt or truncated JSON"),
        (
            "run.json",
            lambda t: t.replace('"schema_version": 1', '"schema_version": 99'),
            "field 'schema_version': unknown schema version 99",
        ),
        (
            "run.json",
            lambda t: t.replace('"fingerprint_id"', '"fingerprint_gone"'),
            "field 'machine.fingerprint_id'",
        ),
        ("results.csv", lambda t: t + "native,1.0,native", "results.csv: field 'artifact_sha256'"),
        ("results.csv", lambda t: t.replace("measured,time_ns,", "measured,time_ns,abc", 1),
         "results.csv: field 'value': line 2: not a number"),
        ("results.csv", lambda t: t.replace("host,", "hots,", 1), "field 'host': column missing"),
    ],
)  # fmt: skip
def test_bad_run_files_exit_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    file: str,
    damage: object,
    expected: str,
) -> None:
    """A corrupt, truncated or future-versioned run file exits 2 naming the file and field."""
    base, cand = pair(tmp_path, clean_rows(100))
    target = cand / file
    _break(target, damage(target.read_text()))  # type: ignore[operator]
    assert main(["compare", str(base), str(cand)]) == 2
    err = capsys.readouterr().err
    assert str(target) in err and expected in err


def test_missing_run_dir_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A path that is not a run directory exits 2 naming it."""
    base, _ = pair(tmp_path, clean_rows(100))
    assert main(["compare", str(base), str(tmp_path / "nope")]) == 2
    assert "nope: not a run directory" in capsys.readouterr().err


def test_bad_thresholds_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A malformed [thresholds] value exits 2 naming the key."""
    base, cand = pair(tmp_path, clean_rows(100), matrix_text="[thresholds]\nalpha = 'x'\n")
    assert main(["compare", str(base), str(cand)]) == 2
    assert "thresholds.alpha" in capsys.readouterr().err
    data = json.loads((cand / RUN_FILE).read_text())
    assert data["matrix"]["content"]["thresholds"] == {"alpha": "x"}


def test_other_toolchain_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The same artifact name built by another toolchain is another build: exit 2, named."""
    base, cand = pair(tmp_path, clean_rows(100), commit="b" * 40)
    data = json.loads((cand / RUN_FILE).read_text())
    data["artifacts"]["native"]["toolchain"] = "zig 0.18.0"
    (cand / RUN_FILE).write_text(json.dumps(data))
    assert main(["compare", str(base), str(cand)]) == 2
    assert "'native': built differently (toolchain: 'zig 0.17.1' vs 'zig 0.18.0')" in (
        capsys.readouterr().err
    )


def test_merged_shards_of_other_builds_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A merged CAND whose shards used two builds of one artifact is refused."""
    mixed = {"artifacts_mixed": {"wasm32": ["2" * 64, "3" * 64]}}
    base, cand = pair(tmp_path, clean_rows(100), extra=mixed)
    assert main(["compare", str(base), str(cand)]) == 2
    assert "artifact 'wasm32' differs between merged shards" in capsys.readouterr().err


def _sharded(fp_native: str, fp_wasm: str) -> dict[str, object]:
    """run.json keys of a run merged from two shards, one cell list per shard."""
    return {
        "machines": {fp_native: {}, fp_wasm: {}},
        "shards": [
            {"machine": fp_native, "cells": ["native/native/small"]},
            {"machine": fp_wasm, "cells": ["wasmtime/wasm32/small"]},
        ],
    }


def test_merged_runs_cell_by_cell_same_machine_accepted(tmp_path: Path) -> None:
    """Merged BASE and CAND from two machines compare when each cell kept its machine."""
    meta = _sharded("fp-a", "fp-b")
    base = write_run(tmp_path / "base", clean_rows(1), fingerprint="fp-a", extra=meta)
    cand = write_run(tmp_path / "cand", clean_rows(100), fingerprint="fp-a", extra=meta)
    assert main(["compare", str(base), str(cand)]) == 0


def test_merged_runs_cell_moved_machine_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A timed cell measured on another machine in CAND than in BASE is refused, named."""
    base = write_run(tmp_path / "base", clean_rows(1), fingerprint="fp-a",
                     extra=_sharded("fp-a", "fp-b"))  # fmt: skip
    cand = write_run(tmp_path / "cand", clean_rows(100), fingerprint="fp-a",
                     extra=_sharded("fp-a", "fp-c"))  # fmt: skip
    assert main(["compare", str(base), str(cand)]) == 2
    assert "cell wasmtime/wasm32/small: timed on fp-b in BASE but fp-c in CAND" in (
        capsys.readouterr().err
    )


def test_reference_slowdown_shown_not_gated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A slower numpy reference (a yardstick, not our code) is listed but does not fail."""
    ref = bench_rows(noisy(800.0, 20, 7), host="numpy", artifact="reference", preset="",
                     subject="roofline:sgemm")  # fmt: skip
    slow_ref = bench_rows(noisy(960.0, 20, 8), host="numpy", artifact="reference", preset="",
                          subject="roofline:sgemm")  # fmt: skip
    base = write_run(tmp_path / "base", [*clean_rows(1), *ref])
    cand = write_run(tmp_path / "cand", [*clean_rows(100), *slow_ref])
    assert main(["compare", str(base), str(cand)]) == 0
    out = capsys.readouterr().out
    assert "slower (ref)" in out and "gate PASS: 0 slower" in out


def test_nothing_compared_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two runs that share no timed measurement: exit 1, the cause named (a pass would be empty)."""
    only_verdicts = [
        verdict_row("ops", "pass", subject="matmul_forward"),
        verdict_row("cell", "pass"),
    ]
    base = write_run(tmp_path / "base", only_verdicts)
    cand = write_run(tmp_path / "cand", only_verdicts)
    assert main(["compare", str(base), str(cand)]) == 1
    out = capsys.readouterr().out
    assert "gate FAIL" in out and "NOTHING COMPARED" in out


def test_subject_missing_from_cand_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """CAND lost layernorm's bench rows: exit 1, the lost measurement listed as failing."""
    rows = [r for r in clean_rows(100) if r.subject != "op:layernorm_forward"]
    base, cand = pair(tmp_path, rows)
    md = tmp_path / "gate.md"
    assert main(["compare", str(base), str(cand), "--markdown", str(md)]) == 1
    out = capsys.readouterr().out
    assert "Measured in BASE, missing from CAND (fails the gate)" in out
    assert "native/native/small op:layernorm_forward@n=64" in out
    assert "1 missing from CAND" in out
    assert "❌ FAIL" in md.read_text()


def test_every_bench_row_lost_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """CAND kept its verdicts but lost every bench row: exit 1 (missing and nothing compared)."""
    rows = [r for r in clean_rows(100) if r.check != "bench"]
    base, cand = pair(tmp_path, rows)
    assert main(["compare", str(base), str(cand)]) == 1
    out = capsys.readouterr().out
    assert "3 missing from CAND" in out and "NOTHING COMPARED" in out


@pytest.mark.parametrize("how", ["option", "thresholds"])
def test_excluded_missing_subject_passes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], how: str
) -> None:
    """A subject excluded by --exclude or by [thresholds] exclude may be missing: exit 0, listed."""
    rows = [r for r in clean_rows(100) if r.subject != "op:layernorm_forward"]
    base, cand = pair(tmp_path, rows)
    if how == "option":
        extra = ["--exclude", "op:layernorm_*"]
    else:
        matrix = tmp_path / "m.toml"
        matrix.write_text('[thresholds]\nexclude = ["op:layernorm_forward@n=64"]\n')
        extra = ["--thresholds", str(matrix)]
    assert main(["compare", str(base), str(cand), *extra]) == 0
    out = capsys.readouterr().out
    assert "Missing from CAND but excluded" in out and "0 missing from CAND" in out


def test_bad_exclude_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An exclusion that is not a list of globs is bad config: exit 2, the key named."""
    base, cand = pair(tmp_path, clean_rows(100))
    matrix = tmp_path / "m.toml"
    matrix.write_text('[thresholds]\nexclude = "op:*"\n')
    assert main(["compare", str(base), str(cand), "--thresholds", str(matrix)]) == 2
    assert "thresholds.exclude" in capsys.readouterr().err


Adapter = dict[str, object]
SWIFTSHADER: Adapter = {
    "vendor": "google",
    "architecture": "swiftshader",
    "is_fallback_adapter": True,
}
AMPERE: Adapter = {"vendor": "nvidia", "architecture": "ampere", "description": "RTX A4000"}
RDNA: Adapter = {"vendor": "amd", "architecture": "rdna-3", "description": "RX 7600"}


def _gpu_run(directory: Path, adapter: Adapter, seed: int) -> Path:
    """A run of the webgpu artifact's train_step in Chromium on ``adapter`` (run.json's
    ``webgpu_adapter``, as the runner records it)."""
    rows = [
        *bench_rows(noisy(4.0e7, 20, seed), "chromium", "webgpu", "tiny", "train_step"),
        verdict_row("cell", "pass", host="chromium", artifact="webgpu", preset="tiny"),
    ]
    entry = {"sha256": "3" * 64, "format": "webgpu", "webgpu_adapter": {"chromium": adapter}}
    return write_run(directory, rows, extra={"artifacts": {"webgpu": entry}})


def test_a_cpu_emulated_adapter_is_never_compared_with_a_gpu(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """BASE timed the step on SwiftShader, CAND on a GPU (same machine fingerprint, same
    subject ``train_step``): exit 2 naming both adapters, and --allow-cross-machine does not
    override it (issue 16: an emulated figure is never compared with a GPU's)."""
    base = _gpu_run(tmp_path / "base", SWIFTSHADER, 1)
    cand = _gpu_run(tmp_path / "cand", AMPERE, 2)
    for extra in ([], ["--allow-cross-machine"]):
        assert main(["compare", str(base), str(cand), *extra]) == 2
        err = capsys.readouterr().err
        assert ("artifact 'webgpu' on chromium: WebGPU adapter google/swiftshader (fallback) in "
                "BASE but nvidia/ampere RTX A4000 in CAND") in err  # fmt: skip
        assert "never compared with a GPU's, whatever the flags" in err


def test_two_gpus_are_two_machines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two different GPUs: refused like two machines, and --allow-cross-machine compares
    them, listing the override; the same adapter on both sides compares as usual."""
    base = _gpu_run(tmp_path / "base", AMPERE, 1)
    cand = _gpu_run(tmp_path / "cand", RDNA, 2)
    assert main(["compare", str(base), str(cand)]) == 2
    assert "one GPU's timings are not another's" in capsys.readouterr().err
    assert main(["compare", str(base), str(cand), "--allow-cross-machine"]) in (0, 1)
    assert "Refusals overridden" in capsys.readouterr().out
    same = _gpu_run(tmp_path / "same", AMPERE, 3)
    assert main(["compare", str(base), str(same)]) in (0, 1)
    assert "refusing" not in capsys.readouterr().err
