"""JSON surfaces: every scalar leaf, keyed by its dotted path (``training.learning_rate``).

The file is first parsed with :mod:`json` (its error message, with line and column, is the
one reported); a small position-tracking scan then finds the line of each leaf. Arrays are
indexed (``layers.0``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from harness.surfaces.base import SurfaceEntry, SurfaceError, Value, line_of, read_text

_TOKEN = re.compile(
    r"""\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<num>-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][-+]?\d+)?)"""
    r"""|(?P<lit>true|false|null)|(?P<punct>[{}\[\]:,]))"""
)


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.entries: list[SurfaceEntry] = []

    def _next(self) -> re.Match[str]:
        m = _TOKEN.match(self.text, self.pos)
        if m is None:  # json.loads accepted the text, so this cannot happen on valid input
            raise ValueError(f"unexpected character at line {line_of(self.text, self.pos)}")
        self.pos = m.end()
        return m

    def value(self, key: str) -> None:
        m = self._next()
        if m.group("punct") == "{":
            self._object(key)
        elif m.group("punct") == "[":
            self._array(key)
        elif m.group("str") is not None or m.group("num") is not None or m.group("lit"):
            raw = m.group(m.lastgroup or "lit")
            parsed: Value | None = json.loads(raw)
            if parsed is not None:
                start = m.start(m.lastgroup or "lit")
                self.entries.append(SurfaceEntry(key, parsed, raw, line_of(self.text, start)))
        else:
            raise ValueError(f"unexpected {m.group(0).strip()!r}")

    def _object(self, prefix: str) -> None:
        while True:
            m = self._next()
            if m.group("punct") == "}":
                return
            if m.group("punct") == ",":
                continue
            name = json.loads(m.group("str"))
            self._next()  # the ':'
            self.value(f"{prefix}.{name}" if prefix else name)

    def _array(self, prefix: str) -> None:
        i = 0
        while True:
            save = self.pos
            m = self._next()
            if m.group("punct") == "]":
                return
            if m.group("punct") == ",":
                continue
            self.pos = save
            self.value(f"{prefix}.{i}" if prefix else str(i))
            i += 1


def extract_text(text: str, source: str = "<json>") -> list[SurfaceEntry]:
    """Return the scalar leaves of JSON ``text``; ``source`` names it in errors."""
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        raise SurfaceError(source, f"invalid JSON: {exc}") from None
    scanner = _Scanner(text)
    scanner.value("")
    return scanner.entries


def extract(path: Path) -> list[SurfaceEntry]:
    """Return the scalar leaves of the JSON file ``path``."""
    return extract_text(read_text(path), str(path))
