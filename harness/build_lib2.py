"""Build lib2 (``artifacts/lib2``), the second kernel library with its own ABI (docs/lib2.md).

lib2 is a second source tree the build knows about. It reuses :mod:`harness.build`'s toolchain
and flags rather than forking them:

- native: ``zig cc`` with the bundled ``native`` target's flags and :data:`COMMON_FLAGS` (same
  reproducibility measures), linking libm because lib2 calls libc's ``expf``/``tanhf``;
- emscripten, by Debian's ``emcc`` (3.1.x), three ways: ``lib2-em-wasm32``,
  ``lib2-em-wasm64`` (``-sMEMORY64=1 -sWASM_BIGINT`` at ``-O2``, scalar) and
  ``lib2-em-wasm32-pthread`` (``-pthread``, a pool of 2 workers). Each is a MODULARIZE +
  EXPORT_ES6 glue ``lib2.mjs`` beside ``lib2.wasm`` (and ``lib2.worker.js`` for pthread).

Nothing here writes a manifest: loading emscripten artifacts and binding files belong to the
artifact formats (issue 10 sections 1 and 3). The emscripten recipe lives with the measured
pitfalls of docs/findings.md ("Debian's emscripten 3.1.6 on our kernels"); see :func:`em_env`.
:func:`~harness.build.em_env` and :data:`~harness.build.EMCC_INSTALL` are the bundled
library's emscripten recipe (one owner: harness/build.py), shared with the same writable cache.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from harness.build import (
    COMMON_FLAGS,
    EM_MEMORY64_FLAGS,
    EM_PTHREAD_FLAGS,
    EMCC_INSTALL,
    REPO_ROOT,
    TARGETS,
    BuildError,
    em_common_flags,
    em_env,
    emcc_path,
    zig_command,
)

LIB2_SOURCE_DIR = Path("artifacts/lib2/src")  # relative to REPO_ROOT: compiled from there
LIB2_INCLUDE_DIR = Path("artifacts/lib2/include")
LIB2_HEADER = LIB2_INCLUDE_DIR / "lib2.h"
LIB2_NATIVE = "liblib2.so"
LIB2_GLUE = "lib2.mjs"  # emcc names the .wasm and the pthread worker after it

_EXPORT = re.compile(r"^L2_API\s+[^;(]*?\**\s*\b([A-Za-z_][A-Za-z0-9_]*)\s*\(", re.MULTILINE)


def lib2_exports() -> tuple[str, ...]:
    """The exported function names, read from ``lib2.h`` (every ``L2_API`` declaration)."""
    names = tuple(_EXPORT.findall((REPO_ROOT / LIB2_HEADER).read_text()))
    if not names:
        raise BuildError(f"no L2_API declarations in {LIB2_HEADER}")
    return names


def lib2_sources() -> list[Path]:
    """lib2's C sources, relative to REPO_ROOT, in a fixed order."""
    found = sorted((REPO_ROOT / LIB2_SOURCE_DIR).glob("*.c"))
    if not found:
        raise BuildError(f"no C sources in {REPO_ROOT / LIB2_SOURCE_DIR}")
    return [p.relative_to(REPO_ROOT) for p in found]


def native_flags() -> list[str]:
    """Every flag after ``zig cc`` except sources, ``-o`` and the trailing ``-lm``."""
    t = TARGETS["native"]
    return [f"--target={t.triple}", *t.target_flags, *COMMON_FLAGS, f"-I{LIB2_INCLUDE_DIR}",
            "-shared", "-Wl,--build-id=none"]  # fmt: skip


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _run(cmd: list[str], what: str, env: dict[str, str] | None = None, timeout: int = 300) -> None:
    """Run ``cmd`` from REPO_ROOT; raise BuildError with the tool's own message on failure."""
    try:
        proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, check=False,
                              env=env, timeout=timeout)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BuildError(f"{what}: {exc}") from exc
    if proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip()
        raise BuildError(f"{what} failed (exit {proc.returncode}):\n{msg}")


def build_lib2_native(out_dir: Path) -> Path:
    """Compile lib2 into ``out_dir/lib2-native/liblib2.so``; return its path."""
    out = out_dir.resolve() / "lib2-native" / LIB2_NATIVE
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [*zig_command(), "cc", *native_flags(), *map(str, lib2_sources()), "-lm", "-o", str(out)]
    _run(cmd, "zig cc (lib2-native)")
    return out


# ---- emscripten ------------------------------------------------------------------------------


@dataclass(frozen=True)
class EmBuild:
    """One emscripten build of lib2."""

    name: str
    ptr_width: int
    flags: tuple[str, ...]


EM_BUILDS: dict[str, EmBuild] = {
    b.name: b
    for b in (
        EmBuild("lib2-em-wasm32", 32, ()),
        EmBuild("lib2-em-wasm64", 64, EM_MEMORY64_FLAGS),  # scalar: clang 14 + SIMD + wasm64
        EmBuild("lib2-em-wasm32-pthread", 32, EM_PTHREAD_FLAGS),  # kernels single-threaded
    )
}


def em_flags(build: EmBuild) -> list[str]:
    """Every flag after ``emcc`` except sources and ``-o``."""
    exported = ",".join(f"_{name}" for name in (*lib2_exports(), "malloc", "free"))
    return [*em_common_flags(LIB2_INCLUDE_DIR), "-sEXPORT_NAME=createLib2",
            "-sEXPORTED_RUNTIME_METHODS=HEAPU8,HEAPF32", *build.flags,
            f"-sEXPORTED_FUNCTIONS={exported}"]  # fmt: skip


def build_lib2_emscripten(out_dir: Path, name: str) -> dict[str, Path]:
    """Build the emscripten build ``name`` of lib2 into ``out_dir/<name>/``.

    Returns its files by role (``glue``, ``wasm`` and, for pthread, ``worker``). Raises
    BuildError naming :data:`EMCC_INSTALL` when emcc is missing, or with emcc's own message.
    """
    if name not in EM_BUILDS:
        raise BuildError(f"unknown lib2 emscripten build {name!r}; known: {', '.join(EM_BUILDS)}")
    if emcc_path() is None:
        raise BuildError(f"emcc not found: lib2's emscripten builds need `{EMCC_INSTALL}`")
    d = out_dir.resolve() / name
    d.mkdir(parents=True, exist_ok=True)
    glue = d / LIB2_GLUE
    cmd = ["emcc", *em_flags(EM_BUILDS[name]), *map(str, lib2_sources()), "-o", str(glue)]
    # a cold cache builds the wasm64 system libraries first: minutes, once
    _run(cmd, f"emcc ({name})", env=em_env(), timeout=1800)
    files = {"glue": glue, "wasm": glue.with_suffix(".wasm")}
    worker = glue.with_suffix(".worker.js")
    if worker.is_file():
        files["worker"] = worker
    return files


def file_sha256s(files: dict[str, Path]) -> dict[str, str]:
    """sha256 of each file, by role."""
    return {role: _sha256(p) for role, p in files.items()}
