"""``tinygpt-harness build``: compile the one C source tree into wasm32, wasm64 and native builds.

Every artifact is built by ``python -m ziglang cc`` (clang inside zig), so the same toolchain
version lands on every machine through PyPI. The three bundled targets:

- ``wasm32``: ``wasm32-freestanding`` with simd128;
- ``wasm64``: ``wasm64-freestanding`` with simd128 (the wasm64 target implies Memory64);

  both freestanding builds have no threads (no libc, no shared memory): ``tg_set_threads``
  reports 1 in effect there and every kernel runs serially (artifacts/src/tg_threads.c);
- ``native``: an ``x86_64-linux-gnu`` shared library at ``-mcpu=x86_64_v3`` (AVX2 + FMA + BMI2,
  every x86-64 CPU since Haswell 2013 / Zen 2017): v2 has only 4-lane SSE vectors, which would
  cap the matmul at half of what numpy's sgemm reaches; built with ``-pthread``, so the kernels
  run on the library's thread pool (``tg_set_threads``, docs/threads.md);
- ``native-x86-64``: the same library for the original x86-64 baseline (SSE2 only), which runs
  on every x86-64 CPU. It is bundled so the portable binary is tested and measured too, and so
  the cost of that portability is a figure in every report rather than a guess.

Builds are reproducible: sources are passed as paths relative to the repository root (the
compiler's working directory), nothing is built with debug info (``-g0``: zig cc emits DWARF by
default, and its line table named the toolchain's include directory inside whichever venv
installed ziglang, so two venvs, or one zig cache warmed by another venv, built different
sha256s), and the compilation directory is recorded as ``.`` (``-fdebug-compilation-dir=.``);
the native link drops its build id; the manifest holds no timestamps. Building in any checkout
directory, with ziglang installed at any path, from a cold or a shared zig cache, gives
identical sha256s (``tests/kernels/test_kernels_build.py``).

``tinygpt-harness build`` also builds lib2 (``artifacts/lib2``, :mod:`harness.build_lib2`):
``lib2-native`` and, with emcc, its three emscripten builds, each bound by lib2's binding file.

A *variant* is an extra named artifact compiled from a bundled target with extra ``-D`` macros
(e.g. ``native-bug-lnback`` with ``TG_BUG_LAYERNORM_BACKWARD``); it is added to the manifest next
to the bundled three, never instead of them.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.abi import EXPORTS, signatures_json
from harness.artifact import MANIFEST_SCHEMA, Artifact, ManifestError, load_manifest
from harness.formats import digest, file_sha256, get_format
from harness.hosts.install import node_binary

REPO_ROOT = Path(__file__).resolve().parents[1]
SOURCE_DIR = Path("artifacts/src")  # relative to REPO_ROOT: compiled from there
INCLUDE_DIR = Path("artifacts/include")
DEFAULT_OUT = REPO_ROOT / "artifacts" / "build"
# Our WGSL kernels (docs/webgpu.md): shipped text, copied into the build as artifact `webgpu`.
WEBGPU_DIR = Path("artifacts/webgpu")
WEBGPU_NAME = "webgpu"
MANIFEST = "manifest.json"
# The bundled library's manifest, in this checkout: every command's default, never relative to
# the cwd (a project runs the harness from its own directory).
BUNDLED_MANIFEST = DEFAULT_OUT / MANIFEST

_MACRO = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(=[A-Za-z0-9_.+-]*)?$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


class BuildError(Exception):
    """The toolchain is missing or a compile failed; the message is the compiler's own."""


@dataclass(frozen=True)
class Target:
    """One bundled build target."""

    name: str
    format: str  # a harness.formats name
    triple: str
    ptr_width: int
    output: str  # file name inside the artifact's directory
    target_flags: tuple[str, ...]
    features: tuple[str, ...]


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target("wasm32", "wasm", "wasm32-freestanding", 32, "tinygpt.wasm",
               ("-msimd128",), ("simd128",)),
        Target("wasm64", "wasm", "wasm64-freestanding", 64, "tinygpt.wasm",
               ("-msimd128",), ("simd128", "memory64")),
        Target("native", "native", "x86_64-linux-gnu", 64, "libtinygpt.so",
               ("-mcpu=x86_64_v3", "-fPIC", "-pthread"), ("x86-64-v3", "avx2", "fma", "pthreads")),
        Target("native-x86-64", "native", "x86_64-linux-gnu", 64, "libtinygpt.so",
               ("-mcpu=x86_64", "-fPIC", "-pthread"), ("x86-64", "sse2", "pthreads")),
    )
}  # fmt: skip

