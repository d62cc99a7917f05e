"""Convergence: N kernel train steps at the default hyperparameters land in a recorded loss band.

Kernel parity cannot see a learning rate that is 10x too hot or too cold: every op is right, the
product just trains with the wrong number. This check trains with the KERNEL's
``tg_model_train_step`` in the cell, from the reference's init, on the reference's batches of the
default corpus, with :data:`reference.defaults.DEFAULTS`, and judges the mean loss of the last
``window`` steps against a band recorded from reference runs. A library bound by model calls
(no tinygpt.h ABI, docs/bindings.md) trains through its binding instead (:func:`bound_losses`):
from its own init, on its own batches, with the reference's rate schedule per call; the band
judges it, and no step-by-step trajectory is compared (it is not the recorded run's twin).

The band (:func:`record`) is derived, not guessed: its edges are the reference's own mean losses
when trained at ``lr * sqrt(10)`` (lower edge) and ``lr / sqrt(10)`` (upper edge), the rates
halfway in log scale between the default and a 10x error. A run whose loss leaves the band
behaves like a learning rate more than ~3.2x off. A hotter rate converges FASTER over a few
hundred steps (lower loss), so the lower edge matters as much as the upper one.

The band is committed with its provenance (command, commit, date, preset, steps, seed, the
defaults' sha256, the corpus sha256, every reference loss) in :data:`REFERENCE_FILE`. Re-record:

    python -m harness.convergence --preset tiny --steps 300
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import math
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from harness.bindings import Binding
from harness.bindings.model_calls import BoundModel
from harness.bindings.model_layout import ModelDims, layout_of, library_config
from harness.checks.base import CellContext
from harness.hosts.base import Instance
from harness.kernel import KernelModel
from harness.rundir.rows import Row
from harness.tolerance import convergence_rtol
from reference.corpus import DEFAULT_CORPUS_SHA256, load_corpus
from reference.defaults import DEFAULTS, TrainingDefaults
from reference.model import flatten_params, init_params
from reference.presets import ModelConfig, get_preset
from reference.tokenizer import encode
from reference.train import BATCH_STREAM, get_batch, lr_at, train, train_context_length

REFERENCE_FILE = Path(__file__).with_name("convergence_reference.json")
SCHEMA = 1
BAND_FACTOR = math.sqrt(10.0)  # halfway (in log) between the default rate and a 10x error
CHECK = "corpus"
# Why a library bound by model calls gets no step-by-step comparison with a recorded run.
BOUND_NOT_A_TWIN = (
    "a library bound by model calls trains from its own init on its own batches; the recorded "
    "reference run is not its twin (the band judges it)"
)


@dataclass(frozen=True)
class Band:
    """A recorded convergence band and where it came from."""

    preset: str
    steps: int
    seed: int
    window: int  # final steps averaged
    learning_rate: float
    lower: float  # the reference's final-window loss at learning_rate * BAND_FACTOR
    upper: float  # ... at learning_rate / BAND_FACTOR
    reference_final: float  # ... at learning_rate
    defaults_sha256: str
    corpus_sha256: str
    commit: str
    date: str
    command: str
    trainer: str = "reference"  # whose runs the edges are: a project band may be an artifact's

    @classmethod
    def load(cls, path: Path = REFERENCE_FILE) -> Band:
        """Read a recorded band; raise ValueError naming the file on a bad or newer schema."""
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: cannot read the convergence reference: {exc}") from None
        if data.get("schema") != SCHEMA:
            raise ValueError(f"{path}: schema {data.get('schema')!r}, this harness reads {SCHEMA}")
        required = {f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING}
        try:
            return cls(**{k: data[k] for k in required})
        except KeyError as exc:
            raise ValueError(f"{path}: missing field {exc}") from None

    def describe(self) -> str:
        """Where the band came from, for a row's detail."""
        return (
            f"band [{self.lower:.4f}, {self.upper:.4f}] = {self.trainer} final-{self.window}-step "
            f"mean loss at lr x/÷ sqrt(10) ({self.trainer} at lr {self.learning_rate:g}: "
            f"{self.reference_final:.4f}); recorded {self.date} at commit {self.commit[:12]}"
        )


