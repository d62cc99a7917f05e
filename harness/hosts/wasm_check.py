"""What a JS engine's rejection of a statically checked module means.

Every format's static check runs before an engine sees the artifact (``harness.formats``; the
``wasm`` format's proves, with wasmtime, Memory64 + SIMD on, that the module is valid WebAssembly
with every export at the right types). So when a JS engine then refuses it with a CompileError
(Node 22's "invalid table elements limits flags" on wasm64), the engine lacks a feature: the
verdict is ``incompatible``, in the engine's own words, not corruption.
"""

from __future__ import annotations

from harness.hosts.base import CorruptArtifact, HostError, IncompatibleArtifact


def engine_rejection(error: HostError) -> HostError:
    """An engine's CompileError (CorruptArtifact) on a validated module is an incompatibility."""
    if isinstance(error, CorruptArtifact):
        return IncompatibleArtifact(str(error))
    return error
