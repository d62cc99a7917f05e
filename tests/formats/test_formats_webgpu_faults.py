"""WebGPU cells under faults and repeats: determinism across devices, a lost device, a
workgroup over a device limit.

Through ``tinygpt-harness run`` on Chromium (SwiftShader): the ``determinism`` check runs ops on
the cell's device and on a fresh browser's and finds them bitwise equal; a device destroyed
mid-op (``[webgpu] test_fault``, a real ``GPUDevice.destroy()``) is its cell's `error` naming the
loss and its reason while the next cell passes; a workgroup over
``maxComputeInvocationsPerWorkgroup`` is an `error` naming the limit.
"""

from __future__ import annotations

import argparse
import json
import shutil
from collections.abc import Mapping
from pathlib import Path

import pytest

from harness.artifact import MANIFEST_SCHEMA, Artifact, ManifestError, load_manifest
from harness.build import REPO_ROOT, WEBGPU_DIR, webgpu_artifact
from harness.hosts.registry import HOST_NAMES, all_hosts
from harness.hosts.timeouts import Timeouts
from harness.rundir.reader import read_rows
from harness.rundir.rows import RESULTS_FILE, Row
from harness.rundir.verdict import CellStatus, cell_verdicts
from harness.runner import configure, run_command

# SwiftShader compiles every pipeline on the CPU at load (about 2-7 s on the 2-core VM)
TIMEOUTS = Timeouts(call_s=60.0, load_s=120.0, time_s=120.0, transfer_s=60.0, start_s=60.0)
LOSE_DEVICE = {
    "kernels.toml": (
        'name = "tinygpt-wgsl"',
        'name = "tinygpt-wgsl"\ntest_fault = "destroy-device-mid-op"',
    )
}
# 16 x 32 = 512 invocations in one workgroup (each dimension within its own limit, 256):
# SwiftShader's device allows 256
HUGE_WORKGROUP = {
    "kernels.toml": (
        'workgroup_size = [64, 1, 1]\ndispatch = ["cdiv(N, 64)", "1", "1"]\n\n[ops.gelu_backward]',
        'workgroup_size = [16, 32, 1]\ndispatch = ["cdiv(N, 16)", "1", "1"]\n\n[ops.gelu_backward]',
    ),
    "gelu_forward.wgsl": ("@workgroup_size(64, 1, 1)", "@workgroup_size(16, 32, 1)"),
}


def _variant(tmp: Path, name: str, edits: Mapping[str, tuple[str, str]]) -> Artifact:
    """A copy of artifacts/webgpu with ``file -> (old, new)`` replacements (each applied exactly
    once), built as artifact ``name`` under ``tmp``."""
    src = tmp / f"{name}-src"
    shutil.copytree(REPO_ROOT / WEBGPU_DIR, src)
    for file, (old, new) in edits.items():
        text = (src / file).read_text()
        assert text.count(old) == 1, f"{file}: {old!r} occurs {text.count(old)} times"
        (src / file).write_text(text.replace(old, new))
    return webgpu_artifact(tmp / "build", src, name)


def _manifest(tmp: Path, arts: list[Artifact]) -> Path:
    path = tmp / "build" / "manifest.json"
    entries = [a.to_json(path.parent) for a in arts]
    path.write_text(json.dumps({"schema": MANIFEST_SCHEMA, "artifacts": entries}))
    return path


def _run(
    tmp: Path, arts: list[Artifact], checks: list[str], tables: str
) -> tuple[int, dict[str, tuple[CellStatus, str]], list[Row]]:
    """``tinygpt-harness run`` of ``checks`` on chromium at tiny; (exit code, verdicts, rows)."""
    names = ", ".join(f'"{a.name}"' for a in arts)
    matrix = tmp / "m.toml"
    matrix.write_text(
        f'name = "webgpu-faults"\nartifacts = [{names}]\npresets = ["tiny"]\n'
        f"checks = {json.dumps(checks)}\ntimeout_s = 60\n[hosts]\nchromium = {{}}\n{tables}"
    )
    parser = argparse.ArgumentParser()
    configure(parser)
    out = tmp / "run"
    manifest = _manifest(tmp, arts)
    args = parser.parse_args(
        ["--matrix", str(matrix), "--out", str(out), "--artifacts", str(manifest)]
    )
    code = run_command(args, HOST_NAMES, lambda m: all_hosts(TIMEOUTS))
    rows = read_rows(out / RESULTS_FILE)
    return code, cell_verdicts(rows), rows


