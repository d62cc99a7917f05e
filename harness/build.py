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

A *variant* is an extra named artifact compiled from a bundled target with extra ``-D`` macros
(e.g. ``native-bug-lnback`` with ``TG_BUG_LAYERNORM_BACKWARD``); it is added to the manifest next
to the bundled three, never instead of them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.abi import EXPORTS, signatures_json
from harness.artifact import Artifact, ArtifactKind

REPO_ROOT = Path(__file__).resolve().parents[1]
SOURCE_DIR = Path("artifacts/src")  # relative to REPO_ROOT: compiled from there
INCLUDE_DIR = Path("artifacts/include")
DEFAULT_OUT = REPO_ROOT / "artifacts" / "build"
MANIFEST = "manifest.json"
MANIFEST_SCHEMA = 1

_MACRO = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(=[A-Za-z0-9_.+-]*)?$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


class BuildError(Exception):
    """The toolchain is missing or a compile failed; the message is the compiler's own."""


@dataclass(frozen=True)
class Target:
    """One bundled build target."""

    name: str
    kind: ArtifactKind
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


def _run(cmd: Sequence[str], what: str) -> str:
    """Run a toolchain command from the repository root; return stdout or raise BuildError."""
    try:
        proc = subprocess.run(
            list(cmd), cwd=REPO_ROOT, capture_output=True, text=True, check=False, timeout=300
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
    zig = _run([*zig_command(), "version"], "zig version").strip()
    banner = _run([*zig_command(), "cc", "--version"], "zig cc --version")
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
    if target.kind == "wasm":
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
    return h.hexdigest()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _start(target: Target, out_path: Path, defines: Sequence[str]) -> subprocess.Popen[str]:
    out_path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [*zig_command(), "cc", *compile_flags(target, defines), *map(str, sources()),
           "-o", str(out_path)]  # fmt: skip
    try:
        return subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)  # fmt: skip
    except OSError as exc:
        raise BuildError(f"cannot start zig cc for {target.name}: {exc}") from exc


def _build_many(
    out_dir: Path, jobs: Sequence[tuple[str, Target, tuple[str, ...]]]
) -> dict[str, Artifact]:
    """Compile ``(name, target, defines)`` jobs concurrently into ``out_dir/<name>/``."""
    out_dir = out_dir.resolve()
    toolchain = toolchain_version()
    procs = [(name, t, d, out_dir / name / t.output, _start(t, out_dir / name / t.output, d))
             for name, t, d in jobs]  # fmt: skip
    errors: list[str] = []
    for name, _t, _d, _path, proc in procs:
        try:
            _, err = proc.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            errors.append(f"{name}: zig cc timed out after 300 s")
            continue
        if proc.returncode != 0:
            errors.append(f"{name}: zig cc failed (exit {proc.returncode}):\n{err.strip()}")
    if errors:
        raise BuildError("\n".join(errors))
    built: dict[str, Artifact] = {}
    for name, t, d, path, _proc in procs:
        built[name] = Artifact(
            name=name,
            kind=t.kind,
            path=path,
            sha256=_sha256(path),
            ptr_width=t.ptr_width,
            target=t.triple,
            features=t.features,
            toolchain=toolchain,
            flags=tuple(compile_flags(t, d)),
            signatures=signatures_json(),
        )
    return built


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


def build_all(out_dir: Path = DEFAULT_OUT, variants: Sequence[Variant] = ()) -> dict[str, Artifact]:
    """Build the three bundled artifacts plus ``variants`` and write the manifest.

    Returns the artifacts by name; raises BuildError with the compiler's message on failure.
    """
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise ValueError(f"variant names repeat: {names}")
    jobs: list[tuple[str, Target, tuple[str, ...]]] = [(t.name, t, ()) for t in TARGETS.values()]
    jobs += [(v.name, TARGETS[v.base], v.defines) for v in variants]
    out_dir.mkdir(parents=True, exist_ok=True)
    built = _build_many(out_dir, jobs)
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
        entries = {a["name"]: a for a in data["artifacts"]}
        if not set(TARGETS) <= set(entries):
            return False
        return all(_sha256(out_dir / a["path"]) == a["sha256"] for a in entries.values())
    except (OSError, ValueError, KeyError, TypeError):
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
    try:
        built = build_all(args.out, variants)
    except BuildError as exc:
        print(f"tinygpt-harness build: {exc}", file=sys.stderr)
        return 2
    root = args.out.resolve()
    for a in built.values():
        print(f"{a.name:<20} {a.path.relative_to(root)}  sha256 {a.sha256[:16]}  {a.toolchain}")
    print(f"manifest: {root / MANIFEST}")
    return 0
