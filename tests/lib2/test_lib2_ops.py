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
from harness.tolerance import elementwise_bound, mean_rstd, op_tolerance
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
    dims = {"N": N, "C": D, "mean_rstd": mean_rstd(x, g)}
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


def test_attention_forward_and_backward(lib2: ctypes.CDLL) -> None:
    """Every output and cache of attention_forward, and every gradient of its backward.

    The oracle is reference.ops.attention_block_{forward,backward} with lib2's [in, out] weights
    transposed; tolerances are harness.tolerance's attention_block rules (their derivation sits
    there). dx is overwritten; the weight and bias gradients accumulate onto ones.
    """
    rng = np.random.default_rng(21)
    B, T, C, H = 2, 9, 24, 3
    x = _r(rng, B, T, C)
    w = {f"W{c}": _r(rng, C, C, scale=0.3) for c in "qkvo"}
    w |= {f"b{c}": _r(rng, C, scale=0.1) for c in "qkvo"}
    ref_w = {n: a.T if n[0] == "W" else a for n, a in w.items()}  # the reference's [out, in]
    names = [f"{t}{c}" for c in "qkvo" for t in "Wb"]  # Wq, bq, ..., Wo, bo
    r = ref_w
    forward = ops.attention_block_forward(x, r["Wq"], r["bq"], r["Wk"], r["bk"], r["Wv"], r["bv"],
                                          r["Wo"], r["bo"], H)  # fmt: skip
    ref = dict(zip(("out", "q", "k", "v", "att"), forward, strict=True))
    w32 = {n: f32(a) for n, a in w.items()}
    x32 = f32(x)
    out, q, k, v = (np.zeros((B, T, C), np.float32) for _ in range(4))
    attn = np.full((B, H, T, T), 9.0, np.float32)  # the masked entries must be written as 0
    lib2.attention_forward(ptr(x32), *(ptr(w32[n]) for n in names), ptr(out), ptr(q), ptr(k),
                           ptr(v), ptr(attn), B, T, C, H)  # fmt: skip
    hs = C // H
    logit = float(np.abs(np.concatenate([ref["q"], ref["k"]])).max() ** 2 * hs / math.sqrt(hs))
    dims = {"B": B, "T": T, "C": C, "hs": hs, "3C": 3 * C, "logit": max(logit, 1.0)}
    found = {"out": out, "q": q, "k": k, "v": v, "att": attn}
    for name, got in found.items():
        assert_parity(f"lib2 attention_forward.{name}", got, ref[name],
                      op_tolerance("attention_block_forward", name, dims))  # fmt: skip
    assert np.all(attn[..., np.triu_indices(T, 1)[0], np.triu_indices(T, 1)[1]] == 0.0)

    dout = _r(rng, B, T, C)
    dout32 = f32(dout)  # held: ptr() of a temporary would dangle
    dx = np.full((B, T, C), 4.0, np.float32)
    grads = {n: np.ones(a.shape, np.float32) for n, a in w.items()}
    lib2.attention_backward(ptr(x32), *(ptr(w32[n]) for n in ("Wq", "Wk", "Wv", "Wo")), ptr(q),
                            ptr(k), ptr(v), ptr(attn), ptr(dout32), ptr(dx),
                            *(ptr(grads[n]) for n in names), B, T, C, H)  # fmt: skip
    cache = (ref["q"], ref["k"], ref["v"], ref["att"])
    rdx, *rgrads = ops.attention_block_backward(dout, x, r["Wq"], r["Wk"], r["Wv"], r["Wo"], *cache,
                                                H)  # fmt: skip
    assert_parity("lib2 attention_backward.dx", dx, rdx,
                  op_tolerance("attention_block_backward", "dinp", dims))  # fmt: skip
    for name, rg in zip(names, rgrads, strict=True):
        assert_parity(f"lib2 attention_backward.d{name}", grads[name],
                      1.0 + (rg.T if name[0] == "W" else rg),
                      op_tolerance("attention_block_backward", f"d{name}", dims))  # fmt: skip


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
