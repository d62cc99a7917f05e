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
        """The harness's environment, with the harness importable even when not installed."""
        env = dict(os.environ)
        paths = [str(_PACKAGE_ROOT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
        return env
