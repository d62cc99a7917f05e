"""``harness.build``: reproducible builds, variants, and the compiler's errors surfacing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import harness.build as build
from harness.abi import signatures_json
from harness.artifact import MANIFEST_SCHEMA, Artifact, load_manifest
from harness.build_lib2 import LIB2_BINDING, lib2_names
from harness.cli import main
from harness.engines import load_in_process
from harness.hosts.base import Instance
from harness.kernel import Kernels
from harness.parity import ParityError, assert_parity
from harness.tolerance import mean_rstd, op_tolerance
from reference import ops

BUG = build.Variant("native-bug-lnback", "native", ("TG_BUG_LAYERNORM_BACKWARD",))


@pytest.fixture(scope="module")
def two_builds(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The same sources built into two directories, the second with the layernorm bug variant;
    both with lib2's native build (emscripten is the emscripten tests')."""
    first, second = tmp_path_factory.mktemp("first"), tmp_path_factory.mktemp("second")
    build.build_all(first, lib2=True)
    build.build_all(second, [BUG], lib2=True)
    return first, second


def test_build_twice_gives_identical_artifacts(two_builds: tuple[Path, Path]) -> None:
    """Both builds of the bundled four, lib2-native and the WGSL kernels have the same sha256s,
    flags and manifest entries (lib2's binding path is relative to each build's own
    directory)."""
    first, second = (json.loads((d / build.MANIFEST).read_text()) for d in two_builds)
    entries = {a["name"]: a for a in second["artifacts"]}
    assert [a["name"] for a in first["artifacts"]] == [
        "wasm32",
        "wasm64",
        "native",
        "native-x86-64",
        "lib2-native",
        "webgpu",
    ]
    for a in first["artifacts"]:
        assert a == entries[a["name"]]
    assert first["schema"] == MANIFEST_SCHEMA and first["inputs_sha256"] == second["inputs_sha256"]


def test_manifest_entries_describe_the_binaries(two_builds: tuple[Path, Path]) -> None:
    """Each entry loads as an Artifact whose file hashes to its sha256, with ABI signatures."""
    arts = load_manifest(two_builds[1] / build.MANIFEST)
    assert set(arts) == {"wasm32", "wasm64", "native", "native-x86-64", BUG.name, "lib2-native",
                         "webgpu"}  # fmt: skip
    for a in arts.values():
        assert all(build._sha256(f.path) == f.sha256 for f in a.file_set())
        assert a.signatures == a.bound().signatures_json()
        assert (a.binding is None) == (a.signatures == signatures_json())
        if a.format != "webgpu":  # WGSL is shipped text: no toolchain
            assert a.toolchain.startswith("zig ") and "clang" in a.toolchain
    assert arts["lib2-native"].binding == build.REPO_ROOT / LIB2_BINDING
    assert arts["wasm64"].ptr_width == 64 and "memory64" in arts["wasm64"].features
    assert arts["wasm32"].ptr_width == 32 and "-msimd128" in arts["wasm32"].flags
    assert "-DTG_BUG_LAYERNORM_BACKWARD" in arts[BUG.name].flags
    assert arts[BUG.name].sha256 != arts["native"].sha256


