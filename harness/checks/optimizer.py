"""Per-tensor AdamW parity past warmup, with non-zero biases and LayerNorm parameters.

Part of check kind ``model`` (docs/checks.md, "Per-tensor AdamW"). The single ``adamw:params``
step at t=1 cannot see a weight-decay mask bug: the warmup lr there is 3e-6, so decaying a
parameter that must not decay changes it by ~3e-7 of itself, under the rtol; and biases start at
0, so decaying them changes nothing. Here:

- the reference init's biases and LayerNorm weights/biases are moved off their init values
  (weights ``1 + N(0, 0.1)``, biases ``N(0, 0.1)``), so decay has something to act on;
- ``warmup + k`` steps (``k = adamw_steps`` >= 20, full lr for the last k) run on both sides from
  identical params, each step from the same seeded float32 gradients (written into the kernel's
  gradient buffer, as ``adamw:params`` does), through ``tg_model_adamw`` (clip, mask, update) and
  ``reference.train.adamw_step`` in float64;
- each of the 16 tensors is one ``adamw:<name>`` row, so a tensor that decays (or does not) when
  it should not is named. A wrong decay moves a tensor by ``sum(lr) * wd * |p|``: ~2e-3 of itself
  at the defaults, hundreds of times the bound :func:`harness.tolerance.adamw_trajectory_tolerance`
  derives.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from harness.checks.base import CellContext
from harness.kernel import KernelModel
from harness.parity import ParityResult, compare
from harness.rundir.rows import Row, Status
from harness.tolerance import adamw_trajectory_tolerance
from reference.defaults import TrainingDefaults
from reference.model import DECAYED_PARAMS, Params, flatten_params
from reference.presets import PARAM_NAMES, ModelConfig, param_shapes
from reference.train import AdamWState, adamw_step, lr_at

CHECK = "model"
METRICS = ("max_abs_err", "max_rel_err", "max_ulp")
GRAD_SCALE = 1e-3  # per-element gradient std: a typical gradient, and under the clip at tiny..small
OFF_INIT = 0.1  # std of the offset given to biases and LayerNorm parameters


def off_init(
    params: Mapping[str, NDArray[np.float32]], seed: int
) -> dict[str, NDArray[np.float32]]:
    """``params`` with every 1-D-per-layer tensor (biases, LayerNorm) moved off its init value."""
    rng = np.random.default_rng((seed, 15))
    out = {k: v.copy() for k, v in params.items()}
    for name in PARAM_NAMES:
        if name.endswith("b") or name.startswith("ln"):
            out[name] = (out[name] + rng.normal(0.0, OFF_INIT, out[name].shape)).astype(np.float32)
    return out


# Fresh gradients per step: step 1 writes every tensor, each later step redraws one tensor (round
# robin), so every tensor's gradient changes every len(tensors) steps. Writing the whole buffer
# every step cost Chromium ~1 s per step at medium (3.3 MB base64 across its bridge, 124 steps:
# most of a medium cell, docs/measured.md); a slower-changing gradient still moves both moments
# differently (beta1 vs beta2) at each change, and the decay mask is judged as before.
# The buffer is left alone by a step whose norm is under the clip (tinygpt.h scales by
# min(1, clip / norm) = 1); a step over the clip may have scaled it in place, so the next step
# rewrites every tensor.


_Grads = dict[str, NDArray[np.float32]]


@dataclass(frozen=True)
class _Reference:
    """The float64 side of one per-tensor AdamW run: final params and each tensor's path."""

    params: Params
    moved: Params  # sum over steps of |dp|, per element


# One run's reference per (preset, start weights, defaults, steps, seed): every cell of a preset
# asks for the same one, so a run computes it once (float64, 124 steps: ~4 s at medium).
_REFERENCE: dict[tuple[object, ...], _Reference] = {}
_REFERENCE_MAX = 8


def _fresh(t: int, names: list[str], stale: bool) -> list[str]:
    """The tensors whose gradient is redrawn (and rewritten) at step ``t`` (1-based)."""
    return list(names) if t == 1 or stale else [names[(t - 2) % len(names)]]


def _draws(
    start: Mapping[str, NDArray[np.float32]], names: list[str], n_steps: int, seed: int,
    clip: float,
) -> Iterator[tuple[int, _Grads, _Grads]]:  # fmt: skip
    """Per step: ``(t, redrawn tensors, the whole current gradient)``, seeded."""
    rng = np.random.default_rng((seed, 16))
    current: dict[str, NDArray[np.float32]] = {}
    stale = False
    for t in range(1, n_steps + 1):
        new = {n: (rng.standard_normal(start[n].shape) * GRAD_SCALE).astype(np.float32)
               for n in _fresh(t, names, stale)}  # fmt: skip
        current.update(new)
        yield t, new, current
        norm = math.sqrt(
            sum(float(np.sum(np.square(g, dtype=np.float64))) for g in current.values())
        )
        stale = clip > 0 and norm > clip


