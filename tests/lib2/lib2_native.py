"""lib2's native .so through ctypes, and its state mapped onto the reference model (tests only).

This is the test suite's own thin client of ``artifacts/lib2/include/lib2.h``: it proves the
library. Its parameter layout and state sections are the binding's (``[model.params]``,
``[model.state]`` of ``artifacts/lib2/lib2.binding.toml``, read by
``harness.bindings.model_layout``): one source for the tests and the harness's model check.
"""

from __future__ import annotations

import ctypes
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from harness.bindings import load_binding_cached
from harness.bindings.model_layout import ModelDims, ParamLayout, layout_of
from harness.build import REPO_ROOT
from harness.build_lib2 import LIB2_BINDING
from reference.model import Params

F32 = NDArray[np.float32]
VOCAB = 256
_P = ctypes.c_void_p
_I = ctypes.c_int
_F = ctypes.c_float
_U = ctypes.c_uint

_SIGNATURES: dict[str, tuple[Any, list[Any]]] = {
    "tg_malloc": (_P, [_I]),
    "tg_free": (None, [_P]),
    "matmul_forward": (None, [_P, _P, _P, _I, _I, _I]),
    "matmul_backward": (None, [_P, _P, _P, _P, _P, _I, _I, _I]),
    "layernorm_forward": (None, [_P, _P, _P, _P, _P, _P, _I, _I, _F]),
    "layernorm_backward": (None, [_P] * 8 + [_I, _I]),
    "attention_forward": (None, [_P] * 14 + [_I] * 4),
    "attention_backward": (None, [_P] * 19 + [_I] * 4),
    "adamw_step": (None, [_P, _P, _P, _P, _I, _F, _F, _F, _F, _F, _I]),
    "tg_model_create": (_P, [_I] * 6 + [_U]),
    "tg_model_free": (None, [_P]),
    "tg_model_num_params": (_I, [_P]),
    "tg_set_data": (None, [_P, _P, _I, _F]),
    "tg_train_step": (_F, [_P, _I, _F, _F]),
    "tg_eval": (_F, [_P, _I, _I, _I]),
    "tg_generate": (_I, [_P, _P, _I, _P, _I, _F, _I, _U]),
    "tg_state_bytes": (_I, [_P]),
    "tg_export_state": (_I, [_P, _P]),
    "tg_import_state": (_I, [_P, _P]),
}


def load(path: Path) -> ctypes.CDLL:
    """Load the .so and declare every export's signature (lib2.h)."""
    lib = ctypes.CDLL(str(path))
    for name, (res, args) in _SIGNATURES.items():
        fn = getattr(lib, name)
        fn.restype = res
        fn.argtypes = args
    return lib


def ptr(a: NDArray[Any]) -> int:
    """The address of a C-contiguous array's data (asserting the layout lib2 expects)."""
    assert a.flags["C_CONTIGUOUS"], "lib2 takes contiguous row-major buffers"
    return int(a.ctypes.data)


def f32(a: NDArray[Any]) -> F32:
    """A contiguous float32 copy of ``a``."""
    return np.ascontiguousarray(a, dtype=np.float32)


def num_params(d: ModelDims) -> int:
    """lib2.h's formula: vocab C + ctx C + L (4 C^2 + 2 C F + 9 C + F) + 2 C."""
    C, F, L = d.d_model, d.d_mlp, d.n_layer
    return d.vocab * C + d.ctx * C + L * (4 * C * C + 2 * C * F + 9 * C + F) + 2 * C


def split(d: ModelDims, flat: NDArray[Any]) -> dict[tuple[str, int | None], NDArray[Any]]:
    """Cut a flat lib2 buffer into its tensors (views), keyed by ``(name, layer)``: the
    binding's ``[model.params]`` layout."""
    return _params().split(d, flat)


def to_reference(d: ModelDims, flat: NDArray[Any], dtype: type[np.floating[Any]]) -> Params:
    """lib2's flat parameters as the reference model's ``{name: array}`` (the binding's map)."""
    return _params().to_reference(d.reference_config("lib2"), flat, dtype)


