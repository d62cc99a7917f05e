"""The timing protocol: statistics, calibration, adaptive sampling and the noisy flag."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from harness.hosts.base import TimingResult
from harness.timing import (
    TimingPolicy,
    calibrate,
    measure,
    perf_counter_resolution_ns,
    python_sampler,
    summarize,
)


class ReplaySampler:
    """Serves recorded per-call timings in order, as a host's time_calls would."""

    def __init__(self, values: list[float], resolution_ns: float = 1000.0) -> None:
        self.values = list(values)
        self.resolution_ns = resolution_ns
        self.calls: list[tuple[int, int, int]] = []

    def __call__(self, inner_reps: int, samples: int, warmup: int) -> TimingResult:
        self.calls.append((inner_reps, samples, warmup))
        taken = tuple(self.values[i % len(self.values)] for i in range(samples))
        self.values = self.values[samples:] + self.values[:samples]
        return TimingResult(taken, inner_reps, self.resolution_ns, "replay")


def test_summary_matches_numpy_percentiles() -> None:
    """Median and quartiles are numpy's linear percentiles of the samples, the IQR their gap."""
    x = [5.0, 1.0, 4.0, 2.0, 3.0, 9.0, 7.0]
    s = summarize(x)
    q1, med, q3 = np.percentile(x, [25, 50, 75])
    assert (s.n, s.median, s.q1, s.q3) == (7, med, q1, q3)
    assert s.iqr == pytest.approx(q3 - q1)
    assert s.cv == pytest.approx(np.std(x, ddof=1) / np.mean(x))


def test_bootstrap_ci_brackets_median_and_is_seeded() -> None:
    """The CI contains the median, lies within the sample range and repeats for one seed."""
    rng = np.random.default_rng(3)
    x = list(100 + rng.standard_normal(25))
    a, b = summarize(x, seed=1), summarize(x, seed=1)
    assert a == b
    assert min(x) <= a.ci_low <= a.median <= a.ci_high <= max(x)
    # A wider spread gives a wider CI: the interval measures the data, not the seed.
    wide = summarize([v * 10 - 900 for v in x], seed=1)
    assert wide.ci_high - wide.ci_low > 5 * (a.ci_high - a.ci_low)


def test_outliers_are_counted_not_dropped() -> None:
    """A sample far outside Tukey's fences is counted, and still part of n and the mean."""
    x = [10.0, 10.1, 9.9, 10.0, 10.2, 9.8, 10.0, 50.0]
    s = summarize(x)
    assert s.outliers == 1
    assert s.n == 8
    assert s.cv > 0.5  # the outlier still weighs on the spread


def test_summarize_rejects_empty_and_nan() -> None:
    """Empty or non-finite samples are refused with a message naming the problem."""
    with pytest.raises(ValueError, match="non-empty"):
        summarize([])
    with pytest.raises(ValueError, match="non-finite"):
        summarize([1.0, math.nan])


def test_noise_band_is_plus_minus_ten_percent_of_median() -> None:
    """Noisy exactly when the CI reaches beyond +-10% of the median on either side."""
    tight = summarize([100.0, 101.0, 99.0, 100.5, 99.5, 100.0, 100.2, 99.8])
    assert not tight.is_noisy(0.10)
    wide = summarize([60.0, 140.0, 80.0, 120.0, 100.0, 70.0, 130.0, 90.0])
    assert wide.is_noisy(0.10)
    assert wide.ci_half_width_rel() > 0.10


def test_calibration_reaches_hundred_resolutions() -> None:
    """Inner reps grow until one sample lasts >= 100x the clock resolution (and the floor)."""
    sampler = ReplaySampler([50.0] * 100, resolution_ns=5000.0)  # 50 ns calls, a 5 us clock
    policy = TimingPolicy(min_sample_ns=0.0)
    reps, resolution, clock = calibrate(sampler, policy)
    assert (resolution, clock) == (5000.0, "replay")
    assert reps * 50.0 >= 100 * 5000.0
    assert reps * 50.0 < 3 * 100 * 5000.0  # and not wildly more
    assert sampler.calls[0] == (1, 1, policy.warmup)  # the first probe warms up


