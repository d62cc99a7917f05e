"""Interleaved figures (Google Benchmark's random interleaving inside one cell) and the untimed
warm-up calls before every burst of samples (docs/timing.md, "Interleaved figures")."""

from __future__ import annotations

import pytest

from harness.hosts.base import TimingResult
from harness.timing import (
    Calibration,
    Sampler,
    TimingPolicy,
    burst_sizes,
    burst_warmup_calls,
    calibration,
    measure,
    measure_interleaved,
    python_sampler,
)


class Machine:
    """A simulated VM with two speed regimes: every sample taken (by any figure) advances one
    shared clock of samples, and the regime in force scales each figure's true per-call time.

    ``slow_until`` samples are taken in the slow regime (``factor`` x), the rest fast: a regime
    switch at a fixed point of the cell, whichever figure happens to be sampled then.
    """

    def __init__(self, slow_until: int, factor: float = 1.6) -> None:
        self.taken = 0
        self.slow_until = slow_until
        self.factor = factor
        self.log: list[tuple[str, int, int]] = []  # (figure, samples, warmup) per request

    def sampler(self, name: str, true_ns: float) -> Sampler:
        """A sampler of a figure whose calls take ``true_ns`` in the fast regime."""

        def sample(inner_reps: int, samples: int, warmup: int) -> TimingResult:
            self.log.append((name, samples, warmup))
            out = []
            for _ in range(samples):
                slow = self.taken < self.slow_until
                out.append(true_ns * (self.factor if slow else 1.0))
                self.taken += 1
            return TimingResult(tuple(out), inner_reps, 1.0, "machine")

        return sample


def _unused(inner_reps: int, samples: int, warmup: int) -> TimingResult:
    raise AssertionError("a calibration built only for its numbers was sampled")


def _cal(sampler: Sampler = _unused, sample_ns: float = 1e6, inner_reps: int = 1) -> Calibration:
    return Calibration(sampler, inner_reps, 1.0, "machine", sample_ns, 0.0)


def test_burst_sizes_split_the_samples_evenly() -> None:
    """min_samples splits into bursts of near-equal size that add up to it."""
    assert burst_sizes(10, 5) == [2, 2, 2, 2, 2]
    assert burst_sizes(10, 3) == [4, 3, 3]
    assert burst_sizes(4, 1) == [4]


def test_each_figure_gets_its_bursts_in_a_seeded_random_order() -> None:
    """Every round takes one burst of every figure; the order is random but repeats per seed."""
    policy = TimingPolicy(min_samples=10, max_samples=10, repetitions=5, seed=3)

    def order(seed: int) -> list[str]:
        machine = Machine(slow_until=0)
        cals = [_cal(machine.sampler(n, 1e6)) for n in "abcd"]
        ms = measure_interleaved(cals, TimingPolicy(**{**policy.__dict__, "seed": seed}))
        assert [len(m.samples_ns) for m in ms] == [10, 10, 10, 10]
        return [name for name, _, _ in machine.log]

    first = order(3)
    assert first == order(3)  # seeded
    rounds = [first[i : i + 4] for i in range(0, 20, 4)]
    assert all(sorted(r) == list("abcd") for r in rounds)  # one burst of each per round
    assert len({tuple(r) for r in rounds}) > 1  # the order changes between rounds
    assert first != order(4)


def test_a_regime_switch_spreads_over_all_figures_instead_of_landing_on_one() -> None:
    """Two figures with the same true time, a 1.6x regime over the first 8 samples: timed one
    burst each (repetitions=1), the figure sampled first reads 1.6x the other; interleaved in
    5 rounds, both read the same, because each sees the same share of the slow regime."""

    def medians(repetitions: int) -> list[float]:
        machine = Machine(slow_until=8)
        policy = TimingPolicy(min_samples=10, max_samples=10, repetitions=repetitions)
        ms = measure_interleaved([_cal(machine.sampler(n, 1000.0)) for n in "ab"], policy)
        return sorted(m.summary.median for m in ms)

    fast, slow = medians(1)
    assert slow / fast == pytest.approx(1.6)
    fast, slow = medians(5)
    assert slow / fast == pytest.approx(1.0)


