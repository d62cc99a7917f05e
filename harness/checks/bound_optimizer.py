"""Per-tensor AdamW of a library bound by model-level calls only: weights, m and v after k steps.

Part of the ``model`` check of a bound library (:mod:`harness.checks.bound_model`; docs/checks.md,
"Per-tensor AdamW through model calls"). The loss trajectory cannot see the optimizer's constants:
a wrong weight decay (biases and LayerNorm decayed, wd 0.01 for 0.1, none at all) or AdamW eps
1e-6 for 1e-8 moves a 10-step loss by less than its tolerance. Here, through the binding's
export/import of state only:

- the library's exported init gets every matrix spread to std 1/sqrt(C) (as ``loss:spread``) and
  every 1-D tensor (biases, LayerNorm gains and shifts) moved off its init by N(0, 0.1), so decay
  has something to act on everywhere; the state is imported back after ``set_data``;
- ``k`` (``adamw_steps`` >= 20) train steps at the project's peak lr and clip, on a train split
  of exactly one window (the batches any correct sampler draws are that window, repeated:
  :func:`harness.checks.bound_model._data`), so the float64 reference replays the same batches;
- the exported params, m and v are compared with the reference's, TENSOR BY TENSOR in the
  library's own names (all layers of a tensor together), each against a bound derived from
  float32 (:func:`bounds`, docs/tolerance.md "Per-tensor AdamW through model calls").

On a failure the reference is replayed under the mismatches that a wrong build most often has
(:data:`HYPOTHESES`: the decay mask flipped, weight decay x10 or /10, eps x100 or /100); the
failing tensor's row names the one under which it would pass ("likely: decay on a no-decay
tensor"), or says that none does.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray

from harness.bindings.model_calls import BoundModel, ModelCallError
from harness.bindings.model_layout import ModelDims, ModelLayout
from harness.checks.base import CellContext
from harness.checks.optimizer import OFF_INIT
from harness.rundir.rows import Row
from harness.tolerance import FLOAT32_U, model_tolerance
from reference.defaults import TrainingDefaults
from reference.model import GPT, Params
from reference.presets import ModelConfig
from reference.train import AdamWState, adamw_step, clip_grads

CHECK = "model"
F64 = NDArray[np.float64]


@dataclass(frozen=True)
class Batches:
    """The one window every step trains on, ``batch`` times (x, y as the reference takes them)."""

    x: NDArray[np.int32]
    y: NDArray[np.int32]


@dataclass(frozen=True)
class Replay:
    """A float64 reference run of k AdamW steps, in the library's flat layout."""

    end: dict[str, F64]  # section -> flat values after k steps
    moved: F64  # per element: sum over the steps of |dp|
    pmax: F64  # per element: max over the steps of |p|
    gmax: F64  # per element: max over the steps of the clipped gradient's |g|
    gscale: float  # max over the steps and elements of |g| (the gradient rule's scale)


def spread_matrices(layout: ModelLayout, dims: ModelDims, flat: NDArray[np.float32]) -> None:
    """Rescale every matrix of the flat params (in place) to std 1/sqrt(C).

    At a GPT's init (std 0.02) attention is nearly uniform and q.k ~ 1e-4, so a transposed or
    swapped Wq/Wk changes the loss by less than rounding. At std 1/sqrt(C) the scores are O(1),
    every weight matters, and the weights are still the library's own (same signs and
    proportions).
    """
    assert layout.params is not None
    for view in layout.params.split(dims, flat).values():
        std = float(view.std())
        if view.ndim == 2 and std > 0:
            view *= np.float32(1.0 / (math.sqrt(dims.d_model) * std))


def off_init(layout: ModelLayout, dims: ModelDims, blob: bytes, seed: int) -> tuple[bytes, F64]:
    """The library's init state with matrices spread and 1-D tensors moved off init by
    N(0, OFF_INIT) (the bundled check's offset, :mod:`harness.checks.optimizer`); and its
    params (flat float64)."""
    assert layout.params is not None and layout.state is not None
    n = layout.params.count(dims)
    flat = layout.state.parse(blob, n)["params"].copy()
    spread_matrices(layout, dims, flat)
    rng = np.random.default_rng((seed, 20))
    for view in layout.params.split(dims, flat).values():
        if view.ndim == 1:  # biases and LayerNorm gains/shifts: decay has something to act on
            view += rng.normal(0.0, OFF_INIT, view.shape).astype(np.float32)
    return layout.state.with_section(blob, n, "params", flat), flat.astype(np.float64)


