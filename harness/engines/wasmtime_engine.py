"""The wasmtime engine: wasm32 and wasm64 (Memory64) modules run in-process by wasmtime-py.

:func:`validate_wasm_abi` is the static "does this module match the ABI" check (every export
present with exactly the wasm types of ``Signature.wasm_types``, memory width = pointer width);
the Node and Chromium hosts reuse it before handing a module to their engines.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

import wasmtime

from harness.abi import EXPORTS, Signature, as_i32
from harness.artifact import Artifact
from harness.engines.call_loop import roundtrips, time_batches
from harness.engines.signatures import artifact_signatures
from harness.engines.wasm_loop import loop_func, raw_batch
from harness.formats import WasmTypes, export_mismatches
from harness.hosts.base import (
    ABIError,
    CorruptArtifact,
    HostError,
    IncompatibleArtifact,
    Instance,
    MissingExport,
    Scalar,
    TimingResult,
    Trap,
)

MEMORY_EXPORT = "memory"
BATCHES_KEPT = 64  # timing batches an instance keeps (a workload placed anew is a new key)
# Address space reserved per Memory64 memory (virtual: PROT_NONE pages cost no RAM), so a memory
# grows in place up to this size. wasmtime's default reserves 4 GiB, and past that it moves the
# memory on every growth, copying it: every page becomes resident (growing a wasm64 instance to
# 13 GiB in 1 GiB steps reached 20 GiB RSS and took about 20 s per copy, docs/memory64.md).
# 16 GiB matches V8's cap for Memory64 (262144 pages), so the memory64 check costs the same here.
# The compiled code is the same under either reservation (identical .text), so timings are too.
MEMORY64_RESERVATION = 16 << 30


def make_engine(*, threads: bool = False, memory64: bool = False) -> wasmtime.Engine:
    """A wasmtime Engine with the proposals the artifacts use: Memory64 and simd128 (and, with
    ``threads``, shared memory and atomics: an emscripten ``-pthread`` build's). ``memory64``:
    reserve :data:`MEMORY64_RESERVATION` per memory, for a 64-bit module to grow in place."""
    config = wasmtime.Config()
    config.wasm_memory64 = True
    config.wasm_simd = True
    # Compile on the loading thread. In parallel, Cranelift's helper threads kept working (and
    # spinning down) after a load, during the samples that followed it: the worker's other
    # threads then did CPU work the timing thread's clock cannot see, and the paired gate fell
    # back to the wall clock for most wasmtime measurements (docs/gate.md, `--clock`).
    config.parallel_compilation = False
    if threads:
        config.wasm_threads = True
    if memory64:
        config.memory_reservation = MEMORY64_RESERVATION
    return wasmtime.Engine(config)


@cache
def shared_engine(memory64: bool) -> wasmtime.Engine:
    """The process's engine for instances of one pointer width: instances share engines and
    compiled code (:func:`load_module`) and get code mappings, stores, memories and instances
    of their own."""
    return make_engine(memory64=memory64)


# Compiled code by (sha256 of the bytes, memory64 engine), serialized, for this process's loads.
# Compiling is the cost of a load (78 ms for the bundled wasm32 on one thread, this VM), and the
# paired gate loads each build 12 times a round. Each load after the first deserializes the code
# into memory of its own, as a compile would place it: instances of one Module share its code,
# at one address, and with a shared Module every load of a build ran the very same code placement,
# an accident shared by all of a cell's blocks, which the gate's load per block is there to
# average out (2 of 120 A/A measurements `slower` under wasmtime at one busy process, s33).
_COMPILED: dict[tuple[str, bool], bytes] = {}


def _read(path: Path, label: str) -> tuple[bytes, str]:
    """The bytes of ``path`` and their sha256 (the module caches' key); CorruptArtifact if the
    file cannot be read."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CorruptArtifact(f"{label}: {exc}") from exc
    return data, hashlib.sha256(data).hexdigest()


def load_module(path: Path, label: str, memory64: bool) -> tuple[wasmtime.Module, ModuleInfo]:
    """``path`` compiled for :func:`shared_engine` (``memory64``) once per content per process,
    each call's module with its own copy of the code (deserialized, not recompiled), and its
    :class:`ModuleInfo` as :func:`read_module` keeps it (read once per content: reading the types
    walks every export in Python, 1.2 of a load's 2.2 ms, and a gate round loads 24 copies;
    docs/gate.md, s39); CorruptArtifact with wasmtime's own message if it is not valid wasm (not
    memoized)."""
    data, sha256 = _read(path, label)
    key = (sha256, memory64)
    engine = shared_engine(memory64)
    code = _COMPILED.get(key)
    if code is None:
        module = _compile(engine, data, path, label)
        _COMPILED[key] = bytes(module.serialize())
    else:
        module = wasmtime.Module.deserialize(engine, code)
    # the types read_module's engine reads: it enables the same proposals, so parses alike
    info = _INFO.get((sha256, False))
    if info is None:
        info = _INFO[(sha256, False)] = ModuleInfo.of(module)
    return module, info


def parse_module(engine: wasmtime.Engine, path: Path, label: str) -> wasmtime.Module:
    """Compile ``path``; CorruptArtifact with wasmtime's own message if it is not valid wasm."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CorruptArtifact(f"{label}: {exc}") from exc
    return _compile(engine, data, path, label)


def _compile(engine: wasmtime.Engine, data: bytes, path: Path, label: str) -> wasmtime.Module:
    try:
        return wasmtime.Module(engine, data)
    except wasmtime.WasmtimeError as exc:
        where = label if label == str(path) else f"{label}: {path}"
        raise CorruptArtifact(f"{where}: {exc}") from exc


def _valtypes(types: Any) -> tuple[str, ...]:
    return tuple(str(t) for t in types)


@dataclass(frozen=True)
class ModuleInfo:
    """What the static checks read of a parsed module: its exports' and imports' types."""

    funcs: Mapping[str, WasmTypes]  # function exports: name -> (param types, result types)
    others: Mapping[str, str]  # every other export: name -> its type as wasmtime prints it
    memory_is_64: bool | None  # the exported linear memory's width; None: none exported
    # (module, name, is 64-bit: None if not a memory) of each import
    imports: tuple[tuple[str, str | None, bool | None], ...]

    @classmethod
    def of(cls, module: wasmtime.Module) -> ModuleInfo:
        """Read ``module``'s exports and imports."""
        funcs: dict[str, WasmTypes] = {}
        others: dict[str, str] = {}
        memory_is_64 = None
        for e in module.exports:
            if isinstance(e.type, wasmtime.FuncType):
                funcs[e.name] = (_valtypes(e.type.params), _valtypes(e.type.results))
            else:
                others[e.name] = str(e.type)
                if e.name == MEMORY_EXPORT and isinstance(e.type, wasmtime.MemoryType):
                    memory_is_64 = e.type.is_64
        imports = tuple(
            (i.module, i.name, i.type.is_64 if isinstance(i.type, wasmtime.MemoryType)
             else None)
            for i in module.imports
        )  # fmt: skip
        return cls(MappingProxyType(funcs), MappingProxyType(others), memory_is_64, imports)

    def memory_width(self, *, imported: bool) -> int | None:
        """32 or 64: the exported linear memory's width, else (``imported``: an emscripten
        ``-pthread`` build imports its shared memory) the first imported memory's; None if
        neither."""
        is_64 = self.memory_is_64
        if imported and is_64 is None:
            memories = [m for (_, _, m) in self.imports if m is not None]
            is_64 = memories[0] if memories else None
        return None if is_64 is None else 64 if is_64 else 32


# Parsed modules' ModuleInfo by (sha256 of the bytes, threads engine): a run reads each module
# at load (the binding's check: load_module) and again in the static check; compiling it is the
# costly part, and reading the types of a copy already read is pure cost.
# Keyed by content, so what a cell sees never depends on what ran before it.
_INFO: dict[tuple[str, bool], ModuleInfo] = {}


def read_module(path: Path, label: str, *, threads: bool = False) -> ModuleInfo:
    """:func:`parse_module` with a ``threads`` engine (or not), once per module content per
    process; CorruptArtifact if it is not valid wasm (not memoized: it says so each time)."""
    data, sha256 = _read(path, label)
    key = (sha256, threads)
    info = _INFO.get(key)
    if info is None:
        info = _INFO[key] = ModuleInfo.of(_compile(make_engine(threads=threads), data, path, label))
    return info


def check_module_abi(
    module: wasmtime.Module | ModuleInfo,
    ptr_width: int,
    label: str,
    wanted: Mapping[str, Signature] = EXPORTS,
    *,
    freestanding: bool = True,
    hint: str = "",
) -> None:
    """Raise MissingExport/ABIError unless ``module`` exports ``wanted`` (the artifact's
    binding's exports; the ABI by default) at ``ptr_width``.

    ``freestanding``: the module must export its memory and import nothing (the ``wasm`` format);
    otherwise (emscripten) the memory may be imported (``-pthread``) and imports are the glue's.
    The exports are compared by :func:`harness.formats.export_mismatches`, as a binding's are.
    """
    if ptr_width not in (32, 64):
        raise ABIError(f"{label}: ptr_width must be 32 or 64, got {ptr_width}")
    info = module if isinstance(module, ModuleInfo) else ModuleInfo.of(module)
    misses = export_mismatches(info.funcs, wanted, ptr_width)
    missing = [m.name for m in misses if m.found is None and m.name not in info.others]
    if missing:
        raise MissingExport(f"{label}: module lacks export(s) {', '.join(missing)}{hint}")
    if misses:  # the first, in wanted's order
        m = misses[0]
        if m.found is None:
            raise ABIError(
                f"{label}: export {m.name} expected a function {m.expected}, "
                f"found {info.others[m.name]}"
            )
        raise ABIError(f"{label}: export {m.name} expected {m.expected}, found {m.found}")
    width = info.memory_width(imported=not freestanding)
    if width is None:
        raise MissingExport(f"{label}: module lacks its linear memory export {MEMORY_EXPORT!r}")
    if width != ptr_width:
        raise ABIError(
            f"{label}: memory is {width}-bit but the artifact's ptr_width is {ptr_width}"
        )
    if freestanding and info.imports:
        names = ", ".join(f"{mod}.{name}" for (mod, name, _) in info.imports)
        raise ABIError(f"{label}: module imports {names}; the ABI provides no imports")


def validate_wasm_abi(
    path: Path, ptr_width: int, wanted: Mapping[str, Signature] = EXPORTS
) -> None:
    """Parse the module at ``path`` (once per content: :func:`read_module`) and check it against
    the ABI; raises on any mismatch.

    CorruptArtifact (not wasm / fails validation, wasmtime's message), MissingExport (an ABI
    export or the memory is absent), ABIError (a func type differs: names the export, the
    expected and the found types; or the memory width differs from ``ptr_width``).
    """
    check_module_abi(read_module(path, str(path)), ptr_width, str(path), wanted)


def _i64(v: int) -> int:
    return ((int(v) + (1 << 63)) % (1 << 64)) - (1 << 63)


class WasmtimeInstance(Instance):
    """One instantiated module in its own wasmtime Store."""

    def __init__(self, artifact: Artifact, engine: wasmtime.Engine, module: wasmtime.Module):
        """Instantiate ``module`` (already validated; use :meth:`load`)."""
        self.artifact = artifact
        self._engine = engine
        self._sigs: dict[str, Signature] = artifact_signatures(artifact)
        self._store: wasmtime.Store | None = wasmtime.Store(engine)
        try:
            instance = wasmtime.Instance(self._store, module, [])
        except wasmtime.Trap as exc:
            raise Trap(f"{artifact.name}: start trapped: {exc.message}") from exc
        except wasmtime.WasmtimeError as exc:
            raise IncompatibleArtifact(f"{artifact.name}: {exc}") from exc
        exports = instance.exports(self._store)
        memory = exports[MEMORY_EXPORT]
        assert isinstance(memory, wasmtime.Memory)  # check_module_abi verified the type
        self._memory = memory
        self._funcs: dict[str, wasmtime.Func] = {}
        for name in self._sigs:
            fn = exports[name]
            assert isinstance(fn, wasmtime.Func)
            self._funcs[name] = fn
        ptr = _i64 if artifact.ptr_width == 64 else as_i32
        self._conv: dict[str, tuple[Callable[[Any], Any], ...]] = {
            name: tuple(float if k == "f32" else ptr if k == "ptr" else as_i32 for k in sig.params)
            for name, sig in self._sigs.items()
        }
        self._ptr_mask = (1 << artifact.ptr_width) - 1
        self._loops: dict[str, wasmtime.Func] = {}  # export -> its wasm timing loop, made once
        # (export, args) -> its batch: making one (raw_batch reads the loop's type, converts the
        # arguments) cost ~220 us, and the paired gate asks for one per sample (PAIRS)
        self._batches: OrderedDict[tuple[str, tuple[Scalar, ...]], Callable[[int], Any]] = (
            OrderedDict()
        )

    @classmethod
    def load(cls, artifact: Artifact) -> WasmtimeInstance:
        """Parse, ABI-check and instantiate ``artifact``."""
        memory64 = artifact.ptr_width == 64
        module, info = load_module(artifact.path, artifact.name, memory64)
        check_module_abi(info, artifact.ptr_width, artifact.name, artifact_signatures(artifact))
        return cls(artifact, shared_engine(memory64), module)

    def _live_store(self) -> wasmtime.Store:
        if self._store is None:
            raise HostError(f"{self.artifact.name}: instance is closed")
        return self._store

    def _values(self, name: str, args: tuple[Scalar, ...]) -> list[Any]:
        """``args`` converted once to ``name``'s wasm values (ABIError if they don't fit)."""
        self._live_store()
        try:
            conv = self._conv[name]
        except KeyError:
            raise MissingExport(f"{name} is not an export of the artifact's binding") from None
        if len(args) != len(conv):
            raise ABIError(f"{name} takes {len(conv)} arguments {self._sigs[name].params}, "
                           f"got {len(args)}")  # fmt: skip
        try:
            return [c(a) for c, a in zip(conv, args, strict=True)]
        except (TypeError, ValueError) as exc:
            raise ABIError(f"{name}{args}: {exc}") from None

    def _bound(self, name: str, args: tuple[Scalar, ...]) -> Callable[[], Any]:
        """A zero-argument callable running ``name(*args)`` with args converted once."""
        values = self._values(name, args)
        store, fn = self._live_store(), self._funcs[name]
        return lambda: fn(store, *values)

    def _batch(self, name: str, args: tuple[Scalar, ...]) -> Callable[[int], Any]:
        """A callable ``batch(k)`` making ``k`` calls of ``name(*args)`` in ONE call from Python:
        the loop runs in wasm (harness.engines.wasm_loop), so wasmtime-py's per-call cost is
        paid once per batch, not once per rep."""
        key = (name, args)
        made = self._batches.get(key)
        if made is not None:
            self._batches.move_to_end(key)
            return made
        values = self._values(name, args)
        store = self._live_store()
        loop = self._loops.get(name)
        if loop is None:
            loop = self._loops[name] = loop_func(self._engine, store, self._funcs[name])
        made = raw_batch(store, loop, values) or (lambda reps: loop(store, reps, *values))
        self._batches[key] = made
        while len(self._batches) > BATCHES_KEPT:
            self._batches.popitem(last=False)
        return made

    def _run(self, name: str, thunk: Callable[[], Any]) -> Any:
        try:
            return thunk()
        except wasmtime.Trap as exc:
            raise Trap(f"{name}: {exc.message}") from exc
        except wasmtime.WasmtimeError as exc:
            raise HostError(f"{name}: {exc}") from exc

    def call(self, name: str, *args: Scalar) -> Scalar | None:
        """Call export ``name``; a ``ptr`` result is returned unsigned."""
        result = self._run(name, self._bound(name, args))
        kind = self._sigs[name].result
        if kind == "void":
            return None
        if kind == "ptr":
            return int(result) & self._ptr_mask
        if kind == "i32":
            return int(result)
        return float(result)

    def _check_range(self, ptr: int, nbytes: int, what: str) -> wasmtime.Store:
        store = self._live_store()
        size = self._memory.data_len(store)
        if ptr < 0 or nbytes < 0 or ptr + nbytes > size:
            raise Trap(f"{what} of {nbytes} bytes at {ptr:#x} is outside linear memory "
                       f"({size} bytes)")  # fmt: skip
        return store

    def write(self, ptr: int, data: bytes) -> None:
        """Copy ``data`` into linear memory at ``ptr``."""
        store = self._check_range(ptr, len(data), "write")
        if data:
            self._memory.write(store, data, ptr)

    def read(self, ptr: int, nbytes: int) -> bytes:
        """Return ``nbytes`` of linear memory at ``ptr``."""
        store = self._check_range(ptr, nbytes, "read")
        return bytes(self._memory.read(store, ptr, ptr + nbytes))

    def time_calls(
        self, name: str, args: tuple[Scalar, ...], inner_reps: int, samples: int, warmup: int
    ) -> TimingResult:
        """Time ``name(*args)``: each sample is one Python call of a wasm loop making
        ``inner_reps`` calls (harness.engines.wasm_loop), timed around that call."""
        batch = self._batch(name, args)
        return self._run(name, lambda: time_batches(batch, inner_reps, samples, warmup))  # type: ignore[no-any-return]

    def bridge_roundtrip_ns(self, n: int) -> tuple[float, ...]:
        """``n`` individually timed calls of ``tg_noop``: the Python->wasm call overhead."""
        return roundtrips(self._bound("tg_noop", ()), n)

    def close(self) -> None:
        """Drop the store (and with it the instance and its memory)."""
        self._funcs.clear()
        self._loops.clear()
        self._batches.clear()
        self._store = None
