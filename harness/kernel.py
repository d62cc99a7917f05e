"""The kernel client: numpy in, numpy out, over ANY :class:`~harness.hosts.base.Instance`.

Written once and used for every host. :class:`Kernels` mirrors ``reference.ops`` (same names,
arguments and return values, so a parity check calls both the same way); :class:`KernelModel`
mirrors ``reference.model.GPT`` plus training and generation.

Every tensor crosses the bridge in ONE bulk write or read (a bridge call costs 20 µs to 0.6 ms
on some hosts, so per-element calls are never an option). Every op is called through the
artifact's binding (``harness.bindings``): its export, argument order, roles and weight layouts
come from the binding file, the bundled library's included. Accumulators are zeroed and outputs
pre-filled with a NaN sentinel before a call. Each op frees what it allocated in a ``finally``,
so a trap leaves no leak behind in a long-lived instance.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from harness.bindings import CallBinding
from harness.hosts.base import HostError, IncompatibleArtifact, Instance
from reference.defaults import TrainingDefaults
from reference.ops import LAYERNORM_EPS, check_ids
from reference.presets import ModelConfig, param_count, param_shapes

F32 = NDArray[np.float32]
I32 = NDArray[np.int32]


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

    def put(self, a: NDArray[Any], pad: int = 1) -> int:
        """Allocate ``pad`` times ``a``'s size and fill with ``a``'s bytes (one bulk write)."""
        ptr = self.alloc(a.nbytes * pad)
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


class FixedMismatch(ValueError):
    """A call asks for a value of an argument the binding fixes (builds into the export) at
    another value: the library cannot be called so. The ops check computes its reference with
    the fixed scalars (harness.checks.ops.prepare) and skips a case of another fixed dim."""

    def __init__(self, arg: str, asked: float, fixes: str) -> None:
        """``arg`` asked for at ``asked``; ``fixes`` says what the binding fixes, and where."""
        super().__init__(f"{arg}={asked:g}: {fixes}")
        self.arg, self.asked, self.fixes = arg, asked, fixes


class NotBound(LookupError):
    """The artifact's binding maps no export to a canonical op: the library lacks it.

    A failed lookup in the binding, not a HostError: the ops check turns it into a ``skipped``
    row, where a host's failure is an ``error``.
    """

    def __init__(self, op: str, binding: str, path: object) -> None:
        """``op`` is the canonical name; ``binding`` and ``path`` the binding's name and file."""
        super().__init__(f"{op} is not bound by the {binding} binding ({path})")
        self.op = op


# Every output buffer is pre-filled with NaN before the call: an op that fails to write (part
# of) an output leaves NaN there, which the parity check's non-finite stage reports by name,
# where a zero could pass for a small true value. Accumulators and scratch are zeroed instead
# (the op adds into them).
SENTINEL = np.float32(np.nan)


@dataclass(frozen=True)
class Override:
    """Another binding of one op than the artifact's: a hypothesis of the wrong-binding diagnosis.

    ``dim_shift`` adds to dims before the call (the off-by-one hypotheses); ``pad`` allocates
    every buffer ``pad`` times its size, so a hypothesis that hands the library larger dims
    than the buffers have (a swapped or shifted dim) reads and writes inside the allocation.
    """

    call: CallBinding
    dim_shift: Mapping[str, int] = field(default_factory=dict)
    pad: int = 1


def _flip(a: NDArray[Any]) -> NDArray[Any]:
    """A 2-D weight in the other layout ([OC, C] <-> [C, OC]), C-contiguous."""
    return np.ascontiguousarray(a.T)


