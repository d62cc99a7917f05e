"""The kernel client: numpy in, numpy out, over ANY :class:`~harness.hosts.base.Instance`.

Written once and used for every host. :class:`Kernels` mirrors ``reference.ops`` (same names,
arguments and return values, so a parity check calls both the same way); :class:`KernelModel`
mirrors ``reference.model.GPT`` plus training and generation.

Every tensor crosses the bridge in ONE bulk write or read (a bridge call costs 20 µs to 0.6 ms
on some hosts, so per-element calls are never an option). Gradient buffers are zeroed before a
backward call because the kernels accumulate into them. Each op frees what it allocated in a
``finally``, so a trap leaves no leak behind in a long-lived instance.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
from numpy.typing import NDArray

from harness.hosts.base import HostError, IncompatibleArtifact, Instance
from reference.defaults import TrainingDefaults
from reference.ops import check_ids
from reference.presets import ModelConfig, param_count, param_shapes

F32 = NDArray[np.float32]
I32 = NDArray[np.int32]

LAYERNORM_EPS = 1e-5  # fixed inside the kernels (tinygpt.h)


def _f32(name: str, a: object, ndims: tuple[int, ...] | None = None) -> F32:
    """``a`` as a C-contiguous float32 array, or ValueError naming it."""
    arr = np.asarray(a)
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"{name} has dtype {arr.dtype} (shape {arr.shape}), expected floats")
    if ndims is not None and arr.ndim not in ndims:
        want = " or ".join(f"{n}-D" for n in ndims)
        raise ValueError(f"{name} has shape {arr.shape}, expected {want}")
    return np.ascontiguousarray(arr, dtype=np.float32)


def _ids(name: str, a: object, upper: int, ndims: tuple[int, ...]) -> I32:
    """``a`` as int32 ids in [0, upper): an out-of-range id would read outside a kernel table."""
    arr = check_ids("kernel", name, np.asarray(a), ndims, upper)
    return np.ascontiguousarray(arr, dtype=np.int32)


def _shape(name: str, a: NDArray[Any], expected: tuple[int, ...]) -> None:
    if a.shape != expected:
        raise ValueError(f"{name} has shape {a.shape}, expected {expected}")


class _Scope:
    """Allocations of one client call; :meth:`Kernels._scope` frees them all at the end."""

    def __init__(self, inst: Instance) -> None:
        self.inst = inst
        self.ptrs: list[int] = []

    def alloc(self, nbytes: int) -> int:
        ptr = self.inst.alloc(max(nbytes, 1))
        self.ptrs.append(ptr)
        return ptr

    def put(self, a: NDArray[Any]) -> int:
        """Allocate and fill with ``a``'s bytes (one bulk write)."""
        ptr = self.alloc(a.nbytes)
        if a.nbytes:
            self.inst.write(ptr, a.tobytes())
        return ptr

    def zeros(self, shape: tuple[int, ...]) -> int:
        """Allocate a zeroed float32 buffer (the kernels accumulate into gradients)."""
        return self.put(np.zeros(shape, dtype=np.float32))

    def get(self, ptr: int, shape: tuple[int, ...], dtype: type[np.generic] = np.float32) -> Any:
        """Read a tensor back (one bulk read) as a fresh writable array."""
        n = math.prod(shape)
        itemsize = np.dtype(dtype).itemsize
        raw = self.inst.read(ptr, n * itemsize) if n else b""
        return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()


