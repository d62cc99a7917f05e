"""The tolerance policy: every parity tolerance the harness uses, in one place.

Rule (written out with its reasoning in ``docs/tolerance.md``):

- A kernel output ``found`` (float32) matches the float64 reference ``expected`` element-wise when
  ``|found - expected| <= atol + rtol * |expected|`` (the torch.testing / numpy.isclose form).
- The baseline per dtype is torch.testing's default: float32 rtol 1.3e-6, atol 1e-5; float64
  rtol 1e-7, atol 1e-7.
- An output that is a sum of ``K`` rounded float32 terms is allowed ``sqrt(K)`` times the baseline
  (both rtol and atol). ``sqrt(K)`` and not ``K``: rounding errors of a long sum behave like a
  random walk (Higham & Mary, "A new approach to probabilistic rounding error analysis", SISC
  2019), and the kernels' SIMD lanes sum in a different order from numpy, so neither side is
  "the" exact float32 answer. Outputs that are not reductions keep the baseline.
- Anything looser than that carries its reason in :data:`OP_RULES` or :data:`MODEL_RULES`.

The ops check asks :func:`op_tolerance`; the model check asks :func:`model_tolerance`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
from numpy.typing import ArrayLike, NDArray

from reference.defaults import TrainingDefaults

FLOAT32_EPS = float(np.finfo(np.float32).eps)  # 1.19e-7: one ULP at 1.0


@dataclass(frozen=True)
class Tolerance:
    """An element-wise ``atol + rtol * |expected|`` bound, with the reason it is what it is."""

    rtol: float
    atol: float
    reason: str
    max_ulp: int | None = None  # set: a ULP bound replaces atol/rtol (0 = correctly rounded)
    per_element: bool = False  # set: an ElementwiseBound replaces atol/rtol (element-wise ops)

    def __post_init__(self) -> None:
        if not (self.rtol >= 0 and self.atol >= 0):
            raise ValueError(
                f"tolerance must be non-negative, got rtol={self.rtol} atol={self.atol}"
            )

    def scaled(self, factor: float, why: str) -> Tolerance:
        """Return this tolerance with rtol and atol multiplied by ``factor``, noting ``why``."""
        if factor == 1.0:
            return self
        return Tolerance(
            self.rtol * factor, self.atol * factor, f"{self.reason}; x{factor:.3g} {why}"
        )

    def with_atol(self, atol: float, why: str) -> Tolerance:
        """Return this tolerance with a different atol, noting ``why``."""
        return Tolerance(self.rtol, atol, f"{self.reason}; atol={atol:.3g} {why}")

    def describe(self) -> str:
        """Return ``rtol=.. atol=..`` (or ``max_ulp=N``) for a result row's detail."""
        if self.max_ulp is not None:
            return f"max_ulp={self.max_ulp} vs the float64 result rounded to float32"
        if self.per_element:
            return "the per-element float32 bound of docs/tolerance.md"
        return f"rtol={self.rtol:.3g} atol={self.atol:.3g}"


BASELINE: Mapping[str, Tolerance] = {
    "float32": Tolerance(1.3e-6, 1e-5, "torch.testing float32 default"),
    "float64": Tolerance(1e-7, 1e-7, "torch.testing float64 default"),
}
# One IEEE 754 operation per element (an add, a copy) is correctly rounded: the kernel's float32
# result must BE the float64 result rounded to float32, 0 ULP away. No tolerance is justified.
CORRECTLY_ROUNDED = "one IEEE 754 operation per element is correctly rounded"


def baseline(dtype: str | np.dtype[np.generic] | type[np.generic]) -> Tolerance:
    """Return the baseline tolerance of ``dtype`` (float32 or float64)."""
    name = np.dtype(dtype).name
    try:
        return BASELINE[name]
    except KeyError:
        raise KeyError(
            f"no tolerance baseline for dtype {name}; known: {', '.join(BASELINE)}"
        ) from None


def reduction_scale(length: int) -> float:
    """Return the factor a sum of ``length`` float32 terms gets over the baseline: sqrt(length)."""
    if length < 1:
        raise ValueError(f"reduction length must be >= 1, got {length}")
    return math.sqrt(length)


@dataclass(frozen=True)
class Rule:
    """How one output's tolerance follows from the case's dims.

    ``reduce`` names the dims whose product is the reduction length (``()`` = element-wise).
    ``exact`` means the output must be the float64 result rounded to float32 (0 ULP).
    ``conditioned_by`` names a dim (the largest |logit|) that multiplies the tolerance because
    of exp's conditioning; ``reason`` says why.
    """

    reduce: tuple[str, ...] = ()
    exact: bool = False
    reason: str = ""
    conditioned_by: str = ""  # a dim whose magnitude (>1) multiplies the tolerance; see _EXP
    # a dim k: an absolute error of rtol x k the output cannot avoid; it replaces atol when
    # larger (see _MEAN)
    carries: str = ""


