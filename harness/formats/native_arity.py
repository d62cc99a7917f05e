"""How many arguments a native library's exports take, from what the artifact carries.

An ELF symbol table has names only (:mod:`harness.formats.elf`), so a binding that gives a native
export the wrong number of arguments would load and then read garbage registers. Two sources
can say more, and each is checked when present (:func:`native_arities`):

- **DWARF** of the ``.so`` itself (built with ``-g``): each external ``DW_TAG_subprogram`` that
  is a definition, with its ``DW_TAG_formal_parameter`` children, read with pyelftools. It
  describes the binary as built, so it is preferred.
- **a C header** the binding names (``[binding] header``): preprocessed by ``zig cc -E`` (the
  build's toolchain) and parsed by pycparser, a real C99 parser, never a regex. GNU attribute
  syntax, which pycparser does not take, is defined away on the command line.

A prototype ending in ``...`` is variadic: its arity is a minimum, which is all it can say. When
neither source is there, the result says so in one line (``arity unchecked: no DWARF, no
header``), which the run prints and records in run.json.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import MappingProxyType

from elftools.common.exceptions import ELFError
from elftools.dwarf.die import DIE
from elftools.elf.elffile import ELFFile
from pycparser import c_ast, c_parser

# pycparser parses C99 without GNU extensions: the preprocessor removes them. -U__GNUC__ and
# -U__clang__ make headers take their portable branch (lib2.h's `L2_API` is then empty).
_CPP_FLAGS = ("-E", "-x", "c", "-U__GNUC__", "-U__clang__", "-D__attribute__(x)=",
              "-D__extension__=", "-D__restrict=", "-D__inline=inline", "-D__asm__(x)=",
              "-D__declspec(x)=")  # fmt: skip


class HeaderError(Exception):
    """A header the binding names cannot be preprocessed or parsed (the message says why)."""


@dataclass(frozen=True)
class Prototype:
    """One function's parameter count, and where it is declared."""

    name: str
    arity: int
    variadic: bool
    where: str  # "file:line" of the declaration


@dataclass(frozen=True)
class Arities:
    """The prototypes a native artifact's DWARF and/or header give, and from which source."""

    dwarf: Mapping[str, Prototype] | None = None  # None: the .so has no DWARF
    header: Mapping[str, Prototype] | None = None  # None: the binding names no header
    header_path: Path | None = None
    sources: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        names = []
        if self.dwarf is not None:
            names.append("DWARF")
        if self.header is not None:
            names.append(f"header {self.header_path.name if self.header_path else '?'}")
        object.__setattr__(self, "sources", tuple(names))

    def status(self, exports: int, unchecked: list[str]) -> str:
        """One line for the run: what the arities were checked from, or that they were not."""
        if not self.sources:
            return "arity unchecked: no DWARF, no header"
        line = f"arity checked from {' and '.join(self.sources)} ({exports - len(unchecked)} of "
        line += f"{exports} exports)"
        if unchecked:
            line += f"; unchecked (declared in neither): {', '.join(unchecked)}"
        return line

    def each(self, name: str) -> list[tuple[str, Prototype]]:
        """``(source, prototype)`` of export ``name`` from every source that declares it."""
        out = []
        for source, table in (("DWARF", self.dwarf), ("header", self.header)):
            if table is not None and name in table:
                out.append((source, table[name]))
        return out


def native_arities(so: Path, header: Path | None) -> Arities:
    """The arities ``so``'s DWARF and ``header`` give (HeaderError if the header is unusable)."""
    return Arities(dwarf_prototypes(so), None if header is None else header_prototypes(header),
                   header)  # fmt: skip


