"""The WebGPU train step's calls (``harness/js/webgpu_step.mjs``) from Python, over an Instance.

The step is composed in the page from the artifact's WGSL ops and keeps every buffer on the
GPU; these calls move the weights in and out in ``reference.presets``' flat layout (so the
reference's init imports as is), the token batches in, and the logits, loss and gradients out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
from numpy.typing import NDArray

from harness.hosts.base import Instance
from harness.rundir.rows import Row
from reference.defaults import TrainingDefaults
from reference.model import Params, flatten_params, unflatten_params
from reference.presets import LINEARS, ModelConfig, param_count

STEP_EXPORTS = ("tgw_step_create", "tgw_step_train")  # what an artifact needs to have a step
# the step's attention kernels, by option value: tgw_step_create's `attention` argument (the
# ATTENTION_* constants of webgpu_step.mjs) and the manifest ops it dispatches
ATTENTION_KERNELS = MappingProxyType({
    "flash": (1, ("tg_attention_flash_forward", "tg_attention_flash_backward")),
    "naive": (0, ("tg_attention_forward", "tg_attention_backward")),
})  # fmt: skip
DEFAULT_ATTENTION = "flash"  # what TinyGPT's WebGPU backend runs: its parity is the one asked


def validate_attention(where: str, value: object) -> str:
    """``value`` as an ``attention`` option; ValueError naming ``where`` otherwise."""
    if not isinstance(value, str) or value not in ATTENTION_KERNELS:
        raise ValueError(f"{where}: expected one of {sorted(ATTENTION_KERNELS)}, got {value!r}")
    return value


def has_step(exports: object) -> bool:
    """Whether an artifact's exports (names) include the composed train step."""
    return isinstance(exports, dict | set | frozenset | list | tuple) and all(
        e in exports for e in STEP_EXPORTS
    )


def bias_mask(cfg: ModelConfig) -> int:
    """The step's ``biases`` argument: bit i set when LINEARS[i] carries a bias."""
    return sum(1 << i for i, name in enumerate(LINEARS) if cfg.has_bias(name))


