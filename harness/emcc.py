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
    code = subprocess.run([emcc, *args.args], env=env, check=False).returncode
    said = hint(args.args) if code != 0 else ""
    if said:
        print(f"tinygpt-harness emcc: {said}", file=sys.stderr)
    return code


def hint(argv: list[str]) -> str:
    """What a failed build with these flags most likely met, or "": Debian's emcc 3.1.6
    cannot build its multithreaded libc for Memory64 (measured, s43: ``pthread_create.c:129:
    cast to 'void *' from smaller integer type`` while building libc-mt), so ``-pthread`` with
    ``-sMEMORY64`` fails in emscripten's own sources, whatever the project's code."""
    pthread = any(a in ("-pthread", "-sUSE_PTHREADS", "-sUSE_PTHREADS=1") for a in argv)
    memory64 = any(a.startswith("-sMEMORY64") and a not in ("-sMEMORY64=0",) for a in argv)
    if pthread and memory64:
        return (
            "-pthread with -sMEMORY64: Debian's emcc 3.1.6 fails building its own libc-mt "
            "for wasm64 (pthread_create.c: cast to 'void *' from smaller integer type); build "
            "Memory64 single-threaded, or -pthread as wasm32 (docs/bindings.md)"
        )
    return ""
