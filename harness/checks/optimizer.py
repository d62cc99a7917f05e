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

from collections.abc import Iterator, Mapping

import numpy as np
from numpy.typing import NDArray

from harness.checks.base import CellContext
from harness.kernel import KernelModel
from harness.parity import compare
from harness.rundir.rows import Row, Status
from harness.tolerance import adamw_trajectory_tolerance
from reference.defaults import TrainingDefaults
from reference.model import Params, flatten_params
from reference.presets import PARAM_NAMES, ModelConfig
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
    rng = np.random.default_rng((seed, 16))
    ref: Params = {n: v.astype(np.float64) for n, v in start.items()}
    state = AdamWState()
    moved = {n: np.zeros(v.shape) for n, v in ref.items()}  # sum over steps of |dp|
    model = KernelModel.create(ctx.instance, cfg, flatten_params(cfg, start).astype(np.float32))
    try:
        grads_ptr = int(ctx.instance.call("tg_model_grads", model.handle) or 0)
        for t in range(1, n_steps + 1):
            g32 = {n: (rng.standard_normal(v.shape) * GRAD_SCALE).astype(np.float32)
                   for n, v in start.items()}  # fmt: skip
            ctx.instance.write(grads_ptr, flatten_params(cfg, g32).astype(np.float32).tobytes())
            model.adamw(lr_at(t, defaults), defaults, t)
            g64: Params = {n: v.astype(np.float64) for n, v in g32.items()}
            after, state, _ = adamw_step(ref, g64, state, t, defaults)
            for n in moved:
                moved[n] += np.abs(after[n] - ref[n])
            ref = after
        found = model.params()
    finally:
        model.free()
    for name in PARAM_NAMES:
        tol = adamw_trajectory_tolerance(n_steps, float(np.max(moved[name])), defaults)
        r = compare(f"adamw:{name}", found[name], ref[name], tol)
        status: Status = "pass" if r.ok else "fail"
        note = f"; {n_steps} steps (warmup {defaults.warmup_steps} + {k}), biases/LN off init"
        for m in METRICS:
            yield ctx.row(CHECK, f"adamw:{name}", status, metric=m, value=float(getattr(r, m)),
                          detail=r.message + note)  # fmt: skip
