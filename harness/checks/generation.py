"""Generation parity from a trained state: the KV cache at every step, and seeded sampling.

Part of check kind ``model`` (docs/checks.md, "Generation and sampling parity"). Greedy tokens
from random init prove little (the reference itself emits "eee..."), and a prompt that fills
the block makes the window slide on every step, so the incremental cache path never runs. Here:

1. The reference trains ``gen_train_steps`` steps in float32 from the cell's init (a hot
   learning rate, :data:`TRAIN`): imported trained weights, as issue 15 allows. Those float32
   weights go to both sides; the reference computes in float64 from the same numbers. They are
   computed once per run for each preset and seed (:func:`train_state`), not in every cell: the
   kernel's 200 train steps cost a Chromium medium cell ~18 s, and training itself is what the
   ``trajectory`` rows judge.
2. The prompt is a quarter of the block, and ``block_size`` tokens are generated: the first
   ``block - prompt + 1`` steps grow the window (after the prefill, the cache path adds one
   position per step), the rest slide it (the cache is rebuilt each step).
3. For every sampler setting of :data:`SAMPLING` (greedy, and temperatures {0.5, 1, 2} x top-k
   {0, 5}) and both paths, ``tg_model_generate`` returns its tokens and the logits it picked each
   from. Then:

   - ``generate:<path>:<grow|slide>``: each step's logits against the reference's float64
     logits on the same window (teacher-forced on the kernel's own tokens), the logits rule;
     those reference logits are kept per (weights, tokens) for the run, so the cells of a preset
     whose kernels draw the same tokens share them (:func:`_reference_logits`);
   - ``generate:cache_vs_nocache``: with-cache against without-cache logits at every step;
   - ``sample:T=<t>,k=<k>``: every draw (i) IS the reference sampler's draw on the kernel's own
     logits with the specified RNG stream (:mod:`reference.sampler`), and (ii) is a draw the
     reference's own float64 logits give for that ``u`` within the logits' measured error
     (:func:`reference.sampler.reachable_tokens`). (ii) is the parity of the two generators;
     (i) is exact, because both sides then sample from identical float32 numbers in float64;
     exact ties among those numbers are judged by the tie rule (:func:`_own_draw`).
4. ``sample:ties:T=<t>,k=<k>`` (:func:`tie_rows`): weights whose logits tie exactly at the top
   (trained logits never do), so greedy's and top-k's lowest-index rule is exercised.
5. ``sample:cdf:T=1,k=0`` and ``sample:topk_edge:T=1,k=<k>`` (:func:`designed_rows`): weights
   and a seed that put ``u`` where one sampler mistake draws another token: a CDF summed in
   float32, not tinygpt.h's float64 (trained logits and a random seed show that ~1e-5 of the
   time per run, so no run did); top_k at V - 1, V and V + 1; a seed of 2^31 or more.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from harness.checks.base import CellContext
from harness.kernel import KernelModel
from harness.parity import compare
from harness.rundir.rows import Row, Status
from harness.tolerance import model_tolerance
from reference.defaults import DEFAULTS
from reference.model import GPT, Params, flatten_params, unflatten_params
from reference.presets import ModelConfig, param_shapes
from reference.sampler import SamplerRNG, first_uniforms, kept, pick, reachable_tokens
from reference.train import BATCH_STREAM, AdamWState, adamw_step, get_batch

CHECK = "model"
METRICS = ("max_abs_err", "max_rel_err", "max_ulp")

# The trained state: a 10x hot rate with a short warmup leaves the random-init degeneracy in a
# few hundred steps (the reference in float32, batch 2, 200 steps: tiny loss 4.83 -> 3.15, small
# -> 2.53, medium -> 2.52; measured at the commit that moved the training to the reference).
# The training is only a way to get weights; the trajectory rows judge training itself.
TRAIN = dataclasses.replace(DEFAULTS, learning_rate=3e-3, warmup_steps=20)
TRAIN_BATCH = 2  # halves the training cost; the weights only need to leave random init

# (temperature, top_k): greedy, then the grid of temperatures x top-k.
SAMPLING: tuple[tuple[float, int], ...] = (
    (0.0, 0), (0.5, 0), (1.0, 0), (2.0, 0), (0.5, 5), (1.0, 5), (2.0, 5),
)  # fmt: skip
# Ambiguity allowance of check (i): both sides sample the same float32 logits in float64, and
# differ only in exp's last bits and nothing else (same summation order): 1e-12 of the CDF is
# ~10^4 float64 ULPs, far above that and far below any real sampler fault.
DOUBLE_EPS = 1e-12


@dataclass
class _Path:
    """One ``tg_model_generate`` call: tokens and the logits each was picked from."""

    tokens: list[int]
    logits: NDArray[np.float32]  # (n_new, V)


# Per run: one trained state per (preset, start weights, steps, seed, corpus), and the float64
# logits of each (trained weights, token sequence); every cell of a preset asks for the same
# ones. Bounded, oldest out: a run has at most a handful of presets.
_TRAINED: dict[tuple[object, ...], NDArray[np.float32]] = {}
_LOGITS: dict[tuple[object, ...], NDArray[np.float64]] = {}
_TRAINED_MAX, _LOGITS_MAX = 8, 256


def _remember(cache: dict[tuple[object, ...], Any], key: tuple[object, ...], value: Any,
              limit: int) -> None:  # fmt: skip
    if len(cache) >= limit:
        cache.pop(next(iter(cache)))
    cache[key] = value


def _sha(*arrays: NDArray[Any]) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def train_state(
    cfg: ModelConfig, flat: NDArray[np.float32], tokens: NDArray[Any], steps: int, seed: int
) -> NDArray[np.float32]:
    """The weights after ``steps`` reference float32 train steps at :data:`TRAIN` from ``flat``.

    Computed once per run for each (preset, ``flat``, steps, seed, corpus), then reused.
    """
    key = (cfg, _sha(flat), steps, seed, _sha(tokens))
    if key in _TRAINED:
        return _TRAINED[key]
    model = GPT(cfg, unflatten_params(cfg, flat.astype(np.float32)))
    state = AdamWState.zeros_like(model.params)
    rng = np.random.default_rng((seed, BATCH_STREAM, 1))
    T = min(TRAIN.context_length, cfg.block_size)
    for t in range(1, steps + 1):
        x, y = get_batch(tokens, TRAIN_BATCH, T, rng)
        model.forward(x, y)
        model.params, state, _ = adamw_step(model.params, model.backward(), state, t, TRAIN)
    trained = flatten_params(cfg, model.params).astype(np.float32)
    _remember(_TRAINED, key, trained, _TRAINED_MAX)
    return trained


def _reference_logits(
    cfg: ModelConfig, ref: GPT, weights: str, seq: Sequence[int], prompt_len: int, n_new: int
) -> NDArray[np.float64]:
    """Float64 logits (n_new, V) of each step's window over ``seq`` (teacher forcing), for the
    weights whose sha256 is ``weights`` (cached per run)."""
    key = (cfg, weights, tuple(seq), prompt_len, n_new)
    if key in _LOGITS:
        return _LOGITS[key]
    bs = cfg.block_size
    out = np.empty((n_new, cfg.vocab_size))
    n_of = [prompt_len + s for s in range(n_new)]  # tokens that exist at step s
    grow = [s for s, n in enumerate(n_of) if n <= bs]
    slide = [s for s, n in enumerate(n_of) if n > bs]
    if grow:
        last = n_of[grow[-1]]
        logits, _ = ref.forward(np.asarray([seq[:last]], dtype=np.int32))  # (1, last, V)
        for s in grow:
            out[s] = logits[0, n_of[s] - 1]
    if slide:
        windows = np.asarray([seq[n_of[s] - bs : n_of[s]] for s in slide], dtype=np.int32)
        logits, _ = ref.forward(windows)  # (len(slide), bs, V)
        out[slide] = logits[:, -1]
    _remember(_LOGITS, key, out, _LOGITS_MAX)
    return out


def rows(
    ctx: CellContext,
    cfg: ModelConfig,
    trained: NDArray[np.float32],
    params64: Params,
    prompt_text: Sequence[int],
    seed: int,
    dims: dict[str, int],
) -> Iterator[Row]:
    """Yield the generation rows (module docstring) for weights ``trained`` (= ``params64``)."""
    bs = cfg.block_size
    prompt = list(prompt_text)[-max(1, bs // 4) :]
    P, n_new = len(prompt), bs
    grow = np.asarray([P + s <= bs for s in range(n_new)])  # steps before the window slides
    ref = GPT(cfg, params64)
    weights = _sha(trained)
    rule = model_tolerance("logits", **dims)
    paths_rule = model_tolerance("generate_paths", **dims)
    found: dict[tuple[str, str], list[NDArray[Any]]] = {}
    expected: dict[tuple[str, str], list[NDArray[Any]]] = {}
    cache_found: list[NDArray[Any]] = []
    cache_expected: list[NDArray[Any]] = []
    ref_cache: dict[tuple[int, ...], NDArray[np.float64]] = {}
    model = KernelModel.create(ctx.instance, cfg, trained)
    try:
        for temperature, top_k in SAMPLING:
            runs: dict[str, _Path] = {}
            for path, kv in (("kv", True), ("nokv", False)):
                toks, lg = model.generate_logged(prompt, n_new, kv, temperature, seed, top_k)
                runs[path] = _Path(toks, lg)
                key = tuple(prompt + toks)
                if key not in ref_cache:
                    ref_cache[key] = _reference_logits(cfg, ref, weights, key, P, n_new)
                for regime, mask in (("grow", grow), ("slide", ~grow)):
                    found.setdefault((path, regime), []).append(lg[mask])
                    expected.setdefault((path, regime), []).append(ref_cache[key][mask])
            # with-cache vs without-cache: every step up to and including the first whose
            # prefix agrees (after a divergent draw the windows differ and are not comparable)
            kv_t, nokv_t = runs["kv"].tokens, runs["nokv"].tokens
            diff = [i for i, (a, b) in enumerate(zip(kv_t, nokv_t, strict=True)) if a != b]
            same = diff[0] if diff else n_new - 1
            cache_found.append(runs["kv"].logits[: same + 1])
            cache_expected.append(runs["nokv"].logits[: same + 1].astype(np.float64))
            yield _sample_row(ctx, temperature, top_k, seed, runs, ref_cache, prompt)
    finally:
        model.free()
    n_grow = int(grow.sum())
    for (path, regime), parts in found.items():
        f = np.concatenate(parts)
        e = np.concatenate(expected[(path, regime)])
        steps = f"{n_grow} growing steps" if regime == "grow" else f"{n_new - n_grow} sliding"
        subject = f"generate:{path}:{regime}"
        r = compare(subject, f, e, rule.tolerance)
        note = (f"; prompt {P} of block {bs}, {steps} x {len(SAMPLING)} sampler settings, "
                f"trained weights")  # fmt: skip
        status: Status = "pass" if r.ok else "fail"
        for m in METRICS:
            yield ctx.row(CHECK, subject, status, metric=m, value=float(getattr(r, m)),
                          detail=r.message + note)  # fmt: skip
    f, e = np.concatenate(cache_found), np.concatenate(cache_expected)
    r = compare("generate:cache_vs_nocache", f, e, paths_rule.tolerance)
    for m in METRICS:
        yield ctx.row(CHECK, "generate:cache_vs_nocache", "pass" if r.ok else "fail", metric=m,
                      value=float(getattr(r, m)),
                      detail=r.message + f"; {len(f)} steps compared")  # fmt: skip


def _draws_row(ctx: CellContext, subject: str, status: Status, draws: int, detail: str) -> Row:
    """A ``sample:...`` row: ``draws`` draws matched (all of them on a pass)."""
    return ctx.row(
        CHECK, subject, status, metric="draws_matched", value=float(draws), detail=detail
    )


def _own_draw(
    logits: NDArray[np.float32], token: int, temperature: float, top_k: int, u: float | None
) -> bool:
    """Whether ``token`` is the sampler's draw from the kernel's own float32 ``logits``.

    Exact where no float error is involved: greedy's argmax (lowest index on ties) and top-k's
    kept set (logit descending, index ascending) only compare the float32 values themselves, so
    tied logits are judged by the tie rule, never accepted either way. The one allowance is
    :data:`DOUBLE_EPS` on the CDF (exp's last bits), among the tokens top-k keeps.
    """
    if token == pick(logits, temperature, top_k, u):
        return True
    if temperature == 0.0:
        return False
    # no rivals: the kept set of exact float32 logits is exact (the tie rule); with them every
    # kept token was accepted on tied logits, whatever u (a wrong stream passed the tie rows)
    reach = reachable_tokens(logits, temperature, top_k, u, DOUBLE_EPS, rivals=False)
    return token in reach and bool(kept(logits, top_k)[token])


def _sample_row(
    ctx: CellContext,
    temperature: float,
    top_k: int,
    seed: int,
    runs: dict[str, _Path],
    ref_cache: dict[tuple[int, ...], NDArray[np.float64]],
    prompt: list[int],
) -> Row:
    """One row per sampler setting: every draw of both paths is the specified sampler's."""
    subject = f"sample:T={temperature:g},k={top_k}"
    draws = own = ambiguous = 0
    for path, run in runs.items():
        rng = SamplerRNG(seed)
        ref_logits = ref_cache[tuple(prompt + run.tokens)]
        for s, token in enumerate(run.tokens):
            u = None if temperature == 0.0 else rng.uniform()
            mine = run.logits[s]
            draws += 1
            # (i) the reference sampler on the kernel's own float32 logits: exact
            if not _own_draw(mine, token, temperature, top_k, u):
                return _draws_row(
                    ctx, subject, "fail", draws - 1,
                    detail=(f"{path} step {s}: drew {token}, the sampler (seed {seed}, "
                            f"T={temperature:g}, top_k={top_k}, u={u!r}) draws "
                            f"{pick(mine, temperature, top_k, u)} from the kernel's own logits; "
                            f"tolerance: identical draws"),
                )  # fmt: skip
            # (ii) the reference's own float64 logits: the draw is theirs unless the kernel's
            # logits error (measured at this step) can move u across a CDF boundary
            eps = float(np.max(np.abs(mine.astype(np.float64) - ref_logits[s])))
            reach = reachable_tokens(ref_logits[s], temperature, top_k, u, eps)
            theirs = pick(ref_logits[s], temperature, top_k, u)
            if token == theirs and len(reach) == 1:
                own += 1
            elif token in reach:
                ambiguous += 1
            else:
                return _draws_row(
                    ctx, subject, "fail", draws - 1,
                    detail=(f"{path} step {s}: drew {token}; from its float64 logits the "
                            f"reference draws {theirs}, and a logits error of {eps:.3g} reaches "
                            f"only {sorted(reach)}"),
                )  # fmt: skip
    return _draws_row(
        ctx, subject, "pass", draws,
        detail=(f"{draws} draws (kv and nokv, seed {seed}) identical to the sampler on the "
                f"kernel's logits; {own} identical to the reference's own draw, {ambiguous} "
                f"within the logits' error of a CDF boundary (either side accepted)"),
    )  # fmt: skip


# The tie rows: weights whose logits are TIE_LOGITS at every step, exactly. With every block
# parameter and ln_f's weight zero, ln_f outputs its bias, e_0; the tied LM head then gives
# logit_v = wte[v, 0] * 1 + 0s, exact in any summation order. The maximum is shared by
# TIE_AT (the last vocabulary index among them), so greedy must pick TIE_AT[0], and top-k 5
# must keep TIE_AT[:5]: a kernel breaking ties by the last index keeps TIE_AT[-5:] instead.
TIE_AT = (2, 9, 17, 33, 64, 90, 100)  # and vocab_size - 1
TIE_SAMPLING: tuple[tuple[float, int], ...] = ((0.0, 0), (1.0, 5))
TIE_STEPS = 8  # tokens per path; the logits are the same at every step


def tie_logits(cfg: ModelConfig) -> NDArray[np.float32]:
    """The designed logits (V,) of :func:`tie_params`: 1 at :data:`TIE_AT` and V-1, else 0."""
    out = np.zeros(cfg.vocab_size, np.float32)
    out[[*TIE_AT, cfg.vocab_size - 1]] = 1.0
    return out


def designed_params(cfg: ModelConfig, logits: NDArray[np.float32]) -> NDArray[np.float32]:
    """Flat float32 params (PARAM_NAMES order) whose logits are ``logits`` (V,) bit for bit at
    every step of any input: every block parameter and ln_f's weight zero, ln_f's bias e_0, and
    ``wte[:, 0] = logits``, so the tied LM head gives ``logit_v = wte[v, 0] * 1 + 0s``."""
    parts = []
    for name, shape in param_shapes(cfg).items():
        a = np.zeros(shape, np.float32)
        if name == "wte":
            a[:, 0] = logits
        elif name == "lnfb":
            a[0] = 1.0
        parts.append(a.reshape(-1))
    return np.concatenate(parts)


def tie_params(cfg: ModelConfig) -> NDArray[np.float32]:
    """Flat float32 params (PARAM_NAMES order) whose every logit is :func:`tie_logits`."""
    return designed_params(cfg, tie_logits(cfg))


def tie_rows(ctx: CellContext, cfg: ModelConfig, seed: int) -> Iterator[Row]:
    """``sample:ties:T=<t>,k=<k>``: on logits tied exactly at the top, greedy draws the lowest
    tied index and top-k keeps the lowest tied indices (tinygpt.h), both paths, every step."""
    designed = tie_logits(cfg)
    model = KernelModel.create(ctx.instance, cfg, designed_params(cfg, designed))
    try:
        for temperature, top_k in TIE_SAMPLING:
            runs = {
                path: model.generate_logged([0], TIE_STEPS, kv, temperature, seed, top_k)
                for path, kv in (("kv", True), ("nokv", False))
            }
            yield _tie_row(ctx, temperature, top_k, seed, runs, designed)
    finally:
        model.free()


def _tie_row(
    ctx: CellContext,
    temperature: float,
    top_k: int,
    seed: int,
    runs: dict[str, tuple[list[int], NDArray[np.float32]]],
    designed: NDArray[np.float32],
) -> Row:
    subject = f"sample:ties:T={temperature:g},k={top_k}"
    draws = 0
    for path, (tokens, logits) in runs.items():
        rng = SamplerRNG(seed)
        for s, token in enumerate(tokens):
            u = None if temperature == 0.0 else rng.uniform()
            mine = logits[s]
            tied = np.flatnonzero(mine == mine.max())
            if len(tied) < 2 or (top_k and len(tied) <= top_k):
                err = float(np.max(np.abs(mine.astype(np.float64) - designed)))
                return _draws_row(
                    ctx, subject, "fail", draws,
                    detail=(f"{path} step {s}: the designed tie did not arise: {len(tied)} "
                            f"logits share the maximum, max |logit - designed| = {err:.3g} "
                            f"(the designed logits are exact in float32)"),
                )  # fmt: skip
            if not _own_draw(mine, token, temperature, top_k, u):
                want = pick(mine, temperature, top_k, u)
                rule = ("greedy picks the lowest tied index" if temperature == 0.0 else
                        f"top-k keeps the lowest tied indices "
                        f"{np.flatnonzero(kept(mine, top_k)).tolist()}")  # fmt: skip
                return _draws_row(
                    ctx, subject, "fail", draws,
                    detail=(f"{path} step {s}: drew {token} from {len(tied)} exactly tied "
                            f"logits at indices {tied.tolist()}; {rule} (tinygpt.h), so the "
                            f"sampler (seed {seed}, u={u!r}) draws {want}; tolerance: the tie "
                            f"rule exactly"),
                )  # fmt: skip
            draws += 1
    return _draws_row(
        ctx, subject, "pass", draws,
        detail=(f"{draws} draws (kv and nokv, seed {seed}) on logits tied exactly at indices "
                f"{np.flatnonzero(designed == designed.max()).tolist()}: each the sampler's "
                f"draw under the tie rule (lowest index first)"),
    )  # fmt: skip


# Designed draws: logits and a seed chosen so that one sampler mistake changes the first draw
# for certain, where trained logits and the cell's seed show it rarely or never. Every seed is
# searched from SEED_FROM = 2^31: the seed is a uint32, and a kernel that sign-extends it (an
# int32 cast) draws another stream only from 2^31 up, which the cell's seed never reaches.
SEED_FROM = 1 << 31
SEED_SEARCH = 1 << 28  # seeds tried at most (the widest search, the CDF row's, is ~3e5 at V=128)
DESIGNED_STEPS = 4  # tokens per path; the first draw is the designed one, all are checked

# The CDF row: tinygpt.h sums the draw's CDF in float64. Token 0's logit is 0 (weight 1, the
# maximum) and every other token's weight is CDF_WEIGHT, below 2^-24 (half an ulp of 1.0f): a
# float32 running sum stays exactly 1 after token 0, so it draws token 0 for every u. In float64
# the other V - 1 tokens hold (V - 1) * w of the total (5.7e-6 at V = 128), and the seed is the
# first whose first u lies in the middle half of that fraction: the reference draws a token near
# V / 2, and u is ~w / 2 (2e-8) from any CDF boundary, 10^4 times DOUBLE_EPS. Trained logits
# with a random seed put u that close to a float32-moved boundary ~1e-5 of the time per run.
CDF_WEIGHT = 0.75 * 2.0**-24


def cdf_logits(cfg: ModelConfig) -> NDArray[np.float32]:
    """The designed logits (V,) of the CDF row: 0 at token 0, log(CDF_WEIGHT) elsewhere."""
    out = np.full(cfg.vocab_size, np.log(CDF_WEIGHT), np.float32)
    out[0] = 0.0
    return out


def cdf_window(vocab_size: int) -> tuple[float, float]:
    """The ``u`` interval where the float64 CDF of :func:`cdf_logits` draws a token in the
    middle half of 1..V-1 (a float32 running sum draws 0 there)."""
    w = float(np.exp(np.float64(np.float32(np.log(CDF_WEIGHT)))))
    total = 1.0 + (vocab_size - 1) * w
    return (1.0 + vocab_size / 4 * w) / total, (1.0 + 3 * vocab_size / 4 * w) / total


# The top-k edge rows: every logit 0, so every weight is exactly 1, the kept set is the first k
# indices (the tie rule), and the draw is floor(u * kept). The seed's first u lies in the middle
# half of ((V-1)/V, 1): keeping all V tokens draws V - 1, keeping V - 1 draws V - 2, and u * kept
# is at least 1/4 from an integer. top_k = V - 1 is the last k that drops a token and V the first
# that keeps all (tinygpt.h: 0 or >= V keeps every token); a kernel that keeps all from V - 1 (an
# off-by-one in `top_k < V`) or drops one at V fails here; on trained logits the one token
# V - 1 drops is the least likely, so no trained-state row's draw showed it.
def edge_window(vocab_size: int) -> tuple[float, float]:
    """The ``u`` interval of the top-k edge rows (module comment above)."""
    return 1.0 - 0.75 / vocab_size, 1.0 - 0.25 / vocab_size


def edge_ks(vocab_size: int) -> tuple[int, ...]:
    """The top_k values of the edge rows: 1, V - 1, V and V + 1."""
    return 1, vocab_size - 1, vocab_size, vocab_size + 1


@functools.cache
def seed_for(lo: float, hi: float) -> tuple[int, float]:
    """The first uint32 seed from :data:`SEED_FROM` whose first draw ``u`` lies in (lo, hi), and
    that ``u`` (checked with the exact :class:`SamplerRNG`, not only the vectorised search)."""
    chunk = 1 << 20
    for start in range(SEED_FROM, SEED_FROM + SEED_SEARCH, chunk):
        u = first_uniforms(np.arange(start, start + chunk, dtype=np.uint64))
        hits = np.flatnonzero((u > lo) & (u < hi))
        if len(hits):
            seed = start + int(hits[0])
            first = SamplerRNG(seed).uniform()
            if not lo < first < hi:  # the vectorised stream disagrees with the exact one
                raise AssertionError(f"seed_for: seed {seed}: u={first!r}, searched {u[hits[0]]!r}")
            return seed, first
    raise ValueError(f"seed_for: no seed in [{SEED_FROM}, +{SEED_SEARCH}) draws u in ({lo}, {hi})")


@dataclass(frozen=True)
class _Design:
    """One designed-draw row: its logits, sampler setting, seed window, and what a miss means."""

    subject: str
    logits: NDArray[np.float32]
    top_k: int
    window: tuple[float, float]
    why: str  # appended to a failing draw's detail


def _designs(cfg: ModelConfig) -> list[_Design]:
    V = cfg.vocab_size
    designs = [
        _Design("sample:cdf:T=1,k=0", cdf_logits(cfg), 0, cdf_window(V),
                f"token 0 holds 1 / (1 + {V - 1} x {CDF_WEIGHT:.3g}) of the mass, so u lies past "
                f"it; a CDF summed in float32 (tinygpt.h: float64) absorbs every weight below "
                f"2^-24 after token 0's 1 and draws 0"),
    ]  # fmt: skip
    flat = np.zeros(V, np.float32)
    for k in edge_ks(V):
        keeps = "all tokens (k >= V)" if k >= V else f"the first {k} of {V} equal logits"
        why = (
            f"every logit is 0, so top_k={k} keeps {keeps} by the tie rule and the draw is "
            f"floor(u x kept); tinygpt.h: top_k 0 or >= V keeps every token, else the first k"
        )
        designs.append(_Design(f"sample:topk_edge:T=1,k={k}", flat, k, edge_window(V), why))
    return designs


def designed_rows(ctx: CellContext, cfg: ModelConfig) -> Iterator[Row]:
    """``sample:cdf:T=1,k=0`` and ``sample:topk_edge:T=1,k=<k>``: on designed logits, with a
    seed from 2^31 whose first ``u`` one sampler mistake draws differently, both paths draw the
    sampler's token at every step, from logits that are the designed ones bit for bit."""
    models: dict[bytes, KernelModel] = {}
    try:
        for d in _designs(cfg):
            key = d.logits.tobytes()
            if key not in models:
                models[key] = KernelModel.create(ctx.instance, cfg, designed_params(cfg, d.logits))
            seed, _ = seed_for(*d.window)
            runs = {
                path: models[key].generate_logged([0], DESIGNED_STEPS, kv, 1.0, seed, d.top_k)
                for path, kv in (("kv", True), ("nokv", False))
            }
            yield _designed_row(ctx, d, seed, runs)
    finally:
        for model in models.values():
            model.free()


def _designed_row(
    ctx: CellContext,
    d: _Design,
    seed: int,
    runs: dict[str, tuple[list[int], NDArray[np.float32]]],
) -> Row:
    draws = 0
    for path, (tokens, logits) in runs.items():
        rng = SamplerRNG(seed)
        for s, token in enumerate(tokens):
            u = rng.uniform()
            mine = logits[s]
            if not np.array_equal(mine, d.logits):
                err = float(np.max(np.abs(mine.astype(np.float64) - d.logits)))
                return _draws_row(
                    ctx, d.subject, "fail", draws,
                    detail=(f"{path} step {s}: the designed logits did not arise: max |logit - "
                            f"designed| = {err:.3g} (they are exact in float32)"),
                )  # fmt: skip
            if not _own_draw(mine, token, 1.0, d.top_k, u):
                return _draws_row(
                    ctx, d.subject, "fail", draws,
                    detail=(f"{path} step {s}: drew {token}, the sampler (seed {seed}, T=1, "
                            f"top_k={d.top_k}, u={u!r}) draws {pick(mine, 1.0, d.top_k, u)}: "
                            f"{d.why}; tolerance: identical draws"),
                )  # fmt: skip
            draws += 1
    return _draws_row(
        ctx, d.subject, "pass", draws,
        detail=(f"{draws} draws (kv and nokv, seed {seed}) on designed logits: each the "
                f"sampler's draw (tinygpt.h)"),
    )  # fmt: skip
