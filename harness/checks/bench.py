"""Check kind ``bench``: speed curves of one cell, timed inside the host.

Curves (select with ``curves = [...]`` in the matrix's ``[check.bench]`` table):

- ``ops``: per op across a size sweep: time, GFLOP/s or GB/s, and the share of the one-thread
  BLAS roofline (``roofline:sgemm`` rows, measured once per process);
- ``overhead``: the per-call cost of ``tg_noop`` inside the host (``host:noop_call``), one
  Python<->host round trip (``bridge:noop``), and each as a fraction of a call's total time
  against work size (``overhead:call`` / ``overhead:bridge``, x = the op's work); in a JS host
  also an Atomics wake + join (``host:wake_join``) and a postMessage round trip
  (``host:postmessage``) with a helper worker, and the load (``host:load``), each inside the
  host; on an artifact with a pool (native, emscripten ``-pthread``) the pool's own wake + join
  per region, timed inside the library (``pool:wake_join:threads=<n>``, workers spinning, and
  ``pool:wake_join_asleep:threads=<n>``, workers asleep) at the axis's counts above 1, or 2
  (``bench_hostcost.py``; ``skipped`` rows elsewhere);
- ``train_step``: ``tg_model_train_step`` time at the cell's preset, and the speedup over the
  numpy reference's train step (measured once per process per (preset, B, T)); and the same
  speedup measured side by side (``train_step:paired``, ``bench_paired.py``): kernel and numpy
  in alternating blocks of ``block_ms``, ``pairs`` pairs (fewer past ``paired_s`` seconds), the
  figure sign-off reads, since a ratio of two bursts minutes apart carries this VM's speed
  regimes (docs/measured.md); and the parallel regions one step runs at each thread count
  (metric ``regions``, from ``tg_parallel_regions``: each pays one pool wake + join, which the
  report's overhead decomposition multiplies by ``pool:wake_join``, else ``host:wake_join``);
- ``threads = [1, 2, ...]`` (default ``[1]``) makes the kernel thread count an x axis of the
  ``ops`` and ``train_step`` curves: each point is measured at every count (``tg_set_threads``),
  a count above 1 writes its rows under ``<subject>:threads=<n>``, and ``threads:<subject>``
  rows hold the speedup over 1 thread (x = threads) at each size: for the train step measured
  side by side (1- and n-thread blocks alternating in the instance, with ``speedup_ci_low`` /
  ``speedup_ci_high``), for the ops the two medians timed apart (docs/threads.md says why).
  A count above an artifact's thread limit (``Artifact.thread_capacity``) is refused once
  the manifest is read; on an artifact without
  threads (the freestanding wasm builds put 1 in effect) a count above 1 is a ``skipped`` row
  saying so;
- ``generate``: decode tokens/s against context length with the KV cache on and off
  (``generate:kv`` / ``generate:nokv``), and the time to the first token (``ttft:*``).

Every figure goes through :func:`harness.timing.measure`; a figure whose CI is wider than the
noise band has status ``noisy`` (with its CV in ``detail``) and is never reported as clean.
The cell has a time budget (``budget_s``): points that would start after it are ``skipped`` rows
saying so, never silently dropped.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from harness.abi import regions_between
from harness.checks import bench_hostcost as hostcost
from harness.checks import bench_paired
from harness.checks.base import CellContext
from harness.checks.bench_workloads import (
    OPS,
    ModelHandle,
    Workload,
    create_model,
    generate,
    noop_call,
    train_step,
)
from harness.checks.webgpu_step import DEFAULT_ATTENTION, validate_attention
from harness.hosts.base import Instance, TimingResult
from harness.kernel import set_threads
from harness.numpy_baseline import TrainStepJob, run_jobs
from harness.roofline import (
    gflops,
    roofline_cache_clear,
    roofline_fraction,
    sgemm_gflops,
    sgemm_measurements,
)
from harness.rundir.rows import REFERENCE_ARTIFACT, REFERENCE_HOST, Row, Status
from harness.timing import (
    Calibration,
    Measurement,
    PairedRatio,
    TimingPolicy,
    calibration,
    measure,
    measure_interleaved,
    summarize,
)
from reference.presets import ModelConfig, param_count
from reference.train import train_context_length

CURVES: tuple[str, ...] = ("ops", "overhead", "train_step", "generate")
# The curve that measures each subject, by the subject's prefix (before the first ":").
_CURVE_OF_PREFIX: dict[str, str] = {
    "op": "ops", "roofline": "ops",
    "bridge": "overhead", "host": "overhead", "pool": "overhead", "overhead": "overhead",
    "train_step": "train_step",
    "generate": "generate", "ttft": "generate",
}  # fmt: skip


def curve_of(subject: str) -> str:
    """The curve of ``CURVES`` whose measurement yields bench ``subject``; ValueError if none."""
    curve = _CURVE_OF_PREFIX.get(subject.split(":", 1)[0])
    if curve is None:
        raise ValueError(f"bench subject {subject!r} belongs to no curve of {list(CURVES)}")
    return curve


DEFAULT_SIZES: dict[str, tuple[int, ...]] = {
    "matmul_forward": (32, 64, 128, 256),
    "matmul_backward": (32, 64, 128),
    "gelu_forward": (1024, 16384, 262144),
    "residual_forward": (1024, 16384, 262144),
    "layernorm_forward": (16, 256, 2048),
    "attention_forward": (16, 64, 128),
}


@dataclass(frozen=True)
class BenchOptions:
    """The ``[check.bench]`` table of a matrix, validated."""

    curves: tuple[str, ...] = CURVES
    ops: tuple[str, ...] = ("matmul_forward", "gelu_forward")
    sizes: dict[str, tuple[int, ...]] = field(default_factory=lambda: dict(DEFAULT_SIZES))
    batch: int = 4  # train-step batch; small so the largest presets fit the cell budget
    seq: int = 0  # train-step sequence length; 0 = the training context length of the preset
    contexts: tuple[int, ...] = ()  # generation prompt lengths; () = powers of two from 8
    threads: tuple[int, ...] = (1,)  # kernel thread counts: an x axis of ops and train_step
    new_tokens: int = 8  # tokens generated per timed call
    bridge_roundtrips: int = 40
    min_samples: int = 10
    max_samples: int = 30
    warmup: int = 2
    min_sample_ms: float = 0.2  # each sample loops the call at least this long
    noise_band: float = 0.10
    budget_s: float = 30.0  # per cell: points that would start later are skipped rows
    reference: bool = True  # measure the numpy baselines (roofline, reference train step)
    paired: bool = True  # the side-by-side train-step speedup (needs reference)
    pairs: int = 10  # block pairs of the side-by-side speedup (at least bench_paired.MIN_PAIRS)
    block_ms: float = 100.0  # each side's block lasts about this long (at least one sample)
    paired_s: float = 10.0  # no new pair starts that would end past this (MIN_PAIRS always)
    # generation's figures take their min_samples in this many bursts each, interleaved over
    # the curve in a seeded random order (1 = one burst per figure, figure after figure)
    repetitions: int = 5
    # ops and overhead do not depend on the preset: measure them in the first cell of each
    # host x artifact only (per process), which keeps the default matrix inside its time budget.
    ops_once: bool = True
    # the composed WebGPU step's attention kernels in its train_step figure (format webgpu:
    # harness.checks.webgpu_step.ATTENTION_KERNELS); other artifacts time their own train step
    attention: str = DEFAULT_ATTENTION
    # a WASM artifact of the run to time the composed WebGPU step beside, in the same host, in
    # alternating blocks (harness.checks.webgpu_curve: ``train_step:vs_wasm``); "" = none
    versus: str = ""

    def policy(self, budget_s: float) -> TimingPolicy:
        """The timing policy for one measurement with ``budget_s`` left for adaptive samples."""
        return TimingPolicy(
            min_samples=self.min_samples,
            max_samples=self.max_samples,
            warmup=self.warmup,
            min_sample_ns=self.min_sample_ms * 1e6,
            noise_band=self.noise_band,
            budget_s=max(0.0, budget_s),
            repetitions=min(self.repetitions, self.min_samples),
        )


_INT_TUPLES = ("contexts", "threads")
_STR_TUPLES = ("curves", "ops")


def parse_options(options: Mapping[str, Any]) -> BenchOptions:
    """Build :class:`BenchOptions` from a matrix table; ValueError names the bad key."""
    known = {f.name: f for f in fields(BenchOptions)}
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ValueError(f"[check.bench]: unknown option(s) {unknown}; known: {sorted(known)}")
    kw: dict[str, Any] = {}
    for key, value in options.items():
        if key in _STR_TUPLES:
            kw[key] = _str_tuple(key, value)
        elif key in _INT_TUPLES:
            kw[key] = _int_tuple(key, value)
        elif key == "sizes":
            if not isinstance(value, Mapping):
                raise ValueError(
                    f"[check.bench] sizes: expected a table of op = [sizes], got {value!r}"
                )
            merged = dict(DEFAULT_SIZES)
            for op, sizes in value.items():
                if op not in OPS:
                    raise ValueError(f"[check.bench] sizes.{op}: unknown op; known: {sorted(OPS)}")
                merged[op] = _int_tuple(f"sizes.{op}", sizes)
            kw[key] = merged
        elif key == "attention":
            kw[key] = validate_attention(f"[check.bench] {key}", value)
        elif key == "versus":
            if not isinstance(value, str):
                raise ValueError(
                    f"[check.bench] versus: expected an artifact's name, got {value!r}"
                )
            kw[key] = value
        elif key in ("reference", "ops_once", "paired"):
            if not isinstance(value, bool):
                raise ValueError(f"[check.bench] {key}: expected true/false, got {value!r}")
            kw[key] = value
        elif key in ("noise_band", "budget_s", "min_sample_ms", "block_ms", "paired_s"):
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ValueError(f"[check.bench] {key}: expected a positive number, got {value!r}")
            kw[key] = float(value)
        else:
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"[check.bench] {key}: expected an integer >= 0, got {value!r}")
            kw[key] = value
    opts = BenchOptions(**kw)
    for curve in opts.curves:
        if curve not in CURVES:
            raise ValueError(
                f"[check.bench] curves: unknown curve {curve!r}; known: {list(CURVES)}"
            )
    for op in opts.ops:
        if op not in OPS:
            raise ValueError(f"[check.bench] ops: unknown op {op!r}; known: {sorted(OPS)}")
    # a count above an artifact's thread limit is refused per artifact, once the manifest is
    # read (harness.matrix.check_thread_counts): a project's library has its own pool size
    if len(set(opts.threads)) != len(opts.threads):
        raise ValueError(f"[check.bench] threads: {list(opts.threads)} repeats a count")
    if 1 not in opts.threads:  # the numpy speedups, overhead fits and n-thread speedups need it
        raise ValueError(
            f"[check.bench] threads: {list(opts.threads)} lacks 1, the count every speedup "
            "and the overhead and roofline figures are taken at"
        )
    if opts.pairs < bench_paired.MIN_PAIRS:
        raise ValueError(
            f"[check.bench] pairs: need >= {bench_paired.MIN_PAIRS} block pairs for a CI, "
            f"got {opts.pairs}"
        )
    if opts.new_tokens < 2:
        raise ValueError(
            f"[check.bench] new_tokens: need >= 2 to time decoding, got {opts.new_tokens}"
        )
    try:
        opts.policy(opts.budget_s)
    except ValueError as exc:
        raise ValueError(f"[check.bench] {exc}") from None
    return opts


def validate_options(options: Mapping[str, Any]) -> None:
    """Vet a ``[check.bench]`` table at matrix load time (raises ValueError naming the key)."""
    parse_options(options)


def _str_tuple(key: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"[check.bench] {key}: expected a list of strings, got {value!r}")
    return tuple(value)


def _int_tuple(key: str, value: object) -> tuple[int, ...]:
    if not isinstance(value, list | tuple) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value
    ):
        raise ValueError(
            f"[check.bench] {key}: expected a list of positive integers, got {value!r}"
        )
    return tuple(value)


# ---- rows ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stamp:
    """Who measured: the host, artifact and preset every row of a figure carries."""

    host: str
    host_version: str
    artifact: str
    artifact_sha256: str
    preset: str

    def row(self, subject: str, status: Status, **kw: Any) -> Row:
        """A bench row for ``subject``."""
        return Row(
            host=self.host,
            host_version=self.host_version,
            artifact=self.artifact,
            artifact_sha256=self.artifact_sha256,
            preset=self.preset,
            check="bench",
            subject=subject,
            status=status,
            **kw,
        )


def cell_stamp(ctx: CellContext) -> Stamp:
    """The stamp of the cell's own figures."""
    return Stamp(
        ctx.host, ctx.host_version, ctx.artifact.name, ctx.artifact.sha256, ctx.preset.name
    )


