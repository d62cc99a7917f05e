"""reference.ops: every backward against central finite differences, plus dtype and error rules.

Gradient checks run in float64. Each op's output is reduced to the scalar ``L = sum(out * R)``
with a fixed random ``R``, so ``backward(R)`` must equal the numerical ``dL/dinput``.
Tolerances: central differences with ``h = 1e-6`` have truncation error ~h^2 and rounding
error ~1e-16/h, i.e. about 1e-10 absolute here, so ``atol = 1e-7`` plus ``rtol = 1e-5`` leaves
two orders of margin while any real mistake (a missing term, a wrong sign) is off by O(1).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from reference import ops
from reference.ops import FloatArray

H = 1e-6
ATOL = 1e-7
RTOL = 1e-5


def numeric_grad(f: Callable[[], float], x: FloatArray) -> FloatArray:
    """Central-difference gradient of the scalar ``f()`` w.r.t. every entry of ``x`` (in place)."""
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + H
        up = f()
        flat[i] = old - H
        down = f()
        flat[i] = old
        gflat[i] = (up - down) / (2 * H)
    return grad


def assert_grad(name: str, analytic: FloatArray | None, numeric: FloatArray) -> None:
    """Fail naming ``name`` and the worst entry unless the gradients agree within tolerance."""
    assert analytic is not None, f"{name}: backward returned None"
    assert analytic.shape == numeric.shape, f"{name}: shape {analytic.shape} != {numeric.shape}"
    err = np.abs(analytic - numeric) - (ATOL + RTOL * np.abs(numeric))
    worst = np.unravel_index(int(np.argmax(err)), err.shape)
    assert err[worst] <= 0, (
        f"{name}: at {worst} analytic {analytic[worst]!r} vs numeric {numeric[worst]!r}"
    )


@pytest.fixture
def rng() -> np.random.Generator:
    """A fixed-seed generator so every check sees the same inputs."""
    return np.random.default_rng(1234)


def test_embedding_backward_matches_finite_differences(rng: np.random.Generator) -> None:
    """dwte sums repeated ids and dwpe covers the first T rows only."""
    wte, wpe = rng.normal(size=(7, 4)), rng.normal(size=(6, 4))
    idx = np.array([[1, 3, 1], [6, 1, 0]])  # id 1 repeats: its gradient must sum
    R = rng.normal(size=(2, 3, 4))

    def loss() -> float:
        return float(np.sum(ops.embedding_forward(idx, wte, wpe) * R))

    dwte, dwpe = ops.embedding_backward(R, idx, 7, 6)
    assert_grad("dwte", dwte, numeric_grad(loss, wte))
    assert_grad("dwpe", dwpe, numeric_grad(loss, wpe))
    assert np.all(dwpe[3:] == 0)


@pytest.mark.parametrize("shape", [(5, 8), (2, 3, 8)])
def test_layernorm_backward_matches_finite_differences(
    rng: np.random.Generator, shape: tuple[int, ...]
) -> None:
    """dx, dw and db of layernorm for 2-D and 3-D inputs."""
    x, w, b = rng.normal(size=shape), rng.normal(size=8), rng.normal(size=8)
    R = rng.normal(size=shape)

    def loss() -> float:
        return float(np.sum(ops.layernorm_forward(x, w, b)[0] * R))

    _, mean, rstd = ops.layernorm_forward(x, w, b)
    dx, dw, db = ops.layernorm_backward(R, x, w, mean, rstd)
    assert_grad("dx", dx, numeric_grad(loss, x))
    assert_grad("dw", dw, numeric_grad(loss, w))
    assert_grad("db", db, numeric_grad(loss, b))


def test_layernorm_forward_normalises_with_biased_variance(rng: np.random.Generator) -> None:
    """With w=1, b=0 each row has mean 0 and (biased) variance var/(var+eps)."""
    x = rng.normal(size=(4, 16)) * 3 + 2
    out, mean, rstd = ops.layernorm_forward(x, np.ones(16), np.zeros(16))
    np.testing.assert_allclose(out.mean(axis=-1), 0, atol=1e-12)
    var = x.var(axis=-1)
    np.testing.assert_allclose(out.var(axis=-1), var / (var + 1e-5), rtol=1e-12)
    np.testing.assert_allclose(rstd, 1 / np.sqrt(var + 1e-5), rtol=1e-12)
    np.testing.assert_allclose(mean, x.mean(axis=-1), rtol=1e-12)


@pytest.mark.parametrize("shape", [(5, 6), (2, 3, 6)])
def test_matmul_backward_matches_finite_differences(
    rng: np.random.Generator, shape: tuple[int, ...]
) -> None:
    """dx, dW, db of x @ W.T + b for 2-D and 3-D inputs."""
    x, W, b = rng.normal(size=shape), rng.normal(size=(4, 6)), rng.normal(size=4)
    R = rng.normal(size=(*shape[:-1], 4))

    def loss() -> float:
        return float(np.sum(ops.matmul_forward(x, W, b) * R))

    dx, dW, db = ops.matmul_backward(R, x, W)
    assert_grad("dx", dx, numeric_grad(loss, x))
    assert_grad("dW", dW, numeric_grad(loss, W))
    assert_grad("db", db, numeric_grad(loss, b))


def test_matmul_without_bias_returns_no_bias_gradient(rng: np.random.Generator) -> None:
    """b=None computes x @ W.T and has_bias=False gives db None."""
    x, W = rng.normal(size=(3, 5)), rng.normal(size=(2, 5))
    np.testing.assert_allclose(ops.matmul_forward(x, W, None), x @ W.T)
    assert ops.matmul_backward(np.ones((3, 2)), x, W, has_bias=False)[2] is None


def test_attention_backward_matches_finite_differences(rng: np.random.Generator) -> None:
    """dqkv of causal 2-head attention, through q, k and v alike."""
    qkv = rng.normal(size=(2, 5, 3 * 8))
    R = rng.normal(size=(2, 5, 8))

    def loss() -> float:
        return float(np.sum(ops.attention_forward(qkv, 2)[0] * R))

    _, att = ops.attention_forward(qkv, 2)
    assert_grad("dqkv", ops.attention_backward(R, qkv, att, 2), numeric_grad(loss, qkv))


def test_attention_is_causal_and_probabilities_are_exact(rng: np.random.Generator) -> None:
    """Rows of att sum to 1, are exactly 0 above the diagonal, and the future can't leak back."""
    qkv = rng.normal(size=(1, 6, 3 * 8))
    out, att = ops.attention_forward(qkv, 4)
    np.testing.assert_allclose(att.sum(axis=-1), 1.0, rtol=1e-12)
    assert np.all(att[..., np.triu_indices(6, k=1)[0], np.triu_indices(6, k=1)[1]] == 0)
    changed = qkv.copy()
    changed[0, 4:] += 10.0  # alter the last two positions only
    out2, _ = ops.attention_forward(changed, 4)
    np.testing.assert_array_equal(out[0, :4], out2[0, :4])
    assert not np.allclose(out[0, 4:], out2[0, 4:])