# exp(x) has condition number |x|: an absolute error of |x|*u in a score (the float32 rounding
# of a score of magnitude |x|) is a RELATIVE error of |x|*u in exp(x - max). With logits of
# +-80..100 that is up to 100x a unit roundoff, which no summation order can avoid.
_EXP = "logit"
# LayerNorm's dx = rstd * (dy*w - mean(dy*w) - norm*mean(dy*w*norm)): the bracket cancels to
# O(u) of its O(1) terms (exactly 0 at C = 1), and rstd multiplies that rounding; with a row of
# near-zero variance rstd reaches 1/sqrt(eps) = 316 (an FMA-contracted dy*w - mean leaves
# 6e-8 x 316 = 1.9e-5 at C = 1). The case's max rstd multiplies the tolerance.
_RSTD = "rstd"
# LayerNorm's out = (x - mean) rstd w + b at a row of large |mean| against its std: the float32
# mean is a sum of C terms of magnitude |mean| (relative error within the reduction rule's
# sqrt(C) x rtol), and x - mean carries that error absolutely, times rstd w, into out: an
# absolute error of rtol x |mean| rstd max|w| (x - mean itself is exact: Sterbenz). The case's
# max over rows of |mean| rstd max|w| (0 at C = 1: the mean is x) sets atol when it exceeds
# atol/rtol = 7.7; no standard case at seed 0 reaches it (docs/tolerance.md item 7).
_MEAN = "mean_rstd"


def mean_rstd(x: ArrayLike, w: ArrayLike) -> float:
    """The ``mean_rstd`` dim of LayerNorm inputs ``x`` (rows of C) and ``w``: the max over rows
    of |mean| x rstd x max|w| (0 at C = 1, whose mean is x exactly)."""
    from reference.ops import layernorm_forward  # the float64 reference's own mean and rstd

    x64 = np.atleast_2d(np.asarray(x, np.float64))
    w64 = np.asarray(w, np.float64)
    if x64.shape[-1] <= 1:
        return 0.0
    _, mean, rstd = layernorm_forward(x64, w64, np.zeros_like(w64))
    return float(np.abs(mean * rstd).max(initial=0.0)) * float(np.abs(w64).max(initial=0.0))


CONDITIONING: Mapping[str, str] = {
    _EXP: "exp has condition number |x|",
    _RSTD: "dx is rstd times a cancelling difference",
    _MEAN: "the mean's rounding carried into x - mean, times rstd w",
}

# (op, output) -> rule. Dims: N rows, C channels, OC out channels, B batch, T time, NH heads,
# hs head size, V vocabulary. Outputs are named as in harness/checks/ops.py.
OP_RULES: Mapping[tuple[str, str], Rule] = {
    ("embedding_forward", "out"): Rule(exact=True, reason="one float32 add per element"),
    # a token repeated r times sums r rows; positions sum over the batch
    ("embedding_backward", "dwte"): Rule(("B", "T"), reason="scatter-add over repeated tokens"),
    ("embedding_backward", "dwpe"): Rule(("B",), reason="sum over the batch"),
    ("layernorm_forward", "out"): Rule(
        ("C",), reason="mean and variance sum over C; the mean's error times rstd w", carries=_MEAN
    ),
    ("layernorm_forward", "mean"): Rule(("C",), reason="sum over C"),
    ("layernorm_forward", "rstd"): Rule(("C",), reason="variance sums over C"),
    ("layernorm_backward", "dinp"): Rule(
        ("C",), reason="two means over C; times rstd", conditioned_by=_RSTD
    ),
    ("layernorm_backward", "dweight"): Rule(("N",), reason="sum over rows"),
    ("layernorm_backward", "dbias"): Rule(("N",), reason="sum over rows"),
    ("matmul_forward", "out"): Rule(("C",), reason="dot product over C"),
    ("matmul_backward", "dinp"): Rule(("OC",), reason="dot product over OC"),
    ("matmul_backward", "dweight"): Rule(("N",), reason="dot product over rows"),
    ("matmul_backward", "dbias"): Rule(("N",), reason="sum over rows"),
    # preatt = q.k over hs, then softmax normalises over T, then att @ v sums over T
    ("attention_forward", "out"): Rule(
        ("hs", "T"), reason="q.k over hs then att@v over T; exp of the scores", conditioned_by=_EXP
    ),
    ("attention_forward", "att"): Rule(
        ("hs", "T"),
        reason="q.k over hs then softmax over T; exp of the scores",
        conditioned_by=_EXP,
    ),
    ("attention_backward", "dinp"): Rule(("hs", "T"), reason="datt over hs then dq, dk over T"),
    # FlashAttention (reference.ops.attention_flash_*): the same sums as attention's, but the
    # running max and sum of the online softmax rescale the partial sums once per key tile:
    # each rescale is one more rounded multiply (by exp(m_old - m_new), within WGSL's exp
    # allowance) of everything summed so far, a chain of up to T of them (one key per tile at
    # worst; the tile size is the kernel's choice, so the bound assumes the smallest). That
    # chain is a third sum of up to T rounded terms: the `T` twice. lse = max + log(sum) carries
    # the sum's error absolutely (log's condition number is 1/sum's relative error). The
    # backward recomputes att = exp(score - lse): exp of a score of magnitude |x| is
    # conditioned by |x| there too, which attention_backward (given att) is not.
    ("attention_flash_forward", "out"): Rule(
        ("hs", "T", "T"),
        reason="q.k over hs, p@v over T, rescaled once per key tile (<= T); exp of the scores",
        conditioned_by=_EXP,
    ),
    ("attention_flash_forward", "lse"): Rule(
        ("hs", "T", "T"),
        reason="q.k over hs, the running sum over T rescaled once per key tile (<= T), then log",
        conditioned_by=_EXP,
    ),
    ("attention_flash_backward", "dinp"): Rule(
        ("hs", "T", "T"),
        reason="att = exp(score - lse) (score over hs), datt over hs, dq, dk over T, "
        "D = rowsum(dout*out) over hs",
        conditioned_by=_EXP,
    ),
    # attention with biased q/k/v/o projections (reference.ops.attention_block_*): q, k, v are
    # Linears (dot over C); att is attention's att rule; out is attention's out rule and one
    # more dot over C (the Wo projection). dx sums three projections' dinp (over 3C) after
    # attention's dinp rule; each weight and bias gradient sums over the B*T rows of an input
    # whose own error is attention's dinp rule.
    ("attention_block_forward", "q"): Rule(("C",), reason="dot product over C"),
    ("attention_block_forward", "k"): Rule(("C",), reason="dot product over C"),
    ("attention_block_forward", "v"): Rule(("C",), reason="dot product over C"),
    ("attention_block_forward", "att"): Rule(
        ("hs", "T"),
        reason="q.k over hs then softmax over T; exp of the scores",
        conditioned_by=_EXP,
    ),
    ("attention_block_forward", "out"): Rule(
        ("hs", "T", "C"),
        reason="q.k over hs, att@v over T, then the Wo projection over C; exp of the scores",
        conditioned_by=_EXP,
    ),
    ("attention_block_backward", "dinp"): Rule(
        ("hs", "T", "3C"), reason="attention's dinp over hs*T, then three projections over C"
    ),
    **{
        ("attention_block_backward", f"d{w}{c}"): Rule(
            ("hs", "T", "B", "T"), reason="attention's dinp over hs*T, then a sum over B*T rows"
        )
        for c in "qkvo"
        for w in "Wb"
    },
    ("gelu_forward", "out"): Rule(reason="element-wise tanh"),
    ("gelu_backward", "dinp"): Rule(reason="element-wise tanh"),
    ("residual_forward", "out"): Rule(exact=True, reason="one float32 add per element"),
    ("residual_backward", "da"): Rule(exact=True, reason="a copy of dout"),
    ("residual_backward", "db"): Rule(exact=True, reason="a copy of dout"),
    ("crossentropy_forward", "probs"): Rule(
        ("V",), reason="softmax normaliser sums over V; exp of the logits", conditioned_by=_EXP
    ),
    ("crossentropy_forward", "losses"): Rule(("V",), reason="log-sum-exp over V"),
    ("crossentropy_forward", "loss"): Rule(("V", "N"), reason="log-sum-exp over V, mean over N"),
    ("crossentropy_backward", "dlogits"): Rule(reason="one subtract and one multiply"),
    ("adamw_update", "params"): Rule(reason="element-wise; sqrt and divide"),
    ("adamw_update", "m"): Rule(reason="element-wise"),
    ("adamw_update", "v"): Rule(reason="element-wise"),
}