def reference_stamp(preset: str) -> Stamp:
    """The stamp of numpy figures (host ``numpy``, artifact ``reference``)."""
    return Stamp(REFERENCE_HOST, np.__version__, REFERENCE_ARTIFACT, "", preset)


def status_of(*ms: Measurement) -> Status:
    """``noisy`` if any of the measurements a figure derives from is noisy, else ``measured``."""
    return "noisy" if any(m.noisy for m in ms) else "measured"


def noise_detail(m: Measurement) -> str:
    """How a measurement was taken and how tight it is (CV, CI width, samples)."""
    s = m.summary
    return (
        f"cv={s.cv:.3f} ci=+-{100 * s.ci_half_width_rel():.1f}% n={s.n} "
        f"inner_reps={m.inner_reps} clock={m.clock} res={m.clock_resolution_ns:g}ns"
        # sampling stops at max_samples or when the extension time is spent: n says which
        + (" NOISY: CI still wider than the noise band when sampling stopped" if m.noisy else "")
    )


def measurement_rows(
    stamp: Stamp,
    subject: str,
    m: Measurement,
    x_name: str = "",
    x_value: float = math.nan,
    detail: str = "",
) -> list[Row]:
    """Raw ``time_ns`` sample rows (iteration i) and the summary rows (iteration -1)."""
    status = status_of(m)
    info = f"{detail} {noise_detail(m)}".strip()
    xy: dict[str, Any] = {"x_name": x_name, "x_value": x_value}
    rows = [
        stamp.row(subject, status, metric="time_ns", value=v, unit="ns", iteration=i, **xy)
        for i, v in enumerate(m.samples_ns)
    ]
    s = m.summary
    for metric, value, unit in (
        ("median_ns", s.median, "ns"),
        ("iqr_ns", s.iqr, "ns"),
        ("ci_low_ns", s.ci_low, "ns"),
        ("ci_high_ns", s.ci_high, "ns"),
        ("cv", s.cv, ""),
        ("outliers", float(s.outliers), "count"),
    ):
        rows.append(
            stamp.row(subject, status, metric=metric, value=value, unit=unit, detail=info, **xy)
        )
    return rows


