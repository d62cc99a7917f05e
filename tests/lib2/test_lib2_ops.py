"""lib2's ops (native, ctypes) against ``reference.ops`` in float64, under harness.tolerance.

lib2's layouts differ from the reference's on purpose (docs/lib2.md): W is [in, out], matmul has
no bias, attention has separate biased q/k/v/o projections. Each test maps the layout explicitly,
so a test that passes also proves the mapping docs/lib2.md gives the binding author.
Inputs are drawn in float64 and rounded through float32 once, so both sides see the same numbers.
"""

from __future__ import annotations

import ctypes
import math

import numpy as np
import pytest
from numpy.typing import NDArray

from harness.parity import ParityError, assert_parity
from harness.tolerance import elementwise_bound, op_tolerance, reduction_scale
from reference import ops
from reference.ops import FloatArray
from tests.lib2.lib2_native import f32, ptr

F64 = FloatArray  # float64 values on the reference side


def _r(rng: np.random.Generator, *shape: int, scale: float = 1.0) -> F64:
    """float64 values that are exactly float32 numbers."""
    return (rng.standard_normal(shape) * scale).astype(np.float32).astype(np.float64)


def _matmul(lib: ctypes.CDLL, A: F64, B: F64) -> NDArray[np.float32]:
    M, K = A.shape
    N = B.shape[1]
    C = np.zeros((M, N), np.float32)
    a, b = f32(A), f32(B)
    lib.matmul_forward(ptr(a), ptr(b), ptr(C), M, K, N)
    return C


@pytest.mark.parametrize(("M", "K", "N"), [(37, 29, 41), (2, 33, 17), (70, 300, 53)])
def test_matmul_forward_and_backward(lib2: ctypes.CDLL, M: int, K: int, N: int) -> None:
    """C = A @ B; dA = dC B^T and dB = A^T dC, both overwritten (garbage beforehand is ignored)."""
    rng = np.random.default_rng(M * 1000 + K)
    A, B, dC = _r(rng, M, K), _r(rng, K, N), _r(rng, M, N)
    # the reference's W is [out, in]: lib2's B (K, N) = [in, out] is its transpose
    assert_parity("lib2 matmul_forward.C", _matmul(lib2, A, B), ops.matmul_forward(A, B.T, None),
                  op_tolerance("matmul_forward", "out", {"C": K}))  # fmt: skip
    dA = np.full((M, K), 7.0, np.float32)
    dB = np.full((K, N), -3.0, np.float32)
    a, b, dc = f32(A), f32(B), f32(dC)
    lib2.matmul_backward(ptr(a), ptr(b), ptr(dc), ptr(dA), ptr(dB), M, K, N)
    rdA, rdW, _ = ops.matmul_backward(dC, A, B.T, has_bias=False)
    dims = {"OC": N, "N": M}
    assert_parity("lib2 matmul_backward.dA", dA, rdA, op_tolerance("matmul_backward", "dinp", dims))
    assert_parity("lib2 matmul_backward.dB", dB, rdW.T,
                  op_tolerance("matmul_backward", "dweight", dims))  # fmt: skip


def test_matmul_parity_catches_a_transposed_weight(lib2: ctypes.CDLL) -> None:
    """Feeding lib2 the reference's [out, in] weight fails parity: the layout matters."""
    rng = np.random.default_rng(3)
    A, W = _r(rng, 6, 8), _r(rng, 8, 8)  # square, so the wrong layout still runs
    with pytest.raises(ParityError, match="values stage"):
        assert_parity("transposed", _matmul(lib2, A, W), ops.matmul_forward(A, W, None),
                      op_tolerance("matmul_forward", "out", {"C": 8}))  # fmt: skip


