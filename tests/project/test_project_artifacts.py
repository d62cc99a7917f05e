"""A profile's ``[artifacts.NAME]``: a project names its own binaries by their files, format
and binding, and ``run --project`` hashes and runs them, with no manifest to write.

The binaries are lib2's (a library whose ABI we did not design, artifacts/lib2), copied into a
project tree of their own: artifacts/build's when that manifest is fresh, else lib2 alone built
into a temporary directory.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pytest

from harness.artifact import Artifact, load_manifest
from harness.build import (
    BUNDLED_MANIFEST,
    DEFAULT_OUT,
    MANIFEST,
    REPO_ROOT,
    emcc_path,
    manifest_is_fresh,
)
from harness.build import write_manifest as write_build_manifest
from harness.build_lib2 import LIB2_BINDING, lib2_artifacts
from harness.cli import main as cli_main
from harness.formats import file_sha256
from harness.hosts.base import ArtifactHashMismatch, verify_artifact
from harness.profile import ProfileError, load_profile
from harness.rundir.meta import RUN_FILE
from harness.rundir.reader import read_rows
from harness.rundir.rows import RESULTS_FILE
from harness.runner import configure

needs_emcc = pytest.mark.skipif(emcc_path() is None, reason="emcc is not installed")


@pytest.fixture(scope="module")
def lib2(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Artifact]:
    """lib2's built artifacts by name (artifacts/build's if fresh, else a lib2-only build)."""
    if manifest_is_fresh(DEFAULT_OUT):
        return load_manifest(DEFAULT_OUT / MANIFEST)
    out = tmp_path_factory.mktemp("lib2-build")
    arts = list(lib2_artifacts(out, emcc_path() is not None).values())
    return load_manifest(write_build_manifest(out, arts))


def _project(root: Path, lib2: dict[str, Artifact], tables: str) -> Path:
    """A project tree: lib2's .so and emscripten builds under ``build/``, its binding (header
    path made absolute) as ``mylib.binding.toml``, and a harness.toml of ``tables``."""
    build = root / "build"
    build.mkdir(parents=True)
    for name in ("lib2-native", "lib2-em-wasm32", "lib2-em-wasm64", "lib2-em-wasm32-pthread"):
        if name not in lib2:
            continue
        dest = build / name
        dest.mkdir()
        for path in lib2[name].paths().values():
            shutil.copy(path, dest / path.name)  # the glue asks for its worker by name
    text = (REPO_ROOT / LIB2_BINDING).read_text()
    header = (REPO_ROOT / LIB2_BINDING).parent / "include" / "lib2.h"
    (root / "mylib.binding.toml").write_text(
        text.replace('header = "include/lib2.h"', f'header = "{header}"')
    )
    profile = root / "harness.toml"
    profile.write_text('[project]\nname = "mylib"\n\n' + tables)
    return profile


NATIVE = """[artifacts.mylib-so]
format = "native"
path = "build/lib2-native/liblib2.so"
binding = "mylib.binding.toml"
"""


def _run(root: Path, profile: Path, artifacts: Path, cells: str) -> tuple[int, Path]:
    matrix = root / "m.toml"
    matrix.write_text(f'name = "m"\n{cells}\n')
    out = root / "run"
    code = cli_main(["run", "--matrix", str(matrix), "--out", str(out), "--artifacts",
                     str(artifacts), "--project", str(profile)])  # fmt: skip
    return code, out


def test_a_profile_artifact_runs_without_any_manifest(
    tmp_path: Path, lib2: dict[str, Artifact]
) -> None:
    """``[artifacts.mylib-so]`` names a .so, its format and its binding; with no manifest at
    all, ``run --project`` hashes it, runs smoke and defaults on it through the binding, and
    run.json records the sha256 of the very file it loaded, and the project's root and git
    state."""
    profile = _project(tmp_path, lib2, NATIVE)
    code, out = _run(tmp_path, profile, tmp_path / "no-manifest.json",
                     'artifacts = ["mylib-so"]\npresets = ["tiny"]\nchecks = ["smoke", '
                     '"defaults"]\n[hosts]\nnative = {}')  # fmt: skip
    rows = read_rows(out / RESULTS_FILE)
    assert code == 0, [(r.subject, r.detail) for r in rows if r.status in ("fail", "error")]
    assert {r.subject for r in rows if r.status == "pass"} >= {
        "alloc:round_trip", "binding:weight_decay"
    }  # fmt: skip
    so = tmp_path / "build" / "lib2-native" / "liblib2.so"
    meta = json.loads((out / RUN_FILE).read_text())
    assert file_sha256(so) in json.dumps(meta["artifacts"]["mylib-so"])
    assert {r.artifact_sha256 for r in rows if r.artifact == "mylib-so"} == {file_sha256(so)}
    # the project's checkout is recorded beside the harness's (here: no git repository)
    assert meta["project"] == {"root": str(tmp_path), "git": {"commit": None, "dirty": None}}


@needs_emcc
def test_the_pointer_width_is_read_from_the_files(
    tmp_path: Path, lib2: dict[str, Artifact]
) -> None:
    """No ``ptr_width`` given: a Memory64 module is 64-bit, a wasm32 one 32-bit, a -pthread
    build (whose memory is imported) 32-bit, and the .so 64-bit (its ELF class); each
    artifact's set hash is the manifest's for the same files."""
    tables = NATIVE
    for name, role_files in (
        ("em32", 'glue = "build/lib2-em-wasm32/lib2.mjs", wasm = "build/lib2-em-wasm32/lib2.wasm"'),
        ("em64", 'glue = "build/lib2-em-wasm64/lib2.mjs", wasm = "build/lib2-em-wasm64/lib2.wasm"'),
    ):
        tables += f'\n[artifacts.{name}]\nformat = "emscripten"\nfiles = {{ {role_files} }}\n'
    tables += (
        '\n[artifacts.emp]\nformat = "emscripten"\nfiles = { glue = '
        '"build/lib2-em-wasm32-pthread/lib2.mjs", wasm = "build/lib2-em-wasm32-pthread/lib2.wasm"'
        ', worker = "build/lib2-em-wasm32-pthread/lib2.worker.js" }\n'
    )
    profile = load_profile(_project(tmp_path, lib2, tables))
    built = {name: spec.build() for name, spec in profile.artifacts.items()}
    assert {n: a.ptr_width for n, a in built.items()} == {
        "mylib-so": 64, "em32": 32, "em64": 64, "emp": 32
    }  # fmt: skip
    assert built["em64"].sha256 == lib2["lib2-em-wasm64"].sha256
    assert built["mylib-so"].sha256 == lib2["lib2-native"].sha256


@pytest.mark.parametrize(
    ("tables", "words"),
    [
        (NATIVE.replace("liblib2.so", "nope.so"), "file 'build/lib2-native/nope.so' not found"),
        (NATIVE + "sources = 1\n", "unknown key"),
        (NATIVE.replace('"native"', '"elf"'), "unknown artifact format 'elf'"),
        (NATIVE + f'sha256 = "{"0" * 64}"\n', "pinned 0000"),
        (NATIVE + "ptr_width = 48\n", "must be 32 or 64, got 48"),
        (NATIVE.replace('path = "build/lib2-native/liblib2.so"',
                        'files = { glue = "build/lib2-native/liblib2.so" }'),
         "unknown file role(s) ['glue'] for format native"),
        (NATIVE.replace('format = "native"\n', ""), "missing key 'format'"),
        (NATIVE + "ptr_width = 32\n", "ptr_width = 32, but "),  # an ELF64 .so
        (NATIVE + 'target = "wasm32-unknown-emscripten"\n', "is an ELF64 library"),
    ],
)  # fmt: skip
def test_a_bad_artifact_table_exits_2_at_its_line(
    tmp_path: Path,
    lib2: dict[str, Artifact],
    capsys: pytest.CaptureFixture[str],
    tables: str,
    words: str,
) -> None:
    """A missing file, an unknown key or format, a pin the files miss, a bad width (or one, or
    a target, the .so contradicts), roles the format does not have, no format: exit 2 at load,
    naming harness.toml:LINE, before any host starts (no run directory is written)."""
    profile = _project(tmp_path, lib2, tables)
    code, out = _run(tmp_path, profile, tmp_path / "no-manifest.json",
                     'artifacts = ["mylib-so"]\npresets = ["tiny"]\nchecks = ["smoke"]\n'
                     "[hosts]\nnative = {}")  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and words in err, err
    assert f"{profile}:" in err and not (out / RESULTS_FILE).exists()


def test_a_profile_artifact_may_not_take_a_manifest_name(
    tmp_path: Path, lib2: dict[str, Artifact], capsys: pytest.CaptureFixture[str]
) -> None:
    """An ``[artifacts.NAME]`` whose name the manifest already has is refused (exit 2 at the
    table's line): which binary a cell ran must never depend on a merge order."""
    profile = _project(tmp_path, lib2, NATIVE.replace("mylib-so", "lib2-native"))
    manifest = lib2["lib2-native"].path.parents[1] / MANIFEST
    code, _out = _run(tmp_path, profile, manifest,
                      'artifacts = ["lib2-native"]\npresets = ["tiny"]\nchecks = ["smoke"]\n'
                      "[hosts]\nnative = {}")  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and f"{profile}:4: artifact name 'lib2-native' is also in the manifest" in err


def test_a_binding_that_does_not_load_is_named_at_its_own_line(
    tmp_path: Path, lib2: dict[str, Artifact]
) -> None:
    """The artifact's binding is loaded when the artifact is built: a binding with an unknown
    op is a ProfileError naming the profile's table and the binding's own file:line."""
    profile = load_profile(_project(tmp_path, lib2, NATIVE))
    binding = tmp_path / "mylib.binding.toml"
    binding.write_text(binding.read_text().replace("[ops.matmul_forward]", "[ops.matmul_fwd]"))
    with pytest.raises(ProfileError, match=r"harness.toml:4: artifacts.mylib-so: key 'binding': "
                       r".*mylib.binding.toml:\d+: ops.matmul_fwd: unknown key"):  # fmt: skip
        profile.artifacts["mylib-so"].build()


def test_a_matrix_naming_a_bundled_artifact_without_a_manifest_says_so(
    tmp_path: Path, lib2: dict[str, Artifact], capsys: pytest.CaptureFixture[str]
) -> None:
    """With no manifest at --artifacts, only the profile's artifacts are known: a matrix that
    also names a bundled one (``wasm32``) exits 2 saying the manifest was not found, not only
    "unknown artifact"; and the default --artifacts is the checkout's, never the cwd's."""
    profile = _project(tmp_path, lib2, NATIVE)
    missing = tmp_path / "no-manifest.json"
    code, _out = _run(tmp_path, profile, missing,
                      'artifacts = ["mylib-so", "wasm32"]\npresets = ["tiny"]\n'
                      'checks = ["smoke"]\n[hosts]\nnative = {}')  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "unknown artifact 'wasm32'" in err, err
    assert f"no artifact manifest at {missing}" in err, err
    parser = argparse.ArgumentParser()
    configure(parser)
    default = parser.parse_args(["--matrix", "m.toml", "--out", "o"]).artifacts
    assert default == BUNDLED_MANIFEST and default.is_absolute()


def test_a_profile_artifact_without_a_binding_says_the_bundled_one_was_assumed(
    tmp_path: Path, lib2: dict[str, Artifact], capsys: pytest.CaptureFixture[str]
) -> None:
    """``[artifacts.mylib-so]`` with no ``binding``: the bundled tinygpt.h binding applies, and
    lib2 lacks its exports. The exit-2 error points at harness/bindings/tinygpt.toml, a file the
    project never wrote, so it also says the table names no binding, that the bundled one was
    assumed, and where to name one (was: the tinygpt.toml line and nothing else)."""
    profile = _project(tmp_path, lib2, NATIVE.replace('binding = "mylib.binding.toml"\n', ""))
    code, out = _run(tmp_path, profile, tmp_path / "no-manifest.json",
                     'artifacts = ["mylib-so"]\npresets = ["tiny"]\nchecks = ["smoke"]\n'
                     "[hosts]\nnative = {}")  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "harness/bindings/tinygpt.toml:" in err, err
    assert (
        "artifact mylib-so names no binding, so the bundled library's (tinygpt.h's exports) was "
        'assumed: name the project\'s own binding file with `binding = "..."` in its '
        f"[artifacts.mylib-so] table ({profile}:4) (docs/bindings.md)"
    ) in err, err
    assert not (out / RESULTS_FILE).exists()


def test_a_profile_file_changed_mid_run_is_not_blamed_on_a_manifest(
    tmp_path: Path, lib2: dict[str, Artifact]
) -> None:
    """A profile artifact has no manifest: its expected hash is what its file hashed to when
    the run built it. A file changed after that is refused naming the profile's table and
    saying it changed during the run (was: "... but the manifest says ...; rebuild it and its
    manifest entry")."""
    profile = load_profile(_project(tmp_path, lib2, NATIVE))
    artifact = profile.artifacts["mylib-so"].build()
    so = tmp_path / "build" / "lib2-native" / "liblib2.so"
    so.write_bytes(so.read_bytes() + b"\0")  # edited after the run hashed it
    with pytest.raises(ArtifactHashMismatch) as caught:
        verify_artifact(artifact)
    assert str(caught.value) == (
        f"mylib-so: {so} has sha256 {file_sha256(so)}, but {artifact.sha256} when this run "
        f"hashed the files of its [artifacts.mylib-so] table ({profile.path}:4) at its start: it "
        "changed during the run; restore it, or start a new run to judge the new files"
    )
