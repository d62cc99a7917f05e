"""ABI bindings: a declarative map from the harness's canonical operations to a library's exports.

A binding file is TOML (schema: docs/bindings.md). It says, for a kernel library the harness did
not design, which export implements each canonical op (``harness.bindings.canonical.OPS``), in
which argument order, with which roles and weight layouts; how memory is allocated; and, for a
library with a model handle, which exports are its model-level calls. Every artifact has one:
the manifest names it (``binding``), and an artifact that names none is bound by
``harness/bindings/tinygpt.toml``, the bundled library's binding; no check calls an export by a
name of its own.

:func:`load_binding` validates the file with ``file:line`` errors (:class:`BindingError`, exit 2
at load); :meth:`Binding.check_exports` checks it against a module's exports and their wasm
types (a missing export, a wrong arity or kind) before any host starts.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

from harness.abi import KINDS, PARAM_KINDS, Kind, Signature, signatures_json
from harness.bindings import model_layout
from harness.bindings.canonical import (
    BUFFER_ROLES,
    LAYOUTS,
    MODEL_CALLS,
    OPS,
    CanonicalOp,
    Role,
)
from harness.bindings.model_layout import ModelLayout
from harness.formats import WasmTypes, export_mismatches
from harness.toml_lines import Path_, TomlLines, TomlValidator, read_toml

BUNDLED = Path(__file__).with_name("tinygpt.toml")
# Whole ABIs a binding may say its library also implements (``[binding] abi = ...``), beyond the
# ops it binds: tinygpt.h's fixed exports (tg_abi_version, tg_defaults_json, tg_noop, the thread
# count, and the fine-grained tg_model_* handle that harness.kernel.KernelModel drives), with
# harness.abi.EXPORTS's signatures. The smoke, model, defaults and bench checks need them.
ABIS = ("tinygpt.h",)


class BindingError(ValueError):
    """A binding file the harness cannot use; the message starts with ``file:line``."""


@dataclass(frozen=True)
class CallBinding:
    """One canonical op (or model call) bound to an export."""

    op: str  # the canonical name
    export: str
    args: tuple[str, ...]  # canonical argument names, in the export's order
    kinds: tuple[Kind, ...]  # each argument's kind, in the same order
    result: Kind
    roles: Mapping[str, Role]  # every argument of ``args`` (and ``fixed``) -> its role
    # canonical scalar -> the value built in
    fixed: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    # weight argument -> "out_in" | "in_out"
    layout: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    line: int = 0  # where the binding file declares it

    @property
    def signature(self) -> Signature:
        """The export's signature in harness.abi kinds."""
        return Signature(params=self.kinds, result=self.result)

    def weight_layout(self, arg: str) -> str:
        """The layout of weight argument ``arg`` (the reference's ``out_in`` unless declared)."""
        return self.layout.get(arg, "out_in")


@dataclass(frozen=True)
class MemoryBinding:
    """How the harness allocates and frees a buffer in the library's memory."""

    alloc: str
    free: str
    alloc_unit: int = 1  # bytes per unit of the allocator's argument (4: it counts floats)
    alloc_arg: Kind = "ptr"  # the allocator's argument kind (size_t: ptr; int: i32)


@dataclass(frozen=True)
class ThreadsBinding:
    """How the harness sets a library's kernel thread count (``[threads]``; tinygpt.h's ABI
    has it built in: ``tg_set_threads``, ``TG_MAX_THREADS``, ``tg_parallel_regions``)."""

    set: str  # int set(int n): puts n in effect; returns the count in effect (< 0: refused)
    max: int  # the most threads the library can run (its pool and the caller)
    regions: str = ""  # int regions(void): parallel regions run on pool workers so far; ""


