"""The timing protocol: calibration, adaptive samples, median / IQR / bootstrap CI, noise flag.

Every figure the harness reports goes through :func:`measure`. The timed loop itself always runs
inside the host (``Instance.time_calls``: ``performance.now`` in JS, ``perf_counter_ns`` in the
native and wasmtime workers), so kernel figures never include the Python<->host bridge; the bridge
is measured on its own (``Instance.bridge_roundtrip_ns``). See ``docs/timing.md``.

A *sampler* is any ``(inner_reps, samples, warmup) -> TimingResult`` callable; an instance's
``time_calls`` bound to one export and its arguments is one, and :func:`python_sampler` makes one
from a Python callable (used for the numpy reference and the BLAS roofline).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from harness.hosts.base import TimingResult

Sampler = Callable[[int, int, int], TimingResult]
"""``sampler(inner_reps, samples, warmup)`` -> per-sample mean ns per call, timed in the host,
after ``warmup`` untimed calls (calls, not loops: as ``Instance.time_calls`` counts them)."""


@dataclass(frozen=True)
class TimingPolicy:
    """How much to measure. The defaults fit a ~30 s per-cell budget on a shared 2-core box."""

    min_samples: int = 10  # the protocol's N: never fewer samples than this
    max_samples: int = 40  # adaptive sampling stops here even if the CI is still too wide
    warmup: int = 2  # untimed calls before the first sample (JIT tier-up, caches, page faults)
    resolution_factor: float = 100.0  # a sample lasts at least this many clock resolutions
    min_sample_ns: float = 200_000.0  # and at least this long, so scheduler jitter stays small
    max_inner_reps: int = 1 << 20  # upper bound for calibration (a no-op call is ~1 ns natively)
    # calibration starts here: for a subject whose first calls of a loop are not its steady
    # state (the pool's back-to-back regions, bench_hostcost.py), a sample never holds fewer
    min_inner_reps: int = 1
    noise_band: float = 0.10  # "noisy" when the CI reaches beyond +-10% of the median
    bootstrap_resamples: int = 2000
    seed: int = 0  # bootstrap RNG seed: the same samples always give the same CI
    # adaptive extension stops once it has taken this long (counted from the end of the
    # minimum samples: a figure whose minimum samples are long still gets its extension)
    budget_s: float = 10.0
    # measure_interleaved: a figure's min_samples come in this many bursts, spread over the
    # set's rounds in a seeded random order (docs/timing.md, "Interleaved figures")
    repetitions: int = 1
    # and each burst starts with untimed calls lasting about this long (none when one call is
    # longer): the first sample of a burst ran up to 1.7x slow without them (docs/timing.md)
    burst_warmup_ns: float = 2_000_000.0

    def __post_init__(self) -> None:
        if self.min_samples < 3:
            raise ValueError(f"TimingPolicy.min_samples must be >= 3, got {self.min_samples}")
        if self.max_samples < self.min_samples:
            raise ValueError(
                f"TimingPolicy.max_samples={self.max_samples} is below "
                f"min_samples={self.min_samples}"
            )
        if not 1 <= self.min_inner_reps <= self.max_inner_reps:
            raise ValueError(
                f"TimingPolicy.min_inner_reps={self.min_inner_reps} must be between 1 and "
                f"max_inner_reps={self.max_inner_reps}"
            )
        if self.warmup < 0 or self.resolution_factor <= 0 or self.noise_band <= 0:
            raise ValueError(f"TimingPolicy has a negative or zero field: {self}")
        if not 1 <= self.repetitions <= self.min_samples:
            raise ValueError(
                f"TimingPolicy.repetitions={self.repetitions} must be between 1 and "
                f"min_samples={self.min_samples} (each burst holds at least one sample)"
            )

    def target_sample_ns(self, clock_resolution_ns: float) -> float:
        """The shortest sample allowed on a clock of this resolution."""
        return max(self.resolution_factor * clock_resolution_ns, self.min_sample_ns)


@dataclass(frozen=True)
class Summary:
    """Robust statistics of one set of samples (ns per call)."""

    n: int
    median: float
    q1: float
    q3: float
    ci_low: float  # bootstrap 95% CI of the median
    ci_high: float
    cv: float  # coefficient of variation (sample std / mean)
    outliers: int  # samples beyond Tukey's fences (1.5 IQR), counted and kept

    @property
    def iqr(self) -> float:
        """Inter-quartile range."""
        return self.q3 - self.q1

    def ci_half_width_rel(self) -> float:
        """The CI's larger distance from the median, relative to the median."""
        if self.median <= 0:
            return math.inf
        return max(self.ci_high - self.median, self.median - self.ci_low) / self.median

    def is_noisy(self, band: float) -> bool:
        """True when the CI reaches beyond ``+-band`` of the median."""
        return self.ci_half_width_rel() > band


