"""Check kind ``ops``: every kernel op, forward and backward, against the float64 reference.

Inputs are float32 (what the kernels take); the reference gets the same values widened to
float64, so the only difference measured is the kernel's arithmetic. Backward ops get their
forward-pass inputs (LayerNorm's mean/rstd, attention's att, cross-entropy's probs) from the
float64 reference rounded to float32, identical for both sides.

Shape cases (``CASES``), each seeded: ``one`` (every dim 1), ``odd`` (odd sizes), ``simd_tail``
(sizes that are not a multiple of 4 or 8 lanes: wasm simd128 and AVX2 tails), ``random`` (dims
drawn from the seed), ``preset`` (the cell preset's own dims), and for the softmax ops ``large``
(logits and attention scores of +-80, where a softmax without max subtraction overflows),
for the LayerNorm ops ``ln_offset`` (rows of mean +-1000 and std 1, where a one-pass variance
cancels, and a near-constant row) and for the matmul ops ``gemv``, ``gemv_n2``, ``gemv_n3``
(1 to 3 rows with C, OC >= 16: tg_gemm's dot path for M < 4 rows) and ``blocks`` (C = 300, OC =
520: past a blocked GEMM's K and N cache blocks). ``Case.only`` names the ops a case is for.

:func:`op_parity` is the one helper (tinygrad's ``helper_test_op``): it runs one op on one case
through both sides and compares each output with :func:`harness.parity.compare` (shape, dtype,
non-finite, values). Tests are one-liners over it; the check turns it into rows.

The kernels side calls each op through the artifact's binding (:class:`harness.kernel.Kernels`):
an op the binding lacks is one ``skipped`` row ("not bound"), and a failing op's first failing
case is re-run under corrected bindings (:mod:`harness.checks.ops_diagnosis`) so the failure
names a wrong layout, argument order or dim where one explains it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from harness.bindings import CallBinding
from harness.bindings.canonical import OPS as CANONICAL
from harness.checks.base import CellContext
from harness.checks.ops_accumulate import overwritten_accumulators, probe_case
from harness.checks.ops_bounds import STAGES as BOUNDS_STAGES
from harness.checks.ops_bounds import guarded
from harness.checks.ops_diagnosis import GuessCrashed, diagnose
from harness.hosts.base import HostCrashed, HostError, HostTimeout, Instance, Trap
from harness.kernel import FixedMismatch, Kernels, NotBound
from harness.parity import ParityError, ParityResult, compare
from harness.rundir.rows import Row
from harness.tolerance import ELEMENTWISE_RULES, elementwise_bound, mean_rstd, op_tolerance
from reference import ops as ref_ops
from reference.defaults import DEFAULTS
from reference.ops import LAYERNORM_EPS
from reference.presets import ModelConfig

CHECK = "ops"
METRICS = ("max_abs_err", "max_rel_err", "max_ulp")
# Logits of +-80 (the figure). exp(80) = 5.5e34 still fits float32, so on its own +-80
# would not catch a softmax that skips the max subtraction; one row of each large case is
# shifted by +OVERFLOW_SHIFT, past log(FLT_MAX) = 88.7, where such a softmax gives inf/NaN.
LOGIT_MAGNITUDE = 80.0
OVERFLOW_SHIFT = 20.0
# The ``ln_offset`` case's rows: mean +-LN_OFFSET, std 1 (|mean| / std = 1000: a one-pass
# variance E[x^2] - E[x]^2 loses ~1e6 u = 0.06 of a variance of 1), and a last, near-constant
# row of mean LN_FLAT_MEAN and std LN_FLAT_STD: variance 1e-6 under eps = 1e-5, rstd ~ 300.
# Its mean is 3, not 1000: at rstd 300 a mean of 1000 makes |mean| rstd = 3e5, where the
# float32 rounding of any kernel's mean alone (ulp(1000)/2 = 3e-5) moves out by 0.01; at mean 3
# the one-pass variance still errs by a few u x 9 against var + eps = 1.1e-5 (its rstd there:
# 0.7 % to 4 % off, against rtol 1e-5).
LN_OFFSET = 1000.0
LN_FLAT_MEAN = 3.0
LN_FLAT_STD = 1e-3
# The ``ln_eps`` case's LayerNorm epsilon, where the binding passes eps (does not fix it): every
# other case runs at LAYERNORM_EPS = 1e-5, so a kernel that ignores its eps argument and builds
# in 1e-5 would pass them all. 2^-7 = 0.0078 is float32-exact (the reference sees the number the
# kernel receives). On standard-normal rows (variance ~1) it moves rstd by eps/(2 var) ~ 0.4 %
# from 1e-5's, far outside the reduction bound; a correct float32 kernel's error does not depend
# on eps (it adds to var, of order 1). Measured on lib2 (which takes eps), seeds 0-2: correct,
# every output <= 0.005 of its bound, as on the other cases; ignoring eps (1e-5 passed), out
# 255-441x and rstd 145-343x its bound; a backward that recomputes rstd at 1e-5 instead of taking
# the forward's, dinp 187-321x and dweight 643-975x (tests/checks/test_checks_ops_eps.py).
LN_EPS_WIDE = 2.0**-7

Arrays = dict[str, Any]


@dataclass(frozen=True)
class Case:
    """One shape case: dims by letter, and the magnitude of softmax inputs."""

    name: str
    dims: Mapping[str, int]
    logit: float = 0.0  # 0: standard-normal inputs; else scores/logits span +-logit
    dense: bool = False  # the element-wise ops' 65,536-element case (their bias stage's N)
    # LayerNorm rows of mean +-offset and std 1, the last row near-constant (_make_ln)
    offset: float = 0.0
    only: tuple[str, ...] = ()  # the ops that run the case (empty: every op)
    # LayerNorm's epsilon (the reference's, and the kernel's where the binding passes it); a
    # binding that fixes eps replaces it (library_case)
    eps: float = LAYERNORM_EPS

    def describe(self) -> str:
        """``odd(B=3,T=5,...)`` for a row's detail."""
        dims = ",".join(f"{k}={v}" for k, v in self.dims.items())
        extra = f",logits=+-{self.logit:g}" if self.logit else ""
        extra += f",mean=+-{self.offset:g}" if self.offset else ""
        extra += f",eps={self.eps:g}" if self.eps != LAYERNORM_EPS else ""
        return f"{self.name}({dims}{extra})"

    def applies_to(self, op: str) -> bool:
        """Whether the ops check runs ``op`` on this case (``large``, ``dense`` and ``only``)."""
        if self.only and op not in self.only:
            return False
        if self.logit and not SPECS[op].softmax:
            return False
        return not self.dense or all((op, o) in ELEMENTWISE_RULES for o in SPECS[op].outputs)


def _dims(B: int, T: int, NH: int, hs: int, N: int, OC: int, V: int) -> dict[str, int]:
    return {"B": B, "T": T, "NH": NH, "hs": hs, "C": NH * hs, "N": N, "OC": OC, "V": V}


