"""Artifact formats: one module per way a kernel library can be packaged (docs/formats.md).

A format is everything the harness must know to take an artifact of that packaging from the
manifest to a running instance, declared in ONE module of this package:

- the files an artifact is made of (``roles``: one ``.so``; one ``.wasm``; glue ``.js`` +
  ``.wasm`` + worker ``.js``), the first role being the entry file the manifest's ``path`` names;
- how the set is hashed (:func:`digest`: each file's sha256, and the set's);
- which host runtimes load it, and the loader in each (``loaders``: a Python engine class for
  the worker processes, a ``harness/js/format_*.mjs`` module for Node and Chromium);
- its static checks (:meth:`ArtifactFormat.static_check`, run before any engine sees a file);
- what it exports, read from its files (:meth:`ArtifactFormat.exports_found`: the binding's
  check at load);
- its allocator (the exports :meth:`~harness.hosts.base.Instance.alloc` calls).

Modules are discovered, not listed: a file ``harness/formats/<name>.py`` defining ``FORMAT`` is a
format. Hosts ask the format whether they can load an artifact (:meth:`ArtifactFormat.refusal`);
no host compares format names.
"""

from __future__ import annotations

import abc
import hashlib
import importlib
import pkgutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar

from harness.abi import EXPORTS, Signature

# Runtimes: the engine a host runs artifacts in. A host declares its runtime; a format lists the
# runtimes it has a loader for. Python engines run in ``harness.hosts.worker`` processes.
PY_RUNTIMES = ("native", "wasmtime")
JS_RUNTIMES = ("node", "chromium")
# An export's wasm type: (param types, result types), as wasmtime spells them ("i32", "i64", ...).
WasmTypes = tuple[tuple[str, ...], tuple[str, ...]]


@dataclass(frozen=True)
class ExportMismatch:
    """One export a module lacks (``found`` None) or has with other wasm types than wanted."""

    name: str
    expected: WasmTypes  # the wanted signature's wasm types at the pointer width
    found: WasmTypes | None  # None: not among the module's (function) exports


def export_mismatches(
    found: Mapping[str, WasmTypes | None], wanted: Mapping[str, Signature], ptr_width: int
) -> list[ExportMismatch]:
    """Each export of ``wanted`` that ``found`` lacks or types otherwise at ``ptr_width``, in
    ``wanted``'s order: the one comparison of exports against wasm types (the binding's check
    at load and the format's static check both report from it).

    ``found`` maps export name -> (wasm param types, wasm result types), or -> None where the
    module knows names only (a native symbol table): such an export is never mistyped.
    """
    out = []
    for name, sig in wanted.items():
        expected = sig.wasm_types(ptr_width)
        if name not in found:
            out.append(ExportMismatch(name, expected, None))
            continue
        types = found[name]
        if types is not None and (tuple(types[0]), tuple(types[1])) != expected:
            out.append(ExportMismatch(name, expected, (tuple(types[0]), tuple(types[1]))))
    return out


@dataclass(frozen=True)
class FileDigest:
    """One file of an artifact: its role in the format, its path and its sha256."""

    role: str
    path: Path
    sha256: str


