"""Every op, forward and backward, on every bundled artifact vs ``reference.ops`` in float64.

Inputs are drawn in float64 and rounded through float32 once, so the kernel (float32) and the
reference (float64) see the same numbers; tolerances come from ``harness.tolerance``. Outputs
the policy calls exact are compared with the float32 reference instead, which performs the
same single rounding.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from harness.hosts.base import Instance
from harness.kernel import Kernels
from harness.parity import assert_parity
from harness.tolerance import OP_RULES, elementwise_bound, mean_rstd, op_tolerance
from reference import ops

Arrays = tuple[Any, ...]


def _r(rng: np.random.Generator, *shape: int, scale: float = 1.0) -> NDArray[np.float64]:
    """Normal float64 values that are exactly representable in float32."""
    return (rng.standard_normal(shape) * scale).astype(np.float32).astype(np.float64)


@dataclass(frozen=True)
class Case:
    """One op call: its inputs, dims for the tolerance rules, and the names of its outputs."""

    op: str
    label: str
    dims: dict[str, int]
    make: Callable[[np.random.Generator], Arrays]
    outputs: tuple[str, ...]


def _max_score(qkv: NDArray[np.float64], n_head: int) -> float:
    """Largest |q.k / sqrt(hs)| of an attention input: the exp conditioning of its softmax."""
    B, T, C3 = qkv.shape
    hs = C3 // 3 // n_head
    heads = qkv.reshape(B, T, 3, n_head, hs).transpose(2, 0, 3, 1, 4)  # (3, B, NH, T, hs)
    return float(np.abs(heads[0] @ heads[1].transpose(0, 1, 3, 2)).max() / np.sqrt(hs))


def _dims(case: Case, args: Arrays) -> dict[str, float]:
    """The case's dims plus ``logit``, the largest exp argument, where the op takes an exp, and
    LayerNorm backward's max ``rstd``."""
    dims: dict[str, float] = dict(case.dims)
    if case.op == "attention_forward":
        dims["logit"] = _max_score(args[0], args[1])
    elif case.op == "attention_backward":
        dims["logit"] = _max_score(args[1], args[3])
    elif case.op == "crossentropy_forward":
        dims["logit"] = float(np.abs(args[0]).max())
    elif case.op == "layernorm_forward":
        dims["mean_rstd"] = mean_rstd(args[0], args[1])  # the mean's rounding, times rstd w
    elif case.op == "layernorm_backward":
        dims["rstd"] = float(np.abs(args[4]).max())  # dx is rstd times a cancelling difference
    return dims


def _as32(a: object) -> object:
    return a.astype(np.float32) if isinstance(a, np.ndarray) and a.dtype == np.float64 else a


def _flatten(result: object) -> list[Any]:
    items = list(result) if isinstance(result, tuple) else [result]
    return [np.asarray(x) for x in items]


def _adamw_args(rng: np.random.Generator) -> Arrays:
    p, g = _r(rng, 33, 7), _r(rng, 33, 7, scale=0.1)
    m, v = _r(rng, 33, 7, scale=0.01), np.abs(_r(rng, 33, 7, scale=0.01))
    # float32-exact scalars: the kernel receives float32, the reference must see the same numbers
    lr, b1, b2, eps, wd = (float(np.float32(k)) for k in (1e-3, 0.9, 0.95, 1e-8, 0.1))
    return (p, g, m, v, lr, b1, b2, eps, wd, 3)


def _cases() -> list[Case]:
    B, T, C, NH, V = 2, 9, 24, 3, 37
    hs = C // NH
    N = B * T
    idx = np.random.default_rng(5).integers(0, V, (B, T))
    att_dims = {"B": B, "T": T, "C": C, "NH": NH, "hs": hs}
    mm = [("ragged", 37, 29, 41), ("tiny-rows", 2, 33, 17), ("multi-block", 70, 300, 530)]
    cases = [
        Case("embedding_forward", "", {"B": B, "T": T, "C": C},
             lambda r: (idx, _r(r, V, C), _r(r, 16, C)), ("out",)),
        Case("embedding_backward", "", {"B": B, "T": T, "C": C},
             lambda r: (_r(r, B, T, C), idx, V, 16), ("dwte", "dwpe")),
        Case("layernorm_forward", "", {"N": N, "C": C},
             lambda r: (_r(r, B, T, C, scale=3.0) + 2.0, _r(r, C), _r(r, C)),
             ("out", "mean", "rstd")),
        Case("layernorm_backward", "", {"N": N, "C": C},
             lambda r: _layernorm_backward_args(r, N, C), ("dinp", "dweight", "dbias")),
        Case("attention_forward", "", att_dims, lambda r: (_r(r, B, T, 3 * C), NH),
             ("out", "att")),
        Case("attention_backward", "", att_dims, lambda r: _attention_backward_args(r, B, T, C, NH),
             ("dinp",)),
        Case("gelu_forward", "", {"N": N * C}, lambda r: (_r(r, N, C, scale=3.0),), ("out",)),
        Case("gelu_backward", "", {"N": N * C},
             lambda r: (_r(r, N, C), _r(r, N, C, scale=3.0)), ("dinp",)),
        Case("residual_forward", "", {"N": N * C}, lambda r: (_r(r, N, C), _r(r, N, C)), ("out",)),
        Case("residual_backward", "", {"N": N * C}, lambda r: (_r(r, N, C),), ("da", "db")),
        Case("crossentropy_forward", "", {"N": N, "V": V},
             lambda r: (_r(r, N, V, scale=4.0), r.integers(0, V, N)),
             ("loss", "losses", "probs")),
        Case("crossentropy_forward", "logits+-80", {"N": 2, "V": V},
             lambda r: (np.where(r.random((2, V)) < 0.5, -80.0, 80.0), r.integers(0, V, 2)),
             ("loss", "losses", "probs")),
        Case("crossentropy_backward", "", {"N": N, "V": V},
             lambda r: _crossentropy_backward_args(r, N, V), ("dlogits",)),
        Case("adamw_update", "", {}, _adamw_args, ("params", "m", "v")),
    ]  # fmt: skip
    for label, n, c, oc in mm:
        d = {"N": n, "C": c, "OC": oc}
        cases.append(Case("matmul_forward", label, d, partial(_matmul_forward_args, n, c, oc),
                          ("out",)))  # fmt: skip
        cases.append(Case("matmul_backward", label, d, partial(_matmul_backward_args, n, c, oc),
                          ("dinp", "dweight", "dbias")))  # fmt: skip
    return cases


