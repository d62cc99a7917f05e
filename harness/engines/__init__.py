"""In-process engines: :class:`~harness.hosts.base.Instance` implementations without a worker.

``ctypes_engine`` loads the native shared library, ``wasmtime_engine`` the wasm32/wasm64
modules. They hold no module-level state, so a worker process (``harness.hosts.worker``) can
wrap either one for crash and hang isolation.
"""

from __future__ import annotations

from harness.artifact import Artifact
from harness.hosts.base import IncompatibleArtifact, Instance


def load_in_process(artifact: Artifact) -> Instance:
    """Load ``artifact`` with the in-process engine of its kind (ctypes or wasmtime)."""
    if artifact.kind == "native":
        from harness.engines.ctypes_engine import CtypesInstance

        return CtypesInstance.load(artifact)
    if artifact.kind == "wasm":
        from harness.engines.wasmtime_engine import WasmtimeInstance

        return WasmtimeInstance.load(artifact)
    raise IncompatibleArtifact(f"{artifact.name}: no in-process engine for kind {artifact.kind!r}")
