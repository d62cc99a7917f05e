"""Format ``webgpu``: WGSL compute shaders + a declarative TOML manifest of how to dispatch them.

An artifact is a directory: ``kernels.toml`` (the entry file, role ``manifest``) and the ``.wgsl``
files it names (one role ``wgsl:<file name>`` each). Nothing is compiled ahead of time: WGSL is
shipped text, compiled by the browser's WebGPU implementation when the artifact loads
(``harness/js/format_webgpu.mjs``). Chromium loads it (started with ``--enable-unsafe-webgpu``),
and Node through the npm ``webgpu`` package (Dawn) installed beside the Node hosts: where Dawn
gives no adapter (no Vulkan driver), the cell is ``incompatible`` in Dawn's words. The Python
runtimes (native, wasmtime) are refused through
:meth:`~harness.formats.ArtifactFormat.refusal`, in the format's words.

The manifest says, per export (one canonical op each, called through the artifact's binding like
any other library):

- ``args``: the export's arguments in order (the binding's names for the op's arguments);
- ``buffers``: each pointer argument's element count, an expression of the dims (4-byte
  elements: float32, or int32 token ids);
- ``optional``: pointer arguments that may be NULL (0); ``has_<name>`` is then 0 in ``params``
  and a 16-byte zeroed buffer is bound in its place;
- ``layout``: the bind-group layout, binding ``i`` = entry ``i`` as ``name:type`` with type
  ``uniform`` (only ``params``), ``storage`` (read-write: read back into memory after the op)
  or ``read-only-storage``;
- ``params``: the fields of the uniform struct, in order, each 4 bytes (dims as ``u32``, f32
  scalars as ``f32``, ``has_<name>`` as ``u32``), at most 64 (the loader's 256-byte uniform);
- ``result``: ``void``, or ``mean:<buffer>`` (crossentropy's mean loss, summed in float32 in
  index order after the read-back); it must be what the canonical op the binding maps the export
  to returns, as the arity and pointer positions must be the binding call's
  (:meth:`WebGpuFormat.call_problem`, checked at load);
- ``[[ops.X.passes]]``: dispatches in order, each ``shader``, ``entry``, ``workgroup_size``
  (must equal the entry's ``@workgroup_size``) and ``dispatch`` (three expressions: workgroup
  counts).

Expressions: integers, the op's dims and ``has_*`` flags, ``+ - * //``, ``cdiv(a, b)`` (ceiling
division), ``max(a, b)``, ``min(a, b)``, parentheses.

Checks at manifest load (``tinygpt-harness run`` exits 2, ``kernels.toml:LINE: key: what``): the
schema, every expression, every shader a file of the artifact's set, every entry point present with
that workgroup size (integer literals, or module-scope ``const``s of one), every ``@group(0)
@binding(i)`` declaration (either attribute order) of the type the layout gives binding ``i``, no
resource declared at another ``@group`` (the loader's pipeline layout is the one bind group), and
the uniform's type against ``params``: a struct of the shader (or one scalar or vector) whose
4-byte slots (``u32``/``i32``/``f32`` fields, or vectors of them) read ``params[i]`` at byte
``4*i``, where the loader writes it, for the first params or all of them, an ``f32`` never where
a ``has_*`` flag (an integer) goes; fields after them are padding, which the pass's entry must
not read. Field names are not compared (the loader
writes by position); a dim's scalar kind is the binding's, compared with its field when the
binding is checked (:meth:`WebGpuFormat.call_problem`). All are read from the shader's live code
(comments stripped: :func:`strip_comments`), with ``shader.wgsl:LINE`` in the message. The WGSL
itself is compiled only in the browser: a shader that does not compile is its cells' ``error``
with the compiler's message and line.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

from harness.abi import Signature
from harness.formats import ArtifactFormat, FormatError, WasmTypes
from harness.surfaces.base import line_of
from harness.toml_lines import TomlLines, TomlValidator, read_toml

MANIFEST_ROLE = "manifest"
WGSL_ROLE = "wgsl:"  # + the shader's file name
BINDING_TYPES = ("uniform", "storage", "read-only-storage")
RESULTS = ("void", "f32")
EXPR_FUNCTIONS = ("cdiv", "max", "min")
# ``[webgpu] test_fault``: a fault the loader provokes for real, for tests of what a cell does
# then (never in the bundled manifest): the device destroyed after an op's submit, before its
# results are read back, so WebGPU loses it mid-op (device.lost, reason "destroyed").
TEST_FAULTS = ("destroy-device-mid-op",)
# the allocator of the loader's emulated linear memory (format_webgpu.mjs)
ALLOC_SIGNATURES = MappingProxyType(
    {"tg_alloc": Signature(("ptr",), "ptr"), "tg_free": Signature(("ptr",), "void")}
)
# the composed train step's exports, provided by the loader itself (harness/js/webgpu_step.mjs)
# over the manifest's ops; their kinds are the binding's [exports]
STEP_EXPORTS = ("tgw_step_create", "tgw_step_load", "tgw_step_forward", "tgw_step_backward",
                "tgw_step_train", "tgw_step_params", "tgw_step_time", "tgw_step_free")  # fmt: skip
# a resource declaration, its two attributes in either order (WGSL allows both): group and
# binding arguments (literals or const names, resolved by the check), address space, name, type
_DECL = re.compile(
    r"(?:@group\s*\(([^)]*)\)\s*@binding\s*\(([^)]*)\)|"
    r"@binding\s*\(([^)]*)\)\s*@group\s*\(([^)]*)\))"
    r"\s*var(?:\s*<\s*([^>]*)>\s*|\s+)(\w+)(?:\s*:\s*([^;=]+))?"
)
# a struct declaration (module scope only in WGSL; its body holds no braces) and a type alias
_STRUCT = re.compile(r"\bstruct\s+(\w+)\s*\{([^{}]*)\}")
_ALIAS = re.compile(r"\balias\s+(\w+)\s*=\s*([^;]+);")
# a struct member: its attributes, name and type
_MEMBER = re.compile(r"((?:@\w+(?:\s*\([^)]*\))?\s*)*)(\w+)\s*:\s*(.+?)\s*", re.S)
_ATTR = re.compile(r"@(\w+)\s*(?:\(([^)]*)\))?")
# a padding member's name: the first name followed by a colon (its attributes have none)
_MEMBER_NAME = re.compile(r"(\w+)\s*:")
# a vector of 4-byte scalars, long form or predeclared alias (vec4<u32>, vec4u, vec2f, vec3i)
_VEC = re.compile(r"vec([234])\s*<\s*(u32|i32|f32)\s*,?\s*>|vec([234])([uif])")
# the scalars the loader writes into the uniform, 4 bytes each: setInt32 for a has_* flag and a
# dim the binding types i32 (as u32 or i32 the shader reads the same non-negative value),
# setFloat32 for one it types f32
SCALARS = ("u32", "i32", "f32")
_ENTRY = re.compile(r"@compute\s+@workgroup_size\s*\(([^)]*)\)\s*fn\s+(\w+)|"
                    r"@workgroup_size\s*\(([^)]*)\)\s*@compute\s*fn\s+(\w+)")  # fmt: skip
# a module-scope `const NAME[: type] = value;` (a @workgroup_size argument may name one)
_CONST = re.compile(r"\bconst\s+(\w+)\s*(?::\s*\w+\s*)?=\s*([^;]*);")
# a WGSL integer literal: decimal or hex, an optional i/u suffix
_INT = re.compile(r"(0[xX][0-9a-fA-F]+|0|[1-9][0-9]*)[iu]?")
# the loader's uniform buffer (UNIFORM_BYTES in format_webgpu.mjs): params are 4 bytes each
UNIFORM_BYTES = 256
# WGSL's line breaks (they end a `//` comment)
_LINE_BREAKS = frozenset("\n\v\f\r\x85\u2028\u2029")


def strip_comments(text: str) -> str:
    """``text`` with its WGSL comments blanked: ``//`` to the end of the line and ``/* */``
    blocks, which nest in WGSL. Every other character is kept (a block's line breaks too), so
    offsets and line numbers stay those of the file. An unclosed block runs to the end (the
    compiler reports it)."""
    out = list(text)
    i, n, depth = 0, len(text), 0
    while i < n:
        pair = text[i : i + 2]
        if depth == 0 and pair == "//":
            while i < n and text[i] not in _LINE_BREAKS:
                out[i] = " "
                i += 1
        elif pair == "/*" or (depth and pair == "*/"):
            depth += 1 if pair == "/*" else -1
            out[i] = out[i + 1] = " "
            i += 2
        else:
            if depth and text[i] not in _LINE_BREAKS:
                out[i] = " "
            i += 1
    return "".join(out)


def int_literal(text: str) -> int | None:
    """The value of WGSL integer literal ``text`` (``128``, ``128u``, ``0x80i``), else None."""
    m = _INT.fullmatch(text.strip())
    return int(m.group(1), 0) if m else None


def module_consts(text: str) -> dict[str, int | None]:
    """The module-scope ``const`` declarations of comment-free WGSL ``text``, by name: the
    integer literal each is, or None for another value (an expression, a float) or a name
    declared twice. A ``const`` inside a function (braces open) is not one: it cannot be an
    attribute's argument, and may shadow a module-scope one."""
    out: dict[str, int | None] = {}
    for m in _CONST.finditer(text):
        before = text[: m.start()]
        if before.count("{") != before.count("}"):
            continue
        name = m.group(1)
        out[name] = None if name in out else int_literal(m.group(2))
    return out


def const_value(text: str, consts: Mapping[str, int | None]) -> int | None:
    """The integer attribute argument ``text`` is: an integer literal, or the name of a
    module-scope ``const`` of one (``consts``: :func:`module_consts`); else None."""
    value = int_literal(text)
    return consts.get(text.strip()) if value is None else value


def struct_members(body: str) -> list[tuple[int, str]]:
    """The members of a struct's ``body`` as (offset in ``body``, text): split at the commas
    outside ``<>``, ``()`` and ``[]`` (``array<f32, 4>``, ``@align(4)``), each text from its
    first non-blank; the empty rest after a trailing comma is no member."""
    out, depth, start = [], 0, 0
    for i, c in enumerate(body + ","):
        if c in "<([":
            depth += 1
        elif c in ">)]":
            depth -= 1
        elif c == "," and depth == 0:
            piece = body[start:i]
            if piece.strip():
                out.append((start + len(piece) - len(piece.lstrip()), piece.strip()))
            start = i + 1
    return out


def unalias(type_text: str, aliases: Mapping[str, str]) -> str:
    """``type_text`` (blanks normalized) through the shader's ``alias`` chain (a cycle, which
    does not compile, stops after as many steps as there are aliases)."""
    out = " ".join(type_text.split())
    for _ in range(len(aliases)):
        if out not in aliases:
            break
        out = " ".join(aliases[out].split())
    return out


def _uniform_problem(op: GpuOp, sig: Signature, names: Sequence[str]) -> str | None:
    """Where a pass's uniform reads a param as another type than the loader writes it: an f32
    scalar of the binding (``setFloat32``) into an integer field, or an i32 one (``setInt32``)
    into an f32 field, which reads the other's bits (1e-5 as u32 is 925353388; 64 as f32 is
    9e-44); None if every field agrees. Pointer positions were compared first, so each param
    that is an argument is a scalar there."""
    for p in op.passes:
        for i, (param, (field, ftype)) in enumerate(zip(op.params, p.uniform, strict=False)):
            if param not in op.args or param.startswith("has_"):
                # a has_* flag: the loader writes it with setInt32 whatever the binding's kind
                # (format_webgpu.mjs), checked against its field at load
                continue
            k = op.args.index(param)
            kind = sig.params[k]
            if (kind == "f32") == (ftype == "f32"):
                continue
            writes = "setFloat32" if kind == "f32" else "setInt32"
            return (
                f"passes {names[k]!r} (argument {k + 1}, kernels.toml's {param!r}) as {kind}, "
                f"which the loader writes into params[{i}] with {writes}, but {field}, reads "
                f"it as {ftype}: declare the field {'f32' if kind == 'f32' else 'u32 or i32'}, "
                f"or make the binding's argument {'i32' if kind == 'f32' else 'f32'}"
            )
    return None


def vector_of(type_text: str) -> tuple[str, ...] | None:
    """The 4-byte scalar types ``type_text`` holds, one per component: a scalar (one), a
    ``vecN<T>`` or its predeclared alias (``vec4u``: N); None for any other type."""
    if type_text in SCALARS:
        return (type_text,)
    m = _VEC.fullmatch(type_text)
    if m is None:
        return None
    if m.group(1):
        return (m.group(2),) * int(m.group(1))
    return ({"u": "u32", "i": "i32", "f": "f32"}[m.group(4)],) * int(m.group(3))


def names_var(body: str, var: str) -> bool:
    """Whether ``body`` names the module-scope variable ``var`` (not a member ``x.var``)."""
    return re.search(rf"(?<![.\w]){var}\b", body) is not None


def padding_read(body: str, var: str, field: str, first: int) -> re.Match[str] | None:
    """Where ``body`` reads padding of uniform ``var``: its ``field`` ("" for the uniform
    itself) whole when ``first`` is 0, else the components from ``first`` on of that vector
    (a swizzle letter or a literal index); None if it reads none."""
    head = rf"(?<![.\w]){var}" + (rf"\s*\.\s*{field}" if field else "")
    if first == 0:
        return re.search(head + r"\b", body)
    for m in re.finditer(head + r"\s*(?:\.\s*([xyzwrgba]+)\b|\[\s*(\d+)[ui]?\s*\])", body):
        picked = ["xyzw".find(c) if c in "xyzw" else "rgba".find(c) for c in m.group(1) or ""]
        if max(picked or [int(m.group(2) or 0)]) >= first:
            return m
    return None


def entry_body(text: str, entry: str) -> tuple[int, int]:
    """The span of ``fn entry``'s body in comment-free ``text``, its braces matched; the whole
    text when the function is not found (the entry check names that) or its braces do not
    close (the compiler's error)."""
    m = re.search(rf"\bfn\s+{re.escape(entry)}\s*\(", text)
    start = text.find("{", m.end()) if m else -1
    if start < 0:
        return 0, len(text)
    depth = 0
    for i in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return start, i + 1
    return 0, len(text)


class WebGpuManifestError(FormatError):
    """A ``kernels.toml`` that does not validate: ``file:line: key: what``."""


@dataclass(frozen=True)
class Pass:
    """One dispatch: an entry point of a shader, its workgroup size and workgroup counts."""

    shader: str
    entry: str
    workgroup_size: tuple[int, int, int]
    dispatch: tuple[str, str, str]
    # the uniform's slot reading params[i], as ("shader.wgsl:LINE: field", scalar type), for
    # the first params its uniform holds (none when the shader declares no uniform, or its
    # struct is declared twice): a binding's scalar kinds are compared with these types at
    # load (WebGpuFormat.call_problem); the loader never reads it
    uniform: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class GpuOp:
    """How one export runs: its arguments, buffers, bind-group layout, params and passes."""

    export: str
    args: tuple[str, ...]
    buffers: Mapping[str, str]
    optional: tuple[str, ...]
    layout: tuple[tuple[str, str], ...]  # (name, binding type), binding i = entry i
    params: tuple[str, ...]
    result: str  # "void" or "mean:<buffer>"
    passes: tuple[Pass, ...]
    table: str = ""  # its [ops.<table>] in kernels.toml (where an error about it points)

    def to_json(self) -> dict[str, Any]:
        """The form ``format_webgpu.mjs`` reads."""
        return {
            "export": self.export,
            "args": list(self.args),
            "buffers": dict(self.buffers),
            "optional": list(self.optional),
            "layout": [{"name": n, "type": t} for n, t in self.layout],
            "params": list(self.params),
            "result": self.result,
            "passes": [
                {"shader": p.shader, "entry": p.entry, "workgroup_size": list(p.workgroup_size),
                 "dispatch": list(p.dispatch)}
                for p in self.passes
            ],
        }  # fmt: skip


@dataclass(frozen=True)
class GpuManifest:
    """A validated ``kernels.toml``."""

    path: Path
    name: str
    ops: Mapping[str, GpuOp]  # by export name
    test_fault: str = ""  # one of TEST_FAULTS, or "" (none)

    def to_json(self) -> dict[str, Any]:
        """The plan handed to the JS loader inside the LOAD entry."""
        ops = {e: op.to_json() for e, op in self.ops.items()}
        return {"name": self.name, "ops": ops, "test_fault": self.test_fault}


def check_expression(text: str, names: frozenset[str]) -> str | None:
    """None if ``text`` is a dispatch/size expression over ``names``, else what is wrong."""
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        return f"expression {text!r} does not parse: {exc.msg}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Expression | ast.Load | ast.Add | ast.Sub | ast.Mult):
            continue
        if isinstance(node, ast.FloorDiv | ast.BinOp):
            continue
        if isinstance(node, ast.Constant) and type(node.value) is int:
            continue
        if isinstance(node, ast.Name):
            if node.id in names or node.id in EXPR_FUNCTIONS:
                continue
            known = ", ".join(sorted(names))
            return f"expression {text!r}: unknown name {node.id!r}; known: {known}"
        if isinstance(node, ast.Call):
            fn = node.func.id if isinstance(node.func, ast.Name) else "?"
            if fn in EXPR_FUNCTIONS and len(node.args) == 2 and not node.keywords:
                continue
            return f"expression {text!r}: only {', '.join(EXPR_FUNCTIONS)}(a, b) may be called"
        return f"expression {text!r}: {type(node).__name__} is not allowed"
    return None


class _Validator(TomlValidator):
    error_class = WebGpuManifestError
    document = "(kernels.toml)"

    def manifest(self, data: Mapping[str, Any], shaders: Mapping[str, str]) -> GpuManifest:
        self.table((), data, ("webgpu", "ops"))
        head = self.table(
            ("webgpu",), data.get("webgpu", {}), ("name", "description", "test_fault")
        )
        name = self.typed(("webgpu", "name"), head.get("name", ""), str, "a string")
        fault = self.typed(("webgpu", "test_fault"), head.get("test_fault", ""), str, "a string")
        if fault and fault not in TEST_FAULTS:
            known = ", ".join(TEST_FAULTS)
            raise self.error(("webgpu", "test_fault"), f"{fault!r}: must be one of {known}")
        ops_table = self.table(("ops",), data.get("ops", {}), data.get("ops", {}))
        if not ops_table:
            raise self.error(("ops",), "the manifest declares no op")
        ops = {}
        for op_name, body in ops_table.items():
            op = self.op(("ops", op_name), body, shaders)
            if op.export in ops:
                raise self.error(("ops", op_name, "export"), f"export {op.export!r} repeats")
            ops[op.export] = op
        return GpuManifest(self.path, name, MappingProxyType(ops), fault)

    def op(self, where: tuple[str, ...], body: object, shaders: Mapping[str, str]) -> GpuOp:
        keys = ("export", "args", "buffers", "optional", "layout", "params", "result", "passes")
        t = self.table(where, body, keys)
        for key in ("export", "args", "buffers", "layout", "passes"):
            if key not in t:
                raise self.error(where, f"missing key {key!r}")
        export = self.typed((*where, "export"), t["export"], str, "a string")
        args = self.strings((*where, "args"), t["args"])
        if len(set(args)) != len(args):
            raise self.error((*where, "args"), f"an argument repeats: {list(args)}")
        buffers_t = self.typed((*where, "buffers"), t["buffers"], dict, "a table")
        dims = frozenset(a for a in args if a not in buffers_t)
        optional = self.strings((*where, "optional"), t.get("optional", []))
        names = dims | {f"has_{o}" for o in optional}
        buffers: dict[str, str] = {}
        for b, expr in buffers_t.items():
            at = (*where, "buffers", b)
            if b not in args:
                raise self.error(at, f"{b!r} is not an argument of the op ({', '.join(args)})")
            problem = check_expression(self.typed(at, expr, str, "an expression string"), dims)
            if problem:
                raise self.error(at, problem)
            buffers[b] = expr
        for i, o in enumerate(optional):
            if o not in buffers:
                raise self.error((*where, "optional", i), f"{o!r} is not a buffer of the op")
        layout = []
        for i, entry in enumerate(self.strings((*where, "layout"), t["layout"])):
            bname, _, btype = entry.partition(":")
            at = (*where, "layout", i)
            if btype not in BINDING_TYPES:
                raise self.error(at, f"{entry!r}: type must be one of {', '.join(BINDING_TYPES)}")
            if (btype == "uniform") != (bname == "params"):
                raise self.error(at, f"{entry!r}: only `params` is, and must be, a uniform")
            if bname != "params" and bname not in buffers:
                raise self.error(at, f"{entry!r}: {bname!r} is not a buffer of the op")
            layout.append((bname, btype))
        params = self.strings((*where, "params"), t.get("params", []))
        for i, p in enumerate(params):
            if p not in names:
                raise self.error((*where, "params", i), f"{p!r} is not a dim or has_* flag")
        if len(params) * 4 > UNIFORM_BYTES:
            raise self.error(
                (*where, "params"),
                f"{len(params)} fields: the loader's uniform buffer is {UNIFORM_BYTES} bytes, "
                f"{UNIFORM_BYTES // 4} fields of 4 bytes at most",
            )
        if params and ("params", "uniform") not in layout:
            raise self.error((*where, "layout"), "params are declared but no `params:uniform`")
        result = self.typed((*where, "result"), t.get("result", "void"), str, "a string")
        kind, _, of = result.partition(":")
        if result != "void" and not (kind == "mean" and of in buffers):
            raise self.error((*where, "result"), f"{result!r}: must be void or mean:<buffer>")
        passes_v = self.typed((*where, "passes"), t["passes"], list, "an array of tables")
        if not passes_v:
            raise self.error((*where, "passes"), "an op needs at least one pass")
        passes = tuple(
            self.one_pass((*where, "passes", i), p, names, layout, params, shaders)
            for i, p in enumerate(passes_v)
        )
        return GpuOp(export, args, MappingProxyType(buffers), optional, tuple(layout),
                     params, result, passes, str(where[-1]))  # fmt: skip

    def one_pass(
        self, where: tuple[str | int, ...], body: object, names: frozenset[str],
        layout: list[tuple[str, str]], params: tuple[str, ...], shaders: Mapping[str, str],
    ) -> Pass:  # fmt: skip
        t = self.table(where, body, ("shader", "entry", "workgroup_size", "dispatch"))
        for key in ("shader", "entry", "workgroup_size", "dispatch"):
            if key not in t:
                raise self.error(where, f"missing key {key!r}")
        shader = self.typed((*where, "shader"), t["shader"], str, "a string")
        if shader not in shaders:
            raise self.error(
                (*where, "shader"),
                f"{shader!r} is not a file of the artifact (files: {', '.join(sorted(shaders))})",
            )
        entry = self.typed((*where, "entry"), t["entry"], str, "a string")
        size = self.typed((*where, "workgroup_size"), t["workgroup_size"], list, "[x, y, z]")
        if len(size) != 3 or not all(type(v) is int and v >= 1 for v in size):
            raise self.error((*where, "workgroup_size"), f"must be 3 positive integers, got {size}")
        dispatch = self.strings((*where, "dispatch"), t["dispatch"])
        if len(dispatch) != 3:
            raise self.error((*where, "dispatch"), f"must be 3 expressions, got {len(dispatch)}")
        for i, expr in enumerate(dispatch):
            problem = check_expression(expr, names)
            if problem:
                raise self.error((*where, "dispatch", i), problem)
        uniform = self.check_wgsl(where, shader, shaders[shader], entry, tuple(size), layout,
                                  params)  # fmt: skip
        wg = (size[0], size[1], size[2])
        return Pass(shader, entry, wg, (dispatch[0], dispatch[1], dispatch[2]), uniform)

    def check_wgsl(
        self, where: tuple[str | int, ...], shader: str, text: str, entry: str,
        size: tuple[int, ...], layout: list[tuple[str, str]], params: tuple[str, ...],
    ) -> tuple[tuple[str, str], ...]:  # fmt: skip
        """The entry point and its workgroup size, each declared resource's group (0: the one
        the loader binds) and its binding's type, and the uniform's fields against ``params``,
        as the shader's live code says (its comments stripped: an old declaration or entry
        point in a comment is not the shader's). Returns the uniform's field of each param
        (:attr:`Pass.uniform`)."""
        text = strip_comments(text)
        consts = module_consts(text)
        uniform: tuple[tuple[str, str], ...] = ()
        uniforms: list[tuple[int, int, str, str]] = []  # (line, binding, variable, type)
        body = entry_body(text, entry)
        entries: dict[str, list[str]] = {}
        for m in _ENTRY.finditer(text):
            args, fn = (m.group(1), m.group(2)) if m.group(2) else (m.group(3), m.group(4))
            entries.setdefault(fn, []).append(args)
        if entry not in entries:
            raise self.error(
                (*where, "entry"),
                f"no `@compute @workgroup_size(..) fn {entry}` in {shader} "
                f"(entry points: {', '.join(sorted(entries)) or 'none'})",
            )
        # Two live functions of one name do not compile: that is the compiler's error (the
        # cell's, with its line), and which size "the" entry has is then unknowable, so none is
        # checked here rather than one picked.
        if len(entries[entry]) == 1:
            self.check_workgroup_size(where, shader, entry, entries[entry][0], size, consts)
        # where = (*op, "passes", i): a binding's type and the uniform's fields are the op's
        # layout's and params' to say
        op_where = where[:-2]
        for m in _DECL.finditer(text):
            group_arg, index_arg = (
                (m.group(1), m.group(2)) if m.group(1) is not None else (m.group(4), m.group(3))
            )
            var, line = m.group(6), line_of(text, m.start())
            at = f"{shader}:{line}: {var}'s"
            group = self.resolve((*where, "shader"), f"{at} @group({group_arg.strip()})",
                                 group_arg, consts)  # fmt: skip
            # Any resource at another group is refused, used by the pass's entry or not: the
            # loader's pipeline layout has the one bind group (format_webgpu.mjs), so an entry
            # using it cannot be built, and whether this entry uses it is beyond a regex.
            if group != 0:
                raise self.error(
                    (*where, "shader"),
                    f"{shader}:{line}: {var} is declared at @group({group}): the loader binds "
                    "only @group(0) (one bind group, the op's layout), so a pipeline using it "
                    "cannot be built: declare it at @group(0) with a layout entry, or remove it",
                )
            index = self.resolve((*where, "shader"), f"{at} @binding({index_arg.strip()})",
                                 index_arg, consts)  # fmt: skip
            space = "".join((m.group(5) or "").split())
            kind = {"uniform": "uniform", "storage,read_write": "storage"}.get(
                space, "read-only-storage" if space in ("storage", "storage,read") else space
            )
            # One file may serve several ops (forward and backward), each entry using its own
            # bindings: a declaration the layout has no place for is this pass's mistake only
            # if its entry names it (a use through a helper function is left to the browser).
            named = names_var(text[body[0] : body[1]], var)
            if index >= len(layout) and named:
                raise self.error(
                    (*op_where, "layout"),
                    f"{shader} declares @binding({index}) {var}, past the layout's "
                    f"{len(layout)} entries",
                )
            if index < len(layout) and kind != layout[index][1] and named:
                raise self.error(
                    (*op_where, "layout", index),
                    f"{shader} declares @binding({index}) {var} as "
                    f"{f'var<{m.group(5)}>' if m.group(5) else 'a handle (texture or sampler)'}, "
                    "the layout "
                    f"gives binding {index} ({layout[index][0]}) type {layout[index][1]}",
                )
            if kind == "uniform" and index < len(layout) and layout[index][1] == "uniform":
                uniforms.append((line, index, var, m.group(7) or ""))
        if len(uniforms) > 1:
            # One file may serve several entry points, each with its own uniform at the same
            # binding (legal: only one entry's clash is an error): check the one this entry
            # names. Used only through a helper function, none is named, and none is checked.
            uniforms = [u for u in uniforms if names_var(text[body[0] : body[1]], u[2])]
        if len(uniforms) == 1:
            uniform = self.check_uniform(op_where, shader, text, uniforms[0], params, consts, body)
        return uniform

    def resolve(
        self, where: tuple[str | int, ...], what: str, arg: str, consts: Mapping[str, int | None]
    ) -> int:
        """The integer of attribute argument ``arg`` (``what`` names it in the error): a
        literal or a module-scope ``const`` of one, else refused at ``where``."""
        # WGSL allows one trailing comma in an attribute's arguments: @binding(2,)
        value = const_value(arg.strip().removesuffix(","), consts)
        if value is None:
            raise self.error(
                where,
                f"{what}: {arg.strip()!r} is not an integer literal or a module-scope `const` "
                "of one, which is all this check resolves (an `override` or a const expression "
                "is not: write the literal)",
            )
        return value

    def check_uniform(
        self, op_where: tuple[str | int, ...], shader: str, text: str,
        decl: tuple[int, int, str, str], params: tuple[str, ...],
        consts: Mapping[str, int | None], body: tuple[int, int],
    ) -> tuple[tuple[str, str], ...]:  # fmt: skip
        """The uniform ``decl`` (line, binding, variable, type) of comment-free ``text`` holds
        what the loader writes: ``params[i]`` at byte ``4*i`` (format_webgpu.mjs ``uniform``).
        Returns the field of each param it reads, as ("shader.wgsl:LINE: label", scalar type).

        Its type is a struct of the shader (through ``alias``es), its fields 4-byte scalars or
        vectors of them, the component reading ``params[i]`` at byte ``4*i`` (an ``@align`` or
        ``@size`` may not move it); or one such scalar or vector. A pass may read fewer fields
        than the op has params (the first ones): params belong to the op, and another of its
        passes may need more. Fields past the params are padding (a std140 habit: ``_pad0:
        u32``), left 0 by the loader's zero-filled uniform, so the entry (``body``: its span in
        ``text``) must not read one. Any other type (an array) is refused: this check reads
        fields and vectors, not array strides."""
        line, index, var, type_text = decl
        at = (*op_where, "params")
        aliases = {a.group(1): a.group(2) for a in _ALIAS.finditer(text)}
        tname = unalias(type_text, aliases)
        structs = [s for s in _STRUCT.finditer(text) if s.group(1) == tname]
        label = f"@binding({index}) {var}: {tname}"
        pads: list[tuple[int, str, int]] = []  # padding: (line, field, first component)
        each = vector_of(tname)
        if each is not None:
            scalars = [
                (line, f"{label} (.{'xyzw'[c]})" if len(each) > 1 else label, t)
                for c, t in enumerate(each)
            ]
            if len(params) < len(each):  # what no param fills reads 0
                pads.append((line, "", len(params)))
        elif len(structs) > 1:
            return ()  # a struct declared twice does not compile: the compiler's error
        elif not structs:
            raise self.error(
                at,
                f"{shader}:{line}: @binding({index}) {var} is the uniform, but its type "
                f"{tname} is no struct of {shader}: the loader writes params[i] at byte 4*i, "
                "which this check reads from a struct of u32/i32/f32 fields or vectors (or one "
                "such scalar or vector): declare the uniform as one",
            )
        else:
            scalars, pads = self.struct_fields(at, shader, text, structs[0], aliases, consts,
                                               len(params))  # fmt: skip
        view = text[body[0] : body[1]]
        for fline, name, first in pads:
            read = padding_read(view, var, name, first)
            if read:
                what = " ".join(read.group(0).split())
                raise self.error(
                    at,
                    f"{len(params)} param{'s' * (len(params) != 1)} "
                    f"({', '.join(params) or 'none'}), but {shader}:"
                    f"{line_of(text, body[0] + read.start())}: the entry reads {what} "
                    f"({shader}:{fline}), which no param fills (the loader zero-fills the rest "
                    "of the uniform): add its param, in the struct's order",
                )
        # Names are not compared: the loader writes by position and WGSL's names are the
        # shader's own (the bundled adamw's `wd` is kernels.toml's `weight_decay`), so a name
        # that differs misreads nothing. Of the type, kernels.toml knows only that a has_*
        # flag is an integer (setInt32: u32 or i32 read it alike); a dim's kind is the
        # binding's (i32 or f32, format_webgpu.mjs `this.kinds`), compared with the field's
        # type when a binding is checked against the artifact (call_problem).
        read_by = list(zip(params, scalars, strict=False))
        for i, (p, (fline, flabel, ftype)) in enumerate(read_by):
            if p.startswith("has_") and ftype == "f32":
                raise self.error(
                    (*at, i),
                    f"{p!r} is written as an integer (0 or 1), but {shader}:{fline}: {flabel}, "
                    f"reads it as f32: {'split the vector, ' * ('(.' in flabel)}declare it u32",
                )
        return tuple(
            (f"{shader}:{fline}: {flabel}", ftype) for _, (fline, flabel, ftype) in read_by
        )

    def struct_fields(
        self, at: tuple[str | int, ...], shader: str, text: str, struct: re.Match[str],
        aliases: Mapping[str, str], consts: Mapping[str, int | None], n: int,
    ) -> tuple[list[tuple[int, str, str]], list[tuple[int, str, int]]]:  # fmt: skip
        """The uniform's ``struct``: each 4-byte slot its fields hold up to ``params[n-1]``, as
        (line, label, scalar type), and the padding fields past them, as (line, name).

        A field starting before slot ``n`` must be a 4-byte scalar or a vector of them, its
        slot ``i`` at byte ``4*i``; refused at ``at`` otherwise. A padding field may be of any
        type: its name is all the caller needs (one too large for the loader's uniform is the
        browser's validation error, in the cell)."""
        slots: list[tuple[int, str, str]] = []
        pads: list[tuple[int, str, int]] = []  # (line, name, its first padding component)
        offset = 0
        for i, (pos, member) in enumerate(struct_members(struct.group(2))):
            fline = line_of(text, struct.start(2) + pos)
            head = f"{shader}:{fline}: struct {struct.group(1)}'s field {i + 1}"
            if len(slots) >= n:
                named = _MEMBER_NAME.search(member)
                if named:
                    pads.append((fline, named.group(1), 0))
                continue
            m = _MEMBER.fullmatch(member)
            if m is None:
                raise self.error(
                    at,
                    f"{head}, {member!r}, is not `[@attributes] name: type`, which is all this "
                    "check reads of a field",
                )
            name, ftype = m.group(2), " ".join(m.group(3).split())
            each = vector_of(unalias(ftype, aliases))
            if each is None:
                raise self.error(
                    at,
                    f"{head}, {name}: {ftype}, is not a 4-byte scalar (u32, i32 or f32) or a "
                    "vector of them: the loader writes each param as 4 bytes at byte 4*i, "
                    "which this check reads of fields and vectors, not of arrays or structs; "
                    "split it into u32/i32/f32 fields",
                )
            # WGSL's layout: a field starts at the next multiple of its alignment (4 for a
            # scalar, 8 for a vec2, 16 for a vec3 or vec4, or its @align) and takes its size
            # (4 per component, or its @size). Other member attributes do not change it.
            size = {"align": 16 if len(each) > 2 else 4 * len(each), "size": 4 * len(each)}
            for a in _ATTR.finditer(m.group(1)):
                if a.group(1) in size:
                    what = f"{head}, {name}'s @{a.group(1)}({(a.group(2) or '').strip()})"
                    size[a.group(1)] = self.resolve(at, what, a.group(2) or "", consts)
            align = max(size["align"], 1)  # @align(0) does not compile: no division by it
            offset = -(-offset // align) * align
            k = len(slots)
            if offset != 4 * k:
                raise self.error(
                    at,
                    f"{head}, {name}, is at byte {offset} (its alignment, an @align or @size "
                    f"on it or a field before it), the loader writes params[{k}] at byte "
                    f"{4 * k}: remove the attribute, or reorder the fields",
                )
            offset += size["size"]
            flabel = f"struct {struct.group(1)}'s field {i + 1}, {name}: {ftype}"
            if len(slots) + len(each) > n:  # a vector past the last param: its rest is padding
                pads.append((fline, name, n - len(slots)))
            for c, t in enumerate(each):
                part = f"{flabel} (.{'xyzw'[c]})" if len(each) > 1 else flabel
                slots.append((fline, part, t))
        return slots[:n], pads

    def check_workgroup_size(
        self, where: tuple[str | int, ...], shader: str, entry: str, args: str,
        size: tuple[int, ...], consts: Mapping[str, int | None],
    ) -> None:  # fmt: skip
        """The entry's ``@workgroup_size(args)`` is the pass's ``workgroup_size``: each argument
        an integer literal or the name of a module-scope ``const`` of one (``consts``)."""
        values = [
            self.resolve((*where, "workgroup_size"), f"{shader}: {entry}'s @workgroup_size({args})",
                         part, consts)
            for part in (p.strip() for p in args.split(",") if p.strip())
        ]  # fmt: skip
        declared = tuple(values) + (1,) * (3 - len(values))
        if declared != size:
            raise self.error(
                (*where, "workgroup_size"),
                f"{list(size)}, but {shader} declares {entry} @workgroup_size{declared}",
            )


def shader_files(files: Mapping[str, Path]) -> dict[str, Path]:
    """The artifact's ``.wgsl`` files by file name (roles ``wgsl:<name>``)."""
    return {r.removeprefix(WGSL_ROLE): p for r, p in files.items() if r.startswith(WGSL_ROLE)}


def load_gpu_manifest(path: Path, shaders: Mapping[str, Path]) -> GpuManifest:
    """Read and validate ``kernels.toml`` against the artifact's shader files (memoized on
    their versions); WebGpuManifestError at ``file:line``."""
    key = tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size)
                for p in (path, *sorted(shaders.values())) if p.exists())  # fmt: skip
    return _load(path, tuple(sorted(shaders.items())), key)


