"""Library exports on every bundled artifact: identity, defaults and the allocator."""

from __future__ import annotations

import json

import numpy as np
import pytest

from harness.abi import ABI_VERSION
from harness.hosts.base import HostError, Instance
from reference.defaults import DEFAULTS

BUNDLED = ("native", "wasm32", "wasm64")


def test_abi_version(instance: Instance) -> None:
    """tg_abi_version returns harness.abi.ABI_VERSION."""
    assert instance.call("tg_abi_version") == ABI_VERSION


def test_defaults_json_is_canonical(instance: Instance) -> None:
    """tg_defaults_json is key-sorted compact JSON with reference/defaults.py's values."""
    text = instance.read_cstring(int(instance.call("tg_defaults_json") or 0))
    assert json.loads(text) == DEFAULTS.as_dict()
    assert text == DEFAULTS.canonical_json()


@pytest.mark.parametrize("fresh_instance", BUNDLED, indirect=True)
def test_alloc_is_aligned_and_blocks_do_not_overlap(fresh_instance: Instance) -> None:
    """Blocks of odd sizes are 16-byte aligned and keep their own contents."""
    inst = fresh_instance
    sizes = [1, 15, 16, 17, 100, 4097, 65536, 70001, 3]
    ptrs = [inst.alloc(n) for n in sizes]
    assert all(p % 16 == 0 for p in ptrs)
    for i, (p, n) in enumerate(zip(ptrs, sizes, strict=True)):
        inst.write(p, bytes([i + 1]) * n)
    for i, (p, n) in enumerate(zip(ptrs, sizes, strict=True)):
        assert inst.read(p, n) == bytes([i + 1]) * n
    for p in ptrs:
        inst.free(p)


@pytest.mark.parametrize("fresh_instance", BUNDLED, indirect=True)
def test_free_coalesces_neighbours(fresh_instance: Instance) -> None:
    """Three freed neighbours (freed outer first) merge into one block the size of all three."""
    inst = fresh_instance
    a, b, c = (inst.alloc(1 << 16) for _ in range(3))
    assert b > a and c > b  # first fit hands out ascending addresses in a clean heap
    inst.free(a)
    inst.free(c)
    inst.free(b)
    assert inst.alloc(3 << 16) == a


@pytest.mark.parametrize("fresh_instance", BUNDLED, indirect=True)
def test_free_really_frees(fresh_instance: Instance) -> None:
    """Allocating and freeing 8 MiB 50 times reuses the same block instead of growing."""
    inst = fresh_instance
    first = inst.alloc(8 << 20)
    inst.free(first)
    for _ in range(50):
        p = inst.alloc(8 << 20)
        assert p == first
        inst.free(p)


@pytest.mark.parametrize("fresh_instance", BUNDLED, indirect=True)
def test_out_of_memory_returns_null(fresh_instance: Instance) -> None:
    """A request no memory can satisfy returns 0, which Instance.alloc turns into HostError."""
    huge = (1 << 32) - 16 if fresh_instance.artifact.ptr_width == 32 else 1 << 50
    with pytest.raises(HostError, match="out of memory"):
        fresh_instance.alloc(huge)
    p = fresh_instance.alloc(64)  # and the allocator still works afterwards
    fresh_instance.write(p, np.arange(16, dtype=np.float32).tobytes())
    assert fresh_instance.read(p, 64) == np.arange(16, dtype=np.float32).tobytes()
