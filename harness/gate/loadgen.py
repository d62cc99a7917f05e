"""A documented competing load for the gate's calibration: N busy processes.

``python -m harness.gate.loadgen N [--kind spin|mem] [--seconds S]`` (or ``calibrate --load N``)
starts N processes that each keep one CPU busy until stopped, or for at most ``--seconds``
(600 by default: a forgotten generator ends itself, and the machine is shared):

- ``spin``: pure CPU, a tight integer loop in Python with no memory traffic beyond its own
  interpreter frame: it takes CPU time from the gate (the scheduler's share) and nothing else;
- ``mem``: the same share of CPU spent streaming a 128 MiB numpy array (``a += 1`` on 32 Mi
  float32, one thread: numpy's elementwise add does not use BLAS threads), larger than any
  cache level of the machine, so it also evicts the gate's buffers from the shared L3 and
  competes for memory bandwidth, as a neighbour's build or test run would.

The processes run at the niceness they inherit (run the calibration ``nice -n 5`` and they are
``nice -n 5`` too: the same priority as the gate, so they compete for the CPU on equal terms).
Each also exits when its parent has gone (checked every 0.5 s), so none outlives its caller.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from types import TracebackType

KINDS = ("spin", "mem")
MAX_SECONDS = 600.0  # the longest a generator runs unless told otherwise
MEM_FLOATS = 32 << 20  # 128 MiB of float32 for `mem`: beyond an L3 of 48 MiB (this VM)
CHECK_S = 0.5  # how often a busy process looks at the clock and its parent


def busy(kind: str, seconds: float, parent: int) -> None:
    """Keep one CPU busy with ``kind`` work for ``seconds`` or until ``parent`` is gone."""
    end = time.monotonic() + seconds
    if kind == "mem":
        import numpy as np

        a = np.zeros(MEM_FLOATS, dtype=np.float32)
    while time.monotonic() < end and os.getppid() == parent:
        stop = time.monotonic() + CHECK_S
        while time.monotonic() < stop:
            if kind == "mem":
                a += 1.0  # one pass over 128 MiB: read and write every cache line
            else:
                x = 0
                for i in range(20_000):
                    x += i * i
    return None


@dataclass(frozen=True)
class Load:
    """What competes with the gate: ``processes`` busy processes of ``kind``."""

    processes: int = 0
    kind: str = "spin"
    seconds: float = MAX_SECONDS

    def __post_init__(self) -> None:
        if self.processes < 0:
            raise ValueError(f"load: processes must be >= 0, got {self.processes}")
        if self.kind not in KINDS:
            raise ValueError(f"load: kind must be one of {KINDS}, got {self.kind!r}")
        if self.seconds <= 0:
            raise ValueError(f"load: seconds must be > 0, got {self.seconds}")


class LoadLost(RuntimeError):
    """Busy processes ended before their load was stopped: what ran in the ``with`` block did
    not run under the load it names (a calibration's figures would be mislabelled)."""


class LoadGenerator:
    """Context manager running a :class:`Load` for the duration of a ``with`` block.

    Leaving the block raises :class:`LoadLost` if any busy process had ended before it (a
    crash, a kill, its ``seconds`` spent, a failed start), unless the block is already raising.
    """

    def __init__(self, load: Load) -> None:
        """Prepare (not start) ``load``'s processes."""
        self.load = load
        self._procs: list[BaseProcess] = []
        self.ended_early: tuple[int | None, ...] = ()  # exit codes of those gone before stop()

    def start(self) -> None:
        """Start the busy processes (a no-op for zero)."""
        ctx = mp.get_context("spawn")  # a clean interpreter: nothing of the caller's state
        for _ in range(self.load.processes):
            proc = ctx.Process(
                target=busy, args=(self.load.kind, self.load.seconds, os.getpid()), daemon=True
            )
            proc.start()
            self._procs.append(proc)

    def stop(self) -> None:
        """Stop every busy process (terminate, then wait for it); note those already gone."""
        self.ended_early = tuple(p.exitcode for p in self._procs if not p.is_alive())
        for proc in self._procs:
            proc.terminate()
        for proc in self._procs:
            proc.join(timeout=5)
        self._procs.clear()

    def alive(self) -> int:
        """How many busy processes are still running."""
        return sum(p.is_alive() for p in self._procs)

    def __enter__(self) -> LoadGenerator:
        """Start the load."""
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the load; raise :class:`LoadLost` if part of it had ended already."""
        started = len(self._procs)
        self.stop()
        if self.ended_early and exc_type is None:
            raise LoadLost(
                f"{len(self.ended_early)} of {started} busy processes ({self.load.kind}) ended "
                f"before the load was stopped (exit codes {list(self.ended_early)}): the work "
                f"under it did not run under {started} busy processes"
            )


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: run N busy processes until Ctrl-C or ``--seconds``."""
    p = argparse.ArgumentParser(prog="python -m harness.gate.loadgen", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("processes", type=int, help="how many busy processes")
    p.add_argument("--kind", choices=KINDS, default="spin")
    p.add_argument("--seconds", type=float, default=MAX_SECONDS)
    args = p.parse_args(argv)
    try:
        load = Load(args.processes, args.kind, args.seconds)
    except ValueError as exc:
        p.error(str(exc))
    gen = LoadGenerator(load)
    print(f"loadgen: {load.processes} x {load.kind} for up to {load.seconds:g} s", file=sys.stderr)
    try:
        gen.start()
        deadline = time.monotonic() + load.seconds
        while gen.alive() and time.monotonic() < deadline:
            time.sleep(CHECK_S)
    except KeyboardInterrupt:
        pass
    finally:
        gen.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