@dataclass(frozen=True)
class Measurement:
    """One measured figure: raw samples, how they were taken, their statistics."""

    samples_ns: tuple[float, ...]  # mean ns per call of each sample, in order taken
    inner_reps: int
    clock: str
    clock_resolution_ns: float
    summary: Summary
    noisy: bool
    wall_s: float  # time spent measuring, calibration included


def summarize(
    samples: tuple[float, ...] | list[float], resamples: int = 2000, seed: int = 0
) -> Summary:
    """Median, quartiles, bootstrap 95% CI of the median, CV and outlier count of ``samples``."""
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"summarize: need a non-empty 1-D list of samples, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"summarize: samples hold non-finite values: {x.tolist()}")
    q1, median, q3 = (float(v) for v in np.percentile(x, [25, 50, 75]))
    rng = np.random.default_rng(seed)
    boot = np.median(rng.choice(x, size=(resamples, x.size), replace=True), axis=1)
    ci_low, ci_high = (float(v) for v in np.percentile(boot, [2.5, 97.5]))
    mean = float(x.mean())
    cv = float(x.std(ddof=1) / mean) if x.size > 1 and mean > 0 else 0.0
    iqr = q3 - q1
    outliers = int(np.count_nonzero((x < q1 - 1.5 * iqr) | (x > q3 + 1.5 * iqr)))
    return Summary(x.size, median, q1, q3, ci_low, ci_high, cv, outliers)


@dataclass(frozen=True)
class PairedRatio:
    """A ratio of two workloads timed side by side: ``num`` and ``den`` in alternating blocks.

    Each block pair is two short bursts taken back to back, so both see the same speed regime
    of the machine; ``ratios[i]`` is ``median(num block i) / median(den block i)``. The figure is
    the median of those per-pair ratios and its CI a bootstrap over pairs (docs/timing.md,
    "Side-by-side ratios").
    """

    value: float  # median of the per-pair ratios
    ci_low: float  # bootstrap 95% CI of that median, resampling whole pairs
    ci_high: float
    ratios: tuple[float, ...]  # one per block pair, in the order taken
    num_median: float  # median of all ``num`` samples of the pairs (an absolute figure)
    den_median: float  # likewise for ``den``

    def ci_half_width_rel(self) -> float:
        """The CI's larger distance from the value, relative to the value."""
        if self.value <= 0:
            return math.inf
        return max(self.ci_high - self.value, self.value - self.ci_low) / self.value

    def is_noisy(self, band: float) -> bool:
        """True when the CI reaches beyond ``+-band`` of the value."""
        return self.ci_half_width_rel() > band


def paired_ratio(
    num_blocks: Sequence[Sequence[float]],
    den_blocks: Sequence[Sequence[float]],
    resamples: int = 2000,
    seed: int = 0,
) -> PairedRatio:
    """The side-by-side ratio ``num / den`` of paired blocks of samples (ns per call).

    Block ``i`` of ``num`` and block ``i`` of ``den`` were taken back to back. Only ratios
    within a pair are formed, so a speed regime of the machine that lasts longer than a pair
    scales both sides and cancels; a pair that straddles a regime switch is one outlying ratio,
    which the median of ratios ignores.
    """
    if len(num_blocks) != len(den_blocks) or not num_blocks:
        raise ValueError(
            f"paired_ratio: need the same non-zero number of blocks on each side, got "
            f"{len(num_blocks)} and {len(den_blocks)}"
        )
    medians: list[tuple[float, float]] = []
    for i, (a, b) in enumerate(zip(num_blocks, den_blocks, strict=True)):
        xa, xb = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        if xa.size == 0 or xb.size == 0:
            raise ValueError(f"paired_ratio: block pair {i} has an empty side")
        if not (np.all(np.isfinite(xa)) and np.all(np.isfinite(xb))) or np.any(xb <= 0):
            raise ValueError(f"paired_ratio: block pair {i} holds a non-finite or zero time")
        medians.append((float(np.median(xa)), float(np.median(xb))))
    ratios = np.array([a / b for a, b in medians])
    rng = np.random.default_rng(seed)
    boot = np.median(rng.choice(ratios, size=(resamples, ratios.size), replace=True), axis=1)
    ci_low, ci_high = (float(v) for v in np.percentile(boot, [2.5, 97.5]))
    return PairedRatio(
        value=float(np.median(ratios)),
        ci_low=ci_low,
        ci_high=ci_high,
        ratios=tuple(float(r) for r in ratios),
        num_median=float(np.median(np.concatenate([np.asarray(a, float) for a in num_blocks]))),
        den_median=float(np.median(np.concatenate([np.asarray(b, float) for b in den_blocks]))),
    )


