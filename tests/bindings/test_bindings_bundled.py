"""The bundled library's binding (harness/bindings/tinygpt.toml) agrees with tinygpt.h's ABI."""

from __future__ import annotations

import pytest

from harness.abi import EXPORTS
from harness.bindings import CallBinding, bundled
from harness.bindings.canonical import OPS
from reference.ops import LAYERNORM_EPS

CALLS = sorted(bundled().ops.items())


@pytest.mark.parametrize(("op", "call"), CALLS, ids=[op for op, _ in CALLS])
def test_bundled_op_has_the_abi_signature(op: str, call: CallBinding) -> None:
    """Each bound op's export has harness.abi.EXPORTS's signature for that export."""
    assert call.signature == EXPORTS[call.export], f"{op} -> {call.export}"


def test_bundled_binding_binds_every_tinygpt_op() -> None:
    """tinygpt.h's 15 kernel ops are all bound; only the attention block and FlashAttention's
    interface (neither in it) are left."""
    assert set(OPS) - set(bundled().ops) == {
        "attention_block_forward", "attention_block_backward",
        "attention_flash_forward", "attention_flash_backward",
    }  # fmt: skip


def test_bundled_binding_fixes_layernorm_eps_at_the_reference_value() -> None:
    """The eps the bundled library fixes is reference.ops.LAYERNORM_EPS."""
    assert bundled().ops["layernorm_forward"].fixed == {"eps": LAYERNORM_EPS}