def test_layernorm_forward_and_backward(lib2: ctypes.CDLL) -> None:
    """y, mean, rstd match; dx is overwritten while dgamma and dbeta accumulate onto ones."""
    rng = np.random.default_rng(11)
    N, D = 19, 48
    x, g, b, dy = _r(rng, N, D, scale=2.0), _r(rng, D), _r(rng, D), _r(rng, N, D)
    y, mean, rstd = (np.zeros(s, np.float32) for s in ((N, D), (N,), (N,)))
    x32, g32, b32, dy32 = f32(x), f32(g), f32(b), f32(dy)
    eps = float(np.float32(ops.LAYERNORM_EPS))
    lib2.layernorm_forward(ptr(x32), ptr(g32), ptr(b32), ptr(y), ptr(mean), ptr(rstd), N, D, eps)
    ry, rmean, rrstd = ops.layernorm_forward(x, g, b, eps)
    dims = {"N": N, "C": D}
    for name, found, ref in (("out", y, ry), ("mean", mean, rmean), ("rstd", rstd, rrstd)):
        assert_parity(f"lib2 layernorm_forward.{name}", found, ref,
                      op_tolerance("layernorm_forward", name, dims))  # fmt: skip
    dx = np.full((N, D), 5.0, np.float32)
    dgamma, dbeta = np.ones(D, np.float32), np.ones(D, np.float32)
    lib2.layernorm_backward(ptr(x32), ptr(g32), ptr(mean), ptr(rstd), ptr(dy32), ptr(dx),
                            ptr(dgamma), ptr(dbeta), N, D)  # fmt: skip
    rdx, rdg, rdb = ops.layernorm_backward(dy, x, g, rmean, rrstd)
    assert_parity("lib2 layernorm_backward.dx", dx, rdx, op_tolerance(
        "layernorm_backward", "dinp", {**dims, "rstd": float(rstd.max())}))  # fmt: skip
    assert_parity("lib2 layernorm_backward.dgamma", dgamma, 1.0 + rdg,
                  op_tolerance("layernorm_backward", "dweight", dims))  # fmt: skip
    assert_parity("lib2 layernorm_backward.dbeta", dbeta, 1.0 + rdb,
                  op_tolerance("layernorm_backward", "dbias", dims))  # fmt: skip


def _attention_reference(x: F64, w: dict[str, F64], H: int) -> dict[str, F64]:
    """lib2's attention_forward from reference ops: 3 Linears, attention on q|k|v, a Linear."""
    q, k, v = (ops.matmul_forward(x, w[f"W{c}"].T, w[f"b{c}"]) for c in "qkv")
    y, att = ops.attention_forward(np.concatenate([q, k, v], axis=-1), H)
    out = ops.matmul_forward(y, w["Wo"].T, w["bo"])
    return {"out": out, "q": q, "k": k, "v": v, "attn": att, "y": y}


def test_attention_forward_and_backward(lib2: ctypes.CDLL) -> None:
    """Every output and cache of attention_forward, and every gradient of its backward.

    dx is overwritten; the weight and bias gradients accumulate onto ones. Tolerances: q, k, v
    are Linears (dot over C); attn is the reference attention's att rule; out composes the
    attention's out rule with one more dot product over C (the Wo projection), i.e. a reduction
    over hs*T*C; dx sums three projections' dinp over C after attention's dinp rule
    (hs*T*3C); each weight gradient sums over the B*T rows of an input whose own error is
    attention's dinp rule (hs*T*B*T).
    """
    rng = np.random.default_rng(21)
    B, T, C, H = 2, 9, 24, 3
    hs, N = C // H, B * T
    x = _r(rng, B, T, C)
    w = {f"W{c}": _r(rng, C, C, scale=0.3) for c in "qkvo"}
    w |= {f"b{c}": _r(rng, C, scale=0.1) for c in "qkvo"}
    ref = _attention_reference(x, w, H)
    w32 = {n: f32(a) for n, a in w.items()}
    x32 = f32(x)
    out, q, k, v = (np.zeros((B, T, C), np.float32) for _ in range(4))
    attn = np.full((B, H, T, T), 9.0, np.float32)  # the masked entries must be written as 0
    weights = [ptr(w32[n]) for n in ("Wq", "bq", "Wk", "bk", "Wv", "bv", "Wo", "bo")]
    lib2.attention_forward(ptr(x32), *weights, ptr(out), ptr(q), ptr(k), ptr(v), ptr(attn),
                           B, T, C, H)  # fmt: skip
    logit = float(np.abs(np.concatenate([ref["q"], ref["k"]])).max() ** 2 * hs / math.sqrt(hs))
    adims = {"B": B, "T": T, "hs": hs, "logit": max(logit, 1.0)}
    lin = op_tolerance("matmul_forward", "out", {"C": C})
    for name, found in (("q", q), ("k", k), ("v", v)):
        assert_parity(f"lib2 attention_forward.{name}", found, ref[name], lin)
    assert_parity("lib2 attention_forward.attn", attn, ref["attn"],
                  op_tolerance("attention_forward", "att", adims))  # fmt: skip
    assert np.all(attn[..., np.triu_indices(T, 1)[0], np.triu_indices(T, 1)[1]] == 0.0)
    out_tol = op_tolerance("attention_forward", "out", adims).scaled(
        reduction_scale(C), "= sqrt(C): the Wo projection sums over C"
    )
    assert_parity("lib2 attention_forward.out", out, ref["out"], out_tol)

    dout = _r(rng, B, T, C)
    dout32 = f32(dout)  # held: ptr() of a temporary would dangle
    dx = np.full((B, T, C), 4.0, np.float32)
    grads = {n: np.ones(a.shape, np.float32) for n, a in w.items()}
    lib2.attention_backward(ptr(x32), *(ptr(w32[n]) for n in ("Wq", "Wk", "Wv", "Wo")), ptr(q),
                            ptr(k), ptr(v), ptr(attn), ptr(dout32), ptr(dx),
                            *(ptr(grads[n]) for n in ("Wq", "bq", "Wk", "bk", "Wv", "bv", "Wo",
                                                       "bo")), B, T, C, H)  # fmt: skip
    # reference backward: Wo Linear, attention, then the three q/k/v Linears
    dy, dWo, dbo = ops.matmul_backward(dout, ref["y"], w["Wo"].T)
    dqkv = ops.attention_backward(dy, np.concatenate([ref["q"], ref["k"], ref["v"]], -1),
                                  ref["attn"], H)  # fmt: skip
    rdx = np.zeros_like(x)
    assert dbo is not None
    expected: dict[str, F64] = {"Wo": dWo.T, "bo": dbo}
    for i, c in enumerate("qkv"):
        d = dqkv[..., i * C : (i + 1) * C]
        dxi, dW, db = ops.matmul_backward(d, x, w[f"W{c}"].T)
        rdx += dxi
        assert db is not None
        expected[f"W{c}"], expected[f"b{c}"] = dW.T, db
    att_dx = op_tolerance("attention_backward", "dinp", adims)
    dx_tol = att_dx.scaled(reduction_scale(3 * C), "= sqrt(3C): three projections' dinp")
    assert_parity("lib2 attention_backward.dx", dx, rdx, dx_tol)
    grad_tol = att_dx.scaled(reduction_scale(N), "= sqrt(B*T): weight gradients sum over rows")
    for name, ref_grad in expected.items():
        assert_parity(f"lib2 attention_backward.d{name}", grads[name], 1.0 + ref_grad, grad_tol)


