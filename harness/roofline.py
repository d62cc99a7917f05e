"""The machine roofline: numpy's BLAS sgemm on one thread, measured in the same run.

Every kernel figure in GFLOP/s is also reported as a fraction of this roof (``roofline_fraction``),
so numbers from different machines can be read side by side. The roof is measured once per
process and size (see :func:`sgemm_gflops`), in a one-thread child (``harness.numpy_baseline``).
"""

from __future__ import annotations

from collections.abc import Sequence

from harness.numpy_baseline import SgemmJob, run_jobs
from harness.timing import Measurement, TimingPolicy

_CACHE: dict[int, Measurement] = {}  # n -> sgemm measurement; one per process, shared by cells


def matmul_flops(N: int, C: int, OC: int) -> float:
    """Floating-point operations of ``(N,C) @ (OC,C)^T``: one multiply and one add per term."""
    return 2.0 * N * C * OC


def gflops(flops: float, ns: float) -> float:
    """GFLOP/s of ``flops`` done in ``ns`` nanoseconds (flop per ns is GFLOP/s)."""
    return flops / ns


def sgemm_measurements(sizes: Sequence[int], policy: TimingPolicy) -> dict[int, Measurement]:
    """One-thread sgemm at each ``n`` in ``sizes``, measured once per process and reused."""
    todo = [n for n in dict.fromkeys(sizes) if n not in _CACHE]
    if todo:
        for n, m in zip(todo, run_jobs([SgemmJob(n) for n in todo], policy), strict=True):
            _CACHE[n] = m
    return {n: _CACHE[n] for n in sizes}


def roofline_cache_clear() -> None:
    """Forget the measured roof (a new run on possibly different load)."""
    _CACHE.clear()


def sgemm_gflops(n: int, m: Measurement) -> float:
    """GFLOP/s of the one-thread sgemm measurement ``m`` at size ``n``."""
    return gflops(matmul_flops(n, n, n), m.summary.median)


def roofline_fraction(kernel_gflops: float, roof_gflops: float) -> float:
    """The kernel's share of the roof (1.0 = as fast as one-thread BLAS)."""
    if roof_gflops <= 0:
        raise ValueError(f"roofline_fraction: roof must be positive, got {roof_gflops}")
    return kernel_gflops / roof_gflops
