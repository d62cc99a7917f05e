"""Line numbers for TOML keys and values, which ``tomllib`` does not give.

:class:`TomlLines` scans the source text of an already-valid TOML document once and records the
line of every key (``("hosts", "node22", "version")``), of every array element
(``("artifacts", 1)``) and of every ``[[array table]]`` entry (``("exclude", 0)``). A validator
that finds something wrong in the parsed dict asks for the line of the offending path, so its
message can say ``matrix.toml:7: unknown host 'nodex'``.
"""

from __future__ import annotations

import contextlib
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

Path_ = tuple[str | int, ...]

_BARE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


@dataclass
class TomlLines:
    """The 1-based line of every key path and array element of one TOML document."""

    text: str
    lines: dict[Path_, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # A construct the scanner does not follow costs line precision (the longest known
        # prefix is used), never the validation itself: tomllib has already parsed the file.
        with contextlib.suppress(ValueError, IndexError):
            _Scanner(self.text, self.lines).document()

    def line_of(self, path: Path_) -> int:
        """Return the line of ``path``, or of its longest recorded prefix (1 if none)."""
        for end in range(len(path), 0, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                return line
        return 1


class _Scanner:
    """A structural TOML reader: it follows keys, tables and arrays and skips scalar values."""

    def __init__(self, text: str, out: dict[Path_, int]) -> None:
        self.s = text
        self.i = 0
        self.out = out
        self.array_tables: dict[tuple[str | int, ...], int] = {}

    # -- positions -------------------------------------------------------------------------

    def line(self) -> int:
        return self.s.count("\n", 0, self.i) + 1

    def peek(self, n: int = 1) -> str:
        return self.s[self.i : self.i + n]

    def record(self, path: Path_, line: int) -> None:
        # The first mention wins: a header line beats later dotted keys under it.
        self.out.setdefault(path, line)

    def skip_blank(self, newlines: bool) -> None:
        """Skip spaces, tabs, comments and (if ``newlines``) line breaks."""
        while self.i < len(self.s):
            c = self.s[self.i]
            if c in " \t\r" or (newlines and c == "\n"):
                self.i += 1
            elif c == "#":
                while self.i < len(self.s) and self.s[self.i] != "\n":
                    self.i += 1
            else:
                return

    # -- grammar ---------------------------------------------------------------------------

    def document(self) -> None:
        table: Path_ = ()
        while True:
            self.skip_blank(newlines=True)
            if self.i >= len(self.s):
                return
            line = self.line()
            if self.peek(2) == "[[":
                self.i += 2
                key = self.key()
                self.expect("]]")
                index = self.array_tables.get(key, 0)
                self.array_tables[key] = index + 1
                table = (*key, index)
                self.record(key, line)
                self.record(table, line)
            elif self.peek() == "[":
                self.i += 1
                key = self.key()
                self.expect("]")
                table = key
                self.record(table, line)
            else:
                self.key_value(table)

    def expect(self, token: str) -> None:
        self.skip_blank(newlines=False)
        if self.peek(len(token)) != token:
            raise ValueError(f"line {self.line()}: expected {token!r}")
        self.i += len(token)

    def key(self) -> tuple[str, ...]:
        parts: list[str] = []
        while True:
            self.skip_blank(newlines=False)
            c = self.peek()
            if c in ('"', "'"):
                parts.append(self.string())
            else:
                start = self.i
                while self.i < len(self.s) and self.s[self.i] in _BARE:
                    self.i += 1
                if start == self.i:
                    raise ValueError(f"line {self.line()}: expected a key")
                parts.append(self.s[start : self.i])
            self.skip_blank(newlines=False)
            if self.peek() != ".":
                return tuple(parts)
            self.i += 1

    def key_value(self, table: Path_) -> None:
        line = self.line()
        path = (*table, *self.key())
        for end in range(len(table) + 1, len(path) + 1):
            self.record(path[:end], line)
        self.expect("=")
        self.value(path)

    def value(self, path: Path_) -> None:
        self.skip_blank(newlines=False)
        c = self.peek()
        if c in ('"', "'"):
            self.string()
        elif c == "[":
            self.array(path)
        elif c == "{":
            self.inline_table(path)
        else:  # number, bool, date: runs to a delimiter
            while self.i < len(self.s) and self.s[self.i] not in ",]}\n#":
                self.i += 1

    def array(self, path: Path_) -> None:
        self.i += 1
        index = 0
        while True:
            self.skip_blank(newlines=True)
            if self.peek() == "]":
                self.i += 1
                return
            self.record((*path, index), self.line())
            self.value((*path, index))
            index += 1
            self.skip_blank(newlines=True)
            if self.peek() == ",":
                self.i += 1

    def inline_table(self, path: Path_) -> None:
        self.i += 1
        while True:
            self.skip_blank(newlines=False)
            if self.peek() == "}":
                self.i += 1
                return
            self.key_value(path)
            self.skip_blank(newlines=False)
            if self.peek() == ",":
                self.i += 1

    def string(self) -> str:
        quote = self.s[self.i]
        if self.peek(3) == quote * 3:
            end = self.s.index(quote * 3, self.i + 3)
            # A closing delimiter may be followed by up to two more quotes that belong to it.
            while self.s[end + 3 : end + 4] == quote:
                end += 1
            body = self.s[self.i + 3 : end]
            self.i = end + 3
            return body
        j = self.i + 1
        while self.s[j] != quote:
            j += 2 if quote == '"' and self.s[j] == "\\" else 1
        body = self.s[self.i + 1 : j]
        self.i = j + 1
        return body


def read_toml(path: Path, error_class: type[Exception], what: str) -> tuple[dict[str, Any], str]:
    """Read and parse the TOML file at ``path`` (a ``what``): ``(data, text)``, or
    ``error_class`` starting ``file:line`` (line 1 when unreadable or not UTF-8).

    ``text`` is the file's bytes decoded as they are (no newline translation), so
    ``text.encode()`` hashes to the file's sha256.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise error_class(f"{path}:1: cannot read the {what}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error_class(f"{path}:1: not UTF-8 text ({exc.reason})") from None
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        raise error_class(f"{path}:{_syntax_error_line(str(exc), text)}: {exc}") from None


def _syntax_error_line(message: str, text: str) -> int:
    """The line tomllib's ``message`` names; its last line for "at end of document"."""
    m = re.search(r"at line (\d+)", message)
    if m:
        return int(m.group(1))
    return max(1, text.count("\n") + (0 if text.endswith("\n") else 1))


def type_name(v: object) -> str:
    """How a TOML value's type reads in an error: ``an integer``, ``a table``, ..."""
    names = {bool: "a boolean", int: "an integer", float: "a float", str: "a string",
             list: "an array", dict: "a table"}  # fmt: skip
    return names.get(type(v), type(v).__name__)  # dates and times: "datetime", "date", "time"


class TomlValidator:
    """The shared piece of the harness's TOML validators (matrices, profiles, bindings): walk
    the parsed document and raise ``error_class`` with ``file:line: dotted.key: what`` at the
    first fault. A validator whose messages read otherwise (the matrix's ``hosts.x.version
    must be a string``) overrides :meth:`type_error` and :meth:`unknown_key_error`."""

    error_class: ClassVar[type[Exception]] = ValueError
    document: ClassVar[str] = "(document)"  # what an error at the top level names

    def __init__(self, path: Path, lines: TomlLines) -> None:
        self.path = path
        self.lines = lines

    def line(self, where: Path_) -> int:
        """The line of key path ``where``."""
        return self.lines.line_of(where)

    def dotted(self, where: Path_) -> str:
        """``a.b[0].c`` for the key path ``("a", "b", 0, "c")``."""
        out = ""
        for p in where:
            out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else p)
        return out or self.document

    def at(self, where: Path_, message: str) -> Exception:
        """The error ``file:line: message``, at the line of ``where``."""
        return self.error_class(f"{self.path}:{self.line(where)}: {message}")

    def error(self, where: Path_, what: str) -> Exception:
        """The error for ``where``, starting ``file:line: dotted.key:``."""
        return self.at(where, f"{self.dotted(where)}: {what}")

    def type_error(self, where: Path_, value: object, what: str) -> Exception:
        """The error for ``value`` at ``where`` not being ``what`` ("a string", ...)."""
        return self.error(where, f"must be {what}, got {type_name(value)} {value!r}")

    def unknown_key_error(self, where: Path_, allowed: tuple[str, ...]) -> Exception:
        """The error for the key ``where`` not being one of ``allowed``."""
        return self.error(where, f"unknown key; allowed: {', '.join(allowed)}")

    def typed(self, where: Path_, value: object, kind: type | tuple[type, ...], what: str) -> Any:
        """``value`` if it is of ``kind`` (a bool is not an int), else an error naming ``what``."""
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            raise self.type_error(where, value, what)
        return value

    def table(self, where: Path_, value: object, allowed: Iterable[str]) -> Mapping[str, Any]:
        """``value`` as a table whose keys are all ``allowed``."""
        self.typed(where, value, dict, "a table")
        assert isinstance(value, dict)
        allowed = tuple(allowed)
        for key in value:
            if key not in allowed:
                raise self.unknown_key_error((*where, key), allowed)
        return value

    def strings(self, where: Path_, value: object) -> tuple[str, ...]:
        """``value`` as an array of strings."""
        self.typed(where, value, list, "an array of strings")
        assert isinstance(value, list)
        for i, v in enumerate(value):
            self.typed((*where, i), v, str, "a string")
        return tuple(value)