@dataclass(frozen=True)
class Binding:
    """A parsed, validated binding file."""

    name: str
    path: Path
    memory: MemoryBinding | None  # None: the artifact format's allocator (tg_alloc, malloc)
    ops: Mapping[str, CallBinding]
    abi: str = ""  # one of ABIS: the library also has that ABI's fixed exports
    model: Mapping[str, CallBinding] = field(default_factory=lambda: MappingProxyType({}))
    # the [model.*] tables (params layout, state format, defaults), validated by their owner
    layout: ModelLayout | None = None
    # [exports]: calls outside the canonical ops
    extra_exports: Mapping[str, Signature] = field(default_factory=lambda: MappingProxyType({}))
    lines: TomlLines = field(default_factory=lambda: TomlLines(""), compare=False, repr=False)
    # [binding] header: a C header declaring the exports (a native library's arities)
    header: Path | None = None
    # [threads]: how to set the kernel thread count; None: the harness cannot (see .threads)
    thread_control: ThreadsBinding | None = None
    # why this binding applies to an artifact that names none (the bundled one, assumed): what
    # check_exports adds to its errors, which otherwise point at a file the project never wrote
    assumed: str = field(default="", compare=False)

    @property
    def threads(self) -> ThreadsBinding | None:
        """How to set the library's thread count: its ``[threads]`` table, else tinygpt.h's
        (``tg_set_threads``) for a library with that ABI; None when neither says."""
        if self.thread_control is not None or not self.abi:
            return self.thread_control
        from harness.abi import MAX_THREADS

        return ThreadsBinding("tg_set_threads", MAX_THREADS, "tg_parallel_regions")

    def where(self, path: Path_) -> str:
        """``file:line`` of a key path of the binding file."""
        return f"{self.path}:{self.lines.line_of(path)}"

    def signatures(self) -> dict[str, Signature]:
        """Every export the binding calls, with its signature (what hosts convert by)."""
        out: dict[str, Signature] = dict(self.extra_exports)
        if self.abi:
            from harness.abi import EXPORTS

            out.update(EXPORTS)
        m = self.memory
        if m is not None:
            out[m.alloc] = Signature((m.alloc_arg,), "ptr")
            out[m.free] = Signature(("ptr",), "void")
        for call in (*self.ops.values(), *self.model.values()):
            out[call.export] = call.signature
        t = self.thread_control
        if t is not None:
            out[t.set] = Signature(("i32",), "i32")
            if t.regions:
                out[t.regions] = Signature((), "i32")
        return out

    def signatures_json(self) -> dict[str, dict[str, object]]:
        """:meth:`signatures` as JSON-ready data (the manifest's and the JS loaders' form)."""
        return signatures_json(self.signatures())

    def export_line(self, export: str, key: str = "export") -> str:
        """``file:line`` of the first place the binding names ``export``: the ``key`` line
        (``export``, or ``args`` for a wrong arity) of the op or model call binding it, else its
        ``[memory]`` key, its ``[exports]`` entry, or ``[binding] abi`` (an ABI's fixed export)."""
        for section, calls in (("ops", self.ops), ("model", self.model)):
            for call in calls.values():
                if call.export == export:
                    return f"{self.path}:{self.lines.line_of((section, call.op, key))}"
        m = self.memory
        where: Path_ = ("binding", "abi")
        if m is not None and export in (m.alloc, m.free):
            where = ("memory", "alloc" if export == m.alloc else "free")
        elif export in self.extra_exports:
            where = ("exports", export)
        elif self.thread_control is not None and export in (
            self.thread_control.set,
            self.thread_control.regions,
        ):
            where = ("threads", "set" if export == self.thread_control.set else "regions")
        return f"{self.path}:{self.lines.line_of(where)}"

    def check_exports(
        self,
        found: Mapping[str, WasmTypes | None],
        ptr_width: int,
        module: str,
    ) -> None:
        """Raise BindingError unless every bound export is in ``found`` with the bound types.

        ``found`` maps export name -> (wasm param types, wasm result types), or None where the
        module cannot say (a native library's symbol table has no types: existence only).
        The error names the binding's file:line, the op, and the module; for a binding assumed
        for an artifact that names none, also that (:attr:`assumed`).
        """
        problem = self._export_problem(found, ptr_width, module)
        if problem:
            raise BindingError(f"{problem}; {self.assumed}" if self.assumed else problem)

    def _export_problem(
        self, found: Mapping[str, WasmTypes | None], ptr_width: int, module: str
    ) -> str:
        """What :meth:`check_exports` raises, for the first export (in the binding's order)
        that ``found`` lacks or types otherwise; "" when there is none."""
        signatures = self.signatures()
        misses = export_mismatches(found, signatures, ptr_width)
        if not misses:
            return ""
        name, types = misses[0].name, misses[0].found  # the first, in the binding's order
        sig = signatures[name]
        if types is None:
            where = self.export_line(name)
            near = _near(name, found)
            return f"{where}: export {name!r} is not in {module}" + (
                f" (did you mean {', '.join(near)}?)" if near else ""
            )
        params, results = misses[0].expected
        where = self.export_line(name, "args")
        if len(types[0]) != len(params):
            return (
                f"{where}: export {name!r} takes {len(types[0])} arguments in {module} "
                f"(wasm type {_fmt(types)}), the binding gives it {len(params)} "
                f"({' '.join(sig.params) or 'none'})"
            )
        return (
            f"{where}: export {name!r} has wasm type {_fmt(types)} in {module}, the "
            f"binding's kinds ({' '.join(sig.params)} -> {sig.result}) at {ptr_width}-bit "
            f"pointers are {_fmt((params, results))}"
        )