def library_run(
    ctx: CellContext, dims: ModelDims, seed: int, start: bytes, data: bytes, train_frac: float,
    batch: int, steps: int, lr: float, clip: float,
) -> bytes:  # fmt: skip
    """``steps`` train steps of the library from ``start``; its exported state afterwards."""
    m = BoundModel.create(ctx.instance, ctx.artifact.bound(), dims, seed)
    try:
        m.set_data(data, train_frac)
        got = m.import_state(start)
        if got != 0:
            raise ModelCallError(f"import_state of the off-init state returned {got}")
        for _ in range(steps):
            m.train_step(batch, lr, clip)
        return m.export_state()
    finally:
        m.free()


def replay(
    cfg: ModelConfig, layout: ModelLayout, start: F64, batches: Batches, steps: int,
    defaults: TrainingDefaults, decayed: frozenset[str], lr: float,
) -> Replay:  # fmt: skip
    """The float64 reference's ``steps`` AdamW steps from ``start`` (library layout)."""
    assert layout.params is not None
    P = layout.params
    flat: Callable[[Params], F64] = lambda ref: P.from_reference(cfg, ref, np.float64)  # noqa: E731
    model = GPT(cfg, P.to_reference(cfg, start, np.float64))
    state = AdamWState.zeros_like(model.params)
    prev = start
    moved, pmax, gmax = np.zeros_like(start), np.abs(start), np.zeros_like(start)
    for t in range(1, steps + 1):
        model.forward(batches.x, batches.y)
        grads = model.backward()
        gmax = np.maximum(gmax, np.abs(flat(clip_grads(grads, defaults.grad_clip)[0])))
        model.params, state, _ = adamw_step(
            model.params, grads, state, t, defaults, lr=lr, decayed=decayed
        )
        now = flat(model.params)
        moved += np.abs(now - prev)
        pmax = np.maximum(pmax, np.abs(now))
        prev = now
    end = {"params": prev, "m": flat(state.m), "v": flat(state.v)}
    return Replay(end, moved, pmax, gmax, float(gmax.max()))


def grad_rtol(cfg: ModelConfig, batch: int) -> float:
    """The model gradient rule's relative bound (of the tensor's max |g|) at this config."""
    rule = model_tolerance("grad", n_layer=cfg.n_layer, n_embd=cfg.n_embd,
                           seq_len=cfg.block_size, batch=batch)  # fmt: skip
    return rule.tolerance.rtol


@dataclass(frozen=True)
class Bound:
    """Per-element bounds of one run (library layout) and which elements they judge."""

    params: F64
    m: F64
    v: F64
    determined: NDArray[np.bool_]  # elements whose exact gradient rises above the rounding


def bounds(ref: Replay, defaults: TrainingDefaults, steps: int, eps_g: float) -> Bound:
    """Per-element float32 bounds on |library - reference| after ``steps`` steps (first order).

    - params: each step rounds p' once (u32 |p|): ``steps u32 max|p|``; the update
      u = mh / (sqrt(vh) + eps) is homogeneous of degree 0 in the gradient, so a relative gradient
      error eps_g (the model's gradient rule) moves it by at most 2 eps_g |u| (m's and sqrt(v)'s),
      and the float32 moments, sqrt, divide, clip and bias corrections by
      (2/(1-b1) + 1/(1-b2) + 4) u32 |u| (``adamw_trajectory_tolerance``'s count): that relative
      error of each step's move adds up over the steps, ``x sum|dp|``.
    - m: its EMA rounding (2 u32/(1-b1) |m|) plus the gradient's absolute error, which the EMA
      averages: eps_g x the largest |g|.
    - v: its EMA rounding (2 u32/(1-b2) v) plus the error of g^2: 2 |g| dg + dg^2, with dg the
      gradient's absolute error.
    An element whose clipped gradient never exceeds the gradient rule's absolute error (eps_g x
    the largest |g|) has an update made of rounding only (lib2's key bias: softmax ignores a
    shift of every key), which Adam scales up to a full step: its params are not judged.
    """
    b1, b2 = defaults.beta1, defaults.beta2
    u = FLOAT32_U
    dg = eps_g * ref.gscale
    c = 2.0 / (1.0 - b1) + 1.0 / (1.0 - b2) + 4.0
    p = steps * u * ref.pmax + (2.0 * eps_g + c * u) * ref.moved
    m = 2.0 * u / (1.0 - b1) * np.abs(ref.end["m"]) + dg
    v = 2.0 * u / (1.0 - b2) * ref.end["v"] + 2.0 * ref.gmax * dg + dg * dg
    return Bound(p, m, v, ref.gmax > dg)


