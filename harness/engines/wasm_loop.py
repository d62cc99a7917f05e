"""The wasmtime timing loop, run inside wasm: one native call per sample, not one per rep.

Calling a wasm export from Python through wasmtime-py costs ~5-100 us per call (argument
conversion, the ctypes trampoline, the store's entry and exit), against ~5 ns for a call from
wasm to wasm. A Python loop around a 32x32 matmul therefore timed mostly wasmtime-py
(docs/timing.md, "wasmtime: the loop inside wasm"), and that constant overhead diluted a kernel's
change. :func:`loop_wat` writes a tiny module that imports the kernel's export and calls it
``reps`` times with the arguments it is given; one Python call of its ``loop`` export is one
timed sample. The kernel's own instance keeps its memory: the loop module imports only the
function, so Memory64 modules (i64 pointers) need nothing more than i64 parameters.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Sequence
from typing import Any

import wasmtime

LOOP_EXPORT = "loop"
VALUE_TYPES = ("i32", "i64", "f32", "f64")


def loop_wat(params: Sequence[str], results: Sequence[str]) -> str:
    """WAT text of a module importing ``k.f`` (wasm types ``params`` -> ``results``) and
    exporting ``loop(reps: i32, *params)``, which calls ``f(*params)`` ``reps`` times and drops
    each result.

    The arguments are the loop's parameters (not constants in the text), so one compiled module
    serves every argument tuple of a signature.
    """
    bad = [t for t in (*params, *results) if t not in VALUE_TYPES]
    if bad:
        raise ValueError(f"loop_wat: unsupported wasm value type(s) {bad}")
    sig = "".join(f" (param {t})" for t in params) + "".join(f" (result {t})" for t in results)
    args = " ".join(f"local.get {i + 1}" for i in range(len(params)))
    drops = " drop" * len(results)
    return (
        f'(module (import "k" "f" (func $f{sig}))\n'
        f' (func (export "{LOOP_EXPORT}") (param $n i32)'
        + "".join(f" (param {t})" for t in params)
        + "\n"
        # a do-while would call once for reps=0; test first, so reps=0 calls nothing
        "  (block $done (loop $again\n"
        "   local.get $n i32.eqz br_if $done\n"
        f"   {args} call $f{drops}\n"
        "   local.get $n i32.const 1 i32.sub local.set $n br $again)))\n)"
    )


# Compiled loop modules by (engine, text): an instance's first timing of an export would
# otherwise compile its loop in the middle of a measurement (the paired gate's cells).
_LOOPS: dict[tuple[int, str], tuple[wasmtime.Engine, wasmtime.Module]] = {}


def _loop_module(engine: wasmtime.Engine, wat: str) -> wasmtime.Module:
    """``wat`` compiled for ``engine``, once per process (the entry keeps the engine alive, so
    its id is not reused)."""
    key = (id(engine), wat)
    if key not in _LOOPS:
        _LOOPS[key] = (engine, wasmtime.Module(engine, wat))
    return _LOOPS[key][1]


def loop_func(engine: wasmtime.Engine, store: wasmtime.Store, fn: wasmtime.Func) -> wasmtime.Func:
    """The ``loop`` export of :func:`loop_wat` for ``fn``'s type, instantiated in ``store``
    (``fn``'s store, so the call stays in one native entry) with ``fn`` as its import."""
    ty = fn.type(store)
    params = tuple(str(t) for t in ty.params)
    results = tuple(str(t) for t in ty.results)
    module = _loop_module(engine, loop_wat(params, results))
    instance = wasmtime.Instance(store, module, [fn])
    loop = instance.exports(store)[LOOP_EXPORT]
    assert isinstance(loop, wasmtime.Func)  # loop_wat exports a function by that name
    return loop


def raw_batch(
    store: wasmtime.Store, loop: wasmtime.Func, values: Sequence[Any]
) -> Callable[[int], None] | None:
    """``batch(reps)`` calling ``loop(reps, *values)`` through wasmtime's C API directly, with
    its arguments converted once; None where wasmtime-py's internals are not as expected.

    A sample is timed around one call of the loop, so whatever that call costs outside wasm is
    in the sample. Through ``wasmtime.Func.__call__`` that was ~40 us (it reads the function's
    type, converts each argument and allocates the argument arrays on every call) against ~4 us
    for ``wasmtime_func_call`` itself (s37, this VM): 7 % of a 0.55 ms matmul, diluting a
    kernel's change and adding Python's jitter to every sample. This uses wasmtime-py's private
    ``_ffi``, ``Val._convert_to_raw`` and ``Func._func`` (pinned in pyproject.toml; a version
    without them gets None and the public call, and ``tests/kernels/test_kernels_wasm_loop.py``
    fails on it).
    """
    try:
        from wasmtime import _ffi as ffi
        from wasmtime._value import Val

        ty = loop.type(store)
        param_types = list(ty.params)
        if len(ty.results) or len(param_types) != len(values) + 1 or str(param_types[0]) != "i32":
            return None
        params = (ffi.wasmtime_val_t * len(param_types))()
        params[0] = Val._convert_to_raw(store, param_types[0], 0)
        for i, value in enumerate(values, start=1):
            # numbers only (loop_wat's VALUE_TYPES): nothing is rooted, so nothing to unroot
            params[i] = Val._convert_to_raw(store, param_types[i], value)
        results = (ffi.wasmtime_val_t * 0)()
        context, func = store._context(), ctypes.byref(loop._func)
        call, trap_ptr = ffi.wasmtime_func_call, ctypes.POINTER(ffi.wasm_trap_t)
    except (ImportError, AttributeError, TypeError, wasmtime.WasmtimeError):
        return None
    count = len(param_types)
    reps_slot = params[0].of

    def batch(reps: int) -> None:
        reps_slot.i32 = reps
        trap = trap_ptr()
        error = call(context, func, params, count, results, 0, ctypes.byref(trap))
        if error:
            raise wasmtime.WasmtimeError._from_ptr(error)
        if trap:
            raise wasmtime.Trap._from_ptr(trap)

    return batch
