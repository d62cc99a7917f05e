"""The ``model`` check of a library bound by model-level calls only (no tinygpt.h ABI).

Such a library (lib2, docs/lib2.md) keeps its weights behind a handle: the harness cannot write
the reference's weights in or step its optimiser by hand. So the comparison starts from the
library's own init, exported and mapped onto ``reference.model`` by the binding's
``[model.params]`` table (:mod:`harness.bindings.model_layout`), and every call goes through the
binding (:class:`~harness.bindings.model_calls.BoundModel`) and the cell's Instance. Compared:

- ``num_params``: the library's count against the reference's ``param_count`` of the config;
- ``state:format``: the exported state's size and magic against ``[model.state]``;
- ``loss:init``: the validation loss at init near ln vocab, and ``loss:eval`` equal to the
  reference's eval loss on the library's exported weights;
- ``loss:spread``: the same after importing the library's init with every matrix rescaled to
  std 1/sqrt(C) (:func:`_spread_state`: at init attention is uniform and a transposed Wq hides);
- ``trajectory``: N train steps from the spread weights against the float64 reference trained
  from the same weights with the binding's ``[model.defaults]`` (AdamW, decayed tensors). Library-
  independent: the train split is exactly ctx+1 bytes, so the one window any correct sampler
  can draw starts at 0 and every batch is that window repeated;
- ``generate:greedy`` and ``generate:sampled``: the library's bytes from the trained weights,
  each one a token the reference sampler (``SamplerRNG(seed)``, tinygpt.h's sampler) can draw
  from the reference logits within the logits tolerance (``reference.sampler.reachable_tokens``);
- ``determinism``: a second model of the same seed gives the same init state, losses, trained
  state and bytes (``hash:*`` rows with ``sha256=``, for the cross-host table);
- ``state:round_trip``: a state imported into a model of another seed exports the same bytes and
  trains on bit-identically;
- ``adamw:<tensor>.<params|m|v>``: per-tensor AdamW after ``adamw_steps`` steps from an off-init
  state, against float32 bounds, a failure naming the likely mismatch
  (:mod:`harness.checks.bound_optimizer`).

Rows that need a table the binding lacks are ``skipped`` naming it. A preset the library's
model cannot express (a vocabulary it does not take, other biases, another LayerNorm eps) raises
UnsupportedConfig, which the runner writes as its ``preset`` row ``incompatible`` (as it does
tinygpt.h's model's IncompatibleArtifact).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from harness.bindings.model_calls import BoundModel, ModelCallError
from harness.bindings.model_layout import (
    ModelDims,
    ModelLayout,
    layout_of,
    library_config,
)
from harness.checks import bound_optimizer
from harness.checks.base import CellContext
from harness.checks.model import Settings, fingerprint
from harness.parity import ParityResult, compare
from harness.rundir.rows import Row, Status
from harness.tolerance import model_tolerance
from reference.corpus import CorpusUnavailable, load_corpus
from reference.defaults import DEFAULTS
from reference.dump import PROMPT, greedy_length
from reference.model import GPT, Params
from reference.presets import ModelConfig, param_count
from reference.sampler import SamplerRNG, reachable_tokens
from reference.tokenizer import encode
from reference.train import AdamWState, adamw_step, eval_loss

CHECK = "model"
METRICS = ("max_abs_err", "max_rel_err", "max_ulp")
VAL_SPLIT = 1  # the canonical eval call's split: 0 train, 1 validation
VAL_BATCHES = 2  # validation windows = batch x this
# lr of every train step: the project's peak rate. The library takes lr per call and has no
# schedule of its own; warmup's first steps would move the weights too little to test AdamW.
LR = DEFAULTS.learning_rate
SAMPLED = (0.8, 5)  # (temperature, top_k) of the sampled generation: below 1 and cut by top-k
# |loss - ln V| at init: logits are lnf(x) . wte rows, ~N(0, s2) with s2 = C var(wte), whose
# expected excess over ln V is s2 / 2; 4x that covers the correlation of a window's targets with
# its inputs and the few windows evaluated, and 0.01 the sampling noise of a tiny model.
INIT_EXCESS = 4.0
INIT_FLOOR = 0.01


@dataclass
class _Pass:
    """What one model of the cell's seed computed (the determinism unit)."""

    init_state: bytes
    loss_init: float
    spread_state: bytes  # the init state with spread matrices (b"": the binding cannot say)
    loss_spread: float
    trajectory: list[float]
    trained_state: bytes
    greedy: bytes
    sampled: bytes

    def hashes(self) -> dict[str, str]:
        """sha256 of each output."""
        traj = np.asarray(self.trajectory, dtype=np.float32).tobytes()
        loss = np.float32(self.loss_init).tobytes()
        return {
            "init_state": _sha(self.init_state),
            "loss_init": _sha(loss),
            "loss_spread": _sha(np.float32(self.loss_spread).tobytes()),
            "trajectory": _sha(traj),
            "trained_state": _sha(self.trained_state),
            "generate": _sha(self.greedy + b"|" + self.sampled),
        }


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