@dataclass(frozen=True)
class Hypothesis:
    """A mismatch the reference can replay: which tensors decay, or a constant scaled."""

    kind: str  # "decay_all", "decay_none", "weight_decay" or "eps"
    factor: float = 1.0

    @property
    def key(self) -> str:
        """The change in words, e.g. ``eps x100``."""
        if self.kind == "decay_all":
            return "every tensor decayed"
        if self.kind == "decay_none":
            return "no tensor decayed"
        return f"{self.kind} x{self.factor:g}"

    def change(
        self, d: TrainingDefaults, decayed: frozenset[str], every: frozenset[str]
    ) -> tuple[TrainingDefaults, frozenset[str]]:
        """The defaults and decayed reference tensors of this mismatch."""
        if self.kind == "decay_all":
            return d, every
        if self.kind == "decay_none":
            return d, frozenset()
        if self.kind == "weight_decay":
            return replace(d, weight_decay=d.weight_decay * self.factor), decayed
        return replace(d, eps=d.eps * self.factor), decayed

    def cause(self, name: str, declared: bool, d: TrainingDefaults) -> str:
        """The likely mismatch, said for library tensor ``name`` (``declared``: the binding
        decays it)."""
        if self.kind == "decay_all":
            if declared:
                return (f"decay on the no-decay tensors (biases, LayerNorm), which moves {name} "
                        "through the loss")  # fmt: skip
            return (f"decay on a no-decay tensor: the library decays {name}, which the binding's "
                    "[model.defaults] decayed does not list")  # fmt: skip
        if self.kind == "decay_none":
            if declared:
                return (f"decay missing: the library does not decay {name}, which the binding "
                        f"decays by weight_decay {d.weight_decay:g}")  # fmt: skip
            return (f"decay missing on the decayed tensors, which moves {name} through the "
                    "loss")  # fmt: skip
        if self.kind == "weight_decay":
            return (
                f"weight decay {d.weight_decay * self.factor:g}, not the binding's "
                f"{d.weight_decay:g}"
            )
        return f"AdamW eps {d.eps * self.factor:g}, not the binding's {d.eps:g}"


# The mismatches a wrong build most often has (issue 15): replayed only when a tensor fails.
HYPOTHESES: tuple[Hypothesis, ...] = (
    Hypothesis("decay_all"),
    Hypothesis("decay_none"),
    Hypothesis("weight_decay", 0.1),
    Hypothesis("weight_decay", 10.0),
    Hypothesis("eps", 100.0),
    Hypothesis("eps", 0.01),
)


def tensor_index(layout: ModelLayout, dims: ModelDims) -> dict[str, NDArray[np.intp]]:
    """Each library tensor name's element indices in the flat buffer (all layers together)."""
    assert layout.params is not None
    idx = np.arange(layout.params.count(dims))
    out: dict[str, list[NDArray[np.intp]]] = {}
    for (name, _), view in layout.params.split(dims, idx).items():
        out.setdefault(name, []).append(view.ravel())
    return {n: np.concatenate(v) for n, v in out.items()}


def ratio(found: F64, expected: F64, bound: F64) -> float:
    """||found - expected|| over ||bound|| (2-norms): <= 1 when every element is in its bound
    (and the bound's norm is then the error's)."""
    err = float(np.linalg.norm(found - expected))
    b = float(np.linalg.norm(bound))
    return err / b if b > 0 else (0.0 if err == 0 else math.inf)


