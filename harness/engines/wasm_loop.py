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

from collections.abc import Sequence

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
