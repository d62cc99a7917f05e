"""wasmtime's timing loop runs inside wasm (harness.engines.wasm_loop): it calls the kernel
exactly ``reps`` times per sample and passes every argument kind through unchanged.

A counting module is compiled with zig cc for wasm32 and wasm64: its ``tg_crossentropy_backward``
(ptr ptr ptr f32 i32 i32, every kind the ABI has) counts its calls and records its arguments in
the memory its first pointer names, so the test reads what the loop really did.
"""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import wasmtime

from harness.abi import EXPORTS
from harness.artifact import Artifact
from harness.engines.wasm_loop import loop_func, loop_wat, raw_batch
from harness.engines.wasmtime_engine import WasmtimeInstance
from tests.kernels.test_kernels_engine_errors import stub_source

COUNTED = "tg_crossentropy_backward"
# The counted export: calls counted in rec[0]; its f32, i32, i32 and pointer arguments recorded.
COUNTING_BODY = """
typedef struct { unsigned long long calls; float dloss; int b; int v; unsigned long long p1;
                 unsigned long long p2; } rec_t;
__attribute__((visibility("default"))) void tg_crossentropy_backward(
    unsigned long a0, unsigned long a1, unsigned long a2, float dloss, int b, int v) {
  rec_t *r = (rec_t *)a0;
  r->calls += 1; r->dloss = dloss; r->b = b; r->v = v; r->p1 = a1; r->p2 = a2;
}
"""
REC = struct.Struct("<Qfii4xQQ")  # C pads the struct to align p1 at 24
TARGETS = {32: "wasm32-freestanding", 64: "wasm64-freestanding"}


def counting_module(tmp: Path, ptr_width: int) -> Artifact:
    """Every ABI export as a stub, except the counting ``tg_crossentropy_backward``."""
    sigs = {n: s for n, s in EXPORTS.items() if n != COUNTED}
    src = tmp / f"count{ptr_width}.c"
    src.write_text(stub_source(sigs) + COUNTING_BODY)
    out = tmp / f"count{ptr_width}.wasm"
    subprocess.run(
        [sys.executable, "-m", "ziglang", "cc", f"--target={TARGETS[ptr_width]}", "-O1", str(src),
         "-o", str(out), "-Wl,--no-entry", *(f"-Wl,--export={n}" for n in EXPORTS)],
        check=True, capture_output=True,
    )  # fmt: skip
    return Artifact(name=f"count{ptr_width}", format="wasm", path=out, sha256="",
                    ptr_width=ptr_width, target=TARGETS[ptr_width])  # fmt: skip


@pytest.mark.parametrize("ptr_width", [32, 64])
@pytest.mark.parametrize(("inner_reps", "samples", "warmup"), [(1, 1, 0), (7, 3, 2), (1000, 2, 5)])
def test_loop_calls_kernel_reps_times_with_every_arg_kind(
    tmp_path: Path, ptr_width: int, inner_reps: int, samples: int, warmup: int
) -> None:
    """time_calls makes exactly warmup + inner_reps * samples calls, and the kernel sees the ptr
    (i32 or i64 under Memory64, incl. one above 2**31), f32 and i32 arguments as given."""
    inst = WasmtimeInstance.load(counting_module(tmp_path, ptr_width))
    try:
        rec = int(inst.call("tg_alloc", REC.size) or 0) or 1024  # the stub allocator returns 0
        inst.write(rec, bytes(REC.size))
        big = (1 << 40) + 12345 if ptr_width == 64 else (1 << 31) + 12345  # pointers, not read
        args = (rec, big, 7, -1.25e-3, 3, -17)
        result = inst.time_calls(COUNTED, args, inner_reps, samples, warmup)
        calls, dloss, b, v, p1, p2 = REC.unpack(inst.read(rec, REC.size))
        assert calls == warmup + inner_reps * samples
        assert (dloss, b, v, p1, p2) == (np.float32(-1.25e-3), 3, -17, big, 7)
        assert result.inner_reps == inner_reps and len(result.sample_ns) == samples
        assert all(s > 0 for s in result.sample_ns)
    finally:
        inst.close()


