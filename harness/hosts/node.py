"""Node hosts: the system ``node`` and project-local ``node22`` / ``node24`` (see install.py).

Each artifact runs in its own persistent ``node harness/js/node_server.mjs`` process speaking the
framed protocol; a trap is an error reply, a crash or a hang costs only that process.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

from harness.artifact import Artifact
from harness.hosts.base import HostError, HostUnavailable
from harness.hosts.install import HOST_PINS, hosts_dir, node_binary, npm_install_command
from harness.hosts.pipe import PipeHost
from harness.hosts.timeouts import Timeouts
from harness.hosts.v8_tier import STEADY_V8_FLAGS, node_refusal
from harness.hosts.wasm_check import engine_rejection

JS_DIR = Path(__file__).resolve().parents[1] / "js"
NODE_SERVER = JS_DIR / "node_server.mjs"


class NodeHost(PipeHost):
    """One Node executable; ``number_shim`` reproduces the TinyGPT BigInt bug on purpose."""

    runtime = "node"

    def __init__(
        self,
        name: str,
        executable: Path | None,
        install_hint: str,
        *,
        timeouts: Timeouts | None = None,
        number_shim: bool = False,
        v8_flags: tuple[str, ...] = STEADY_V8_FLAGS,
    ) -> None:
        super().__init__(timeouts)
        self.name = name
        self.executable = executable
        self.install_hint = install_hint
        self.number_shim = number_shim
        self.v8_flags = v8_flags  # wanted; engine_flags() says what this Node accepted
        self._flags: tuple[str, ...] | None = None
        self.flag_warning = ""  # why the wanted flags were dropped, if they were
        self._version: str | None = None

    def _require(self) -> Path:
        if self.executable is None or not self.executable.is_file():
            where = self.executable or "PATH"
            raise HostUnavailable(f"{self.name}: no node executable at {where}", self.install_hint)
        return self.executable

    def version(self) -> str:
        """``node --version`` of this executable, e.g. ``v24.21.0``."""
        if self._version is None:
            exe = self._require()
            try:
                out = subprocess.run(
                    [str(exe), "--version"], capture_output=True, text=True, timeout=30, check=True
                )
            except (OSError, subprocess.SubprocessError) as exc:
                raise HostUnavailable(
                    f"{self.name}: {exe} --version failed: {exc}", self.install_hint
                ) from None
            self._version = out.stdout.strip()
        return self._version

    def engine_flags(self) -> tuple[str, ...]:
        """The V8 flags the workers run under: ``v8_flags`` if this Node accepts them, else none
        (``flag_warning`` then says why; the bench check records it as a row)."""
        if self._flags is None:
            refusal = node_refusal(self._require(), self.v8_flags) if self.v8_flags else None
            self._flags = () if refusal else self.v8_flags
            if refusal:
                self.flag_warning = (
                    f"{self.name} refused {' '.join(self.v8_flags)} ({refusal}); "
                    "its figures run on V8's default, unpinned tiers"
                )
        return self._flags

    def cold_host(self) -> NodeHost:
        """The same Node with default flags and no worker yet (a fresh process, Liftoff first)."""
        return NodeHost(
            self.name, self.executable, self.install_hint, timeouts=self.timeouts,
            number_shim=self.number_shim, v8_flags=(),
        )  # fmt: skip

    def worker_argv(self) -> list[str]:
        """``node [--no-liftoff] node_server.mjs``."""
        return [str(self._require()), *self.engine_flags(), str(NODE_SERVER)]

    def load_options(self) -> dict[str, Any]:
        """Pass the Number shim through to driver.mjs, and the time a loader may wait for a
        module to come up (under the load timeout, so it is reported in the loader's words)."""
        return {"numberShim": self.number_shim, "loadTimeoutMs": int(self.timeouts.load_s * 900)}

    def refine_load_error(self, artifact: Artifact, error: HostError) -> HostError:
        """Node's CompileError on a module that passed the ABI check is an incompatibility."""
        return engine_rejection(error)


def system_node(timeouts: Timeouts | None = None) -> NodeHost:
    """The ``node`` on PATH."""
    found = shutil.which("node")
    hint = "apt-get install -y nodejs"
    return NodeHost("node", Path(found) if found else None, hint, timeouts=timeouts)


def pinned_node(alias: str, timeouts: Timeouts | None = None) -> NodeHost:
    """A project-local Node installed by ``tinygpt-harness install-hosts`` (``node22``, ...)."""
    if alias not in HOST_PINS:
        raise ValueError(f"no pin for Node host {alias!r}; known: {', '.join(sorted(HOST_PINS))}")
    hint = " ".join(npm_install_command({alias: HOST_PINS[alias]}, hosts_dir()))
    return NodeHost(alias, node_binary(alias), hint, timeouts=timeouts)
