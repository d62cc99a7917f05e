"""Check kind ``smoke``: is this cell alive and roughly right? Five rows, in well under a second.

1. ``op:matmul_forward`` on a seeded odd shape (N=7, C=13, OC=11: no SIMD width divides it, so
   the tail loops run) against the float64 reference, at the ops tolerance of
   :func:`harness.tolerance.op_tolerance`.
2. ``train_step:loss`` and 3. ``train_step:grad_norm``: one forward + backward of a model of the
   cell's preset, from weights identical to the reference's (seeded init, float32, copied in),
   against the float64 reference GPT, at :func:`harness.tolerance.model_tolerance`'s ``loss`` and
   ``grad`` rules (the grad rule is relative to the magnitude, which for a norm is the norm).
4. ``train_step:update``: the step's ``tg_model_adamw`` (peak learning rate, defaults' betas, eps,
   weight decay and clip) left every weight finite, moved some, and moved none further than
   AdamW can at t=1: ``|dp| <= lr * (1 + wd * |p|)``, because with bias correction the first
   step's ``m / sqrt(v)`` is ``g / (|g| + eps)``, at most 1 in magnitude. (Element-wise parity of
   the update is the ``model`` check's job: at t=1 the update is ~sign(g), so a gradient that is
   1e-9 in one and -1e-9 in the other flips a weight by 2 lr, and only that check's per-tensor
   rules can tell such ties from bugs.)
5. ``bounds``: every call above ran over the bounds probe (:class:`harness.checks.ops_bounds.
   Guarded`): a write outside a buffer the client placed, or into an input, is a ``fail`` row
   ``<export>.<arg>:bounds`` / ``:input-written`` instead.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from harness.checks.base import CellContext
from harness.checks.ops_bounds import Guarded, bounds_rows
from harness.hosts.base import HostError
from harness.kernel import MODEL_BUFFERS, KernelModel, Kernels
from harness.parity import ParityResult, compare
from harness.rundir.rows import Row
from harness.tolerance import FLOAT32_EPS, model_tolerance, op_tolerance
from reference import ops
from reference.defaults import DEFAULTS
from reference.model import GPT, flatten_params, init_params
from reference.presets import ModelConfig
from reference.train import grad_norm

CHECK = "smoke"
OPTIONS = ("seed",)
MATMUL_SHAPE = (7, 13, 11)  # N, C, OC
BATCH = 2
SEQ = 7  # odd, and below every preset's block_size


def validate_options(options: Mapping[str, Any]) -> None:
    """``[check.smoke]`` takes only ``seed`` (an int); anything else is a ValueError naming it."""
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown}; allowed: {list(OPTIONS)}")
    seed = options.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"'seed' must be an integer >= 0, got {seed!r}")


def _parity_row(ctx: CellContext, subject: str, result: ParityResult) -> Row:
    return ctx.row(
        CHECK,
        subject,
        "pass" if result.ok else "fail",
        metric="max_abs_err",
        value=result.max_abs_err,
        detail=f"{result.message}; tolerance: {result.tolerance.reason}",
    )


def run(ctx: CellContext) -> Iterator[Row]:
    """Yield the matmul row, then the train-step loss, grad-norm and update rows.

    An artifact bound without tinygpt.h's ABI has no fine-grained ``tg_model_*`` calls: its
    smoke is :func:`_bound_rows`.
    """
    validate_options(ctx.options)
    rng = np.random.default_rng(int(ctx.options.get("seed", DEFAULTS.seed)))
    # Every call runs over the bounds probe (harness.checks.ops_bounds), as in the model check:
    # a kernel writing past a buffer returns the right values, so the rows above would pass it
    # and the damage show later, blamed on another check's call.
    guard = Guarded(ctx.instance, MODEL_BUFFERS)
    guarded = dataclasses.replace(ctx, instance=guard)
    try:
        if not ctx.artifact.bound().abi:
            yield from _bound_rows(guarded, rng)
        else:
            yield _matmul_row(guarded, rng)
            yield from train_step_rows(guarded, rng)
    except HostError:
        # a stray write may be what made this call fail: name it before the error ends the check
        yield from (row for row in bounds_rows(ctx, CHECK, guard) if row.status == "fail")
        raise
    yield from bounds_rows(ctx, CHECK, guard)


ROUND_TRIP_BYTES = 257  # odd: a float-counting allocator must round the request up


def _bound_rows(ctx: CellContext, rng: np.random.Generator) -> Iterator[Row]:
    """Load (done by the host), an alloc/write/read/free round trip through the binding's
    allocator, the matmul row through the binding's matmul_forward, and one train step of its
    model calls; what the binding does not bind is skipped, "not bound"."""
    binding = ctx.artifact.bound()
    alloc, free, _unit = ctx.artifact.allocator()
    data = bytes(range(256)) + b"\xa5"
    ptr = ctx.instance.alloc(ROUND_TRIP_BYTES)
    try:
        ctx.instance.write(ptr, data)
        back = ctx.instance.read(ptr, ROUND_TRIP_BYTES)
    finally:
        ctx.instance.free(ptr)
    ok = back == data
    yield ctx.row(CHECK, "alloc:round_trip", "pass" if ok else "fail",
                  detail=f"{alloc}({ROUND_TRIP_BYTES} bytes), write, read back "
                  f"{'equal' if ok else 'DIFFERENT'}, {free}")  # fmt: skip
    if "matmul_forward" in binding.ops:
        yield _matmul_row(ctx, rng)
    else:
        yield ctx.row(CHECK, "op:matmul_forward", "skipped",
                      detail=f"not bound: {binding.path} binds no matmul_forward")  # fmt: skip
    if "train_step" not in binding.model:
        yield ctx.row(CHECK, "model:train_step", "skipped",
                      detail=f"not bound: {binding.path} has no tinygpt.h ABI and no model "
                      "train_step call")  # fmt: skip
        return
    yield _bound_train_step_row(ctx)


def _bound_train_step_row(ctx: CellContext) -> Row:
    """One train step of the preset's model through the binding: a finite loss near ln vocab."""
    from harness.bindings.model_calls import BoundModel
    from harness.bindings.model_layout import (
        ModelDims,
        layout_of,
        library_config,
    )

    binding = ctx.artifact.bound()
    cfg, _note = library_config(ctx.preset, layout_of(binding).params)
    # ids below the preset's vocab, more than one window: any sampler finds one
    data = bytes(i % ctx.preset.vocab_size for i in range(2 * cfg.block_size + 2))
    model = BoundModel.create(ctx.instance, binding, ModelDims.of(cfg), DEFAULTS.seed)
    try:
        model.set_data(data, 1.0)
        loss = model.train_step(BATCH, DEFAULTS.learning_rate, DEFAULTS.grad_clip)
    finally:
        model.free()
    # at init every logit is near 0: a loss far from ln V is a broken forward pass, not rounding
    ok = math.isfinite(loss) and abs(loss - math.log(cfg.vocab_size)) < 1.0
    return ctx.row(CHECK, "model:train_step", "pass" if ok else "fail", metric="loss",
                   value=loss, detail=f"one {binding.model['train_step'].export} at init "
                   f"(batch {BATCH}): loss {loss!r}, ln {cfg.vocab_size} = "
                   f"{math.log(cfg.vocab_size):.4f}, within 1.0 to pass")  # fmt: skip