def _counting(funcs: str) -> tuple[wasmtime.Engine, wasmtime.Store, Any]:
    """A store holding a module of ``funcs`` (WAT) beside an exported call counter ``$c``."""
    engine = wasmtime.Engine()
    store = wasmtime.Store(engine)
    text = f'(module (global $c (export "c") (mut i32) (i32.const 0)){funcs})'
    return engine, store, wasmtime.Instance(store, wasmtime.Module(engine, text), []).exports(store)


def test_loop_wat_with_results_drops_them_and_counts() -> None:
    """A loop over an export with a result (f32 here) drops each one and calls it reps times;
    reps = 0 calls nothing."""
    engine, store, exports = _counting(
        ' (func (export "f") (param i64 f32) (result f32)'
        "  global.get $c i32.const 1 i32.add global.set $c local.get 1)"
    )
    fn, count = exports["f"], exports["c"]
    assert isinstance(fn, wasmtime.Func) and isinstance(count, wasmtime.Global)
    loop = loop_func(engine, store, fn)
    loop(store, 0, 1, 2.0)
    assert count.value(store) == 0
    loop(store, 5, 1, 2.0)
    loop(store, 3, 1, 2.0)
    assert count.value(store) == 8


def test_loop_wat_refuses_unknown_types() -> None:
    """A value type the loop cannot pass (a reference type) is a clear ValueError."""
    with pytest.raises(ValueError, match="externref"):
        loop_wat(("i32", "externref"), ())


def test_real_matmul_timed_in_wasm_writes_its_output(built: dict[str, Artifact]) -> None:
    """The bundled wasm32 and wasm64 matmuls, timed through the wasm loop, leave the product in
    their output buffer: the loop's arguments reach the real kernel."""
    rng = np.random.default_rng(0)
    bt, c, oc = 4, 8, 5
    x = rng.standard_normal((bt, c), dtype=np.float32)
    w = rng.standard_normal((oc, c), dtype=np.float32)  # the ABI's weight is [OC, C]
    bias = rng.standard_normal(oc, dtype=np.float32)
    for name in ("wasm32", "wasm64"):
        inst = WasmtimeInstance.load(built[name])
        try:
            ptrs = [int(inst.call("tg_alloc", a.nbytes) or 0) for a in (x, w, bias)]
            for p, a in zip(ptrs, (x, w, bias), strict=True):
                inst.write(p, a.tobytes())
            out = int(inst.call("tg_alloc", bt * oc * 4) or 0)
            inst.write(out, bytes(bt * oc * 4))
            inst.time_calls("tg_matmul_forward", (out, *ptrs, bt, c, oc), 3, 2, 1)
            got = np.frombuffer(inst.read(out, bt * oc * 4), dtype=np.float32).reshape(bt, oc)
            np.testing.assert_allclose(got, x @ w.T + bias, rtol=1e-5, atol=1e-5)
        finally:
            inst.close()


def test_the_loop_is_called_through_the_c_api_and_a_trap_stays_a_trap() -> None:
    """On the pinned wasmtime-py the loop is called through ``wasmtime_func_call`` with its
    arguments converted once (raw_batch is not None: an upgrade that moves the internals it
    uses fails here instead of silently timing wasmtime-py's ~40 us per call again); it calls
    the export reps times, and a trap inside it raises wasmtime's Trap in wasm's words."""
    engine, store, exports = _counting(
        ' (func (export "f") (param i64 f64) global.get $c i32.const 1 i32.add global.set $c)'
        ' (func (export "bad") (param i32) unreachable)'
    )
    fn, bad, count = exports["f"], exports["bad"], exports["c"]
    assert isinstance(fn, wasmtime.Func) and isinstance(bad, wasmtime.Func)
    assert isinstance(count, wasmtime.Global)
    batch = raw_batch(store, loop_func(engine, store, fn), (1 << 40, 2.5))
    assert batch is not None
    batch(5)
    batch(0)
    batch(3)
    assert count.value(store) == 8
    trapping = raw_batch(store, loop_func(engine, store, bad), (7,))
    assert trapping is not None
    with pytest.raises(wasmtime.Trap, match="unreachable"):
        trapping(2)
    batch(1)  # the store is usable after the trap
    assert count.value(store) == 9
