"""In-process engines: :class:`~harness.hosts.base.Instance` implementations without a worker.

``ctypes_engine`` loads the native shared library, ``wasmtime_engine`` the wasm32/wasm64
modules. They hold no module-level state, so a worker process (``harness.hosts.worker``) can
wrap either one for crash and hang isolation.
"""

from __future__ import annotations

from harness.artifact import Artifact
from harness.formats import PY_RUNTIMES, loader_class
from harness.hosts.base import IncompatibleArtifact, Instance


def load_in_process(artifact: Artifact) -> Instance:
    """Load ``artifact`` with the in-process engine its format names (ctypes or wasmtime)."""
    fmt = artifact.fmt
    for runtime in PY_RUNTIMES:
        if runtime in fmt.loaders:
            instance: Instance = loader_class(fmt.loader(runtime)).load(artifact)
            return instance
    raise IncompatibleArtifact(f"{artifact.name}: format {fmt.name} has no in-process engine")