def final_mean(losses: Sequence[float], window: int) -> float:
    """Mean of the last ``window`` losses (one step's loss is one noisy batch)."""
    if len(losses) < window:
        raise ValueError(f"need at least {window} losses, got {len(losses)}")
    return float(np.mean(np.asarray(losses[-window:], dtype=np.float64)))


def kernel_losses(
    instance: Instance,
    cfg: ModelConfig,
    tokens: NDArray[Any],
    steps: int,
    defaults: TrainingDefaults = DEFAULTS,
    seed: int | None = None,
) -> list[float]:
    """Train with the kernel's train_step exactly as ``reference.train.train`` does; the losses."""
    seed = defaults.seed if seed is None else seed
    flat = flatten_params(cfg, init_params(cfg, defaults, seed=seed, dtype=np.float32))
    rng = np.random.default_rng((seed, BATCH_STREAM))
    T = train_context_length(cfg, defaults)
    model = KernelModel.create(instance, cfg, flat.astype(np.float32))
    try:
        losses = []
        for t in range(1, steps + 1):
            x, y = get_batch(tokens, defaults.batch_size, T, rng)
            losses.append(model.train_step(x, y, lr_at(t, defaults), defaults, t))
        return losses
    finally:
        model.free()


def bound_losses(
    instance: Instance,
    binding: Binding,
    cfg: ModelConfig,
    tokens: NDArray[Any],
    steps: int,
    defaults: TrainingDefaults,
    seed: int,
) -> list[float]:
    """Train a library bound by model calls (its own init and batches): the losses.

    The library takes lr per call and has no schedule: each step gets ``lr_at(t, defaults)``,
    the reference's warmup, and ``defaults.grad_clip``. The whole corpus is its train split;
    its sequences are always ``block_size`` long (lib2.h), not ``context_length``.
    """
    lib_cfg, _note = library_config(cfg, layout_of(binding).params)  # UnsupportedConfig
    model = BoundModel.create(instance, binding, ModelDims.of(lib_cfg), seed)
    try:
        model.set_data(bytes(int(t) for t in tokens), 1.0)
        return [
            model.train_step(defaults.batch_size, lr_at(t, defaults), defaults.grad_clip)
            for t in range(1, steps + 1)
        ]
    finally:
        model.free()


@dataclass(frozen=True)
class Verdict:
    """The outcome of one convergence run."""

    ok: bool
    final: float
    detail: str


def judge(losses: Sequence[float], band: Band, defaults: TrainingDefaults = DEFAULTS) -> Verdict:
    """Pass when the final-window mean loss lies inside ``band`` (and every loss is finite)."""
    bad = next((i for i, v in enumerate(losses) if not math.isfinite(v)), None)
    if bad is not None:
        return Verdict(
            False, math.nan, f"loss at step {bad + 1} is {losses[bad]!r}; {band.describe()}"
        )
    final = final_mean(losses, band.window)
    if final < band.lower:
        where = "BELOW the band: it converges like a learning rate > sqrt(10)x too hot"
    elif final > band.upper:
        where = "ABOVE the band: it converges like a learning rate > sqrt(10)x too cold"
    else:
        where = "inside the band"
    detail = (
        f"{band.preset}, {band.steps} kernel train steps at lr {defaults.learning_rate:g}: final "
        f"{band.window}-step mean loss {final:.4f} is {where}; {band.describe()}"
    )
    return Verdict(band.lower <= final <= band.upper, final, detail)