def op_tolerance(op: str, output: str, dims: Mapping[str, float]) -> Tolerance:
    """Return the float32 tolerance for ``output`` of ``op`` on a case with ``dims``."""
    try:
        rule = OP_RULES[(op, output)]
    except KeyError:
        raise KeyError(f"no tolerance rule for {op}.{output}; add one to OP_RULES") from None
    if rule.exact:
        return Tolerance(0.0, 0.0, f"exact ({CORRECTLY_ROUNDED}): {rule.reason}", max_ulp=0)
    if (op, output) in ELEMENTWISE_RULES:
        why = f"per-element float32 bound: {ELEMENTWISE_RULES[(op, output)]}"
        return Tolerance(0.0, 0.0, why, per_element=True)
    base = BASELINE["float32"]
    for d in (*rule.reduce, *(d for d in (rule.conditioned_by, rule.carries) if d)):
        if d not in dims:
            raise KeyError(
                f"tolerance rule for {op}.{output} needs dim {d!r}; case has {dict(dims)}"
            )
    if not rule.reduce:
        tol = Tolerance(base.rtol, base.atol, f"{base.reason} ({rule.reason})")
    else:
        length = math.prod(int(dims[d]) for d in rule.reduce)
        how = "x".join(f"{d}={dims[d]:g}" for d in rule.reduce)
        tol = base.scaled(reduction_scale(length), f"= sqrt({how}): {rule.reason}")
    if rule.conditioned_by and dims[rule.conditioned_by] > 1.0:
        mag = float(dims[rule.conditioned_by])
        tol = tol.scaled(mag, f"= max|{rule.conditioned_by}|: {CONDITIONING[rule.conditioned_by]}")
    if rule.carries and tol.rtol * float(dims[rule.carries]) > tol.atol:
        k = float(dims[rule.carries])
        tol = tol.with_atol(
            tol.rtol * k, f"= rtol x {rule.carries} {k:.3g}: {CONDITIONING[rule.carries]}"
        )
    return tol


@dataclass(frozen=True)
class ModelRule:
    """The tolerance of one model-level comparison, and why."""

    tolerance: Tolerance
    relative_to_max: bool = False  # atol is multiplied by max|expected| of the tensor