def test_attention_single_head_matches_textbook_formula(rng: np.random.Generator) -> None:
    """One head: softmax(q k^T / sqrt(hs) + causal mask) v, with q|k|v split in that order."""
    T, C = 4, 6
    qkv = rng.normal(size=(1, T, 3 * C))
    q, k, v = qkv[0, :, :C], qkv[0, :, C : 2 * C], qkv[0, :, 2 * C :]
    s = q @ k.T / math.sqrt(C) + np.triu(np.full((T, T), -np.inf), k=1)
    p = np.exp(s - s.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(ops.attention_forward(qkv, 1)[0][0], p @ v, rtol=1e-12)


def test_gelu_backward_matches_finite_differences(rng: np.random.Generator) -> None:
    """dx of tanh-GELU over a wide range of inputs."""
    x = rng.normal(size=(3, 7)) * 3
    R = rng.normal(size=(3, 7))

    def loss() -> float:
        return float(np.sum(ops.gelu_forward(x) * R))

    assert_grad("dx", ops.gelu_backward(R, x), numeric_grad(loss, x))


def test_gelu_is_the_tanh_form_and_safe_at_extremes() -> None:
    """gelu matches the tanh formula and stays finite (no overflow warning) at +-1e4."""
    x = np.array([-1e4, -3.0, -0.5, 0.0, 0.5, 3.0, 1e4])
    want = 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    np.testing.assert_allclose(ops.gelu_forward(x), want, rtol=1e-15)
    dx = ops.gelu_backward(np.ones_like(x), x)
    assert np.all(np.isfinite(dx)) and dx[0] == 0.0 and dx[-1] == 1.0


def test_residual_forward_and_backward(rng: np.random.Generator) -> None:
    """a + b forward; both inputs receive dout unchanged, as separate arrays."""
    a, b, d = rng.normal(size=(2, 3)), rng.normal(size=(2, 3)), rng.normal(size=(2, 3))
    np.testing.assert_array_equal(ops.residual_forward(a, b), a + b)
    da, db = ops.residual_backward(d)
    np.testing.assert_array_equal(da, d)
    np.testing.assert_array_equal(db, d)
    assert da is not db and da is not d


def test_crossentropy_backward_matches_finite_differences(rng: np.random.Generator) -> None:
    """dlogits of the mean loss = (probs - onehot) / N."""
    logits, targets = rng.normal(size=(4, 9)) * 2, np.array([0, 8, 3, 3])

    def loss() -> float:
        return ops.crossentropy_forward(logits, targets)[0]

    _, losses, probs = ops.crossentropy_forward(logits, targets)
    np.testing.assert_allclose(losses, -np.log(probs[np.arange(4), targets]), rtol=1e-12)
    dlogits = ops.crossentropy_backward(probs, targets, 1.0 / 4)
    assert_grad("dlogits", dlogits, numeric_grad(loss, logits))


def test_crossentropy_survives_logits_of_plus_minus_80() -> None:
    """float32 logits of +-80 give finite probs and losses equal to the float64 ones."""
    logits = np.array([[80.0, -80.0, 0.0], [-80.0, -80.0, 80.0]], dtype=np.float32)
    targets = np.array([1, 2])
    mean32, losses32, probs32 = ops.crossentropy_forward(logits, targets)
    _, losses64, _ = ops.crossentropy_forward(logits.astype(np.float64), targets)
    assert np.all(np.isfinite(probs32)) and np.all(np.isfinite(losses32))
    assert losses32.dtype == np.float32
    np.testing.assert_allclose(losses32, losses64, rtol=1e-6)
    np.testing.assert_allclose(losses64, [160.0, 0.0], atol=1e-12)
    assert math.isclose(mean32, 80.0, rel_tol=1e-6)


def test_adamw_first_step_matches_closed_form(rng: np.random.Generator) -> None:
    """At t=1 from zero moments: p - lr * (g / (|g| + eps) + wd * p), m=(1-b1)g, v=(1-b2)g^2."""
    p, g = rng.normal(size=10), rng.normal(size=10)
    g[0] = 0.0  # zero gradient: the update is weight decay alone
    lr, b1, b2, eps, wd = 0.01, 0.9, 0.95, 1e-8, 0.1
    zeros = np.zeros(10)
    p1, m1, v1 = ops.adamw_update(p, g, zeros, zeros, lr, b1, b2, eps, wd, 1)
    np.testing.assert_allclose(p1, p - lr * (g / (np.abs(g) + eps) + wd * p), rtol=1e-12)
    np.testing.assert_allclose(m1, 0.1 * g, rtol=1e-12)
    np.testing.assert_allclose(v1, 0.05 * g * g, rtol=1e-12)
    assert p1[0] == p[0] - lr * wd * p[0]


def test_adamw_second_step_uses_bias_correction_at_t(rng: np.random.Generator) -> None:
    """At t=2 the moments are divided by (1 - b^2), computed here by hand."""
    p, g1, g2 = rng.normal(size=5), rng.normal(size=5), rng.normal(size=5)
    b1, b2, eps, lr, wd = 0.9, 0.95, 1e-8, 3e-4, 0.0
    z = np.zeros(5)
    p1, m1, v1 = ops.adamw_update(p, g1, z, z, lr, b1, b2, eps, wd, 1)
    p2, m2, v2 = ops.adamw_update(p1, g2, m1, v1, lr, b1, b2, eps, wd, 2)
    m = b1 * (1 - b1) * g1 + (1 - b1) * g2
    v = b2 * (1 - b2) * g1**2 + (1 - b2) * g2**2
    want = p1 - lr * (m / (1 - b1**2)) / (np.sqrt(v / (1 - b2**2)) + eps)
    np.testing.assert_allclose(p2, want, rtol=1e-12)
    np.testing.assert_allclose(m2, m, rtol=1e-12)
    np.testing.assert_allclose(v2, v, rtol=1e-12)


def test_adamw_does_not_modify_its_inputs(rng: np.random.Generator) -> None:
    """adamw_update is pure: p, g, m and v keep their values."""
    p, g, m, v = (rng.normal(size=4) for _ in range(4))
    v = np.abs(v)
    arrays = [p, g, m, v]
    before = [a.copy() for a in arrays]
    ops.adamw_update(p, g, m, v, 0.1, 0.9, 0.95, 1e-8, 0.1, 3)
    for a, b in zip(arrays, before, strict=True):
        np.testing.assert_array_equal(a, b)


def _forward_cases(rng: np.random.Generator) -> dict[str, tuple[Callable[..., Any], list[Any]]]:
    """One float64 input set per forward op: ``{name: (fn, args)}``."""
    return {
        "embedding": (
            ops.embedding_forward,
            [np.array([[1, 2]]), rng.normal(size=(4, 8)), rng.normal(size=(3, 8))],
        ),
        "layernorm": (
            ops.layernorm_forward,
            [rng.normal(size=(2, 3, 8)), rng.normal(size=8), rng.normal(size=8)],
        ),
        "matmul": (
            ops.matmul_forward,
            [rng.normal(size=(2, 3, 8)), rng.normal(size=(5, 8)), rng.normal(size=5)],
        ),
        "attention": (ops.attention_forward, [rng.normal(size=(2, 5, 24)), 2]),
        "gelu": (ops.gelu_forward, [rng.normal(size=(3, 8))]),
        "residual": (ops.residual_forward, [rng.normal(size=(3, 8)), rng.normal(size=(3, 8))]),
        "crossentropy": (
            ops.crossentropy_forward,
            [rng.normal(size=(4, 9)), np.array([1, 2, 3, 4])],
        ),
        "adamw": (
            ops.adamw_update,
            [*(rng.normal(size=6) for _ in range(3)), rng.random(6), 1e-3, 0.9, 0.95, 1e-8, 0.1, 3],
        ),
    }


@pytest.mark.parametrize(
    "op", ["embedding", "layernorm", "matmul", "attention", "gelu", "residual", "crossentropy",
           "adamw"],
)  # fmt: skip
def test_float32_outputs_stay_float32_and_match_float64(op: str) -> None:
    """Each forward keeps float32 in float32 (no silent promotion) and agrees with float64."""
    fn, args = _forward_cases(np.random.default_rng(7))[op]
    args32 = [a.astype(np.float32) if isinstance(a, np.ndarray) and a.dtype == np.float64 else a
              for a in args]  # fmt: skip
    out64, out32 = fn(*args), fn(*args32)
    outs64 = out64 if isinstance(out64, tuple) else (out64,)
    outs32 = out32 if isinstance(out32, tuple) else (out32,)
    for a64, a32 in zip(outs64, outs32, strict=True):
        if isinstance(a32, np.ndarray):
            assert a32.dtype == np.float32, f"{op}: float32 input produced {a32.dtype}"
        # float32 rounding (~6e-8 relative) compounded over a few dozen operations
        np.testing.assert_allclose(a32, a64, rtol=2e-5, atol=2e-6, err_msg=op)


X8 = np.zeros((2, 8))
W8 = np.ones(8)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: ops.layernorm_forward(X8, np.ones(7), W8),
         "layernorm_forward: w has shape (7,), expected (8,) to match x's last axis"),
        (lambda: ops.layernorm_forward(X8, W8, W8.astype(np.float32)),
         "layernorm_forward: mixed float dtypes (x is float64, w is float64, b is float32)"),
        (lambda: ops.layernorm_forward(X8.astype(np.int64), W8, W8),
         "layernorm_forward: x has dtype int64 (shape (2, 8)), expected float32 or float64"),
        (lambda: ops.matmul_forward(X8, np.ones((3, 7)), None),
         "matmul_forward: W has shape (3, 7), expected (OC, 8) to match x's last axis"),
        (lambda: ops.matmul_forward(X8, np.ones((3, 8)), np.ones(4)),
         "matmul_forward: b has shape (4,), expected (3,) to match W's rows (OC)"),
        (lambda: ops.matmul_backward(np.ones((2, 4)), X8, np.ones((3, 8))),
         "matmul_backward: dout has shape (2, 4), expected (2, 3)"),
        (lambda: ops.attention_forward(np.zeros((1, 4, 12)), 3),
         "attention_forward: qkv has shape (1, 4, 12), expected a last axis 3*C with C divisible"),
        (lambda: ops.attention_forward(np.zeros((4, 12)), 2),
         "attention_forward: qkv has shape (4, 12), expected 3-D"),
        (lambda: ops.attention_backward(np.zeros((1, 4, 4)), np.zeros((1, 4, 12)),
                                        np.zeros((1, 2, 4, 3)), 2),
         "attention_backward: att has shape (1, 2, 4, 3), expected (1, 2, 4, 4)"),
        (lambda: ops.embedding_forward(np.array([[0, 9]]), np.ones((4, 8)), np.ones((3, 8))),
         "embedding_forward: idx holds values in [0, 9], expected [0, 4)"),
        (lambda: ops.embedding_forward(np.zeros((1, 5), int), np.ones((4, 8)), np.ones((3, 8))),
         "embedding_forward: idx has shape (1, 5), T=5 exceeds wpe rows (3, 8)"),
        (lambda: ops.embedding_backward(np.zeros((1, 2, 8)), np.zeros((2, 1), int), 4, 3),
         "embedding_backward: idx has shape (2, 1), expected (1, 2) to match dout (1, 2, 8)"),
        (lambda: ops.gelu_backward(np.zeros(3), np.zeros(4)),
         "gelu_backward: dout has shape (3,), expected (4,) to match x"),
        (lambda: ops.residual_forward(np.zeros(3), np.zeros((3, 1))),
         "residual_forward: b has shape (3, 1), expected (3,) to match a"),
        (lambda: ops.crossentropy_forward(np.zeros((2, 5)), np.array([0, 1, 2])),
         "crossentropy_forward: targets has shape (3,), expected (2,) to match logits (2, 5)"),
        (lambda: ops.crossentropy_backward(np.zeros((2, 5)), np.array([0, 5]), 0.5),
         "crossentropy_backward: targets holds values in [0, 5], expected [0, 5)"),
        (lambda: ops.adamw_update(np.zeros(3), np.zeros(4), np.zeros(3), np.zeros(3),
                                  0.1, 0.9, 0.95, 1e-8, 0.0, 1),
         "adamw_update: g has shape (4,), expected (3,) to match p"),
        (lambda: ops.adamw_update(np.zeros(3), np.zeros(3), np.zeros(3), np.zeros(3),
                                  0.1, 0.9, 0.95, 1e-8, 0.0, 0),
         "adamw_update: t must be a positive int, got 0"),
        (lambda: ops.gelu_forward([1.0, 2.0]),  # type: ignore[arg-type]
         "gelu_forward: x must be a numpy array, got list"),
    ],
)  # fmt: skip
def test_bad_arguments_raise_value_error_naming_them(
    call: Callable[[], object], message: str
) -> None:
    """Wrong shapes, dtypes, ranges and types raise ValueError naming the argument and shape."""
    with pytest.raises(ValueError, match=re.escape(message)):
        call()