@dataclass(frozen=True)
class _Data:
    """The corpus slices the library trains and evaluates on."""

    data: bytes  # train split (ctx + 1 bytes) then validation split
    train_frac: float
    n_train: int
    batch: int
    n_val_batches: int


def _data(tokens: NDArray[np.integer[Any]], ctx: int, batch: int) -> _Data:
    """ctx + 1 train bytes and ``batch x VAL_BATCHES`` validation windows of the corpus.

    train_frac is (ctx + 1.25) / n in float32: floor and round of ``frac x n`` both give ctx + 1
    (float32's relative error, ~6e-8 of ctx, is far below the 0.25 margin), so the split does not
    depend on how the library rounds it.
    """
    n_train = ctx + 1
    n_val = batch * VAL_BATCHES * ctx + 1
    data = bytes(int(t) for t in tokens[: n_train + n_val])
    frac = float(np.float32((n_train + 0.25) / len(data)))
    assert math.floor(frac * len(data)) == n_train == round(frac * len(data))
    return _Data(data, frac, n_train, batch, VAL_BATCHES)


# The model calls the comparisons of this check go through (only `free` is optional: without
# it the check's handles leak until the instance closes)
REQUIRED_CALLS = ("create", "num_params", "set_data", "train_step", "eval", "generate",
                  "state_bytes", "export_state", "import_state")  # fmt: skip


def run(ctx: CellContext) -> Iterator[Row]:
    """Yield the bound model's rows (see the module docstring)."""
    s = Settings.from_options(ctx.options)
    binding = ctx.artifact.bound()
    missing = [c for c in REQUIRED_CALLS if c not in binding.model]
    if missing:  # every comparison below starts from an exported state and a training run
        yield ctx.row(
            CHECK,
            "model",
            "skipped",
            detail=f"not bound: {binding.path} lacks the model call(s) {', '.join(missing)} "
            "this check needs",
        )
        return
    layout = layout_of(binding)
    cfg, note = library_config(ctx.preset, layout.params)  # UnsupportedConfig: incompatible
    try:
        tokens = encode(load_corpus())
    except CorpusUnavailable as exc:
        yield ctx.row(CHECK, "corpus", "error", detail=f"default corpus unavailable: {exc}")
        return
    dims = ModelDims.of(cfg)
    data = _data(tokens, cfg.block_size, s.batch)
    prompt = bytes(int(t) for t in encode(PROMPT))[-cfg.block_size :]
    n_new = s.generate or greedy_length(cfg)

    first, count, state_bytes = _library_pass(ctx, dims, s.seed, s.steps, data, prompt, n_new)
    second = _library_pass(ctx, dims, s.seed, s.steps, data, prompt, n_new)[0]

    want = param_count(cfg)
    yield ctx.row(
        CHECK,
        "num_params",
        "pass" if count == want else "fail",
        metric="params",
        value=float(count),
        detail=f"library {count}, reference param_count {want} "
        f"for {dims}" + (f"; {note}" if note else ""),
    )
    yield _state_row(ctx, layout, count, state_bytes)
    yield from _reference_rows(ctx, cfg, layout, first, data, prompt, s.seed, s.steps)
    yield from _determinism_rows(ctx, first, second)
    yield _round_trip_row(ctx, dims, s.seed, first.trained_state, data)
    yield from _adamw_rows(ctx, cfg, layout, first.init_state, data, s)