# A forward pass through L blocks composes about L*(C + T + 4C) + 2C rounded reductions (the
# qkv/proj dot products over C, attention over T, the MLP over 4C, the final LayerNorm and LM
# head over C); errors of independent reductions add like a random walk, so that path length
# plays the role of K in sqrt(K). model_tolerance() computes it from the preset.
MODEL_RULES: Mapping[str, str] = {
    "logits": "forward path: sqrt(L*(C+T+4C) + 2C) x float32 baseline",
    "loss": "forward path plus the mean over B*T positions",
    "grad": (
        "backward path (twice the forward) plus the weight-gradient sum over B*T positions; atol "
        "is relative to the tensor's max |expected|, because gradients of a mean loss are ~1/(B*T) "
        "of the activations and an absolute 1e-5 floor would accept any small gradient"
    ),
    "adamw": (
        "one AdamW step from identical params and gradients: p' = p - lr*u is rounded once "
        "(rtol, the float32 baseline) and u = m/(sqrt(v)+eps) is a few float32 operations, so "
        "its error in p' is below lr * rtol (atol)"
    ),
    "generate_paths": (
        "with-cache against without-cache logits of one kernel at every generation step: each "
        "path is held to the logits rule against the reference, so the two differ by at most "
        "twice it"
    ),
    "convergence": (
        "the corpus check's kernel run against the recorded float32 reference run (same init, "
        "same batches) at every step: the loss rule's rtol x sqrt(step) x 2, no atol"
    ),
    "trajectory": (
        "loss at each of N train steps: each is a forward pass (the loss rule) on weights that "
        "drift apart by one step's rounding per step, a random walk over N steps: x sqrt(N)"
    ),
}


def _forward_path(L: int, C: int, T: int, rescales: int = 0) -> int:
    # per layer: the qkv projection's C, attention's sum over T, the MLP's 4C, and ``rescales``
    # (below); the lm head's C and the final layernorm's C
    return L * (C + T + rescales + 4 * C) + 2 * C


# The blocks a gradient's atol is relative to the max of (:func:`harness.parity.compare`'s
# ``max_blocks``): each layer's slice of a per-layer tensor, and each of q, k and v in a layer
# of the fused qkv weight. One block is what one path computes: a layer's weight gradient is
# dY^T X of that layer's dY, and q's dY (attention's dq) is not k's or v's. A max over the whole
# tensor let an error of 2x in q's gradient (dq without the diagonal key, 1e-5 against v's
# 1.5e-2) pass as 0.38 of the bound (docs/tolerance.md "Gradients: one block per path").
# Not qkvb: the k bias's gradient is exactly 0 (a constant added to every key of a row moves
# its scores by one constant, which softmax ignores), so the k block has no scale of its own;
# its rounding (1e-11) is judged against its layer's.
GLOBAL_PARAMS = ("wte", "wpe", "lnfw", "lnfb")  # not per layer: one block
FUSED_BLOCKS = MappingProxyType({"qkvw": 3})  # q, k, v


def grad_blocks(name: str, n_layer: int) -> tuple[int, ...]:
    """The ``max_blocks`` of gradient ``name`` for a model of ``n_layer`` layers."""
    if name in GLOBAL_PARAMS:
        return ()
    return (n_layer, FUSED_BLOCKS[name]) if name in FUSED_BLOCKS else (n_layer,)


def model_dims(n_layer: int, n_embd: int, batch: tuple[int, ...]) -> dict[str, int]:
    """:func:`model_tolerance`'s dimensions for a model of ``n_layer``/``n_embd`` on a
    ``(B, T)`` token batch of shape ``batch``."""
    b, t = batch
    return {"n_layer": n_layer, "n_embd": n_embd, "seq_len": t, "batch": b}


def model_tolerance(
    what: str,
    *,
    n_layer: int,
    n_embd: int,
    seq_len: int,
    batch: int,
    steps: int = 1,
    lr: float = 0.0,
    rescales: int = 0,
) -> ModelRule:
    """Return the tolerance of model comparison ``what`` (a key of :data:`MODEL_RULES`).

    ``rescales``: roundings per layer that attention adds to each output element beyond its
    sum over T. FlashAttention's online softmax rescales its partial sums once per key tile that
    raises the row max, at worst once per key: ``seq_len`` (docs/tolerance.md item 6).
    """
    base = BASELINE["float32"]
    fwd = _forward_path(n_layer, n_embd, seq_len, rescales)
    if what not in MODEL_RULES:
        raise KeyError(f"no model tolerance for {what!r}; known: {', '.join(MODEL_RULES)}")
    reason = MODEL_RULES[what]
    if what in ("logits", "generate_paths"):
        why = MODEL_RULES["logits"]
        tol = base.scaled(reduction_scale(fwd), f"= sqrt(path {fwd}): {why}")
        return ModelRule(tol if what == "logits" else tol.scaled(2.0, reason))
    if what in ("loss", "trajectory"):
        k = fwd + batch * seq_len
        tol = base.scaled(reduction_scale(k), f"= sqrt({k}): {MODEL_RULES['loss']}")
        if what == "trajectory":
            tol = tol.scaled(reduction_scale(max(steps, 1)), f"= sqrt(N={steps}): {reason}")
        return ModelRule(tol)
    if what == "grad":
        k = 2 * fwd + batch * seq_len
        tol = base.scaled(reduction_scale(k), f"= sqrt({k}): {reason}")
        return ModelRule(tol, relative_to_max=True)
    return ModelRule(Tolerance(base.rtol, lr * base.rtol, f"lr={lr:.3g}: {reason}"))


FLOAT32_U = FLOAT32_EPS / 2  # unit roundoff: one rounding's relative error is at most this


