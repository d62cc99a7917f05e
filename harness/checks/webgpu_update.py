"""The composed WebGPU step's optimizer, judged on its own gradients (``update:<name>`` rows).

The model check's ``state:<name>`` rows compare the step's weights after k train steps with the
reference's own k steps; the two runs' gradients differ by the gradient rule's error, and where
a gradient is within its rounding of zero AdamW may move the element either way, so that bound
is ``2 U sum lr`` per element: it catches a tensor in the wrong place, not a wrong update. A
weight-decay mask that also decays the LayerNorm weights moves them by ``lr wd |p|`` per step,
0.05 of that bound at tiny.

Here the step's own gradients are read back before each train step (forward and backward
alone: the train step's submission recomputes them bitwise, the ``determinism`` row holds it to
that), and the float64 AdamW of :func:`reference.ops.adamw_update` replays the k steps from the
uploaded weights on exactly those gradients, with the step's global-norm clip. What is left
between the replay and the GPU is the update's float32 arithmetic under WGSL's rules, which
:func:`update_bounds` bounds element by element: each step's own roundings
(:func:`harness.tolerance.elementwise_bound` of ``adamw_update``, ``wgsl``) plus the earlier
steps' errors of ``m``, ``v`` and ``p`` carried through the update to first order, plus the
clip scale's rounding as a relative error of every gradient. docs/tolerance.md "The step's
update on its own gradients".
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from harness.tolerance import (
    FLOAT32_U,
    GLOBAL_PARAMS,
    WGSL_DIV_U,
    WGSL_SQRT_U,
    ElementwiseBound,
    elementwise_bound,
)
from reference import ops
from reference.defaults import TrainingDefaults

F64 = NDArray[np.float64]
SUMSQ_WORKGROUP = 64  # step_sumsq.wgsl: invocations per tensor, then a tree over them
SUMSQ_TREE = 6  # log2(SUMSQ_WORKGROUP) tree additions


def clip_scale_error(sizes: Sequence[int]) -> float:
    """The relative error of the step's clip scale ``clip / sqrt(sum g^2)`` (WGSL, float32).

    step_sumsq.wgsl: each of 64 invocations sums ``ceil(n / 64)`` squares in order (a square and
    an add each), then a tree of 6 levels; step_clip.wgsl sums the tensors' partials in order.
    Every term is non-negative, so each add's rounding is relative to the sum: at most
    ``(ceil(n_max / 64) + 1 + 6 + tensors) u``. The square root halves that and adds its own
    (WGSL's 9u), the divide 5u, step_scale.wgsl's multiply u.
    """
    n_max = max(sizes) if sizes else 0
    sum_u = math.ceil(n_max / SUMSQ_WORKGROUP) + 1 + SUMSQ_TREE + len(sizes)
    return (0.5 * sum_u + WGSL_SQRT_U + WGSL_DIV_U + 1) * FLOAT32_U


@dataclass(frozen=True)
class Replay:
    """The float64 replay of k AdamW steps on given gradients, and each element's bound."""

    params: dict[str, F64]
    bounds: dict[str, F64]
    clip_error: float  # the clip scale's relative error counted as every gradient's
    m: dict[str, F64] = field(default_factory=dict)  # the first moments after the k steps
    v: dict[str, F64] = field(default_factory=dict)  # the second moments
    m_bounds: dict[str, F64] = field(default_factory=dict)
    v_bounds: dict[str, F64] = field(default_factory=dict)

    def bound(self, name: str, of: str = "params") -> ElementwiseBound:
        """Tensor ``name``'s bound (of its ``"params"``, or its moment ``"m"`` or ``"v"``) in
        the form :func:`harness.parity.compare` takes."""
        bounds = {"params": self.bounds, "m": self.m_bounds, "v": self.v_bounds}[of]
        return ElementwiseBound(
            bounds[name], {}, {},
            "per-element: the WGSL AdamW's own roundings at each step, earlier steps' m, v and p "
            f"errors carried through the update, the clip scale's {self.clip_error:.2g} relative",
        )  # fmt: skip


def _f32(x: float) -> float:
    return float(np.float32(x))


def update_bounds(
    start: Mapping[str, NDArray[np.floating]],
    grads: Sequence[Mapping[str, NDArray[np.floating]]],
    rates: Sequence[float],
    defaults: TrainingDefaults,
    decayed: Collection[str],
) -> Replay:
    """Replay ``len(rates)`` clipped AdamW steps from ``start`` on the raw (unclipped) gradients
    ``grads`` of each step, in float64, with the float32 values of the step's scalars; bound
    each element of the float32 WGSL result (module docstring).

    Per step ``t``, with ``m' = b1 m + (1-b1) g``, ``v' = b2 v + (1-b2) g^2``, ``mh = c1 m'``,
    ``vh = c2 v'``, ``den = sqrt(vh) + eps``, ``r = mh / den`` and ``p' = p - lr (r + wd p)``,
    the first-order error of the new values is the update's own (``elementwise_bound``) plus
    ``|dp'/dm| dm + |dp'/dv| dv + |1 - lr wd| dp`` for ``p`` (``dp'/dm = -lr b1 c1 / den``,
    ``dp'/dv = lr r b2 c2 / (2 sqrt(vh) den)``), ``b1 dm`` and ``b2 dv`` for the moments, and
    the clip's relative error ``e`` through ``g``: ``(1-b1)|g| e``, ``2 (1-b2) g^2 e``, and for
    ``p`` ``lr ((1-b1) c1 |g| / den + |r| (1-b2) c2 g^2 / (sqrt(vh) den)) e``.
    """
    if len(grads) != len(rates):
        raise ValueError(f"{len(grads)} gradient sets for {len(rates)} rates")
    b1, b2, eps, wd_all = (_f32(x) for x in (defaults.beta1, defaults.beta2, defaults.eps,
                                             defaults.weight_decay))  # fmt: skip
    clip = _f32(defaults.grad_clip)
    p = {k: np.asarray(v, dtype=np.float64) for k, v in start.items()}
    m = {k: np.zeros_like(v) for k, v in p.items()}
    v2 = {k: np.zeros_like(v) for k, v in p.items()}
    dp = {k: np.zeros_like(v) for k, v in p.items()}
    dm = {k: np.zeros_like(v) for k, v in p.items()}
    dv = {k: np.zeros_like(v) for k, v in p.items()}
    # the step sums squares per GPU buffer: one per tensor, per layer for a per-layer tensor
    e = clip_scale_error([a[0].size for k, a in p.items() if k not in GLOBAL_PARAMS
                          for _ in range(a.shape[0])]
                         + [a.size for k, a in p.items() if k in GLOBAL_PARAMS])  # fmt: skip
    for t, (raw, rate) in enumerate(zip(grads, rates, strict=True), start=1):
        lr = _f32(rate)
        g64 = {k: np.asarray(raw[k], dtype=np.float64) for k in p}
        norm = math.sqrt(sum(float(np.sum(a * a)) for a in g64.values()))
        scale = clip / norm if clip > 0 and norm > clip else 1.0
        c1, c2 = 1.0 / (1.0 - b1**t), 1.0 / (1.0 - b2**t)
        for k in p:
            g = g64[k] * scale
            wd = wd_all if k in decayed else 0.0
            inputs = {"p": p[k], "g": g, "m": m[k], "v": v2[k], "lr": lr, "beta1": b1,
                      "beta2": b2, "eps": eps, "wd": wd, "t": t}  # fmt: skip
            new_p, new_m, new_v = (
                np.asarray(a, dtype=np.float64)
                for a in ops.adamw_update(p[k], g, m[k], v2[k], lr, b1, b2, eps, wd, t)
            )
            own = {out: elementwise_bound("adamw_update", out, inputs, val, "wgsl").bound
                   for out, val in (("params", new_p), ("m", new_m), ("v", new_v))}  # fmt: skip
            sq = np.sqrt(new_v * c2)
            den = sq + eps
            r = new_m * c1 / den
            with np.errstate(divide="ignore", invalid="ignore"):
                via_v = np.where(sq > 0, lr * np.abs(r) * b2 * c2 / (2 * sq * den), 0.0)
                g_rel = np.where(sq > 0, np.abs(r) * (1 - b2) * c2 * g * g / (sq * den), 0.0)
            carried = (abs(1 - lr * wd) * dp[k] + lr * b1 * c1 / den * dm[k] + via_v * dv[k]
                       + lr * ((1 - b1) * c1 * np.abs(g) / den + g_rel) * e)  # fmt: skip
            dp[k] = own["params"] + carried
            dm[k] = own["m"] + b1 * dm[k] + (1 - b1) * np.abs(g) * e
            dv[k] = own["v"] + b2 * dv[k] + 2 * (1 - b2) * g * g * e
            p[k], m[k], v2[k] = new_p, new_m, new_v
    return Replay(p, dp, e, m, v2, dm, dv)