def _reference(
    start: Mapping[str, NDArray[np.float32]], names: list[str], defaults: TrainingDefaults,
    n_steps: int, seed: int,
) -> _Reference:  # fmt: skip
    """The float64 AdamW run from ``start`` over :func:`_draws`' gradients (cached per run)."""
    h = hashlib.sha256()
    for n in names:
        h.update(n.encode() + np.ascontiguousarray(start[n]).tobytes())
    key = (h.hexdigest(), defaults, n_steps, seed)
    if key in _REFERENCE:
        return _REFERENCE[key]
    ref: Params = {n: start[n].astype(np.float64) for n in names}
    state = AdamWState()
    moved: Params = {n: np.zeros(v.shape) for n, v in ref.items()}
    for t, _, current in _draws(start, names, n_steps, seed, defaults.grad_clip):
        g64: Params = {n: v.astype(np.float64) for n, v in current.items()}
        after, state, _ = adamw_step(ref, g64, state, t, defaults)
        for n in moved:
            moved[n] += np.abs(after[n] - ref[n])
        ref = after
    if len(_REFERENCE) >= _REFERENCE_MAX:
        _REFERENCE.pop(next(iter(_REFERENCE)))
    _REFERENCE[key] = out = _Reference(ref, moved)
    return out


def rows(
    ctx: CellContext,
    cfg: ModelConfig,
    params32: Mapping[str, NDArray[np.float32]],
    defaults: TrainingDefaults,
    k: int,
    seed: int,
) -> Iterator[Row]:
    """Yield one ``adamw:<name>`` parity row set per tensor after ``warmup + k`` AdamW steps."""
    start = off_init(params32, seed)
    n_steps = defaults.warmup_steps + k
    shapes = param_shapes(cfg)
    names = list(shapes)  # the flat ABI order: byte offsets in the gradient buffer
    offsets = dict(zip(names, np.cumsum([0] + [math.prod(s) * 4 for s in shapes.values()]).tolist(),
                       strict=False))  # fmt: skip
    expected = _reference(start, names, defaults, n_steps, seed)
    model = KernelModel.create(ctx.instance, cfg, flatten_params(cfg, start).astype(np.float32))
    try:
        grads_ptr = int(ctx.instance.call("tg_model_grads", model.handle) or 0)
        for t, new, _ in _draws(start, names, n_steps, seed, defaults.grad_clip):
            for n, g in new.items():
                ctx.instance.write(grads_ptr + int(offsets[n]), g.tobytes())
            model.adamw(lr_at(t, defaults), defaults, t)
        found = model.params()
    finally:
        model.free()
    ref, moved = expected.params, expected.moved
    for name in PARAM_NAMES:
        if name not in ref:
            continue
        tol = adamw_trajectory_tolerance(n_steps, float(np.max(moved[name])), defaults)
        r = compare(f"adamw:{name}", found[name], ref[name], tol)
        status: Status = "pass" if r.ok else "fail"
        note = (f"; {n_steps} steps (warmup {defaults.warmup_steps} + {k}), biases/LN off init, "
                f"one tensor's gradient redrawn per step")  # fmt: skip
        for m in METRICS:
            yield ctx.row(CHECK, f"adamw:{name}", status, metric=m, value=float(getattr(r, m)),
                          detail=r.message + note)  # fmt: skip


def name_flat(
    cfg: ModelConfig, r: ParityResult, found: NDArray[Any], expected: NDArray[Any]
) -> ParityResult:
    """``r`` (a comparison over every parameter flattened, ``adamw:params``) with its worst
    element named by tensor and index (``ln1w[0, 8]``), the failing elements counted per tensor,
    and, when they all fall outside or all inside tinygpt.h's decay set, that said."""
    if r.stage not in ("values", "pass") or not r.worst_index:
        return r
    shapes = param_shapes(cfg)
    starts = np.cumsum([0] + [math.prod(s) for s in shapes.values()])
    names = list(shapes)

    def where(flat: int) -> str:
        i = int(np.searchsorted(starts, flat, side="right")) - 1
        local = np.unravel_index(flat - int(starts[i]), shapes[names[i]])
        return f"{names[i]}[{', '.join(str(int(k)) for k in local)}]"

    flat = int(r.worst_index[0])
    msg = r.message.replace(f"at index {r.worst_index}:", f"at {where(flat)} (flat index {flat}):")
    if r.stage == "values":
        e = np.asarray(expected, dtype=np.float64)
        diff = np.abs(np.asarray(found, dtype=np.float64) - e)
        bad = np.flatnonzero(diff > r.tolerance.atol + r.tolerance.rtol * np.abs(e))
        per = np.bincount(np.searchsorted(starts, bad, side="right") - 1, minlength=len(names))
        hit = {n: int(c) for n, c in zip(names, per, strict=True) if c}
        msg += "; failing elements by tensor: " + ", ".join(f"{n} {c}" for n, c in hit.items())
        total = sum(hit.values())
        if hit and not set(hit) & DECAYED_PARAMS:
            msg += (f"; all {total} failing elements are in tensors tinygpt.h does not decay "
                    f"(only {', '.join(sorted(DECAYED_PARAMS))} are): does the reference decay "
                    f"biases/LayerNorm?")  # fmt: skip
        elif hit and set(hit) <= DECAYED_PARAMS:
            msg += (f"; all {total} failing elements are in tensors tinygpt.h decays: does the "
                    f"reference skip weight decay, or use another weight_decay than its "
                    f"config's?")  # fmt: skip
    return dataclasses.replace(r, message=msg)