def rows(
    ctx: CellContext, cfg: ModelConfig, layout: ModelLayout, init_blob: bytes, data: bytes,
    train_frac: float, batches: Batches, seed: int, steps: int, lr: float, clip: float,
) -> Iterator[Row]:  # fmt: skip
    """One ``adamw:<tensor>.<section>`` row per library tensor and state section."""
    assert layout.params is not None and layout.state is not None and layout.defaults is not None
    dims = ModelDims.of(cfg)
    n = layout.params.count(dims)
    start_blob, start = off_init(layout, dims, init_blob, seed)
    end_blob = library_run(ctx, dims, seed, start_blob, data, train_frac, batches.x.shape[0],
                           steps, lr, clip)  # fmt: skip
    try:
        got = {s: a.astype(np.float64) for s, a in layout.state.parse(end_blob, n).items()}
    except ValueError as exc:
        yield ctx.row(CHECK, "adamw", "fail", detail=f"the exported state does not fit: {exc}")
        return
    defaults = layout.defaults.training(grad_clip=clip, learning_rate=lr)
    decayed = layout.reference_decayed()
    every = frozenset(t.ref for t in (*layout.params.before, *layout.params.layer,
                                      *layout.params.after))  # fmt: skip
    ref = replay(cfg, layout, start, batches, steps, defaults, decayed, lr)
    eps_g = grad_rtol(cfg, batches.x.shape[0])
    bnd = bounds(ref, defaults, steps, eps_g)
    index = tensor_index(layout, dims)
    results: dict[tuple[str, str], tuple[float, str]] = {}
    for name, ix in index.items():
        det = ix[bnd.determined[ix]]
        if det.size:
            r = _section_ratio(got, ref, start, bnd, ix, "params")
            note = "" if det.size == ix.size else (
                f"; {ix.size - det.size} of {ix.size} elements not judged (exact gradient "
                "within rounding)")  # fmt: skip
            results[(name, "params")] = (r, note)
        for s in ("m", "v"):
            if s in got:
                results[(name, s)] = (_section_ratio(got, ref, start, bnd, ix, s), "")
    failing = sorted(key for key, (r, _) in results.items() if r > 1.0)
    causes = _causes(cfg, layout, start, batches, steps, defaults, decayed, every, lr, got,
                     index, bnd, failing) if failing else {}  # fmt: skip
    for (name, s), (r, note) in results.items():
        ok = r <= 1.0
        why = causes.get((name, s), "")
        yield ctx.row(
            CHECK,
            f"adamw:{name}.{s}",
            "pass" if ok else "fail",
            metric="bound_ratio",
            value=r,
            detail=(
                f"{name} {s} after {steps} train steps (lr {lr:g}, clip {clip:g}) from the "
                f"off-init state: ||library - reference|| = {r:.3g} x the float32 bound"
                + (f"; likely {why}" if why else "")
                + note
            ),
        )
    skipped = sorted(set(index) - {n for n, s in results if s == "params"})
    for name in skipped:
        yield ctx.row(
            CHECK,
            f"adamw:{name}.params",
            "skipped",
            detail=f"{name}'s exact gradient is within rounding at every step (e.g. a key bias, "
            "which softmax ignores): its float32 update is rounding that Adam scales to a full "
            "step, so its params cannot be judged; its m and v are",
        )


def _section_ratio(
    got: dict[str, F64], ref: Replay, start: F64, bnd: Bound, ix: NDArray[np.intp], section: str
) -> float:
    """One tensor's (``ix``) ratio for ``section``: params compared as moves from ``start``,
    on the elements the bound judges."""
    if section == "params":
        det = ix[bnd.determined[ix]]
        return ratio(got["params"][det] - start[det], ref.end["params"][det] - start[det],
                     bnd.params[det])  # fmt: skip
    return ratio(got[section][ix], ref.end[section][ix], getattr(bnd, section)[ix])


def _causes(
    cfg: ModelConfig, layout: ModelLayout, start: F64, batches: Batches, steps: int,
    defaults: TrainingDefaults, decayed: frozenset[str], every: frozenset[str], lr: float,
    got: dict[str, F64], index: dict[str, NDArray[np.intp]], bnd: Bound,
    failing: list[tuple[str, str]],
) -> dict[tuple[str, str], str]:  # fmt: skip
    """For each failing (tensor, section), the mismatch under whose replay it passes: of those
    that explain every failing row, or the most; else the one closest for that row."""
    assert layout.params is not None
    found: list[tuple[Hypothesis, dict[tuple[str, str], float]]] = []
    for h in HYPOTHESES:
        d2, dec2 = h.change(defaults, decayed, every)
        alt = replay(cfg, layout, start, batches, steps, d2, dec2, lr)
        found.append((h, {k: _section_ratio(got, alt, start, bnd, index[k[0]], k[1])
                          for k in failing}))  # fmt: skip
    # the hypothesis explaining the most failing rows, ties to the smallest worst ratio
    h_best, r_best = min(found, key=lambda f: (-sum(r <= 1 for r in f[1].values()),
                                               max(f[1].values())))  # fmt: skip
    out: dict[tuple[str, str], str] = {}
    for key in failing:
        name = key[0]
        declared = layout.params.tensor(name).ref in decayed
        h, r = (h_best, r_best[key])
        if r > 1.0:  # the best overall does not explain this row: its own closest
            h, rs = min(found, key=lambda f: f[1][key])
            r = rs[key]
        why = (
            f"{h.cause(name, declared, defaults)} (the reference with {h.key} is {r:.3g} x "
            "the bound)"
        )
        out[key] = why if r <= 1.0 else f"no single mismatch explains it; closest: {why}"
    return out
