"""The ``bench`` check of a library bound by model calls only (no tinygpt.h ABI).

Such a library has no ``tg_noop``, no per-op workloads the bench knows and no
``tg_model_train_step``: what it does have is its binding's ``train_step`` model call, timed in a
loop INSIDE the host (``Instance.time_calls``) like the bundled library's train step, at the
cell's preset (at the library's vocabulary, :func:`~harness.bindings.model_layout.library_config`).
The ops curve runs over the ops its binding binds exactly as tinygpt.h does (the WGSL kernels'
binding: their exports time themselves, docs/webgpu.md), at one thread; the other curves are
``skipped`` rows saying why. The speedup over numpy is the side-by-side one
(``train_step:paired``, ``bench_paired.py``): the reference's train step at the library's own
shapes (the cell's preset at the library's vocabulary, batch x the library's whole context, which
it trains on), timed in alternating blocks with the library's. There is no timed-apart speedup
row: the process's reference baseline is at the bundled library's shapes (batch x the training
context), and a ratio of two bursts minutes apart carries the VM's regime (docs/measured.md).
On a host with a cold instance (``Host.cold_host``: native, Node, Chromium),
``train_step:cold`` is the first train step after instantiation in a fresh process under
default engine flags, as for the bundled library.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING

from harness.bindings import Binding, bundled
from harness.bindings.model_calls import BoundModel, ordered_args
from harness.bindings.model_layout import (
    ModelDims,
    layout_of,
    library_config,
)
from harness.checks import bench_paired
from harness.checks.base import CellContext
from harness.checks.bench_workloads import Workload
from harness.checks.webgpu_step import has_step
from harness.hosts.base import Instance
from harness.numpy_baseline import TrainStepJob
from harness.rundir.rows import Row
from harness.timing import measure
from reference.defaults import DEFAULTS
from reference.presets import ModelConfig, param_count

if TYPE_CHECKING:  # bench imports this module on use
    from harness.checks.bench import BenchOptions, Budget, Stamp

SUBJECT = "train_step"


def rows(ctx: CellContext, opts: BenchOptions, budget: Budget, stamp: Stamp) -> Iterator[Row]:
    """The bound library's bench rows: the train step timed, the other curves skipped."""
    from harness.checks.bench import measurement_rows

    binding = ctx.artifact.bound()
    why = f"not bound: {binding.path} has no tinygpt.h ABI (tg_noop, tg_* ops, tg_model_*)"
    timed = tinygpt_ops(binding, opts.ops)
    for curve in opts.curves:
        if curve == "ops" and timed:
            yield from _ops_curve_of(ctx, opts, budget, stamp, timed)
        elif curve != SUBJECT:
            yield stamp.row(curve, "skipped", detail=why)
    if SUBJECT not in opts.curves:
        return
    if has_step(ctx.artifact.exports()):  # the composed WebGPU train step times itself
        from harness.checks import webgpu_curve

        yield from webgpu_curve.train_rows(ctx, opts, budget, stamp)
        return
    if "train_step" not in binding.model:
        yield stamp.row(SUBJECT, "skipped", detail=f"{why}; no train_step model call either")
        return
    cfg, note = library_config(ctx.preset, layout_of(binding).params)
    params = float(param_count(cfg))
    if budget.left() <= 0:
        yield stamp.row(SUBJECT, "skipped", x_name="params", x_value=params,
                        detail=f"bench budget of {budget.seconds:g} s per cell spent")  # fmt: skip
        return
    model, wl = _train_workload(ctx.instance, binding, cfg, ctx.preset.vocab_size, opts.batch)
    try:
        m = measure(wl.sampler(ctx.instance), opts.policy(budget.for_measurement()))
        paired: list[Row] = []
        if opts.reference and opts.paired:
            vocab = cfg.vocab_size if cfg.vocab_size != ctx.preset.vocab_size else 0
            job = TrainStepJob(ctx.preset.name, opts.batch, cfg.block_size, vocab)
            shape = f"{wl.shape} reference at vocab {cfg.vocab_size}"
            started = time.monotonic()
            paired = bench_paired.figure_rows(
                stamp, wl.sampler(ctx.instance), m, job, opts, None, params, shape
            )
            budget.exempt(time.monotonic() - started)  # bounded by paired_s on its own
    finally:
        model.free()
    detail = f"{wl.shape} {wl.export} through the binding" + (f"; {note}" if note else "")
    yield from measurement_rows(stamp, SUBJECT, m, "params", params, detail)
    yield from paired
    if ctx.cold_instance is not None:
        yield _cold_point(ctx, binding, cfg, opts.batch, stamp, params)


