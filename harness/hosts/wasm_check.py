"""The static ABI check JS hosts run before their engine sees a module, and what a rejection means.

``validate_wasm_abi`` (wasmtime, Memory64 + SIMD on) proves the module is valid WebAssembly with
every export at the right types. So when a JS engine then refuses it with a CompileError (Node
22's "invalid table elements limits flags" on wasm64), the engine lacks a feature: the verdict is
``incompatible``, in the engine's own words, not corruption.
"""

from __future__ import annotations

from pathlib import Path

from harness.artifact import Artifact
from harness.engines.wasmtime_engine import validate_wasm_abi
from harness.hosts.base import CorruptArtifact, HostError, IncompatibleArtifact


class ModuleChecks:
    """Runs validate_wasm_abi once per (file version, pointer width)."""

    def __init__(self) -> None:
        self._passed: set[tuple[str, int, int, int]] = set()

    def check(self, artifact: Artifact) -> None:
        """Raise CorruptArtifact/MissingExport/ABIError unless ``artifact`` matches the ABI."""
        path = Path(artifact.path)
        stat = path.stat()
        key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size, artifact.ptr_width)
        if key not in self._passed:
            validate_wasm_abi(path, artifact.ptr_width)
            self._passed.add(key)


def engine_rejection(error: HostError) -> HostError:
    """An engine's CompileError (CorruptArtifact) on a validated module is an incompatibility."""
    if isinstance(error, CorruptArtifact):
        return IncompatibleArtifact(str(error))
    return error
