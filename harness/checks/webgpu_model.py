"""The ``model`` check of an artifact with the composed WebGPU train step (format ``webgpu``).

The step (``harness/js/webgpu_step.mjs``) runs the artifact's own WGSL ops with every buffer on
the GPU. From the oracle's weights (:func:`harness.checks.model._our_reference`: the reference's
init, float32) and batches, compared under the WGSL-inflated model bounds
(:func:`harness.tolerance.wgsl_step_factor`, docs/tolerance.md "The composed WGSL train step"):

- ``roundtrip:<name>``: the weights uploaded and read back are bitwise the ones sent, per
  tensor (a layout fault of the step's upload names its tensor here);
- ``logits`` and ``loss`` of one forward pass at init;
- ``grad:<name>``: every gradient of that pass (before the clip);
- ``trajectory``: the losses of ``steps`` train steps (forward, backward, clip, AdamW in one
  submission each) against the reference trained from the same weights, batches and rates;
- ``state:<name>``: every tensor after those steps (:func:`.step_state_tolerance`);
- ``update:<name>``: the same tensors against AdamW replayed in float64 on the gradients the
  step itself used, element by element (:mod:`harness.checks.webgpu_update`): the step's
  optimizer (decay mask, rates, bias corrections, clip) sharply;
- ``adamw:<name>``, ``adamw:m:<name>``, ``adamw:v:<name>``: the optimizer probe
  (:func:`adamw_rows`), from biases and LayerNorm off their init at the full rate, the weights
  and AdamW's moments read back, where a decay-mask fault on a bias shows;
- ``determinism``: a second step object from the same weights gives bitwise the same logits,
  gradients and state (``hash:*`` rows carry the sha256 for the cross-adapter table).

The step's attention is the FlashAttention-2-style kernels by default (``[check.model]
attention = "flash"``, what TinyGPT's WebGPU backend runs; their online softmax lengthens the
bounds' path, :func:`harness.tolerance.model_tolerance`) or the naive ones (``"naive"``); a
``measured`` row ``attention`` names them.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from harness.checks.base import CellContext
from harness.checks.model import CHECK, Settings, _our_reference, _parity_rows
from harness.checks.optimizer import off_init
from harness.checks.webgpu_curve import adapter_identity
from harness.checks.webgpu_step import ATTENTION_KERNELS, XADAPTER, GpuStep
from harness.checks.webgpu_update import update_bounds
from harness.parity import compare
from harness.rundir.rows import Row, Status
from harness.tolerance import (
    grad_blocks,
    model_tolerance,
    step_state_tolerance,
    wgsl_step_factor,
)
from reference.corpus import CorpusUnavailable, load_corpus
from reference.dump import ReferenceDump
from reference.model import DECAYED_PARAMS, GPT, Params
from reference.presets import ModelConfig, param_names
from reference.tokenizer import encode
from reference.train import AdamWState, adamw_step


def transcendental_args(
    cfg: ModelConfig, params64: Params, x: NDArray[Any], y: NDArray[Any]
) -> tuple[float, float]:
    """The largest |argument| of exp and of tanh in the step's forward, from the reference:
    exp's after the max subtraction (a row's logit range, an attention row's score range =
    log(max p / min p) over its causal entries), tanh's GELU argument sqrt(2/pi)(x+0.044715x^3)
    clamped to 10 as gelu_forward.wgsl clamps it."""
    model = GPT(cfg, params64)
    logits, _ = model.forward(x, y)
    exp_arg = float(np.max(logits.max(axis=-1) - logits.min(axis=-1)))
    cache = model._cache
    assert cache is not None
    tanh_arg = 0.0
    for layer in cache.layers:
        att = layer.att  # (B, NH, T, T), zeros above the diagonal
        valid = att > 0
        lo = np.where(valid, att, np.inf).min(axis=-1)
        exp_arg = max(exp_arg, float(np.max(np.log(att.max(axis=-1) / lo))))
        f = layer.fch
        z = np.abs(math.sqrt(2 / math.pi) * (f + 0.044715 * f**3))
        tanh_arg = max(tanh_arg, float(min(10.0, np.max(z))))
    return exp_arg, tanh_arg


def _reference_steps(cfg: ModelConfig, oracle: ReferenceDump) -> Params:
    """The float64 reference's weights after the oracle's trajectory (same init, batches and
    rates as its traj_loss)."""
    params: Params = {k: np.asarray(v, dtype=np.float64) for k, v in oracle.params.items()}
    state = AdamWState()
    for t, (bx, by, rate) in enumerate(
        zip(oracle.traj_x, oracle.traj_y, oracle.traj_lr.tolist(), strict=True), start=1
    ):
        model = GPT(cfg, params)
        model.forward(bx, by)
        params, state, _ = adamw_step(params, model.backward(), state, t, oracle.defaults, rate)
    return params


def _sha(arrays: list[NDArray[Any]]) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _pass(
    ctx: CellContext,
    cfg: ModelConfig,
    oracle: ReferenceDump,
    attention: str,
    adapter: int = 0,
    own_gradients: bool = False,
) -> dict[str, Any] | None:
    """One step object (``attention``'s kernels) from the oracle's weights on adapter request
    ``adapter``: round trip, forward, backward, trajectory, state; with ``own_gradients`` also
    the gradients each train step used (``step_grads``, read before it). None when the request
    gives no adapter."""
    batch, T = oracle.x.shape
    step = GpuStep.create(ctx.instance, cfg, batch, T, adapter, attention)
    if step is None:
        return None
    try:
        params32 = {k: np.asarray(v, dtype=np.float32) for k, v in oracle.params.items()}
        step.load(params32)
        back = step.params()
        logits, loss = step.forward(oracle.x, oracle.y)
        grads = step.backward()
        traj, step_grads = [], []
        for t, (bx, by, rate) in enumerate(
            zip(oracle.traj_x, oracle.traj_y, oracle.traj_lr.tolist(), strict=True), start=1
        ):
            if own_gradients:  # the train step recomputes these bitwise (the determinism row)
                step_grads.append(step.gradients(bx, by))
            traj.append(step.train(bx, by, rate, oracle.defaults, t))
        state = step.params()
    finally:
        step.free()
    return {"back": back, "logits": logits, "loss": loss, "grads": grads,
            "traj": np.asarray(traj, dtype=np.float32), "state": state,
            "step_grads": step_grads}  # fmt: skip


def run(ctx: CellContext) -> Iterator[Row]:
    """Yield the step's parity rows against the float64 reference (module docstring)."""
    s = Settings.from_options(ctx.options)
    cfg = ctx.preset
    try:
        tokens = encode(load_corpus())
    except CorpusUnavailable as exc:
        yield ctx.row(CHECK, "corpus", "error", detail=f"default corpus unavailable: {exc}")
        return
    oracle = ctx.reference if ctx.reference is not None else _our_reference(cfg, tokens, s)
    batch, T = oracle.x.shape
    dims = {"n_layer": cfg.n_layer, "n_embd": cfg.n_embd, "seq_len": T, "batch": batch}
    params64: Params = {k: np.asarray(v, dtype=np.float64) for k, v in oracle.params.items()}
    factor, why = wgsl_step_factor(*transcendental_args(cfg, params64, oracle.x, oracle.y))

    first = _pass(ctx, cfg, oracle, s.attention, own_gradients=True)
    second = _pass(ctx, cfg, oracle, s.attention)
    assert first is not None and second is not None  # the artifact's own device: request 0
    flash = s.attention == "flash"
    _, kernels = ATTENTION_KERNELS[s.attention]
    yield ctx.row(CHECK, "attention", "measured",
                  detail=f"the step's attention: {s.attention} ({', '.join(kernels)}; "
                  "[check.model] attention)")  # fmt: skip

    for name in param_names(cfg):
        sent = np.asarray(oracle.params[name], dtype=np.float32)
        got = first["back"][name]
        same = bool(np.array_equal(got.view(np.uint32), sent.view(np.uint32)))
        where = "" if same else _first_difference(got, sent)
        yield ctx.row(CHECK, f"roundtrip:{name}", "pass" if same else "fail",
                      detail=(f"{name}: uploaded and read back bitwise equal" if same else
                              f"{name}: read back differs from what was uploaded: {where}; "
                              "the step's weight layout is not the reference's"))  # fmt: skip

    def rule(what: str, **kw: Any) -> Any:
        r = model_tolerance(what, **dims, rescales=T if flash else 0, **kw)
        return r.tolerance.scaled(factor, why), r.relative_to_max

    tol, _ = rule("logits")
    yield from _parity_rows(ctx, "logits", compare("logits", first["logits"], oracle.logits, tol))
    tol, _ = rule("loss")
    r = compare("loss", np.float32(first["loss"]), np.float64(oracle.loss), tol)
    yield from _parity_rows(ctx, "loss", r)
    yield ctx.row(CHECK, "loss", "measured", metric="loss", value=first["loss"],
                  detail=f"webgpu step loss at init; reference {oracle.loss!r}")  # fmt: skip
    tol, rel = rule("grad")
    for name in param_names(cfg):
        r = compare(f"grad:{name}", first["grads"][name], oracle.grads[name], tol,
                    relative_to_max=rel, max_blocks=grad_blocks(name, cfg.n_layer))  # fmt: skip
        yield from _parity_rows(ctx, f"grad:{name}", r)
    steps = len(oracle.traj_loss)
    tol, _ = rule("trajectory", steps=steps)
    yield from _parity_rows(
        ctx, "trajectory", compare("trajectory", first["traj"], oracle.traj_loss, tol)
    )
    for t, loss in enumerate(first["traj"].tolist(), start=1):
        yield ctx.row(CHECK, "trajectory", "measured", metric="loss", value=loss,
                      x_name="step", x_value=float(t),
                      detail=f"reference {float(oracle.traj_loss[t - 1])!r}")  # fmt: skip
    ref_state = _reference_steps(cfg, oracle)
    tol = step_state_tolerance(oracle.traj_lr.tolist(), factor, oracle.defaults)
    for name in param_names(cfg):
        r = compare(f"state:{name}", first["state"][name], ref_state[name], tol)
        yield from _parity_rows(ctx, f"state:{name}", r)
    # the same state against AdamW replayed on the step's own gradients: its update, sharply
    start = {k: np.asarray(v, dtype=np.float32) for k, v in oracle.params.items()}
    replay = update_bounds(start, first["step_grads"], oracle.traj_lr.tolist(), oracle.defaults,
                           DECAYED_PARAMS)  # fmt: skip
    for name in param_names(cfg):
        r = compare(f"update:{name}", first["state"][name], replay.params[name], tol,
                    bound=replay.bound(name))  # fmt: skip
        yield from _parity_rows(ctx, f"update:{name}", r)

    yield from adamw_rows(ctx, cfg, oracle, s.attention, s.seed, factor)
    yield from _determinism(ctx, cfg, first, second)
    yield from cross_adapter_rows(ctx, cfg, oracle, first, s.attention)


ADAMW_STEPS = 3  # the optimizer probe's train steps, each at the full learning rate


def adamw_rows(
    ctx: CellContext,
    cfg: ModelConfig,
    oracle: ReferenceDump,
    attention: str,
    seed: int,
    factor: float,
) -> Iterator[Row]:
    """The step's optimizer where a decay-mask fault shows: ``adamw:<name>`` (the weights),
    ``adamw:m:<name>`` and ``adamw:v:<name>`` (AdamW's moments, read back from the GPU).

    The ``update:`` rows start from the reference's init, where biases are 0 (decaying 0 changes
    nothing) and the warmup rate is ~3e-6 (a LayerNorm weight decayed by mistake moves 3e-7,
    caught only just). Here a fresh step object starts from the init with every bias and
    LayerNorm tensor moved off its init value (:func:`harness.checks.optimizer.off_init`, the
    C kernels' per-tensor AdamW probe) and trains ``ADAMW_STEPS`` steps at the full rate, ``t``
    from 1: a bias decayed by mistake moves ``lr wd |b|`` (3e-6 at 0.1) against a per-element
    bound of a few float32 ulps of it. Each is judged against AdamW replayed in float64 on the
    gradients the step itself used (:func:`harness.checks.webgpu_update.update_bounds`)."""
    batch, T = oracle.x.shape
    start = off_init({k: np.asarray(v, dtype=np.float32) for k, v in oracle.params.items()}, seed)
    rate = oracle.defaults.learning_rate
    batches = list(zip(oracle.traj_x, oracle.traj_y, strict=True))[:ADAMW_STEPS]
    step = GpuStep.create(ctx.instance, cfg, batch, T, 0, attention)
    assert step is not None  # the artifact's own device: request 0
    try:
        step.load(start)
        grads = []
        for t, (bx, by) in enumerate(batches, start=1):
            grads.append(step.gradients(bx, by))
            step.train(bx, by, rate, oracle.defaults, t)
        state = step.params()
        m, v = step.moments()
    finally:
        step.free()
    rates = [rate] * len(batches)
    replay = update_bounds(start, grads, rates, oracle.defaults, DECAYED_PARAMS)
    tol = step_state_tolerance(rates, factor, oracle.defaults)
    for name in param_names(cfg):
        for subject, got, want, of in (
            (f"adamw:{name}", state[name], replay.params[name], "params"),
            (f"adamw:m:{name}", m[name], replay.m[name], "m"),
            (f"adamw:v:{name}", v[name], replay.v[name], "v"),
        ):
            r = compare(subject, got, want, tol, bound=replay.bound(name, of))
            yield from _parity_rows(ctx, subject, r)


def _first_difference(got: NDArray[np.float32], sent: NDArray[np.float32]) -> str:
    i = np.unravel_index(int(np.argmax(got != sent)), got.shape)
    return f"first at {tuple(int(v) for v in i)}: {float(got[i])!r}, uploaded {float(sent[i])!r}"


def _determinism(
    ctx: CellContext, cfg: ModelConfig, first: Mapping[str, Any], second: Mapping[str, Any]
) -> Iterator[Row]:
    names = param_names(cfg)
    outputs: dict[str, Callable[[Mapping[str, Any]], list[Any]]] = {
        "logits": lambda p: [np.float32(p["loss"]), p["logits"]],
        "grads": lambda p: [p["grads"][n] for n in names],
        "trajectory": lambda p: [p["traj"]],
        "state": lambda p: [p["state"][n] for n in names],
    }
    differing = []
    for what, pick in outputs.items():
        a, b = _sha(pick(first)), _sha(pick(second))
        if a != b:
            differing.append(what)
        detail = f"sha256={a}" + ("" if a == b else f"; second run sha256={b}")
        yield ctx.row(CHECK, f"hash:{what}", "pass" if a == b else "fail", detail=detail)
    yield ctx.row(
        CHECK, "determinism", "fail" if differing else "pass",
        detail=(f"two step objects from one init differ bitwise in: {', '.join(differing)}"
                if differing else
                f"two step objects from one init are bitwise equal ({len(outputs)} outputs)"),
    )  # fmt: skip


def _flat(cfg: ModelConfig, run: Mapping[str, Any]) -> dict[str, NDArray[np.float32]]:
    """Each compared output of a pass as one float32 array."""
    names = param_names(cfg)
    return {
        "logits": np.concatenate([[np.float32(run["loss"])], run["logits"].reshape(-1)]),
        "grads": np.concatenate([run["grads"][n].reshape(-1) for n in names]),
        "trajectory": run["traj"].reshape(-1),
        "state": np.concatenate([run["state"][n].reshape(-1) for n in names]),
    }


def max_ulp_difference(a: NDArray[np.float32], b: NDArray[np.float32]) -> int:
    """The largest distance in float32 ULPs between elements of ``a`` and ``b`` (0: bitwise
    equal up to +0/-0), through the sign-magnitude to two's-complement ordering of the bits."""

    def ordered(x: NDArray[np.float32]) -> NDArray[np.int64]:
        i = np.ascontiguousarray(x, dtype=np.float32).view(np.int32).astype(np.int64)
        return np.where(i < 0, -(i & 0x7FFFFFFF), i)

    return int(np.max(np.abs(ordered(a) - ordered(b)))) if a.size else 0


def cross_adapter_rows(
    ctx: CellContext,
    cfg: ModelConfig,
    oracle: ReferenceDump,
    first: Mapping[str, Any],
    attention: str,
) -> Iterator[Row]:
    """The cross-adapter equality table: the same step (weights, batches, rates, ``attention``
    kernels) on the device
    of every adapter request the page can satisfy, compared pairwise bitwise and in ULPs.

    Rows (subject ``xadapter``): one ``measured`` row per request saying what it gave; per
    pair of requests ``max_ulp`` over logits, grads, trajectory and state, ``pass`` when
    bitwise equal, ``fail`` when two requests got the SAME adapter and still differ (same
    kernels, same adapter: it must reproduce), ``measured`` when different adapters differ;
    and one ``xadapter:table`` row: how many distinct adapters there are (one: it says so).
    """
    info = dict(ctx.instance.load_info.get("webgpu") or {})
    requests = list(info.get("adapter_requests") or [])
    runs: dict[str, dict[str, NDArray[np.float32]]] = {}
    who: dict[str, str] = {}
    for k, req in enumerate(requests):
        name = str(req.get("request", k))
        adapter = req.get("adapter")
        if adapter is None:
            why = req.get("error") or "requestAdapter returned null"
            detail = f"request {name} {req.get('options')}: no adapter ({why})"
            yield ctx.row(CHECK, f"{XADAPTER}{name}", "measured", detail=detail)
            continue
        run = first if k == 0 else _pass(ctx, cfg, oracle, attention, k)
        if run is None:
            detail = f"request {name}: no adapter when the step asked again"
            yield ctx.row(CHECK, f"{XADAPTER}{name}", "measured", detail=detail)
            continue
        runs[name], who[name] = _flat(cfg, run), adapter_identity(adapter)
        yield ctx.row(CHECK, f"{XADAPTER}{name}", "measured",
                      detail=f"request {name} {req.get('options')}: {who[name]}")  # fmt: skip
    names = list(runs)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            ulps = {w: max_ulp_difference(runs[a][w], runs[b][w]) for w in runs[a]}
            worst = max(ulps.values())
            same_adapter = who[a] == who[b]
            status: Status = "pass" if worst == 0 else ("fail" if same_adapter else "measured")
            differ = ", ".join(f"{w} {u}" for w, u in ulps.items() if u)
            detail = (f"{a} [{who[a]}] vs {b} [{who[b]}]: "
                      + ("bitwise equal (logits, grads, trajectory, state)" if worst == 0
                         else f"max ULP difference {worst} ({differ})"))  # fmt: skip
            yield ctx.row(CHECK, f"{XADAPTER}{a}~{b}", status, metric="max_ulp",
                          value=float(worst), detail=detail)  # fmt: skip
    distinct = sorted(set(who.values()))
    summary = (f"one adapter: {distinct[0]} (behind requests {', '.join(names)}); no other "
               "adapter to compare" if len(distinct) == 1 else
               f"{len(distinct)} adapters: " + "; ".join(distinct))  # fmt: skip
    yield ctx.row(CHECK, f"{XADAPTER}table", "measured", metric="adapters",
                  value=float(len(distinct)), detail=summary)  # fmt: skip