@cache
def _load(path: Path, shaders: tuple[tuple[str, Path], ...], _key: object) -> GpuManifest:
    data, text = read_toml(path, WebGpuManifestError, "WebGPU kernel manifest")
    texts = {}
    for name, p in shaders:
        try:
            texts[name] = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise WebGpuManifestError(f"{p}:1: cannot read the shader: {exc}") from None
    return _Validator(path, TomlLines(text)).manifest(data, texts)


class WebGpuFormat(ArtifactFormat):
    """WGSL compute shaders dispatched as ``kernels.toml`` says, in a browser's WebGPU."""

    name = "webgpu"
    description = "WGSL compute shaders + a kernels.toml dispatch manifest, run through WebGPU"
    roles = (MANIFEST_ROLE,)
    exports_role = MANIFEST_ROLE
    # Node through the npm `webgpu` package (Dawn), installed beside the Node hosts
    loaders = MappingProxyType({"chromium": "format_webgpu.mjs", "node": "format_webgpu.mjs"})
    allocator_signatures = ALLOC_SIGNATURES
    arithmetic = "wgsl"

    def ptr_width_of(self, files: Mapping[str, Path]) -> int | None:
        """32: a buffer handle is an i32 whatever the GPU (``tg_alloc`` returns one)."""
        return 32

    def check_roles(self, roles: Sequence[str]) -> str | None:
        """``manifest`` and any number of ``wgsl:<file>`` roles, in any order, none repeated.

        The order is not the user's to get right: a profile's ``files`` is a TOML table, whose
        key order means nothing, and the entry is found by its role (``from_files`` puts it
        first, as the manifest's ``path`` is)."""
        if MANIFEST_ROLE not in roles:
            return f"format {self.name} needs the {MANIFEST_ROLE!r} role, got {list(roles)}"
        bad = [
            r
            for r in roles
            if r != MANIFEST_ROLE and (not r.startswith(WGSL_ROLE) or r == WGSL_ROLE)
        ]
        if bad:
            return f"unknown file role(s) {bad} for format {self.name} (manifest, wgsl:<file>)"
        if len(set(roles)) != len(roles):
            return f"file roles repeat: {list(roles)}"
        return None

    def manifest(self, files: Mapping[str, Path]) -> GpuManifest:
        """The artifact's validated ``kernels.toml``."""
        return load_gpu_manifest(files[MANIFEST_ROLE], shader_files(files))

    def check_entry(self, files: Mapping[str, Path]) -> None:
        """At manifest load: the kernel manifest validates against the shader files."""
        self.manifest(files)

    def loader_entry(self, files: Mapping[str, Path]) -> dict[str, Any]:
        """The validated dispatch plan, for the JS loader."""
        return {"webgpu": self.manifest(files).to_json()}

    def check_files(
        self, files: Mapping[str, Path], ptr_width: int, wanted: Mapping[str, Signature]
    ) -> None:
        """The manifest validates, every wanted export is one of its ops with that arity."""
        from harness.hosts.base import CorruptArtifact, MissingExport

        if ptr_width != 32:
            raise CorruptArtifact(f"{files[MANIFEST_ROLE]}: a webgpu artifact's memory is 32-bit")
        try:
            plan = self.manifest(files)
        except WebGpuManifestError as exc:
            raise CorruptArtifact(str(exc)) from None
        for name, sig in wanted.items():
            if name in ALLOC_SIGNATURES or name in STEP_EXPORTS:
                continue
            op = plan.ops.get(name)
            if op is None:
                raise MissingExport(f"{plan.path}: declares no op with export {name!r}")
            if len(op.args) != len(sig.params):
                raise MissingExport(
                    f"{plan.path}: {name} takes {len(op.args)} arguments, the binding gives "
                    f"{len(sig.params)}"
                )

    def call_problem(
        self, files: Mapping[str, Path], export: str, sig: Signature, names: Sequence[str],
        call: str,
    ) -> tuple[str, str] | None:  # fmt: skip
        """What kernels.toml's op ``export`` contradicts in a binding's call of it (``call``
        names it in messages), whose arguments are ``names`` of kinds ``sig``; None if they
        agree, or if ``export`` is not one of its ops (the allocator, the step's exports: their
        presence is checked by name).

        ``("args", what)``: the binding's argument list is at fault (a count other than the
        op's ``args``, or a pointer where the op has a scalar, or the reverse). ``("result",
        "kernels.toml:LINE: what")``: the op's ``result`` is not the kind the binding's
        canonical op returns (crossentropy's f32 loss needs ``result = "mean:<buffer>"``;
        without it the call returns nothing). kernels.toml cannot say whether a scalar is
        ``i32`` or ``f32`` (the loader takes that from the binding), so a scalar in ``params``
        is compared with the shader's uniform slot that reads it instead (``("args", what)``
        too: an f32 read by an integer field, or the reverse). A manifest that does not
        validate is CorruptArtifact."""
        from harness.hosts.base import CorruptArtifact

        try:
            plan = self.manifest(files)
        except WebGpuManifestError as exc:
            raise CorruptArtifact(str(exc)) from None
        op = plan.ops.get(export)
        if op is None:
            return None

        def at(*key: str) -> str:  # read only when there is something to report
            return f"{plan.path}:{TomlLines(plan.path.read_text()).line_of(('ops', *key))}"

        if len(op.args) != len(sig.params):
            return "args", (
                f"takes {len(op.args)} arguments ({at(op.table)}: {' '.join(op.args)}), the "
                f"binding gives it {len(sig.params)} ({' '.join(names) or 'none'})"
            )
        for i, (arg, kind, name) in enumerate(zip(op.args, sig.params, names, strict=True)):
            if (arg in op.buffers) != (kind == "ptr"):
                has = "a buffer" if arg in op.buffers else "a scalar"
                gives = "a pointer" if kind == "ptr" else f"a scalar ({kind})"
                return "args", (
                    f"argument {i + 1} is {has} ({arg!r}, {at(op.table)}), the binding passes "
                    f"{name!r} there, {gives}"
                )
        problem = _uniform_problem(op, sig, names)
        if problem is not None:
            return "args", problem
        returns = "f32" if op.result.startswith("mean:") else "void"
        if returns != sig.result:
            said = f"{op.result!r}" + " (the default)" * (op.result == "void")
            fix = (
                'declare result = "mean:<buffer>"' if sig.result == "f32" else
                "remove `result`" if sig.result == "void" else
                "kernels.toml's results are void or an f32 mean"
            )  # fmt: skip
            return "result", (
                f"{at(op.table, 'result')}: ops.{op.table}.result: {said} returns "
                f"{'an f32' if returns == 'f32' else 'nothing'}, but {call}, which the "
                f"binding maps to {export!r}, returns {sig.result}: {fix}"
            )
        return None

    def exports_found(self, files: Mapping[str, Path]) -> Mapping[str, WasmTypes | None]:
        """The manifest's exports + the allocator, by name only: kernels.toml cannot type a
        scalar argument (the binding's kinds give i32 or f32), so the arity, the pointer
        positions and the result are compared by :meth:`call_problem` instead (the binding's
        check at load calls it). A manifest that does not validate is CorruptArtifact (the
        manifest's load reports it at its file:line first)."""
        from harness.hosts.base import CorruptArtifact

        try:
            plan = self.manifest(files)
        except WebGpuManifestError as exc:
            raise CorruptArtifact(str(exc)) from None
        found: dict[str, WasmTypes | None] = {n: None for n in ALLOC_SIGNATURES}
        found.update({e: None for e in plan.ops})
        found.update({e: None for e in STEP_EXPORTS})
        return found


FORMAT = WebGpuFormat()