def test_only_noisy_figures_get_more_rounds_up_to_max_samples() -> None:
    """A tight figure stops at min_samples; a noisy one gets more bursts until max_samples."""

    def spread(inner_reps: int, samples: int, warmup: int) -> TimingResult:
        vals = [1000.0, 1700.0, 600.0, 1400.0]
        return TimingResult(tuple(vals[i % 4] for i in range(samples)), 1, 1.0, "spread")

    def tight(inner_reps: int, samples: int, warmup: int) -> TimingResult:
        return TimingResult((1000.0,) * samples, 1, 1.0, "tight")

    policy = TimingPolicy(min_samples=6, max_samples=16, repetitions=3, budget_s=60.0)
    noisy, clean = measure_interleaved([_cal(spread), _cal(tight)], policy)
    assert len(clean.samples_ns) == 6 and not clean.noisy
    assert len(noisy.samples_ns) == 16 and noisy.noisy


def test_a_spent_extension_budget_stops_after_the_minimum() -> None:
    """With no time for extension, every figure has exactly min_samples, noisy or not."""

    def spread(inner_reps: int, samples: int, warmup: int) -> TimingResult:
        return TimingResult(tuple([700.0, 1600.0] * samples)[:samples], 1, 1.0, "spread")

    policy = TimingPolicy(min_samples=6, max_samples=30, repetitions=2, budget_s=0.0)
    (m,) = measure_interleaved([_cal(spread)], policy)
    assert len(m.samples_ns) == 6 and m.noisy


def test_every_burst_starts_with_warm_up_calls_of_about_two_ms() -> None:
    """Short calls get untimed calls filling ~2 ms (at most one sample) before each burst; a
    call longer than that gets none (its own first ms is a small part of it)."""
    policy = TimingPolicy()
    assert burst_warmup_calls(_cal(_unused, sample_ns=400_000.0, inner_reps=4), policy) == 4
    assert burst_warmup_calls(_cal(_unused, sample_ns=5e6, inner_reps=10), policy) == 4
    assert burst_warmup_calls(_cal(_unused, sample_ns=3e6, inner_reps=1), policy) == 0
    machine = Machine(slow_until=0)
    measure_interleaved(
        [_cal(machine.sampler("a", 1000.0), sample_ns=250_000.0, inner_reps=250)],
        TimingPolicy(min_samples=6, max_samples=6, repetitions=3),
    )
    assert [w for _, _, w in machine.log] == [250, 250, 250]


def test_measure_warms_up_before_each_extension_batch() -> None:
    """measure() also warms each added batch up: the host sat idle while the CI was computed."""
    spread = [1000.0, 1600.0, 700.0, 1300.0]
    calls: list[tuple[int, int]] = []  # (samples, warmup) of each request

    def sampler(inner_reps: int, samples: int, warmup: int) -> TimingResult:
        calls.append((samples, warmup))
        vals = tuple(spread[i % 4] for i in range(samples))
        return TimingResult(vals, inner_reps, 1.0, "spread")

    m = measure(sampler, TimingPolicy(min_samples=6, max_samples=12, min_sample_ns=1e6))
    batches = [w for n, w in calls if n > 1]  # the probes take one sample each
    assert len(batches) >= 2 and m.noisy  # the minimum, then at least one extension
    # 1 us calls: ~2 ms of warm-up is at most one sample's inner_reps calls, and never none
    assert all(w == min(m.inner_reps, 2000) for w in batches)


def test_repetitions_must_fit_min_samples() -> None:
    """A burst needs at least one sample: more repetitions than min_samples is refused."""
    with pytest.raises(ValueError, match="repetitions=11 must be between 1 and min_samples=10"):
        TimingPolicy(min_samples=10, repetitions=11)
    with pytest.raises(ValueError, match="repetitions=0"):
        TimingPolicy(repetitions=0)


def test_python_sampler_counts_its_warm_up_in_calls() -> None:
    """Like every host's time_calls, python_sampler's warmup is a number of calls, not loops."""
    count = [0]

    def fn() -> None:
        count[0] += 1

    python_sampler(fn)(10, 2, 3)  # inner_reps, samples, warmup
    assert count[0] == 3 + 2 * 10


def test_calibration_estimates_a_samples_length() -> None:
    """The calibration's sample estimate is inner_reps x the probed per-call time."""

    def sampler(inner_reps: int, samples: int, warmup: int) -> TimingResult:
        return TimingResult((50_000.0,) * samples, inner_reps, 1.0, "fixed")

    cal = calibration(sampler, TimingPolicy(min_sample_ns=200_000.0))
    assert cal.inner_reps * 50_000.0 >= 200_000.0
    assert cal.sample_ns == cal.inner_reps * 50_000.0
