"""An artifact as the manifest describes it: one built binary of the kernel library.

The manifest (``artifacts/build/manifest.json``, written by ``tinygpt-harness build`` or by hand
for a library the harness did not build) is versioned: :data:`MANIFEST_SCHEMA` is the one this
harness reads and writes, and :func:`load_manifest` checks every entry against it, so a bad
manifest stops the run at load (exit 2) with the file, the entry and the key at fault.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any, Literal

from harness.abi import KINDS, PARAM_KINDS, Signature
from harness.bindings import Binding, BindingError, bundled, load_binding_cached
from harness.formats import ArtifactFormat, FileDigest, FormatError, digest, get_format

# 2: ``format`` (was ``kind``) and ``files`` (each file's role, path and sha256; ``sha256`` is the
# set's). Schema 1 manifests are refused with the command that rebuilds them.
MANIFEST_SCHEMA = 2


_POOL_FLAG = "-sPTHREAD_POOL_SIZE="  # emcc's pool of pthread workers started with the module


class ManifestError(ValueError):
    """The manifest is not one this harness can read; the message names file, entry and key."""


@dataclass(frozen=True)
class Origin:
    """Where an artifact is declared, so a message can say where its expected hashes and its
    (missing) binding come from: a manifest file, or a project profile's ``[artifacts.NAME]``
    table (which has no manifest: its hashes are taken when the run starts)."""

    kind: Literal["manifest", "profile"]
    where: str  # the manifest's path; the profile table's ``file:line``

    def table(self, name: str) -> str:
        """Artifact ``name``'s declaration in words: ``[artifacts.NAME] table (harness.toml:4)``
        or ``manifest entry (path/manifest.json)``."""
        if self.kind == "profile":
            return f"[artifacts.{name}] table ({self.where})"
        return f"manifest entry ({self.where})"


@dataclass(frozen=True)
class Artifact:
    """One binary of the kernel library, with what hosts need to load it correctly."""

    name: str  # "wasm32", "wasm64", "native", "em-wasm32", or a named variant
    format: str  # a harness.formats name: "wasm", "native", "emscripten"
    path: Path  # absolute path of the entry file (the format's first role)
    sha256: str  # the sha256 of the file set (harness.formats.set_sha256)
    ptr_width: int  # 32 or 64: a host converts `ptr` arguments from this, never per call
    target: str  # the compiler's target triple
    features: tuple[str, ...] = ()  # e.g. ("simd128", "memory64")
    toolchain: str = ""  # e.g. "zig 0.17.1 (clang 21)"
    flags: tuple[str, ...] = ()
    signatures: dict[str, Any] = field(default_factory=dict)  # harness.abi.signatures_json()
    files: tuple[FileDigest, ...] = ()  # every file; empty: just ``path`` under ``sha256``
    binding: Path | None = None  # its binding file (docs/bindings.md); None: the bundled one
    # where it is declared (messages only); None: not said (a worker's copy, a test's artifact)
    origin: Origin | None = field(default=None, compare=False)

    def pthread_pool(self) -> int | None:
        """N of ``-sPTHREAD_POOL_SIZE=N`` in the recorded build flags (an emscripten pthread
        build's workers, started with the module), or None."""
        for flag in self.flags:
            if flag.startswith(_POOL_FLAG) and flag[len(_POOL_FLAG) :].isdigit():
                return int(flag[len(_POOL_FLAG) :])
        return None

    def thread_limit(self) -> int:
        """The most threads the binding's thread setter (``tg_set_threads``, or a ``[threads]``
        table's ``set``) can put in effect: the library's ``max`` (tinygpt.h's
        ``MAX_THREADS``), and for an emscripten pthread pool of N workers at most N + 1 (the
        caller too). 1 where the binding has no thread setter."""
        return self.thread_capacity()[0]

    def thread_capacity(self) -> tuple[int, str]:
        """:meth:`thread_limit`, and what sets it (said when a matrix asks for more)."""
        bound = self.bound()
        threads = bound.threads
        if threads is None:
            listed = [e for e in bound.extra_exports if "thread" in e.lower()]
            hint = (f"; [exports] lists {', '.join(listed)}: an [exports] entry gives a call no "
                    "meaning, a [threads] table names the setter") if listed else ""  # fmt: skip
            return 1, (
                f"its binding {bound.path.name} has no [threads] table, so the harness cannot "
                f"set its thread count (docs/bindings.md){hint}"
            )
        pool = self.pthread_pool()
        if pool is not None and pool + 1 < threads.max:
            return pool + 1, f"{_POOL_FLAG}{pool} workers + the caller"
        if bound.thread_control is None:
            return threads.max, "TG_MAX_THREADS of tinygpt.h"
        return threads.max, f"[threads] max of its binding {bound.path.name}"

    def bound(self) -> Binding:
        """The artifact's binding: its own file, or the bundled library's (assumed: an error
        its export check raises says so, see :func:`_assumed_bundled`)."""
        if self.binding:
            return load_binding_cached(self.binding)
        return _assumed_bundled(self.name, self.origin) if self.origin else bundled()

    def exports(self) -> dict[str, Signature]:
        """Every export a host wraps for this artifact: its binding's, plus the format's
        allocator where the binding leaves memory to the format."""
        bound = self.bound()
        extra = self.fmt.allocator_signatures if bound.memory is None else {}
        return {**bound.signatures(), **extra}

    def allocator(self) -> tuple[str, str, int]:
        """``(alloc export, free export, bytes per alloc unit)``: the binding's ``[memory]``,
        else the format's allocator."""
        memory = self.bound().memory
        if memory is not None:
            return memory.alloc, memory.free, memory.alloc_unit
        alloc, free = self.fmt.allocator
        return alloc, free, 1

    @property
    def fmt(self) -> ArtifactFormat:
        """The artifact's format object."""
        return get_format(self.format)

    def file_set(self) -> tuple[FileDigest, ...]:
        """Every file of the artifact with its role and expected sha256.

        A one-file artifact is its ``path`` under ``sha256`` (so ``dataclasses.replace`` of
        those two stays consistent); several files are ``files``, the entry file first.
        """
        if len(self.files) > 1:
            return self.files
        role = self.files[0].role if self.files else self.fmt.roles[0]
        return (FileDigest(role, self.path, self.sha256),)

    def paths(self) -> dict[str, Path]:
        """Role -> absolute path of each file."""
        return {f.role: f.path for f in self.file_set()}

    def to_json(self, root: Path) -> dict[str, Any]:
        """Return the manifest entry, with paths relative to ``root``."""
        return {
            "name": self.name,
            "format": self.format,
            "path": str(self.path.relative_to(root)),
            "sha256": self.sha256,
            "files": [
                {"role": f.role, "path": str(f.path.relative_to(root)), "sha256": f.sha256}
                for f in self.file_set()
            ],
            "ptr_width": self.ptr_width,
            "target": self.target,
            "features": list(self.features),
            "toolchain": self.toolchain,
            "flags": list(self.flags),
            "signatures": self.signatures,
            **({"binding": os.path.relpath(self.binding, root)} if self.binding else {}),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], root: Path) -> Artifact:
        """Build an Artifact from a manifest entry whose paths are relative to ``root``.

        Raises ManifestError (naming the key) for a missing or mistyped key, an unknown format
        or a file set that does not fit the format.
        """
        name = _get(data, "name", str)
        try:
            fmt = get_format(_get(data, "format", str))
        except FormatError as exc:
            raise ManifestError(f"key 'format': {exc}") from None
        width = _get(data, "ptr_width", int)
        if width not in (32, 64):
            raise ManifestError(f"key 'ptr_width': must be 32 or 64, got {width}")
        files = _files(data, root)
        problem = fmt.check_roles([f.role for f in files]) if files else None
        if problem:
            raise ManifestError(f"key 'files': {problem}")
        path = _path(root, data, "path")
        # listed in any order (the set's sha256 sorts by role); kept in the format's role order,
        # so the entry file is first wherever the manifest's author put it
        files = sorted(files, key=lambda f: _role_rank(fmt, f.role))
        if files and files[0].path != path:
            raise ManifestError(
                f"key 'path': {path} is not the entry file, {files[0].path} (role "
                f"{files[0].role!r}, the {fmt.name} format's entry role): name that file"
            )
        if files and all(f.path.is_file() for f in files):
            try:
                fmt.check_entry({f.role: f.path for f in files})
            except FormatError as exc:
                raise ManifestError(f"format {fmt.name}: {exc}") from None
        binding = None
        if "binding" in data:
            binding = _path(root, data, "binding")
            try:
                load_binding_cached(binding)
            except BindingError as exc:
                raise ManifestError(f"key 'binding': {exc}") from None
        return cls(
            binding=binding,
            name=name,
            format=fmt.name,
            path=path,
            sha256=_sha(data),
            ptr_width=width,
            target=_get(data, "target", str),
            features=_strings(data, "features"),
            toolchain=_get(data, "toolchain", str) if "toolchain" in data else "",
            flags=_strings(data, "flags"),
            signatures=_signatures(data),
            files=tuple(files),
        )