# ---- measuring ----------------------------------------------------------------------------


EXTENSION_SHARE = 0.15


class Budget:
    """The cell's wall-clock budget for bench points."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds
        self.seconds = seconds

    def left(self) -> float:
        """Seconds left (negative once spent)."""
        return self.deadline - time.monotonic()

    def exempt(self, seconds: float) -> None:
        """Give back ``seconds`` spent on a figure with its own time bound (the side-by-side
        speedup), so it does not starve the curves after it."""
        self.deadline += seconds

    def for_measurement(self) -> float:
        """Seconds one measurement may spend adding samples beyond the minimum.

        A share of the cell's budget, so one noisy point cannot starve the points after it;
        granted even once the deadline has passed. The deadline decides which points start,
        not how precisely a started point is measured: when it did both, 83 of the 186 noisy
        figures of six default-matrix runs had stopped at their minimum samples, the deadline
        gone (docs/measured.md, "Precision before coverage").
        """
        return EXTENSION_SHARE * self.seconds


def _measure_workload(instance: Instance, wl: Workload, policy: TimingPolicy) -> Measurement:
    try:
        return measure(wl.sampler(instance), policy)
    finally:
        wl.release(instance)


def _skipped(
    stamp: Stamp, subject: str, budget: Budget, x_name: str = "", x_value: float = math.nan
) -> Row:
    return stamp.row(
        subject,
        "skipped",
        detail=f"bench budget of {budget.seconds:g} s per cell spent before this point",
        x_name=x_name,
        x_value=x_value,
    )


_EMITTED: set[tuple[str, ...]] = set()  # numpy figures already written by this process
_TRAIN_REFERENCE: dict[tuple[str, int, int], Measurement] = {}
_PAIRS_DONE: set[tuple[str, str, str]] = set()  # (host, artifact, sha256) with ops measured


def reset_process_caches() -> None:
    """Forget the numpy baselines and which host x artifact pairs were measured (new run)."""
    _EMITTED.clear()
    _TRAIN_REFERENCE.clear()
    _PAIRS_DONE.clear()
    roofline_cache_clear()
    bench_paired.close_reference_worker()


# The runner calls this before each run: a second run in one process (``compare --adaptive``,
# tests) must record its own numpy baselines and op curves, not assume the first run's.
begin_run = reset_process_caches


@dataclass
class _OpPoint:
    op: str
    work: float
    work_kind: str
    median_ns: float
    measurement: Measurement


def run(ctx: CellContext) -> Iterator[Row]:
    """Yield the bench rows of one cell (curves as selected by ``ctx.options``)."""
    opts = parse_options(ctx.options)
    budget = Budget(opts.budget_s)
    stamp = cell_stamp(ctx)
    if not ctx.artifact.bound().abi:  # no tinygpt.h exports to time: the binding's model calls
        from harness.checks import bench_bound

        yield from bench_bound.rows(ctx, opts, budget, stamp)
        return
    points: list[_OpPoint] = []
    if ctx.instance.flag_warning:  # the host could not pin V8's tier: its figures may straddle it
        yield stamp.row("engine:tier", "noisy", detail=ctx.instance.flag_warning)
    first_of_pair = (ctx.host, ctx.artifact.name, ctx.artifact.sha256) not in _PAIRS_DONE
    _PAIRS_DONE.add((ctx.host, ctx.artifact.name, ctx.artifact.sha256))
    for curve in opts.curves:
        if curve in ("ops", "overhead") and opts.ops_once and not first_of_pair:
            continue  # measured in this host x artifact's first cell
        started = time.monotonic()
        if curve == "ops":
            yield from _ops_curve(ctx.instance, stamp, opts, budget, points)
        elif curve == "overhead":
            yield from _overhead_curve(ctx.instance, stamp, opts, budget, points)
        if curve in ("ops", "overhead") and opts.ops_once:
            # measured once per host x artifact, not for this preset: their time goes back to
            # the cell, or the first cell's train step (which the claims cite) is starved by
            # them (native/native/huge lost it so, at cc06c96)
            budget.exempt(time.monotonic() - started)
        elif curve == "train_step":
            yield from _train_curve(ctx.instance, stamp, ctx.preset, opts, budget)
        elif curve == "generate":
            yield from _generate_curve(ctx.instance, stamp, ctx.preset, opts, budget)
    if "train_step" in opts.curves and ctx.cold_instance is not None:
        # last, outside the budget: one bounded process start must not starve the steady points
        yield from _cold_train_point(ctx.cold_instance, stamp, ctx.preset, opts)


THREADS_SUFFIX = ":threads="  # a figure at n > 1 threads is ``<subject>:threads=<n>``


def thread_subject(subject: str, threads: int) -> str:
    """``subject`` at ``threads`` threads: itself at 1, else ``<subject>:threads=<n>``."""
    return subject if threads == 1 else f"{subject}{THREADS_SUFFIX}{threads}"


def _speedup_rows(
    stamp: Stamp, subject: str, by_threads: Mapping[int, Measurement], detail: str
) -> Iterator[Row]:
    """``threads:<subject>`` rows: 1-thread median / n-thread median, x = threads."""
    one = by_threads.get(1)
    if one is None or len(by_threads) < 2:
        return
    for n, m in sorted(by_threads.items()):
        yield stamp.row(
            f"threads:{subject}",
            status_of(one, m),
            metric="speedup",
            value=one.summary.median / m.summary.median,
            unit="x",
            x_name="threads",
            x_value=n,
            detail=f"{detail} 1-thread median {one.summary.median:.0f}ns"
            f" / {n}-thread median {m.summary.median:.0f}ns",
        )


class ThreadAxis:
    """Walks ``opts.threads`` on an instance and puts 1 thread back afterwards."""

    def __init__(self, instance: Instance, counts: tuple[int, ...]) -> None:
        self.instance = instance
        self.counts = counts
        self.touched = counts != (1,)  # the default axis never calls tg_set_threads

    def set(self, n: int) -> str:
        """Put ``n`` threads in effect; "" or why not."""
        return set_threads(self.instance, n) if self.touched else ""

    def reset(self) -> None:
        """Back to the library default (1), so the next cell starts where a fresh load would."""
        if self.touched:
            set_threads(self.instance, 1)


def _ops_curve(
    instance: Instance,
    stamp: Stamp,
    opts: BenchOptions,
    budget: Budget,
    points: list[_OpPoint],
    build: Callable[[Instance, str, int], Workload | str] | None = None,
) -> Iterator[Row]:
    """The ops curve: every op of ``opts`` at each size and thread count. ``build`` makes a
    point's workload, or says why not (a skipped row): a bound library's calls through its
    binding (:mod:`.bench_bound`); None: the bench's own workloads, in tinygpt.h's order."""
    roofs, roof_rows = _roofline(opts) if opts.reference else ({}, [])
    yield from roof_rows
    axis = ThreadAxis(instance, opts.threads)
    try:
        for op in opts.ops:
            x_name = OPS[op][1]
            for n in opts.sizes[op]:
                by_threads: dict[int, Measurement] = {}
                for threads in opts.threads:
                    subject = thread_subject(f"op:{op}", threads)
                    if budget.left() <= 0:
                        yield _skipped(stamp, subject, budget, x_name, n)
                        continue
                    why = axis.set(threads)
                    made = why or (
                        OPS[op][0](instance, n) if build is None else build(instance, op, n)
                    )
                    if isinstance(made, str):
                        yield stamp.row(subject, "skipped", detail=made, x_name=x_name, x_value=n)
                        continue
                    wl = made
                    m = _measure_workload(instance, wl, opts.policy(budget.for_measurement()))
                    by_threads[threads] = m
                    yield from _op_point_rows(stamp, subject, op, n, x_name, wl, m, roofs)
                    if threads == 1:
                        points.append(_OpPoint(op, wl.work, wl.work_kind, m.summary.median, m))
                # timed apart, not side by side: docs/threads.md ("The thread-count axis")
                yield from _speedup_rows(stamp, f"op:{op}@{x_name}={n}", by_threads, "timed apart:")
    finally:
        axis.reset()


def _op_point_rows(
    stamp: Stamp,
    subject: str,
    op: str,
    n: int,
    x_name: str,
    wl: Workload,
    m: Measurement,
    roofs: Mapping[int, float],
) -> Iterator[Row]:
    status = status_of(m)
    yield from measurement_rows(stamp, subject, m, x_name, n, wl.shape)
    xy: dict[str, Any] = {"x_name": x_name, "x_value": n, "detail": wl.shape}
    if wl.work_kind == "flops":
        rate = gflops(wl.work, m.summary.median)
        yield stamp.row(subject, status, metric="gflops", value=rate, unit="GFLOP/s", **xy)
        roof_n = roofs.get(n) if op.startswith("matmul") else max(roofs.values(), default=None)
        if roof_n:
            frac = roofline_fraction(rate, roof_n)
            yield stamp.row(subject, status, metric="roofline_fraction", value=frac, unit="", **xy)
    elif wl.work_kind == "bytes":
        rate = wl.work / m.summary.median  # bytes per ns is GB/s
        yield stamp.row(subject, status, metric="gbps", value=rate, unit="GB/s", **xy)


def _roofline(opts: BenchOptions) -> tuple[dict[int, float], list[Row]]:
    """One-thread sgemm GFLOP/s by n for the matmul sizes; rows only the first time."""
    sizes = sorted({n for op in opts.ops if op.startswith("matmul") for n in opts.sizes[op]})
    if not sizes:
        sizes = list(DEFAULT_SIZES["matmul_forward"])
    ms = sgemm_measurements(sizes, opts.policy(10.0))
    out = {n: sgemm_gflops(n, m) for n, m in ms.items()}
    rows: list[Row] = []
    ref = reference_stamp("")
    for n, m in ms.items():
        key = ("roofline", str(n))
        if key in _EMITTED:
            continue
        _EMITTED.add(key)
        detail = f"numpy matmul float32 (n,n)@(n,n)^T, 1 BLAS thread, n={n}"
        rows += measurement_rows(ref, "roofline:sgemm", m, "n", n, detail)
        rows.append(ref.row("roofline:sgemm", status_of(m), metric="gflops", value=out[n],
                            unit="GFLOP/s", x_name="n", x_value=n, detail=detail))  # fmt: skip
    return out, rows


def _overhead_curve(
    instance: Instance, stamp: Stamp, opts: BenchOptions, budget: Budget, points: list[_OpPoint]
) -> Iterator[Row]:
    if budget.left() <= 0:
        yield _skipped(stamp, "host:noop_call", budget)
        return
    call = _measure_workload(instance, noop_call(), opts.policy(budget.for_measurement()))
    yield from measurement_rows(
        stamp, "host:noop_call", call, detail="tg_noop() in a loop inside the host"
    )
    trips = tuple(instance.bridge_roundtrip_ns(max(opts.min_samples, opts.bridge_roundtrips)))
    s = summarize(trips)
    bridge = Measurement(trips, 1, "wall clock in Python", 0.0, s, s.is_noisy(opts.noise_band), 0.0)
    yield from measurement_rows(
        stamp, "bridge:noop", bridge, detail="Python<->host no-op round trip"
    )
    yield from _host_cost_rows(instance, stamp, opts, budget)
    if not points:
        yield stamp.row(
            "overhead:call",
            "skipped",
            detail="needs op points: add 'ops' before 'overhead' in curves",
        )
        return
    op = points[0].op  # the first op's sweep is the work-size axis
    for p in (p for p in points if p.op == op):
        x_name = "flops" if p.work_kind == "flops" else "bytes"
        for subject, cost, src in (
            ("overhead:call", call, call),
            ("overhead:bridge", bridge, bridge),
        ):
            o = cost.summary.median
            yield stamp.row(
                subject,
                status_of(src, p.measurement),
                metric="overhead_fraction",
                value=o / (o + p.median_ns),
                unit="",
                x_name=x_name,
                x_value=p.work,
                detail=f"op={op} overhead={o:.0f}ns call={p.median_ns:.0f}ns",
            )


def _host_cost_rows(
    instance: Instance, stamp: Stamp, opts: BenchOptions, budget: Budget
) -> Iterator[Row]:
    """``host:wake_join``, ``host:postmessage`` (per round trip), the library pool's
    ``pool:wake_join[_asleep]:threads=<n>`` (per region) and ``host:load`` (once), each measured
    inside the host, or a ``skipped`` row saying why not (bench_hostcost.py)."""
    for subject, kind, what in hostcost.PROBES:
        m = hostcost.probe(instance, kind, opts.policy(budget.for_measurement()))
        if isinstance(m, str):
            yield stamp.row(subject, "skipped", detail=m)
        else:
            yield from measurement_rows(stamp, subject, m, detail=what)
    for threads in hostcost.pool_thread_counts(opts.threads, instance.artifact.thread_limit()):
        for subject, asleep, what in hostcost.POOL_PROBES:
            name = thread_subject(subject, threads)
            policy = opts.policy(budget.for_measurement())
            m = hostcost.pool_probe(instance, threads, asleep, policy)
            if isinstance(m, str):
                yield stamp.row(name, "skipped", detail=m)
            else:
                yield from measurement_rows(stamp, name, m, detail=f"{threads} threads: {what}")
    load = hostcost.load_ns(instance)
    if isinstance(load, str):
        yield stamp.row(hostcost.LOAD_SUBJECT, "skipped", detail=load)
    else:
        what = "read + compile + instantiate (+ glue factory), inside the host"
        yield stamp.row(hostcost.LOAD_SUBJECT, "measured", metric="load_ns", value=load,
                        unit="ns", detail=what)  # fmt: skip


def _train_curve(
    instance: Instance, stamp: Stamp, cfg: ModelConfig, opts: BenchOptions, budget: Budget
) -> Iterator[Row]:
    B = opts.batch
    T = opts.seq or train_context_length(cfg)
    if cfg.block_size < T:
        raise ValueError(
            f"[check.bench] seq={T} exceeds preset {cfg.name!r} block_size={cfg.block_size}"
        )
    params = float(param_count(cfg))
    if budget.left() <= 0:
        yield _skipped(stamp, "train_step", budget, "params", params)
        return
    shape = f"B={B} T={T}"
    by_threads: dict[int, Measurement] = {}
    axis = ThreadAxis(instance, opts.threads)
    model = create_model(instance, cfg)
    paired: list[Row] = []
    try:
        for i, threads in enumerate(opts.threads):
            subject = thread_subject("train_step", threads)
            refused = admit_train_point(axis, i, threads, stamp, budget, params)
            if refused is not None:
                yield refused
                continue
            wl = train_step(instance, model, cfg, B, T)
            try:
                by_threads[threads] = measure(
                    wl.sampler(instance), opts.policy(budget.for_measurement())
                )
                regions = step_regions(instance, wl)
            finally:
                wl.release(instance)
            yield from measurement_rows(
                stamp, subject, by_threads[threads], "params", params, shape
            )
            yield stamp.row(
                subject, "measured", metric="regions", value=float(regions), unit="count",
                x_name="params", x_value=params,
                detail=f"{shape}: parallel regions of one tg_model_train_step on {threads} "
                "thread(s) (tg_parallel_regions after it less before); each pays one pool "
                "wake + join",
            )  # fmt: skip
        side_by_side = _thread_pairs(instance, model, cfg, opts, budget, by_threads)
        m = by_threads.get(1)
        if m is not None and opts.reference:  # the numpy speedups are against 1 thread
            ref = _train_reference(cfg.name, B, T, opts)
            if opts.paired:
                # Admitted with the 1-thread figure, whatever the budget left: it is the figure
                # the README's speedup claims cite; its own time is bounded by paired_s, and
                # given back to the budget so generation's points are not skipped for it.
                axis.set(1)
                started = time.monotonic()
                paired = _paired_train(instance, model, stamp, cfg, opts, m, ref, params)
                budget.exempt(time.monotonic() - started)
    finally:
        model.release(instance)
        axis.reset()
    yield from train_thread_rows(
        stamp, by_threads, side_by_side, f"{shape} params={params:.0f}", opts.noise_band
    )
    m = by_threads.get(1)
    if m is None or not opts.reference:  # the numpy speedup is against the 1-thread figure
        return
    ref = _train_reference(cfg.name, B, T, opts)
    emitted = ("train_step", cfg.name, str(B), str(T))
    if emitted not in _EMITTED:
        _EMITTED.add(emitted)
        detail = f"{shape} reference/train.py forward+backward+adamw, 1 BLAS thread"
        yield from measurement_rows(
            reference_stamp(cfg.name), "train_step", ref, "params", params, detail
        )
    yield stamp.row(
        "train_step",
        status_of(m, ref),
        metric="speedup",
        value=ref.summary.median / m.summary.median,
        unit="x",
        x_name="params",
        x_value=params,
        detail=(
            f"{shape} numpy median {ref.summary.median:.0f}ns"
            f" / kernel median {m.summary.median:.0f}ns (timed apart: "
            f"{bench_paired.SUBJECT} is the side-by-side figure)"
        ),
    )
    yield from paired


def _thread_pairs(
    instance: Instance,
    model: ModelHandle,
    cfg: ModelConfig,
    opts: BenchOptions,
    budget: Budget,
    by_threads: Mapping[int, Measurement],
) -> dict[int, PairedRatio]:
    """The train step's speedup of each measured count over 1 thread, side by side: 1- and
    n-thread blocks alternate in this instance (:func:`bench_paired.thread_speedup`), so both
    sides see the same speed regime of the VM, which two medians timed apart do not. A count
    the budget no longer admits is left out (its row falls back to the medians, saying so)."""
    out: dict[int, PairedRatio] = {}
    if 1 not in by_threads:
        return out
    B, T = opts.batch, opts.seq or train_context_length(cfg)
    plan = bench_paired.PairedPlan(opts.pairs, opts.block_ms, opts.paired_s)
    for n in sorted(by_threads):
        if n == 1 or budget.left() <= 0:
            continue
        wl = train_step(instance, model, cfg, B, T)
        try:
            _blocks, out[n] = bench_paired.thread_speedup(
                instance, wl.export, wl.args, n, plan, opts.policy(0.0)
            )
        finally:
            wl.release(instance)
    return out


def admit_train_point(
    axis: ThreadAxis, i: int, threads: int, stamp: Stamp, budget: Budget, params: float
) -> Row | None:
    """Put the ``i``-th count of a train step's thread axis in effect; None, or the ``skipped``
    row of a point the budget or the library refuses."""
    subject = thread_subject("train_step", threads)
    # The first count was admitted by the caller, before the model was made: making a large
    # preset's model in a slow host may take the rest of the budget, and must not starve the
    # one figure the budget let in (it did: chromium/wasm32/huge lost its train_step, which
    # the README's claims cite).
    if i > 0 and budget.left() <= 0:
        return _skipped(stamp, subject, budget, "params", params)
    why = axis.set(threads)
    if why:
        return stamp.row(subject, "skipped", detail=why, x_name="params", x_value=params)
    return None


def train_thread_rows(
    stamp: Stamp,
    by_threads: Mapping[int, Measurement],
    side_by_side: Mapping[int, PairedRatio],
    detail: str,
    noise_band: float,
) -> Iterator[Row]:
    """``threads:train_step`` rows, x = threads: the side-by-side speedup with its CI
    (``speedup_ci_low`` / ``speedup_ci_high``) where it was measured, else the 1-thread median
    over the n-thread median, timed apart, which the detail says."""
    apart = {n: m for n, m in by_threads.items() if n not in side_by_side}
    if len(apart) > 1:  # includes the x = 1 row
        yield from _speedup_rows(stamp, "train_step", apart, f"{detail} timed apart:")
    elif side_by_side and 1 in by_threads:
        yield stamp.row("threads:train_step", status_of(by_threads[1]), metric="speedup",
                        value=1.0, unit="x", x_name="threads", x_value=1,
                        detail=f"{detail} the 1-thread point of the axis")  # fmt: skip
    for n, r in sorted(side_by_side.items()):
        status: Status = "noisy" if r.is_noisy(noise_band) else "measured"
        what = (
            f"{detail} side by side: {len(r.ratios)} pairs of alternating 1- and {n}-thread "
            f"blocks in one instance, median of per-pair ratios, bootstrap 95% CI over pairs "
            f"[{r.ci_low:.3f}, {r.ci_high:.3f}]"
        )
        for metric, value in (
            ("speedup", r.value),
            ("speedup_ci_low", r.ci_low),
            ("speedup_ci_high", r.ci_high),
        ):
            yield stamp.row("threads:train_step", status, metric=metric, value=value, unit="x",
                            x_name="threads", x_value=n, detail=what)  # fmt: skip


def _train_reference(preset: str, B: int, T: int, opts: BenchOptions) -> Measurement:
    """The numpy reference train step at (preset, B, T), measured once per process."""
    key = (preset, B, T)
    if key not in _TRAIN_REFERENCE:
        _TRAIN_REFERENCE[key] = run_jobs([TrainStepJob(preset, B, T)], opts.policy(10.0))[0]
    return _TRAIN_REFERENCE[key]


def _paired_train(
    instance: Instance,
    model: ModelHandle,
    stamp: Stamp,
    cfg: ModelConfig,
    opts: BenchOptions,
    kernel: Measurement,
    ref: Measurement,
    params: float,
) -> list[Row]:
    """The side-by-side speedup rows of the 1-thread train step (``bench_paired.py``)."""
    B, T = opts.batch, opts.seq or train_context_length(cfg)
    wl = train_step(instance, model, cfg, B, T)
    try:
        return bench_paired.figure_rows(
            stamp, wl.sampler(instance), kernel, TrainStepJob(cfg.name, B, T), opts, ref,
            params, f"B={B} T={T}",
        )  # fmt: skip
    finally:
        wl.release(instance)


def step_regions(instance: Instance, wl: Workload) -> int:
    """The parallel regions one untimed call of ``wl`` runs on the pool (``tg_parallel_regions``
    around it). A step's count depends on its shapes and the thread count only
    (tests/kernels/test_kernels_threads.py), so one call gives it."""
    before = instance.call("tg_parallel_regions")
    instance.call(wl.export, *wl.args)
    return regions_between(before, instance.call("tg_parallel_regions"))


COLD_SUBJECT = "train_step:cold"


def _cold_train_point(
    cold_instance: Callable[[], AbstractContextManager[Instance]],
    stamp: Stamp,
    cfg: ModelConfig,
    opts: BenchOptions,
) -> Iterator[Row]:
    """The first train step after instantiation, in a fresh host process with default engine
    flags (V8: lazy Liftoff compilation, then Liftoff code), timed inside the host.

    It is one call by definition, so one sample with no CI: the row says so. It costs one host
    process (or browser) start per cell, taken after the cell's budgeted points.
    """
    B, T = opts.batch, opts.seq or train_context_length(cfg)
    params = float(param_count(cfg))
    started = time.perf_counter()
    with cold_instance() as instance:
        model = create_model(instance, cfg)
        wl = train_step(instance, model, cfg, B, T)
        first = instance.time_calls(wl.export, wl.args, 1, 1, 0)
    yield cold_row(stamp, first, params, f"B={B} T={T} first tg_model_train_step call", started)


def cold_row(stamp: Stamp, first: TimingResult, params: float, what: str, started: float) -> Row:
    """The ``train_step:cold`` row of one first call (``what``), timed in a cold instance
    opened at ``started`` (perf_counter): one sample, so no CI, as the detail says."""
    return stamp.row(
        COLD_SUBJECT, "measured", metric="cold_ns", value=first.sample_ns[0], unit="ns",
        x_name="params", x_value=params,
        detail=(
            f"{what} after instantiation, fresh process, default engine flags; n=1 (no CI) "
            f"clock={first.clock} res={first.clock_resolution_ns:g}ns "
            f"setup+call {time.perf_counter() - started:.1f}s"
        ),
    )  # fmt: skip


DEFAULT_MAX_CONTEXT = 64  # longer prompts are selectable with `contexts`; they cost seconds


def default_contexts(cfg: ModelConfig, new_tokens: int) -> tuple[int, ...]:
    """Powers of two from 8 to 64 that fit the block with the new tokens, plus the longest
    prompt that fits when the block is shorter than 64 + new tokens."""
    top = cfg.block_size - new_tokens
    out = [c for c in (8, 16, 32, 64) if c <= top]
    if 1 <= top < DEFAULT_MAX_CONTEXT and top not in out:
        out.append(top)
    return tuple(out)


def coarse_first(points: tuple[int, ...]) -> list[int]:
    """Ends first, then midpoints: a budget cut leaves a coarse curve, not a truncated one."""
    pts = sorted(points)
    if len(pts) <= 2:
        return pts
    order = [pts[0], pts[-1]]
    spans = [(0, len(pts) - 1)]
    while spans:
        lo, hi = spans.pop(0)
        if hi - lo < 2:
            continue
        mid = (lo + hi) // 2
        order.append(pts[mid])
        spans += [(lo, mid), (mid, hi)]
    return order


def _generate_curve(
    instance: Instance, stamp: Stamp, cfg: ModelConfig, opts: BenchOptions, budget: Budget
) -> Iterator[Row]:
    """Decode rate and time to first token, every point's figures timed interleaved.

    All the curve's figures (a full generation and a one-token one, per context and KV
    setting) are calibrated first, then sampled together in ``repetitions`` rounds of short
    bursts in a seeded random order (:func:`harness.timing.measure_interleaved`): the VM's
    speed regimes, which last milliseconds to hundreds of milliseconds, spread over all of
    them instead of landing inside one, and the two figures a decode rate subtracts come from
    the same seconds.
    """
    g = opts.new_tokens
    contexts = opts.contexts or default_contexts(cfg, g)
    model = create_model(instance, cfg)
    workloads: list[Workload] = []
    points: list[tuple[int, str, Calibration, Calibration]] = []
    policy = opts.policy(0.0)
    try:
        committed = 0.0  # seconds the admitted points' minimum samples are expected to take
        # Both KV settings per context, coarse contexts first: a budget cut keeps both curves.
        for c, kv in ((c, kv) for c in coarse_first(contexts) for kv in (True, False)):
            tag = "kv" if kv else "nokv"
            if budget.left() - committed <= 0:
                yield _skipped(stamp, f"generate:{tag}", budget, "context", c)
                continue
            full_wl = generate(instance, model, cfg, c, g, kv)
            first_wl = generate(instance, model, cfg, c, 1, kv)
            workloads += [full_wl, first_wl]
            full = calibration(full_wl.sampler(instance), policy)
            first = calibration(first_wl.sampler(instance), policy)
            committed += opts.min_samples * (full.sample_ns + first.sample_ns) / 1e9
            points.append((c, tag, full, first))
        if not points:
            return
        # each admitted figure's share of extension time, as Budget.for_measurement grants
        # one figure, whatever the deadline has left
        extension = budget.for_measurement() * 2 * len(points)
        ms = measure_interleaved(
            [cal for _, _, full, first in points for cal in (full, first)],
            opts.policy(extension),
        )
    finally:
        for wl in workloads:
            wl.release(instance)
        model.release(instance)
    for k, (c, tag, _, _) in enumerate(points):
        yield from _generate_point_rows(stamp, c, tag, g, ms[2 * k], ms[2 * k + 1], opts)


def _generate_point_rows(
    stamp: Stamp,
    c: int,
    tag: str,
    g: int,
    full: Measurement,
    first: Measurement,
    opts: BenchOptions,
) -> Iterator[Row]:
    """The rows of one context x KV point: both figures, the time to first token, tokens/s."""
    how = f"interleaved in {opts.policy(0.0).repetitions} rounds"
    yield from measurement_rows(
        stamp, f"generate:{tag}", full, "context", c, f"prompt={c} new={g} {how}"
    )
    yield from measurement_rows(
        stamp, f"ttft:{tag}", first, "context", c, f"prompt={c} new=1 {how}"
    )
    yield stamp.row(
        f"ttft:{tag}", status_of(first), metric="ttft_ns", value=first.summary.median,
        unit="ns", x_name="context", x_value=c,
    )  # fmt: skip
    decode_ns = full.summary.median - first.summary.median
    # Decode rate excludes the prompt's prefill: (g - 1) tokens in the extra time.
    status: Status = status_of(full, first) if decode_ns > 0 else "noisy"
    rate = (g - 1) * 1e9 / decode_ns if decode_ns > 0 else math.nan
    yield stamp.row(
        f"generate:{tag}", status, metric="tokens_per_s", value=rate, unit="tokens/s",
        x_name="context", x_value=c,
        detail=f"({g}-1) tokens / (t(new={g}) - t(new=1)); prefill excluded",
    )  # fmt: skip
