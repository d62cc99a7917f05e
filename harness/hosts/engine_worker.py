"""Base of the hosts whose artifacts run in a ``python -m harness.hosts.worker`` process."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from harness.hosts.pipe import PipeHost

_PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the directory holding harness/


class EngineWorkerHost(PipeHost):
    """A PipeHost whose worker wraps the in-process engine named ``engine``."""

    engine: str  # a key of harness.hosts.worker.ENGINES

    def cold_host(self) -> EngineWorkerHost:
        """A host of the same kind with no worker yet: its first load starts a fresh process."""
        return type(self)(self.timeouts)

    def worker_argv(self) -> list[str]:
        """This interpreter running the worker module for ``engine``."""
        return [sys.executable, "-m", "harness.hosts.worker", "--engine", self.engine]

    def worker_env(self) -> dict[str, str]:
        """The harness's environment, with the harness importable even when not installed, and
        numpy's OpenBLAS on one thread: the worker never multiplies with numpy, and an idle
        OpenBLAS thread waking during a sample made the process's CPU clock outrun the timing
        thread's, which spoils a sample's CPU-clock time (harness.engines.call_loop; 3 of 2,000
        1 ms samples here). The artifact's own threads are untouched."""
        env = dict(os.environ)
        paths = [str(_PACKAGE_ROOT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
        env["OPENBLAS_NUM_THREADS"] = "1"
        return env