@cache
def _assumed_bundled(name: str, origin: Origin) -> Binding:
    """The bundled binding, for artifact ``name`` that names none: its export check's errors
    point at harness/bindings/tinygpt.toml, a file the project never wrote, so they say why
    that binding applies and where a binding of the project's own would be named."""
    key = '`binding = "..."`' if origin.kind == "profile" else '`"binding": "..."`'
    note = (
        f"artifact {name} names no binding, so the bundled library's (tinygpt.h's exports) was "
        f"assumed: name the project's own binding file with {key} in its {origin.table(name)} "
        "(docs/bindings.md)"
    )
    return replace(bundled(), assumed=note)


def from_files(
    name: str,
    format: str,
    files: Mapping[str, Path],
    *,
    binding: Path | None = None,
    ptr_width: int | None = None,
    sha256: str | None = None,
    target: str = "",
    toolchain: str = "",
    flags: tuple[str, ...] = (),
    origin: Origin | None = None,
) -> Artifact:
    """An artifact of files on disk that no manifest lists (a project profile's ``[artifacts]``).

    Each file is hashed now, so the run records, and every host verifies, the bytes it loads.
    ``ptr_width`` None reads it from the files (:meth:`ArtifactFormat.ptr_width_of`: a wasm
    module's memory, an ELF class); ``sha256`` pins the set's hash. Raises ManifestError naming
    the key for an unknown format, roles the format does not have, a missing file, a pin the
    files do not match, a width the files cannot tell, or a binding that does not load.
    """
    from harness.hosts.base import HostError  # hosts import this module

    try:
        fmt = get_format(format)
    except FormatError as exc:
        raise ManifestError(f"key 'format': {exc}") from None
    problem = fmt.check_roles(list(files))
    if problem:
        raise ManifestError(f"key 'files': {problem}")
    ordered = {
        role: path.resolve()
        for role, path in sorted(files.items(), key=lambda kv: _role_rank(fmt, kv[0]))
    }
    for role, path in ordered.items():
        if not path.is_file():
            raise ManifestError(f"key 'files.{role}': no such file {path}")
    digests, set_sha = digest(ordered)
    if sha256 is not None and sha256 != set_sha:
        raise ManifestError(
            f"key 'sha256': pinned {sha256}, but the files hash to {set_sha}: they changed "
            "since the pin (rebuilt, or edited)"
        )
    try:
        fmt.check_entry(ordered)
        width = ptr_width if ptr_width is not None else fmt.ptr_width_of(ordered)
    except (FormatError, HostError) as exc:
        raise ManifestError(f"format {fmt.name}: {exc}") from None
    if width is None:
        raise ManifestError(
            f"key 'ptr_width': format {fmt.name} cannot tell it from the files; give 32 or 64"
        )
    if binding is not None:
        try:
            load_binding_cached(binding)
        except BindingError as exc:
            raise ManifestError(f"key 'binding': {exc}") from None
    artifact = Artifact(
        name=name, format=fmt.name, path=digests[0].path, sha256=set_sha, ptr_width=width,
        target=target or f"{fmt.name} ({width}-bit)", toolchain=toolchain, flags=flags,
        files=digests if len(digests) > 1 else (), binding=binding, origin=origin,
    )  # fmt: skip
    return replace(artifact, signatures=artifact.bound().signatures_json())


