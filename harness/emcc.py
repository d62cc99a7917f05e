"""``tinygpt-harness emcc ARGS...``: Debian's emcc, in the environment the harness builds with.

A project that builds its own emscripten artifacts with Debian's ``emscripten`` package meets
what the bundled build lives with (harness/build.py, "emscripten"): emcc needs acorn on
``NODE_PATH``, the wasm64 system libraries are not in Debian's frozen cache (a writable copy is
used), and emcc's Node flags are refused by Node >= 22 (a wrapper drops them). This command runs
``emcc`` with exactly that environment (:func:`harness.build.em_env`), so a project's build line
is its own flags and nothing else; docs/bindings.md, "Adding your own emscripten build", gives
the Memory64 flags that work with 3.1.6.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from harness.build import EMCC_INSTALL, BuildError, em_env, emcc_path

PASS_THROUGH = True  # harness.cli hands every argument to emcc unparsed (``-O2`` is emcc's)


def configure(parser: argparse.ArgumentParser) -> None:
    """Every argument after ``emcc`` goes to emcc unchanged (shown by ``--help`` only)."""
    parser.add_argument("args", nargs=argparse.REMAINDER, help="emcc's own arguments")


def execute(args: argparse.Namespace) -> int:
    """Run emcc; its exit code, or 2 when Debian's emcc is missing or its cache cannot be made."""
    emcc = emcc_path()
    if emcc is None:
        print(f"tinygpt-harness emcc: emcc is not installed: {EMCC_INSTALL}", file=sys.stderr)
        return 2
    try:
        env = em_env()
    except BuildError as exc:
        print(f"tinygpt-harness emcc: {exc}", file=sys.stderr)
        return 2
    return subprocess.run([emcc, *args.args], env=env, check=False).returncode