def _params() -> ParamLayout:
    layout = layout_of(load_binding_cached(REPO_ROOT / LIB2_BINDING)).params
    assert layout is not None, "lib2's binding declares its [model.params]"
    return layout


@dataclass(frozen=True)
class State:
    """A parsed tg_export_state blob."""

    step: int
    rng: int
    params: F32
    m: F32
    v: F32


def parse_state(blob: bytes, n_params: int) -> State:
    """Parse lib2's state: the header fields lib2.h defines (AssertionError on a bad one), the
    float sections by the binding's ``[model.state]``."""
    magic, version, p, step, rng, reserved = struct.unpack_from("<4sIIIQQ", blob, 0)
    assert (magic, version, p, reserved) == (b"L2ST", 1, n_params, 0), (magic, version, p)
    fmt = layout_of(load_binding_cached(REPO_ROOT / LIB2_BINDING)).state
    assert fmt is not None, "lib2's binding declares its [model.state]"
    s = fmt.parse(blob, n_params)
    return State(step, rng, s["params"], s["m"], s["v"])


class Model:
    """A lib2 model handle (freed on close)."""

    def __init__(self, lib: ctypes.CDLL, d: ModelDims, seed: int) -> None:
        """tg_model_create(vocab, ctx, n_layer, n_head, d_model, d_mlp, seed)."""
        self.lib, self.dims = lib, d
        h = lib.tg_model_create(d.vocab, d.ctx, d.n_layer, d.n_head, d.d_model, d.d_mlp, seed)
        assert h, f"tg_model_create refused {d}"
        self.handle: int = h
        self._data: NDArray[np.uint8] | None = None

    def close(self) -> None:
        """tg_model_free."""
        self.lib.tg_model_free(self.handle)

    def num_params(self) -> int:
        """tg_model_num_params."""
        return int(self.lib.tg_model_num_params(self.handle))

    def set_data(self, data: bytes, train_frac: float) -> None:
        """tg_set_data (the library copies the bytes)."""
        buf = np.frombuffer(data, dtype=np.uint8).copy()
        self.lib.tg_set_data(self.handle, ptr(buf), len(data), train_frac)

    def train_step(self, batch: int, lr: float, grad_clip: float) -> float:
        """tg_train_step -> the batch's loss before the update."""
        return float(self.lib.tg_train_step(self.handle, batch, lr, grad_clip))

    def eval(self, split: int, batch: int, n_batches: int) -> float:
        """tg_eval."""
        return float(self.lib.tg_eval(self.handle, split, batch, n_batches))

    def generate(self, prompt: bytes, max_new: int, temperature: float, top_k: int,
                 seed: int) -> bytes:  # fmt: skip
        """tg_generate -> the new bytes."""
        p = np.frombuffer(prompt, dtype=np.uint8).copy()
        out = np.zeros(max(max_new, 1), dtype=np.uint8)
        n = self.lib.tg_generate(self.handle, ptr(p), len(prompt), ptr(out), max_new,
                                 temperature, top_k, seed)  # fmt: skip
        assert n == max_new, f"tg_generate returned {n}"
        return out[:n].tobytes()

    def export_state(self) -> bytes:
        """tg_export_state into a buffer of tg_state_bytes bytes."""
        n = self.lib.tg_state_bytes(self.handle)
        buf = np.zeros(n, dtype=np.uint8)
        assert self.lib.tg_export_state(self.handle, ptr(buf)) == n
        return buf.tobytes()

    def import_state(self, blob: bytes) -> int:
        """tg_import_state -> 0 or -1."""
        buf = np.frombuffer(blob, dtype=np.uint8).copy()
        return int(self.lib.tg_import_state(self.handle, ptr(buf)))

    def state(self) -> State:
        """The parsed exported state."""
        return parse_state(self.export_state(), self.num_params())
