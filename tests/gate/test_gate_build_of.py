"""A build for ``compare --paired``/``--adaptive`` named by a project profile, not a manifest:
its ``[artifacts]`` are the build (harness/gate/provenance.py ``build_of``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from harness.artifact import load_manifest
from harness.build import BUNDLED_MANIFEST
from harness.gate.errors import GateInputError, RefusalError
from harness.gate.provenance import build_of, require_build
from harness.rundir.reader import load_run
from tests.gate.gate_runs import bench_rows, noisy, write_run

needs_build = pytest.mark.skipif(
    not BUNDLED_MANIFEST.is_file(), reason="tinygpt-harness build first"
)


def _project(root: Path) -> Path:
    """A project whose ``[artifacts.mine]`` is a copy of the bundled native library."""
    so = load_manifest(BUNDLED_MANIFEST)["native"].path
    (root / "build").mkdir(parents=True)
    shutil.copy(so, root / "build" / so.name)
    (root / "harness.toml").write_text(
        f'[project]\nname = "mine"\n\n[artifacts.mine]\nformat = "native"\n'
        f'path = "build/{so.name}"\n'
    )
    return root


@needs_build
def test_a_profile_names_a_build_its_run_measured(tmp_path: Path) -> None:
    """The profile's directory (or its harness.toml) is a build: its own artifact joins the
    bundled ones, and require_build accepts it when the run measured that very binary, and
    refuses it (exit 2, naming both hashes) when the run measured another."""
    project = _project(tmp_path / "proj")
    arts = build_of(project)
    assert {"mine", "native"} <= set(arts) and build_of(
        project / "harness.toml"
    ).keys() == arts.keys()
    rows = bench_rows(noisy(1000.0, 5, seed=1), artifact="mine")
    run = write_run(tmp_path / "run", rows, artifacts={"mine": arts["mine"].sha256})
    assert require_build(load_run(run), project, {"mine"}, "CAND")["mine"] == arts["mine"]
    other = write_run(tmp_path / "other", rows, artifacts={"mine": "f" * 64})
    with pytest.raises(RefusalError, match=r"artifact 'mine' is [0-9a-f]{12}, CAND measured f{12}"):
        require_build(load_run(other), project, {"mine"}, "CAND")


def test_a_broken_profile_is_bad_input(tmp_path: Path) -> None:
    """A profile whose artifact file is missing: GateInputError naming the profile's line."""
    (tmp_path / "harness.toml").write_text(
        '[project]\nname = "x"\n\n[artifacts.mine]\nformat = "native"\npath = "nope.so"\n'
    )
    with pytest.raises(GateInputError, match=r"harness.toml:\d+: .*nope.so"):
        build_of(tmp_path)


@needs_build
def test_a_profile_artifact_named_as_a_bundled_one_is_refused(tmp_path: Path) -> None:
    """A profile whose artifact takes a bundled artifact's name ('native') is refused at its
    table's line, as ``run --project`` refuses it: silently preferring one of the two binaries
    let the gate time the other build than the run measured."""
    project = _project(tmp_path / "proj")
    toml = project / "harness.toml"
    toml.write_text(toml.read_text().replace("[artifacts.mine]", "[artifacts.native]"))
    with pytest.raises(GateInputError, match=r"harness.toml:\d+: artifact name 'native' is also"):
        build_of(project)
