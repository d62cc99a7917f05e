"""A library's model handle, driven through its binding's model calls and ANY Instance.

:class:`BoundModel` calls each canonical model call (``harness.bindings.canonical.MODEL_CALLS``)
by the export and argument order its binding declares: arguments are passed by canonical name
and put in the export's order here, a ``fixed`` argument is left out (the library has it built
in). Pointers are plain ints and every buffer is the binding's allocator's; the host converts
each argument by the export's kinds (BigInt pointers for a Memory64 build), never this module.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from harness.abi import as_i32
from harness.bindings import Binding, CallBinding
from harness.bindings.model_layout import ModelDims
from harness.hosts.base import HostError, Instance, Scalar


class ModelCallError(HostError):
    """A model call returned its error value (NULL, -1) or is not bound."""


class BoundModel:
    """One model handle of a bound library (free it with :meth:`free`)."""

    def __init__(self, instance: Instance, binding: Binding, handle: int, dims: ModelDims) -> None:
        """Wrap ``handle``, a model made by ``binding``'s create call in ``instance``."""
        self.instance = instance
        self.binding = binding
        self.handle = handle
        self.dims = dims

    @classmethod
    def create(cls, instance: Instance, binding: Binding, dims: ModelDims, seed: int) -> BoundModel:
        """The create call with ``dims`` and ``seed``; ModelCallError if it returns NULL."""
        handle = _call(
            instance,
            binding,
            "create",
            vocab=dims.vocab,
            ctx=dims.ctx,
            n_layer=dims.n_layer,
            n_head=dims.n_head,
            d_model=dims.d_model,
            d_mlp=dims.d_mlp,
            seed=as_i32(seed),
        )
        if not handle:
            raise ModelCallError(
                f"{binding.model['create'].export} returned NULL for {dims} seed {seed}"
            )
        return cls(instance, binding, int(handle), dims)

    def call(self, name: str, **args: Scalar) -> Any:
        """Model call ``name`` on this handle with canonical ``args``."""
        return _call(self.instance, self.binding, name, model=self.handle, **args)

    def has(self, name: str) -> bool:
        """Whether the binding binds model call ``name``."""
        return name in self.binding.model

    def free(self) -> None:
        """The free call (nothing when unbound: the library then owns the handle's lifetime)."""
        if self.has("free"):
            self.call("free")

    def num_params(self) -> int:
        """The library's parameter count."""
        return int(self.call("num_params"))

    def set_data(self, data: bytes, train_frac: float) -> None:
        """Give the library ``data`` (it copies the bytes) split at ``train_frac``."""
        with self._buffer(data) as ptr:
            self.call("set_data", bytes=ptr, n=len(data), train_frac=train_frac)

    def train_step(self, batch: int, lr: float, grad_clip: float) -> float:
        """One training step: the batch's loss before the update."""
        return float(self.call("train_step", batch=batch, lr=lr, grad_clip=grad_clip))

    def eval(self, split: int, batch: int, n_batches: int) -> float:
        """Mean loss over the split's windows (0 train, 1 validation)."""
        return float(self.call("eval", split=split, batch=batch, n_batches=n_batches))

    def generate(
        self, prompt: bytes, max_new: int, temperature: float, top_k: int, seed: int
    ) -> bytes:
        """``max_new`` new bytes after ``prompt``; ModelCallError when the call fails."""
        with self._buffer(prompt) as p, self._buffer(bytes(max(max_new, 1))) as out:
            n = self.call(
                "generate",
                prompt=p,
                len=len(prompt),
                out=out,
                max_new=max_new,
                temperature=temperature,
                top_k=top_k,
                seed=as_i32(seed),
            )
            if n != max_new:
                raise ModelCallError(f"{self._export('generate')} returned {n}, not {max_new}")
            return self.instance.read(out, max_new)

    def state_bytes(self) -> int:
        """The size of an exported state."""
        return int(self.call("state_bytes"))

    def export_state(self) -> bytes:
        """The library's state (weights, optimizer moments, counters) as bytes."""
        n = self.state_bytes()
        with self._buffer(bytes(n)) as dst:
            wrote = self.call("export_state", dst=dst)
            if wrote != n:
                raise ModelCallError(f"{self._export('export_state')} wrote {wrote} of {n} bytes")
            return self.instance.read(dst, n)

    def import_state(self, blob: bytes) -> int:
        """Import a state; the call's return value (0 on success for lib2)."""
        with self._buffer(blob) as src:
            return int(self.call("import_state", src=src))

    def _export(self, name: str) -> str:
        return self.binding.model[name].export

    @contextmanager
    def _buffer(self, data: bytes) -> Iterator[int]:
        """``data`` in a fresh allocation of the binding's allocator, freed afterwards."""
        ptr = self.instance.alloc(max(len(data), 1))
        try:
            if data:
                self.instance.write(ptr, data)
            yield ptr
        finally:
            self.instance.free(ptr)


def ordered_args(binding: Binding, name: str, **values: Scalar) -> tuple[str, tuple[Scalar, ...]]:
    """Model call ``name``'s export and canonical ``values`` in its argument order (what
    ``Instance.call`` and ``Instance.time_calls`` take); ModelCallError if it is not bound."""
    call: CallBinding | None = binding.model.get(name)
    if call is None:
        raise ModelCallError(f"model call {name!r} is not bound by {binding.path}")
    missing = [a for a in call.args if a not in values]
    if missing:
        raise ModelCallError(f"{call.export}: no value for {', '.join(missing)}")
    return call.export, tuple(values[a] for a in call.args)


def _call(instance: Instance, binding: Binding, name: str, **values: Scalar) -> Any:
    """Call model call ``name`` with canonical ``values`` in the export's argument order."""
    export, args = ordered_args(binding, name, **values)
    return instance.call(export, *args)