@cache
def dwarf_prototypes(so: Path) -> Mapping[str, Prototype] | None:
    """Every external function defined in ``so``'s DWARF; None without ``.debug_info`` (or
    when the file is not ELF: ``dlopen`` in the cell says what it is)."""
    try:
        with so.open("rb") as f:
            elf = ELFFile(f)
            if elf.get_section_by_name(".debug_info") is None:
                return None
            out: dict[str, Prototype] = {}
            for cu in elf.get_dwarf_info().iter_CUs():
                files = _cu_files(cu)
                for die in cu.iter_DIEs():
                    p = _subprogram(die, files)
                    if p is not None:
                        out[p.name] = p
            return MappingProxyType(out)
    except (ELFError, OSError, ValueError):
        return None


def _cu_files(cu: object) -> list[str]:
    """The CU's line-program file names, indexable by DW_AT_decl_file."""
    try:
        lp = cu.dwarfinfo.line_program_for_CU(cu)  # type: ignore[attr-defined]
    except Exception:  # an unreadable line program only costs the file name in messages
        return []
    if lp is None:
        return []
    names = [e.name.decode(errors="replace") for e in lp["file_entry"]]
    # DWARF 5 numbers files from 0; DWARF <= 4 from 1 (index 0 is "no file")
    return names if lp.header["version"] >= 5 else ["?", *names]


def _subprogram(die: DIE, files: list[str]) -> Prototype | None:
    """An external function definition's prototype; None for anything else."""
    a = die.attributes
    if (
        die.tag != "DW_TAG_subprogram"
        or "DW_AT_name" not in a
        or not a.get("DW_AT_external")
        or "DW_AT_declaration" in a
    ):
        return None
    params = variadic = 0
    for child in die.iter_children():
        if child.tag == "DW_TAG_formal_parameter":
            params += 1
        elif child.tag == "DW_TAG_unspecified_parameters":
            variadic = 1
    name = a["DW_AT_name"].value.decode(errors="replace")
    i = a["DW_AT_decl_file"].value if "DW_AT_decl_file" in a else -1
    line = a["DW_AT_decl_line"].value if "DW_AT_decl_line" in a else 0
    file = files[i] if 0 <= i < len(files) else "?"
    return Prototype(name, params, bool(variadic), f"{file}:{line}")


@cache
def header_prototypes(header: Path) -> Mapping[str, Prototype]:
    """Every function a C header declares, through ``zig cc -E`` and pycparser."""
    from harness.build import zig_command  # the build's toolchain, imported only when needed

    cmd = [*zig_command(), "cc", *_CPP_FLAGS, f"-I{header.parent}", str(header)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise HeaderError(f"cannot preprocess {header}: {exc}") from exc
    if proc.returncode != 0:
        first = (proc.stderr.strip().splitlines() or ["(no message)"])[0]
        raise HeaderError(f"zig cc -E failed on {header}: {first}")
    try:
        ast = c_parser.CParser().parse(proc.stdout, str(header))
    except c_parser.ParseError as exc:  # the message is file:line:col: what
        raise HeaderError(f"pycparser cannot parse {header} (preprocessed): {exc}") from exc
    out: dict[str, Prototype] = {}
    for ext in ast.ext:
        if isinstance(ext, c_ast.Decl) and isinstance(ext.type, c_ast.FuncDecl):
            arity, variadic = _params(ext.type)
            where = f"{ext.coord.file}:{ext.coord.line}" if ext.coord else str(header)
            out[ext.name] = Prototype(ext.name, arity, variadic, where)
    return MappingProxyType(out)


def _params(fn: c_ast.FuncDecl) -> tuple[int, bool]:
    """(parameter count, variadic) of a prototype; ``f(void)`` takes 0."""
    params = list(fn.args.params) if fn.args is not None else []
    variadic = bool(params) and isinstance(params[-1], c_ast.EllipsisParam)
    if variadic:
        params = params[:-1]
    if len(params) == 1 and _is_void(params[0]):
        return 0, False
    return len(params), variadic


def _is_void(p: c_ast.Node) -> bool:
    t = getattr(p, "type", None)
    if isinstance(t, c_ast.TypeDecl) and isinstance(t.type, c_ast.IdentifierType):
        return bool(t.type.names == ["void"])
    return False