COMMON_FLAGS: tuple[str, ...] = (
    "-O3",
    "-std=c11",
    "-Wall",
    "-Wextra",
    # the toolchain is pinned (ziglang on PyPI), so a warning is a real change: fail on it,
    # since a successful build would otherwise swallow the compiler's output
    "-Werror",
    # sqrt must lower to one instruction, never a libm call that sets errno
    "-fno-math-errno",
    "-fvisibility=hidden",
    # no debug info: zig cc emits DWARF by default, and its .debug_line names the toolchain's
    # include directory (inside whichever venv installed ziglang), so two venvs built two
    # sha256s, and a zig cache warmed by one venv leaked its path into the other's build
    "-g0",
    # the checkout's path would otherwise be baked into the binary (the compilation directory),
    # so two clones of one commit would build different sha256s and the gate would refuse them
    "-fdebug-compilation-dir=.",
)


# ---- emscripten (Debian's emcc) ------------------------------------------------------------
# The bundled library built by emscripten, in the `emscripten` format (harness/formats): glue +
# .wasm (+ pthread worker). emcc is Debian's package (`apt-get install -y emscripten`, 3.1.x; no
# emsdk, nothing downloaded). Facts this recipe lives with (docs/findings.md, emscripten):
# - -O2, not -O3: 3.1.6's -O3 minifies the module's import names but not the glue's (wasm64);
# - the Memory64 build is scalar: clang 14 crashes selecting SIMD extracts with i64 indices;
# - the wasm64 system libraries are not in Debian's frozen cache: a writable copy is used;
# - emcc runs `node --experimental-wasm-bigint`, which Node >= 22 refuses: EM_NODE_JS is a
#   wrapper dropping that flag.
EMCC_INSTALL = "apt-get install -y emscripten"
EM_SYSTEM_CACHE = Path("/usr/share/emscripten/cache")
EM_CACHE = Path.home() / ".cache" / "tinygpt-harness" / "em-cache"
EM_GLUE = "tinygpt.mjs"  # the .wasm and worker .js are named after it by emcc


@dataclass(frozen=True)
class EmTarget:
    """One emscripten build of the bundled library."""

    name: str
    ptr_width: int
    target_flags: tuple[str, ...]
    features: tuple[str, ...]


# 3.1.6's Memory64 glue does Number arithmetic on BigInt sizes in its JS helpers
# (TypeError "Cannot convert a BigInt value to a number", docs/findings.md):
# - growing memory (emscripten_resize_heap, sbrk): so a fixed 1 GiB, reserved and committed by
#   the OS as pages are touched;
# - memcpy of >= 512 bytes (emscripten_memcpy_big): -fno-builtin keeps clang from turning the
#   kernels' copy loops into memcpy calls, so the module never imports it.
# Shared by every library built with emscripten (harness/build_lib2.py too).
EM_MEMORY64_FLAGS: tuple[str, ...] = (
    "-sMEMORY64=1", "-sWASM_BIGINT", "-sALLOW_MEMORY_GROWTH=0", "-sINITIAL_MEMORY=1073741824",
    "-fno-builtin",
)  # fmt: skip
# The pool is what a format's loading must survive; growth + pthreads is slower JS access:
# known. STRICT=2: a pthread_create past the pool fails with EAGAIN (tg_set_threads then puts
# fewer in effect) instead of waiting for a worker the blocked caller never lets start.
EM_PTHREAD_FLAGS: tuple[str, ...] = (
    "-pthread",
    "-sPTHREAD_POOL_SIZE=2",
    "-sPTHREAD_POOL_SIZE_STRICT=2",
    "-Wno-pthreads-mem-growth",
)