def adamw_trajectory_tolerance(steps: int, moved: float, defaults: TrainingDefaults) -> Tolerance:
    """The bound on one tensor after ``steps`` float32 AdamW steps against float64 (worst case).

    Each step rounds ``p' = p - lr (u + wd p)`` once: at most ``u32 |p|``, and these add up over
    the steps (a systematic error must not hide in a random-walk allowance): ``rtol = steps u32``.
    The update ``u = mh / (sqrt(vh) + eps)`` is relatively wrong by the error of the moments:
    ``m`` and ``v`` are exponential averages whose per-step roundings (2 each) decay by beta, so
    their relative errors stay below ``2 u32 / (1 - beta)``; ``u`` adds half of v's (the sqrt),
    the clip scale, the divide and the bias corrections (4 more). That relative error applies to
    every step's move, so ``atol = (2/(1-b1) + 1/(1-b2) + 4) u32 x moved``, with ``moved`` the
    tensor's largest sum over steps of |dp| in the reference.
    """
    c = 2.0 / (1.0 - defaults.beta1) + 1.0 / (1.0 - defaults.beta2) + 4.0
    return Tolerance(
        steps * FLOAT32_U,
        c * FLOAT32_U * moved,
        f"{steps} AdamW steps: rtol = steps x u32 (one rounding of p per step), atol = "
        f"{c:g} u32 x max sum|dp| = {moved:.3g} (moment EMAs' rounding over 1-beta, sqrt, "
        "clip, divide, bias corrections); worst case, not sqrt(steps)",
    )


def convergence_rtol(cfg_dims: Mapping[str, int], step: int) -> Tolerance:
    """The relative bound on the kernel's loss at 1-based ``step`` of the recorded reference run.

    Both runs are float32 from the same init and batches: each step's loss is one forward pass
    (the ``loss`` rule's rtol, sqrt(path + B*T) x the baseline) on weights that drift apart by one
    step's rounding per step, a random walk: x sqrt(step); x 2 because the recorded reference is
    float32 too, each side within the bound of the exact loss. No atol: the loss is a mean of
    log-sum-exps of magnitude >= 1 at every step of the run, so the relative bound is the whole
    story, and a 1e-5 absolute floor would add nothing but slack.
    """
    d = dict(cfg_dims)
    k = _forward_path(d["n_layer"], d["n_embd"], d["seq_len"]) + d["batch"] * d["seq_len"]
    rtol = 2.0 * BASELINE["float32"].rtol * reduction_scale(k) * reduction_scale(step)
    why = f"2 x sqrt({k}) x sqrt(step={step}) x float32 rtol: {MODEL_RULES['convergence']}"
    return Tolerance(rtol, 0.0, why)


def ulp_distance(found: ArrayLike, expected: ArrayLike) -> NDArray[np.int64]:
    """Return the float32 ULP distance between ``found`` and ``expected`` rounded to float32.

    Both are mapped onto the integers in float order (so -0.0 and +0.0 are 0 apart and the
    distance across zero is counted), as int64 to avoid overflow.
    """
    a = np.ascontiguousarray(found, dtype=np.float32).view(np.int32).astype(np.int64)
    b = np.ascontiguousarray(expected, dtype=np.float32).view(np.int32).astype(np.int64)
    # negative floats have the sign bit set: map them below zero in reversed order
    a = np.where(a < 0, -(a & 0x7FFFFFFF), a)
    b = np.where(b < 0, -(b & 0x7FFFFFFF), b)
    dist: NDArray[np.int64] = np.abs(a - b)
    return dist


# ---- element-wise ops: a per-element float32 bound (docs/tolerance.md, "Element-wise ops") -----

U32 = 2.0**-24  # float32 unit roundoff: |fl(a op b) - a op b| <= U32 |a op b|
GELU_SCALE = math.sqrt(2.0 / math.pi)  # the float64 constants the reference uses
GELU_COEF = 0.044715
# The bias stage (ElementwiseBound.constants): Hoeffding's z for a 1e-9 false alarm rate.
BIAS_Z = math.sqrt(2.0 * math.log(2e9))

ELEMENTWISE_RULES: Mapping[tuple[str, str], str] = {
    ("gelu_forward", "out"): (
        "y = 0.5x(1+t), t = tanh(z), z = s(x + c x^3): z carries 7 roundings (cube 3, c's own, "
        "+x, *s, s's own) -> 7u|z| (1-t^2) in t; tg_tanhf is within 1 ulp of the rounded tanh "
        "(3u|t|); 1+t and the last multiply round once each: B = |0.5x| (3u|t| + 7u|z|(1-t^2) "
        "+ u|1+t|) + u|y|. When 1+t cancels (x << 0) the tanh error, not y, sets the floor"
    ),
    ("gelu_backward", "dinp"): (
        "local = 0.5(1+t) + 0.5x(1-t^2) s q, q = 1 + 3c x^2: dt as in gelu_forward; 1-t^2 "
        "cancels near |t| = 1 (u t^2 + 2|t| dt + u|1-t^2|); q rounds 6 times (6u|q|), the "
        "second term's products 5 more; + and *dout once each"
    ),
    ("crossentropy_backward", "dlogits"): (
        "(p - onehot) * dloss: one multiply (u|d|), plus the subtraction at the target (u|d|)"
    ),
    ("adamw_update", "m"): "b1 m + (1-b1) g: (1-b1) exact (Sterbenz), 2 products + 1 add",
    ("adamw_update", "v"): "b2 v + (1-b2) g g: 3 products + 1 add",
    ("adamw_update", "params"): (
        "the moments' bounds carried through the bias corrections (c rounded to float, 2u), "
        "sqrt (half the relative error, +u), + eps, the divide, + wd p, * lr, p - (each +u)"
    ),
}


