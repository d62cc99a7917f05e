"""Every GPT op, forward and backward, in numpy: the parity oracle for the C kernels.

Semantics follow ``artifacts/include/tinygpt.h`` with one deliberate difference: these functions
RETURN fresh gradients instead of accumulating into caller buffers (callers that need the
kernels' ``+=`` behaviour add the result themselves).

Each function computes in the dtype of its float inputs (float32 or float64, never mixed), so the
same code is both the float32 oracle the kernels are compared against and the float64 ground
truth the finite-difference tests use. Python scalars are cast to that dtype before use, because
a float64 scalar would otherwise promote a float32 computation.

Every argument is validated; a bad one raises ``ValueError`` naming the function, the argument
and its shape or dtype.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.floating[Any]]
IntArray = NDArray[np.integer[Any]]

LAYERNORM_EPS = 1e-5
GELU_COEF = 0.044715
_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


# ---- argument validation -------------------------------------------------------------------


def _floats(fn: str, name: str, a: object, ndims: tuple[int, ...] | None = None) -> FloatArray:
    """Return ``a`` if it is a float32/float64 ndarray with an allowed ndim, else raise."""
    if not isinstance(a, np.ndarray):
        raise ValueError(f"{fn}: {name} must be a numpy array, got {type(a).__name__}")
    if a.dtype not in _FLOAT_DTYPES:
        raise ValueError(
            f"{fn}: {name} has dtype {a.dtype} (shape {a.shape}), expected float32 or float64"
        )
    if ndims is not None and a.ndim not in ndims:
        want = " or ".join(f"{n}-D" for n in ndims)
        raise ValueError(f"{fn}: {name} has shape {a.shape}, expected {want}")
    return a


def check_ids(fn: str, name: str, a: object, ndims: tuple[int, ...], upper: int) -> IntArray:
    """Return ``a`` if it is an integer ndarray of an allowed ndim with values in [0, upper).

    Shared with the kernel client (``harness/kernel.py``), whose kernels would read outside a
    table on an out-of-range id.
    """
    if not isinstance(a, np.ndarray):
        raise ValueError(f"{fn}: {name} must be a numpy array, got {type(a).__name__}")
    if not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{fn}: {name} has dtype {a.dtype} (shape {a.shape}), expected integers")
    if a.ndim not in ndims:
        want = " or ".join(f"{n}-D" for n in ndims)
        raise ValueError(f"{fn}: {name} has shape {a.shape}, expected {want}")
    if a.size and (int(a.min()) < 0 or int(a.max()) >= upper):
        raise ValueError(
            f"{fn}: {name} holds values in [{int(a.min())}, {int(a.max())}], expected [0, {upper})"
        )
    return a


def _same_dtype(fn: str, **arrays: FloatArray) -> np.dtype[Any]:
    """Return the one float dtype shared by ``arrays``; raise naming them if they mix."""
    dtypes = {name: a.dtype for name, a in arrays.items()}
    if len(set(dtypes.values())) > 1:
        listing = ", ".join(f"{name} is {dt}" for name, dt in dtypes.items())
        raise ValueError(f"{fn}: mixed float dtypes ({listing}); pass one dtype throughout")
    return next(iter(dtypes.values()))


def _shape_is(fn: str, name: str, a: NDArray[Any], expected: tuple[int, ...], why: str) -> None:
    """Raise unless ``a.shape == expected``; ``why`` says what the shape must agree with."""
    if a.shape != expected:
        raise ValueError(f"{fn}: {name} has shape {a.shape}, expected {expected} {why}")


def _positive_int(fn: str, name: str, value: object) -> int:
    """Return ``value`` if it is a positive int (not a bool), else raise."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value <= 0:
        raise ValueError(f"{fn}: {name} must be a positive int, got {value!r}")
    return int(value)


# ---- embedding -----------------------------------------------------------------------------