class Kernels:
    """The library's ops, called through one instance by its binding (mirrors ``reference.ops``).

    Every op goes through the artifact's binding (``instance.artifact.bound().ops``): one
    invoker walks the bound export's arguments in order, so no op calls an export by a name of
    its own. An op the binding lacks raises :class:`NotBound`.
    """

    def __init__(self, instance: Instance, override: Override | None = None) -> None:
        """Use ``instance`` for every call, and ``override`` for its op (a diagnosis run)."""
        self.instance = instance
        self.override = override
        # the last call's buffer sizes (bytes) and dim/scalar values by canonical argument: what
        # the wrong-binding diagnosis pairs arguments by (harness.checks.ops_diagnosis)
        self.last_args: dict[str, float] = {}
        # the last export call as the library received it (``em_gelu(y=<420 bytes>, n=105)``):
        # an error names it, since a case's sizes are not the export's arguments
        self.last_call = ""

    def overridden(self, override: Override) -> Kernels:
        """These kernels with ``override`` replacing the binding of its op."""
        return Kernels(self.instance, override)

    def bound(self, op: str) -> CallBinding:
        """The binding of canonical ``op`` in use; NotBound when the artifact's binding lacks it."""
        if self.override is not None and self.override.call.op == op:
            return self.override.call
        binding = self.instance.artifact.bound()
        call = binding.ops.get(op)
        if call is None:
            raise NotBound(op, binding.name, binding.path)
        return call

    def fixed_scalar(self, op: str, arg: str, default: float) -> float:
        """The value the binding of ``op`` fixes ``arg`` at (built into the export), else
        ``default`` (the argument is passed, or ``op`` is not bound)."""
        try:
            return self.bound(op).fixed.get(arg, default)
        except NotBound:
            return default

    def binds(self, op: str, arg: str) -> bool:
        """True when ``op`` is bound and its export takes canonical argument ``arg``."""
        try:
            return arg in self.bound(op).args
        except NotBound:
            return False

    @contextmanager
    def _scope(self) -> Iterator[_Scope]:
        """A :class:`_Scope` whose allocations are freed when the block ends.

        When the block raises, its exception is the one that propagates: the frees are tried
        quietly and stop at the first failure. A call that trapped or hung may have taken the
        instance with it (a native trap kills the worker), and a free on that dead instance
        raises HostCrashed, which would otherwise replace the Trap or HostTimeout that says
        what happened.
        """
        scope = _Scope(self.instance)
        try:
            yield scope
        except BaseException:
            # free_quietly suppresses HostError only; on a dead instance its free_all fails on
            # the first request (a pipe host checks liveness before sending any), so nothing
            # more is sent to it
            self.instance.free_quietly(scope.ptrs[::-1])
            raise
        for ptr in reversed(scope.ptrs):
            self.instance.free(ptr)

    def _invoke(
        self,
        op: str,
        inputs: Mapping[str, NDArray[Any] | None],
        outputs: Mapping[str, tuple[int, ...] | None],
        scalars: Mapping[str, float],
    ) -> dict[str, Any]:
        """Call canonical ``op`` by its binding; return its outputs by canonical name.

        ``inputs`` are the input and inout buffers in canonical layout (float32 or int32
        arrays); ``outputs`` the shapes of the output, accumulator and scratch buffers;
        ``scalars`` the dims and scalars. A None input or output is an optional argument the
        caller does not use (a matmul without bias): NULL where the export takes it. The
        result holds every output, accumulator and inout buffer read back in canonical layout,
        and the export's return value under ``"result"``.
        """
        call = self.bound(op)
        shift = self.override.dim_shift if self.override else {}
        pad = self.override.pad if self.override else 1
        for name, fixed in call.fixed.items():
            if name in scalars and scalars[name] != fixed:
                raise FixedMismatch(
                    name,
                    scalars[name],
                    f"the library fixes {op}'s {name} at {fixed:g} "
                    f"(its binding of {call.export}, line {call.line})",
                )
        given = [n for n, v in (*inputs.items(), *outputs.items()) if v is not None]
        for name in given:
            if name not in call.args:
                raise ValueError(
                    f"{op}: the library's export {call.export} takes no {name!r} (its binding "
                    f"omits it, line {call.line}); call the op without it"
                )
        self.last_args, self.last_call = {}, ""
        shown: list[str] = []  # the export's arguments as passed, for :attr:`last_call`
        with self._scope() as s:
            argv: list[int | float] = []
            back: dict[str, tuple[int, tuple[int, ...], bool]] = {}  # name -> (ptr, shape, flip)
            for name in call.args:
                role = call.roles[name]
                flip = call.weight_layout(name) == "in_out"
                if role in ("dim", "scalar"):
                    self.last_args[name] = scalars[name]
                    argv.append(scalars[name] + shift.get(name, 0))
                    shown.append(f"{name}={argv[-1]:g}")
                    continue
                if role in ("input", "inout"):
                    a = inputs.get(name)
                    if a is None:
                        argv.append(0)
                        shown.append(f"{name}=NULL")
                        continue
                    self.last_args[name] = a.nbytes
                    shown.append(f"{name}=<{a.nbytes} bytes>")
                    ptr = s.put(_flip(a) if flip else a, pad)
                    if role == "inout":
                        back[name] = (ptr, a.shape[::-1] if flip else a.shape, flip)
                    argv.append(ptr)
                    continue
                shape = outputs.get(name)
                if shape is None:
                    argv.append(0)
                    shown.append(f"{name}=NULL")
                    continue
                stored = shape[::-1] if flip else shape
                fill = SENTINEL if role == "output" else np.float32(0.0)
                buffer = np.full(stored, fill, np.float32)
                self.last_args[name] = buffer.nbytes
                shown.append(f"{name}=<{buffer.nbytes} bytes>")
                ptr = s.put(buffer, pad)
                if role != "scratch":
                    back[name] = (ptr, stored, flip)
                argv.append(ptr)
            self.last_call = f"{call.export}({', '.join(shown)})"
            result = self.instance.call(call.export, *argv)
            got: dict[str, Any] = {"result": result}
            for name, (ptr, stored, flip) in back.items():
                a = s.get(ptr, stored)  # every output and inout (p, m, v) is float32
                got[name] = _flip(a) if flip else a
            return got

    # ---- embedding --------------------------------------------------------------------------

    def embedding_forward(self, idx: NDArray[Any], wte: NDArray[Any], wpe: NDArray[Any]) -> F32:
        """``wte[idx] + wpe[:T]`` (B, T, C)."""
        wte_, wpe_ = _f32("wte", wte, (2,)), _f32("wpe", wpe, (2,))
        V, C = wte_.shape
        idx_ = _ids("idx", idx, V, (2,))
        B, T = idx_.shape
        if wpe_.shape[1] != C or wpe_.shape[0] < T:
            raise ValueError(f"wpe has shape {wpe_.shape}, expected (>= {T}, {C})")
        got = self._invoke(
            "embedding_forward",
            {"idx": idx_, "wte": wte_, "wpe": wpe_},
            {"out": (B, T, C)},
            {"B": B, "T": T, "C": C},
        )
        return got["out"]  # type: ignore[no-any-return]

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
        got = self._invoke(
            "embedding_backward",
            {"dout": dout_, "idx": idx_},
            {"dwte": (vocab_size, C), "dwpe": (block_size, C)},
            {"B": B, "T": T, "C": C},
        )
        return got["dwte"], got["dwpe"]

    # ---- layernorm --------------------------------------------------------------------------

    def layernorm_forward(
        self, x: NDArray[Any], w: NDArray[Any], b: NDArray[Any], eps: float | None = None
    ) -> tuple[F32, F32, F32]:
        """``(out, mean, rstd)`` over the last axis of ``x`` (N, C) or (B, T, C).

        ``eps`` None is the library's own: the one its binding fixes (the bundled library's
        1e-5), else :data:`~reference.ops.LAYERNORM_EPS`. Another eps than a
        fixed one is a :class:`FixedMismatch` (a ValueError).
        """
        if eps is None:
            eps = self.fixed_scalar("layernorm_forward", "eps", LAYERNORM_EPS)
        x_ = _f32("x", x, (2, 3))
        C = x_.shape[-1]
        N = x_.size // C
        w_, b_ = _f32("w", w, (1,)), _f32("b", b, (1,))
        _shape("w", w_, (C,))
        _shape("b", b_, (C,))
        lead = x_.shape[:-1]
        got = self._invoke(
            "layernorm_forward",
            {"x": x_, "w": w_, "b": b_},
            {"out": x_.shape, "mean": lead, "rstd": lead},
            {"N": N, "C": C, "eps": float(eps)},
        )
        return got["out"], got["mean"], got["rstd"]

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
        got = self._invoke(
            "layernorm_backward",
            {"dout": dout_, "x": x_, "w": w_, "mean": mean_, "rstd": rstd_},
            {"dx": x_.shape, "dw": (C,), "db": (C,)},
            {"N": N, "C": C},
        )
        return got["dx"], got["dw"], got["db"]

    # ---- matmul -----------------------------------------------------------------------------

    def matmul_forward(self, x: NDArray[Any], W: NDArray[Any], b: NDArray[Any] | None) -> F32:
        """``x @ W.T + b`` for ``x`` (N, C) or (B, T, C), ``W`` (OC, C), ``b`` (OC,) or None.

        A bias on a library whose matmul takes none (its binding omits ``b``) is a ValueError.
        """
        x_, W_ = _f32("x", x, (2, 3)), _f32("W", W, (2,))
        OC, C = W_.shape
        if x_.shape[-1] != C:
            raise ValueError(
                f"x has shape {x_.shape}, expected last axis {C} to match W {W_.shape}"
            )
        N = x_.size // C
        b_ = None
        if b is not None:
            b_ = _f32("b", b, (1,))
            _shape("b", b_, (OC,))
        got = self._invoke(
            "matmul_forward",
            {"x": x_.reshape(N, C), "W": W_, "b": b_},
            {"out": (N, OC)},
            {"N": N, "C": C, "OC": OC},
        )
        return got["out"].reshape(*x_.shape[:-1], OC)  # type: ignore[no-any-return]

    def matmul_backward(
        self, dout: NDArray[Any], x: NDArray[Any], W: NDArray[Any], has_bias: bool = True
    ) -> tuple[F32, F32, F32 | None]:
        """``(dx, dW, db)``; ``db`` is None when ``has_bias`` is False (NULL dbias).

        ``has_bias`` on a library whose matmul has no bias (no ``db``) is a ValueError.
        """
        x_, W_ = _f32("x", x, (2, 3)), _f32("W", W, (2,))
        OC, C = W_.shape
        dout_ = _f32("dout", dout)
        _shape("x", x_, (*x_.shape[:-1], C))
        _shape("dout", dout_, (*x_.shape[:-1], OC))
        N = x_.size // C
        got = self._invoke(
            "matmul_backward",
            {"dout": dout_.reshape(N, OC), "x": x_.reshape(N, C), "W": W_},
            {"dx": (N, C), "dW": (OC, C), "db": (OC,) if has_bias else None},
            {"N": N, "C": C, "OC": OC},
        )
        return got["dx"].reshape(x_.shape), got["dW"], got.get("db")

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
        got = self._invoke(
            "attention_forward",
            {"qkv": qkv_},
            {"out": (B, T, C), "pre": tt, "att": tt},
            {"B": B, "T": T, "C": C, "NH": n_head},
        )
        return got["out"], got["att"]

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
        got = self._invoke(
            "attention_backward",
            {"dout": dout_, "qkv": qkv_, "att": att_},
            {"dqkv": qkv_.shape, "dpre": tt, "datt": tt},
            {"B": B, "T": T, "C": C, "NH": n_head},
        )
        return got["dqkv"]  # type: ignore[no-any-return]

    def attention_flash_forward(self, qkv: NDArray[Any], n_head: int) -> tuple[F32, F32]:
        """``(out (B, T, C), lse (B, NH, T))``: attention's FlashAttention interface."""
        qkv_ = _f32("qkv", qkv, (3,))
        B, T, C = self._attention_dims(qkv_, n_head)
        got = self._invoke(
            "attention_flash_forward",
            {"qkv": qkv_},
            {"out": (B, T, C), "lse": (B, n_head, T)},
            {"B": B, "T": T, "C": C, "NH": n_head},
        )
        return got["out"], got["lse"]

    def attention_flash_backward(
        self, dout: NDArray[Any], qkv: NDArray[Any], out: NDArray[Any], lse: NDArray[Any],
        n_head: int,
    ) -> F32:  # fmt: skip
        """``dqkv`` (B, T, 3C) given the flash forward's ``out`` and ``lse``."""
        qkv_ = _f32("qkv", qkv, (3,))
        B, T, C = self._attention_dims(qkv_, n_head)
        dout_, out_, lse_ = _f32("dout", dout), _f32("out", out), _f32("lse", lse)
        _shape("dout", dout_, (B, T, C))
        _shape("out", out_, (B, T, C))
        _shape("lse", lse_, (B, n_head, T))
        got = self._invoke(
            "attention_flash_backward",
            {"dout": dout_, "qkv": qkv_, "out": out_, "lse": lse_},
            {"dqkv": qkv_.shape},
            {"B": B, "T": T, "C": C, "NH": n_head},
        )
        return got["dqkv"]  # type: ignore[no-any-return]

    def _block_dims(self, x: F32, n_head: int) -> tuple[int, int, int]:
        B, T, C = x.shape
        if n_head < 1 or C % n_head:
            raise ValueError(f"x has shape {x.shape}, expected C divisible by n_head={n_head}")
        return B, T, C

    def attention_block_forward(
        self,
        x: NDArray[Any],
        Wq: NDArray[Any],
        bq: NDArray[Any],
        Wk: NDArray[Any],
        bk: NDArray[Any],
        Wv: NDArray[Any],
        bv: NDArray[Any],
        Wo: NDArray[Any],
        bo: NDArray[Any],
        n_head: int,
    ) -> tuple[F32, F32, F32, F32, F32]:
        """``(out, q, k, v, att)`` of attention with biased q/k/v/o projections over ``x``."""
        x_ = _f32("x", x, (3,))
        B, T, C = self._block_dims(x_, n_head)
        named = {"Wq": Wq, "bq": bq, "Wk": Wk, "bk": bk, "Wv": Wv, "bv": bv, "Wo": Wo, "bo": bo}
        params = {n: _f32(n, a) for n, a in named.items()}
        for n, a in params.items():
            _shape(n, a, (C, C) if n[0] == "W" else (C,))
        btc = (B, T, C)
        got = self._invoke(
            "attention_block_forward",
            {"x": x_, **params},
            {"out": btc, "q": btc, "k": btc, "v": btc, "att": (B, n_head, T, T)},
            {"B": B, "T": T, "C": C, "NH": n_head},
        )
        return got["out"], got["q"], got["k"], got["v"], got["att"]

    def attention_block_backward(
        self,
        dout: NDArray[Any],
        x: NDArray[Any],
        Wq: NDArray[Any],
        Wk: NDArray[Any],
        Wv: NDArray[Any],
        Wo: NDArray[Any],
        q: NDArray[Any],
        k: NDArray[Any],
        v: NDArray[Any],
        att: NDArray[Any],
        n_head: int,
    ) -> tuple[F32, ...]:
        """``(dx, dWq, dbq, dWk, dbk, dWv, dbv, dWo, dbo)`` given the forward's q, k, v, att."""
        x_ = _f32("x", x, (3,))
        B, T, C = self._block_dims(x_, n_head)
        named = {"Wq": Wq, "Wk": Wk, "Wv": Wv, "Wo": Wo, "q": q, "k": k, "v": v, "dout": dout}
        arrays = {n: _f32(n, a) for n, a in named.items()}
        for n, a in arrays.items():
            _shape(n, a, (C, C) if n[0] == "W" else x_.shape)
        att_ = _f32("att", att)
        _shape("att", att_, (B, n_head, T, T))
        grads = [f"d{w}{c}" for c in "qkvo" for w in "Wb"]  # dWq, dbq, ..., dWo, dbo
        got = self._invoke(
            "attention_block_backward",
            {"x": x_, "att": att_, **arrays},
            {"dx": x_.shape, **{g: (C, C) if g[1] == "W" else (C,) for g in grads}},
            {"B": B, "T": T, "C": C, "NH": n_head},
        )
        return (got["dx"], *(got[g] for g in grads))

    # ---- elementwise ------------------------------------------------------------------------

    def gelu_forward(self, x: NDArray[Any]) -> F32:
        """Tanh-GELU of ``x`` (any shape)."""
        x_ = _f32("x", x)
        got = self._invoke("gelu_forward", {"x": x_}, {"out": x_.shape}, {"N": x_.size})
        return got["out"]  # type: ignore[no-any-return]

    def gelu_backward(self, dout: NDArray[Any], x: NDArray[Any]) -> F32:
        """``dx`` of tanh-GELU."""
        x_, dout_ = _f32("x", x), _f32("dout", dout)
        _shape("dout", dout_, x_.shape)
        got = self._invoke(
            "gelu_backward", {"x": x_, "dout": dout_}, {"dx": x_.shape}, {"N": x_.size}
        )
        return got["dx"]  # type: ignore[no-any-return]

    def residual_forward(self, a: NDArray[Any], b: NDArray[Any]) -> F32:
        """``a + b``."""
        a_, b_ = _f32("a", a), _f32("b", b)
        _shape("b", b_, a_.shape)
        got = self._invoke(
            "residual_forward", {"a": a_, "b": b_}, {"out": a_.shape}, {"N": a_.size}
        )
        return got["out"]  # type: ignore[no-any-return]

    def residual_backward(self, dout: NDArray[Any]) -> tuple[F32, F32]:
        """``(da, db)``, both equal to ``dout``."""
        dout_ = _f32("dout", dout)
        shape = dout_.shape
        got = self._invoke(
            "residual_backward", {"dout": dout_}, {"da": shape, "db": shape}, {"N": dout_.size}
        )
        return got["da"], got["db"]

    # ---- cross-entropy ----------------------------------------------------------------------

    def crossentropy_forward(
        self, logits: NDArray[Any], targets: NDArray[Any]
    ) -> tuple[float, F32, F32]:
        """``(mean loss, losses (N,), probs (N, V))``; the mean is the export's f32 result."""
        logits_ = _f32("logits", logits, (2,))
        N, V = logits_.shape
        targets_ = _ids("targets", targets, V, (1,))
        _shape("targets", targets_, (N,))
        got = self._invoke(
            "crossentropy_forward",
            {"logits": logits_, "targets": targets_},
            {"losses": (N,), "probs": (N, V)},
            {"N": N, "V": V},
        )
        return float(got["result"]), got["losses"], got["probs"]

    def crossentropy_backward(
        self, probs: NDArray[Any], targets: NDArray[Any], dloss: float
    ) -> F32:
        """``dlogits = (probs - onehot(targets)) * dloss``."""
        probs_ = _f32("probs", probs, (2,))
        N, V = probs_.shape
        targets_ = _ids("targets", targets, V, (1,))
        _shape("targets", targets_, (N,))
        got = self._invoke(
            "crossentropy_backward",
            {"probs": probs_, "targets": targets_},
            {"dlogits": (N, V)},
            {"dloss": float(dloss), "N": N, "V": V},
        )
        return got["dlogits"]  # type: ignore[no-any-return]

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
        scalars = {
            "lr": lr,
            "beta1": beta1,
            "beta2": beta2,
            "eps": eps,
            "weight_decay": weight_decay,
        }
        got = self._invoke(
            "adamw_update",
            {"p": p_, "g": g_, "m": m_, "v": v_},
            {},
            {"n": p_.size, **{k: float(x) for k, x in scalars.items()}, "t": int(t)},
        )
        return got["p"], got["m"], got["v"]


