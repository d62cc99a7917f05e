"""``tinygpt-harness`` command line: each subcommand lives in its own module.

A command module defines ``configure(parser)`` and ``execute(args) -> int`` (the exit code);
one that wraps another tool sets ``PASS_THROUGH = True`` and gets its arguments unparsed.
Modules are imported lazily so ``tinygpt-harness hosts`` does not import matplotlib.
Exit codes: 0 ok, 1 a verdict failed (fail/error/regression), 2 bad usage or config.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType

COMMANDS: dict[str, tuple[str, str]] = {
    "build": ("harness.build", "build the wasm32, wasm64 and native artifacts + manifest.json"),
    "emcc": ("harness.emcc", "run Debian's emcc in the environment the harness builds with"),
    "hosts": ("harness.hosts.listing", "list every host with availability, version, install hint"),
    "install-hosts": ("harness.hosts.install", "install Node versions (npm) and Chromium (apt)"),
    "run": ("harness.runner", "run a host x artifact matrix into a run directory"),
    "merge": ("harness.merge", "merge shard run directories into one run"),
    "report": ("harness.report", "render index.html, plots, summary.md from a run directory"),
    "compare": ("harness.gate.compare", "noise-aware regression gate between two runs"),
    "history": ("harness.gate.history", "trend plots and change points across commits"),
    "signoff": ("harness.gate.signoff", "check published numbers against a measured run"),
    "check": (
        "harness.project.command",
        "text-only checks of a project profile: defaults, corpus, claims",
    ),
    "record-convergence": (
        "harness.record_convergence",
        "record a project profile's convergence band (reference or the project's own trainer)",
    ),
    "export": ("harness.export", "write a run's timings as pytest-benchmark JSON"),
}


def build_parser() -> argparse.ArgumentParser:
    """Return the top-level parser with one subparser per command (modules not yet imported)."""
    parser = argparse.ArgumentParser(prog="tinygpt-harness", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_module, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def command_parser(name: str) -> tuple[ModuleType, argparse.ArgumentParser]:
    """Command ``name``'s module and its configured parser (the one ``main`` parses with)."""
    module = importlib.import_module(COMMANDS[name][0])
    parser = argparse.ArgumentParser(prog=f"tinygpt-harness {name}", description=COMMANDS[name][1])
    module.configure(parser)
    return module, parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen command; returns its exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help") or args[0] not in COMMANDS:
        try:
            build_parser().parse_args(args)
        except SystemExit as exc:  # argparse exits 2 on bad usage, 0 on --help
            return int(exc.code or 0)
        return 2
    name, rest = args[0], args[1:]
    module, parser = command_parser(name)
    if getattr(module, "PASS_THROUGH", False) and rest[:1] not in (["-h"], ["--help"]):
        # a wrapper of another tool (``emcc``): its arguments are the tool's, never parsed
        return int(module.execute(argparse.Namespace(args=rest)))
    try:
        parsed = parser.parse_args(rest)
    except SystemExit as exc:
        return int(exc.code or 0)
    return int(module.execute(parsed))


if __name__ == "__main__":
    sys.exit(main())