def _adamw_rows(
    ctx: CellContext, cfg: ModelConfig, layout: ModelLayout, init: bytes, data: _Data, s: Settings
) -> Iterator[Row]:
    """Per-tensor AdamW (:mod:`harness.checks.bound_optimizer`), or why it cannot run."""
    missing = [t for t, v in (("[model.params]", layout.params), ("[model.state]", layout.state),
                              ("[model.defaults]", layout.defaults)) if v is None]  # fmt: skip
    if missing:
        yield ctx.row(CHECK, "adamw", "skipped",
                      detail=f"the binding has no {' and '.join(missing)}: the library's AdamW "
                      "state cannot be read or replayed")  # fmt: skip
        return
    yield from bound_optimizer.rows(
        ctx, cfg, layout, init, data.data, data.train_frac, _window(cfg, data), s.seed,
        s.adamw_steps, LR, DEFAULTS.grad_clip,
    )  # fmt: skip


def _window(cfg: ModelConfig, data: _Data) -> bound_optimizer.Batches:
    """The train split's one window, ``data.batch`` times: every batch a correct sampler draws."""
    T = cfg.block_size
    window = np.frombuffer(data.data[: T + 1], np.uint8).astype(np.int32)
    return bound_optimizer.Batches(np.tile(window[:-1], (data.batch, 1)),
                                   np.tile(window[1:], (data.batch, 1)))  # fmt: skip


def _library_pass(
    ctx: CellContext, dims: ModelDims, seed: int, steps: int, data: _Data, prompt: bytes, n_new: int
) -> tuple[_Pass, int, int]:
    """One model of ``seed`` through every call: its outputs, param count and state size."""
    binding = ctx.artifact.bound()
    m = BoundModel.create(ctx.instance, binding, dims, seed)
    try:
        init_state = m.export_state()
        m.set_data(data.data, data.train_frac)
        loss_init = m.eval(VAL_SPLIT, data.batch, data.n_val_batches)
        spread = _spread_state(layout_of(binding), dims, init_state)
        loss_spread = math.nan
        if spread:
            got = m.import_state(spread)
            if got != 0:
                raise ModelCallError(f"import_state of the spread weights returned {got}")
            loss_spread = m.eval(VAL_SPLIT, data.batch, data.n_val_batches)
        traj = [m.train_step(data.batch, LR, DEFAULTS.grad_clip) for _ in range(steps)]
        trained = m.export_state()
        greedy = m.generate(prompt, n_new, 0.0, 0, seed)
        sampled = m.generate(prompt, n_new, SAMPLED[0], SAMPLED[1], seed)
        out = _Pass(init_state, loss_init, spread, loss_spread, traj, trained, greedy, sampled)
        return out, m.num_params(), m.state_bytes()
    finally:
        m.free()


def _spread_state(layout: ModelLayout, dims: ModelDims, blob: bytes) -> bytes:
    """The library's init state with every matrix rescaled to std 1/sqrt(C)
    (:func:`bound_optimizer.spread_matrices`: at init a transposed Wq hides), or b""."""
    if layout.params is None or layout.state is None:
        return b""
    n = layout.params.count(dims)
    try:
        flat = layout.state.parse(blob, n)["params"].copy()
    except ValueError:
        return b""  # the reference rows report the misfit
    bound_optimizer.spread_matrices(layout, dims, flat)
    return layout.state.with_section(blob, n, "params", flat)


def _state_row(ctx: CellContext, layout: ModelLayout, count: int, size: int) -> Row:
    if layout.state is None:
        return ctx.row(CHECK, "state:format", "skipped", detail="the binding has no [model.state]")
    want = layout.state.size(count)
    ok = size == want
    return ctx.row(
        CHECK,
        "state:format",
        "pass" if ok else "fail",
        metric="bytes",
        value=float(size),
        detail=f"state_bytes {size}; [model.state] gives "
        f"{layout.state.header_bytes} + 4 x {count} x {len(layout.state.sections)} "
        f"= {want}",
    )


def _parity_rows(ctx: CellContext, subject: str, r: ParityResult) -> Iterator[Row]:
    status: Status = "pass" if r.ok else "fail"
    for m in METRICS:
        yield ctx.row(
            CHECK, subject, status, metric=m, value=float(getattr(r, m)), detail=r.message
        )


def _params64(cfg: ModelConfig, layout: ModelLayout, blob: bytes, count: int) -> Params | str:
    """The reference's float64 params from an exported state, or why they cannot be had."""
    if layout.params is None or layout.state is None:
        missing = " and ".join(
            t
            for t, v in (("[model.params]", layout.params), ("[model.state]", layout.state))
            if v is None
        )
        return f"the binding has no {missing}: the library's weights cannot be read"
    try:
        flat = layout.state.parse(blob, count)["params"]
        return layout.params.to_reference(cfg, flat, np.float64)
    except ValueError as exc:
        return f"the exported state does not fit the binding: {exc}"