def embedding_forward(idx: IntArray, wte: FloatArray, wpe: FloatArray) -> FloatArray:
    """Return ``wte[idx] + wpe[:T]`` of shape (B, T, C) for token ids ``idx`` (B, T)."""
    fn = "embedding_forward"
    wte = _floats(fn, "wte", wte, (2,))
    wpe = _floats(fn, "wpe", wpe, (2,))
    _same_dtype(fn, wte=wte, wpe=wpe)
    idx = check_ids(fn, "idx", idx, (2,), wte.shape[0])
    if wpe.shape[1] != wte.shape[1]:
        raise ValueError(
            f"{fn}: wpe has shape {wpe.shape}, expected {wte.shape[1]} columns to match wte "
            f"{wte.shape}"
        )
    T = idx.shape[1]
    if wpe.shape[0] < T:
        raise ValueError(f"{fn}: idx has shape {idx.shape}, T={T} exceeds wpe rows {wpe.shape}")
    return wte[idx] + wpe[:T]  # (B, T, C)


def embedding_backward(
    dout: FloatArray, idx: IntArray, vocab_size: int, block_size: int
) -> tuple[FloatArray, FloatArray]:
    """Return ``(dwte (V, C), dwpe (block_size, C))`` for the upstream gradient ``dout`` (B,T,C)."""
    fn = "embedding_backward"
    dout = _floats(fn, "dout", dout, (3,))
    V = _positive_int(fn, "vocab_size", vocab_size)
    maxT = _positive_int(fn, "block_size", block_size)
    idx = check_ids(fn, "idx", idx, (2,), V)
    B, T, C = dout.shape
    _shape_is(fn, "idx", idx, (B, T), f"to match dout {dout.shape}")
    if maxT < T:
        raise ValueError(f"{fn}: dout has shape {dout.shape}, T={T} exceeds block_size={maxT}")
    dwte = np.zeros((V, C), dtype=dout.dtype)  # (V, C)
    np.add.at(dwte, idx.reshape(-1), dout.reshape(-1, C))  # repeated ids must sum
    dwpe = np.zeros((maxT, C), dtype=dout.dtype)  # (maxT, C)
    dwpe[:T] = dout.sum(axis=0)  # (T, C)
    return dwte, dwpe


# ---- layernorm -----------------------------------------------------------------------------


