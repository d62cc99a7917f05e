"""The side-by-side ratio: paired blocks cancel a speed regime that timing apart carries.

Synthetic samples model this VM (docs/measured.md, "Noise"): every call runs at 1x or 1.6x its
time depending on a regime that lasts longer than a block pair. No host and no clock is faked:
the statistics function is pure, and the scheduler is driven by plain samplers that record the
order they are called in (no test here asserts a real speed).
"""

from __future__ import annotations

import numpy as np
import pytest

from harness.checks.bench_paired import (
    MAX_BLOCK_SAMPLES,
    MIN_PAIRS,
    PairedPlan,
    Side,
    block_samples,
    interleave,
)
from harness.hosts.base import TimingResult
from harness.numpy_baseline import ReferenceWorker, TrainStepJob
from harness.timing import Sampler, TimingPolicy, paired_ratio

TRUE_RATIO = 2.5  # numpy 2.5 ms per step, kernel 1 ms, in the same regime
SLOW = 1.6  # the VM's slow regime (~0.6 ms against ~0.375 ms for one native call)


def _block(rng: np.random.Generator, ns: float, regime: float, k: int = 8) -> list[float]:
    """``k`` samples of a call of ``ns`` in ``regime``, with 2 % multiplicative jitter."""
    return list(ns * regime * np.exp(rng.normal(0.0, 0.02, size=k)))


def _timeline(seed: int, regimes: list[float]) -> tuple[list[list[float]], list[list[float]]]:
    """numpy and kernel blocks paired in time: pair i sees ``regimes[i]`` on both sides."""
    rng = np.random.default_rng(seed)
    nums = [_block(rng, TRUE_RATIO * 1e6, f) for f in regimes]
    dens = [_block(rng, 1e6, f) for f in regimes]
    return nums, dens


def _unpaired(nums: list[list[float]], dens: list[list[float]]) -> float:
    """The old figure: median of one burst over the median of another."""
    return float(np.median(np.concatenate(nums)) / np.median(np.concatenate(dens)))


def test_paired_ratio_stays_put_where_the_unpaired_ratio_moves_with_the_regime() -> None:
    """Run 1 times the kernel's burst in the fast regime and numpy's in the slow one; run 2 the
    other way round (what two runs minutes apart did). The timed-apart ratio moves by 2.56x
    between the runs; the paired ratio of both runs, whose pairs each see one regime (a
    different mixture per run), stays within 3 % of the truth."""
    rng = np.random.default_rng(0)
    run1_apart = _unpaired([_block(rng, TRUE_RATIO * 1e6, SLOW, 40)], [_block(rng, 1e6, 1.0, 40)])
    run2_apart = _unpaired([_block(rng, TRUE_RATIO * 1e6, 1.0, 40)], [_block(rng, 1e6, SLOW, 40)])
    assert run1_apart / run2_apart == pytest.approx(SLOW**2, rel=0.05)

    run1 = paired_ratio(*_timeline(1, [1.0, 1.0, SLOW, SLOW, SLOW, 1.0, SLOW, 1.0, 1.0, SLOW]))
    run2 = paired_ratio(*_timeline(2, [SLOW, SLOW, SLOW, SLOW, 1.0, SLOW, SLOW, SLOW, 1.0, 1.0]))
    for got in (run1, run2):
        assert got.value == pytest.approx(TRUE_RATIO, rel=0.03)
        assert got.ci_low <= got.value <= got.ci_high
        assert got.is_noisy(0.10) is False
    assert run1.value / run2.value == pytest.approx(1.0, abs=0.03)


def test_a_pair_straddling_a_regime_switch_is_one_outlying_ratio_the_median_ignores() -> None:
    """A switch between the two blocks of one pair makes that pair's ratio 1.6x off; the
    median of ten pair ratios does not move by more than the jitter."""
    nums, dens = _timeline(3, [1.0] * 10)
    nums[4] = [v * SLOW for v in nums[4]]  # numpy's block of pair 4 ran after a switch
    got = paired_ratio(nums, dens)
    assert max(got.ratios) == pytest.approx(TRUE_RATIO * SLOW, rel=0.05)
    assert got.value == pytest.approx(TRUE_RATIO, rel=0.03)


def test_ratios_are_formed_within_pairs_only() -> None:
    """Re-pairing the same blocks so each pair straddles a regime changes the figure (its
    ratios split into 1/1.6 and 1.6 of the truth, and its CI widens past the noise band): the
    ratio is of paired blocks, not of two pooled sets (whose medians the re-pairing keeps)."""
    nums, dens = _timeline(4, [1.0, SLOW, 1.0, SLOW, 1.0, SLOW])
    paired = paired_ratio(nums, dens)
    shifted = paired_ratio(nums, dens[1:] + dens[:1])  # every pair now straddles a regime
    assert paired.value == pytest.approx(TRUE_RATIO, rel=0.03)
    assert not paired.is_noisy(0.10) and shifted.is_noisy(0.10)
    assert min(shifted.ratios) == pytest.approx(TRUE_RATIO / SLOW, rel=0.05)
    assert paired.num_median == pytest.approx(shifted.num_median)
    assert paired.den_median == pytest.approx(shifted.den_median)
    assert paired.ratios[0] == pytest.approx(np.median(nums[0]) / np.median(dens[0]))