def test_manifest_freshness_notices_a_changed_binary(
    two_builds: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """manifest_is_fresh holds right after a build and fails once a binary changes.

    A zig-only manifest is fresh only where emcc is missing: with emcc installed the default
    matrix names em-* artifacts, so a fixture's zig-only build must not pass for a full one.
    """
    first = two_builds[0]
    monkeypatch.setattr(build, "emcc_path", lambda: "/usr/bin/emcc")
    assert not build.manifest_is_fresh(first)
    monkeypatch.setattr(build, "emcc_path", lambda: None)
    assert build.manifest_is_fresh(first)
    path = first / "wasm32" / "tinygpt.wasm"
    path.write_bytes(path.read_bytes() + b"\0")
    assert not build.manifest_is_fresh(first)


@pytest.fixture(scope="module")
def bug_instance(two_builds: tuple[Path, Path]) -> Iterator[Instance]:
    """The layernorm-backward bug variant, loaded."""
    inst = load_in_process(load_manifest(two_builds[1] / build.MANIFEST)[BUG.name])
    try:
        yield inst
    finally:
        inst.close()


def test_bug_variant_breaks_only_layernorm_backward(bug_instance: Instance) -> None:
    """The TG_BUG_LAYERNORM_BACKWARD hook leaves forward right and makes dinp fail parity."""
    rng = np.random.default_rng(1)
    x, w, b = (rng.standard_normal(s).astype(np.float32) for s in ((6, 32), (32,), (32,)))
    k = Kernels(bug_instance)
    out, mean, rstd = k.layernorm_forward(x, w, b)
    dims = {"N": 6, "C": 32, "mean_rstd": mean_rstd(x, w)}
    x64, w64, b64 = (a.astype(np.float64) for a in (x, w, b))
    ref_out = ops.layernorm_forward(x64, w64, b64)[0]
    assert_parity("out", out, ref_out, op_tolerance("layernorm_forward", "out", dims))
    dout = rng.standard_normal((6, 32)).astype(np.float32)
    dx, _, _ = k.layernorm_backward(dout, x, w, mean, rstd)
    ref = ops.layernorm_backward(*(a.astype(np.float64) for a in (dout, x, w, mean, rstd)))
    bdims = {**dims, "rstd": float(rstd.max())}
    with pytest.raises(ParityError, match="values stage"):
        assert_parity("dinp", dx, ref[0], op_tolerance("layernorm_backward", "dinp", bdims))


def test_build_variant_matches_the_manifest_entry(
    two_builds: tuple[Path, Path], tmp_path: Path
) -> None:
    """build_variant alone reproduces the variant built alongside the bundled three."""
    art = build.build_variant(tmp_path, BUG)
    assert art.sha256 == load_manifest(two_builds[1] / build.MANIFEST)[BUG.name].sha256
    assert not (tmp_path / build.MANIFEST).exists()


def test_compile_error_raises_build_error_with_compiler_message(tmp_path: Path) -> None:
    """A failing compile raises BuildError carrying clang's own diagnostic."""
    broken = build.Variant("native-broken", "native", ("tg_noop=1",))
    with pytest.raises(build.BuildError, match=r"native-broken: zig cc failed[\s\S]*error:"):
        build.build_variant(tmp_path, broken)


def test_run_tools_runs_its_jobs_at_once_and_names_every_failure(tmp_path: Path) -> None:
    """run_tools (every multi-artifact build: ours and lib2's emcc builds) starts all jobs
    before waiting: a job waiting for a file a later job writes finishes (one after the other
    it would time out). Every failing or unstartable job is named in one BuildError."""
    flag = tmp_path / "flag"
    waits = ["sh", "-c", f"while [ ! -e {flag} ]; do sleep 0.05; done"]
    build.run_tools([("waits", waits), ("writes", ["touch", str(flag)])], "sh", timeout_s=60)
    bad = [
        ("a", ["sh", "-c", "echo boom-a >&2; exit 3"]),
        ("ok", ["true"]),
        ("b", ["sh", "-c", "echo boom-b >&2; exit 4"]),
        ("c", [str(tmp_path / "absent")]),
    ]
    with pytest.raises(build.BuildError) as info:
        build.run_tools(bad, "sh", timeout_s=60)
    text = str(info.value)
    assert "a: sh failed (exit 3):\nboom-a" in text and "b: sh failed (exit 4):\nboom-b" in text
    assert "c: cannot start sh" in text and "ok:" not in text


def test_cli_exits_2_with_the_compiler_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``tinygpt-harness build`` with a broken variant exits 2 and prints the compile error."""
    argv = ["build", "--out", str(tmp_path), "--variant", "wasm32-broken", "-D", "tg_noop=1"]
    assert main(argv) == 2
    assert "error:" in capsys.readouterr().err


def test_missing_toolchain_is_a_build_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without zig the build fails with the interpreter's own message and exit 2."""
    monkeypatch.setattr(build, "zig_command", lambda: [sys.executable, "-m", "no_zig_here"])
    with pytest.raises(build.BuildError, match="No module named no_zig_here"):
        build.build_all(tmp_path)
    assert main(["build", "--out", str(tmp_path)]) == 2
    assert "No module named no_zig_here" in capsys.readouterr().err


def test_missing_emcc_prints_the_install_hint_and_the_rest_builds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without emcc, ``build`` says which artifacts it skips (lib2's emscripten builds too) and
    the exact apt command, builds every zig artifact (lib2-native too) and exits 0; asking for
    the emscripten build directly is a BuildError."""
    monkeypatch.setattr(build, "emcc_path", lambda: None)
    assert main(["build", "--out", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert "emcc not found, skipping em-wasm32, em-wasm64, em-wasm32-pthread" in err
    assert "apt-get install -y emscripten" in err
    assert "lib2-em-wasm32, lib2-em-wasm64, lib2-em-wasm32-pthread; install it" in err
    assert set(load_manifest(tmp_path / build.MANIFEST)) == set(build.TARGETS) | set(
        lib2_names(emscripten=False)
    ) | {build.WEBGPU_NAME}  # WGSL needs no toolchain: registered with or without emcc
    with pytest.raises(build.BuildError, match=r"need `apt-get install -y emscripten`"):
        build.build_emscripten(tmp_path)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-D", "X"], "-D needs --variant"),
        (["--variant", "bogus-x"], "must start with one of"),
        (["--variant", "native-x", "-D", "X;rm"], "is not a MACRO"),
        (["--variant", "native-Upper"], "lower-case"),
    ],
)
def test_bad_variant_options_exit_2(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Malformed --variant / -D options are refused before anything compiles."""
    assert main(["build", "--out", str(tmp_path), *argv]) == 2
    assert message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_variant_cannot_replace_a_bundled_artifact() -> None:
    """A variant named like a bundled artifact is rejected."""
    with pytest.raises(ValueError, match="would replace a bundled artifact"):
        build.Variant("native", "native", ())


def test_artifact_round_trips_through_the_manifest(two_builds: tuple[Path, Path]) -> None:
    """Artifact.to_json/from_json keep every field of a built entry."""
    root = two_builds[1]
    for art in load_manifest(root / build.MANIFEST).values():
        assert Artifact.from_json(art.to_json(root), root) == art


def _checkout_copy(dest: Path) -> Path:
    """Copy what a build reads (sources, header, harness, reference) to ``dest``: a second clone."""
    for rel in ("artifacts/src", "artifacts/include", "artifacts/lib2", "artifacts/webgpu",
                "harness", "reference"):  # fmt: skip
        shutil.copytree(
            build.REPO_ROOT / rel, dest / rel, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy2(build.REPO_ROOT / "pyproject.toml", dest / "pyproject.toml")
    return dest


def _toolchain_copy(dest: Path) -> Path:
    """The installed ziglang package at a second path, as another venv would hold it.

    Hard links (same file system) cost nothing; zig finds its lib/include directory from its
    own path, so this toolchain compiles against ``dest``'s include directory, not the venv's.
    """
    import ziglang

    src = Path(ziglang.__file__).resolve().parent
    site = dest / "site-packages"
    try:
        shutil.copytree(src, site / "ziglang", copy_function=os.link)
    except OSError:  # another file system: a real copy
        shutil.rmtree(site / "ziglang", ignore_errors=True)
        shutil.copytree(src, site / "ziglang")
    return site


def _build_in(checkout: Path, toolchain: Path, cache: Path) -> dict[str, str]:
    """Run ``python -m harness build`` in ``checkout`` with ``toolchain``; return name -> sha256."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(toolchain), str(checkout)]),
        "ZIG_GLOBAL_CACHE_DIR": str(cache),
        "ZIG_LOCAL_CACHE_DIR": str(cache),
    }
    out = checkout / "artifacts" / "build"
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "build", "--out", str(out)],
        cwd=checkout, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    data = json.loads((out / build.MANIFEST).read_text())
    assert all(str(checkout) in a["path"] or not Path(a["path"]).is_absolute()
               for a in data["artifacts"])  # fmt: skip
    return {a["name"]: a["sha256"] for a in data["artifacts"]}


@pytest.mark.slow
def test_two_checkouts_two_toolchains_cold_and_warm_cache_build_identical(tmp_path: Path) -> None:
    """Two checkout paths, two toolchain paths, a cold zig cache then one the other warmed:
    the same sha256s for every artifact, emscripten's included (what ``compare`` needs to
    accept two clones)."""
    cache = tmp_path / "zig-cache"
    first = _build_in(_checkout_copy(tmp_path / "clone-a"), _toolchain_copy(tmp_path / "venv-a"),
                      cache)  # fmt: skip
    assert cache.is_dir()  # the second build reuses what the first compiled
    second = _build_in(_checkout_copy(tmp_path / "clone-b"), _toolchain_copy(tmp_path / "venv-b"),
                       cache)  # fmt: skip
    # the CLI builds the emscripten artifacts too when emcc is installed, and lib2's builds:
    # they are compared too
    em = set(build.EM_TARGETS) if build.emcc_path() is not None else set()
    lib2 = set(lib2_names(build.emcc_path() is not None))
    assert set(first) == set(build.TARGETS) | em | lib2 | {build.WEBGPU_NAME}
    assert first == second


def test_artifacts_embed_no_path(two_builds: tuple[Path, Path]) -> None:
    """No artifact names a directory of the machine that built it (checkout, venv, toolchain)."""
    for art in load_manifest(two_builds[0] / build.MANIFEST).values():
        data = art.path.read_bytes()
        for needle in (str(build.REPO_ROOT), "site-packages", "ziglang", str(two_builds[0])):
            assert needle.encode() not in data, f"{art.name} embeds {needle!r}"


def test_em_env_wrappers_are_per_node_and_the_cache_copy_is_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two checkouts with different Nodes get two emcc Node wrappers, never one rewritten.

    One shared wrapper was rewritten by a checkout without Node 24 (falling back to the system
    Node 20) while another checkout's wasm64 build ran emcc under it, which then failed with
    "invalid memory limits flags". The cache copy is renamed in whole, never seen half-copied.
    """
    system = tmp_path / "debian-cache"
    (system / "sysroot").mkdir(parents=True)
    (system / "sysroot" / "lib.a").write_text("x")
    monkeypatch.setattr(build, "EM_SYSTEM_CACHE", system)
    monkeypatch.setattr(build, "EM_CACHE", tmp_path / "user" / "em-cache")
    wrappers = []
    for node in ("/a/node24/bin/node", "/usr/bin/node"):
        monkeypatch.setattr(build, "em_node", lambda node=node: node)
        env = build.em_env()
        wrapper = Path(env["EM_NODE_JS"])
        assert f'exec "{node}" "$@"' in wrapper.read_text()
        wrappers.append(wrapper)
    assert wrappers[0] != wrappers[1] and wrappers[0].is_file()
    assert 'exec "/a/node24/bin/node"' in wrappers[0].read_text()  # not rewritten by the second
    assert (tmp_path / "user" / "em-cache" / "sysroot" / "lib.a").read_text() == "x"
    assert [p.name for p in (tmp_path / "user").iterdir() if p.name.endswith(".tmp")] == []
