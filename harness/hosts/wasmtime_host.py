"""The ``wasmtime`` host: wasm artifacts in wasmtime-py, in a worker process."""

from __future__ import annotations

import importlib.metadata

from harness.hosts.base import HostUnavailable
from harness.hosts.engine_worker import EngineWorkerHost
from harness.hosts.timeouts import Timeouts

INSTALL_HINT = "pip install wasmtime==50.0.1"


class WasmtimeHost(EngineWorkerHost):
    """wasmtime-py (Memory64 and SIMD enabled by the engine)."""

    name = "wasmtime"
    engine = "wasmtime"
    runtime = "wasmtime"

    def __init__(self, timeouts: Timeouts | None = None) -> None:
        super().__init__(timeouts)

    def version(self) -> str:
        """wasmtime-py's version, e.g. ``wasmtime-py 50.0.1``."""
        try:
            return f"wasmtime-py {importlib.metadata.version('wasmtime')}"
        except importlib.metadata.PackageNotFoundError:
            raise HostUnavailable("wasmtime-py is not installed", INSTALL_HINT) from None
