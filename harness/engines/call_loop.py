"""The call-timing loop both in-process engines share: samples of ``inner_reps`` calls each."""

from __future__ import annotations

import time
from collections.abc import Callable

from harness.hosts.base import TimingResult

CLOCK = "perf_counter_ns"


def clock_resolution_ns(probes: int = 2000) -> float:
    """Smallest non-zero step between consecutive ``perf_counter_ns`` readings (measured)."""
    best = float("inf")
    last = time.perf_counter_ns()
    for _ in range(probes):
        now = time.perf_counter_ns()
        if now != last:
            best = min(best, float(now - last))
            last = now
    return best if best != float("inf") else 1.0


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
    harness.engines.wasm_loop), so each sample is ns per call over one batch."""
    if inner_reps < 1 or samples < 1 or warmup < 0:
        raise ValueError(
            f"time_calls: inner_reps={inner_reps} and samples={samples} must be >= 1, "
            f"warmup={warmup} must be >= 0"
        )
    if warmup:
        batch(warmup)
    out: list[float] = []
    for _ in range(samples):
        t0 = time.perf_counter_ns()
        batch(inner_reps)
        out.append((time.perf_counter_ns() - t0) / inner_reps)
    return TimingResult(
        sample_ns=tuple(out),
        inner_reps=inner_reps,
        clock_resolution_ns=clock_resolution_ns(),
        clock=CLOCK,
    )


def roundtrips(fn: Callable[[], object], n: int) -> tuple[float, ...]:
    """Wall-clock ns of ``n`` individually timed calls of ``fn``."""
    out: list[float] = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        fn()
        out.append(float(time.perf_counter_ns() - t0))
    return tuple(out)