EM_TARGETS: dict[str, EmTarget] = {
    t.name: t
    for t in (
        EmTarget("em-wasm32", 32, ("-msimd128",), ("simd128",)),
        EmTarget("em-wasm64", 64, EM_MEMORY64_FLAGS, ("memory64", "bigint")),
        EmTarget("em-wasm32-pthread", 32, ("-msimd128", *EM_PTHREAD_FLAGS), ("simd128", "pthread")),
    )
}


def em_common_flags(include_dir: Path) -> tuple[str, ...]:
    """The flags every emscripten build of a kernel library shares, headers from ``include_dir``.

    -O2, not -O3: 3.1.6's -O3 minifies the wasm64 module's import names but not its glue's.
    """
    return (
        "-O2", "-std=c11", "-Wall", "-Wextra", "-Werror", "-fno-math-errno", "-g0",
        f"-I{include_dir}", "-sMODULARIZE", "-sEXPORT_ES6", "-sALLOW_MEMORY_GROWTH=1",
        "-sENVIRONMENT=web,worker,node",
    )  # fmt: skip


def em_flags(target: EmTarget) -> list[str]:
    """Every flag after ``emcc`` except sources and ``-o`` (recorded in the manifest)."""
    exported = ",".join(f"_{name}" for name in (*EXPORTS, "malloc", "free"))
    return [*em_common_flags(INCLUDE_DIR), "-sEXPORTED_RUNTIME_METHODS=HEAPU8",
            *target.target_flags, f"-sEXPORTED_FUNCTIONS={exported}"]  # fmt: skip


def emcc_path() -> str | None:
    """Debian's ``emcc`` if installed."""
    return shutil.which("emcc")


EM_NODES = ("node24", "node22")  # project-local Nodes that run Memory64 modules without flags


def em_node() -> str:
    """The Node emcc drives: the project's Node 24 or 22, else the system ``node``.

    emcc runs compiled JS (struct_info for wasm64 builds) under its configured Node; Node 20
    cannot instantiate a Memory64 module, so the system Node serves only when no project Node
    is installed (``tinygpt-harness install-hosts``), and the wasm64 build then fails in Node's
    own words (``invalid memory limits flags``).
    """
    for alias in EM_NODES:
        node = node_binary(alias)
        if node.is_file():
            return str(node)
    return shutil.which("node") or "node"