def convergence_rows(ctx: CellContext, text: str, band_path: Path | None = None) -> Iterator[Row]:
    """The ``corpus`` check's convergence rows for one cell."""
    opts = ctx.options
    try:
        band = Band.load(band_path or _band_path(ctx))
    except ValueError as exc:
        yield ctx.row(CHECK, "convergence", "error", detail=str(exc))
        return
    from reference.corpus import corpus_info

    sha = str(corpus_info(text)["sha256"])
    if sha != band.corpus_sha256:
        yield ctx.row(CHECK, "convergence", "skipped",
                      detail=f"the corpus (sha256 {sha[:12]}) is not the one the band was recorded "
                             f"on ({band.corpus_sha256[:12]})")  # fmt: skip
        return
    if "preset" in opts and opts["preset"] != band.preset:
        yield ctx.row(CHECK, "convergence", "error",
                      detail=f"check.corpus.preset={opts['preset']!r} but the band was recorded "
                             f"at {band.preset!r}; re-record it")  # fmt: skip
        return
    if "steps" in opts and opts["steps"] != band.steps:
        yield ctx.row(CHECK, "convergence", "error",
                      detail=f"check.corpus.steps={opts['steps']} but the band was recorded over "
                             f"{band.steps} steps; re-record it")  # fmt: skip
        return
    defaults = DEFAULTS
    if "learning_rate" in opts:  # only to demonstrate the gate (e.g. TinyGPT's 3e-3)
        defaults = dataclasses.replace(DEFAULTS, learning_rate=float(opts["learning_rate"]))
    if defaults.sha256() != band.defaults_sha256 and "learning_rate" not in opts:
        yield ctx.row(CHECK, "convergence", "error",
                      detail="reference.defaults changed since the band was recorded "
                             f"(sha256 {defaults.sha256()[:12]} vs {band.defaults_sha256[:12]}); "
                             "re-record it")  # fmt: skip
        return
    tokens = encode(text)
    cfg = get_preset(band.preset)
    bound = ctx.artifact.bound()
    note = ""
    if bound.abi:
        losses = kernel_losses(ctx.instance, cfg, tokens, band.steps, defaults, band.seed)
        path = band_path or _band_path(ctx)
        yield trajectory_row(ctx, losses, band, path, "learning_rate" in opts)
    else:  # a library bound by model calls: its own init, batches and AdamW constants
        losses = bound_losses(ctx.instance, bound, cfg, tokens, band.steps, defaults, band.seed)
        yield ctx.row(CHECK, "convergence:trajectory", "skipped", detail=BOUND_NOT_A_TWIN)
        # The band's model is the preset's; say so when the library's differs (lib2 runs tiny at
        # vocab 256: it starts at ln 256, not ln 128, and still lands in the band at the default
        # rate and out of it 10x hot or cold, docs/lib2.md).
        note = library_config(cfg, layout_of(bound).params)[1]
    v = judge(losses, band, defaults)
    yield ctx.row(CHECK, "convergence", "pass" if v.ok else "fail", metric="final_loss",
                  value=v.final, detail=v.detail + (f"; {note}" if note else "") + " (the sanity "
                  "net; convergence:trajectory judges every step)")  # fmt: skip
    for t in range(band.window, band.steps + 1, band.window):
        yield ctx.row(CHECK, "convergence", "measured", metric="loss",
                      value=final_mean(losses[:t], band.window), x_name="step", x_value=float(t),
                      detail=f"mean of steps {t - band.window + 1}-{t}")  # fmt: skip