def _matmul_forward_args(n: int, c: int, oc: int, r: np.random.Generator) -> Arrays:
    return (_r(r, n, c), _r(r, oc, c), _r(r, oc))


def _matmul_backward_args(n: int, c: int, oc: int, r: np.random.Generator) -> Arrays:
    return (_r(r, n, oc), _r(r, n, c), _r(r, oc, c))


def _layernorm_backward_args(r: np.random.Generator, N: int, C: int) -> Arrays:
    x = _r(r, N, C, scale=2.0)
    w = _r(r, C)
    _, mean, rstd = ops.layernorm_forward(x, w, _r(r, C))
    # the kernel receives float32 statistics; the reference must use the same numbers
    return (_r(r, N, C), x, w, mean.astype(np.float32).astype(np.float64),
            rstd.astype(np.float32).astype(np.float64))  # fmt: skip


def _attention_backward_args(r: np.random.Generator, B: int, T: int, C: int, NH: int) -> Arrays:
    qkv = _r(r, B, T, 3 * C)
    _, att = ops.attention_forward(qkv, NH)
    return (_r(r, B, T, C), qkv, att.astype(np.float32).astype(np.float64), NH)


def _crossentropy_backward_args(r: np.random.Generator, N: int, V: int) -> Arrays:
    _, _, probs = ops.crossentropy_forward(_r(r, N, V, scale=3.0), r.integers(0, V, N))
    dloss = float(np.float32(1.0 / N))  # float32-exact, as the kernel receives it
    return (probs.astype(np.float32).astype(np.float64), r.integers(0, V, N), dloss)


CASES = _cases()
# argument names of the element-wise ops, for harness.tolerance.elementwise_bound
ELEMENTWISE_ARGS = {
    "gelu_forward": ("x",),
    "gelu_backward": ("dout", "x"),
    "crossentropy_backward": ("probs", "targets", "dloss"),
    "adamw_update": ("p", "g", "m", "v", "lr", "beta1", "beta2", "eps", "wd", "t"),
}


@pytest.mark.parametrize(
    "case", CASES, ids=[f"{c.op}-{c.label}" if c.label else c.op for c in CASES]
)
def test_op_matches_reference(case: Case, instance: Instance) -> None:
    """Each output of the op is within the tolerance policy of the float64 reference."""
    args = case.make(np.random.default_rng(zlib.crc32(f"{case.op}-{case.label}".encode())))
    found = _flatten(getattr(Kernels(instance), case.op)(*args))
    expected64 = _flatten(getattr(ops, case.op)(*args))
    expected32 = _flatten(getattr(ops, case.op)(*(_as32(a) for a in args)))
    assert len(found) == len(case.outputs) == len(expected64)
    for name, f, e64, e32 in zip(case.outputs, found, expected64, expected32, strict=True):
        tol = op_tolerance(case.op, name, _dims(case, args))
        expected = e32 if OP_RULES[(case.op, name)].exact else e64
        bound = None
        if tol.per_element:
            named = dict(zip(ELEMENTWISE_ARGS[case.op], args, strict=True))
            bound = elementwise_bound(case.op, name, named, e64)
        assert_parity(f"{instance.artifact.name}:{case.op}.{name}", np.asarray(f, np.float32)
                      if f.ndim == 0 else f, expected, tol, bound=bound)  # fmt: skip


def test_parity_fails_on_a_wrong_kernel_result(instance: Instance) -> None:
    """The comparison above can fail: a result off by 1e-3 relative is rejected."""
    rng = np.random.default_rng(0)
    x, W, b = _r(rng, 8, 16), _r(rng, 4, 16), _r(rng, 4)
    found = Kernels(instance).matmul_forward(x, W, b) * np.float32(1.001)
    with pytest.raises(AssertionError, match="values stage"):
        assert_parity("matmul", found, ops.matmul_forward(x, W, b),
                      op_tolerance("matmul_forward", "out", {"C": 16}))  # fmt: skip


def test_crossentropy_survives_extreme_logits(instance: Instance) -> None:
    """Logits of +-80 give finite losses and probabilities (the softmax subtracts the row max)."""
    logits = np.array([[80.0, -80.0, 80.0, -80.0], [-80.0, -80.0, -80.0, 80.0]])
    loss, losses, probs = Kernels(instance).crossentropy_forward(logits, np.array([1, 3]))
    assert np.isfinite(loss) and np.isfinite(losses).all() and np.isfinite(probs).all()
    assert losses[0] == pytest.approx(160.0 + np.log(2.0), rel=1e-6)
