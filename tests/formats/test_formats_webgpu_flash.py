"""FlashAttention-2-style WGSL attention (artifacts/webgpu/attention_flash_*.wgsl), on SwiftShader.

The kernels tile queries by 16 and keys by 8 (``TILE``, ``KTILE`` in the shaders) and keep an
online softmax per query row; the forward stores the row log-sum-exp, the backward recomputes
the softmax from it. Parity is the ops check's (:func:`harness.checks.ops.op_parity`, the WGSL
policy of docs/tolerance.md) on every shape case of the tiny preset, which has sequence lengths
that are and are not multiples of the tile. A fault of our own (the last, partial key tile skipped)
passes where T is a multiple of the tile and fails parity wherever it is not.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from harness.artifact import Artifact
from harness.build import REPO_ROOT, WEBGPU_DIR, webgpu_artifact
from harness.checks import ops as ops_check
from harness.formats.webgpu import FORMAT
from harness.hosts.chromium import ChromiumHost
from harness.hosts.timeouts import Timeouts
from harness.kernel import Kernels
from reference.presets import PRESETS

# SwiftShader compiles every pipeline on the CPU at load (about 2-7 s on the 2-core VM)
TIMEOUTS = Timeouts(call_s=60.0, load_s=120.0, time_s=120.0, transfer_s=60.0, start_s=60.0)
TILE = 16  # attention_flash_*.wgsl: rows per workgroup (workgroup size)
KTILE = 8  # attention_flash_forward.wgsl: keys per K/V tile
FLASH_OPS = ("attention_flash_forward", "attention_flash_backward")
# The fault: the key-tile count rounds down, so the last, partial key tile is never visited.
SKIP_LAST_KEY_TILE = {
    "attention_flash_forward.wgsl": (
        "let ntiles = (kend + KTILE - 1u) / KTILE; // the last, partial tile included",
        "let ntiles = kend / KTILE;",
    )
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


@pytest.fixture(scope="module")
def chromium() -> Iterator[ChromiumHost]:
    """One browser launched with --enable-unsafe-webgpu for the module's tests."""
    host = ChromiumHost(timeouts=TIMEOUTS)
    yield host
    host.close()


def test_the_flash_ops_are_their_own_kernels_toml_entries(tmp_path: Path) -> None:
    """kernels.toml declares the flash pair as exports of their own (the naive attention stays),
    its shaders tiled by TILE, and the binding binds both canonical flash ops."""
    art = webgpu_artifact(tmp_path / "build")
    plan = FORMAT.manifest(art.paths())
    fwd, bwd = plan.ops["tg_attention_flash_forward"], plan.ops["tg_attention_flash_backward"]
    assert "tg_attention_forward" in plan.ops
    assert [p.entry for p in fwd.passes] == ["attention_flash_forward"]
    assert [p.entry for p in bwd.passes] == [
        "attention_flash_backward_dkdv",
        "attention_flash_backward_dq",
    ]
    assert all(p.workgroup_size == (TILE, 1, 1) for p in (*fwd.passes, *bwd.passes))
    assert fwd.buffers["lse"] == "B*NH*T"  # one number per row is all the forward keeps
    assert art.binding is not None and set(FLASH_OPS) <= set(art.bound().ops)


@pytest.mark.chromium
def test_flash_attention_matches_the_reference_with_and_without_a_partial_tile(
    chromium: ChromiumHost, tmp_path: Path
) -> None:
    """Forward (out, lse) and backward (dqkv) within the WGSL policy on every case of the tiny
    preset: T = 5, 17, and the random case's T are not multiples of the tile; T = 16 (preset,
    and the +-80 scores of ``large``) is."""
    case_list = [c for c in ops_check.cases(PRESETS["tiny"], seed=0) if not c.dense]
    ts = {c.dims["T"] for c in case_list}
    assert any(t % KTILE for t in ts) and any(t % TILE == 0 for t in ts), ts
    inst = chromium.load(webgpu_artifact(tmp_path / "build"))
    try:
        kernels = Kernels(inst)
        for op in FLASH_OPS:
            for case in case_list:
                ops_check.assert_op_parity(kernels, op, case)
    finally:
        inst.close()


@pytest.mark.chromium
def test_a_skipped_last_key_tile_fails_parity(chromium: ChromiumHost, tmp_path: Path) -> None:
    """With the key-tile count rounded down, T = 16 still passes; T = 5 (no whole tile: the
    row sum stays 0) and T = 17 (the last row loses its own key) fail parity."""
    inst = chromium.load(_variant(tmp_path, "webgpu-skip-key-tile", SKIP_LAST_KEY_TILE))
    try:
        kernels = Kernels(inst)
        by_name = {c.name: c for c in ops_check.cases(PRESETS["tiny"], seed=0)}
        assert by_name["preset"].dims["T"] % KTILE == 0
        assert all(r.ok for r in ops_check.op_parity(kernels, FLASH_OPS[0], by_name["preset"]))
        for name in ("odd", "simd_tail"):
            assert by_name[name].dims["T"] % KTILE != 0
            failed = [r for r in ops_check.op_parity(kernels, FLASH_OPS[0], by_name[name])
                      if not r.ok]  # fmt: skip
            assert {r.name for r in failed} >= {"attention_flash_forward.out"}, failed
    finally:
        inst.close()
