"""A project's own presets: ``[presets.NAME]`` in its profile, named by a matrix under
``run --project``, checked through the reference's config (vocabulary, MLP width, biases, eps)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.build import DEFAULT_OUT, MANIFEST, manifest_is_fresh
from harness.cli import main
from harness.profile import ProfileError, load_profile
from harness.rundir.reader import read_rows
from harness.rundir.rows import RESULTS_FILE
from reference.presets import param_count

MATRIX = """\
name = "project-presets"
artifacts = ["native"]
presets = {presets}
checks = ["ops", "model"]
timeout_s = 120
[hosts]
native = {{}}
"""


def _profile(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "harness.toml"
    path.write_text('[project]\nname = "p"\n' + body)
    return path


def test_fixture_small_is_d96_over_256_bytes(fixed: Path) -> None:
    """The browser project's Small loads as a ModelConfig with its own vocabulary and count."""
    cfg = load_profile(fixed / "harness.toml").presets["tinygpt-small"]
    assert (cfg.n_embd, cfg.vocab_size, cfg.mlp_width) == (96, 256, 384)
    assert param_count(cfg) == 256 * 96 + 64 * 96 + 2 * (12 * 96 * 96 + 13 * 96) + 2 * 96


@pytest.mark.parametrize(
    ("body", "line", "message"),
    [
        ("[presets.odd]\nn_layer = 1\nn_head = 3\nn_embd = 16\nblock_size = 8\n", 3,
         "not divisible by n_head=3"),
        ("[presets.x]\nn_layer = 1\nn_head = 2\nn_embd = 16\nblock_size = 8\nwidth = 3\n", 8,
         "unknown key"),
        ("[presets.x]\nn_layer = 1\nn_head = 2\nn_embd = 16\n", 3, "missing key(s) block_size"),
        ("[presets.x]\nn_layer = 1\nn_head = 2\nn_embd = 16\nblock_size = 8\n"
         "biases = [\"qkv\", \"head\"]\n", 3, "biases"),
        ("[presets.x]\nn_layer = 1\nn_head = 2\nn_embd = 16\nblock_size = 8\nvocab_size = 512\n",
         3, "at most 256"),
    ],
)  # fmt: skip
def test_bad_presets_exit_at_file_and_line(
    tmp_path: Path, body: str, line: int, message: str
) -> None:
    """Each bad preset is a ProfileError at the offending table or key's line."""
    path = _profile(tmp_path, body)
    with pytest.raises(ProfileError) as err:
        load_profile(path)
    assert str(err.value).startswith(f"{path}:{line}:")
    assert message in str(err.value)


@pytest.mark.skipif(not manifest_is_fresh(DEFAULT_OUT), reason="needs `tinygpt-harness build`")
def test_run_with_a_projects_presets(
    tmp_path: Path, fixed: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``run --project``: the matrix names the project's Small (vocab 256, d=96) and a variant
    with a 3C MLP; ops and model pass at the Small, and at the variant the tinygpt.h model says
    it cannot express the architecture (incompatible), while its ops still pass. Without
    --project the matrix's preset is unknown (exit 2)."""
    with (fixed / "harness.toml").open("a") as f:
        f.write("\n[presets.wide]\nn_layer = 1\nn_head = 2\nn_embd = 16\nblock_size = 16\n"
                "d_mlp = 48\n")  # fmt: skip
    matrix = tmp_path / "m.toml"
    matrix.write_text(MATRIX.format(presets='["tinygpt-small", "wide"]'))
    base = ["run", "--matrix", str(matrix), "--artifacts", str(DEFAULT_OUT / MANIFEST)]
    assert main([*base, "--out", str(tmp_path / "bare")]) == 2
    assert "tinygpt-small" in capsys.readouterr().err
    out = tmp_path / "run"
    assert main([*base, "--out", str(out), "--project", str(fixed)]) == 0
    rows = list(read_rows(out / RESULTS_FILE))
    model_small = [r for r in rows if r.check == "model" and r.preset == "tinygpt-small"]
    assert {r.status for r in model_small} == {"pass", "measured"}
    ops = [r for r in rows if r.check == "ops"]
    assert {r.preset for r in ops} == {"tinygpt-small", "wide"}
    assert {r.status for r in ops} <= {"pass", "skipped", "measured"}
    assert any(r.status == "pass" for r in ops)
    (wide,) = [r for r in rows if r.check == "model" and r.preset == "wide"]
    assert wide.status == "incompatible" and "MLP width 48" in wide.detail