def cases(preset: ModelConfig, seed: int, include_large: bool = True) -> list[Case]:
    """Return the shape cases for a cell: fixed edge cases, one seeded random case, the preset."""
    rng = np.random.default_rng((seed, 7))

    def r(lo: int, hi: int) -> int:
        return int(rng.integers(lo, hi + 1))

    out = [
        Case("one", _dims(B=1, T=1, NH=1, hs=1, N=1, OC=1, V=1)),
        Case("odd", _dims(B=3, T=5, NH=3, hs=5, N=7, OC=9, V=11)),
        Case("simd_tail", _dims(B=2, T=17, NH=3, hs=7, N=13, OC=37, V=67)),
        Case(
            "random",
            _dims(
                B=r(1, 4), T=r(1, 33), NH=r(1, 4), hs=r(1, 17), N=r(1, 50), OC=r(1, 70), V=r(1, 130)
            ),
        ),
        Case(
            "preset",
            _dims(
                B=2,
                T=min(preset.block_size, 64),
                NH=preset.n_head,
                hs=preset.head_size,
                N=min(preset.block_size, 64),
                OC=4 * preset.n_embd,
                V=preset.vocab_size,
            ),
        ),
    ]
    # element-wise ops only: enough elements that the mean signed error (the bias stage of
    # harness.parity.compare) resolves a constant off by 1e-5
    out.append(Case("dense", _dims(B=1, T=1, NH=1, hs=256, N=256, OC=1, V=256), dense=True))
    if include_large:
        out.append(Case("large", _dims(B=2, T=16, NH=2, hs=8, N=9, OC=5, V=128), LOGIT_MAGNITUDE))
    # LayerNorm only: rows of mean +-1000 and std 1, where a one-pass E[x^2] - E[x]^2 variance
    # cancels catastrophically (TG_BUG_LN_ONEPASS), and a near-constant row (rstd ~ 300)
    layernorms = ("layernorm_forward", "layernorm_backward")
    ln_dims = _dims(B=1, T=4, NH=3, hs=21, N=4, OC=1, V=1)
    out.append(Case("ln_offset", ln_dims, offset=LN_OFFSET, only=layernorms))
    # LayerNorm only, where the binding passes eps: another eps than every other case's, so a
    # kernel that ignores its eps argument fails (LN_EPS_WIDE); skipped where eps is fixed
    out.append(Case("ln_eps", _dims(B=2, T=3, NH=3, hs=7, N=6, OC=1, V=1), eps=LN_EPS_WIDE,
                    only=layernorms))  # fmt: skip
    # matmul only: 1 to 3 rows against C, OC >= 16, multiples of 16 and not: tg_gemm's dot path
    # for M < 4 rows (generation's one-token matmuls), which no other case runs with C >= 16
    matmuls = ("matmul_forward", "matmul_backward")
    out += [
        Case("gemv", _dims(B=1, T=1, NH=4, hs=16, N=1, OC=128, V=1), only=matmuls),
        Case("gemv_n2", _dims(B=1, T=2, NH=3, hs=16, N=2, OC=40, V=1), only=matmuls),
        Case("gemv_n3", _dims(B=1, T=3, NH=5, hs=7, N=3, OC=37, V=1), only=matmuls),
        # past a blocked GEMM's cache blocks in every dim it blocks (K = C = 300 and N * OC
        # against OC's 512: artifacts/src/tg_matmul.c's TG_KC 256 and TG_NC 512, common
        # choices): a block's offset dropped from a packing shows only past them, and no
        # preset's matmul has an output wider than 4C = 256 (TG_BUG_GEMM_NC_OFFSET)
        Case("blocks", _dims(B=1, T=37, NH=4, hs=75, N=37, OC=520, V=1), only=matmuls),
    ]
    return out


# ---- op specs ------------------------------------------------------------------------------


MakeFn = Callable[[np.random.Generator, Case], Arrays]
CallFn = Callable[[Any, Arrays], Any]


@dataclass(frozen=True)
class OpSpec:
    """How to make one op's inputs and call it on an engine (``reference.ops`` or Kernels)."""

    name: str
    outputs: tuple[str, ...]  # names of the returned values, in order
    make: MakeFn
    call: CallFn
    softmax: bool = False  # also gets the ``large`` (+-80 logits) case
    extra_dims: Callable[[Arrays, Case], Mapping[str, float]] = field(
        default=lambda _inputs, _case: {}
    )
    # the inputs without the op's optional arguments (a bias), for a library whose binding
    # omits them: both sides then compute the op without them, on every case. (Skipping the
    # biased cases instead would leave such an op its `odd` case alone.)
    unbiased: Callable[[Arrays], Arrays] | None = None

    def run(self, engine: Any, inputs: Arrays) -> Arrays:
        """Call the op on ``engine`` and name its outputs; a None output (no dbias) is dropped."""
        got = self.call(engine, inputs)
        values = got if isinstance(got, tuple) else (got,)
        if len(values) != len(self.outputs):
            raise ValueError(f"{self.name} returned {len(values)} values, expected {self.outputs}")
        return {n: v for n, v in zip(self.outputs, values, strict=True) if v is not None}


def _f32(rng: np.random.Generator, *shape: int, scale: float = 1.0) -> NDArray[np.float32]:
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def _ids(rng: np.random.Generator, upper: int, *shape: int) -> NDArray[np.int32]:
    return rng.integers(0, upper, size=shape).astype(np.int32)


def _wide(a: Any) -> Any:
    """float32 input -> float64 for the reference (ints and scalars unchanged)."""
    if isinstance(a, np.ndarray) and a.dtype == np.float32:
        return a.astype(np.float64)
    return a


def _wide_all(inputs: Arrays) -> Arrays:
    """Every input as the reference takes it (:func:`_wide`)."""
    return {k: _wide(v) for k, v in inputs.items()}


def _nc(rng: np.random.Generator, c: Case, scale: float = 1.0) -> NDArray[np.float32]:
    return _f32(rng, c.dims["N"], c.dims["C"], scale=scale)


def _make_embedding(rng: np.random.Generator, c: Case) -> Arrays:
    B, T, C, V = c.dims["B"], c.dims["T"], c.dims["C"], c.dims["V"]
    return {"idx": _ids(rng, V, B, T), "wte": _f32(rng, V, C), "wpe": _f32(rng, T + 2, C)}


