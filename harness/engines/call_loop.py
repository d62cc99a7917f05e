"""The call-timing loop both in-process engines share: samples of ``inner_reps`` calls each."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from functools import cache

from harness.hosts.base import TimingResult
from harness.timing import perf_counter_resolution_ns

CLOCK = "perf_counter_ns"
CPU_CLOCK = "thread_time_ns"
# A sample's work stayed on the calling thread when the process's other threads used at most
# this much CPU meanwhile: 1 % of the sample and 2 us (an idle engine thread waking).
OTHER_THREADS_SLACK = (0.01, 2000.0)
# ... and when the process's CPU clock moved at most this much more than the thread's (what
# threads that started and ended within the sample did shows only there): 5 % and 100 us, as
# that clock runs up to 43 us ahead of a lone thread's under load (_others_cpu_ns).
PROCESS_SLACK = (0.05, 100_000.0)


def _thread_clock(tid: int) -> int:
    """Linux's CPU clock id of thread ``tid`` (the kernel's MAKE_THREAD_CPUCLOCK(tid,
    CPUCLOCK_SCHED), as glibc's pthread_getcpuclockid builds it)."""
    return ((~tid) << 3) | 4 | 2


def _others_cpu_ns() -> dict[int, int] | None:
    """Each other thread's CPU time so far, or None where threads cannot be read (not Linux).

    Not the process's CPU clock less this thread's: on Linux the process clock lags the
    running thread's by the runtime not yet accounted, and under load 213 of 2,000 1 ms samples
    of a one-thread process read 9-43 us more on the process clock than on the thread's."""
    me = threading.get_native_id()
    try:
        tids = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        return None
    out = {}
    for tid in tids:
        if tid != me:
            try:
                out[tid] = time.clock_gettime_ns(_thread_clock(tid))
            except OSError:  # the thread ended meanwhile: it did nothing more
                continue
    return out


def _others_worked(before: dict[int, int] | None, after: dict[int, int] | None, ns: int) -> bool:
    """Whether threads other than this one used more than the slack of ``ns`` CPU between the
    two readings (a thread that appeared meanwhile counts whole; one that ended, as unknown)."""
    if before is None or after is None or not set(before) <= set(after):
        return True
    rel, abs_ns = OTHER_THREADS_SLACK
    return sum(t - before.get(tid, 0) for tid, t in after.items()) > ns * rel + abs_ns


@cache
def clock_resolution_ns() -> float:
    """``perf_counter_ns``'s measured resolution, measured once per process: measuring it for
    every request cost ~0.1 ms, a tenth of a 1 ms sample's budget in the paired gate."""
    return perf_counter_resolution_ns()


def time_loop(fn: Callable[[], object], inner_reps: int, samples: int, warmup: int) -> TimingResult:
    """Call ``fn`` ``warmup`` times, then time ``samples`` batches of ``inner_reps`` calls."""

    def batch(reps: int) -> None:
        for _ in range(reps):
            fn()

    return time_batches(batch, inner_reps, samples, warmup)


def time_batches(
    batch: Callable[[int], object], inner_reps: int, samples: int, warmup: int
) -> TimingResult:
    """Run ``batch(warmup)`` once (if ``warmup``), then time ``samples`` calls of
    ``batch(inner_reps)``; ``batch(k)`` makes ``k`` calls of the timed function (in wasm, say:
    harness.engines.wasm_loop), so each sample is ns per call over one batch.

    Each sample is read on two clocks: the wall clock (``sample_ns``) and the calling thread's
    CPU clock (``cpu_ns``), which does not count the time another process held the core. The
    CPU samples are kept only if no other thread of this process worked during them (by more
    than ``OTHER_THREADS_SLACK`` read on each live thread's own CPU clock, and by more than
    ``PROCESS_SLACK`` on the process's clock, where threads that ended meanwhile count): a
    library that runs its own threads (a pool, OpenMP, a thread per call) does work this
    thread's clock misses, so its samples are wall-clock only.
    """
    if inner_reps < 1 or samples < 1 or warmup < 0:
        raise ValueError(
            f"time_calls: inner_reps={inner_reps} and samples={samples} must be >= 1, "
            f"warmup={warmup} must be >= 0"
        )
    if warmup:
        batch(warmup)
    wall: list[float] = []
    cpu: list[float] = []
    one_thread = True
    rel, abs_ns = PROCESS_SLACK
    for _ in range(samples):
        others = _others_cpu_ns()
        p0 = time.process_time_ns()
        c0 = time.thread_time_ns()
        t0 = time.perf_counter_ns()
        batch(inner_reps)
        t1 = time.perf_counter_ns()
        c1 = time.thread_time_ns()
        p1 = time.process_time_ns()
        one_thread = (
            one_thread
            and not _others_worked(others, _others_cpu_ns(), c1 - c0)
            and p1 - p0 <= (c1 - c0) * (1 + rel) + abs_ns
        )
        wall.append((t1 - t0) / inner_reps)
        cpu.append((c1 - c0) / inner_reps)
    return TimingResult(
        sample_ns=tuple(wall),
        inner_reps=inner_reps,
        clock_resolution_ns=clock_resolution_ns(),
        clock=CLOCK,
        cpu_ns=tuple(cpu) if one_thread else (),
        cpu_clock=CPU_CLOCK if one_thread else "",
    )


def roundtrips(fn: Callable[[], object], n: int) -> tuple[float, ...]:
    """Wall-clock ns of ``n`` individually timed calls of ``fn``."""
    out: list[float] = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        fn()
        out.append(float(time.perf_counter_ns() - t0))
    return tuple(out)
