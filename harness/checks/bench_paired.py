"""The side-by-side train-step speedup: kernel and numpy timed in alternating short blocks.

This VM runs the same call at two speeds in regimes lasting milliseconds to hundreds of
milliseconds (docs/measured.md, "Noise"). A speedup whose numpy median and kernel median were
timed minutes apart carries the regime of each; here the kernel's train step (timed inside its
host) and the numpy reference's (timed in a one-BLAS-thread child, :class:`ReferenceWorker`)
alternate in blocks of about ``block_ms`` each, and the figure is the median of the per-pair
ratios with a bootstrap CI over pairs (:func:`harness.timing.paired_ratio`; the choice is
justified in docs/timing.md, "Side-by-side ratios").

Rows (subject :data:`SUBJECT`, x = the preset's parameter count): one ``pair_ratio`` row per
block pair (``iteration`` i, numpy block median / kernel block median), and the summaries
``speedup``, ``speedup_ci_low``, ``speedup_ci_high``, ``kernel_median_ns`` and
``numpy_median_ns`` (the pairs' pooled samples: the absolute figures of the same seconds).
"""

from __future__ import annotations

import atexit
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from harness.hosts.base import HostError, Instance, Scalar, TimingResult
from harness.kernel import set_threads
from harness.numpy_baseline import Job, ReferenceWorker, TrainStepJob
from harness.rundir.rows import Row, Status
from harness.timing import (
    Measurement,
    PairedRatio,
    Sampler,
    TimingPolicy,
    calibrate,
    paired_ratio,
)

if TYPE_CHECKING:  # bench imports this module
    from harness.checks.bench import BenchOptions, Stamp

SUBJECT = "train_step:paired"  # the one name of the side-by-side speedup curve
MIN_PAIRS = 3  # fewer pairs give no CI worth the name; a matrix may not ask for fewer
MAX_BLOCK_SAMPLES = 50  # a block of cheap calls stops here, whatever block_ms asks


@dataclass(frozen=True)
class PairedPlan:
    """How one side-by-side figure is taken (from the ``[check.bench]`` options)."""

    pairs: int  # block pairs wanted
    block_ms: float  # each block lasts about this long (at least one sample)
    seconds: float  # stop adding pairs past this, once MIN_PAIRS are taken


@dataclass(frozen=True)
class Side:
    """One side of the ratio: a sampler, its calls per sample and one sample's length."""

    sampler: Sampler
    inner_reps: int
    sample_ns: float  # one sample (inner_reps calls) lasts about this long


def block_samples(sample_ns: float, block_ms: float) -> int:
    """Samples per block so the block lasts about ``block_ms``: at least 1, at most 50.

    A sample longer than the block (an xl or huge train step, 0.5-1.3 s here) is its own block:
    it already averages over many regimes, and three of them would stretch the pair to seconds.
    """
    if sample_ns <= 0 or not math.isfinite(sample_ns):
        return MAX_BLOCK_SAMPLES
    return max(1, min(MAX_BLOCK_SAMPLES, math.ceil(block_ms * 1e6 / sample_ns)))


@dataclass(frozen=True)
class Interleaved:
    """The blocks of one side-by-side measurement, in the order taken."""

    num_blocks: tuple[tuple[float, ...], ...]  # numpy (or 1 thread), ns per call
    den_blocks: tuple[tuple[float, ...], ...]  # kernel (or n threads), ns per call
    num_per_block: int
    den_per_block: int
    wall_s: float

    def ratio(self, policy: TimingPolicy) -> PairedRatio:
        """num over den (numpy over kernel, 1 thread over n), paired by block
        (:func:`harness.timing.paired_ratio`)."""
        return paired_ratio(
            self.num_blocks, self.den_blocks, policy.bootstrap_resamples, policy.seed
        )


