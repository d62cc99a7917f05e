"""The ``native`` host: the x86-64 shared library through ctypes, in a worker process.

A segfault in a kernel kills the worker (reported as a Trap naming the signal), not the harness.
"""

from __future__ import annotations

import importlib.metadata
import platform

from harness.hosts.engine_worker import EngineWorkerHost
from harness.hosts.timeouts import Timeouts


class NativeHost(EngineWorkerHost):
    """Native shared libraries, loaded with ctypes."""

    name = "native"
    engine = "native"
    runtime = "native"

    def __init__(self, timeouts: Timeouts | None = None) -> None:
        super().__init__(timeouts)

    def version(self) -> str:
        """ctypes on this CPython, the zig compiler that builds the library, and the platform."""
        try:
            zig = f"zig cc {importlib.metadata.version('ziglang')}"
        except importlib.metadata.PackageNotFoundError:
            zig = "zig cc (ziglang not installed)"
        return (
            f"ctypes/CPython {platform.python_version()}, {zig}, "
            f"{platform.system()} {platform.release()} {platform.machine()}"
        )