class Kernels:
    """The kernel library's ops, called through one instance (mirrors ``reference.ops``)."""

    def __init__(self, instance: Instance) -> None:
        """Use ``instance`` for every call."""
        self.instance = instance

    @contextmanager
    def _scope(self) -> Iterator[_Scope]:
        scope = _Scope(self.instance)
        try:
            yield scope
        finally:
            for ptr in reversed(scope.ptrs):
                self.instance.free(ptr)

    def _call(self, name: str, *args: int | float) -> Any:
        return self.instance.call(name, *args)

    # ---- embedding --------------------------------------------------------------------------

    def embedding_forward(self, idx: NDArray[Any], wte: NDArray[Any], wpe: NDArray[Any]) -> F32:
        """``wte[idx] + wpe[:T]`` (B, T, C)."""
        wte_, wpe_ = _f32("wte", wte, (2,)), _f32("wpe", wpe, (2,))
        V, C = wte_.shape
        idx_ = _ids("idx", idx, V, (2,))
        B, T = idx_.shape
        if wpe_.shape[1] != C or wpe_.shape[0] < T:
            raise ValueError(f"wpe has shape {wpe_.shape}, expected (>= {T}, {C})")
        with self._scope() as s:
            out = s.alloc(B * T * C * 4)
            self._call("tg_embedding_forward", out, s.put(idx_), s.put(wte_), s.put(wpe_), B, T, C)
            return s.get(out, (B, T, C))  # type: ignore[no-any-return]

    def embedding_backward(
        self, dout: NDArray[Any], idx: NDArray[Any], vocab_size: int, block_size: int
    ) -> tuple[F32, F32]:
        """``(dwte (V, C), dwpe (block_size, C))``."""
        dout_ = _f32("dout", dout, (3,))
        B, T, C = dout_.shape
        idx_ = _ids("idx", idx, vocab_size, (2,))
        _shape("idx", idx_, (B, T))
        if block_size < T:
            raise ValueError(f"block_size={block_size} is smaller than T={T}")
        with self._scope() as s:
            dwte, dwpe = s.zeros((vocab_size, C)), s.zeros((block_size, C))
            self._call("tg_embedding_backward", dwte, dwpe, s.put(dout_), s.put(idx_), B, T, C)
            return s.get(dwte, (vocab_size, C)), s.get(dwpe, (block_size, C))

    # ---- layernorm --------------------------------------------------------------------------

    def layernorm_forward(
        self, x: NDArray[Any], w: NDArray[Any], b: NDArray[Any], eps: float = LAYERNORM_EPS
    ) -> tuple[F32, F32, F32]:
        """``(out, mean, rstd)`` over the last axis of ``x`` (N, C) or (B, T, C)."""
        if eps != LAYERNORM_EPS:
            raise ValueError(f"eps={eps}: the kernels fix LayerNorm eps at {LAYERNORM_EPS}")
        x_ = _f32("x", x, (2, 3))
        C = x_.shape[-1]
        N = x_.size // C
        w_, b_ = _f32("w", w, (1,)), _f32("b", b, (1,))
        _shape("w", w_, (C,))
        _shape("b", b_, (C,))
        with self._scope() as s:
            out, mean, rstd = s.alloc(x_.nbytes), s.alloc(N * 4), s.alloc(N * 4)
            self._call(
                "tg_layernorm_forward", out, mean, rstd, s.put(x_), s.put(w_), s.put(b_), N, C
            )
            lead = x_.shape[:-1]
            return s.get(out, x_.shape), s.get(mean, lead), s.get(rstd, lead)

    def layernorm_backward(
        self,
        dout: NDArray[Any],
        x: NDArray[Any],
        w: NDArray[Any],
        mean: NDArray[Any],
        rstd: NDArray[Any],
    ) -> tuple[F32, F32, F32]:
        """``(dx, dw, db)`` given the forward's ``mean`` and ``rstd``."""
        x_ = _f32("x", x, (2, 3))
        C = x_.shape[-1]
        N = x_.size // C
        dout_, w_ = _f32("dout", dout), _f32("w", w, (1,))
        mean_, rstd_ = _f32("mean", mean), _f32("rstd", rstd)
        _shape("dout", dout_, x_.shape)
        _shape("w", w_, (C,))
        _shape("mean", mean_, x_.shape[:-1])
        _shape("rstd", rstd_, x_.shape[:-1])
        with self._scope() as s:
            dx, dw, db = s.zeros(x_.shape), s.zeros((C,)), s.zeros((C,))
            self._call(
                "tg_layernorm_backward",
                dx,
                dw,
                db,
                s.put(dout_),
                s.put(x_),
                s.put(w_),
                s.put(mean_),
                s.put(rstd_),
                N,
                C,
            )
            return s.get(dx, x_.shape), s.get(dw, (C,)), s.get(db, (C,))

    # ---- matmul -----------------------------------------------------------------------------

    def matmul_forward(self, x: NDArray[Any], W: NDArray[Any], b: NDArray[Any] | None) -> F32:
        """``x @ W.T + b`` for ``x`` (N, C) or (B, T, C), ``W`` (OC, C), ``b`` (OC,) or None."""
        x_, W_ = _f32("x", x, (2, 3)), _f32("W", W, (2,))
        OC, C = W_.shape
        if x_.shape[-1] != C:
            raise ValueError(
                f"x has shape {x_.shape}, expected last axis {C} to match W {W_.shape}"
            )
        N = x_.size // C
        with self._scope() as s:
            bias = 0
            if b is not None:
                b_ = _f32("b", b, (1,))
                _shape("b", b_, (OC,))
                bias = s.put(b_)
            out = s.alloc(N * OC * 4)
            self._call("tg_matmul_forward", out, s.put(x_), s.put(W_), bias, N, C, OC)
            return s.get(out, (*x_.shape[:-1], OC))  # type: ignore[no-any-return]

    def matmul_backward(
        self, dout: NDArray[Any], x: NDArray[Any], W: NDArray[Any], has_bias: bool = True
    ) -> tuple[F32, F32, F32 | None]:
        """``(dx, dW, db)``; ``db`` is None when ``has_bias`` is False (NULL dbias)."""
        x_, W_ = _f32("x", x, (2, 3)), _f32("W", W, (2,))
        OC, C = W_.shape
        dout_ = _f32("dout", dout)
        _shape("x", x_, (*x_.shape[:-1], C))
        _shape("dout", dout_, (*x_.shape[:-1], OC))
        N = x_.size // C
        with self._scope() as s:
            dx, dW = s.zeros(x_.shape), s.zeros((OC, C))
            db = s.zeros((OC,)) if has_bias else 0
            self._call(
                "tg_matmul_backward", dx, dW, db, s.put(dout_), s.put(x_), s.put(W_), N, C, OC
            )
            return (
                s.get(dx, x_.shape),
                s.get(dW, (OC, C)),
                s.get(db, (OC,)) if has_bias else None,
            )

    # ---- attention --------------------------------------------------------------------------

    @staticmethod
    def _attention_dims(qkv: F32, n_head: int) -> tuple[int, int, int]:
        B, T, C3 = qkv.shape
        if n_head < 1 or C3 % 3 or (C3 // 3) % n_head:
            raise ValueError(
                f"qkv has shape {qkv.shape}, expected a last axis 3*C with C divisible by "
                f"n_head={n_head}"
            )
        return B, T, C3 // 3

    def attention_forward(self, qkv: NDArray[Any], n_head: int) -> tuple[F32, F32]:
        """``(out (B, T, C), att (B, NH, T, T))`` of causal attention over ``qkv`` (B, T, 3C)."""
        qkv_ = _f32("qkv", qkv, (3,))
        B, T, C = self._attention_dims(qkv_, n_head)
        tt = (B, n_head, T, T)
        with self._scope() as s:
            out, pre, att = (
                s.alloc(B * T * C * 4),
                s.alloc(math.prod(tt) * 4),
                s.alloc(math.prod(tt) * 4),
            )
            self._call("tg_attention_forward", out, pre, att, s.put(qkv_), B, T, C, n_head)
            return s.get(out, (B, T, C)), s.get(att, tt)

    def attention_backward(
        self, dout: NDArray[Any], qkv: NDArray[Any], att: NDArray[Any], n_head: int
    ) -> F32:
        """``dqkv`` (B, T, 3C) given the forward's ``att``."""
        qkv_ = _f32("qkv", qkv, (3,))
        B, T, C = self._attention_dims(qkv_, n_head)
        dout_, att_ = _f32("dout", dout), _f32("att", att)
        tt = (B, n_head, T, T)
        _shape("dout", dout_, (B, T, C))
        _shape("att", att_, tt)
        with self._scope() as s:
            dqkv, dpre, datt = s.zeros(qkv_.shape), s.zeros(tt), s.zeros(tt)
            self._call(
                "tg_attention_backward",
                dqkv,
                dpre,
                datt,
                s.put(dout_),
                s.put(qkv_),
                s.put(att_),
                B,
                T,
                C,
                n_head,
            )
            return s.get(dqkv, qkv_.shape)  # type: ignore[no-any-return]

    # ---- elementwise ------------------------------------------------------------------------

    def gelu_forward(self, x: NDArray[Any]) -> F32:
        """Tanh-GELU of ``x`` (any shape)."""
        x_ = _f32("x", x)
        with self._scope() as s:
            out = s.alloc(x_.nbytes)
            self._call("tg_gelu_forward", out, s.put(x_), x_.size)
            return s.get(out, x_.shape)  # type: ignore[no-any-return]

    def gelu_backward(self, dout: NDArray[Any], x: NDArray[Any]) -> F32:
        """``dx`` of tanh-GELU."""
        x_, dout_ = _f32("x", x), _f32("dout", dout)
        _shape("dout", dout_, x_.shape)
        with self._scope() as s:
            dx = s.zeros(x_.shape)
            self._call("tg_gelu_backward", dx, s.put(x_), s.put(dout_), x_.size)
            return s.get(dx, x_.shape)  # type: ignore[no-any-return]

    def residual_forward(self, a: NDArray[Any], b: NDArray[Any]) -> F32:
        """``a + b``."""
        a_, b_ = _f32("a", a), _f32("b", b)
        _shape("b", b_, a_.shape)
        with self._scope() as s:
            out = s.alloc(a_.nbytes)
            self._call("tg_residual_forward", out, s.put(a_), s.put(b_), a_.size)
            return s.get(out, a_.shape)  # type: ignore[no-any-return]

    def residual_backward(self, dout: NDArray[Any]) -> tuple[F32, F32]:
        """``(da, db)``, both equal to ``dout``."""
        dout_ = _f32("dout", dout)
        with self._scope() as s:
            da, db = s.zeros(dout_.shape), s.zeros(dout_.shape)
            self._call("tg_residual_backward", da, db, s.put(dout_), dout_.size)
            return s.get(da, dout_.shape), s.get(db, dout_.shape)

    # ---- cross-entropy ----------------------------------------------------------------------

    def crossentropy_forward(
        self, logits: NDArray[Any], targets: NDArray[Any]
    ) -> tuple[float, F32, F32]:
        """``(mean loss, losses (N,), probs (N, V))``."""
        logits_ = _f32("logits", logits, (2,))
        N, V = logits_.shape
        targets_ = _ids("targets", targets, V, (1,))
        _shape("targets", targets_, (N,))
        with self._scope() as s:
            losses, probs = s.alloc(N * 4), s.alloc(logits_.nbytes)
            mean = self._call(
                "tg_crossentropy_forward", losses, probs, s.put(logits_), s.put(targets_), N, V
            )
            return float(mean), s.get(losses, (N,)), s.get(probs, (N, V))

    def crossentropy_backward(
        self, probs: NDArray[Any], targets: NDArray[Any], dloss: float
    ) -> F32:
        """``dlogits = (probs - onehot(targets)) * dloss``."""
        probs_ = _f32("probs", probs, (2,))
        N, V = probs_.shape
        targets_ = _ids("targets", targets, V, (1,))
        _shape("targets", targets_, (N,))
        with self._scope() as s:
            d = s.zeros((N, V))
            self._call(
                "tg_crossentropy_backward", d, s.put(probs_), s.put(targets_), float(dloss), N, V
            )
            return s.get(d, (N, V))  # type: ignore[no-any-return]

    # ---- AdamW ------------------------------------------------------------------------------

    def adamw_update(
        self,
        p: NDArray[Any],
        g: NDArray[Any],
        m: NDArray[Any],
        v: NDArray[Any],
        lr: float,
        beta1: float,
        beta2: float,
        eps: float,
        weight_decay: float,
        t: int,
    ) -> tuple[F32, F32, F32]:
        """One AdamW step at 1-based ``t``; returns ``(p, m, v)`` (inputs untouched)."""
        p_ = _f32("p", p)
        g_, m_, v_ = _f32("g", g), _f32("m", m), _f32("v", v)
        for name, a in (("g", g_), ("m", m_), ("v", v_)):
            _shape(name, a, p_.shape)
        if t < 1:
            raise ValueError(f"t={t}: AdamW steps are 1-based")
        with self._scope() as s:
            pp, mp, vp = s.put(p_), s.put(m_), s.put(v_)
            self._call(
                "tg_adamw_update",
                pp,
                s.put(g_),
                mp,
                vp,
                p_.size,
                float(lr),
                float(beta1),
                float(beta2),
                float(eps),
                float(weight_decay),
                int(t),
            )
            return s.get(pp, p_.shape), s.get(mp, p_.shape), s.get(vp, p_.shape)


class KernelModel:
    """A ``tg_model`` handle inside one instance, driven with numpy arrays."""

    def __init__(self, instance: Instance, cfg: ModelConfig, handle: int) -> None:
        """Wrap an existing handle (use :meth:`create`)."""
        self.instance = instance
        self.cfg = cfg
        self.handle = handle
        self.n_params = param_count(cfg)
        self._kernels = Kernels(instance)

    @classmethod
    def create(cls, instance: Instance, cfg: ModelConfig, flat_params: NDArray[Any]) -> KernelModel:
        """Create a model of ``cfg`` and load ``flat_params`` (PARAM_NAMES order) into it."""
        if not cfg.is_gpt2:  # tinygpt.h's model has no MLP width, bias or eps argument
            raise IncompatibleArtifact(
                f"preset {cfg.name!r} (MLP width {cfg.mlp_width}, biases {list(cfg.biases)}, "
                f"LayerNorm eps {cfg.ln_eps:g}) is not GPT-2's architecture, the only one "
                "tinygpt.h's model implements (4C MLP, every bias, eps 1e-5)"
            )
        flat = _f32("flat_params", flat_params, (1,))
        n = param_count(cfg)
        if flat.shape != (n,):
            raise ValueError(
                f"flat_params has shape {flat.shape}, expected ({n},) for {cfg.name!r}"
            )
        handle = int(
            instance.call(
                "tg_model_create",
                cfg.vocab_size,
                cfg.block_size,
                cfg.n_embd,
                cfg.n_layer,
                cfg.n_head,
            )
            or 0
        )
        if not handle:
            raise HostError(f"tg_model_create failed for preset {cfg.name!r} (bad dims or OOM)")
        model = cls(instance, cfg, handle)
        try:
            got = int(instance.call("tg_model_num_params", handle) or 0)
            if got != n:
                raise HostError(f"tg_model_num_params says {got}, preset {cfg.name!r} has {n}")
            instance.write(model._ptr("tg_model_params"), flat.tobytes())
        except BaseException:
            model.free()
            raise
        return model

    def _ptr(self, export: str) -> int:
        ptr = int(self.instance.call(export, self._live()) or 0)
        if not ptr:
            raise HostError(f"{export} returned NULL")
        return ptr

    def _live(self) -> int:
        if not self.handle:
            raise HostError("KernelModel is freed")
        return self.handle

    def _tokens(self, name: str, a: NDArray[Any]) -> I32:
        arr = _ids(name, a, self.cfg.vocab_size, (2,))
        if not 1 <= arr.shape[1] <= self.cfg.block_size or arr.shape[0] < 1:
            raise ValueError(
                f"{name} has shape {arr.shape}, expected (B, T) with 1 <= T <= "
                f"block_size={self.cfg.block_size}"
            )
        return arr

    def _split(self, flat: F32) -> dict[str, F32]:
        out: dict[str, F32] = {}
        offset = 0
        for name, shape in param_shapes(self.cfg).items():
            size = math.prod(shape)
            out[name] = flat[offset : offset + size].reshape(shape)
            offset += size
        return out

    def forward(
        self, idx: NDArray[Any], targets: NDArray[Any] | None = None
    ) -> tuple[F32, float | None]:
        """``(logits (B, T, V), mean loss or None)``; activations stay for :meth:`backward`."""
        idx_ = self._tokens("idx", idx)
        B, T = idx_.shape
        tg = None if targets is None else self._tokens("targets", targets)
        if tg is not None:
            _shape("targets", tg, idx_.shape)
        with self._kernels._scope() as s:
            loss = float(
                self.instance.call(
                    "tg_model_forward",
                    self._live(),
                    s.put(idx_),
                    0 if tg is None else s.put(tg),
                    B,
                    T,
                )
                or 0.0
            )
            if math.isnan(loss):
                raise HostError("tg_model_forward rejected its arguments (returned NaN)")
            logits = s.get(self._ptr("tg_model_logits"), (B, T, self.cfg.vocab_size))
        return logits, (None if tg is None else loss)

    def grads(self) -> dict[str, F32]:
        """The current gradient buffer by parameter name, in PARAM_NAMES order."""
        flat = np.frombuffer(
            self.instance.read(self._ptr("tg_model_grads"), self.n_params * 4), dtype=np.float32
        ).copy()
        return self._split(flat)

    def backward(self) -> dict[str, F32]:
        """Fresh gradients of the last forward's mean loss, by name (zeroes, then accumulates)."""
        h = self._live()
        self.instance.call("tg_model_zero_grad", h)
        self.instance.call("tg_model_backward", h)
        return self.grads()

    def grad_norm(self) -> float:
        """Global L2 norm of the current gradients."""
        return float(self.instance.call("tg_model_grad_norm", self._live()) or 0.0)

    def adamw(self, lr: float, defaults: TrainingDefaults, t: int) -> None:
        """One clipped AdamW step over the current gradients with ``defaults``' betas/eps/wd."""
        self.instance.call(
            "tg_model_adamw",
            self._live(),
            float(lr),
            float(defaults.beta1),
            float(defaults.beta2),
            float(defaults.eps),
            float(defaults.weight_decay),
            float(defaults.grad_clip),
            int(t),
        )

    def train_step(
        self,
        x: NDArray[Any],
        y: NDArray[Any],
        lr: float,
        defaults: TrainingDefaults,
        t: int,
    ) -> float:
        """forward + zero_grad + backward + adamw in one call; the loss before the update."""
        x_, y_ = self._tokens("x", x), self._tokens("y", y)
        _shape("y", y_, x_.shape)
        B, T = x_.shape
        with self._kernels._scope() as s:
            loss = float(
                self.instance.call(
                    "tg_model_train_step",
                    self._live(),
                    s.put(x_),
                    s.put(y_),
                    B,
                    T,
                    float(lr),
                    float(defaults.beta1),
                    float(defaults.beta2),
                    float(defaults.eps),
                    float(defaults.weight_decay),
                    float(defaults.grad_clip),
                    int(t),
                )
                or 0.0
            )
        if math.isnan(loss):
            raise HostError("tg_model_train_step rejected its arguments (returned NaN)")
        return loss

    def generate(
        self,
        prompt: Sequence[int],
        n_new: int,
        use_kv_cache: bool,
        temperature: float = 0.0,
        seed: int = 0,
        top_k: int = 0,
    ) -> list[int]:
        """``n_new`` tokens after ``prompt`` (B=1); greedy at temperature 0, top_k 0 keeps all."""
        return self.generate_logged(prompt, n_new, use_kv_cache, temperature, seed, top_k)[0]

    def generate_logged(
        self,
        prompt: Sequence[int],
        n_new: int,
        use_kv_cache: bool,
        temperature: float = 0.0,
        seed: int = 0,
        top_k: int = 0,
    ) -> tuple[list[int], F32]:
        """Tokens as :meth:`generate`, plus the logits (n_new, V) each token was picked from."""
        p = _ids("prompt", np.asarray(list(prompt), dtype=np.int64), self.cfg.vocab_size, (1,))
        if p.size == 0:
            raise ValueError("prompt is empty; it needs at least one token")
        if n_new < 0:
            raise ValueError(f"n_new must be >= 0, got {n_new}")
        if not math.isfinite(temperature) or temperature < 0:
            raise ValueError(f"temperature must be finite and >= 0, got {temperature}")
        if top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {top_k}")
        V = self.cfg.vocab_size
        if n_new == 0:
            return [], np.zeros((0, V), np.float32)
        with self._kernels._scope() as s:
            out = s.alloc(n_new * 4)
            logits = s.alloc(n_new * V * 4)
            written = int(
                self.instance.call(
                    "tg_model_generate",
                    self._live(),
                    s.put(p),
                    p.size,
                    n_new,
                    out,
                    logits,
                    int(use_kv_cache),
                    float(temperature),
                    int(top_k),
                    int(seed) & 0xFFFFFFFF,
                )
                or 0
            )
            if written != n_new:
                raise HostError(f"tg_model_generate wrote {written} of {n_new} tokens")
            tokens = [int(t) for t in s.get(out, (n_new,), np.int32)]
            return tokens, s.get(logits, (n_new, V))

    def params(self) -> dict[str, F32]:
        """The current parameters by name, in PARAM_NAMES order."""
        flat = np.frombuffer(
            self.instance.read(self._ptr("tg_model_params"), self.n_params * 4), dtype=np.float32
        ).copy()
        return self._split(flat)

    def free(self) -> None:
        """Free the model inside the instance (idempotent)."""
        if self.handle:
            handle, self.handle = self.handle, 0
            self.instance.call("tg_model_free", handle)

    close = free