def reference_losses(path: Path) -> list[float]:
    """The recorded reference run's loss at every step (the band's ``runs.default.losses``)."""
    try:
        data = json.loads(path.read_text())
        return [float(v) for v in data["runs"]["default"]["losses"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: no recorded reference losses: {exc!r}") from None


def judge_trajectory(losses: Sequence[float], reference: Sequence[float], cfg: ModelConfig,
                     batch: int, T: int) -> Verdict:  # fmt: skip
    """Every step's kernel loss within :func:`harness.tolerance.convergence_rtol` of the reference.

    ``final`` of the verdict is the worst step's ratio to its bound (> 1 fails).
    """
    if len(losses) != len(reference):
        return Verdict(False, math.nan, f"{len(losses)} kernel losses, {len(reference)} recorded")
    dims = {"n_layer": cfg.n_layer, "n_embd": cfg.n_embd, "seq_len": T, "batch": batch}
    worst, worst_t, worst_rel, rtol_at = -1.0, 0, 0.0, 0.0
    for t, (k, r) in enumerate(zip(losses, reference, strict=True), start=1):
        rtol = convergence_rtol(dims, t).rtol
        rel = abs(k - r) / abs(r) if math.isfinite(k) else math.inf
        if rel / rtol > worst:
            worst, worst_t, worst_rel, rtol_at = rel / rtol, t, rel, rtol
    tol = convergence_rtol(dims, worst_t)
    detail = (f"worst at step {worst_t} of {len(losses)}: found {losses[worst_t - 1]!r}, "
              f"recorded reference {reference[worst_t - 1]!r}, relative error {worst_rel:.3g} "
              f"({worst:.3g}x the bound) with rtol={rtol_at:.3g} ({tol.reason})")  # fmt: skip
    return Verdict(worst <= 1.0, worst, detail)


def trajectory_row(ctx: CellContext, losses: Sequence[float], band: Band, path: Path,
                   lr_overridden: bool) -> Row:  # fmt: skip
    """The ``convergence:trajectory`` row: the kernel's loss at every step against the record."""
    subject = "convergence:trajectory"
    if lr_overridden:
        why = "learning_rate is overridden: the recorded run is at the default"
        return ctx.row(CHECK, subject, "skipped", detail=why)
    try:
        ref = reference_losses(path)
    except ValueError as exc:
        return ctx.row(CHECK, subject, "error", detail=str(exc))
    cfg = get_preset(band.preset)
    v = judge_trajectory(losses, ref, cfg, DEFAULTS.batch_size, train_context_length(cfg))
    return ctx.row(CHECK, subject, "pass" if v.ok else "fail", metric="worst_ratio",
                   value=v.final, detail=v.detail)  # fmt: skip


def _band_path(ctx: CellContext) -> Path:
    raw = ctx.options.get("reference")
    if raw is None:
        return REFERENCE_FILE
    base = ctx.matrix_path.parent if ctx.matrix_path is not None else ctx.repo_root
    p = Path(str(raw))
    return p if p.is_absolute() else base / p


# ---- recording -------------------------------------------------------------------------------


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def band_runs(
    train_at: Callable[[float], list[float]], lr: float, window: int, where: str
) -> dict[str, tuple[float, list[float], float]]:
    """The three runs a band is derived from, by name: at the rate (``default``), x sqrt 10
    (``hot``) and / sqrt 10 (``cold``), each ``(rate, losses, final-window mean)``.

    Raises ValueError, naming ``where``, when the final means do not order with the rate (the
    band's edges would not bracket the default run)."""
    runs: dict[str, tuple[float, list[float], float]] = {}
    for name, rate in (("default", lr), ("hot", lr * BAND_FACTOR), ("cold", lr / BAND_FACTOR)):
        losses = train_at(rate)
        runs[name] = (rate, losses, final_mean(losses, window))
    hot, default, cold = (runs[k][2] for k in ("hot", "default", "cold"))
    if not hot < default < cold:
        raise ValueError(
            f"the loss is not monotonic in the learning rate at {where} (final-{window}-step "
            f"means: hot {hot:.4f}, default {default:.4f}, cold {cold:.4f}); a band cannot be "
            "derived: choose more steps"
        )
    return runs


def record(preset: str, steps: int, window: int, seed: int | None = None) -> dict[str, Any]:
    """Run the reference three times (lr, lr x sqrt 10, lr / sqrt 10) and return the band record."""
    cfg = get_preset(preset)
    text = load_corpus()
    tokens = encode(text)
    seed = DEFAULTS.seed if seed is None else seed
    lr = DEFAULTS.learning_rate
    runs = band_runs(
        lambda rate: train(
            cfg, tokens, steps, dataclasses.replace(DEFAULTS, learning_rate=rate), seed
        ),
        lr,
        window,
        f"{preset}/{steps} steps",
    )
    finals = {k: v[2] for k, v in runs.items()}
    return {
        "schema": SCHEMA,
        "command": "python -m harness.convergence " + " ".join(sys.argv[1:]),
        "commit": _commit(),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "preset": preset,
        "steps": steps,
        "seed": seed,
        "window": window,
        "learning_rate": lr,
        "lower": finals["hot"],
        "upper": finals["cold"],
        "reference_final": finals["default"],
        "defaults_sha256": DEFAULTS.sha256(),
        "defaults": DEFAULTS.as_dict(),
        "corpus_sha256": DEFAULT_CORPUS_SHA256,
        "runs": {
            k: {"learning_rate": r, "final_mean": f, "losses": ls} for k, (r, ls, f) in runs.items()
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Record the convergence band into ``--out`` (default: the committed reference file)."""
    p = argparse.ArgumentParser(prog="python -m harness.convergence", description=__doc__)
    p.add_argument("--preset", default="tiny")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--window", type=int, default=25)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--out", type=Path, default=REFERENCE_FILE)
    args = p.parse_args(argv)
    data = record(args.preset, args.steps, args.window, args.seed)
    args.out.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {args.out}: band [{data['lower']:.4f}, {data['upper']:.4f}], "
          f"reference {data['reference_final']:.4f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