def _fmt(types: WasmTypes) -> str:
    return f"({', '.join(types[0])}) -> ({', '.join(types[1])})"


def _near(name: str, found: Iterable[str]) -> list[str]:
    import difflib

    stripped = {f.lstrip("_"): f for f in found}
    return [stripped[m] for m in difflib.get_close_matches(name.lstrip("_"), stripped, 3, 0.75)]


@cache
def bundled() -> Binding:
    """The bundled library's binding (``harness/bindings/tinygpt.toml``)."""
    return load_binding(BUNDLED)


@cache
def load_binding_cached(path: Path) -> Binding:
    """:func:`load_binding`, once per path per process (artifacts share their binding)."""
    return load_binding(path)


def load_binding(path: Path) -> Binding:
    """Parse and validate the binding file at ``path``; BindingError with ``file:line``."""
    data, text = read_toml(path, BindingError, "binding file")
    return _Validator(path, TomlLines(text)).binding(data)


def _a(word: str) -> str:
    """``word`` with its indefinite article ("an input", "a dim")."""
    return f"{'an' if word[0] in 'aeiou' else 'a'} {word}"


_IDENT = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]*$")


class _Validator(TomlValidator):
    """Checks the parsed TOML piece by piece; every error carries the offending line."""

    error_class = BindingError
    document = "(binding)"

    def export(self, where: Path_, value: object) -> str:
        name = self.typed(where, value, str, "an export name")
        if not _IDENT.match(name):
            raise self.error(where, f"{name!r} is not a C or JS identifier")
        return str(name)

    def binding(self, data: Mapping[str, Any]) -> Binding:
        self.table((), data, ("binding", "memory", "ops", "model", "exports", "threads"))
        if "binding" not in data:
            raise self.error((), "missing [binding] table (name = ...)")
        head = self.table(("binding",), data["binding"], ("name", "description", "abi", "header"))
        if "name" not in head:
            raise self.error(("binding",), "missing key 'name'")
        name = self.typed(("binding", "name"), head["name"], str, "a string")
        abi = str(self.typed(("binding", "abi"), head.get("abi", ""), str, "an ABI name"))
        if abi and abi not in ABIS:
            raise self.error(("binding", "abi"), f"unknown ABI {abi!r}; known: {', '.join(ABIS)}")
        header = None
        if "header" in head:
            rel = self.typed(("binding", "header"), head["header"], str, "a path")
            header = (self.path.parent / rel).resolve()
            if not header.is_file():
                raise self.error(("binding", "header"), f"no such header {header}")
        memory = self.memory(data["memory"]) if "memory" in data else None
        ops_raw = self.table(("ops",), data.get("ops", {}), OPS)
        ops = {op: self.call(("ops", op), raw, OPS[op]) for op, raw in ops_raw.items()}
        model, layout = self.model(data.get("model", {}))
        extra = self.extra(data.get("exports", {}))
        threads = self.threads(data["threads"], abi) if "threads" in data else None
        if not ops and not model and not abi:
            raise self.error((), "binds nothing: no [ops.*] and no [model] calls")
        return Binding(
            name=name,
            path=self.path,
            memory=memory,
            ops=MappingProxyType(ops),
            abi=abi,
            model=MappingProxyType(model),
            layout=layout,
            extra_exports=MappingProxyType(extra),
            lines=self.lines,
            header=header,
            thread_control=threads,
        )

    def threads(self, raw: object, abi: str) -> ThreadsBinding:
        """[threads]: ``set`` (an export taking the count, returning the count in effect),
        ``max`` (the most threads it runs) and optionally ``regions`` (an export counting the
        parallel regions run on pool workers, so a pool that never splits shows)."""
        w: Path_ = ("threads",)
        if abi:
            raise self.error(w, f"the {abi} ABI sets threads itself (tg_set_threads); drop it")
        t = self.table(w, raw, ("set", "max", "regions"))
        for key in ("set", "max"):
            if key not in t:
                raise self.error(w, f"missing key {key!r}")
        top = self.typed((*w, "max"), t["max"], int, "an integer")
        if top < 1:
            raise self.error((*w, "max"), f"must be at least 1 (the caller), got {top}")
        regions = self.export((*w, "regions"), t["regions"]) if "regions" in t else ""
        return ThreadsBinding(self.export((*w, "set"), t["set"]), top, regions)

    def memory(self, raw: object) -> MemoryBinding:
        w: Path_ = ("memory",)
        t = self.table(w, raw, ("alloc", "free", "alloc_unit", "alloc_arg"))
        for key in ("alloc", "free"):
            if key not in t:
                raise self.error(w, f"missing key {key!r}")
        unit = self.typed((*w, "alloc_unit"), t.get("alloc_unit", 1), int, "an integer")
        if unit not in (1, 2, 4, 8):
            raise self.error((*w, "alloc_unit"), f"must be 1, 2, 4 or 8 bytes, got {unit}")
        arg = self.typed((*w, "alloc_arg"), t.get("alloc_arg", "ptr"), str, "a kind")
        if arg not in ("ptr", "i32"):
            raise self.error(
                (*w, "alloc_arg"), f"must be 'ptr' (size_t) or 'i32' (int), got {arg!r}"
            )
        return MemoryBinding(
            self.export((*w, "alloc"), t["alloc"]), self.export((*w, "free"), t["free"]), unit, arg
        )

    def call(self, where: Path_, raw: object, op: CanonicalOp) -> CallBinding:
        t = self.table(where, raw, ("export", "args", "roles", "fixed", "layout", "size_t"))
        if "export" not in t:
            raise self.error(where, "missing key 'export'")
        export = self.export((*where, "export"), t["export"])
        if "args" not in t:
            raise self.error(
                where,
                f"missing key 'args' (the export's arguments in order, from: {', '.join(op.args)})",
            )
        args_raw = self.typed((*where, "args"), t["args"], list, "an array of argument names")
        args: list[str] = []
        for i, a in enumerate(args_raw):
            self.typed((*where, "args", i), a, str, "an argument name")
            if a not in op.args:
                raise self.error(
                    (*where, "args", i),
                    f"{op.name} has no argument {a!r}; its arguments: {', '.join(op.args)}",
                )
            if a in args:
                raise self.error((*where, "args", i), f"argument {a!r} is listed twice")
            args.append(a)
        fixed_raw = self.table((*where, "fixed"), t.get("fixed", {}), op.args)
        fixed: dict[str, float] = {}
        for a, v in fixed_raw.items():
            spec = op.args[a]
            if spec.role not in ("scalar", "dim"):
                raise self.error(
                    (*where, "fixed", a),
                    f"only scalars can be fixed; {a!r} is {_a(spec.role)} buffer",
                )
            value = self.typed((*where, "fixed", a), v, (int, float), "a number")
            if not math.isfinite(value):
                raise self.error((*where, "fixed", a), f"must be finite, got {value}")
            if a in args:
                raise self.error((*where, "fixed", a), f"{a!r} is both an argument and fixed")
            fixed[a] = float(value)
        missing = [
            a for a, s in op.args.items() if a not in args and a not in fixed and not s.optional
        ]
        if missing:
            raise self.error(
                (*where, "args"),
                f"{op.name} needs argument(s) {', '.join(missing)} "
                f"(list them, or `fixed = {{...}}` a built-in "
                f"scalar)",
            )
        roles: dict[str, Role] = {a: op.args[a].role for a in (*args, *fixed)}
        for a, r in self.table((*where, "roles"), t.get("roles", {}), args).items():
            default = op.args[a].role
            self.typed((*where, "roles", a), r, str, "a role")
            if default not in BUFFER_ROLES:
                raise self.error(
                    (*where, "roles", a),
                    f"{a!r} is {_a(default)}; only buffers take another role "
                    f"({', '.join(BUFFER_ROLES)})",
                )
            if r not in BUFFER_ROLES:
                raise self.error(
                    (*where, "roles", a),
                    f"unknown role {r!r}; a buffer's roles: {', '.join(BUFFER_ROLES)}",
                )
            if {default, r} - {"output", "accumulator"} and default != r:
                raise self.error(
                    (*where, "roles", a),
                    f"{a!r} is {_a(default)}; it may only switch between output and accumulator",
                )
            roles[a] = r
        size_t = self.typed((*where, "size_t"), t.get("size_t", []), list, "an array of dims")
        for i, a in enumerate(size_t):
            if a not in args or op.args[a].role != "dim":
                raise self.error(
                    (*where, "size_t", i), f"{a!r} is not a dim argument of this binding's args"
                )
        weights = [a for a in args if op.args[a].weight]
        layout = self.table((*where, "layout"), t.get("layout", {}), weights)
        for a, v in layout.items():
            self.typed((*where, "layout", a), v, str, "a layout")
            if v not in LAYOUTS:
                raise self.error(
                    (*where, "layout", a), f"must be one of {', '.join(LAYOUTS)}, got {v!r}"
                )
        return CallBinding(
            op=op.name,
            export=export,
            args=tuple(args),
            # a size_t dim travels as a pointer-width integer
            kinds=tuple("ptr" if a in size_t else op.args[a].kind for a in args),
            result=op.result,
            roles=MappingProxyType(roles),
            fixed=MappingProxyType(fixed),
            layout=MappingProxyType(dict(layout)),
            line=self.lines.line_of(where),
        )

    def model(self, raw: object) -> tuple[dict[str, CallBinding], ModelLayout]:
        w: Path_ = ("model",)
        subtables = ("params", "state", "defaults")
        t = self.table(w, raw, (*MODEL_CALLS, *subtables))
        calls = {
            name: self.call((*w, name), t[name], MODEL_CALLS[name])
            for name in MODEL_CALLS
            if name in t
        }
        if calls and "create" not in calls:  # at the first call's line: [model] has no header
            raise self.error((*w, next(iter(calls))), "model calls need a 'create' call")
        tables = {
            k: self.table((*w, k), t[k], t[k].keys() if isinstance(t[k], dict) else ())
            for k in subtables
            if k in t
        }
        # their owner validates them into the layout, state format and defaults, kept on Binding
        return calls, model_layout.validate(tables, self.error, self.lines.line_of)

    def extra(self, raw: object) -> dict[str, Signature]:
        """[exports]: calls outside the canonical ops (``tg_noop = { params = [], result =
        "void" }``) that checks use by name: the smoke check's and the bench's."""
        w: Path_ = ("exports",)
        self.typed(w, raw, dict, "a table")
        assert isinstance(raw, dict)
        t = raw
        out: dict[str, Signature] = {}
        for name, spec in t.items():
            self.export((*w, name), name)
            s = self.table((*w, name), spec, ("params", "result"))
            params = self.typed((*w, name, "params"), s.get("params", []), list, "an array")
            for i, k in enumerate(params):
                if k not in PARAM_KINDS:
                    raise self.error((*w, name, "params", i), f"unknown kind {k!r}")
            result = self.typed((*w, name, "result"), s.get("result", "void"), str, "a kind")
            if result not in KINDS:
                raise self.error((*w, name, "result"), f"unknown kind {result!r}")
            out[name] = Signature(tuple(params), result)
        return out