def _make_embedding_backward(rng: np.random.Generator, c: Case) -> Arrays:
    B, T, C, V = c.dims["B"], c.dims["T"], c.dims["C"], c.dims["V"]
    # ids drawn from a quarter of V so they repeat and their rows must sum
    idx = _ids(rng, max(1, V // 4), B, T)
    return {"dout": _f32(rng, B, T, C), "idx": idx, "V": V, "maxT": T + 2}


def _make_ln(rng: np.random.Generator, c: Case) -> Arrays:
    C = c.dims["C"]
    w = (1.0 + 0.1 * rng.standard_normal(C)).astype(np.float32)
    x = _nc(rng, c)
    if c.offset:
        # rows of mean +-offset (alternating), std 1; the last row near-constant (LN_FLAT_*)
        sign = np.where(np.arange(c.dims["N"]) % 2 == 0, 1.0, -1.0)
        shifted = x.astype(np.float64) + c.offset * sign[:, None]
        shifted[-1] = LN_FLAT_MEAN + LN_FLAT_STD * x[-1].astype(np.float64)
        x = shifted.astype(np.float32)
    return {"x": x, "w": w, "b": _f32(rng, C, scale=0.1), "eps": c.eps}


def _mean_rstd(inputs: Arrays, c: Case) -> Mapping[str, float]:
    """The max over rows of |mean| x rstd x max|w|: how much the float32 rounding of a row's mean
    moves ``out`` (harness.tolerance's mean_rstd rule). 0 at C = 1, whose mean is x exactly."""
    return {"mean_rstd": mean_rstd(inputs["x"], inputs["w"])}


def _make_ln_backward(rng: np.random.Generator, c: Case) -> Arrays:
    a = _make_ln(rng, c)
    # the forward's mean and rstd at the case's eps (the library's, where its forward fixes it)
    _, mean, rstd = ref_ops.layernorm_forward(_wide(a["x"]), _wide(a["w"]), _wide(a["b"]), c.eps)
    return {
        "dout": _nc(rng, c),
        "x": a["x"],
        "w": a["w"],
        "mean": mean.astype(np.float32),
        "rstd": rstd.astype(np.float32),
    }


def _make_matmul(rng: np.random.Generator, c: Case) -> Arrays:
    N, C, OC = c.dims["N"], c.dims["C"], c.dims["OC"]
    # the `odd` case passes a NULL bias (the header says bias may be 0)
    b = None if c.name == "odd" else _f32(rng, OC)
    return {"x": _f32(rng, N, C), "W": _f32(rng, OC, C), "b": b}


def _make_matmul_backward(rng: np.random.Generator, c: Case) -> Arrays:
    N, C, OC = c.dims["N"], c.dims["C"], c.dims["OC"]
    return {
        "dout": _f32(rng, N, OC),
        "x": _f32(rng, N, C),
        "W": _f32(rng, OC, C),
        "has_bias": c.name != "odd",
    }


def _qkv(rng: np.random.Generator, c: Case) -> NDArray[np.float32]:
    B, T, C, hs = c.dims["B"], c.dims["T"], c.dims["C"], c.dims["hs"]
    qkv = _f32(rng, B, T, 3 * C)
    if not c.logit:
        return qkv
    # q, k entries of +-s with s^2 = top/sqrt(hs) give scores q.k/sqrt(hs) = top * (sum of hs
    # signs)/hs in [-top, top]; k_0 = q_0 makes each head's t=0 score exactly +top.
    top = c.logit + OVERFLOW_SHIFT
    s = math.sqrt(top / math.sqrt(hs))
    signs = np.sign(qkv[..., : 2 * C])
    signs[signs == 0] = 1
    signs[:, 0, C : 2 * C] = signs[:, 0, :C]
    qkv[..., : 2 * C] = signs * np.float32(s)
    return qkv


def _make_attention(rng: np.random.Generator, c: Case) -> Arrays:
    return {"qkv": _qkv(rng, c), "NH": c.dims["NH"]}


def _make_attention_backward(rng: np.random.Generator, c: Case) -> Arrays:
    qkv = _qkv(rng, c)
    _, att = ref_ops.attention_forward(_wide(qkv), c.dims["NH"])
    dout = _f32(rng, c.dims["B"], c.dims["T"], c.dims["C"])
    return {"dout": dout, "qkv": qkv, "att": att.astype(np.float32), "NH": c.dims["NH"]}


def _make_attention_flash_backward(rng: np.random.Generator, c: Case) -> Arrays:
    qkv = _qkv(rng, c)
    out, lse = ref_ops.attention_flash_forward(_wide(qkv), c.dims["NH"])
    dout = _f32(rng, c.dims["B"], c.dims["T"], c.dims["C"])
    return {"dout": dout, "qkv": qkv, "out": out.astype(np.float32),
            "lse": lse.astype(np.float32), "NH": c.dims["NH"]}  # fmt: skip


def _make_attention_block(rng: np.random.Generator, c: Case) -> Arrays:
    B, T, C = c.dims["B"], c.dims["T"], c.dims["C"]
    # weights of scale 1/sqrt(C) keep q, k, v (and so the scores) of order one
    params = {f"W{p}": _f32(rng, C, C, scale=1.0 / math.sqrt(C)) for p in "qkvo"}
    params |= {f"b{p}": _f32(rng, C, scale=0.1) for p in "qkvo"}
    return {"x": _f32(rng, B, T, C), **params, "NH": c.dims["NH"]}


def _block_forward(e: Any, a: Arrays) -> Any:
    w = [a[f"{t}{p}"] for p in "qkvo" for t in "Wb"]  # Wq, bq, ..., Wo, bo
    return e.attention_block_forward(a["x"], *w, a["NH"])


def _make_attention_block_backward(rng: np.random.Generator, c: Case) -> Arrays:
    a = _make_attention_block(rng, c)
    # the forward's cache from the float64 reference, rounded to float32 for both sides
    _, q, k, v, att = _block_forward(ref_ops, {n: _wide(x) for n, x in a.items()})
    cache = {n: x.astype(np.float32) for n, x in zip("qkv", (q, k, v), strict=True)}
    weights = {f"W{p}": a[f"W{p}"] for p in "qkvo"}
    dout = _f32(rng, c.dims["B"], c.dims["T"], c.dims["C"])
    return {"dout": dout, "x": a["x"], **weights, **cache, "att": att.astype(np.float32),
            "NH": c.dims["NH"]}  # fmt: skip


def _block_dims(inputs: Arrays, c: Case) -> Mapping[str, float]:
    """The block's max |score| (exp conditioning) and 3C (dx sums three projections)."""
    C = c.dims["C"]
    x = np.asarray(inputs["x"], np.float64)
    q, k = (ref_ops.matmul_forward(x, _wide(inputs[f"W{p}"]), _wide(inputs[f"b{p}"])) for p in "qk")
    return {"logit": _max_score(q, k, c.dims["NH"]), "3C": 3 * C}


def _logits(rng: np.random.Generator, c: Case) -> NDArray[np.float32]:
    N, V = c.dims["N"], c.dims["V"]
    if not c.logit:
        return _f32(rng, N, V)
    logits = rng.uniform(-c.logit, c.logit, size=(N, V))
    logits[0] += OVERFLOW_SHIFT
    return logits.astype(np.float32)


def _make_crossentropy(rng: np.random.Generator, c: Case) -> Arrays:
    return {"logits": _logits(rng, c), "targets": _ids(rng, c.dims["V"], c.dims["N"])}


def _make_crossentropy_backward(rng: np.random.Generator, c: Case) -> Arrays:
    a = _make_crossentropy(rng, c)
    _, _, probs = ref_ops.crossentropy_forward(_wide(a["logits"]), a["targets"])
    return {
        "probs": probs.astype(np.float32),
        "targets": a["targets"],
        # float32-exact, as the kernel receives it: the reference must see the same number
        "dloss": float(np.float32(1.0 / c.dims["N"])),
    }


ADAMW_CONSTANTS = {
    "lr": DEFAULTS.learning_rate, "beta1": DEFAULTS.beta1, "beta2": DEFAULTS.beta2,
    "eps": DEFAULTS.eps, "wd": DEFAULTS.weight_decay,
}  # fmt: skip


def _make_adamw(rng: np.random.Generator, c: Case) -> Arrays:
    n = c.dims["N"] * c.dims["C"]
    return {
        "p": _f32(rng, n, scale=0.02),
        "g": _f32(rng, n, scale=1e-3),
        "m": _f32(rng, n, scale=1e-4),
        "v": np.abs(_f32(rng, n, scale=1e-6)),  # a second moment is never negative
        "t": int(rng.integers(1, 20)),
        # the reference defaults' AdamW constants, float32-exact as the kernel receives them (the
        # reference must see the same numbers); wd on, so the decay term is exercised
        **{k: float(np.float32(v)) for k, v in ADAMW_CONSTANTS.items()},
    }


def _max_score(q: NDArray[Any], k: NDArray[Any], NH: int) -> float:
    """The max |q.k|/sqrt(hs) over heads of q, k (B, T, C)."""
    B, T, C = q.shape
    hs = C // NH
    qh = q.reshape(B, T, NH, hs).transpose(0, 2, 1, 3)
    kh = k.reshape(B, T, NH, hs).transpose(0, 2, 1, 3)
    return float(np.abs(qh @ kh.transpose(0, 1, 3, 2)).max() / math.sqrt(hs))


def _score_magnitude(inputs: Arrays, c: Case) -> Mapping[str, float]:
    """The max |score| of an attention case, for the exp conditioning rule."""
    qkv = np.asarray(inputs["qkv"], dtype=np.float64)
    C = qkv.shape[2] // 3
    return {"logit": _max_score(qkv[..., :C], qkv[..., C : 2 * C], c.dims["NH"])}


def _logit_magnitude(inputs: Arrays, _c: Case) -> Mapping[str, float]:
    return {"logit": float(np.abs(inputs["logits"]).max(initial=0.0))}


SPECS: dict[str, OpSpec] = {
    s.name: s
    for s in (
        OpSpec(
            "embedding_forward",
            ("out",),
            _make_embedding,
            lambda e, a: e.embedding_forward(a["idx"], a["wte"], a["wpe"]),
        ),
        OpSpec(
            "embedding_backward",
            ("dwte", "dwpe"),
            _make_embedding_backward,
            lambda e, a: e.embedding_backward(a["dout"], a["idx"], a["V"], a["maxT"]),
        ),
        OpSpec(
            "layernorm_forward",
            ("out", "mean", "rstd"),
            _make_ln,
            lambda e, a: e.layernorm_forward(a["x"], a["w"], a["b"], a["eps"]),
            extra_dims=_mean_rstd,
        ),
        OpSpec(
            "layernorm_backward",
            ("dinp", "dweight", "dbias"),
            _make_ln_backward,
            lambda e, a: e.layernorm_backward(a["dout"], a["x"], a["w"], a["mean"], a["rstd"]),
            extra_dims=lambda a, _c: {"rstd": float(np.abs(a["rstd"]).max(initial=0.0))},
        ),
        OpSpec(
            "matmul_forward",
            ("out",),
            _make_matmul,
            lambda e, a: e.matmul_forward(a["x"], a["W"], a["b"]),
            unbiased=lambda a: {**a, "b": None},
        ),
        OpSpec(
            "matmul_backward",
            ("dinp", "dweight", "dbias"),
            _make_matmul_backward,
            lambda e, a: e.matmul_backward(a["dout"], a["x"], a["W"], a["has_bias"]),
            unbiased=lambda a: {**a, "has_bias": False},
        ),
        OpSpec(
            "attention_forward",
            ("out", "att"),
            _make_attention,
            lambda e, a: e.attention_forward(a["qkv"], a["NH"]),
            softmax=True,
            extra_dims=_score_magnitude,
        ),
        OpSpec(
            "attention_backward",
            ("dinp",),
            _make_attention_backward,
            lambda e, a: e.attention_backward(a["dout"], a["qkv"], a["att"], a["NH"]),
            softmax=True,
        ),
        OpSpec(
            "attention_flash_forward",
            ("out", "lse"),
            _make_attention,
            lambda e, a: e.attention_flash_forward(a["qkv"], a["NH"]),
            softmax=True,
            extra_dims=_score_magnitude,
        ),
        OpSpec(
            "attention_flash_backward",
            ("dinp",),
            _make_attention_flash_backward,
            lambda e, a: e.attention_flash_backward(
                a["dout"], a["qkv"], a["out"], a["lse"], a["NH"]
            ),
            softmax=True,
            # att is recomputed through exp(score - lse): exp's conditioning applies here too
            extra_dims=_score_magnitude,
        ),
        # no ``large`` case: its scores come out of the projections (inputs of order one)
        OpSpec(
            "attention_block_forward",
            ("out", "q", "k", "v", "att"),
            _make_attention_block,
            _block_forward,
            extra_dims=_block_dims,
        ),
        OpSpec(
            "attention_block_backward",
            ("dinp", *(f"d{t}{p}" for p in "qkvo" for t in "Wb")),
            _make_attention_block_backward,
            lambda e, a: e.attention_block_backward(
                a["dout"],
                a["x"],
                a["Wq"],
                a["Wk"],
                a["Wv"],
                a["Wo"],
                a["q"],
                a["k"],
                a["v"],
                a["att"],
                a["NH"],
            ),
            extra_dims=lambda _a, c: {"3C": 3 * c.dims["C"]},
        ),
        OpSpec(
            "gelu_forward",
            ("out",),
            # scale 3 reaches the tails where tanh saturates
            lambda rng, c: {"x": _nc(rng, c, 3.0)},
            lambda e, a: e.gelu_forward(a["x"]),
        ),
        OpSpec(
            "gelu_backward",
            ("dinp",),
            # dense: dout > 0, so that a constant's (one-signed) error in the local derivative
            # does not cancel in the bias stage's mean over elements
            lambda rng, c: {
                "dout": np.abs(_nc(rng, c)) if c.dense else _nc(rng, c),
                "x": _nc(rng, c, 3.0),
            },
            lambda e, a: e.gelu_backward(a["dout"], a["x"]),
        ),
        OpSpec(
            "residual_forward",
            ("out",),
            lambda rng, c: {"a": _nc(rng, c), "b": _nc(rng, c)},
            lambda e, a: e.residual_forward(a["a"], a["b"]),
        ),
        OpSpec(
            "residual_backward",
            ("da", "db"),
            lambda rng, c: {"dout": _nc(rng, c)},
            lambda e, a: e.residual_backward(a["dout"]),
        ),
        OpSpec(
            "crossentropy_forward",
            ("loss", "losses", "probs"),
            _make_crossentropy,
            lambda e, a: e.crossentropy_forward(a["logits"], a["targets"]),
            softmax=True,
            extra_dims=_logit_magnitude,
        ),
        OpSpec(
            "crossentropy_backward",
            ("dlogits",),
            _make_crossentropy_backward,
            lambda e, a: e.crossentropy_backward(a["probs"], a["targets"], a["dloss"]),
            softmax=True,
        ),
        OpSpec(
            "adamw_update",
            ("params", "m", "v"),
            _make_adamw,
            lambda e, a: e.adamw_update(
                a["p"],
                a["g"],
                a["m"],
                a["v"],
                a["lr"],
                a["beta1"],
                a["beta2"],
                a["eps"],
                a["wd"],
                a["t"],
            ),
        ),
    )
}
OPS: tuple[str, ...] = tuple(SPECS)


# ---- the helper ----------------------------------------------------------------------------


def _as_output(value: Any, dtype: type[np.floating[Any]]) -> NDArray[Any]:
    """Scalars (the mean loss) become 0-d arrays of the side's dtype."""
    if isinstance(value, np.ndarray):
        return value
    return np.asarray(value, dtype=dtype)


@dataclass(frozen=True)
class Prepared:
    """One op's case, drawn and computed once: the inputs, the float64 reference's outputs and
    the dims the tolerances read. A diagnosis compares every guess's outputs against it."""

    op: str
    inputs: Arrays
    expected: Arrays
    dims: Mapping[str, float]


# An op's scalar inputs whose key is not the canonical argument's name (AdamW's ``wd``).
SCALAR_KEYS: Mapping[str, Mapping[str, str]] = {"adamw_update": {"weight_decay": "wd"}}
LAYERNORMS = ("layernorm_forward", "layernorm_backward")


def library_eps(kernels: Kernels) -> float | None:
    """The LayerNorm eps the library builds in (its ``layernorm_forward`` binding fixes it), or
    None where eps is an argument. layernorm_backward takes no eps, but its mean and rstd are
    the forward's, so they are computed at the forward's eps."""
    eps = kernels.fixed_scalar("layernorm_forward", "eps", math.nan)
    return None if math.isnan(eps) else eps


def library_case(kernels: Kernels, op: str, case: Case) -> Case | None:
    """``case`` as the ops check runs ``op`` on it for this library: at the eps its binding
    fixes (the reference must use the library's built-in value), or None for a case there to
    exercise the eps argument (``ln_eps``) when the library has none to exercise."""
    fixed = library_eps(kernels) if op in LAYERNORMS else None
    if fixed is None or fixed == case.eps:
        return case
    return None if case.eps != LAYERNORM_EPS else replace(case, eps=fixed)


def fixed_note(kernels: Kernels, op: str) -> str:
    """The scalars the binding builds into ``op``'s export, which the reference uses (a row's
    detail says so): "" when none."""
    try:
        call = kernels.bound(op)
    except NotBound:
        return ""
    fixed = {a: v for a, v in call.fixed.items() if CANONICAL[op].args[a].role == "scalar"}
    where = f"{call.export}, line {call.line}"
    if op == "layernorm_backward" and (eps := library_eps(kernels)) is not None:
        fixed["eps"], where = eps, "layernorm_forward's, for its mean and rstd"
    if not fixed:
        return ""
    values = ", ".join(f"{a} = {v:g}" for a, v in fixed.items())
    return f"the reference uses the binding's fixed {values} ({where})"


def _fixed_inputs(op: str, call: CallBinding, inputs: Arrays) -> Arrays:
    """``inputs`` with each scalar the binding fixes at its fixed value (an int where the input
    is one: AdamW's ``t``): the reference computes with the library's built-in value, and the
    kernel client is asked for exactly the value it fixes."""
    out = dict(inputs)
    for arg, value in call.fixed.items():
        key = SCALAR_KEYS.get(op, {}).get(arg, arg)
        if CANONICAL[op].args[arg].role == "scalar" and key in out:
            out[key] = int(value) if isinstance(out[key], int) else value
    return out


def prepare(kernels: Kernels, op: str, case: Case, seed: int = 0) -> Prepared:
    """Draw ``op``'s inputs for ``case`` from ``default_rng((seed, case))`` and run the float64
    reference on them. An op the artifact's binding lacks raises :class:`NotBound`; one whose
    export omits an optional argument (a matmul without bias) gets inputs without it. A scalar
    the binding fixes (LayerNorm's eps, an AdamW constant) takes its fixed value on both sides
    (:func:`library_case`; a case the fixed eps leaves nothing to run is a ValueError)."""
    spec = SPECS[op]
    call = kernels.bound(op)
    rng = np.random.default_rng((seed, sum(map(ord, f"{op}/{case.name}"))))
    run_case = library_case(kernels, op, case)
    if run_case is None:
        raise ValueError(f"{op}: the binding fixes eps; case {case.describe()} is for its argument")
    inputs = _fixed_inputs(op, call, spec.make(rng, run_case))
    optional = [a for a, arg in CANONICAL[op].args.items() if arg.optional]
    if spec.unbiased is not None and any(a not in call.args for a in optional):
        inputs = spec.unbiased(inputs)
    expected = spec.run(ref_ops, _wide_all(inputs))
    dims: dict[str, float] = {**case.dims, **spec.extra_dims(inputs, case)}
    return Prepared(op, inputs, expected, dims)


def kernel_parity(kernels: Kernels, prepared: Prepared) -> list[ParityResult]:
    """Run the op through ``kernels`` on the prepared inputs; compare each output with the
    prepared reference (the kernel client leaves its inputs untouched, so they can be reused)."""
    return compare_outputs(kernels, prepared, SPECS[prepared.op].run(kernels, prepared.inputs))


def compare_outputs(
    kernels: Kernels, prepared: Prepared, found: Mapping[str, Any]
) -> list[ParityResult]:
    """Compare outputs ``found`` of the op (run through ``kernels``) with the prepared
    reference, each by its tolerance: :func:`kernel_parity` without the call."""
    op, inputs, expected = prepared.op, prepared.inputs, prepared.expected
    # the kernels' float arithmetic (IEEE C, or WGSL on a GPU): the element-wise bounds differ
    arithmetic = kernels.instance.artifact.fmt.arithmetic
    results = []
    for name in [*expected, *(n for n in found if n not in expected)]:
        subject = f"{op}.{name}"
        tol = op_tolerance(op, name, prepared.dims)
        if name not in found or name not in expected:
            side = "kernel" if name not in found else "reference"
            msg = f"{subject}: shape stage: the {side} has no output {name!r}"
            results.append(ParityResult(subject, "shape", msg, tol))
            continue
        f = _as_output(found[name], np.float32)
        e = _as_output(expected[name], np.float64)
        per_element = (
            elementwise_bound(op, name, inputs, e, arithmetic) if tol.per_element else None
        )
        results.append(compare(subject, f, e, tol, bound=per_element))
    return results


def op_parity(kernels: Kernels, op: str, case: Case, seed: int = 0) -> list[ParityResult]:
    """Run ``op`` on ``case`` through the kernels and the float64 reference; compare each output.

    Inputs are drawn from ``default_rng((seed, case))`` (:func:`prepare`). Every output is
    compared in turn (shape, dtype, non-finite, values) with its tolerance from
    :func:`harness.tolerance.op_tolerance`.
    An output the reference has and the kernel lacks (or the reverse) is a shape-stage failure.
    An op the artifact's binding lacks raises :class:`NotBound`; one whose export omits an
    optional argument (a matmul without bias) runs without it on both sides.
    """
    return kernel_parity(kernels, prepare(kernels, op, case, seed))


def diagnose_op(kernels: Kernels, prepared: Prepared, passed: Sequence[Prepared] = ()) -> str:
    """Why the op of ``prepared`` fails parity, if a corrected binding explains it; else "".

    :func:`ops_diagnosis.diagnose` tries its hypotheses on the same inputs, against the float64
    reference ``prepared`` computed once for all of them (an explanation: every output passes).
    It sizes them from the op's last call, so ``kernels`` must just have run it on them.
    ``passed``: cases of the op that passed with the binding as declared. A guess must pass
    them too: a binding mistake fails them as well, so a guess that only fixes the failing case
    (N+1 for a kernel wrong at odd N) would blame a correct binding for a kernel bug.
    """

    def passes(k: Kernels) -> bool:
        return all(all(r.ok for r in kernel_parity(k, p)) for p in (prepared, *passed))

    return eps_cause(kernels, prepared) or diagnose(
        kernels, prepared.op, passes, passed_any=bool(passed)
    )


def eps_cause(kernels: Kernels, prepared: Prepared) -> str:
    """Why a failing layernorm_forward case fails, when the library computes with another eps
    than the reference's (the binding fixes another, or the kernel ignores its eps argument):
    "" when that does not explain it. The library's eps is read off its rstd at the row of
    least variance (1/rstd^2 - var: exact at C = 1, whose variance is 0), rounded to two
    digits, and must make every output pass against the reference recomputed with it."""
    if prepared.op != "layernorm_forward":
        return ""
    x = np.asarray(prepared.inputs["x"], np.float64)
    found = SPECS[prepared.op].run(kernels, prepared.inputs)
    var = x.var(axis=-1).reshape(-1)
    rstd = np.asarray(found["rstd"], np.float64).reshape(-1)
    row = int(np.argmin(var))
    if not (np.isfinite(rstd[row]) and rstd[row] > 0):
        return ""
    estimate = float(f"{1.0 / rstd[row] ** 2 - var[row]:.2g}")
    eps = float(prepared.inputs["eps"])
    if not estimate > 0 or math.isclose(estimate, eps, rel_tol=0.01):
        return ""
    inputs = {**prepared.inputs, "eps": estimate}
    again = Prepared(prepared.op, inputs, SPECS[prepared.op].run(ref_ops, _wide_all(inputs)),
                     prepared.dims)  # fmt: skip
    if not all(r.ok for r in compare_outputs(kernels, again, found)):
        return ""
    call = kernels.bound(prepared.op)
    if "eps" in call.fixed:
        return (
            f"it passes against the reference at eps = {estimate:g}: the library computes with "
            f"eps {estimate:g}, not the {eps:g} its binding fixes ({call.export}, line "
            f"{call.line}); one of the two is wrong"
        )
    return (
        f"it passes against the reference at eps = {estimate:g}: the library computes with eps "
        f"{estimate:g} although {call.export} is passed eps = {eps:g}; it likely ignores its eps "
        f"argument (a built-in constant)"
    )


def with_cause(subject: str, cause: str, message: str) -> str:
    """A failure's text with the diagnosis first: ``<subject> fails parity; <cause>. <message>``."""
    return f"{subject} fails parity; {cause}. {message}" if cause else message


def assert_op_parity(kernels: Kernels, op: str, case: Case, seed: int = 0) -> None:
    """Raise :class:`ParityError` naming the op, output, case and stage of the first failure,
    and the wrong-binding diagnosis when one explains it."""
    prepared = prepare(kernels, op, case, seed)
    for r in kernel_parity(kernels, prepared):
        if not r.ok:
            try:
                cause = diagnose_op(kernels, prepared)
            except GuessCrashed as exc:
                cause = str(exc)
            message = with_cause(r.name, cause, f"[{case.describe()}] {r.message}")
            raise ParityError(
                ParityResult(r.name, r.stage, message, r.tolerance,
                             r.max_abs_err, r.max_rel_err, r.max_ulp, r.worst_ratio,
                             r.worst_index, r.found_at_worst, r.expected_at_worst)
            )  # fmt: skip


# ---- the check -----------------------------------------------------------------------------

_OPTIONS = {"seed", "ops", "large"}


def validate_op_options(
    kind: str, options: Mapping[str, Any], allowed: Collection[str], ops: Collection[str]
) -> None:
    """Raise ValueError naming the bad field of a ``[check.KIND]`` table of a check that runs
    ops: only ``allowed`` keys, a non-negative ``seed``, ``ops`` a list of names of ``ops``."""
    extra = sorted(set(options) - set(allowed))
    if extra:
        raise ValueError(f"check.{kind}: unknown option(s) {extra}; allowed: {sorted(allowed)}")
    seed = options.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"check.{kind}.seed must be a non-negative int, got {seed!r}")
    chosen = options.get("ops", list(ops))
    if not isinstance(chosen, list) or not all(isinstance(o, str) for o in chosen):
        raise ValueError(f"check.{kind}.ops must be a list of op names")
    unknown = sorted(set(chosen) - set(ops))
    if unknown:
        raise ValueError(f"check.{kind}.ops: unknown op(s) {unknown}; known: {', '.join(ops)}")


def validate_options(options: Mapping[str, Any]) -> None:
    """Raise ValueError naming the bad field of an ``[check.ops]`` table."""
    validate_op_options(CHECK, options, _OPTIONS, OPS)
    if not isinstance(options.get("large", True), bool):
        raise ValueError("check.ops.large must be true or false")


@dataclass
class Worst:
    """The aggregate of one (op, output) over cases: max metrics, first failure, worst pass."""

    metrics: dict[str, float] = field(default_factory=lambda: dict.fromkeys(METRICS, 0.0))
    failure: str = ""
    stage: str = "pass"
    worst_ratio: float = -1.0
    worst_detail: str = ""
    n_cases: int = 0
    # what the row's detail adds (the scalars the binding fixes, cases not run at a fixed dim)
    note: str = ""

    def add(self, case: Case, r: ParityResult) -> None:
        self.n_cases += 1
        for m in METRICS:
            v = float(getattr(r, m))
            if not math.isnan(v):
                self.metrics[m] = max(self.metrics[m], v)
        text = f"[{case.describe()}] {r.message}"
        if not r.ok and not self.failure:
            self.failure, self.stage = text, r.stage
        ratio = r.worst_ratio if not math.isnan(r.worst_ratio) else math.inf
        if ratio > self.worst_ratio:
            self.worst_ratio, self.worst_detail = ratio, text


# A check whose ops keep killing the host stops after this many lost instances: each costs a
# host restart (and a hang the whole call timeout), and a library that crashes this often is
# broken beyond what per-op rows add to.
MAX_LOST_INSTANCES = 3
# The passed cases of an op a diagnosis guess must also pass (the latest ones): enough to tell a
# binding mistake (which fails every case) from a kernel bug of some sizes, without re-running
# every case under every guess.
PASSED_CASES_CHECKED = 2


class OpsAbandoned(HostCrashed):
    """The ops check stopped before its remaining ops: the host kept crashing, or could not be
    reloaded. A HostCrashed, so the runner writes it as the check's error row and restarts the
    host for the next check."""


def run_cases(
    kernels: Kernels,
    ops: Sequence[str],
    case_list: Sequence[Case],
    seed: int,
    reload: Callable[[], Kernels] | None = None,
) -> Iterator[tuple[str, str, Worst | str | NotBound]]:
    """Run ``ops`` over ``case_list`` (each op on the cases that apply to it), diagnosing an
    op's first failing case: yield (op, output, aggregate) per output, (op, "", error text)
    when an op errors, or (op, "", NotBound) when the artifact's binding lacks it. The ops
    check and the memory64 check report from it.

    An op that crashes, hangs or traps the host (or whose diagnosis guess does) may leave the
    instance dead. With ``reload`` (restarts the host, returns kernels over a fresh instance of
    the same artifact) that op keeps its own row (an error naming the case and the cause, or
    the failure it was diagnosing) and the remaining ops run on the fresh instance; after
    :data:`MAX_LOST_INSTANCES` such ops, or when the reload fails, :class:`OpsAbandoned` is
    raised naming the bound ops not run (the unbound ones after it still get their skipped
    rows: they need no instance), and the last lost op's row says the check stops there.
    Without ``reload`` a crash or hang is raised after the op's rows (the runner restarts the
    host) and a trap is the op's error row, as the instance may still serve the next op.

    A scalar the binding fixes is the reference's too (:func:`prepare`); a case at another
    value of a dim the binding fixes is not run (the row's note says so), and an op none of
    whose cases fit yields (op, "", :class:`NoCaseFits`).
    """
    lost = 0  # ops that cost the instance
    # the case each op's accumulators are probed on (harness.checks.ops_accumulate): parity
    # zeroes them, so a kernel that overwrites one passes it
    probe = probe_case(case_list) if case_list else None
    # every parity call runs with guards around its buffers (harness.checks.ops_bounds): a
    # kernel writing out of bounds (or into an input) fails its own op, not a later one
    kernels, guard = guarded(kernels)
    for index, op in enumerate(ops):
        worst: dict[str, Worst] = {}
        error = ""
        cause: str | None = None  # the diagnosis of the op's first failing case
        crashed: HostCrashed | HostTimeout | None = None  # by a diagnosis guess
        dead = False  # the op's call (or a guess) may have taken the instance with it
        overwritten: dict[str, str] = {}  # "<arg>:accumulates" -> the probe's failure
        strayed: dict[str, str] = {}  # "<arg>:bounds" or ":input-written" -> the first finding
        overran = False  # a write reached a guard's far end: it may have damaged other memory
        passed: list[Prepared] = []  # the op's last cases that passed, which a guess must pass
        failing: Prepared | None = None  # the op's first failing case, diagnosed once all ran
        try:
            kernels.bound(op)
        except NotBound as exc:
            yield op, "", exc
            continue
        # the cases at another value of a dim the binding fixes, with the refusal
        unfit: list[tuple[str, FixedMismatch]] = []
        for listed in case_list:
            case = library_case(kernels, op, listed) if listed.applies_to(op) else None
            if case is None:
                continue
            try:
                prepared = prepare(kernels, op, case, seed)
                guard.take()  # what earlier calls (a diagnosis guess, a probe) left
                results = kernel_parity(kernels, prepared)
                found = [f for f in guard.take() if f.op == op]
                for f in found:
                    strayed.setdefault(f.subject, f"[{case.describe()}] {f.message}")
                if all(r.ok for r in results):
                    passed = [*passed[-(PASSED_CASES_CHECKED - 1) :], prepared]
                elif failing is None:
                    failing = prepared
                if case is probe:
                    overwritten = {
                        f"{f.arg}:accumulates": f"[{case.describe()}] {f.message}"
                        for f in overwritten_accumulators(kernels, prepared)
                    }
            except FixedMismatch as exc:
                # refused before any call: the library cannot take this case's size
                unfit.append((case.name, exc))
                continue
            except (HostCrashed, HostTimeout) as exc:
                if reload is None:
                    raise  # the instance is gone: the runner restarts the host
                error, dead = _call_error(case, kernels, exc), True
                break
            except HostError as exc:
                error = _call_error(case, kernels, exc)
                # a trap may leave the instance dead (a native trap kills its worker) or its
                # heap half-written: with a reload, the next op gets a fresh one
                dead = isinstance(exc, Trap) and reload is not None
                break
            for r in results:
                worst.setdefault(r.name.split(".", 1)[1], Worst()).add(case, r)
            if reload is not None and any(f.overran for f in found):
                dead = overran = True  # the next op gets a fresh instance, not a damaged heap
                break
        if failing is not None and not error and not dead:
            # after every case, so a guess must also pass the cases that passed, those after
            # the failing one included (a kernel wrong at N = 1 fails the first case)
            try:
                kernel_parity(kernels, failing)  # the guesses are sized from the op's last call
                cause = diagnose_op(kernels, failing, passed)
            except GuessCrashed as exc:  # keep the op's failure, then stop
                cause, crashed, dead = str(exc), exc.error, True
            except (HostCrashed, HostTimeout):
                if reload is None:
                    raise  # the instance is gone: the runner restarts the host
                dead = True  # the failure rows stand; the diagnosis is not given
            except HostError:
                pass  # the failing case trapped when run again: no diagnosis, the rows stand
        for output, text in strayed.items():  # also when a later case errs: it may be why
            yield op, output, Worst(failure=text, stage=output.rsplit(":", 1)[1], n_cases=1)
        # the ops after this one that would run (the unbound ones are only ever skipped rows)
        rest = [o for o in ops[index + 1 :] if _unbound(kernels, o) is None]
        lost_now = lost + (1 if dead and not overran else 0)
        abandon = dead and reload is not None and bool(rest) and lost_now >= MAX_LOST_INSTANCES
        if error:
            after = ""
            if abandon:
                after = f"; the check stops here ({lost_now} ops lost the instance)"
            elif dead and rest:
                after = "; the remaining ops run on a fresh instance"
            yield op, "", error + after
        elif unfit and not worst:
            yield op, "", NoCaseFits(op, unfit)
        else:
            note = "; ".join(filter(None, (fixed_note(kernels, op), _unfit_note(unfit))))
            for output, agg in worst.items():
                agg.note = note
                if agg.failure and cause and crashed is not None:
                    # a guess that crashed explains nothing: the failure itself leads
                    agg.failure = f"{agg.failure}; {cause}"
                elif agg.failure and cause:
                    agg.failure = with_cause(f"{op}.{output}", cause, agg.failure)
                yield op, output, agg
            for output, text in overwritten.items():
                yield op, output, Worst(failure=text, stage="accumulates", n_cases=1)
        if not dead:
            continue
        if reload is None:
            assert crashed is not None  # only a guess's crash marks the instance without one
            raise crashed  # the failure rows are out; the runner restarts the host
        lost = lost_now  # an overrun is no failure of the host: no step towards abandoning
        if abandon:
            # an op not bound needs no instance: its skipped row is written as ever, and the
            # count is of the ops that would have run
            for o in ops[index + 1 :]:
                if (gap := _unbound(kernels, o)) is not None:
                    yield o, "", gap
            raise OpsAbandoned(
                f"the host crashed, hung or trapped on {lost} ops (the last {op}); the check "
                f"stopped, {len(rest)} bound op(s) not run: {', '.join(rest)}"
            )
        try:
            # even after the last op: the runner's next check must not get the dead instance
            kernels, guard = guarded(reload())
        except Exception as exc:
            for o in ops[index + 1 :]:  # as above: the unbound ones keep their skipped rows
                if (gap := _unbound(kernels, o)) is not None:
                    yield o, "", gap
            not_run = f"{len(rest)} bound op(s) not run: {', '.join(rest)}" if rest else ""
            raise OpsAbandoned(
                f"reloading the artifact after {op} lost the instance failed "
                f"({type(exc).__name__}: {exc}); {not_run or 'no bound op left'}"
            ) from exc


class NoCaseFits(NotBound):
    """Every case of an op is at another value of a dim the binding fixes (``fixed = { C = 64
    }``): the library cannot be called on any of them, so the op is skipped, as one not bound
    is, with the reason."""

    def __init__(self, op: str, unfit: Sequence[tuple[str, FixedMismatch]]) -> None:
        """``unfit``: each case's name and its refusal."""
        LookupError.__init__(self, f"no case fits the binding's fixed dims: {_unfit(unfit)}")
        self.op = op


def _unfit(unfit: Sequence[tuple[str, FixedMismatch]]) -> str:
    """The cases a fixed dim refused, each with its size, then the refusals' reasons once:
    ``odd (N=105), simd_tail (N=273): the library fixes gelu_forward's N at 1 (...)``."""
    cases = ", ".join(f"{name} ({exc.arg}={exc.asked:g})" for name, exc in unfit)
    return f"{cases}: {'; '.join(dict.fromkeys(exc.fixes for _, exc in unfit))}"


def _unfit_note(unfit: Sequence[tuple[str, FixedMismatch]]) -> str:
    """A row's note on the cases not run because a dim the binding fixes differs ("" if none)."""
    return f"{len(unfit)} case(s) not run at a fixed dim: {_unfit(unfit)}" if unfit else ""


def _unbound(kernels: Kernels, op: str) -> NotBound | None:
    """The NotBound ``op`` raises (its skipped row), or None when the binding binds it."""
    try:
        kernels.bound(op)
    except NotBound as exc:
        return exc
    return None


def _call_error(case: Case, kernels: Kernels, exc: HostError) -> str:
    """An op's error row: the case, the error, and the export call as the library received it
    (the case's sizes are not its arguments: gelu's N is B*T*4C)."""
    call = f" (in {kernels.last_call})" if kernels.last_call else ""
    return f"[{case.describe()}] {type(exc).__name__}: {exc}{call}"


def _fresh_kernels(reload: Callable[[], Instance]) -> Kernels:
    """Kernels over the instance ``reload`` returns (a fresh one in a restarted host)."""
    return Kernels(reload())


def run(ctx: CellContext) -> Iterator[Row]:
    """Yield three metric rows per op output (max over cases) with the verdict, or an error row."""
    validate_options(ctx.options)
    seed = int(ctx.options.get("seed", 0))
    ops = list(ctx.options.get("ops", list(OPS)))
    case_list = cases(ctx.preset, seed, include_large=bool(ctx.options.get("large", True)))
    kernels = Kernels(ctx.instance)
    # a crashing op costs only its own row: the others run on a fresh instance (run_cases)
    reload = None if ctx.reload is None else functools.partial(_fresh_kernels, ctx.reload)
    for op, output, agg in run_cases(kernels, ops, case_list, seed, reload):
        if isinstance(agg, NoCaseFits):  # no case at the dims the binding fixes
            yield ctx.row(CHECK, op, "skipped", detail=f"{op}: {agg}")
            continue
        if isinstance(agg, NotBound):
            # a library binds the ops it has: one it lacks is no error of the cell
            yield ctx.row(CHECK, op, "skipped", detail=f"{op}: not bound: {agg}")
            continue
        if isinstance(agg, str):
            yield ctx.row(CHECK, op, "error", detail=f"{op}: {agg}")
            continue
        if agg.stage in ("accumulates", *BOUNDS_STAGES):  # a probe's verdict: no error metrics
            yield ctx.row(CHECK, f"{op}.{output}", "fail", detail=agg.failure)
            continue
        ok = not agg.failure
        detail = (
            agg.failure or f"ok over {agg.n_cases} cases; closest to tolerance: {agg.worst_detail}"
        )
        detail += f"; {agg.note}" if agg.note else ""
        for m in METRICS:
            yield ctx.row(
                CHECK,
                f"{op}.{output}",
                "pass" if ok else "fail",
                metric=m,
                value=agg.metrics[m],
                unit="ulp" if m == "max_ulp" else "",
                detail=detail,
            )