def test_adamw_step(lib2: ctypes.CDLL) -> None:
    """p, m, v after one AdamW step at t=3 match ops.adamw_update under its element-wise bound."""
    rng = np.random.default_rng(31)
    p, g = _r(rng, 33, 7), _r(rng, 33, 7, scale=0.1)
    m, v = _r(rng, 33, 7, scale=0.01), np.abs(_r(rng, 33, 7, scale=0.01))
    lr, b1, b2, eps, wd = (float(np.float32(k)) for k in (1e-3, 0.9, 0.95, 1e-8, 0.1))
    args = (p, g, m, v, lr, b1, b2, eps, wd, 3)
    rp, rm, rv = ops.adamw_update(*args)
    p32, g32, m32, v32 = (f32(a) for a in (p, g, m, v))
    lib2.adamw_step(ptr(p32), ptr(g32), ptr(m32), ptr(v32), p.size, lr, b1, b2, eps, wd, 3)
    named = dict(zip(("p", "g", "m", "v", "lr", "beta1", "beta2", "eps", "wd", "t"), args,
                     strict=True))  # fmt: skip
    for name, found, ref in (("params", p32, rp), ("m", m32, rm), ("v", v32, rv)):
        tol = op_tolerance("adamw_update", name, {})
        ref64 = np.asarray(ref, np.float64)
        bound = elementwise_bound("adamw_update", name, named, ref64) if tol.per_element else None
        assert_parity(f"lib2 adamw_step.{name}", found, ref, tol, bound=bound)


def test_tg_malloc_gives_zeroed_floats_and_refuses_nonpositive(lib2: ctypes.CDLL) -> None:
    """tg_malloc(n) is n zeroed floats that matmul can use; tg_malloc(0) and (-1) are NULL."""
    assert not lib2.tg_malloc(0) and not lib2.tg_malloc(-1)
    p = lib2.tg_malloc(12)
    assert p
    try:
        buf = (ctypes.c_float * 12).from_address(p)
        assert list(buf) == [0.0] * 12
        a = np.arange(6, dtype=np.float32).reshape(2, 3)
        b = np.ones((3, 2), np.float32)
        lib2.matmul_forward(ptr(a), ptr(b), p, 2, 3, 2)
        assert list(buf)[:4] == [3.0, 3.0, 12.0, 12.0]
    finally:
        lib2.tg_free(p)