def set_threads(instance: Instance, n: int) -> str:
    """Put ``n`` kernel threads in effect through the binding's setter (``tg_set_threads``,
    or a ``[threads]`` table's ``set``); "" on success, else why not (the count in effect)."""
    threads = instance.artifact.bound().threads
    if threads is None:
        if n == 1:
            return ""  # the library's own default: nothing to set
        return f"{instance.artifact.name}'s binding has no [threads] table: no {n}-thread path"
    got = instance.call(threads.set, n)
    if got == n:
        return ""
    return f"{threads.set}({n}) put {got} in effect: this artifact has no {n}-thread path"


# The client-placed buffers of tinygpt.h's model API calls (artifacts/include/tinygpt.h):
# export -> {argument index: (name, role)}. The rest of a model's memory is the library's own.
# The model check's bounds probe names a stray write by these (harness.checks.ops_bounds).
MODEL_BUFFERS: Mapping[str, Mapping[int, tuple[str, str]]] = {
    "tg_model_forward": {1: ("idx", "input"), 2: ("targets", "input")},
    "tg_model_train_step": {1: ("idx", "input"), 2: ("targets", "input")},
    "tg_model_generate": {1: ("prompt", "input"), 4: ("out", "output"), 5: ("logits", "output")},
}


def check_architecture(cfg: ModelConfig) -> None:
    """Raise IncompatibleArtifact unless tinygpt.h's model can express ``cfg``: it has no MLP
    width, bias or eps argument, so only GPT-2's architecture (4C MLP, every bias, eps 1e-5)."""
    if not cfg.is_gpt2:
        raise IncompatibleArtifact(
            f"preset {cfg.name!r} (MLP width {cfg.mlp_width}, biases {list(cfg.biases)}, "
            f"LayerNorm eps {cfg.ln_eps:g}) is not GPT-2's architecture, the only one "
            "tinygpt.h's model implements (4C MLP, every bias, eps 1e-5)"
        )


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
        check_architecture(cfg)
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
                raise HostError(self._nan_message("tg_model_forward"))
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
            raise HostError(self._nan_message("tg_model_train_step"))
        return loss

    def _nan_message(self, export: str) -> str:
        """Why ``export`` returned NaN, as far as the client can tell.

        tinygpt.h returns NaN for arguments it rejects, but a NaN loss also comes from the model's
        state: non-finite parameters (an earlier update, e.g. from AdamW moments that were never
        zeroed) give a NaN forward from valid arguments. The arguments were validated here
        (shapes, ids < vocab_size), so the parameters are read and their non-finite count named.
        """
        head = (f"{export} returned NaN: it rejected its arguments, or the loss is NaN from the "
                f"model's state")  # fmt: skip
        try:
            flat = np.frombuffer(
                self.instance.read(self._ptr("tg_model_params"), self.n_params * 4), np.float32
            )
        except HostError as exc:  # the diagnosis must not hide the NaN
            return f"{head} (parameters unreadable: {exc})"
        bad = int(np.count_nonzero(~np.isfinite(flat)))
        if bad:
            return (f"{head}: {bad} of {flat.size} parameters are not finite (an earlier update "
                    f"wrote them: AdamW's moments or gradients), the arguments passed the "
                    f"client's validation (shapes, token ids < vocab_size)")  # fmt: skip
        return (f"{head} (every parameter is finite; the arguments passed the client's "
                f"validation: shapes, token ids < vocab_size)")  # fmt: skip

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
