"""Fixture artifacts for the host tests, built once per session from fixtures/hostfix.c.

hostfix.c implements the whole TinyGPT ABI (same header, so the engines' static ABI checks
pass) with a few observable exports and some that fail on purpose. Binaries go to a temp dir.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from harness.abi import EXPORTS, signatures_json
from harness.artifact import Artifact
from harness.hosts.timeouts import Timeouts

FIXTURE_C = Path(__file__).parent / "fixtures" / "hostfix.c"
INCLUDE = Path(__file__).resolve().parents[2] / "artifacts" / "include"
TARGETS = {
    "wasm32": ("wasm32-freestanding", "wasm", 32),
    "wasm64": ("wasm64-freestanding", "wasm", 64),
    "native": ("x86_64-linux-gnu", "native", 64),
}
OMITTED = "tg_defaults_json"  # left out of the *-missing builds

# Short call limit so hang tests take ~2 s; loads and transfers keep room for a loaded machine.
FAST = Timeouts(call_s=2.0, load_s=60.0, time_s=60.0, transfer_s=60.0, start_s=60.0)


def _compile(name: str, target_name: str, out: Path, *, omit: bool = False) -> Artifact:
    target, kind, width = TARGETS[target_name]
    exports = [e for e in EXPORTS if not (omit and e == OMITTED)]
    flags = ["-O2", f"-I{INCLUDE}"] + (["-DHOSTFIX_OMIT_DEFAULTS_JSON"] if omit else [])
    if kind == "wasm":
        flags += ["-nostdlib", "-Wl,--no-entry", *(f"-Wl,--export={e}" for e in exports)]
    else:
        flags += ["-shared", "-fPIC"]
    cmd = [sys.executable, "-m", "ziglang", "cc", f"--target={target}", *flags, "-o", str(out)]
    subprocess.run([*cmd, str(FIXTURE_C)], check=True, capture_output=True, timeout=300)
    return Artifact(
        name=name,
        format=kind,
        path=out,
        sha256=hashlib.sha256(out.read_bytes()).hexdigest(),
        ptr_width=width,
        target=target,
        features=("memory64",) if width == 64 and kind == "wasm" else (),
        signatures=signatures_json(),
    )


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Artifact]:
    """wasm32/wasm64/native fixture builds, *-missing builds lacking one export, a corrupt wasm
    and a corrupt (truncated) native library."""
    out = tmp_path_factory.mktemp("hostfix")
    built = {
        n: _compile(n, n, out / f"hostfix_{n}.{'so' if n == 'native' else 'wasm'}") for n in TARGETS
    }
    for n in ("wasm32", "native"):
        path = out / f"hostfix_{n}_missing.{'so' if n == 'native' else 'wasm'}"
        built[f"{n}-missing"] = _compile(f"{n}-missing", n, path, omit=True)
    corrupt = out / "corrupt.wasm"
    corrupt.write_bytes(built["wasm32"].path.read_bytes()[:40])  # valid magic, truncated body
    # its manifest hash is its own: the engine, not the hash check, must reject the module
    sha = hashlib.sha256(corrupt.read_bytes()).hexdigest()
    built["corrupt"] = replace(built["wasm32"], name="corrupt", path=corrupt, sha256=sha)
    # a library cut in half, its own hash too: dlopen would map pages past the end (SIGBUS)
    cut = out / "corrupt_native.so"
    data = built["native"].path.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    sha = hashlib.sha256(cut.read_bytes()).hexdigest()
    built["corrupt-native"] = replace(built["native"], name="corrupt-native", path=cut, sha256=sha)
    return built


@pytest.fixture(scope="session")
def fast() -> Timeouts:
    """Timeouts for tests: calls give up after 2 s (hang tests), the rest keep ample room."""
    return FAST