def layernorm_forward(
    x: FloatArray, w: FloatArray, b: FloatArray, eps: float = LAYERNORM_EPS
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Normalise ``x`` over its last axis; return ``(out, mean, rstd)``.

    ``x`` is (N, C) or (B, T, C); ``mean`` and ``rstd`` have ``x.shape[:-1]``. The variance is the
    biased one (divide by C), as in PyTorch and llm.c.
    """
    fn = "layernorm_forward"
    x = _floats(fn, "x", x, (2, 3))
    w = _floats(fn, "w", w, (1,))
    b = _floats(fn, "b", b, (1,))
    dt = _same_dtype(fn, x=x, w=w, b=b)
    C = x.shape[-1]
    _shape_is(fn, "w", w, (C,), "to match x's last axis")
    _shape_is(fn, "b", b, (C,), "to match x's last axis")
    mean = x.mean(axis=-1)  # (..., )
    xc = x - mean[..., None]  # (..., C)
    var = (xc * xc).mean(axis=-1)  # (..., )
    rstd = dt.type(1.0) / np.sqrt(var + dt.type(eps))  # (..., )
    out = xc * rstd[..., None] * w + b  # (..., C)
    return out, mean, rstd


def layernorm_backward(
    dout: FloatArray, x: FloatArray, w: FloatArray, mean: FloatArray, rstd: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Return ``(dx, dw, db)`` for layernorm given the forward's ``mean`` and ``rstd``."""
    fn = "layernorm_backward"
    x = _floats(fn, "x", x, (2, 3))
    dout = _floats(fn, "dout", dout)
    w = _floats(fn, "w", w, (1,))
    mean = _floats(fn, "mean", mean)
    rstd = _floats(fn, "rstd", rstd)
    _same_dtype(fn, dout=dout, x=x, w=w, mean=mean, rstd=rstd)
    _shape_is(fn, "dout", dout, x.shape, "to match x")
    _shape_is(fn, "w", w, (x.shape[-1],), "to match x's last axis")
    _shape_is(fn, "mean", mean, x.shape[:-1], "to match x without its last axis")
    _shape_is(fn, "rstd", rstd, x.shape[:-1], "to match x without its last axis")
    norm = (x - mean[..., None]) * rstd[..., None]  # (..., C)
    lead = tuple(range(x.ndim - 1))
    db = dout.sum(axis=lead)  # (C,)
    dw = (dout * norm).sum(axis=lead)  # (C,)
    dnorm = dout * w  # (..., C)
    dx = rstd[..., None] * (
        dnorm
        - dnorm.mean(axis=-1, keepdims=True)
        - norm * (dnorm * norm).mean(axis=-1, keepdims=True)
    )  # (..., C)
    return dx, dw, db


# ---- matmul --------------------------------------------------------------------------------


def matmul_forward(x: FloatArray, W: FloatArray, b: FloatArray | None) -> FloatArray:
    """Return ``x @ W.T + b``; ``x`` (N, C) or (B, T, C), ``W`` (OC, C), ``b`` (OC,) or None."""
    fn = "matmul_forward"
    x = _floats(fn, "x", x, (2, 3))
    W = _floats(fn, "W", W, (2,))
    if W.shape[1] != x.shape[-1]:
        raise ValueError(
            f"{fn}: W has shape {W.shape}, expected (OC, {x.shape[-1]}) to match x's last axis"
        )
    out = x @ W.T  # (..., OC)
    if b is None:
        _same_dtype(fn, x=x, W=W)
        return out
    b = _floats(fn, "b", b, (1,))
    _same_dtype(fn, x=x, W=W, b=b)
    _shape_is(fn, "b", b, (W.shape[0],), "to match W's rows (OC)")
    return out + b  # (..., OC)


def matmul_backward(
    dout: FloatArray, x: FloatArray, W: FloatArray, has_bias: bool = True
) -> tuple[FloatArray, FloatArray, FloatArray | None]:
    """Return ``(dx, dW, db)`` for ``x @ W.T + b``; ``db`` is None when ``has_bias`` is False."""
    fn = "matmul_backward"
    x = _floats(fn, "x", x, (2, 3))
    W = _floats(fn, "W", W, (2,))
    dout = _floats(fn, "dout", dout, (x.ndim,))
    _same_dtype(fn, dout=dout, x=x, W=W)
    OC, C = W.shape
    _shape_is(fn, "x", x, (*x.shape[:-1], C), f"to match W {W.shape}")
    _shape_is(fn, "dout", dout, (*x.shape[:-1], OC), f"to match x {x.shape} and W {W.shape}")
    x2 = x.reshape(-1, C)  # (N, C)
    d2 = dout.reshape(-1, OC)  # (N, OC)
    dx = dout @ W  # (..., C)
    dW = d2.T @ x2  # (OC, C)
    db = d2.sum(axis=0) if has_bias else None  # (OC,)
    return dx, dW, db


# ---- attention -----------------------------------------------------------------------------


def _split_heads(qkv: FloatArray, n_head: int) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Split (B, T, 3C) into q, k, v, each (B, NH, T, hs); head h is channels [h*hs, (h+1)*hs)."""
    B, T, C3 = qkv.shape
    C = C3 // 3
    hs = C // n_head
    heads = qkv.reshape(B, T, 3, n_head, hs).transpose(2, 0, 3, 1, 4)  # (3, B, NH, T, hs)
    return heads[0], heads[1], heads[2]


def _check_attention(fn: str, qkv: object, n_head: object) -> tuple[FloatArray, int]:
    """Validate an attention input (B, T, 3C) and a head count dividing C."""
    qkv = _floats(fn, "qkv", qkv, (3,))
    NH = _positive_int(fn, "n_head", n_head)
    C3 = qkv.shape[2]
    if C3 % 3 != 0 or (C3 // 3) % NH != 0:
        raise ValueError(
            f"{fn}: qkv has shape {qkv.shape}, expected a last axis 3*C with C divisible by "
            f"n_head={NH}"
        )
    return qkv, NH


def attention_forward(qkv: FloatArray, n_head: int) -> tuple[FloatArray, FloatArray]:
    """Causal multi-head self-attention over ``qkv`` (B, T, 3C) = [q|k|v].

    Returns ``(out (B, T, C), att (B, NH, T, T))`` where ``att`` holds the softmax
    probabilities with exact zeros above the diagonal. Scores are scaled by 1/sqrt(head_size).
    """
    fn = "attention_forward"
    qkv, NH = _check_attention(fn, qkv, n_head)
    dt = qkv.dtype
    B, T, C3 = qkv.shape
    C = C3 // 3
    q, k, v = _split_heads(qkv, NH)  # each (B, NH, T, hs)
    scale = dt.type(1.0 / math.sqrt(C // NH))
    preatt = (q @ k.transpose(0, 1, 3, 2)) * scale  # (B, NH, T, T)
    future = np.triu(np.ones((T, T), dtype=bool), k=1)  # (T, T) True above the diagonal
    preatt = np.where(future, dt.type(-np.inf), preatt)  # (B, NH, T, T)
    # Every row has its diagonal unmasked, so the row max is finite and exp(-inf) is exactly 0.
    e = np.exp(preatt - preatt.max(axis=-1, keepdims=True))  # (B, NH, T, T)
    att = e / e.sum(axis=-1, keepdims=True)  # (B, NH, T, T)
    y = att @ v  # (B, NH, T, hs)
    out = y.transpose(0, 2, 1, 3).reshape(B, T, C)  # (B, T, C)
    return out, att


def attention_backward(
    dout: FloatArray, qkv: FloatArray, att: FloatArray, n_head: int
) -> FloatArray:
    """Return ``dqkv`` (B, T, 3C) for causal attention given the forward's ``att``."""
    fn = "attention_backward"
    qkv, NH = _check_attention(fn, qkv, n_head)
    dout = _floats(fn, "dout", dout, (3,))
    att = _floats(fn, "att", att, (4,))
    dt = _same_dtype(fn, dout=dout, qkv=qkv, att=att)
    B, T, C3 = qkv.shape
    C = C3 // 3
    hs = C // NH
    _shape_is(fn, "dout", dout, (B, T, C), f"to match qkv {qkv.shape}")
    _shape_is(fn, "att", att, (B, NH, T, T), f"to match qkv {qkv.shape} and n_head={NH}")
    q, k, v = _split_heads(qkv, NH)  # each (B, NH, T, hs)
    dy = dout.reshape(B, T, NH, hs).transpose(0, 2, 1, 3)  # (B, NH, T, hs)
    datt = dy @ v.transpose(0, 1, 3, 2)  # (B, NH, T, T)
    dv = att.transpose(0, 1, 3, 2) @ dy  # (B, NH, T, hs)
    # softmax backward; masked entries have att == 0, so their gradient is 0 too
    dpreatt = att * (datt - (datt * att).sum(axis=-1, keepdims=True))  # (B, NH, T, T)
    dpreatt = dpreatt * dt.type(1.0 / math.sqrt(hs))  # (B, NH, T, T)
    dq = dpreatt @ k  # (B, NH, T, hs)
    dk = dpreatt.transpose(0, 1, 3, 2) @ q  # (B, NH, T, hs)
    dqkv = np.stack([dq, dk, dv])  # (3, B, NH, T, hs)
    return dqkv.transpose(1, 3, 0, 2, 4).reshape(B, T, C3)  # (B, T, 3C)


def attention_flash_forward(qkv: FloatArray, n_head: int) -> tuple[FloatArray, FloatArray]:
    """FlashAttention's interface to causal attention: ``(out (B, T, C), lse (B, NH, T))``.

    ``out`` is :func:`attention_forward`'s; ``lse`` is the log-sum-exp of each row's scaled,
    masked scores (``max + log(sum exp(s - max))``), the one number per row a FlashAttention
    forward keeps instead of ``att``: its backward recomputes ``att = exp(s - lse)`` from it.
    """
    fn = "attention_flash_forward"
    qkv, NH = _check_attention(fn, qkv, n_head)
    dt = qkv.dtype
    C = qkv.shape[2] // 3
    q, k, _ = _split_heads(qkv, NH)  # each (B, NH, T, hs)
    T = qkv.shape[1]
    preatt = (q @ k.transpose(0, 1, 3, 2)) * dt.type(1.0 / math.sqrt(C // NH))  # (B, NH, T, T)
    preatt = np.where(np.triu(np.ones((T, T), dtype=bool), k=1), dt.type(-np.inf), preatt)
    m = preatt.max(axis=-1)  # (B, NH, T): finite, the diagonal is never masked
    lse = m + np.log(np.exp(preatt - m[..., None]).sum(axis=-1))  # (B, NH, T)
    out, _ = attention_forward(qkv, NH)
    return out, lse


def attention_flash_backward(
    dout: FloatArray, qkv: FloatArray, out: FloatArray, lse: FloatArray, n_head: int
) -> FloatArray:
    """``dqkv`` (B, T, 3C) of causal attention given the forward's ``out`` and ``lse``.

    The gradient is :func:`attention_backward`'s; only the saved state differs: ``att`` is
    recomputed as ``exp(scores - lse)`` (the FlashAttention-2 backward). ``out`` is part of the
    interface (FA2's ``D = rowsum(dout * out)``); the float64 oracle does not need it.
    """
    fn = "attention_flash_backward"
    qkv, NH = _check_attention(fn, qkv, n_head)
    dout = _floats(fn, "dout", dout, (3,))
    out = _floats(fn, "out", out, (3,))
    lse = _floats(fn, "lse", lse, (3,))
    dt = _same_dtype(fn, dout=dout, qkv=qkv, out=out, lse=lse)
    B, T, C3 = qkv.shape
    C = C3 // 3
    _shape_is(fn, "dout", dout, (B, T, C), f"to match qkv {qkv.shape}")
    _shape_is(fn, "out", out, (B, T, C), f"to match qkv {qkv.shape}")
    _shape_is(fn, "lse", lse, (B, NH, T), f"to match qkv {qkv.shape} and n_head={NH}")
    q, k, _ = _split_heads(qkv, NH)  # each (B, NH, T, hs)
    preatt = (q @ k.transpose(0, 1, 3, 2)) * dt.type(1.0 / math.sqrt(C // NH))  # (B, NH, T, T)
    future = np.triu(np.ones((T, T), dtype=bool), k=1)  # (T, T) True above the diagonal
    att = np.where(future, dt.type(0.0), np.exp(preatt - lse[..., None]))  # (B, NH, T, T)
    return attention_backward(dout, qkv, att, NH)


def attention_block_forward(
    x: FloatArray,
    Wq: FloatArray,
    bq: FloatArray,
    Wk: FloatArray,
    bk: FloatArray,
    Wv: FloatArray,
    bv: FloatArray,
    Wo: FloatArray,
    bo: FloatArray,
    n_head: int,
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]:
    """Attention with its own biased projections: ``(out, q, k, v, att)`` of ``x`` (B, T, C).

    Composed from the ops above: three Linears (weights [out, in], (C, C)) give q, k, v (each
    (B, T, C), the backward's cache); :func:`attention_forward` over q|k|v gives ``att``
    (B, NH, T, T) and the merged heads; the Wo Linear gives ``out`` (B, T, C).
    """
    q, k, v = (matmul_forward(x, W, b) for W, b in ((Wq, bq), (Wk, bk), (Wv, bv)))
    y, att = attention_forward(np.concatenate([q, k, v], axis=-1), n_head)  # (B, T, C)
    return matmul_forward(y, Wo, bo), q, k, v, att


def attention_block_backward(
    dout: FloatArray,
    x: FloatArray,
    Wq: FloatArray,
    Wk: FloatArray,
    Wv: FloatArray,
    Wo: FloatArray,
    q: FloatArray,
    k: FloatArray,
    v: FloatArray,
    att: FloatArray,
    n_head: int,
) -> tuple[FloatArray, ...]:
    """``(dx, dWq, dbq, dWk, dbk, dWv, dbv, dWo, dbo)`` of :func:`attention_block_forward`.

    Given the forward's cache (q, k, v, att): the Wo Linear's backward over the merged heads
    ``att @ v``, :func:`attention_backward`, then the three q/k/v Linears' backwards, whose
    input gradients sum into ``dx``.
    """
    fn = "attention_block_backward"
    qkv, NH = _check_attention(fn, np.concatenate([q, k, v], axis=-1), n_head)
    att = _floats(fn, "att", att, (4,))
    B, T, C3 = qkv.shape
    C = C3 // 3
    _shape_is(fn, "att", att, (B, NH, T, T), f"to match q {q.shape} and n_head={NH}")
    vh = _split_heads(qkv, NH)[2]  # (B, NH, T, hs)
    y = (att @ vh).transpose(0, 2, 1, 3).reshape(B, T, C)  # (B, T, C): the merged heads
    dy, dWo, dbo = matmul_backward(dout, y, Wo)
    dqkv = attention_backward(dy, qkv, att, NH)  # (B, T, 3C)
    dx = np.zeros_like(x)
    grads: list[FloatArray] = []
    for i, W in enumerate((Wq, Wk, Wv)):
        dxi, dW, db = matmul_backward(dqkv[..., i * C : (i + 1) * C], x, W)
        assert db is not None  # has_bias: every projection is biased
        dx = dx + dxi
        grads += [dW, db]
    assert dbo is not None
    return (dx, *grads, dWo, dbo)


# ---- gelu ----------------------------------------------------------------------------------


def gelu_forward(x: FloatArray) -> FloatArray:
    """Tanh-form GELU: ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``, elementwise."""
    x = _floats("gelu_forward", "x", x)
    dt = x.dtype
    s = dt.type(math.sqrt(2.0 / math.pi))
    inner = s * (x + dt.type(GELU_COEF) * x * x * x)
    return dt.type(0.5) * x * (dt.type(1.0) + np.tanh(inner))


def gelu_backward(dout: FloatArray, x: FloatArray) -> FloatArray:
    """Return ``dx`` for tanh-GELU given the upstream gradient ``dout`` (same shape as ``x``)."""
    fn = "gelu_backward"
    x = _floats(fn, "x", x)
    dout = _floats(fn, "dout", dout)
    dt = _same_dtype(fn, dout=dout, x=x)
    _shape_is(fn, "dout", dout, x.shape, "to match x")
    s = dt.type(math.sqrt(2.0 / math.pi))
    c = dt.type(GELU_COEF)
    half, one = dt.type(0.5), dt.type(1.0)
    th = np.tanh(s * (x + c * x * x * x))
    # 1 - tanh^2 rather than 1/cosh^2: cosh overflows for large |x|
    local: FloatArray = half * (one + th) + x * half * (one - th * th) * s * (
        one + dt.type(3.0) * c * x * x
    )
    return local * dout


# ---- residual ------------------------------------------------------------------------------


def residual_forward(a: FloatArray, b: FloatArray) -> FloatArray:
    """Return ``a + b`` (same shapes, same dtype)."""
    fn = "residual_forward"
    a = _floats(fn, "a", a)
    b = _floats(fn, "b", b)
    _same_dtype(fn, a=a, b=b)
    _shape_is(fn, "b", b, a.shape, "to match a")
    return a + b


def residual_backward(dout: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Return ``(da, db)``: both equal ``dout`` (as independent copies)."""
    dout = _floats("residual_backward", "dout", dout)
    return dout.copy(), dout.copy()


# ---- cross-entropy -------------------------------------------------------------------------


def crossentropy_forward(
    logits: FloatArray, targets: IntArray
) -> tuple[float, FloatArray, FloatArray]:
    """Softmax cross-entropy over rows of ``logits`` (N, V); return ``(mean, losses, probs)``.

    The softmax subtracts the row max. ``losses[n] = logsumexp(logits[n]) - logits[n, t]``,
    which equals ``-log probs[n, t]`` but stays finite when that probability underflows
    (logits of +-80 in float32).
    """
    fn = "crossentropy_forward"
    logits = _floats(fn, "logits", logits, (2,))
    N, V = logits.shape
    targets = check_ids(fn, "targets", targets, (1,), V)
    _shape_is(fn, "targets", targets, (N,), f"to match logits {logits.shape}")
    shifted = logits - logits.max(axis=1, keepdims=True)  # (N, V)
    e = np.exp(shifted)  # (N, V)
    total = e.sum(axis=1)  # (N,)
    probs = e / total[:, None]  # (N, V)
    losses = np.log(total) - shifted[np.arange(N), targets]  # (N,)
    return float(losses.mean()), losses, probs


def crossentropy_backward(probs: FloatArray, targets: IntArray, dloss: float) -> FloatArray:
    """Return ``dlogits = (probs - onehot(targets)) * dloss``; ``dloss`` is 1/N for a mean loss."""
    fn = "crossentropy_backward"
    probs = _floats(fn, "probs", probs, (2,))
    N, V = probs.shape
    targets = check_ids(fn, "targets", targets, (1,), V)
    _shape_is(fn, "targets", targets, (N,), f"to match probs {probs.shape}")
    dlogits = probs.copy()  # (N, V)
    dlogits[np.arange(N), targets] -= probs.dtype.type(1.0)
    return dlogits * probs.dtype.type(dloss)


# ---- AdamW ---------------------------------------------------------------------------------


def adamw_update(
    p: FloatArray,
    g: FloatArray,
    m: FloatArray,
    v: FloatArray,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    t: int,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """One AdamW step at 1-based step ``t``; return ``(p_new, m_new, v_new)`` (inputs untouched).

    ``m = b1 m + (1-b1) g``; ``v = b2 v + (1-b2) g^2``; bias-corrected ``mh = m/(1-b1^t)``,
    ``vh = v/(1-b2^t)``; ``p -= lr (mh / (sqrt(vh) + eps) + wd p)``.
    """
    fn = "adamw_update"
    p = _floats(fn, "p", p)
    g = _floats(fn, "g", g)
    m = _floats(fn, "m", m)
    v = _floats(fn, "v", v)
    dt = _same_dtype(fn, p=p, g=g, m=m, v=v)
    for name, a in (("g", g), ("m", m), ("v", v)):
        _shape_is(fn, name, a, p.shape, "to match p")
    step = _positive_int(fn, "t", t)
    one = dt.type(1.0)
    b1, b2 = dt.type(beta1), dt.type(beta2)
    m_new = b1 * m + (one - b1) * g
    v_new = b2 * v + (one - b2) * g * g
    m_hat = m_new / (one - b1**step)
    v_hat = v_new / (one - b2**step)
    update = m_hat / (np.sqrt(v_hat) + dt.type(eps)) + dt.type(weight_decay) * p
    return p - dt.type(lr) * update, m_new, v_new