def interleave(num: Side, den: Side, plan: PairedPlan) -> Interleaved:
    """Alternate blocks of ``num`` and ``den``: pair i runs den then num when i is even, num
    then den when odd, so a drift within a pair favours neither side.

    Stops after ``plan.pairs`` pairs, or earlier once ``MIN_PAIRS`` are taken and another pair
    (as long as the last) would end past ``plan.seconds``.
    """
    k_num = block_samples(num.sample_ns, plan.block_ms)
    k_den = block_samples(den.sample_ns, plan.block_ms)
    start = time.monotonic()
    nums: list[tuple[float, ...]] = []
    dens: list[tuple[float, ...]] = []
    last = 0.0
    for i in range(max(plan.pairs, MIN_PAIRS)):
        now = time.monotonic()
        if i >= MIN_PAIRS and now + last - start > plan.seconds:
            break
        if i % 2 == 0:
            dens.append(den.sampler(den.inner_reps, k_den, 0).sample_ns)
            nums.append(num.sampler(num.inner_reps, k_num, 0).sample_ns)
        else:
            nums.append(num.sampler(num.inner_reps, k_num, 0).sample_ns)
            dens.append(den.sampler(den.inner_reps, k_den, 0).sample_ns)
        last = time.monotonic() - now
    return Interleaved(tuple(nums), tuple(dens), k_num, k_den, time.monotonic() - start)


def thread_sampler(
    instance: Instance, export: str, args: tuple[Scalar, ...], threads: int
) -> Sampler:
    """A sampler of ``export(*args)`` on ``threads`` kernel threads, timed inside the host.

    Each block first puts ``threads`` in effect (the binding's setter, ``tg_set_threads`` or a
    ``[threads]`` table's ``set``: :func:`harness.kernel.set_threads`; outside the timed loop),
    then makes one untimed call: the pool has just grown (a worker created) or shrunk (joined),
    and its first region would otherwise carry the new thread's start and cold caches. A
    count the artifact does not put in effect raises HostError naming what it did put.
    """

    def sample(inner_reps: int, samples: int, warmup: int) -> TimingResult:
        why = set_threads(instance, threads)
        if why:
            raise HostError(why)
        return instance.time_calls(export, args, inner_reps, samples, max(warmup, 1))

    return sample


def thread_speedup(
    instance: Instance,
    export: str,
    args: tuple[Scalar, ...],
    threads: int,
    plan: PairedPlan,
    policy: TimingPolicy,
) -> tuple[Interleaved, PairedRatio]:
    """The speedup of ``threads`` kernel threads over 1, side by side in one instance.

    1-thread and ``threads``-thread blocks of about ``plan.block_ms`` alternate (order flipped
    every pair, :func:`interleave`); the figure is the median of the per-pair ratios (1-thread
    block median / n-thread block median) with a bootstrap CI over pairs. Two figures timed one
    after the other would carry two speed regimes of this VM instead (docs/threads.md). One
    calibration, at 1 thread, sets the calls per sample of both sides, so a sample of either
    is the same number of calls, and so is a block of either (sized from a 1-thread probe).
    Puts 1 thread back afterwards.
    """
    one = thread_sampler(instance, export, args, 1)
    many = thread_sampler(instance, export, args, threads)
    try:
        reps, _resolution, _clock = calibrate(one, policy)
        one_ns = one(reps, 1, policy.warmup).sample_ns[0] * reps
        many(reps, 1, policy.warmup)  # warms the n-thread path; its length is not used:
        # both sides' blocks are sized from the 1-thread probe, so a pair holds the same calls
        # on each side (sized apart, one loaded probe gave blocks of 18 and 6 calls)
        blocks = interleave(Side(one, reps, one_ns), Side(many, reps, one_ns), plan)
    finally:
        set_threads(instance, 1)
    return blocks, blocks.ratio(policy)


_WORKER: list[ReferenceWorker] = []  # the process's numpy worker, started on first use