def _matmul_row(ctx: CellContext, rng: np.random.Generator) -> Row:
    N, C, OC = MATMUL_SHAPE
    x = rng.standard_normal((N, C)).astype(np.float32)
    W = rng.standard_normal((OC, C)).astype(np.float32)
    b = rng.standard_normal(OC).astype(np.float32)
    kernels = Kernels(ctx.instance)
    # a library whose matmul takes no bias (its binding omits b) is checked without one
    bias = b if kernels.binds("matmul_forward", "b") else None
    found = kernels.matmul_forward(x, W, bias)
    f64 = np.float64
    expected = ops.matmul_forward(
        x.astype(f64), W.astype(f64), None if bias is None else bias.astype(f64)
    )
    tol = op_tolerance("matmul_forward", "out", {"N": N, "C": C, "OC": OC})
    return _parity_row(
        ctx, "op:matmul_forward", compare("matmul_forward.out", found, expected, tol)
    )


def train_step_rows(ctx: CellContext, rng: np.random.Generator) -> Iterator[Row]:
    """The ``train_step:loss``, ``train_step:grad_norm`` and ``train_step:update`` rows of one
    step of a model of the cell's preset, with inputs and weights drawn from ``rng`` (the
    memory64 check reuses it above 4 GiB)."""
    cfg: ModelConfig = ctx.preset
    T = min(SEQ, cfg.block_size)
    tokens = rng.integers(0, cfg.vocab_size, size=(BATCH, T + 1))
    x, y = tokens[:, :-1].astype(np.int32), tokens[:, 1:].astype(np.int32)
    params = init_params(cfg, seed=int(rng.integers(0, 2**31)))  # float32
    ref = GPT(cfg, {k: v.astype(np.float64) for k, v in params.items()})
    _, ref_loss = ref.forward(x, y)
    ref_norm = grad_norm(ref.backward())

    lr = DEFAULTS.learning_rate
    model = KernelModel.create(ctx.instance, cfg, flatten_params(cfg, params))
    try:
        _, loss = model.forward(x, y)
        model.backward()
        norm = model.grad_norm()
        model.adamw(lr, DEFAULTS, t=1)
        after = model.params()
    finally:
        model.free()

    dims = {"n_layer": cfg.n_layer, "n_embd": cfg.n_embd, "seq_len": T, "batch": BATCH}
    rule = model_tolerance("loss", **dims)
    yield _parity_row(
        ctx,
        "train_step:loss",
        compare("loss", np.float32(loss), np.float64(ref_loss), rule.tolerance),
    )
    rule = model_tolerance("grad", **dims)
    yield _parity_row(
        ctx,
        "train_step:grad_norm",
        compare(
            "grad_norm",
            np.float32(norm),
            np.float64(ref_norm),
            rule.tolerance,
            relative_to_max=rule.relative_to_max,
        ),
    )
    yield _update_row(ctx, params, after, lr)


