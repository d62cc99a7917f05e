"""The ``bench`` check of a library bound by model calls only (no tinygpt.h ABI).

Such a library has no ``tg_noop``, no per-op workloads the bench knows and no
``tg_model_train_step``: what it does have is its binding's ``train_step`` model call, timed in a
loop INSIDE the host (``Instance.time_calls``) like the bundled library's train step, at the
cell's preset (at the library's vocabulary, :func:`~harness.bindings.model_layout.library_config`).
The ops curve times every op the bench has a workload for (``bench_workloads.OPS``) that the
binding binds, under whatever export name and argument order (:func:`through_binding`; the
WGSL kernels' exports time themselves, docs/webgpu.md), at each count of the ``threads`` axis
when the binding has a ``[threads]`` table (``harness.kernel.set_threads``); an op the binding
does not bind, or whose arguments the workload cannot give, is a ``skipped`` row saying why, and
so are the other curves. The train step walks the same axis as the bundled one: a median per
count, the regions one step runs when the binding names a counter, and ``threads:train_step``
speedups measured side by side (``bench_paired.thread_speedup``). The speedup over numpy is
the side-by-side one (``train_step:paired``, ``bench_paired.py``): the reference's train step
at the library's own shapes (the cell's preset at the library's vocabulary, batch x the
library's whole context, which it trains on), timed in alternating blocks with the library's.
There is no timed-apart speedup row: the process's reference baseline is at the bundled
library's shapes (batch x the training context), and a ratio of two bursts minutes apart
carries the VM's regime (docs/measured.md).
On a host with a cold instance (``Host.cold_host``: native, Node, Chromium),
``train_step:cold`` is the first train step after instantiation in a fresh process under
default engine flags, as for the bundled library.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING

from harness.abi import regions_between
from harness.bindings import Binding, bundled
from harness.bindings.canonical import OPS as CANONICAL
from harness.bindings.model_calls import BoundModel, ordered_args
from harness.bindings.model_layout import (
    ModelDims,
    layout_of,
    library_config,
)
from harness.checks import bench_paired
from harness.checks.base import CellContext
from harness.checks.bench_workloads import OPS, Workload
from harness.checks.webgpu_step import has_step
from harness.hosts.base import Instance
from harness.numpy_baseline import TrainStepJob
from harness.rundir.rows import Row
from harness.timing import measure
from reference.defaults import DEFAULTS
from reference.presets import ModelConfig, param_count

if TYPE_CHECKING:  # bench imports this module on use
    from harness.checks.bench import BenchOptions, Budget, Stamp
    from harness.timing import Measurement, PairedRatio

SUBJECT = "train_step"


def rows(ctx: CellContext, opts: BenchOptions, budget: Budget, stamp: Stamp) -> Iterator[Row]:
    """The bound library's bench rows: the train step timed, the other curves skipped."""
    from harness.checks.bench import (
        ThreadAxis,
        admit_train_point,
        measurement_rows,
        thread_subject,
        train_thread_rows,
    )

    binding = ctx.artifact.bound()
    why = f"not bound: {binding.path} has no tinygpt.h ABI (tg_noop, tg_* ops, tg_model_*)"
    timed = timed_ops(binding, opts.ops)
    for curve in opts.curves:
        if curve == "ops" and timed:
            yield from _ops_curve_of(ctx, opts, budget, stamp, timed)
        elif curve == "ops":
            whys = "; ".join(unmapped(binding, op) for op in opts.ops)
            yield stamp.row(curve, "skipped", detail=f"no op to time through the binding: {whys}")
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
    detail = f"{wl.shape} {wl.export} through the binding" + (f"; {note}" if note else "")
    axis = ThreadAxis(ctx.instance, opts.threads)
    by_threads: dict[int, Measurement] = {}
    side_by_side: dict[int, PairedRatio] = {}
    paired: list[Row] = []
    try:
        for i, threads in enumerate(opts.threads):  # the bundled train step's axis (bench.py)
            refused = admit_train_point(axis, i, threads, stamp, budget, params)
            if refused is not None:
                yield refused
                continue
            subject = thread_subject(SUBJECT, threads)
            by_threads[threads] = m = measure(
                wl.sampler(ctx.instance), opts.policy(budget.for_measurement())
            )
            yield from measurement_rows(stamp, subject, m, "params", params, detail)
            yield from _regions_rows(ctx.instance, binding, stamp, subject, wl, threads, params)
        plan = bench_paired.PairedPlan(opts.pairs, opts.block_ms, opts.paired_s)
        for n in sorted(by_threads):
            if n > 1 and budget.left() > 0:
                _blocks, side_by_side[n] = bench_paired.thread_speedup(
                    ctx.instance, wl.export, wl.args, n, plan, opts.policy(0.0)
                )
        one = by_threads.get(1)
        if one is not None and opts.reference and opts.paired:
            axis.set(1)
            vocab = cfg.vocab_size if cfg.vocab_size != ctx.preset.vocab_size else 0
            job = TrainStepJob(ctx.preset.name, opts.batch, cfg.block_size, vocab)
            shape = f"{wl.shape} reference at vocab {cfg.vocab_size}"
            started = time.monotonic()
            paired = bench_paired.figure_rows(
                stamp, wl.sampler(ctx.instance), one, job, opts, None, params, shape
            )
            budget.exempt(time.monotonic() - started)  # bounded by paired_s on its own
    finally:
        model.free()
        axis.reset()
    yield from train_thread_rows(
        stamp, by_threads, side_by_side, f"{detail} params={params:.0f}", opts.noise_band
    )
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


