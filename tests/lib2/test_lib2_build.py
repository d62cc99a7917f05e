"""lib2's builds: native (zig) and Debian's emcc three ways, each reproducible.

The emscripten tests are skipped, with the exact install hint, when emcc is not installed.
Loading the emscripten builds belongs to the artifact formats (issue 10 section 1); here the
modules are only parsed (wasmtime) to check their exports.
"""

from __future__ import annotations

import ctypes
import shutil
from pathlib import Path

import pytest
import wasmtime

from harness.build import EMCC_INSTALL, BuildError, emcc_path
from harness.build_lib2 import (
    EM_BUILDS,
    build_lib2_emscripten,
    build_lib2_native,
    file_sha256s,
    lib2_exports,
)

ISSUE_ABI = (
    "tg_malloc", "tg_free", "matmul_forward", "matmul_backward", "layernorm_forward",
    "layernorm_backward", "attention_forward", "attention_backward", "adamw_step",
    "tg_model_create", "tg_model_free", "tg_model_num_params", "tg_set_data", "tg_train_step",
    "tg_eval", "tg_generate", "tg_state_bytes", "tg_export_state", "tg_import_state",
)  # fmt: skip
"""The exports issue 10 section 4 lists, no more, no fewer."""


def test_header_declares_exactly_the_issue_abi() -> None:
    """lib2.h's L2_API declarations (what both builds export) are the issue's list."""
    assert sorted(lib2_exports()) == sorted(ISSUE_ABI)


def test_native_build_is_reproducible_and_exports_the_abi(lib2_so: Path, tmp_path: Path) -> None:
    """A second native build in another directory has the same sha256; every export resolves."""
    again = build_lib2_native(tmp_path)
    assert file_sha256s({"so": again}) == file_sha256s({"so": lib2_so})
    lib = ctypes.CDLL(str(again))
    for name in ISSUE_ABI:
        assert hasattr(lib, name), name


def _wasm_exports(path: Path, name: str) -> set[str]:
    """Export names of a built module (parsed by wasmtime with the features the build uses)."""
    config = wasmtime.Config()
    if "wasm64" in name:
        config.wasm_memory64 = True
    if "pthread" in name:
        config.wasm_threads = True
    return {e.name for e in wasmtime.Module(wasmtime.Engine(config), path.read_bytes()).exports}


@pytest.fixture(scope="module")
def em_twice(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, dict[str, Path]], ...]:
    """Every emscripten build of lib2, built twice into two directories."""
    if emcc_path() is None:
        pytest.skip(f"emcc not found: lib2's emscripten builds need `{EMCC_INSTALL}`")
    dirs = (tmp_path_factory.mktemp("em-a"), tmp_path_factory.mktemp("em-b"))
    return tuple(build_lib2_emscripten(d) for d in dirs)  # each dir's three concurrently


@pytest.mark.slow  # six emcc builds: ~20 s warm, minutes on a cold wasm64 cache
@pytest.mark.parametrize("name", list(EM_BUILDS))
def test_emscripten_build_is_reproducible(
    em_twice: tuple[dict[str, dict[str, Path]], ...], name: str
) -> None:
    """Two builds give the same sha256 for the glue, the module and (pthread) the worker; the
    module exports the whole ABI plus _malloc/_free's targets, the glue names the factory."""
    first, second = (b[name] for b in em_twice)
    assert file_sha256s(first) == file_sha256s(second)
    expected_roles = {"glue", "wasm", "worker"} if "pthread" in name else {"glue", "wasm"}
    assert set(first) == expected_roles
    exports = _wasm_exports(first["wasm"], name)
    assert set(ISSUE_ABI) | {"malloc", "free"} <= exports
    assert "createLib2" in first["glue"].read_text()


@pytest.mark.slow
def test_memory64_build_never_imports_memcpy_big(
    em_twice: tuple[dict[str, dict[str, Path]], ...],
) -> None:
    """3.1.6's Memory64 glue breaks in emscripten_memcpy_big (docs/findings.md); lib2's wasm64
    module must not import it (lib2 copies with loops, built with -fno-builtin)."""
    wasm = em_twice[0]["lib2-em-wasm64"]["wasm"]
    config = wasmtime.Config()
    config.wasm_memory64 = True
    module = wasmtime.Module(wasmtime.Engine(config), wasm.read_bytes())
    assert "emscripten_memcpy_big" not in {i.name for i in module.imports}


def test_missing_emcc_names_the_install_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without emcc on PATH the build raises BuildError quoting the apt install command."""
    monkeypatch.setenv("PATH", str(tmp_path))
    assert shutil.which("emcc") is None
    with pytest.raises(BuildError, match=f"`{EMCC_INSTALL}`"):
        build_lib2_emscripten(tmp_path, ["lib2-em-wasm32"])
