"""Which V8 tier the JS hosts' figures run on: the flags, and the probe that a Node accepts them.

V8 compiles wasm lazily with its baseline compiler (Liftoff) and tiers hot functions up to the
optimizing compiler (TurboFan) later, nondeterministically, and never in the middle of a call: a
process with default flags ran tg_matmul_forward 256^3 on Liftoff for 10 calls and more on Node
20, 22 and 24 (docs/timing.md). A steady-state figure must not straddle that switch, so the
timed processes run with ``--no-liftoff``: every function is compiled by TurboFan at its first
call, the only call that pays for compilation. The cold figure (``train_step:cold``) is the
opposite: a separate process with default flags, as a visitor's first train step gets.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

STEADY_V8_FLAGS: tuple[str, ...] = ("--no-liftoff",)  # the one source of the pinned tier


def chromium_js_flags(v8_flags: tuple[str, ...]) -> tuple[str, ...]:
    """The Chromium switch passing ``v8_flags`` to V8 (nothing when there are none)."""
    return (f"--js-flags={' '.join(v8_flags)}",) if v8_flags else ()


def node_refusal(executable: Path, flags: tuple[str, ...]) -> str | None:
    """None if ``node <flags> -e 0`` runs, else Node's reason (it exits 9 on an unknown flag)."""
    try:
        done = subprocess.run(
            [str(executable), *flags, "-e", "0"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{executable} {' '.join(flags)} -e 0 failed: {exc}"
    if done.returncode != 0:
        return (done.stderr.strip() or f"exit status {done.returncode}")[-300:]
    return None