SUBNORMAL_HALF_SPACING = 2.0**-150
# ---- WGSL arithmetic (GPU kernels, format webgpu; docs/tolerance.md "GPU (WGSL) kernels") ----
# The WGSL spec (section "Floating Point Accuracy") allows beyond IEEE 754: subnormal inputs and
# results may be flushed to zero; x/y is within 2.5 ULP; sqrt is inherited from
# 1/inverseSqrt (2 ULP, then a 2.5 ULP divide); exp is within 3 + 2|x| ULP; tanh is inherited
# from sinh/cosh, i.e. from (exp(z) -+ exp(-z)) / 2. One ULP of a float32 is at most 2u.
ARITHMETICS = ("ieee", "wgsl")
FLT_MIN = 2.0**-126  # a flushed subnormal loses at most this much, absolutely
WGSL_DIV_U = 5.0  # 2.5 ULP, in units of u
WGSL_SQRT_U = 9.0  # 2 ULP (inverseSqrt) + 2.5 ULP (the divide), in units of u
# roundings per element of each element-wise output (the subnormal floor counts each once)
ROUNDINGS: Mapping[tuple[str, str], int] = {
    ("gelu_forward", "out"): 10,
    ("gelu_backward", "dinp"): 20,
    ("crossentropy_backward", "dlogits"): 2,
    ("adamw_update", "m"): 3,
    ("adamw_update", "v"): 4,
    ("adamw_update", "params"): 16,
}
# The values stage allows HEADROOM x the first-order worst case: that worst case is attained
# (a rounding error is up to u|v| for v just above a power of two; measured 0.99 of it on the
# dense case), so a bound equal to it leaves no margin for second-order terms and breaks the
# policy that a clean build sits within 0.5x of every bound. The bias stage, not the values
# stage, is what catches a constant off by 1e-5 (its effect per element is ~1 ULP).
HEADROOM = 2.0


@dataclass(frozen=True)
class ConstantEstimate:
    """The bias stage's estimate of one constant's relative error, and its limit."""

    name: str
    estimate: float  # least-squares relative error of the constant that explains found - expected
    limit: float  # Hoeffding noise + the float32 rounding of the op's constants, projected

    @property
    def ratio(self) -> float:
        """|estimate| / limit: > 1 fails."""
        return abs(self.estimate) / self.limit


@dataclass(frozen=True)
class ElementwiseBound:
    """A per-element bound on ``|found - expected|``, and each constant's sensitivity."""

    bound: NDArray[np.float64]  # worst-case first-order float32 error of each element
    sensitivity: Mapping[str, NDArray[np.float64]]  # constant -> d out / d ln(constant), signed
    rounding: Mapping[str, float]  # constant -> relative error of its float32 value, signed
    reason: str

    def constants(self, error: NDArray[np.float64]) -> list[ConstantEstimate]:
        """Estimate each constant's relative error from the signed errors ``found - expected``.

        With ``a = sensitivity / bound`` and ``r = error / bound`` (each ``|r| <= 1``), the
        weighted least-squares estimate is ``sum(a r) / sum(a^2)``. Modelled as independent
        zero-mean roundings, Hoeffding gives ``P(|sum a r| > e) <= 2 exp(-e^2 / (2 sum a^2))``:
        ``BIAS_Z / sqrt(sum a^2)`` at a 1e-9 false alarm rate. The float32 roundings of the
        op's constants are a real systematic error; their projection onto this constant's
        direction is added to the limit.
        """
        b = np.broadcast_to(np.where(self.bound > 0, self.bound, np.inf), error.shape)
        r = error / b
        scaled = {k: np.broadcast_to(v, r.shape) / b for k, v in self.sensitivity.items()}
        out = []
        for name, a in scaled.items():
            norm = float(np.sum(a * a))
            if norm <= 0.0:
                continue
            est = float(np.sum(a * r)) / norm
            known = sum(
                abs(self.rounding.get(k2, 0.0) * float(np.sum(a * a2))) for k2, a2 in scaled.items()
            )
            out.append(ConstantEstimate(name, est, BIAS_Z / math.sqrt(norm) + known / norm))
        return out


def _f32_rounding(k: float) -> float:
    """Signed relative error of the float32 nearest to ``k`` (a kernel's compile-time constant)."""
    return (float(np.float32(k)) - k) / k


def _gelu_parts(
    x: NDArray[np.float64], arithmetic: str = "ieee"
) -> tuple[NDArray[np.float64], ...]:
    z = GELU_SCALE * (x + GELU_COEF * x**3)
    t = np.tanh(z)
    if arithmetic == "wgsl":
        # tanh = (e^z - e^-z) / (e^z + e^-z) with each exp within (3 + 2|z|) ULP (<= 2u each):
        # the numerator's error over the denominator is e_exp, the denominator's relative error
        # e_exp times |t|; + the subtract, the add (u each) and the divide (5u). The kernel
        # clamps z to +-10 (tanh is 1.0f there), so |z| <= 10 in the exp term.
        e_exp = (3 + 2 * np.minimum(np.abs(z), 10.0)) * 2 * U32
        tanh_err = e_exp * (1 + np.abs(t)) + (2 + WGSL_DIV_U) * U32 * np.abs(t)
    else:
        tanh_err = 3 * U32 * np.abs(t)  # tg_tanhf: within 1 ulp of the rounded tanh
    dt = tanh_err + 7 * U32 * np.abs(z) * (1 - t * t)
    return z, t, dt


