"""Every host the harness knows, by the name matrices and result rows use."""

from __future__ import annotations

from collections.abc import Callable

from harness.hosts.base import Host
from harness.hosts.chromium import ChromiumHost
from harness.hosts.native import NativeHost
from harness.hosts.node import pinned_node, system_node
from harness.hosts.timeouts import Timeouts
from harness.hosts.wasmtime_host import WasmtimeHost

HostFactory = Callable[[], Host]
HOST_NAMES: tuple[str, ...] = ("native", "wasmtime", "node", "node22", "node24", "chromium")


def all_hosts(timeouts: Timeouts | None = None) -> dict[str, HostFactory]:
    """A factory per host name; creating a host starts nothing (processes start on first use)."""
    return {
        "native": lambda: NativeHost(timeouts),
        "wasmtime": lambda: WasmtimeHost(timeouts),
        "node": lambda: system_node(timeouts),
        "node22": lambda: pinned_node("node22", timeouts),
        "node24": lambda: pinned_node("node24", timeouts),
        "chromium": lambda: ChromiumHost(timeouts=timeouts),
    }


def make_host(name: str, timeouts: Timeouts | None = None) -> Host:
    """The host called ``name``; an unknown name raises ValueError listing the known ones."""
    factories = all_hosts(timeouts)
    if name not in factories:
        raise ValueError(f"unknown host {name!r}; known hosts: {', '.join(HOST_NAMES)}")
    return factories[name]()