def test_an_unknown_test_fault_fails_the_manifest_load_at_its_line(tmp_path: Path) -> None:
    """``[webgpu] test_fault`` takes only the faults the loader knows: another is a
    ManifestError at its kernels.toml line."""
    good = webgpu_artifact(tmp_path / "build")
    manifest = _manifest(tmp_path, [good])
    kernels = good.paths()["manifest"]
    text = kernels.read_text()
    fault = 'name = "tinygpt-wgsl"\ntest_fault = "lose-device"'
    kernels.write_text(text.replace('name = "tinygpt-wgsl"', fault))
    line = text.splitlines().index('name = "tinygpt-wgsl"') + 2  # the line after the name
    with pytest.raises(
        ManifestError,
        match=rf"kernels\.toml:{line}: webgpu\.test_fault: 'lose-device': must be one of",
    ):
        load_manifest(manifest)


@pytest.mark.chromium
def test_two_devices_give_bitwise_equal_outputs(tmp_path: Path) -> None:
    """The determinism check through ``run``: the flash attention pair and the tiled matmul on
    the cell's device and on a fresh browser's device differ in no bit; an op the binding lacks
    is a skipped row."""
    ops = [
        "attention_flash_forward",
        "attention_flash_backward",
        "matmul_forward",
        "residual_forward",
    ]
    code, verdicts, rows = _run(
        tmp_path, [webgpu_artifact(tmp_path / "build")], ["determinism"],
        f"[check.determinism]\nops = {json.dumps(ops)}\n",
    )  # fmt: skip
    assert code == 0 and verdicts["chromium/webgpu/tiny"][0] == "pass"
    got = {r.subject: r for r in rows if r.check == "determinism"}
    for subject in ("attention_flash_forward.out", "attention_flash_forward.lse",
                    "attention_flash_backward.dinp", "matmul_forward.out"):  # fmt: skip
        r = got[subject]
        assert r.status == "pass" and r.metric == "mismatched_elements" and r.value == 0.0
        assert "fresh chromium process" in r.detail
    assert got["residual_forward"].status == "skipped"


@pytest.mark.chromium
def test_a_device_lost_mid_op_errors_its_cell_and_the_run_goes_on(tmp_path: Path) -> None:
    """A device destroyed after an op's submit: that cell is `error` with "WebGPU device lost"
    and the loss reason ("destroyed"); the good artifact's cell after it passes."""
    arts = [_variant(tmp_path, "webgpu-lost", LOSE_DEVICE), webgpu_artifact(tmp_path / "build")]
    code, verdicts, _ = _run(tmp_path, arts, ["ops"], '[check.ops]\nops = ["gelu_forward"]\n')
    status, detail = verdicts["chromium/webgpu-lost/tiny"]
    assert status == "error" and "WebGPU device lost: destroyed" in detail, detail
    assert verdicts["chromium/webgpu/tiny"][0] == "pass"
    assert code == 1


@pytest.mark.chromium
def test_a_workgroup_over_the_invocation_limit_is_an_error_naming_it(tmp_path: Path) -> None:
    """16 x 32 = 512 invocations per workgroup: the load fails with the limit's name and value (the
    loader checks it before the pipeline is made), the cell is `error`."""
    code, verdicts, _ = _run(tmp_path, [_variant(tmp_path, "webgpu-wide", HUGE_WORKGROUP)], ["ops"],
                             '[check.ops]\nops = ["gelu_forward"]\n')  # fmt: skip
    status, detail = verdicts["chromium/webgpu-wide/tiny"]
    assert status == "error", detail
    assert "exceeds the device limit maxComputeInvocationsPerWorkgroup (256)" in detail
    assert code == 1