@dataclass
class GpuStep:
    """One step handle in an Instance: a model of ``cfg`` for batches of shape (batch, T)."""

    instance: Instance
    cfg: ModelConfig
    batch: int
    T: int
    handle: int
    buf: int  # one allocation: params/grads (P floats), logits (B*T*V), idx and targets
    attention: str = DEFAULT_ATTENTION  # a key of ATTENTION_KERNELS

    @classmethod
    def create(
        cls,
        instance: Instance,
        cfg: ModelConfig,
        batch: int,
        T: int,
        adapter: int = 0,
        attention: str = DEFAULT_ATTENTION,
    ) -> GpuStep | None:
        """Create the step's GPU buffers and bind groups for ``cfg`` at (batch, T) on adapter
        request ``adapter`` (an index of the load info's ``adapter_requests``), its attention
        by ``attention``'s kernels (:data:`ATTENTION_KERNELS`); None when that request gives
        no adapter. An artifact whose manifest lacks those kernels raises the call's error,
        which names the missing op."""
        code, _ = ATTENTION_KERNELS[validate_attention("attention", attention)]
        h = instance.call(
            "tgw_step_create", adapter, cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.block_size,
            cfg.vocab_size, cfg.mlp_width, batch, T, bias_mask(cfg), code,
        )  # fmt: skip
        if not h:
            return None
        n = batch * T
        nbytes = 4 * (max(param_count(cfg), n * cfg.vocab_size) + 2 * n)
        return cls(instance, cfg, batch, T, int(h or 0), instance.alloc(nbytes), attention)

    @property
    def kernels(self) -> str:
        """The attention kernels this step dispatches, for a row's detail."""
        return f"{self.attention} attention ({', '.join(ATTENTION_KERNELS[self.attention][1])})"

    @property
    def _idx(self) -> int:
        return self.buf + 4 * max(param_count(self.cfg), self.batch * self.T * self.cfg.vocab_size)

    @property
    def _tgt(self) -> int:
        return self._idx + 4 * self.batch * self.T

    def load(self, params: Params) -> None:
        """Upload ``params`` (float32) and zero AdamW's moments."""
        flat = flatten_params(self.cfg, params).astype(np.float32)
        self.instance.write(self.buf, flat.tobytes())
        self.instance.call("tgw_step_load", self.handle, self.buf)

    def _tokens(self, x: NDArray[Any], y: NDArray[Any]) -> None:
        ids = np.concatenate([np.asarray(x).reshape(-1), np.asarray(y).reshape(-1)])
        self.instance.write(self._idx, ids.astype("<i4").tobytes())

    def forward(self, x: NDArray[Any], y: NDArray[Any]) -> tuple[NDArray[np.float32], float]:
        """Logits (B, T, V) and the mean loss of one forward pass (activations stay resident
        for :meth:`backward`)."""
        self._tokens(x, y)
        loss = self.instance.call("tgw_step_forward", self.handle, self._idx, self._tgt, self.buf)
        n = self.batch * self.T * self.cfg.vocab_size
        raw = self.instance.read(self.buf, 4 * n)
        logits = np.frombuffer(raw, dtype="<f4").reshape(self.batch, self.T, -1)
        return logits.astype(np.float32), float(loss if loss is not None else math.nan)

    def gradients(self, x: NDArray[Any], y: NDArray[Any]) -> Params:
        """The gradients (before any clipping) at the current weights on batch ``(x, y)``: a
        forward (logits not read back) and a backward; weights and moments untouched."""
        self._tokens(x, y)
        self.instance.call("tgw_step_forward", self.handle, self._idx, self._tgt, 0)
        return self.backward()

    def backward(self) -> Params:
        """The gradients of the last forward's mean loss, by name (before any clipping)."""
        self.instance.call("tgw_step_backward", self.handle, self.buf)
        return self._read_flat()

    def train(
        self, x: NDArray[Any], y: NDArray[Any], lr: float, d: TrainingDefaults, t: int
    ) -> float:
        """One train step (forward, backward, clip, AdamW at rate ``lr``, 1-based ``t``) in
        one submission; the loss before the update."""
        self._tokens(x, y)
        loss = self.instance.call(
            "tgw_step_train", self.handle, self._idx, self._tgt, lr, d.beta1, d.beta2, d.eps,
            d.weight_decay, d.grad_clip, t,
        )  # fmt: skip
        return float(loss if loss is not None else math.nan)

    def params(self) -> Params:
        """The weights on the GPU, by name."""
        self.instance.call("tgw_step_params", self.handle, self.buf, 0)
        return self._read_flat()

    def moments(self) -> tuple[Params, Params]:
        """AdamW's first and second moments on the GPU, by name (zero until a train step)."""
        self.instance.call("tgw_step_params", self.handle, self.buf, 1)
        m = self._read_flat()
        self.instance.call("tgw_step_params", self.handle, self.buf, 2)
        return m, self._read_flat()

    def time_samples(self, x: NDArray[Any], y: NDArray[Any], reps: int) -> tuple[float, ...]:
        """ns of each of ``reps`` train steps (after one warmup step), each its own submission,
        in the order taken, by the loader's clock (timestamp-query where the adapter has it,
        else submit to onSubmittedWorkDone)."""
        self._tokens(x, y)
        # float64: integer ns stay exact (float32 would round a 16 s step to about 1 µs)
        out = self.instance.alloc(8 * reps)
        try:
            self.instance.call("tgw_step_time", self.handle, self._idx, self._tgt, reps, out)
            raw = self.instance.read(out, 8 * reps)
        finally:
            self.instance.free(out)
        return tuple(float(v) for v in np.frombuffer(raw, dtype="<f8"))

    def _read_flat(self) -> Params:
        raw = self.instance.read(self.buf, 4 * param_count(self.cfg))
        flat = np.frombuffer(raw, dtype="<f4").astype(np.float32)
        return unflatten_params(self.cfg, flat)

    def free(self) -> None:
        """Destroy the step's GPU buffers and free its memory."""
        self.instance.call("tgw_step_free", self.handle)
        self.instance.free(self.buf)


XADAPTER = "xadapter:"  # the model check's cross-adapter table rows (subject prefix)


def adapter_table(rows: Sequence[Row]) -> list[Row]:
    """The cross-adapter equality table's rows among ``rows`` (for run.json and the report)."""
    return [r for r in rows if r.check == "model" and r.subject.startswith(XADAPTER)]
