"""Build lib2 (``artifacts/lib2``), the second kernel library with its own ABI (docs/lib2.md).

lib2 is a second source tree the build knows about. It reuses :mod:`harness.build`'s toolchain
and flags rather than forking them:

- native: ``zig cc`` with the bundled ``native`` target's flags and :data:`COMMON_FLAGS` (same
  reproducibility measures), linking libm because lib2 calls libc's ``expf``/``tanhf``;
- emscripten, by Debian's ``emcc`` (3.1.x), three ways: ``lib2-em-wasm32``,
  ``lib2-em-wasm64`` (``-sMEMORY64=1 -sWASM_BIGINT`` at ``-O2``, scalar) and
  ``lib2-em-wasm32-pthread`` (``-pthread``, a pool of 2 workers). Each is a MODULARIZE +
  EXPORT_ES6 glue ``lib2.mjs`` beside ``lib2.wasm`` (and ``lib2.worker.js`` for pthread).

:func:`lib2_artifacts` builds them as manifest entries bound by ``artifacts/lib2/lib2.binding.toml``
(``tinygpt-harness build`` writes them beside the bundled library's). The emscripten recipe lives
with the measured
pitfalls of docs/findings.md ("Debian's emscripten 3.1.6 on our kernels"); see :func:`em_env`.
:func:`~harness.build.em_env` and :data:`~harness.build.EMCC_INSTALL` are the bundled
library's emscripten recipe (one owner: harness/build.py), shared with the same writable cache.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.artifact import Artifact
from harness.bindings import load_binding_cached
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
    em_version,
    emcc_path,
    run_tool,
    run_tools,
    toolchain_version,
    zig_command,
)
from harness.formats import digest, file_sha256, get_format

LIB2_SOURCE_DIR = Path("artifacts/lib2/src")  # relative to REPO_ROOT: compiled from there
LIB2_INCLUDE_DIR = Path("artifacts/lib2/include")
LIB2_HEADER = LIB2_INCLUDE_DIR / "lib2.h"
LIB2_NATIVE = "liblib2.so"
LIB2_GLUE = "lib2.mjs"  # emcc names the .wasm and the pthread worker after it
LIB2_BINDING = Path("artifacts/lib2/lib2.binding.toml")  # every lib2 artifact's binding
LIB2_NATIVE_NAME = "lib2-native"

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


def build_lib2_native(
    out_dir: Path, defines: tuple[str, ...] = (), name: str = LIB2_NATIVE_NAME
) -> Path:
    """Compile lib2 into ``out_dir/<name>/liblib2.so``; return its path.

    ``defines`` are extra ``-D`` macros: the fault builds of the tests (``L2_BUG_*`` in
    ``lib2_model.c``), built under another ``name`` so they never replace the clean build.
    """
    out = out_dir.resolve() / name / LIB2_NATIVE
    out.parent.mkdir(parents=True, exist_ok=True)
    macros = [f"-D{d}" for d in defines]
    cmd = [*zig_command(), "cc", *native_flags(), *macros, *map(str, lib2_sources()), "-lm",
           "-o", str(out)]  # fmt: skip
    run_tool(cmd, f"zig cc ({name})")
    return out


# ---- emscripten ------------------------------------------------------------------------------


@dataclass(frozen=True)
class EmBuild:
    """One emscripten build of lib2."""

    name: str
    ptr_width: int
    flags: tuple[str, ...]
    features: tuple[str, ...] = ()


EM_BUILDS: dict[str, EmBuild] = {
    b.name: b
    for b in (
        EmBuild("lib2-em-wasm32", 32, ()),
        # scalar: clang 14 + SIMD + wasm64
        EmBuild("lib2-em-wasm64", 64, EM_MEMORY64_FLAGS, ("memory64", "bigint")),
        # kernels single-threaded
        EmBuild("lib2-em-wasm32-pthread", 32, EM_PTHREAD_FLAGS, ("pthread",)),
    )
}


def em_flags(build: EmBuild) -> list[str]:
    """Every flag after ``emcc`` except sources and ``-o``."""
    exported = ",".join(f"_{name}" for name in (*lib2_exports(), "malloc", "free"))
    return [*em_common_flags(LIB2_INCLUDE_DIR), "-sEXPORT_NAME=createLib2",
            "-sEXPORTED_RUNTIME_METHODS=HEAPU8,HEAPF32", *build.flags,
            f"-sEXPORTED_FUNCTIONS={exported}"]  # fmt: skip


def build_lib2_emscripten(
    out_dir: Path, names: Sequence[str] = tuple(EM_BUILDS)
) -> dict[str, dict[str, Path]]:
    """Build the emscripten builds ``names`` of lib2 into ``out_dir/<name>/``, concurrently
    (:func:`harness.build.run_tools`, as the bundled library's builds).

    Returns each build's files by role (``glue``, ``wasm`` and, for pthread, ``worker``).
    Raises BuildError naming :data:`EMCC_INSTALL` when emcc is missing, or with emcc's own
    message.
    """
    unknown = [n for n in names if n not in EM_BUILDS]
    if unknown:
        raise BuildError(
            f"unknown lib2 emscripten build(s) {unknown}; known: {', '.join(EM_BUILDS)}"
        )
    if emcc_path() is None:
        raise BuildError(f"emcc not found: lib2's emscripten builds need `{EMCC_INSTALL}`")
    glues = {name: out_dir.resolve() / name / LIB2_GLUE for name in names}
    jobs = []
    for name, glue in glues.items():
        glue.parent.mkdir(parents=True, exist_ok=True)
        jobs.append((name, ["emcc", *em_flags(EM_BUILDS[name]), *map(str, lib2_sources()),
                            "-o", str(glue)]))  # fmt: skip
    # a cold cache builds the wasm64 system libraries first: minutes, once
    run_tools(jobs, "emcc", timeout_s=1800, env=em_env())
    built: dict[str, dict[str, Path]] = {}
    for name, glue in glues.items():
        files = {"glue": glue, "wasm": glue.with_suffix(".wasm")}
        worker = glue.with_suffix(".worker.js")
        if worker.is_file():
            files["worker"] = worker
        built[name] = files
    return built


def file_sha256s(files: dict[str, Path]) -> dict[str, str]:
    """sha256 of each file, by role."""
    return {role: file_sha256(p) for role, p in files.items()}


# ---- manifest entries --------------------------------------------------------------------


def lib2_names(emscripten: bool) -> tuple[str, ...]:
    """The artifact names a full build registers (the emscripten ones only with emcc)."""
    return (LIB2_NATIVE_NAME, *(EM_BUILDS if emscripten else ()))


def lib2_inputs() -> list[bytes]:
    """Everything lib2's manifest entries are built from: sources, header, flags, binding (the
    entries' signatures come from it), for :func:`harness.build.inputs_sha256`."""
    parts = [str(rel).encode() + b"\0" + (REPO_ROOT / rel).read_bytes()
             for rel in (*lib2_sources(), LIB2_HEADER, LIB2_BINDING)]  # fmt: skip
    parts.append(" ".join(native_flags()).encode())
    parts += [" ".join(em_flags(b)).encode() for b in EM_BUILDS.values()]
    return parts


def lib2_native_artifact(
    out_dir: Path, defines: tuple[str, ...] = (), name: str = LIB2_NATIVE_NAME
) -> Artifact:
    """Build lib2 natively into ``out_dir`` (with ``defines``: a fault build named ``name``) and
    return it as a manifest entry bound by :data:`LIB2_BINDING`."""
    binding = REPO_ROOT / LIB2_BINDING
    so = build_lib2_native(out_dir, defines, name)
    files, sha256 = digest({get_format("native").roles[0]: so})
    t = TARGETS["native"]
    macros = tuple(f"-D{d}" for d in defines)
    return Artifact(
        name=name, format="native", path=so, sha256=sha256, files=files,
        ptr_width=t.ptr_width, target=t.triple, features=t.features,
        toolchain=toolchain_version(), flags=(*native_flags(), *macros, "-lm"),
        signatures=load_binding_cached(binding).signatures_json(), binding=binding,
    )  # fmt: skip


def lib2_artifacts(out_dir: Path, emscripten: bool) -> dict[str, Artifact]:
    """Build lib2 natively (and, with ``emscripten``, its three emcc builds) into ``out_dir``;
    return them as manifest entries bound by :data:`LIB2_BINDING`."""
    binding = REPO_ROOT / LIB2_BINDING
    signatures = load_binding_cached(binding).signatures_json()
    built = {LIB2_NATIVE_NAME: lib2_native_artifact(out_dir)}
    if not emscripten:
        return built
    toolchain = em_version()
    for name, roles in build_lib2_emscripten(out_dir).items():
        b = EM_BUILDS[name]
        files, sha256 = digest(roles)
        built[name] = Artifact(
            name=name, format="emscripten", path=roles["glue"], sha256=sha256, files=files,
            ptr_width=b.ptr_width, target=f"wasm{b.ptr_width}-unknown-emscripten",
            features=b.features, toolchain=toolchain, flags=tuple(em_flags(b)),
            signatures=signatures, binding=binding,
        )  # fmt: skip
    return built
