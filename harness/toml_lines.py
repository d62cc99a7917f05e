"""Line numbers for TOML keys and values, which ``tomllib`` does not give.

:class:`TomlLines` scans the source text of an already-valid TOML document once and records the
line of every key (``("hosts", "node22", "version")``), of every array element
(``("artifacts", 1)``) and of every ``[[array table]]`` entry (``("exclude", 0)``). A validator
that finds something wrong in the parsed dict asks for the line of the offending path, so its
message can say ``matrix.toml:7: unknown host 'nodex'``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

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
