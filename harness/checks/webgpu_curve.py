"""The bench check's ``train_step`` figure of an artifact with the composed WebGPU train step.

For the WebGPU-over-WASM speedup curve (the report's "WebGPU train step over the best WASM
artifact", :func:`harness.report_webgpu.webgpu_speedup_table`): the step of
``harness/js/webgpu_step.mjs`` (forward, backward, clip, AdamW in one submission) at the bench's
train-step workload (``[check.bench]`` ``batch`` and ``seq``, so the WASM artifacts'
``train_step`` rows of the same host and preset time the same work), on every distinct adapter
the page's adapter requests give (:func:`train_rows`, called by ``bench_bound.rows``).

Each figure records its clock (``timestamp-query`` where the adapter offers it: the GPU's clock
around the step's compute pass; else the wall clock from submit to onSubmittedWorkDone) and, for
SwiftShader or any fallback adapter, that it is CPU-emulated. The first adapter's figure is
subject ``train_step``; another adapter's ``train_step:adapter=<vendor>/<architecture>``.

With ``[check.bench] versus = "<wasm artifact>"`` each adapter's step is also timed side by
side with that WASM artifact's train step, loaded in the same host (:func:`side_by_side`,
subject ``train_step:vs_wasm``, with the same adapter suffix): the WebGPU-over-WASM speedup from
alternating blocks, which the report prefers to the ratio of two cells' medians.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from harness.checks import bench_paired
from harness.checks.base import CellContext
from harness.checks.bench_workloads import create_model, train_step
from harness.checks.webgpu_step import GpuStep
from harness.hosts.base import HostError, TimingResult
from harness.rundir.rows import Row, Status
from harness.timing import Measurement, calibrate, summarize
from reference.model import init_params
from reference.presets import param_count
from reference.train import train_context_length

if TYPE_CHECKING:  # bench imports bench_bound, which imports this module on use
    from harness.checks.bench import BenchOptions, Budget, Stamp

SUBJECT = "train_step"  # the bench's train-step subject
VERSUS_SUBJECT = (
    "train_step:vs_wasm"  # the side-by-side WebGPU-over-WASM speedup (:func:`side_by_side`)
)
ADAPTER_SUFFIX = ":adapter="  # a second (third, ...) adapter's figure: SUBJECT + this + label
MARK = "composed WebGPU step"  # in every figure's detail: how the report tells them apart
CPU_EMULATED = "CPU-emulated"  # in a figure's detail: never to be compared with a GPU's
ADAPTER = "adapter"  # in a figure's detail: "adapter <vendor/architecture> (request <name>)"


def adapter_label(adapter: Mapping[str, Any]) -> str:
    """``vendor/architecture`` of an adapter summary (the load info's)."""
    return f"{adapter.get('vendor') or '?'}/{adapter.get('architecture') or '?'}"


def adapter_identity(adapter: Mapping[str, Any]) -> str:
    """An adapter as one string: ``vendor/architecture``, its description (or device) and
    ``(fallback)``; two adapters with one identity are one adapter to the harness."""
    desc = adapter.get("description") or adapter.get("device") or ""
    fallback = " (fallback)" if adapter.get("is_fallback_adapter") else ""
    return adapter_label(adapter) + (f" {desc}" if desc else "") + fallback


def is_emulated(adapter: Mapping[str, Any]) -> bool:
    """Whether the adapter is a CPU running the shaders (a fallback adapter, or SwiftShader):
    its figures are never compared with a GPU's."""
    return bool(adapter.get("is_fallback_adapter") or adapter.get("architecture") == "swiftshader")


def clock_method(adapter: Mapping[str, Any]) -> str:
    """How the step on ``adapter`` is timed, and whether its figures are CPU-emulated."""
    clock = (
        "timestamp-query (GPU clock, the step's compute pass)"
        if adapter.get("timestamp_query")
        else "wall clock: submit to onSubmittedWorkDone"
    )
    return clock + (f"; {CPU_EMULATED} ({adapter_label(adapter)})" if is_emulated(adapter) else "")


def train_rows(ctx: CellContext, opts: BenchOptions, budget: Budget, stamp: Stamp) -> Iterator[Row]:
    """The step timed on each distinct adapter (module docstring): ``min_samples`` steps after
    one warmup, each a ``time_ns`` sample row, with the summary rows every bench figure has
    (median, CI, CV; :func:`step_measurement`); ``skipped`` when the bench budget is spent."""
    from harness.checks.bench import measurement_rows  # bench imports this module on use

    cfg = ctx.preset
    T = opts.seq or train_context_length(cfg)
    if cfg.block_size < T:
        raise ValueError(
            f"[check.bench] seq={T} exceeds preset {cfg.name!r} block_size={cfg.block_size}"
        )
    params_n = float(param_count(cfg))
    rng = np.random.default_rng(0)
    x = rng.integers(0, cfg.vocab_size, size=(opts.batch, T)).astype(np.int32)
    y = rng.integers(0, cfg.vocab_size, size=(opts.batch, T)).astype(np.int32)
    params = init_params(cfg)
    info = dict(ctx.instance.load_info.get("webgpu") or {})
    seen: list[str] = []
    for k, req in enumerate(info.get("adapter_requests") or [{"adapter": info}]):
        adapter = req.get("adapter")
        if adapter is None or adapter_label(adapter) in seen:
            continue  # no adapter, or one already timed through another request
        label = adapter_label(adapter)
        subject = SUBJECT if not seen else f"{SUBJECT}{ADAPTER_SUFFIX}{label}"
        seen.append(label)
        if budget.left() <= 0:
            spent = f"bench budget of {budget.seconds:g} s per cell spent"
            yield stamp.row(subject, "skipped", x_name="params", x_value=params_n, detail=spent)
            continue
        step = GpuStep.create(ctx.instance, cfg, opts.batch, T, k, opts.attention)
        if step is None:
            continue
        started = time.perf_counter()
        beside: list[Row] = []
        try:
            step.load(params)
            samples = step.time_samples(x, y, opts.min_samples)
            m = step_measurement(samples, adapter, opts, time.perf_counter() - started)
            if opts.versus:
                versus = subject.replace(SUBJECT, VERSUS_SUBJECT, 1)
                beside = side_by_side(ctx, stamp, opts, step, (x, y), m, adapter, versus)
        finally:
            step.free()
        yield from measurement_rows(
            stamp, subject, m, "params", params_n,
            f"B={opts.batch} T={T} {MARK} (forward, backward, clip, AdamW: one submission; "
            f"{step.kernels}; {opts.min_samples} steps after one warmup); {ADAPTER} {label} "
            f"(request {req.get('request', k)})",
        )  # fmt: skip
        yield from beside


def side_by_side(
    ctx: CellContext,
    stamp: Stamp,
    opts: BenchOptions,
    step: GpuStep,
    batch: tuple[NDArray[Any], NDArray[Any]],
    gpu: Measurement,
    adapter: Mapping[str, Any],
    subject: str,
) -> list[Row]:
    """The WebGPU-over-WASM speedup timed side by side (``[check.bench] versus``): the WASM
    artifact ``opts.versus`` is loaded in this cell's host beside the GPU step, and blocks of
    its ``tg_model_train_step`` (the same B, T, a batch of the same shape) alternate with
    blocks of the composed step (:func:`harness.checks.bench_paired.interleave`, order flipped
    every pair); the figure is the median of the per-pair ratios (WASM block median / WebGPU
    block median) with a bootstrap CI over pairs. Two figures of two cells, timed minutes
    apart, would carry two of this VM's speed regimes; these pairs see the same one. Rows:
    ``pair_ratio`` per pair, ``speedup`` with ``speedup_ci_low``/``_high``, and both sides'
    medians (``webgpu_median_ns``, ``wasm_median_ns``); an ``error`` row naming the cause when
    the WASM artifact cannot be opened or run here."""
    cfg = ctx.preset
    params = float(param_count(cfg))
    xy: dict[str, Any] = {"x_name": "params", "x_value": params}
    if ctx.open_artifact is None:
        return [stamp.row(subject, "skipped", detail="no run to open the WASM artifact in", **xy)]
    policy = opts.policy(0.0)
    plan = bench_paired.PairedPlan(opts.pairs, opts.block_ms, opts.paired_s)
    clock = clock_method(adapter)
    resolution = 1.0 if adapter.get("timestamp_query") else math.nan

    def gpu_sample(_reps: int, samples: int, _warmup: int) -> TimingResult:
        # one step per sample (a step is milliseconds to seconds); the step warms itself up
        return TimingResult(step.time_samples(*batch, samples), 1, resolution, clock)

    try:
        with ctx.open_artifact(opts.versus) as wasm:
            model = create_model(wasm, cfg)
            wl = train_step(wasm, model, cfg, opts.batch, int(batch[0].shape[1]))
            try:
                sampler = wl.sampler(wasm)
                reps, _resolution, _clock = calibrate(sampler, policy)
                wasm_ns = sampler(reps, 1, policy.warmup).sample_ns[0] * reps
                blocks = bench_paired.interleave(
                    bench_paired.Side(sampler, reps, wasm_ns),
                    bench_paired.Side(gpu_sample, 1, gpu.summary.median),
                    plan,
                )
            finally:
                wl.release(wasm)
                model.release(wasm)
    except (HostError, RuntimeError) as exc:
        why = f"cannot time the step beside WASM artifact {opts.versus!r} here: {exc}"
        return [stamp.row(subject, "error", detail=why, **xy)]
    ratio = blocks.ratio(policy)
    status: Status = "noisy" if ratio.is_noisy(opts.noise_band) else "measured"
    detail = (
        f"B={opts.batch} T={batch[0].shape[1]} {MARK} beside {opts.versus} "
        f"(tg_model_train_step) in one {ctx.host} instance: {len(ratio.ratios)} block pairs in "
        f"{blocks.wall_s:.1f}s, {blocks.num_per_block} WASM / {blocks.den_per_block} WebGPU "
        "samples per block, order alternating; median of per-pair ratios (WASM block median / "
        "WebGPU block median), bootstrap 95% CI over pairs "
        f"+-{100 * ratio.ci_half_width_rel():.1f}%; WebGPU clock: {clock}; WASM clock: the "
        "host's, inside it" + (" NOISY: CI wider than the noise band" if status == "noisy" else "")
    )
    out = [stamp.row(subject, status, metric="pair_ratio", value=r, unit="x", iteration=i, **xy)
           for i, r in enumerate(ratio.ratios)]  # fmt: skip
    for metric, value, unit in (
        ("speedup", ratio.value, "x"),
        ("speedup_ci_low", ratio.ci_low, "x"),
        ("speedup_ci_high", ratio.ci_high, "x"),
        ("webgpu_median_ns", ratio.den_median, "ns"),
        ("wasm_median_ns", ratio.num_median, "ns"),
    ):
        out.append(stamp.row(subject, status, metric=metric, value=value, unit=unit,
                             detail=detail, **xy))  # fmt: skip
    return out


def step_measurement(
    samples: Sequence[float], adapter: Mapping[str, Any], opts: BenchOptions, wall_s: float
) -> Measurement:
    """The step's samples (ns, one step each) as a bench :class:`Measurement`: the statistics
    every other figure gets (median, bootstrap CI of it, CV, noise flag against the bench's
    ``noise_band``), the clock :func:`clock_method` names. The sample count is fixed at
    ``min_samples``: no adaptive extension (a SwiftShader step at small lasts seconds)."""
    policy = opts.policy(0.0)
    summary = summarize(list(samples), policy.bootstrap_resamples, policy.seed)
    # timestamp-query counts in ns (the loader's ops timing says the same); the wall clock's
    # resolution in the page is not reported by the loader
    resolution = 1.0 if adapter.get("timestamp_query") else math.nan
    return Measurement(
        samples_ns=tuple(samples), inner_reps=1, clock=clock_method(adapter),
        clock_resolution_ns=resolution, summary=summary,
        noisy=summary.is_noisy(policy.noise_band), wall_s=wall_s,
    )  # fmt: skip