def file_sha256(path: Path) -> str:
    """The sha256 of the file at ``path`` (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def set_sha256(files: Sequence[FileDigest]) -> str:
    """The sha256 of an artifact's set of files.

    One file: that file's own sha256, so a single-file artifact keeps the hash it had before
    artifacts had file sets (runs and histories recorded under it stay comparable). Several: the
    sha256 of ``role\\0sha256\\n`` lines sorted by role, so renaming a role or swapping two
    files' contents changes it.
    """
    if len(files) == 1:
        return files[0].sha256
    lines = sorted(f"{f.role}\0{f.sha256}\n" for f in files)
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def digest(files: Mapping[str, Path]) -> tuple[tuple[FileDigest, ...], str]:
    """Hash each file of ``files`` (role -> path) and the set; returns (per file, set)."""
    each = tuple(FileDigest(role, path, file_sha256(path)) for role, path in files.items())
    return each, set_sha256(each)


class FormatError(ValueError):
    """An unknown format name, or an artifact whose files do not fit its format."""


class ArtifactFormat(abc.ABC):
    """What the harness knows about one packaging of the kernel library."""

    name: str  # the manifest's ``format`` value
    description: str  # one line, for refusals and docs
    roles: tuple[str, ...]  # file roles; roles[0] is the entry file (the manifest's ``path``)
    optional_roles: tuple[str, ...] = ()  # roles an artifact may omit (e.g. a pthread worker)
    # runtime -> loader: "module:Class" for a Python engine, "format_<name>.mjs" for JS runtimes
    loaders: ClassVar[Mapping[str, str]]
    # the exports Instance.alloc/free call, and their signatures where they are not ABI exports
    allocator: tuple[str, str] = ("tg_alloc", "tg_free")
    allocator_signatures: ClassVar[Mapping[str, Signature]] = MappingProxyType({})
    exports_role: str = ""  # the file :meth:`exports_found` reads (messages name it)
    # the float arithmetic its kernels run in (harness.tolerance.ARITHMETICS): "ieee" for C
    # compiled to a CPU or wasm, "wgsl" for GPU shaders (flushed subnormals, looser / and exp)
    arithmetic: str = "ieee"

    def __init__(self) -> None:
        self._passed: set[tuple[object, ...]] = set()  # static checks passed (their keys)

    def refusal(self, runtime: str, host: str) -> str | None:
        """None if a host of ``runtime`` has a loader for this format, else why it has not."""
        if runtime in self.loaders:
            return None
        where = ", ".join(self.loaders) or "no host"
        return (
            f"{host} cannot load {self.name} artifacts ({self.description}); they load in {where}"
        )

    def loader(self, runtime: str) -> str:
        """The loader of this format in ``runtime``; FormatError if it has none."""
        try:
            return self.loaders[runtime]
        except KeyError:
            raise FormatError(f"format {self.name} has no loader for runtime {runtime}") from None

    def check_roles(self, roles: Sequence[str]) -> str | None:
        """None if ``roles`` are a valid file set for this format, else the problem."""
        unknown = [r for r in roles if r not in self.roles]
        if unknown:
            return f"unknown file role(s) {unknown} for format {self.name} (roles: {self.roles})"
        missing = [r for r in self.roles if r not in roles and r not in self.optional_roles]
        if missing:
            return f"format {self.name} needs file role(s) {missing}"
        if len(set(roles)) != len(roles):
            return f"file roles repeat: {list(roles)}"
        return None

    def static_check(
        self,
        files: Mapping[str, Path],
        ptr_width: int,
        exports: Mapping[str, Signature] | None = None,
    ) -> None:
        """Raise a HostError subclass unless the files can be loaded as this format, exporting
        ``exports`` (the artifact's :meth:`~harness.artifact.Artifact.exports`; None: the
        bundled binding's and the format's allocator).

        Runs in the harness before any engine sees the artifact (after its hashes were
        verified); must not execute the artifact. Memoized per (file versions, pointer width,
        exports) in this process: a matrix loads one artifact in many cells.
        """
        wanted = dict(exports) if exports is not None else {**EXPORTS, **self.allocator_signatures}
        key = (
            tuple((str(p.resolve()), p.stat().st_mtime_ns, p.stat().st_size)
                  for p in files.values()),
            ptr_width,
            tuple(sorted(wanted.items())),
        )  # fmt: skip
        if key not in self._passed:
            self.check_files(files, ptr_width, wanted)
            self._passed.add(key)

    @abc.abstractmethod
    def check_files(
        self, files: Mapping[str, Path], ptr_width: int, wanted: Mapping[str, Signature]
    ) -> None:
        """The format's static checks (:meth:`static_check` memoizes them)."""

    def check_entry(self, files: Mapping[str, Path]) -> None:
        """Validate what the format declares in its own files when the manifest loads (a
        format whose artifact carries a manifest of its own: ``webgpu``'s ``kernels.toml``).
        Raise FormatError (``file:line: ...``): the run exits 2. Called only when every file
        exists (a missing file is its cells' error). Most formats have nothing to check here."""
        return None

    def ptr_width_of(self, files: Mapping[str, Path]) -> int | None:
        """The pointer width (32 or 64) the files were built for, read from them without
        running them; None where the format cannot tell (a project must declare it). A file
        that cannot be read or parsed raises (OSError, a HostError subclass)."""
        return None

    def loader_entry(self, files: Mapping[str, Path]) -> dict[str, Any]:
        """Extra keys of the LOAD entry a JS loader reads (``webgpu``: the dispatch plan)."""
        return {}

    def call_problem(
        self, files: Mapping[str, Path], export: str, sig: Signature, names: Sequence[str],
        call: str,
    ) -> tuple[str, str] | None:  # fmt: skip
        """What the format's own declaration of ``export`` contradicts in a binding's call of
        it (``call`` names the call in messages; its arguments are ``names``, of kinds
        ``sig``): ``("args", what)`` when the binding's argument list is at fault, ``("result",
        "file:LINE: what")`` when the declaration's result is; None if they agree.

        Checked at load for every call of a binding
        (:func:`harness.bindings.verify.check_artifact`). The default declares nothing: a wasm
        module's types were compared through :meth:`exports_found`, and a native library's
        arity comes from its DWARF or header. A format whose files declare each export's
        arguments (``webgpu``'s ``kernels.toml``) overrides it."""
        return None

    def exports_found(self, files: Mapping[str, Path]) -> Mapping[str, WasmTypes | None] | None:
        """What the artifact exports, read from its files without running them: export name ->
        (wasm param types, wasm result types), or -> None where the format knows names only.

        None: this format cannot list its exports. A binding is checked against this at load
        (:func:`harness.bindings.verify.check_artifact`); a file that cannot be read or parsed
        raises (OSError, a HostError subclass) and is left to the cell's own load.
        """
        return None


def loader_class(spec: str) -> Any:
    """Import a Python loader given as ``module:Class``."""
    module, _, cls = spec.partition(":")
    return getattr(importlib.import_module(module), cls)


@cache
def all_formats() -> dict[str, ArtifactFormat]:
    """Every format module of this package, by name (discovered: no list to keep in sync)."""
    found: dict[str, ArtifactFormat] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        fmt = getattr(module, "FORMAT", None)
        if isinstance(fmt, ArtifactFormat):
            found[fmt.name] = fmt
    return found


def get_format(name: str) -> ArtifactFormat:
    """The format called ``name``; FormatError listing the known ones otherwise."""
    formats = all_formats()
    if name not in formats:
        raise FormatError(f"unknown artifact format {name!r}; known: {', '.join(formats)}")
    return formats[name]
