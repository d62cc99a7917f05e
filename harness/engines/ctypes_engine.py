"""The native engine: the shared library loaded in this process with ctypes.

Each instance dlopens its OWN private copy of the library (a temporary file with a random
name, unlinked right after loading), because dlopen of one path twice returns the same handle,
and two instances would then share one allocator and one model heap. glibc also hands back an
already loaded object for a *name* it has seen (``/proc/self/fd/N`` of a memfd is such a name
once N is reused: tried, and refused by the check below) and for a file with the same device and
inode numbers. Sharing would be silent: a paired gate loading BASE and CAND twelve times each
would time one build against itself. So a handle a live instance already holds is refused.
"""

from __future__ import annotations

import _ctypes
import ctypes
import os
import shutil
import tempfile
from collections.abc import Callable
from typing import Any

from harness.abi import Kind, Signature
from harness.artifact import Artifact
from harness.engines.call_loop import roundtrips, time_loop
from harness.engines.signatures import artifact_signatures
from harness.hosts.base import (
    ABIError,
    CorruptArtifact,
    HostError,
    Instance,
    MissingExport,
    Scalar,
    TimingResult,
)

_LIVE: set[int] = set()  # dlopen handles held by open instances of this process


def _dlopen_private(artifact: Artifact) -> ctypes.CDLL:
    """dlopen a copy of ``artifact`` under a name of its own; CorruptArtifact if it fails."""
    fd, private = tempfile.mkstemp(prefix="tinygpt-", suffix=".so")
    os.close(fd)
    try:
        shutil.copyfile(artifact.path, private)
        return ctypes.CDLL(private, mode=ctypes.RTLD_LOCAL)
    except OSError as exc:
        raise CorruptArtifact(f"{artifact.name}: {artifact.path}: {exc}") from exc
    finally:
        os.unlink(private)  # the mapping stays valid; nothing is left on disk


_CTYPE: dict[Kind, Any] = {"ptr": ctypes.c_size_t, "i32": ctypes.c_int32, "f32": ctypes.c_float}


def _bind(lib: ctypes.CDLL, name: str, sig: Signature) -> Callable[..., Any]:
    """Look up ``name`` and give it argtypes/restype from ``sig``."""
    try:
        fn = getattr(lib, name)
    except AttributeError:
        raise MissingExport(f"export {name} is missing from the native library") from None
    fn.argtypes = [_CTYPE[k] for k in sig.params]
    fn.restype = None if sig.result == "void" else _CTYPE[sig.result]
    return fn  # type: ignore[no-any-return]


class CtypesInstance(Instance):
    """One private copy of the native library, called through ctypes."""

    def __init__(self, artifact: Artifact, lib: ctypes.CDLL, handle: int) -> None:
        """Wrap an already loaded library (use :meth:`load`)."""
        self.artifact = artifact
        self._lib: ctypes.CDLL | None = lib
        self._handle = handle
        self._sigs = artifact_signatures(artifact)
        self._fns = {name: _bind(lib, name, sig) for name, sig in self._sigs.items()}

    @classmethod
    def load(cls, artifact: Artifact) -> CtypesInstance:
        """dlopen a private copy of ``artifact``; CorruptArtifact if it is not a library."""
        if not artifact.path.is_file():
            raise CorruptArtifact(f"{artifact.name}: no such file {artifact.path}")
        lib = _dlopen_private(artifact)
        if lib._handle in _LIVE:
            _ctypes.dlclose(lib._handle)  # drops only the reference this dlopen added
            raise HostError(
                f"{artifact.name}: dlopen of a private copy returned a library this process "
                "already holds (its file id was not unique): two instances would share one heap"
            )
        try:
            instance = cls(artifact, lib, lib._handle)
        except HostError:
            _ctypes.dlclose(lib._handle)
            raise
        _LIVE.add(lib._handle)
        return instance

    def _fn(self, name: str) -> Callable[..., Any]:
        if self._lib is None:
            raise HostError(f"{self.artifact.name}: instance is closed")
        try:
            return self._fns[name]
        except KeyError:
            raise MissingExport(f"{name} is not an export of the TinyGPT ABI") from None

    def call(self, name: str, *args: Scalar) -> Scalar | None:
        """Call export ``name``; a pointer result of NULL comes back as 0."""
        fn = self._fn(name)
        sig = self._sigs[name]
        if len(args) != len(sig.params):
            raise ABIError(
                f"{name} takes {len(sig.params)} arguments {sig.params}, got {len(args)}"
            )
        try:
            result = fn(*args)
        except ctypes.ArgumentError as exc:
            raise ABIError(f"{name}{args}: {exc}") from None
        if sig.result == "void":
            return None
        if sig.result == "ptr":
            return int(result or 0)
        return result  # type: ignore[no-any-return]

    def write(self, ptr: int, data: bytes) -> None:
        """Copy ``data`` to address ``ptr`` (which must come from tg_alloc)."""
        if ptr == 0:
            raise HostError(f"write of {len(data)} bytes to address 0")
        ctypes.memmove(ptr, data, len(data))

    def read(self, ptr: int, nbytes: int) -> bytes:
        """Return ``nbytes`` at address ``ptr``."""
        if ptr == 0:
            raise HostError(f"read of {nbytes} bytes from address 0")
        return ctypes.string_at(ptr, nbytes)

    def time_calls(
        self, name: str, args: tuple[Scalar, ...], inner_reps: int, samples: int, warmup: int
    ) -> TimingResult:
        """Time ``name(*args)`` in a Python loop around the bound ctypes function."""
        fn = self._fn(name)
        if len(args) != len(self._sigs[name].params):
            raise ABIError(
                f"{name} takes {len(self._sigs[name].params)} arguments, got {len(args)}"
            )
        return time_loop(lambda: fn(*args), inner_reps, samples, warmup)

    def bridge_roundtrip_ns(self, n: int) -> tuple[float, ...]:
        """``n`` individually timed calls of ``tg_noop``: the ctypes call overhead."""
        return roundtrips(self._fn("tg_noop"), n)

    def close(self) -> None:
        """dlclose the private copy; the instance cannot be used afterwards."""
        if self._lib is not None:
            self._fns.clear()
            self._lib = None
            _LIVE.discard(self._handle)
            _ctypes.dlclose(self._handle)