def _train_workload(
    instance: Instance, binding: Binding, cfg: ModelConfig, ids: int, batch: int
) -> tuple[BoundModel, Workload]:
    """A bound model of ``cfg`` with data set, and its ``train_step`` call as a Workload.

    The data are token ids below ``ids`` (the preset's vocabulary), more than a window, so any
    batch sampler finds one. The caller frees the model.
    """
    model = BoundModel.create(instance, binding, ModelDims.of(cfg), DEFAULTS.seed)
    try:
        n = 4 * cfg.block_size + 1
        model.set_data(bytes(i % ids for i in range(n)), 1.0)
        export, args = ordered_args(
            binding,
            "train_step",
            model=model.handle,
            batch=batch,
            lr=DEFAULTS.learning_rate,
            grad_clip=DEFAULTS.grad_clip,
        )
    except BaseException:
        model.free()
        raise
    return model, Workload(export, args, 0.0, "none", f"B={batch} T={cfg.block_size}", ())


def _cold_point(
    ctx: CellContext, binding: Binding, cfg: ModelConfig, batch: int, stamp: Stamp, params: float
) -> Row:
    """The first train step after instantiation in a fresh host process under default engine
    flags, as the bundled library's ``train_step:cold`` (:func:`harness.checks.bench.
    _cold_train_point`): one call, so one sample and no CI."""
    from harness.checks.bench import cold_row

    assert ctx.cold_instance is not None
    started = time.perf_counter()
    with ctx.cold_instance() as instance:
        model, wl = _train_workload(instance, binding, cfg, ctx.preset.vocab_size, batch)
        try:
            first = instance.time_calls(wl.export, wl.args, 1, 1, 0)
        finally:
            model.free()
    what = f"{wl.shape} first {wl.export} call, through the binding,"
    return cold_row(stamp, first, params, what, started)


def tinygpt_ops(binding: Binding, ops: tuple[str, ...]) -> tuple[str, ...]:
    """The ops of ``ops`` that ``binding`` binds exactly as tinygpt.h does (same export, same
    arguments, same roles): the bench's workloads (``bench_workloads.OPS``), written against
    tinygpt.h, call them correctly. The WGSL kernels' binding is one (docs/webgpu.md)."""
    ours = bundled().ops
    return tuple(
        op for op in ops
        if op in binding.ops and op in ours
        and (binding.ops[op].export, binding.ops[op].args, dict(binding.ops[op].roles))
        == (ours[op].export, ours[op].args, dict(ours[op].roles))
    )  # fmt: skip


def _ops_curve_of(
    ctx: CellContext, opts: BenchOptions, budget: Budget, stamp: Stamp,
    timed: tuple[str, ...],
) -> Iterator[Row]:  # fmt: skip
    """The ops curve over the ops bound as tinygpt.h binds them, at one thread (a library
    without the ABI has no tg_set_threads); the others are skipped rows."""
    from harness.checks.bench import _ops_curve

    for op in opts.ops:
        if op not in timed:
            why = f"not bound as tinygpt.h binds it by {ctx.artifact.bound().path}"
            yield stamp.row(f"op:{op}", "skipped", detail=f"{op}: {why}")
    one = replace(opts, ops=timed, threads=(1,))
    yield from _ops_curve(ctx.instance, stamp, one, budget, [])
