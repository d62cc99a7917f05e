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


# exp(x) has condition number |x|: an absolute error of |x|*u in a score (the float32 rounding
# of a score of magnitude |x|) is a RELATIVE error of |x|*u in exp(x - max). With logits of
# +-80..100 that is up to 100x a unit roundoff, which no summation order can avoid.
_EXP = "logit"

# (op, output) -> rule. Dims: N rows, C channels, OC out channels, B batch, T time, NH heads,
# hs head size, V vocabulary. Outputs are named as in harness/checks/ops.py.
OP_RULES: Mapping[tuple[str, str], Rule] = {
    ("embedding_forward", "out"): Rule(exact=True, reason="one float32 add per element"),
    # a token repeated r times sums r rows; positions sum over the batch
    ("embedding_backward", "dwte"): Rule(("B", "T"), reason="scatter-add over repeated tokens"),
    ("embedding_backward", "dwpe"): Rule(("B",), reason="sum over the batch"),
    ("layernorm_forward", "out"): Rule(("C",), reason="mean and variance sum over C"),
    ("layernorm_forward", "mean"): Rule(("C",), reason="sum over C"),
    ("layernorm_forward", "rstd"): Rule(("C",), reason="variance sums over C"),
    ("layernorm_backward", "dinp"): Rule(("C",), reason="two means over C"),
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
    base = BASELINE["float32"]
    for d in (*rule.reduce, *([rule.conditioned_by] if rule.conditioned_by else [])):
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
        tol = tol.scaled(mag, f"= max|{rule.conditioned_by}|: exp has condition number |x|")
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


def _forward_path(L: int, C: int, T: int) -> int:
    return L * (C + T + 4 * C) + 2 * C


def model_tolerance(
    what: str,
    *,
    n_layer: int,
    n_embd: int,
    seq_len: int,
    batch: int,
    steps: int = 1,
    lr: float = 0.0,
) -> ModelRule:
    """Return the tolerance of model comparison ``what`` (a key of :data:`MODEL_RULES`)."""
    base = BASELINE["float32"]
    fwd = _forward_path(n_layer, n_embd, seq_len)
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