def elementwise_bound(
    op: str,
    output: str,
    inputs: Mapping[str, object],
    expected: NDArray[np.float64],
    arithmetic: str = "ieee",
) -> ElementwiseBound:
    """The float32 error bound of each element of ``op.output`` (first order, worst case).

    ``inputs`` are the op's float32 inputs (and scalars); ``expected`` the float64 result.
    ``arithmetic`` is the kernel's: ``ieee`` (C kernels: correctly rounded operations, gradual
    underflow) or ``wgsl`` (GPU kernels: what the WGSL spec allows; see :data:`FLT_MIN`).
    Derivations: :data:`ELEMENTWISE_RULES` and docs/tolerance.md.
    """
    key = (op, output)
    if key not in ELEMENTWISE_RULES:
        raise KeyError(f"no element-wise bound for {op}.{output}; add one to ELEMENTWISE_RULES")
    if arithmetic not in ARITHMETICS:
        raise ValueError(f"unknown arithmetic {arithmetic!r}; known: {', '.join(ARITHMETICS)}")
    wgsl = arithmetic == "wgsl"
    u = U32

    def arr(name: str) -> NDArray[np.float64]:
        return np.asarray(inputs[name], dtype=np.float64)

    def num(name: str) -> float:
        return float(np.float32(float(inputs[name])))  # type: ignore[arg-type]

    y = np.abs(np.asarray(expected, dtype=np.float64))
    if op == "gelu_forward":
        x = arr("x")
        z, t, dt = _gelu_parts(x, arithmetic)
        half_x = np.abs(0.5 * x)
        bound = half_x * (dt + u * np.abs(1 + t)) + u * y
        sens = {
            "sqrt(2/pi)": 0.5 * x * (1 - t * t) * z,
            "0.044715": 0.5 * x * (1 - t * t) * GELU_SCALE * GELU_COEF * x**3,
            "0.5": np.asarray(expected, dtype=np.float64),
        }
    elif op == "gelu_backward":
        x, dout = arr("x"), np.abs(arr("dout"))
        z, t, dt = _gelu_parts(x, arithmetic)
        q = 1 + 3 * GELU_COEF * x * x
        a = 0.5 * (1 + t)
        sech2 = 1 - t * t
        b = 0.5 * x * sech2 * GELU_SCALE * q
        d_a = 0.5 * dt + u * np.abs(a)
        d_sech2 = u * t * t + 2 * np.abs(t) * dt + u * sech2
        d_b = np.abs(0.5 * x * GELU_SCALE * q) * d_sech2 + 11 * u * np.abs(b)
        bound = dout * (d_a + d_b + u * np.abs(a + b)) + u * y
        w = GELU_SCALE * GELU_COEF * x**3  # d z / d ln c
        d_q = 3 * GELU_COEF * x * x  # d q / d ln c
        g = arr("dout")
        sens = {
            "sqrt(2/pi)": g * (0.5 * sech2 * z + b * (1 - 2 * t * z)),
            "0.044715": g
            * (0.5 * sech2 * w + 0.5 * x * GELU_SCALE * sech2 * (d_q - 2 * t * w * q)),
            "0.5": np.asarray(expected, dtype=np.float64),
        }
    elif op == "crossentropy_backward":
        probs = arr("probs")
        target = np.zeros(probs.shape, dtype=bool)
        target[np.arange(probs.shape[0]), np.asarray(inputs["targets"])] = True
        bound = u * y * np.where(target, 2.0, 1.0)
        sens = {"1": np.where(target, -float(inputs["dloss"]), 0.0)}  # type: ignore[arg-type]
    else:  # adamw_update
        p, g, m, v = arr("p"), arr("g"), arr("m"), arr("v")
        lr, b1, b2, eps, wd = (num(k) for k in ("lr", "beta1", "beta2", "eps", "wd"))
        t_ = int(inputs["t"])  # type: ignore[call-overload]
        m1 = b1 * m + (1 - b1) * g
        v1 = b2 * v + (1 - b2) * g * g
        d_m = u * (np.abs(b1 * m) + np.abs((1 - b1) * g)) + u * np.abs(m1)
        d_v = u * np.abs(b2 * v) + 2 * u * (1 - b2) * g * g + u * np.abs(v1)
        c1, c2 = 1 / (1 - b1**t_), 1 / (1 - b2**t_)
        mh, vh = m1 * c1, v1 * c2
        if wgsl:
            # adamw_update.wgsl: beta^t as t float32 products (t u relative), 1 - beta^t (u),
            # then a WGSL divide (5u): the product's error grows by beta^t / (1 - beta^t)
            d_c1 = t_ * u * b1**t_ * c1 + u + WGSL_DIV_U * u
            d_c2 = t_ * u * b2**t_ * c2 + u + WGSL_DIV_U * u
            d_mh, d_vh = c1 * d_m + d_c1 * np.abs(mh), c2 * d_v + d_c2 * vh
        else:
            d_mh = c1 * d_m + 2 * u * np.abs(mh)
            d_vh = c2 * d_v + 2 * u * vh
        sqrt_u, div_u = (WGSL_SQRT_U * u, WGSL_DIV_U * u) if wgsl else (u, u)
        sq = np.sqrt(vh)
        with np.errstate(divide="ignore", invalid="ignore"):
            d_sq = np.where(sq > 0, d_vh / (2 * np.where(sq > 0, sq, 1.0)), np.sqrt(d_vh))
        d_sq = d_sq + sqrt_u * sq
        den = sq + eps
        r = mh / den
        d_r = d_mh / den + np.abs(r) * (d_sq + u * den) / den + div_u * np.abs(r)
        upd = r + wd * p
        d_upd = d_r + u * np.abs(wd * p) + u * np.abs(upd)
        d_p = lr * d_upd + u * np.abs(lr * upd) + u * np.abs(p - lr * upd)
        bound = {"m": d_m, "v": d_v, "params": d_p}[output]
        # the 1 of 1 - beta (the rest are float32 arguments): d/d ln 1 of (1 - b) x = x
        d_r1 = c1 * g / den - mh / den**2 * (c2 * g * g) / (2 * np.where(sq > 0, sq, np.inf))
        sens = {"1": {"m": g, "v": g * g, "params": -lr * d_r1}[output]}
    # every rounding may also land in the subnormal range, where its error is absolute (half
    # the spacing 2^-149) rather than relative: the per-op atol floor, one per rounding
    # WGSL may flush a subnormal input or result to zero: up to FLT_MIN lost per rounding (the
    # inputs of these ops enter with derivatives of order one, counted among the roundings)
    floor = ROUNDINGS[key] * (FLT_MIN if wgsl else SUBNORMAL_HALF_SPACING)
    reason = f"per-element float32 bound: {ELEMENTWISE_RULES[key]}"
    rounding = {"sqrt(2/pi)": _f32_rounding(GELU_SCALE), "0.044715": _f32_rounding(GELU_COEF)}
    return ElementwiseBound(np.asarray(bound, dtype=np.float64) + floor, sens, rounding, reason)