def _atomic_write(path: Path, text: str, mode: int) -> None:
    """Write ``text`` to ``path`` by rename, so a concurrent reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.chmod(mode)
    os.replace(tmp, path)


def _em_cache() -> Path:
    """The writable copy of Debian's frozen cache, made once (copied aside, then renamed in).

    Two builds starting together (two checkouts, a test beside a build) each copy and one
    rename wins; the loser's copy is removed. emcc itself locks the cache while adding to it.
    """
    if not EM_CACHE.is_dir():
        EM_CACHE.parent.mkdir(parents=True, exist_ok=True)
        tmp = EM_CACHE.with_name(f".{EM_CACHE.name}.{os.getpid()}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            shutil.copytree(EM_SYSTEM_CACHE, tmp)
        except OSError as exc:  # an emcc that is not Debian's (emsdk) has no such cache
            shutil.rmtree(tmp, ignore_errors=True)
            raise BuildError(
                f"emscripten's cache {EM_SYSTEM_CACHE} cannot be copied ({exc}): the "
                f"emscripten builds need Debian's emcc: {EMCC_INSTALL}"
            ) from exc
        try:
            tmp.rename(EM_CACHE)
        except OSError:  # another build's copy got there first
            shutil.rmtree(tmp, ignore_errors=True)
    return EM_CACHE


def em_env() -> dict[str, str]:
    """The environment emcc runs in: acorn found, a writable cache, a Node it can drive.

    The Node wrapper is named after the Node it runs, so checkouts with different Nodes never
    rewrite one another's wrapper mid-build (a shared name did: one checkout's fallback to
    the system Node 20 broke another's wasm64 build).
    """
    cache = _em_cache()
    node_exe = em_node()
    script = (
        "#!/bin/sh\n# emcc's node, without the flags Node >= 22 refuses (harness/build.py)\n"
        'for a do shift; case "$a" in --experimental-wasm-bigint|--experimental-wasm-memory64)'
        ' ;; *) set -- "$@" "$a";; esac; done\n'
        f'exec "{node_exe}" "$@"\n'
    )
    tag = hashlib.sha256(node_exe.encode()).hexdigest()[:12]
    wrapper = cache.parent / f"em-node-{tag}"
    if not wrapper.is_file() or wrapper.read_text() != script:
        _atomic_write(wrapper, script, 0o755)
    env = dict(os.environ)
    env["NODE_PATH"] = os.pathsep.join(filter(None, ["/usr/share/nodejs", env.get("NODE_PATH")]))
    env["EM_CACHE"] = str(cache)
    env["EM_FROZEN_CACHE"] = ""  # any non-empty value is truthy to emcc
    env["EM_NODE_JS"] = str(wrapper)
    return env


def em_version() -> str:
    """e.g. ``emcc 3.1.6 (clang 14.0.6)``."""
    out = subprocess.run(["emcc", "--version"], capture_output=True, text=True, check=False,
                         env=em_env(), timeout=120).stdout  # fmt: skip
    m = re.search(r"emcc \(.*?\) (\S+)", out)
    clang = subprocess.run(["clang-14", "--version"], capture_output=True, text=True, check=False)
    c = re.search(r"clang version (\S+)", clang.stdout)
    return f"emcc {m.group(1) if m else '?'} (clang {c.group(1) if c else '?'})"


def run_tools(
    jobs: Sequence[tuple[str, Sequence[str]]],
    tool: str,
    timeout_s: int,
    env: Mapping[str, str] | None = None,
) -> None:
    """Run each ``(name, command)`` job concurrently from the repository root and wait for all
    of them; raise one BuildError naming each that could not start, failed or hung (with the
    tool's own message). Every build of several artifacts (ours, lib2's) goes through here."""
    procs: list[tuple[str, subprocess.Popen[str]]] = []
    errors: list[str] = []
    for name, cmd in jobs:
        try:
            procs.append((name, subprocess.Popen(
                list(cmd), cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True, env=None if env is None else dict(env))))  # fmt: skip
        except OSError as exc:
            errors.append(f"{name}: cannot start {tool}: {exc}")
    for name, proc in procs:
        try:
            _, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            errors.append(f"{name}: {tool} timed out after {timeout_s} s")
            continue
        if proc.returncode != 0:
            errors.append(f"{name}: {tool} failed (exit {proc.returncode}):\n{err.strip()}")
    if errors:
        raise BuildError("\n".join(errors))


def _em_command(target: EmTarget, out_dir: Path) -> list[str]:
    out_dir.mkdir(parents=True, exist_ok=True)
    return ["emcc", *em_flags(target), *map(str, sources()), "-o", str(out_dir / EM_GLUE)]


def build_emscripten(
    out_dir: Path, names: Sequence[str] = tuple(EM_TARGETS)
) -> dict[str, Artifact]:
    """Build the emscripten artifacts ``names`` into ``out_dir/<name>/``, concurrently.

    Raises BuildError naming ``EMCC_INSTALL`` when emcc is missing, or with emcc's message.
    """
    if emcc_path() is None:
        raise BuildError(f"emcc not found: the emscripten artifacts need `{EMCC_INSTALL}`")
    out_dir = out_dir.resolve()
    env = em_env()
    toolchain = em_version()
    targets = [EM_TARGETS[n] for n in names]
    # a cold cache builds the wasm64 system libraries first: minutes, once
    run_tools([(t.name, _em_command(t, out_dir / t.name)) for t in targets], "emcc",
              timeout_s=1800, env=env)  # fmt: skip
    built: dict[str, Artifact] = {}
    for t in targets:
        d = out_dir / t.name
        glue = d / EM_GLUE
        roles = {"glue": glue, "wasm": glue.with_suffix(".wasm")}
        worker = glue.with_suffix(".worker.js")
        if worker.is_file():
            roles["worker"] = worker
        files, sha256 = digest(roles)
        built[t.name] = Artifact(
            name=t.name,
            format="emscripten",
            path=glue,
            sha256=sha256,
            files=files,
            ptr_width=t.ptr_width,
            target=f"wasm{t.ptr_width}-unknown-emscripten",
            features=t.features,
            toolchain=toolchain,
            flags=tuple(em_flags(t)),
            signatures=signatures_json(),
        )
    return built


@dataclass(frozen=True)
class Variant:
    """An extra artifact: a bundled target rebuilt with extra ``-D`` macros."""

    name: str  # e.g. "native-bug-lnback"
    base: str  # one of TARGETS
    defines: tuple[str, ...]  # e.g. ("TG_BUG_LAYERNORM_BACKWARD",)

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(
                f"variant name {self.name!r} must be lower-case letters, digits, '.', '_', '-'"
            )
        if self.name in TARGETS:
            raise ValueError(f"variant name {self.name!r} would replace a bundled artifact")
        if self.base not in TARGETS:
            raise ValueError(
                f"variant {self.name!r}: base {self.base!r} is not one of {', '.join(TARGETS)}"
            )
        for d in self.defines:
            if not _MACRO.match(d):
                raise ValueError(f"variant {self.name!r}: -D {d!r} is not a MACRO or MACRO=VALUE")


def run_tool(
    cmd: Sequence[str], what: str, env: Mapping[str, str] | None = None, timeout: int = 300
) -> str:
    """Run a toolchain command from the repository root; return stdout or raise BuildError
    with the tool's own message (or the timeout)."""
    try:
        proc = subprocess.run(
            list(cmd),
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=False,
            env=None if env is None else dict(env),
            timeout=timeout,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BuildError(f"{what}: {exc}") from exc
    if proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip()
        raise BuildError(f"{what} failed (exit {proc.returncode}):\n{msg}")
    return proc.stdout


def zig_command() -> list[str]:
    """The zig driver: ``python -m ziglang`` from the running interpreter."""
    return [sys.executable, "-m", "ziglang"]


def toolchain_version() -> str:
    """Return e.g. ``zig 0.17.1 (clang 22.1.8)``; raises BuildError without the toolchain."""
    zig = run_tool([*zig_command(), "version"], "zig version").strip()
    banner = run_tool([*zig_command(), "cc", "--version"], "zig cc --version")
    m = re.search(r"clang version (\S+)", banner)
    clang = m.group(1) if m else banner.splitlines()[0] if banner else "unknown"
    return f"zig {zig} (clang {clang})"


def sources() -> list[Path]:
    """The C sources, relative to REPO_ROOT, in a fixed order."""
    found = sorted((REPO_ROOT / SOURCE_DIR).glob("*.c"))
    if not found:
        raise BuildError(f"no C sources in {REPO_ROOT / SOURCE_DIR}")
    return [p.relative_to(REPO_ROOT) for p in found]


def compile_flags(target: Target, defines: Sequence[str] = ()) -> list[str]:
    """Every flag after ``zig cc`` except sources and ``-o`` (recorded in the manifest)."""
    flags = [f"--target={target.triple}", *target.target_flags, *COMMON_FLAGS]
    flags += [f"-I{INCLUDE_DIR}"]
    flags += [f"-D{d}" for d in defines]
    if target.format == "wasm":
        flags += ["-Wl,--no-entry", "-Wl,-z,stack-size=1048576"]
        flags += [f"-Wl,--export={name}" for name in EXPORTS]
    else:
        flags += ["-shared", "-Wl,--build-id=none"]
    return flags


def inputs_sha256() -> str:
    """Hash of everything a build reads (sources, header, flags), to tell a stale manifest."""
    h = hashlib.sha256()
    for rel in [
        *sources(),
        *sorted(INCLUDE_DIR.joinpath(p.name) for p in (REPO_ROOT / INCLUDE_DIR).glob("*.h")),
    ]:
        h.update(str(rel).encode() + b"\0" + (REPO_ROOT / rel).read_bytes() + b"\0")
    for t in TARGETS.values():
        h.update(" ".join(compile_flags(t)).encode() + b"\0")
    for e in EM_TARGETS.values():
        h.update(" ".join(em_flags(e)).encode() + b"\0")
    from harness.build_lib2 import lib2_inputs  # it builds on this module: imported on use

    for part in lib2_inputs():
        h.update(part + b"\0")
    for rel in sorted((REPO_ROOT / WEBGPU_DIR).iterdir()):
        h.update(str(rel.relative_to(REPO_ROOT)).encode() + b"\0" + rel.read_bytes() + b"\0")
    return h.hexdigest()


def _sha256(path: Path) -> str:
    return file_sha256(path)


def _zig_command(target: Target, out_path: Path, defines: Sequence[str]) -> list[str]:
    out_path.parent.mkdir(parents=True, exist_ok=True)
    return [*zig_command(), "cc", *compile_flags(target, defines), *map(str, sources()),
            "-o", str(out_path)]  # fmt: skip


def _build_many(
    out_dir: Path, jobs: Sequence[tuple[str, Target, tuple[str, ...]]]
) -> dict[str, Artifact]:
    """Compile ``(name, target, defines)`` jobs concurrently into ``out_dir/<name>/``."""
    out_dir = out_dir.resolve()
    toolchain = toolchain_version()
    paths = {name: out_dir / name / t.output for name, t, _d in jobs}
    run_tools([(name, _zig_command(t, paths[name], d)) for name, t, d in jobs], "zig cc",
              timeout_s=300)  # fmt: skip
    built: dict[str, Artifact] = {}
    for name, t, d in jobs:
        path = paths[name]
        files, sha256 = digest({get_format(t.format).roles[0]: path})
        built[name] = Artifact(
            name=name,
            format=t.format,
            path=path,
            sha256=sha256,
            files=files,
            ptr_width=t.ptr_width,
            target=t.triple,
            features=t.features,
            toolchain=toolchain,
            flags=tuple(compile_flags(t, d)),
            signatures=signatures_json(),
        )
    return built


def webgpu_artifact(
    out_dir: Path, source: Path = REPO_ROOT / WEBGPU_DIR, name: str = WEBGPU_NAME
) -> Artifact:
    """Copy a WGSL kernel directory (``kernels.toml``, its binding and its ``.wgsl`` files) to
    ``out_dir/<name>/`` and describe it as a ``webgpu`` artifact: no compile step, WGSL is
    compiled by the browser at load. FormatError (``kernels.toml:LINE``) if its manifest does
    not validate."""
    from harness.formats.webgpu import MANIFEST_ROLE, WGSL_ROLE

    dest = out_dir.resolve() / name
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(source, dest)
    roles = {MANIFEST_ROLE: dest / "kernels.toml"}
    roles.update({f"{WGSL_ROLE}{p.name}": p for p in sorted(dest.glob("*.wgsl"))})
    fmt = get_format("webgpu")
    fmt.check_entry(roles)
    files, sha256 = digest(roles)
    binding = dest / "webgpu.binding.toml"
    artifact = Artifact(
        name=name, format="webgpu", path=roles[MANIFEST_ROLE], sha256=sha256, files=files,
        ptr_width=32, target="wgsl", features=(), toolchain="none (WGSL text)", flags=(),
        binding=binding if binding.is_file() else None,
    )  # fmt: skip
    # the exports a host wraps, as every manifest entry records them (the binding's)
    artifact = dataclasses.replace(artifact, signatures=artifact.bound().signatures_json())
    artifact.to_json(out_dir.resolve())  # fails here, not in the manifest, on a bad path
    return artifact


def write_manifest(out_dir: Path, artifacts: Sequence[Artifact]) -> Path:
    """Write ``out_dir/manifest.json`` listing ``artifacts`` (paths relative to ``out_dir``)."""
    root = out_dir.resolve()
    data = {
        "schema": MANIFEST_SCHEMA,
        "inputs_sha256": inputs_sha256(),
        "artifacts": [a.to_json(root) for a in artifacts],
    }
    path = root / MANIFEST
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path


def build_all(
    out_dir: Path = DEFAULT_OUT,
    variants: Sequence[Variant] = (),
    *,
    emscripten: bool = False,
    lib2: bool = False,
) -> dict[str, Artifact]:
    """Build the bundled zig artifacts plus ``variants`` (plus, with ``emscripten``, the
    EM_TARGETS; with ``lib2``, lib2's native build and, with ``emscripten`` too, its three emcc
    builds, bound by lib2's binding) and write the manifest.

    Returns the artifacts by name; raises BuildError with the compiler's message on failure.
    """
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise ValueError(f"variant names repeat: {names}")
    jobs: list[tuple[str, Target, tuple[str, ...]]] = [(t.name, t, ()) for t in TARGETS.values()]
    jobs += [(v.name, TARGETS[v.base], v.defines) for v in variants]
    out_dir.mkdir(parents=True, exist_ok=True)
    built = _build_many(out_dir, jobs)
    if emscripten:
        built.update(build_emscripten(out_dir))
    if lib2:
        from harness.build_lib2 import lib2_artifacts  # it builds on this module

        built.update(lib2_artifacts(out_dir, emscripten))
    built[WEBGPU_NAME] = webgpu_artifact(out_dir)
    write_manifest(out_dir, list(built.values()))
    return built


def build_variant(out_dir: Path, variant: Variant) -> Artifact:
    """Build one variant into ``out_dir/<name>/`` without touching any manifest."""
    return _build_many(out_dir, [(variant.name, TARGETS[variant.base], variant.defines)])[
        variant.name
    ]


def manifest_is_fresh(out_dir: Path = DEFAULT_OUT) -> bool:
    """True if ``out_dir``'s manifest was built from the current inputs and its files match."""
    path = out_dir / MANIFEST
    try:
        data = json.loads(path.read_text())
        if data.get("schema") != MANIFEST_SCHEMA or data.get("inputs_sha256") != inputs_sha256():
            return False
        entries = load_manifest(path)
        # with emcc installed the emscripten builds belong to a full build: a zig-only manifest
        # (a test fixture's build) would leave the default matrix's em-* cells unknown
        # and lib2 belongs to it too (its matrix names lib2-*), emscripten builds with emcc
        from harness.build_lib2 import lib2_names

        em = emcc_path() is not None
        wanted = set(TARGETS) | (set(EM_TARGETS) if em else set()) | set(lib2_names(em))
        wanted.add(WEBGPU_NAME)
        if not wanted <= set(entries):
            return False
        return all(file_sha256(f.path) == f.sha256 for a in entries.values() for f in a.file_set())
    except (OSError, ValueError, KeyError, TypeError, ManifestError):
        return False


# ---- command line ------------------------------------------------------------------------


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``build`` options to ``parser``."""
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="output directory (default: artifacts/build)")  # fmt: skip
    parser.add_argument(
        "--variant",
        metavar="NAME",
        help="also build a named variant (its base is the name's prefix: native-..., "
        "wasm32-..., wasm64-...) with the -D macros given",
    )
    parser.add_argument("-D", dest="defines", action="append", default=[], metavar="MACRO",
                        help="a macro for --variant (repeatable)")  # fmt: skip


def _variant_from_args(args: argparse.Namespace) -> list[Variant]:
    if args.variant is None:
        if args.defines:
            raise ValueError("-D needs --variant NAME: the bundled artifacts take no macros")
        return []
    base = next((t for t in sorted(TARGETS, key=len, reverse=True)
                 if args.variant.startswith(t + "-")), None)  # fmt: skip
    if base is None:
        raise ValueError(
            f"variant name {args.variant!r} must start with one of "
            f"{', '.join(t + '-' for t in TARGETS)} to name its base target"
        )
    return [Variant(args.variant, base, tuple(args.defines))]


def execute(args: argparse.Namespace) -> int:
    """Run the build; exit 0 on success, 2 on bad options or a failed/missing toolchain."""
    try:
        variants = _variant_from_args(args)
    except ValueError as exc:
        print(f"tinygpt-harness build: {exc}", file=sys.stderr)
        return 2
    emscripten = emcc_path() is not None
    if not emscripten:  # the other formats still build; a matrix naming em-* will say so
        from harness.build_lib2 import EM_BUILDS

        names = ", ".join([*EM_TARGETS, *EM_BUILDS])
        print(f"tinygpt-harness build: emcc not found, skipping {names}; install it: "
              f"{EMCC_INSTALL}", file=sys.stderr)  # fmt: skip
    try:
        built = build_all(args.out, variants, emscripten=emscripten, lib2=True)
    except BuildError as exc:
        print(f"tinygpt-harness build: {exc}", file=sys.stderr)
        return 2
    root = args.out.resolve()
    for a in built.values():
        print(f"{a.name:<20} {a.path.relative_to(root)}  sha256 {a.sha256[:16]}  {a.toolchain}")
    print(f"manifest: {root / MANIFEST}")
    return 0