def _reference_rows(
    ctx: CellContext,
    cfg: ModelConfig,
    layout: ModelLayout,
    lib: _Pass,
    data: _Data,
    prompt: bytes,
    seed: int,
    steps: int,
) -> Iterator[Row]:
    """loss:init, loss:eval, trajectory and generation against the reference."""
    V, T = cfg.vocab_size, cfg.block_size
    count = param_count(cfg)
    init = _params64(cfg, layout, lib.init_state, count)
    if isinstance(init, str):
        for subject in ("loss:init", "loss:eval", "loss:spread", "trajectory", "generate"):
            yield ctx.row(CHECK, subject, "skipped", detail=init)
        return
    dims = {"n_layer": cfg.n_layer, "n_embd": cfg.n_embd, "seq_len": T}
    s2 = cfg.n_embd * float(np.var(init["wte"]))
    bound = INIT_EXCESS * s2 / 2 + INIT_FLOOR
    gap = abs(lib.loss_init - math.log(V))
    yield ctx.row(
        CHECK,
        "loss:init",
        "pass" if gap <= bound else "fail",
        metric="abs_err",
        value=gap,
        detail=f"validation loss at init {lib.loss_init!r}, ln {V} = "
        f"{math.log(V):.6f}; bound {bound:.4g} = {INIT_EXCESS:g} x C var(wte)/2 + "
        f"{INIT_FLOOR:g}",
    )

    val = np.frombuffer(data.data[data.n_train :], np.uint8).astype(np.int64)
    ref_eval = eval_loss(
        GPT(cfg, init), val, context_length=T, batch_size=data.batch, max_batches=data.n_val_batches
    )
    n_windows = min((len(val) - 1) // T, data.batch * data.n_val_batches)
    rule = model_tolerance("loss", **dims, batch=n_windows)
    r = compare("loss:eval", np.float32(lib.loss_init), np.float64(ref_eval), rule.tolerance)
    yield from _parity_rows(ctx, "loss:eval", r)

    spread = _params64(cfg, layout, lib.spread_state, count)
    assert not isinstance(spread, str)  # the same tables read the init state
    ref_spread = eval_loss(GPT(cfg, spread), val, context_length=T, batch_size=data.batch,
                           max_batches=data.n_val_batches)  # fmt: skip
    r = compare("loss:spread", np.float32(lib.loss_spread), np.float64(ref_spread), rule.tolerance)
    yield from _parity_rows(ctx, "loss:spread", r)

    if layout.defaults is None:
        yield ctx.row(
            CHECK,
            "trajectory",
            "skipped",
            detail="the binding has no [model.defaults]: AdamW cannot be replayed",
        )
    else:
        ref_traj = _reference_trajectory(cfg, layout, spread, data, steps)
        rule = model_tolerance("trajectory", **dims, batch=data.batch, steps=steps)
        found = np.asarray(lib.trajectory, dtype=np.float32)
        r = compare("trajectory", found, np.asarray(ref_traj), rule.tolerance)
        yield from _parity_rows(ctx, "trajectory", r)
        for t, (f, e) in enumerate(zip(lib.trajectory, ref_traj, strict=True), start=1):
            yield ctx.row(
                CHECK,
                "trajectory",
                "measured",
                metric="loss",
                value=f,
                x_name="step",
                x_value=float(t),
                detail=f"reference {e!r}",
            )

    trained = _params64(cfg, layout, lib.trained_state, count)
    assert not isinstance(trained, str)  # the same tables read the init state
    model = GPT(cfg, trained)
    eps_rule = model_tolerance("logits", **dims, batch=1).tolerance
    for subject, out, (temperature, top_k) in (
        ("generate:greedy", lib.greedy, (0.0, 0)),
        ("generate:sampled", lib.sampled, SAMPLED),
    ):
        yield _generation_row(
            ctx, subject, model, prompt, out, temperature, top_k, seed, eps_rule.atol, eps_rule.rtol
        )


def _reference_trajectory(
    cfg: ModelConfig, layout: ModelLayout, init: Params, data: _Data, steps: int
) -> list[float]:
    """The float64 reference's loss at each step, on the one window the train split holds."""
    assert layout.defaults is not None
    w = _window(cfg, data)  # (B, T): every batch is the one window
    x, y = w.x, w.y
    defaults = layout.defaults.training(grad_clip=DEFAULTS.grad_clip, learning_rate=LR)
    decayed = layout.reference_decayed()
    model = GPT(cfg, dict(init))
    state = AdamWState.zeros_like(model.params)
    losses = []
    for t in range(1, steps + 1):
        _, loss = model.forward(x, y)
        model.params, state, _ = adamw_step(
            model.params, model.backward(), state, t, defaults, lr=LR, decayed=decayed
        )
        losses.append(float(loss if loss is not None else math.nan))
    return losses


def _generation_row(
    ctx: CellContext,
    subject: str,
    model: GPT,
    prompt: bytes,
    out: bytes,
    temperature: float,
    top_k: int,
    seed: int,
    atol: float,
    rtol: float,
) -> Row:
    """Pass when every generated byte is reachable by the reference sampler at its step."""
    T = model.cfg.block_size
    rng = SamplerRNG(seed)
    seq = list(prompt)
    for i, tok in enumerate(out):
        window = np.asarray(seq[-T:], np.int32)[None, :]
        logits = model.forward(window)[0][0, -1]
        u = None if temperature == 0.0 else rng.uniform()
        eps = atol + rtol * float(np.abs(logits).max())
        reach = reachable_tokens(logits, temperature, top_k, u, eps)
        if tok not in reach:
            return ctx.row(
                CHECK,
                subject,
                "fail",
                metric="tokens_matched",
                value=float(i),
                detail=f"byte {i} of {len(out)} is {tok}; the reference sampler "
                f"(temperature {temperature:g}, top_k {top_k}, SamplerRNG({seed})) "
                f"reaches only {sorted(reach)[:8]} there (logits within {eps:.3g})",
            )
        seq.append(tok)
    return ctx.row(
        CHECK,
        subject,
        "pass",
        metric="tokens_matched",
        value=float(len(out)),
        detail=f"{len(out)} bytes each reachable by the reference sampler "
        f"(temperature {temperature:g}, top_k {top_k})",
    )


def _determinism_rows(ctx: CellContext, first: _Pass, second: _Pass) -> Iterator[Row]:
    h1, h2 = first.hashes(), second.hashes()
    for what, digest in h1.items():
        same = digest == h2[what]
        detail = f"sha256={digest}" + ("" if same else f"; second model sha256={h2[what]}")
        yield ctx.row(CHECK, f"hash:{what}", "pass" if same else "fail", detail=detail)
    for i, v in enumerate(fingerprint(np.asarray(first.trajectory, np.float64)).tolist()):
        yield ctx.row(
            CHECK,
            "hash:trajectory",
            "measured",
            metric="fingerprint",
            value=v,
            iteration=i,
            detail="a sampled output value, for cross-host diffs",
        )
    differing = [w for w in h1 if h1[w] != h2[w]]
    yield ctx.row(
        CHECK,
        "determinism",
        "fail" if differing else "pass",
        detail=(
            f"two models of one seed differ bitwise in: {', '.join(differing)}"
            if differing
            else f"two models of one seed are bitwise equal ({len(h1)} outputs hashed)"
        ),
    )


def _round_trip_row(ctx: CellContext, dims: ModelDims, seed: int, blob: bytes, data: _Data) -> Row:
    """Import a trained state into a model of another seed: same export, same next step."""
    binding = ctx.artifact.bound()
    a = BoundModel.create(ctx.instance, binding, dims, seed)
    b = BoundModel.create(ctx.instance, binding, dims, seed + 1)
    try:
        for m in (a, b):
            m.set_data(data.data, data.train_frac)
        got_a, got_b = a.import_state(blob), b.import_state(blob)
        problems = []
        if got_b != 0 or got_a != 0:
            problems.append(f"import_state returned {got_a} and {got_b}, not 0")
        elif b.export_state() != blob:
            problems.append("the other seed's model exports other bytes after the import")
        else:
            la, lb = (m.train_step(data.batch, LR, DEFAULTS.grad_clip) for m in (a, b))
            if la != lb or a.export_state() != b.export_state():
                problems.append(f"the next train step differs: losses {la!r} and {lb!r}")
    finally:
        a.free()
        b.free()
    return ctx.row(
        CHECK,
        "state:round_trip",
        "fail" if problems else "pass",
        detail="; ".join(problems)
        or f"a {len(blob)}-byte state imported into a "
        f"model of seed {seed + 1} exports the same bytes and trains on identically",
    )