@dataclass(frozen=True)
class Calibration:
    """How one figure is sampled: its calls per sample, its clock, and what a sample took."""

    sampler: Sampler
    inner_reps: int
    clock_resolution_ns: float
    clock: str
    sample_ns: float  # one probe sample's length (inner_reps calls): the cost estimate
    wall_s: float  # time the calibration (with its warmup) took


def calibration(sampler: Sampler, policy: TimingPolicy) -> Calibration:
    """Calibrate ``sampler`` so a sample spans the target time (see :func:`calibrate`)."""
    start = time.perf_counter()
    reps = policy.min_inner_reps
    for attempt in range(8):
        probe = sampler(reps, 1, policy.warmup if attempt == 0 else 0)
        target = policy.target_sample_ns(probe.clock_resolution_ns)
        total = probe.sample_ns[0] * reps
        if total >= target or reps >= policy.max_inner_reps:
            break
        # A probe at or below the clock's resolution says little: grow fast but bounded.
        floor = max(total, probe.clock_resolution_ns, 1.0)
        reps = min(policy.max_inner_reps, max(reps + 1, math.ceil(reps * 1.2 * target / floor)))
    else:  # eight probes never reached the target: keep the last count, as its estimate says
        total = probe.sample_ns[0] * reps
    return Calibration(
        sampler, reps, probe.clock_resolution_ns, probe.clock, total, time.perf_counter() - start
    )


def calibrate(sampler: Sampler, policy: TimingPolicy) -> tuple[int, float, str]:
    """Return ``(inner_reps, clock_resolution_ns, clock)`` so a sample spans the target time.

    Starts at ``policy.min_inner_reps`` calls per sample (one by default) and scales up from
    what a single probe sample took; the first probe also serves as warmup.
    """
    c = calibration(sampler, policy)
    return c.inner_reps, c.clock_resolution_ns, c.clock


