"""Seeded workload inputs are drawn once and reused, exactly as drawing again would give them."""

from __future__ import annotations

import numpy as np
import pytest

from harness.checks import bench_workloads
from harness.checks.bench_workloads import standard_normal_bytes


def _fresh(seed: int, sizes: list[int]) -> list[bytes]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(n, dtype=np.float32).tobytes() for n in sizes]


def test_reused_draws_equal_fresh_ones_and_leave_the_generator_where_drawing_would() -> None:
    """The second placement of a workload gets the very bytes of the first, and each draw after
    a reused one continues the generator's stream (here a size never drawn before)."""
    sizes = [1000, 7, 1000]
    for _ in range(2):
        rng = np.random.default_rng(11)
        assert [standard_normal_bytes(rng, n) for n in sizes] == _fresh(11, sizes)
    rng = np.random.default_rng(11)
    for n in sizes:
        standard_normal_bytes(rng, n)
    assert standard_normal_bytes(rng, 5) == _fresh(11, [*sizes, 5])[-1]
    other = np.random.default_rng(12)
    assert standard_normal_bytes(other, 1000) == _fresh(12, [1000])[0]


def test_the_reuse_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Least recently used draws go first once the bound is passed; a draw above it is never
    kept, and all of them are still right."""
    monkeypatch.setattr(bench_workloads, "_DRAWS", type(bench_workloads._DRAWS)())
    monkeypatch.setattr(bench_workloads, "DRAW_CACHE_BYTES", 4 * 2500)
    for seed in range(4):
        assert standard_normal_bytes(np.random.default_rng(seed), 1000) == _fresh(seed, [1000])[0]
    assert sum(len(d) for d, _ in bench_workloads._DRAWS.values()) <= 4 * 2500
    assert len(bench_workloads._DRAWS) == 2  # seeds 2 and 3; 0 and 1 were dropped
    big = standard_normal_bytes(np.random.default_rng(9), 3000)
    assert big == _fresh(9, [3000])[0] and len(bench_workloads._DRAWS) == 2