def reference_worker() -> ReferenceWorker:
    """The process's long-lived numpy worker (one BLAS thread), started on first use."""
    if _WORKER and not _WORKER[0].alive():
        _WORKER.pop().close()
    if not _WORKER:
        _WORKER.append(ReferenceWorker())
    return _WORKER[0]


def close_reference_worker() -> None:
    """Stop the numpy worker, if one runs (a new run starts its own; also run at exit)."""
    while _WORKER:
        _WORKER.pop().close()


atexit.register(close_reference_worker)


def measure_side_by_side(
    kernel: Side,
    job: Job,
    plan: PairedPlan,
    policy: TimingPolicy,
    numpy_timing: tuple[int, float] | None = None,
) -> tuple[Interleaved, PairedRatio]:
    """Time the warm ``kernel`` side and the numpy ``job`` side by side; the blocks and their
    ratio. ``numpy_timing`` is ``(inner_reps, one sample's ns)`` from the job's own
    measurement, so no second calibration is paid; without it one call per sample (a train
    step lasts milliseconds) and one probe sample. The worker warms the job up once."""
    worker = reference_worker()
    reps, sample_ns = numpy_timing or (1, 0.0)
    worker.warm(job, reps, policy.warmup)
    if numpy_timing is None:
        sample_ns = worker.block(job, reps, 1, 0).sample_ns[0]
    blocks = interleave(Side(worker.sampler(job), reps, sample_ns), kernel, plan)
    return blocks, blocks.ratio(policy)


def figure_rows(
    stamp: Stamp,
    kernel_sampler: Sampler,
    kernel: Measurement,
    job: TrainStepJob,
    opts: BenchOptions,
    reference: Measurement | None,
    params: float,
    shape: str,
) -> list[Row]:
    """Measure one side-by-side speedup and return its rows.

    The kernel side reuses ``kernel``'s calibration (it is warm: it was just timed); the numpy
    side ``reference``'s when the check measured one, else a probe in the worker.
    """
    side = Side(kernel_sampler, kernel.inner_reps, kernel.summary.median * kernel.inner_reps)
    plan = PairedPlan(opts.pairs, opts.block_ms, opts.paired_s)
    numpy_timing = (
        None
        if reference is None
        else (reference.inner_reps, reference.summary.median * reference.inner_reps)
    )
    blocks, ratio = measure_side_by_side(side, job, plan, opts.policy(0.0), numpy_timing)
    return list(rows(stamp, blocks, ratio, params, shape, opts.noise_band))


def rows(
    stamp: Stamp,
    blocks: Interleaved,
    ratio: PairedRatio,
    params: float,
    shape: str,
    noise_band: float,
) -> Iterator[Row]:
    """The side-by-side rows: one ``pair_ratio`` per pair, then the summaries."""
    status: Status = "noisy" if ratio.is_noisy(noise_band) else "measured"
    xy = {"x_name": "params", "x_value": params}
    for i, r in enumerate(ratio.ratios):
        yield stamp.row(SUBJECT, status, metric="pair_ratio", value=r, unit="x", iteration=i, **xy)
    detail = (
        f"{shape} side by side: {len(ratio.ratios)} block pairs in {blocks.wall_s:.1f}s, "
        f"{blocks.num_per_block} numpy / {blocks.den_per_block} kernel samples per block, "
        f"order alternating; median of per-pair ratios (numpy block median / kernel block "
        f"median), bootstrap 95% CI over pairs +-{100 * ratio.ci_half_width_rel():.1f}%"
        + (" NOISY: CI wider than the noise band" if status == "noisy" else "")
    )
    for metric, value, unit in (
        ("speedup", ratio.value, "x"),
        ("speedup_ci_low", ratio.ci_low, "x"),
        ("speedup_ci_high", ratio.ci_high, "x"),
        ("kernel_median_ns", ratio.den_median, "ns"),
        ("numpy_median_ns", ratio.num_median, "ns"),
    ):
        yield stamp.row(SUBJECT, status, metric=metric, value=value, unit=unit, detail=detail, **xy)