def test_calibration_never_goes_below_min_inner_reps() -> None:
    """A subject whose first calls of a loop are not its steady state (the pool's back-to-back
    regions) starts calibration at min_inner_reps and never samples fewer, however long its
    first probe took; a floor outside 1..max_inner_reps is refused."""
    sampler = ReplaySampler([100_000.0] * 100, resolution_ns=1.0)  # one call already 100 us
    reps, _, _ = calibrate(sampler, TimingPolicy(min_sample_ns=1000.0, min_inner_reps=20))
    assert reps == 20 and sampler.calls[0][0] == 20
    with pytest.raises(ValueError, match="min_inner_reps"):
        TimingPolicy(min_inner_reps=0)
    with pytest.raises(ValueError, match="min_inner_reps"):
        TimingPolicy(min_inner_reps=5, max_inner_reps=4)


def test_measure_adds_samples_while_ci_too_wide_then_flags_noisy() -> None:
    """A spread-out series is extended up to max_samples and still ends noisy, none dropped."""
    spread = [1000.0, 1600.0, 700.0, 1300.0, 900.0, 1500.0, 800.0, 1200.0]
    sampler = ReplaySampler(spread * 20, resolution_ns=1.0)
    policy = TimingPolicy(min_samples=6, max_samples=18, min_sample_ns=0.0, warmup=0)
    m = measure(sampler, policy)
    assert len(m.samples_ns) == 18
    assert m.noisy
    assert m.summary.n == 18


def test_long_minimum_samples_do_not_spend_the_extension_time() -> None:
    """The extension clock starts once the minimum samples are in: a figure whose minimum
    samples alone outlast ``budget_s`` still gets its extension batches (it got none when the
    clock started at calibration, and stayed noisy at its minimum)."""
    spread = [1000.0, 1600.0, 700.0, 1300.0, 900.0, 1500.0, 800.0, 1200.0]
    replay = ReplaySampler(spread * 20, resolution_ns=1.0)

    def slow_minimum(inner_reps: int, samples: int, warmup: int) -> TimingResult:
        if len(replay.calls) == 1:  # the minimum samples, after the calibration probe
            time.sleep(0.2)
        return replay(inner_reps, samples, warmup)

    policy = TimingPolicy(min_samples=6, max_samples=18, min_sample_ns=0.0, budget_s=0.1)
    m = measure(slow_minimum, policy)
    assert len(m.samples_ns) == 18 and m.noisy


def test_measure_stops_at_min_samples_when_tight() -> None:
    """A tight series takes exactly min_samples and is not noisy."""
    sampler = ReplaySampler([1000.0, 1001.0, 999.0, 1000.5] * 10, resolution_ns=1.0)
    m = measure(sampler, TimingPolicy(min_samples=8, max_samples=30, min_sample_ns=0.0))
    assert len(m.samples_ns) == 8
    assert not m.noisy


def test_python_sampler_times_real_work() -> None:
    """A real perf_counter_ns loop: samples are positive, calibrated past the floor."""
    policy = TimingPolicy(min_samples=5, max_samples=10, min_sample_ns=100_000.0)
    m = measure(python_sampler(lambda: sum(range(200))), policy)
    assert len(m.samples_ns) >= 5
    assert all(v > 0 for v in m.samples_ns)
    assert m.inner_reps * m.summary.median >= 0.5 * policy.min_sample_ns  # jitter allowance
    assert m.clock == "perf_counter_ns"


def test_python_sampler_slower_work_has_larger_median() -> None:
    """The timer orders work correctly: 20x more work gives a clearly larger median."""
    policy = TimingPolicy(min_samples=5, max_samples=10, min_sample_ns=50_000.0)
    small = measure(python_sampler(lambda: sum(range(100))), policy).summary.median
    large = measure(python_sampler(lambda: sum(range(2000))), policy).summary.median
    assert large > 5 * small


def test_perf_counter_resolution_is_positive_and_small() -> None:
    """The measured resolution of perf_counter_ns is a positive step under 1 ms."""
    t0 = time.perf_counter()
    res = perf_counter_resolution_ns(200)
    assert 0 < res < 1e6
    assert time.perf_counter() - t0 < 1.0


def test_policy_rejects_inconsistent_sample_counts() -> None:
    """max_samples below min_samples, or min_samples below 3, is a clear error."""
    with pytest.raises(ValueError, match="max_samples"):
        TimingPolicy(min_samples=10, max_samples=5)
    with pytest.raises(ValueError, match="min_samples"):
        TimingPolicy(min_samples=2)