def measure(sampler: Sampler, policy: TimingPolicy = TimingPolicy()) -> Measurement:
    """Calibrate, warm up, take ``min_samples``; add samples while the CI is too wide.

    Samples are added in batches until the CI is within ``noise_band`` of the median, or
    ``max_samples`` is reached, or ``budget_s`` has passed since the minimum samples were in
    (as in :func:`measure_interleaved`); then the figure is flagged noisy if it still is.
    Every batch starts with untimed calls lasting about ``burst_warmup_ns`` (the host sat idle
    while the CI was computed). Nothing is discarded: outliers are counted in the summary.
    """
    start = time.perf_counter()
    cal = calibration(sampler, policy)
    reps, warm = cal.inner_reps, burst_warmup_calls(cal, policy)
    first = sampler(reps, policy.min_samples, max(policy.warmup, warm))
    samples = list(first.sample_ns)
    summary = summarize(samples, policy.bootstrap_resamples, policy.seed)
    batch = max(3, policy.min_samples // 2)
    extending = time.perf_counter()
    while (
        summary.is_noisy(policy.noise_band)
        and len(samples) < policy.max_samples
        and time.perf_counter() - extending < policy.budget_s
    ):
        more = sampler(reps, min(batch, policy.max_samples - len(samples)), warm)
        samples.extend(more.sample_ns)
        summary = summarize(samples, policy.bootstrap_resamples, policy.seed)
    return Measurement(
        samples_ns=tuple(samples),
        inner_reps=reps,
        clock=cal.clock,
        clock_resolution_ns=cal.clock_resolution_ns,
        summary=summary,
        noisy=summary.is_noisy(policy.noise_band),
        wall_s=time.perf_counter() - start,
    )


def burst_warmup_calls(cal: Calibration, policy: TimingPolicy) -> int:
    """Untimed calls that last about ``policy.burst_warmup_ns`` before a burst of samples.

    Counted in calls, as ``Instance.time_calls`` counts its warmup: a call lasts
    ``sample_ns / inner_reps``; none when one call is longer than the warm-up time, at most
    one sample's worth.
    """
    per_call = max(cal.sample_ns / cal.inner_reps, 1.0)
    return min(cal.inner_reps, int(policy.burst_warmup_ns // per_call))


def burst_sizes(samples: int, bursts: int) -> list[int]:
    """``samples`` split into ``bursts`` bursts as even as possible (larger ones first)."""
    q, r = divmod(samples, bursts)
    return [q + 1] * r + [q] * (bursts - r)


def measure_interleaved(
    figures: Sequence[Calibration], policy: TimingPolicy = TimingPolicy()
) -> list[Measurement]:
    """Measure several calibrated figures together, their bursts interleaved in random order.

    Google Benchmark's random interleaving, applied inside one cell: each figure's
    ``min_samples`` come in ``policy.repetitions`` short bursts, and every round takes one
    burst of each figure in a seeded random order (``policy.seed``), each burst after untimed
    calls lasting about ``burst_warmup_ns``. A speed regime of the
    machine that lasts longer than a burst then lands on several figures a little, instead of
    on one figure whole; each figure's statistics come from all its bursts. Then, while a
    figure's CI is wider than ``noise_band``, further rounds (one burst of each such figure,
    again in random order) run until it is tight, reaches ``max_samples``, or ``budget_s``
    seconds have passed since the minimum samples were in. Nothing is discarded.
    """
    rng = np.random.default_rng(policy.seed)
    samples: list[list[float]] = [[] for _ in figures]
    spent = [f.wall_s for f in figures]
    warm_calls = [burst_warmup_calls(f, policy) for f in figures]

    def burst(i: int, n: int) -> None:
        f = figures[i]
        t0 = time.perf_counter()
        samples[i].extend(f.sampler(f.inner_reps, n, warm_calls[i]).sample_ns)
        spent[i] += time.perf_counter() - t0

    for size in burst_sizes(policy.min_samples, policy.repetitions):
        for i in rng.permutation(len(figures)):
            burst(int(i), size)
    summaries = [summarize(x, policy.bootstrap_resamples, policy.seed) for x in samples]
    step = max(1, policy.min_samples // policy.repetitions)
    started = time.perf_counter()
    while time.perf_counter() - started < policy.budget_s:
        wide = [
            i
            for i, s in enumerate(summaries)
            if s.is_noisy(policy.noise_band) and len(samples[i]) < policy.max_samples
        ]
        if not wide:
            break
        for i in rng.permutation(wide):
            burst(int(i), min(step, policy.max_samples - len(samples[int(i)])))
            summaries[int(i)] = summarize(samples[int(i)], policy.bootstrap_resamples, policy.seed)
    return [
        Measurement(
            samples_ns=tuple(x),
            inner_reps=f.inner_reps,
            clock=f.clock,
            clock_resolution_ns=f.clock_resolution_ns,
            summary=s,
            noisy=s.is_noisy(policy.noise_band),
            wall_s=w,
        )
        for f, x, s, w in zip(figures, samples, summaries, spent, strict=True)
    ]


def perf_counter_resolution_ns(trials: int = 2000) -> float:
    """The smallest non-zero step of ``time.perf_counter_ns`` seen here (its real resolution)."""
    best = math.inf
    for _ in range(trials):
        t0 = time.perf_counter_ns()
        t1 = time.perf_counter_ns()
        while t1 == t0:
            t1 = time.perf_counter_ns()
        best = min(best, t1 - t0)
    return float(best)


def python_sampler(fn: Callable[[], object]) -> Sampler:
    """A sampler timing ``fn()`` in a ``perf_counter_ns`` loop in this process.

    For in-process Python work only (the numpy reference, BLAS): there is no bridge to exclude.
    """
    resolution = perf_counter_resolution_ns()

    def sample(inner_reps: int, samples: int, warmup: int) -> TimingResult:
        for _ in range(warmup):  # calls, as every host's time_calls counts its warmup
            fn()
        out: list[float] = []
        for _ in range(samples):
            t0 = time.perf_counter_ns()
            for _ in range(inner_reps):
                fn()
            out.append((time.perf_counter_ns() - t0) / inner_reps)
        return TimingResult(tuple(out), inner_reps, resolution, "perf_counter_ns")

    return sample