def _update_row(
    ctx: CellContext,
    before: Mapping[str, np.ndarray[Any, Any]],
    after: Mapping[str, np.ndarray[Any, Any]],
    lr: float,
) -> Row:
    worst_ratio, worst_name, moved = 0.0, "", 0
    for name, p in before.items():
        q = after[name]
        if not np.all(np.isfinite(q)):
            bad = int(np.count_nonzero(~np.isfinite(q)))
            return ctx.row(
                CHECK,
                "train_step:update",
                "fail",
                detail=f"after one AdamW step {bad} of {q.size} {name} weights are not finite",
            )
        step = np.abs(q.astype(np.float64) - p.astype(np.float64))
        moved += int(np.count_nonzero(step))
        # The kernel works in float32: lr is rounded when passed and the step is computed with a
        # few roundings (8 ULP of slack), and the new weight is stored rounded (half an ULP).
        bound = lr * (1 + DEFAULTS.weight_decay * np.abs(p)) * (1 + 8 * FLOAT32_EPS)
        bound = bound + np.spacing(np.abs(q).astype(np.float32)) / 2
        ratio = float((step / bound).max())
        if ratio > worst_ratio:
            worst_ratio, worst_name = ratio, name
    ok = moved > 0 and worst_ratio <= 1.0
    detail = (
        f"{moved} weights moved; largest step is {worst_ratio:.6g}x the t=1 AdamW bound "
        f"lr*(1+wd*|p|) (in {worst_name}), lr={lr:g}"
    )
    if moved == 0:
        detail = "tg_model_adamw changed no weight at all"
    return ctx.row(
        CHECK,
        "train_step:update",
        "pass" if ok else "fail",
        metric="max_step_over_bound",
        value=worst_ratio,
        detail=detail,
    )