def _regions_rows(
    instance: Instance,
    binding: Binding,
    stamp: Stamp,
    subject: str,
    wl: Workload,
    threads: int,
    params: float,
) -> Iterator[Row]:
    """The parallel regions one train step runs on the pool at ``threads``, by the binding's
    ``[threads] regions`` counter (none named: no row), as the bundled train step's row."""
    control = binding.threads
    if control is None or not control.regions:
        return
    before = instance.call(control.regions)
    instance.call(wl.export, *wl.args)
    regions = regions_between(before, instance.call(control.regions))
    yield stamp.row(
        subject, "measured", metric="regions", value=float(regions), unit="count",
        x_name="params", x_value=params,
        detail=f"{wl.shape}: parallel regions of one {wl.export} on {threads} thread(s) "
        f"({control.regions} after it less before); each pays one pool wake + join",
    )  # fmt: skip


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


def timed_ops(binding: Binding, ops: tuple[str, ...]) -> tuple[str, ...]:
    """The ops of ``ops`` the bench can time through ``binding``: bound, under any export name
    and argument order, with every argument the bench's tinygpt.h workload can give
    (:func:`unmapped` says why not for the others)."""
    return tuple(op for op in ops if not unmapped(binding, op))


def unmapped(binding: Binding, op: str) -> str:
    """Why the bench's ``op`` workload cannot be called through ``binding``; "" if it can.

    A workload (``bench_workloads.OPS``) builds tinygpt.h's arguments: ``bundled().ops[op]``'s
    ``args``, plus the values tinygpt.h builds in (its ``fixed``: LayerNorm's eps). The
    binding's export may take them in any order, leave optional ones out (lib2's matmul has no
    bias) or fix them, but a value tinygpt.h's call does not have cannot be made up."""
    call = binding.ops.get(op)
    if call is None:
        return f"{op}: not bound by {binding.path}"
    ours = bundled().ops[op]
    missing = [a for a in call.args if a not in ours.args and a not in ours.fixed]
    if missing:
        return (
            f"{op}: {call.export} takes {', '.join(missing)}, which the bench's {op} workload "
            f"(tinygpt.h's {ours.export}({', '.join(ours.args)})) has no value for"
        )
    return ""


def through_binding(binding: Binding, op: str, wl: Workload) -> Workload:
    """The bench's ``op`` workload ``wl`` (tinygpt.h's export and argument order) as a call of
    the export ``binding`` binds ``op`` to: each value goes by canonical name to its place in
    the binding's ``args``; an argument the binding leaves out (an optional bias) or fixes is
    not passed. ``wl`` itself where the binding binds ``op`` as tinygpt.h does.

    Random inputs time the same work whatever the binding declares: a weight's layout
    (``out_in`` or ``in_out``) is the same buffer read in another order, and a role (an output
    overwritten or an accumulator added into) the same buffer written; neither changes the
    work or a buffer's size. The values are not checked here (the ops check does that). A
    left-out optional argument is named in the shape: the work figure still counts it (a
    matmul's bias adds N*OC of its 2*N*C*OC FLOPs).
    ValueError when the binding fixes a dim at another value than the workload's: the
    workload's buffers would be the wrong size for the call.
    """
    ours, call = bundled().ops[op], binding.ops[op]
    if (call.export, call.args, dict(call.fixed)) == (ours.export, ours.args, dict(ours.fixed)):
        return wl
    values = {**ours.fixed, **dict(zip(ours.args, wl.args, strict=True))}
    for a, v in call.fixed.items():
        if CANONICAL[op].args[a].role == "dim" and a in values and values[a] != v:
            raise ValueError(
                f"{call.export} fixes {a} = {v:g}, the bench's {op} workload at {wl.shape} "
                f"has {a} = {values[a]:g}: its buffers do not fit the call"
            )
    left_out = [a for a in ours.args if a not in call.args]
    how = f"{call.export}({', '.join(call.args)})" + (
        f" without {', '.join(left_out)}" if left_out else ""
    )
    return replace(
        wl,
        export=call.export,
        args=tuple(values[a] for a in call.args),
        shape=f"{wl.shape} through the binding: {how}",
    )


def _ops_curve_of(
    ctx: CellContext, opts: BenchOptions, budget: Budget, stamp: Stamp,
    timed: tuple[str, ...],
) -> Iterator[Row]:  # fmt: skip
    """The ops curve over ``timed``, each call through the binding (:func:`through_binding`),
    each point at every count of ``opts.threads`` (the bundled library's thread axis,
    ``bench.ThreadAxis``, whose ``set_threads`` calls the binding's ``[threads]`` setter;
    without one a count above 1 is refused at load, and is a skipped row if it gets here);
    the ops of ``opts.ops`` not timed are skipped rows."""
    from harness.checks import bench

    binding = ctx.artifact.bound()
    for op in opts.ops:
        if op not in timed:
            yield stamp.row(f"op:{op}", "skipped", detail=unmapped(binding, op))

    def build(instance: Instance, op: str, n: int) -> Workload | str:
        return _bound_workload(instance, binding, op, n)

    yield from bench._ops_curve(ctx.instance, stamp, replace(opts, ops=timed), budget, [], build)


def _bound_workload(instance: Instance, binding: Binding, op: str, n: int) -> Workload | str:
    """The bench's ``op`` workload at size ``n`` through ``binding``, or why not (its buffers
    then freed)."""
    wl = OPS[op][0](instance, n)
    try:
        return through_binding(binding, op, wl)
    except ValueError as exc:
        wl.release(instance)
        return str(exc)