def test_the_ci_widens_when_the_pairs_disagree() -> None:
    """Pairs spread over 2x give a CI beyond +-10 % (noisy); the CI stays inside the ratios."""
    rng = np.random.default_rng(5)
    nums = [_block(rng, TRUE_RATIO * 1e6 * f, 1.0) for f in (0.6, 1.4, 0.7, 1.3, 0.8, 1.2)]
    dens = [_block(rng, 1e6, 1.0) for _ in nums]
    got = paired_ratio(nums, dens)
    assert got.is_noisy(0.10)
    assert min(got.ratios) <= got.ci_low <= got.value <= got.ci_high <= max(got.ratios)


@pytest.mark.parametrize(
    ("nums", "dens", "message"),
    [
        ([[1.0]], [[1.0], [1.0]], "the same non-zero number of blocks"),
        ([], [], "the same non-zero number of blocks"),
        ([[1.0], []], [[1.0], [1.0]], "block pair 1 has an empty side"),
        ([[1.0]], [[0.0]], "block pair 0 holds a non-finite or zero time"),
        ([[float("nan")]], [[1.0]], "block pair 0 holds a non-finite or zero time"),
    ],
)
def test_paired_ratio_refuses_blocks_that_do_not_pair(
    nums: list[list[float]], dens: list[list[float]], message: str
) -> None:
    """Unpaired, empty or non-positive blocks are refused, naming the pair."""
    with pytest.raises(ValueError, match=message):
        paired_ratio(nums, dens)


def _recording(name: str, ns: float, log: list[tuple[str, int]]) -> Sampler:
    """A sampler returning ``ns`` per call that logs ``(name, samples)`` per block."""

    def sample(inner_reps: int, samples: int, warmup: int) -> TimingResult:
        log.append((name, samples))
        return TimingResult(tuple([ns] * samples), inner_reps, 1.0, "test")

    return sample


def test_interleave_alternates_the_sides_and_pairs_each_block() -> None:
    """Pair i runs kernel then numpy when i is even, numpy then kernel when odd; each block
    lasts about block_ms (samples per side from that side's sample length)."""
    log: list[tuple[str, int]] = []
    num = Side(_recording("numpy", 2.5e6, log), 1, 2.5e6)
    den = Side(_recording("kernel", 1e6, log), 1, 1e6)
    got = interleave(num, den, PairedPlan(pairs=4, block_ms=10.0, seconds=60.0))
    assert [name for name, _ in log] == ["kernel", "numpy", "numpy", "kernel"] * 2
    assert {k for name, k in log if name == "kernel"} == {10}
    assert {k for name, k in log if name == "numpy"} == {4}
    assert len(got.num_blocks) == len(got.den_blocks) == 4
    assert got.ratio(TimingPolicy()).ratios == (2.5, 2.5, 2.5, 2.5)


def test_interleave_takes_the_minimum_pairs_even_past_its_seconds() -> None:
    """A plan whose seconds are spent still takes MIN_PAIRS pairs, and no more."""
    log: list[tuple[str, int]] = []
    num = Side(_recording("numpy", 1e6, log), 1, 1e6)
    den = Side(_recording("kernel", 1e6, log), 1, 1e6)
    got = interleave(num, den, PairedPlan(pairs=10, block_ms=1.0, seconds=0.0))
    assert len(got.num_blocks) == MIN_PAIRS


def test_block_samples_fill_the_block_within_bounds() -> None:
    """ceil(block / sample), at least 1 (a long step is its own block), at most the cap."""
    assert block_samples(5e6, 100.0) == 20
    assert block_samples(30e6, 100.0) == 4
    assert block_samples(1.3e9, 100.0) == 1
    assert block_samples(1.0, 100.0) == MAX_BLOCK_SAMPLES


def test_the_reference_worker_times_blocks_and_names_a_dying_child() -> None:
    """The long-lived numpy child answers a block with its samples; a job it cannot build ends
    it, and the error carries the child's exit code and its own words."""
    worker = ReferenceWorker()
    try:
        got = worker.block(TrainStepJob("tiny", 1, 8), 1, 3, 1)
        assert len(got.sample_ns) == 3 and all(v > 0 for v in got.sample_ns)
        assert got.clock == "perf_counter_ns"
        with pytest.raises(RuntimeError, match=r"(?s)exited 1: .*unknown preset .no-such-preset."):
            worker.block(TrainStepJob("no-such-preset", 1, 8), 1, 1, 0)
        assert not worker.alive()
    finally:
        worker.close()


def test_a_reference_worker_that_does_not_answer_is_killed_with_the_cause() -> None:
    """No answer within the worker's timeout (here: a huge-preset step, over a second of work,
    against 50 ms) kills the child and says so, instead of hanging the cell."""
    worker = ReferenceWorker(timeout_s=0.05)
    try:
        with pytest.raises(RuntimeError, match=r"gave no answer within 0\.05 s"):
            worker.block(TrainStepJob("huge", 4, 64), 1, 1, 1)
        assert not worker.alive()
    finally:
        worker.close()
