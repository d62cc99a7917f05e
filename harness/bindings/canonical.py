"""The harness's canonical operations: what a binding file maps a library's exports onto.

One table per call family. Each canonical op names its arguments, with the kind an export takes
them as (``ptr``, ``i32``, ``f32``) and their default role:

- ``input``: written before the call, never read back;
- ``inout``: written before the call and read back (AdamW's p, m, v);
- ``output``: overwritten by the op (the harness pre-fills it with a sentinel, so an op that
  fails to write it fails parity);
- ``accumulator``: added into by the op (the harness zeroes it first);
- ``scratch``: a buffer the op needs but no check reads (the harness allocates and zeroes it);
- ``dim``: an i32 size; ``scalar``: an f32 or i32 value.

A binding lists, per op, its export and the order of the canonical arguments it takes; it may
override a role (``output`` <-> ``accumulator``: lib2's dA is overwritten where ours
accumulates), drop an optional argument (a matmul without bias), fix a value the export does not
take (LayerNorm eps), and declare a weight layout. The kernel client (``harness.kernel``) owns
the shapes; this table owns the names, kinds and roles.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

Kind = Literal["ptr", "i32", "f32"]
Result = Literal["void", "ptr", "i32", "f32"]
Role = Literal["input", "inout", "output", "accumulator", "scratch", "dim", "scalar"]
ROLES: tuple[Role, ...] = ("input", "inout", "output", "accumulator", "scratch", "dim", "scalar")
# The roles a binding may give a buffer in place of its default (a buffer stays a buffer).
BUFFER_ROLES: tuple[Role, ...] = ("input", "inout", "output", "accumulator", "scratch")


@dataclass(frozen=True)
class Arg:
    """One canonical argument: its kind, default role, and whether a binding may leave it out."""

    kind: Kind
    role: Role
    optional: bool = False  # a binding may omit it (the op then has no such argument)
    weight: bool = False  # a Linear weight: its layout is the binding's ``layout`` for it


@dataclass(frozen=True)
class CanonicalOp:
    """A canonical op: its arguments by name, and what its export returns."""

    name: str
    args: Mapping[str, Arg]
    result: Result = "void"  # what the export returns (crossentropy's mean loss, a handle, ...)


def _op(name: str, result: Result = "void", **args: Arg) -> CanonicalOp:
    return CanonicalOp(name, MappingProxyType(args), result)


P_IN, P_OUT, P_ACC = Arg("ptr", "input"), Arg("ptr", "output"), Arg("ptr", "accumulator")
P_INOUT, P_SCRATCH = Arg("ptr", "inout"), Arg("ptr", "scratch")
DIM, F32, I32 = Arg("i32", "dim"), Arg("f32", "scalar"), Arg("i32", "scalar")
W_IN, W_ACC = Arg("ptr", "input", weight=True), Arg("ptr", "accumulator", weight=True)
B_IN, B_ACC = Arg("ptr", "input", optional=True), Arg("ptr", "accumulator", optional=True)

# Every op the ops check runs. Names and argument names follow reference/ops.py; the reference
# Linear weight is [out, in] (layout ``out_in``).
OPS: Mapping[str, CanonicalOp] = MappingProxyType(
    {
        op.name: op
        for op in (
            _op("embedding_forward", out=P_OUT, idx=P_IN, wte=P_IN, wpe=P_IN, B=DIM, T=DIM, C=DIM),
            _op(
                "embedding_backward",
                dwte=P_ACC,
                dwpe=P_ACC,
                dout=P_IN,
                idx=P_IN,
                B=DIM,
                T=DIM,
                C=DIM,
            ),
            _op(
                "layernorm_forward",
                out=P_OUT,
                mean=P_OUT,
                rstd=P_OUT,
                x=P_IN,
                w=P_IN,
                b=P_IN,
                N=DIM,
                C=DIM,
                eps=F32,
            ),
            _op(
                "layernorm_backward",
                dx=P_ACC,
                dw=P_ACC,
                db=P_ACC,
                dout=P_IN,
                x=P_IN,
                w=P_IN,
                mean=P_IN,
                rstd=P_IN,
                N=DIM,
                C=DIM,
            ),
            _op("matmul_forward", out=P_OUT, x=P_IN, W=W_IN, b=B_IN, N=DIM, C=DIM, OC=DIM),
            _op(
                "matmul_backward",
                dx=P_ACC,
                dW=W_ACC,
                db=B_ACC,
                dout=P_IN,
                x=P_IN,
                W=W_IN,
                N=DIM,
                C=DIM,
                OC=DIM,
            ),
            # attention over a fused q|k|v (B, T, 3C): tinygpt.h's op
            _op(
                "attention_forward",
                out=P_OUT,
                pre=P_SCRATCH,
                att=P_OUT,
                qkv=P_IN,
                B=DIM,
                T=DIM,
                C=DIM,
                NH=DIM,
            ),
            _op(
                "attention_backward",
                dqkv=P_ACC,
                dpre=P_SCRATCH,
                datt=P_SCRATCH,
                dout=P_IN,
                qkv=P_IN,
                att=P_IN,
                B=DIM,
                T=DIM,
                C=DIM,
                NH=DIM,
            ),
            # FlashAttention's interface to the same attention: the forward keeps the row
            # log-sum-exp (B, NH, T) instead of att; the backward recomputes att from it
            _op(
                "attention_flash_forward",
                out=P_OUT,
                lse=P_OUT,
                qkv=P_IN,
                B=DIM,
                T=DIM,
                C=DIM,
                NH=DIM,
            ),
            _op(
                "attention_flash_backward",
                dqkv=P_ACC,
                dout=P_IN,
                qkv=P_IN,
                out=P_IN,
                lse=P_IN,
                B=DIM,
                T=DIM,
                C=DIM,
                NH=DIM,
            ),
            # attention with its own biased q, k, v and output projections (x -> out): the block
            # most browser kernel projects export; its reference is composed from reference.ops
            _op(
                "attention_block_forward",
                x=P_IN,
                Wq=W_IN,
                bq=P_IN,
                Wk=W_IN,
                bk=P_IN,
                Wv=W_IN,
                bv=P_IN,
                Wo=W_IN,
                bo=P_IN,
                out=P_OUT,
                q=P_OUT,
                k=P_OUT,
                v=P_OUT,
                att=P_OUT,
                B=DIM,
                T=DIM,
                C=DIM,
                NH=DIM,
            ),
            _op(
                "attention_block_backward",
                x=P_IN,
                Wq=W_IN,
                Wk=W_IN,
                Wv=W_IN,
                Wo=W_IN,
                q=P_IN,
                k=P_IN,
                v=P_IN,
                att=P_IN,
                dout=P_IN,
                dx=P_ACC,
                dWq=W_ACC,
                dbq=P_ACC,
                dWk=W_ACC,
                dbk=P_ACC,
                dWv=W_ACC,
                dbv=P_ACC,
                dWo=W_ACC,
                dbo=P_ACC,
                B=DIM,
                T=DIM,
                C=DIM,
                NH=DIM,
            ),
            _op("gelu_forward", out=P_OUT, x=P_IN, N=DIM),
            _op("gelu_backward", dx=P_ACC, x=P_IN, dout=P_IN, N=DIM),
            _op("residual_forward", out=P_OUT, a=P_IN, b=P_IN, N=DIM),
            _op("residual_backward", da=P_ACC, db=P_ACC, dout=P_IN, N=DIM),
            _op(
                "crossentropy_forward",
                "f32",
                losses=P_OUT,
                probs=P_OUT,
                logits=P_IN,
                targets=P_IN,
                N=DIM,
                V=DIM,
            ),
            _op(
                "crossentropy_backward",
                dlogits=P_ACC,
                probs=P_IN,
                targets=P_IN,
                dloss=F32,
                N=DIM,
                V=DIM,
            ),
            _op(
                "adamw_update",
                p=P_INOUT,
                g=P_IN,
                m=P_INOUT,
                v=P_INOUT,
                n=DIM,
                lr=F32,
                beta1=F32,
                beta2=F32,
                eps=F32,
                weight_decay=F32,
                t=I32,
            ),
        )
    }
)

# Weight layouts a binding may declare for a ``weight`` argument.
LAYOUTS = ("out_in", "in_out")

# Model-level calls (a library exposing a model handle), by canonical name: the argument names
# and kinds. ``model`` is the handle. Checks use whichever of these a binding binds.
MODEL_CALLS: Mapping[str, CanonicalOp] = MappingProxyType(
    {
        op.name: op
        for op in (
            _op(
                "create",
                "ptr",
                vocab=DIM,
                ctx=DIM,
                n_layer=DIM,
                n_head=DIM,
                d_model=DIM,
                d_mlp=DIM,
                seed=I32,
            ),
            _op("free", model=P_IN),
            _op("num_params", "i32", model=P_IN),
            _op("set_data", model=P_IN, bytes=P_IN, n=DIM, train_frac=F32),
            _op("train_step", "f32", model=P_IN, batch=DIM, lr=F32, grad_clip=F32),
            _op("eval", "f32", model=P_IN, split=I32, batch=DIM, n_batches=DIM),
            _op(
                "generate",
                "i32",
                model=P_IN,
                prompt=P_IN,
                len=DIM,
                out=P_OUT,
                max_new=DIM,
                temperature=F32,
                top_k=I32,
                seed=I32,
            ),
            _op("state_bytes", "i32", model=P_IN),
            _op("export_state", "i32", model=P_IN, dst=P_OUT),
            _op("import_state", "i32", model=P_IN, src=P_IN),
        )
    }
)
