"""``tinygpt-harness hosts``: every host, whether it is available, its exact version and path.

A missing host shows the exact command that installs it. Always exits 0: a missing host is
information here, and ``run`` reports it per cell.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

from harness.hosts.base import Host, HostError, HostUnavailable
from harness.hosts.chromium import ChromiumHost
from harness.hosts.node import NodeHost
from harness.hosts.pipe import PipeHost
from harness.hosts.registry import all_hosts


@dataclass(frozen=True)
class HostStatus:
    """One line of the listing."""

    name: str
    available: bool
    version: str  # exact version, or "" when unavailable
    path: str  # executable or runtime location
    install_hint: str  # "" when available
    note: str = ""  # why it is unavailable


def host_path(host: Host) -> str:
    """Where the host's runtime lives (executable path, or the interpreter for Python engines)."""
    if isinstance(host, NodeHost | ChromiumHost):
        return str(host.executable) if host.executable is not None else "(not on PATH)"
    if isinstance(host, PipeHost):
        return host.worker_argv()[0]
    return ""


def probe(name: str, host: Host) -> HostStatus:
    """Ask ``host`` for its version; a HostUnavailable becomes an unavailable line with its hint."""
    try:
        version = host.version()
    except HostUnavailable as exc:
        return HostStatus(name, False, "", host_path(host), exc.install_hint, str(exc))
    except HostError as exc:
        return HostStatus(name, False, "", host_path(host), "", str(exc))
    finally:
        host.close()
    return HostStatus(name, True, version, host_path(host), "")


def statuses() -> list[HostStatus]:
    """The status of every registered host, in registry order."""
    return [probe(name, factory()) for name, factory in all_hosts().items()]


def render(rows: list[HostStatus], console: Console) -> None:
    """Print the rich table."""
    table = Table(title="tinygpt-harness hosts")
    for column in ("host", "available", "version", "path", "install"):
        table.add_column(column, overflow="fold")
    for r in rows:
        table.add_row(
            r.name,
            "[green]yes[/]" if r.available else "[red]no[/]",
            r.version,
            r.path,
            r.install_hint,
        )
    console.print(table)


def configure(parser: argparse.ArgumentParser) -> None:
    """``hosts`` takes no options."""
    del parser


def execute(args: argparse.Namespace) -> int:
    """Print the host table; exit 0."""
    del args
    # rich wraps at 80 columns off a terminal; paths and hints read better on one line
    console = Console(file=sys.stdout, width=None if sys.stdout.isatty() else 160)
    render(statuses(), console)
    return 0
