"""The CPU clock beside the wall clock in the in-process engines' timing loop (call_loop), and
the pipe carrying it from a real worker (the paired gate decides on it: docs/gate.md)."""

from __future__ import annotations

import threading
import time

from harness.engines.call_loop import CPU_CLOCK, time_batches


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def test_one_thread_work_is_read_on_the_cpu_clock_too() -> None:
    """Work that stays on the timing thread comes back on both clocks, one CPU sample per wall
    sample, and the CPU time does not exceed the wall time (plus the clocks' read cost)."""
    result = time_batches(lambda k: _spin(0.002 * k), 1, 5, 0)
    assert result.cpu_clock == CPU_CLOCK and len(result.cpu_ns) == 5
    for wall, cpu in zip(result.sample_ns, result.cpu_ns, strict=True):
        assert 0 < cpu <= wall * 1.01 + 50_000


def test_work_on_another_thread_leaves_the_samples_wall_clock_only() -> None:
    """A batch whose work runs on a second thread (as a library's pool or OpenMP would) is not
    read on the timing thread's CPU clock, which would miss that work: cpu_ns stays empty."""

    def offload(k: int) -> None:
        helper = threading.Thread(target=_spin, args=(0.003 * k,))
        helper.start()
        helper.join()

    result = time_batches(offload, 1, 3, 0)
    assert result.cpu_ns == () and result.cpu_clock == ""
    assert min(result.sample_ns) >= 3e6  # the wall clock did see the work
