"""The machine-readable twin of ``artifacts/include/tinygpt.h``.

Hosts take argument kinds from here (through the artifact manifest), never by guessing per call:
a ``ptr`` argument is a BigInt in JS under Memory64 and a Number under wasm32.
A test parses the header and checks that every prototype matches this table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal, get_args

ABI_VERSION = 5  # 4: tg_parallel_regions; 5: tg_pool_probe_ns
# TG_MAX_THREADS of tinygpt.h: the pool size, the most threads tg_set_threads accepts
MAX_THREADS = 16

Kind = Literal["ptr", "i32", "f32", "void"]
KINDS: tuple[Kind, ...] = get_args(Kind)
PARAM_KINDS: tuple[Kind, ...] = tuple(k for k in KINDS if k != "void")  # what an argument can be


@dataclass(frozen=True)
class Signature:
    """Parameter kinds and result kind of one export."""

    params: tuple[Kind, ...]
    result: Kind

    def wasm_types(self, ptr_width: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Return the (params, results) wasm value types this signature has at ``ptr_width``."""

        def one(k: Kind) -> str:
            if k == "ptr":
                return "i64" if ptr_width == 64 else "i32"
            return {"i32": "i32", "f32": "f32"}[k]

        params = tuple(one(k) for k in self.params)
        results = () if self.result == "void" else (one(self.result),)
        return params, results


def _sig(params: str, result: Kind) -> Signature:
    kinds = tuple(params.split()) if params else ()
    for k in kinds:
        if k not in PARAM_KINDS:
            raise ValueError(f"bad kind {k!r}")
    return Signature(params=kinds, result=result)  # type: ignore[arg-type]


EXPORTS: dict[str, Signature] = {
    "tg_abi_version": _sig("", "i32"),
    "tg_defaults_json": _sig("", "ptr"),
    "tg_noop": _sig("", "void"),
    "tg_alloc": _sig("ptr", "ptr"),
    "tg_free": _sig("ptr", "void"),
    "tg_set_threads": _sig("i32", "i32"),
    "tg_get_threads": _sig("", "i32"),
    "tg_parallel_regions": _sig("", "i32"),
    "tg_pool_probe_ns": _sig("i32 i32", "i32"),
    "tg_embedding_forward": _sig("ptr ptr ptr ptr i32 i32 i32", "void"),
    "tg_embedding_backward": _sig("ptr ptr ptr ptr i32 i32 i32", "void"),
    "tg_layernorm_forward": _sig("ptr ptr ptr ptr ptr ptr i32 i32", "void"),
    "tg_layernorm_backward": _sig("ptr ptr ptr ptr ptr ptr ptr ptr i32 i32", "void"),
    "tg_matmul_forward": _sig("ptr ptr ptr ptr i32 i32 i32", "void"),
    "tg_matmul_backward": _sig("ptr ptr ptr ptr ptr ptr i32 i32 i32", "void"),
    "tg_attention_forward": _sig("ptr ptr ptr ptr i32 i32 i32 i32", "void"),
    "tg_attention_backward": _sig("ptr ptr ptr ptr ptr ptr i32 i32 i32 i32", "void"),
    "tg_gelu_forward": _sig("ptr ptr i32", "void"),
    "tg_gelu_backward": _sig("ptr ptr ptr i32", "void"),
    "tg_residual_forward": _sig("ptr ptr ptr i32", "void"),
    "tg_residual_backward": _sig("ptr ptr ptr i32", "void"),
    "tg_crossentropy_forward": _sig("ptr ptr ptr ptr i32 i32", "f32"),
    "tg_crossentropy_backward": _sig("ptr ptr ptr f32 i32 i32", "void"),
    "tg_adamw_update": _sig("ptr ptr ptr ptr ptr f32 f32 f32 f32 f32 i32", "void"),
    "tg_model_create": _sig("i32 i32 i32 i32 i32", "ptr"),
    "tg_model_free": _sig("ptr", "void"),
    "tg_model_num_params": _sig("ptr", "ptr"),
    "tg_model_params": _sig("ptr", "ptr"),
    "tg_model_grads": _sig("ptr", "ptr"),
    "tg_model_forward": _sig("ptr ptr ptr i32 i32", "f32"),
    "tg_model_logits": _sig("ptr", "ptr"),
    "tg_model_zero_grad": _sig("ptr", "void"),
    "tg_model_backward": _sig("ptr", "void"),
    "tg_model_grad_norm": _sig("ptr", "f32"),
    "tg_model_adamw": _sig("ptr f32 f32 f32 f32 f32 f32 i32", "void"),
    "tg_model_train_step": _sig("ptr ptr ptr i32 i32 f32 f32 f32 f32 f32 f32 i32", "f32"),
    "tg_model_generate": _sig("ptr ptr i32 i32 ptr ptr i32 f32 i32 i32", "i32"),
}


def signatures_json(
    signatures: Mapping[str, Signature] = MappingProxyType(EXPORTS),
) -> dict[str, dict[str, object]]:
    """``signatures`` (EXPORTS by default) as JSON-ready data: the manifest's and the JS
    loaders' form."""
    return {n: {"params": list(s.params), "result": s.result} for n, s in signatures.items()}


def regions_between(before: object, after: object) -> int:
    """The parallel regions run between two ``tg_parallel_regions()`` results (as any host's
    ``Instance.call`` returns them): the counter is a uint32 returned as an i32, so the
    difference is taken modulo 2^32. A result that is not an int is a TypeError naming it."""
    return (_i32_result(after) - _i32_result(before)) % (1 << 32)


def _i32_result(v: object) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"tg_parallel_regions() returned {v!r}, not an i32")
    return v


def as_i32(v: int) -> int:
    """The two's-complement i32 view of ``v`` (an ``unsigned`` seed travels as an i32)."""
    return ((int(v) + (1 << 31)) % (1 << 32)) - (1 << 31)