# ---- the WebGPU train step (docs/tolerance.md "The composed WGSL train step") ----------------


def wgsl_step_factor(exp_arg: float, tanh_arg: float) -> tuple[float, str]:
    """The factor by which WGSL's precision inflates any one op's error over IEEE float32, for
    the step whose exp arguments reach ``exp_arg`` and whose tanh arguments reach ``tanh_arg``
    in magnitude (both from the reference's own forward: see docs/tolerance.md).

    The float32 model bounds (:func:`model_tolerance`) count each op's roundings at one unit
    roundoff ``u``. WGSL keeps ``+ - *`` correctly rounded but allows ``x/y`` 2.5 ULP (5u),
    ``sqrt`` (inverseSqrt then a divide) 9u, ``exp(x)`` 3 + 2|x| ULP ((6 + 4|x|)u) and ``tanh``
    (from ``exp(+-z)``) twice exp's at ``|z|``. Every op's own error is at most the largest of
    these times its IEEE error, and errors compose linearly to first order, so the composed
    bound is the IEEE one times that largest factor.
    """
    exp_u = 6.0 + 4.0 * exp_arg
    tanh_u = 2.0 * (6.0 + 4.0 * tanh_arg)
    factor = max(WGSL_DIV_U, WGSL_SQRT_U, exp_u, tanh_u)
    why = (
        f"WGSL step: max(div {WGSL_DIV_U:g}u, sqrt {WGSL_SQRT_U:g}u, exp (6+4*{exp_arg:.3g})u, "
        f"tanh 2(6+4*{tanh_arg:.3g})u) over float32's 1u per op"
    )
    return factor, why


def adam_direction_max(steps: int, beta1: float, beta2: float) -> float:
    """The largest ``|m_hat / sqrt(v_hat)|`` AdamW can take in its first ``steps`` steps, any
    gradients: by Cauchy-Schwarz ``|sum w1_s g_s| <= sqrt(sum w1_s^2 / w2_s) sqrt(sum w2_s
    g_s^2)`` with the bias-corrected weights ``w1_s = (1-b1) b1^s / (1-b1^t)`` and ``w2_s``
    alike, at the worst ``t <= steps`` (1 at t = 1: the update is the gradient's sign)."""
    worst = 0.0
    for t in range(1, steps + 1):
        s = np.arange(t, dtype=np.float64)
        w1 = (1 - beta1) * beta1**s / (1 - beta1**t)
        w2 = (1 - beta2) * beta2**s / (1 - beta2**t)
        worst = max(worst, math.sqrt(float(np.sum(w1 * w1 / w2))))
    return worst


def step_state_tolerance(
    rates: list[float], factor: float, defaults: TrainingDefaults
) -> Tolerance:
    """The bound on a tensor after ``len(rates)`` composed GPU train steps from the reference's
    weights and batches: each step moves an element by ``lr_t u_t`` with ``|u_t| <=``
    :func:`adam_direction_max`, and a gradient element within its rounding of zero may take
    either sign on the GPU, so ``atol = 2 U sum(lr_t)``; ``rtol`` = the rounding of ``p`` per
    step, inflated by WGSL's ``factor``. It catches a tensor in the wrong place or never
    updated from its own gradient at a rate above ``2 U``; it is not an element-wise
    reproduction of the reference's moves (docs/webgpu.md, What is NOT done)."""
    k = len(rates)
    u_max = adam_direction_max(k, defaults.beta1, defaults.beta2)
    total = float(sum(rates))
    return Tolerance(
        k * FLOAT32_U * factor,
        2.0 * u_max * total,
        f"{k} GPU train steps: atol = 2 x max|m_hat/sqrt(v_hat)| ({u_max:.3g}) x sum lr "
        f"({total:.3g}) (a near-zero gradient may flip sign); rtol = {k} x u32 x {factor:.3g}",
    )