_JSON_NAMES = {str: "a string", int: "an integer"}  # what _get is asked for, in JSON's words


def _get(data: dict[str, Any], key: str, kind: type, where: str = "") -> Any:
    """The required value at ``key`` of type ``kind``; ManifestError naming ``where`` + ``key``
    if it is missing or another type (a bool is not an integer here, though Python says so)."""
    if key not in data:
        raise ManifestError(f"missing key '{where}{key}'")
    value = data[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        wanted = _JSON_NAMES.get(kind, kind.__name__)
        raise ManifestError(f"key '{where}{key}': expected {wanted}, got {_kind(value)}")
    return value


_FILE_OBJECT = '{"role", "path", "sha256"}'  # a files[] entry, as a message shows it


def _role_rank(fmt: ArtifactFormat, role: str) -> int:
    """Where ``role`` sorts in ``fmt``'s role order: its entry role first; roles the format
    does not list by name (webgpu's ``wgsl:<file>``) after the listed ones, in their order."""
    return fmt.roles.index(role) if role in fmt.roles else len(fmt.roles)


def _files(data: dict[str, Any], root: Path) -> list[FileDigest]:
    """The entry's ``files`` (optional: a one-file entry may omit it), each a
    ``{role, path, sha256}`` object; ManifestError naming the key for anything else (null, a
    role -> path table, an entry that is not an object), never a TypeError from iterating it."""
    if "files" not in data:
        return []
    listed = data["files"]
    if not isinstance(listed, list):
        raise ManifestError(
            f"key 'files': expected a list of {_FILE_OBJECT} objects, got {_kind(listed)}"
        )
    files: list[FileDigest] = []
    for i, f in enumerate(listed):
        where = f"files[{i}]."
        if not isinstance(f, dict):
            raise ManifestError(
                f"key 'files[{i}]': expected a {_FILE_OBJECT} object, got {_kind(f)}"
            )
        files.append(
            FileDigest(_get(f, "role", str, where), _path(root, f, "path", where), _sha(f, where))
        )
    return files


def _kind(value: object) -> str:
    """JSON's name for ``value``'s type (what the manifest's author wrote, not Python's)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"a number ({value!r})"
    if isinstance(value, str):
        return f"a string ({value!r})"
    return "an object" if isinstance(value, dict) else "a list"


def _path(root: Path, data: dict[str, Any], key: str, where: str = "") -> Path:
    """The string at ``key``, a path relative to ``root``, resolved; a path the OS cannot take
    (a NUL byte, a loop of links) is the manifest's fault, so a ManifestError naming the key."""
    text: str = _get(data, key, str, where)
    try:
        return (root / text).resolve()
    except (ValueError, OSError) as exc:
        raise ManifestError(f"key '{where}{key}': not a usable path {text!r}: {exc}") from None


_SHA256 = re.compile(r"[0-9a-f]{64}")


def _sha(data: dict[str, Any], where: str = "") -> str:
    """``data``'s ``sha256``: 64 lowercase hex digits, as ``sha256sum`` prints them (anything
    else can never match a file, and would surface only as a hash mismatch when a host loads
    it, after the run has started)."""
    value: str = _get(data, "sha256", str, where)
    if not _SHA256.fullmatch(value):
        raise ManifestError(
            f"key '{where}sha256': expected 64 lowercase hex digits (sha256sum's), got {value!r}"
        )
    return value


def _strings(data: dict[str, Any], key: str) -> tuple[str, ...]:
    """The optional list of strings at ``key`` (``features``, ``flags``); a string is refused
    rather than split into its characters."""
    if key not in data:
        return ()
    value = data[key]
    if not isinstance(value, list):
        raise ManifestError(f"key '{key}': expected a list of strings, got {_kind(value)}")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise ManifestError(f"key '{key}[{i}]': expected a string, got {_kind(item)}")
    return tuple(value)


def _signatures(data: dict[str, Any]) -> dict[str, Any]:
    """The optional ``signatures``: export name -> ``{"params": [kind, ...], "result": kind}``.

    Checked here so a malformed table stops the run at load naming the key; whether it agrees
    with the binding is the engines' check (harness.engines.signatures), which names the export.
    """
    if "signatures" not in data:
        return {}
    table = data["signatures"]
    if not isinstance(table, dict):
        raise ManifestError(
            "key 'signatures': expected an object of export name -> "
            f'{{"params": [...], "result": ...}}, got {_kind(table)}'
        )
    for name, sig in table.items():
        where = f"signatures.{name}"
        if not isinstance(sig, dict):
            raise ManifestError(
                f'key \'{where}\': expected {{"params": [...], "result": ...}}, got {_kind(sig)}'
            )
        params = sig.get("params")
        if not isinstance(params, list):
            raise ManifestError(
                f"key '{where}.params': expected a list of argument kinds, got {_kind(params)}"
            )
        # an argument cannot be void; a result can
        checks = [(f"params[{i}]", k, PARAM_KINDS) for i, k in enumerate(params)]
        for at, kind, allowed in [*checks, ("result", sig.get("result"), KINDS)]:
            if kind not in allowed:
                raise ManifestError(
                    f"key '{where}.{at}': expected one of {', '.join(allowed)}, got {_kind(kind)}"
                )
    return dict(table)


def load_manifest(path: Path) -> dict[str, Artifact]:
    """Read ``manifest.json`` and return its artifacts by name.

    FileNotFoundError if there is none; ManifestError naming ``path``, the entry and the key for
    bad JSON, another schema version, a bad entry or a repeated name.
    """
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{path}:{exc.lineno}: not JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise ManifestError(f"{path}: expected a JSON object, got {type(data).__name__}")
    schema = data.get("schema")
    if schema != MANIFEST_SCHEMA:
        raise ManifestError(
            f"{path}: manifest schema {schema!r}, this harness reads schema {MANIFEST_SCHEMA} "
            "(the bundled library's: rebuild it with `tinygpt-harness build`; a project's own: "
            "see docs/formats.md for the layout)"
        )
    entries = data.get("artifacts")
    if not isinstance(entries, list):
        raise ManifestError(f"{path}: key 'artifacts' must be a list of artifact entries")
    root = path.parent
    out: dict[str, Artifact] = {}
    for i, entry in enumerate(entries):
        label = entry.get("name", "?") if isinstance(entry, dict) else "?"
        if not isinstance(entry, dict):
            raise ManifestError(f"{path}: artifacts[{i}]: expected an object, got {_kind(entry)}")
        try:
            artifact = Artifact.from_json(entry, root)
        except ManifestError as exc:
            raise ManifestError(f"{path}: artifacts[{i}] ({label}): {exc}") from None
        if artifact.name in out:
            raise ManifestError(f"{path}: artifacts[{i}]: name {artifact.name!r} repeats")
        out[artifact.name] = replace(artifact, origin=Origin("manifest", str(path)))
    return out
