"""What every surface extractor returns, and the literal parser they share.

A *surface* is a file (or a binary export) that states default hyperparameters. An extractor
reads one format and returns :class:`SurfaceEntry` items: the key as the surface spells it, the
parsed value, the literal as written, and the 1-based line it sits on. A file that is missing or
does not parse raises :class:`SurfaceError` naming the file and the parser's own message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

Value = bool | int | float | str


@dataclass(frozen=True)
class SurfaceEntry:
    """One key = value a surface states, with where it states it."""

    key: str  # as the surface spells it, e.g. "learningRate" or "training.lr"
    value: Value
    raw: str  # the literal as written, e.g. "3e-3"
    line: int  # 1-based


# Why ``covers = []`` is refused (a matrix's [[check.defaults.surfaces]] and a profile's
# [[defaults.surfaces]] alike): read as "every key" or as "no key", it passes a surface that
# states nothing.
EMPTY_COVERS = (
    "an empty list covers no key: list the keys the surface states, or leave covers out (or "
    '"all") to require every key'
)


@dataclass(frozen=True)
class Unreadable:
    """A key a surface states with a value that is not a literal (``lr: 10 * 3e-4``).

    The key is stated (a later statement of it replaces an earlier one, as in JS and Python),
    but its value is code the check does not evaluate.
    """

    key: str
    raw: str  # the expression as written, whitespace collapsed
    line: int  # 1-based


Statement = SurfaceEntry | Unreadable


class SurfaceError(Exception):
    """A surface file is missing or does not parse; the message names the file."""

    def __init__(self, path: Path | str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = str(path)
        self.reason = message


_NUMBER = re.compile(
    r"[-+]?(?:0[xX][0-9a-fA-F_]+|(?:\d[\d_]*(?:\.[\d_]*)?|\.\d[\d_]*)(?:[eE][-+]?\d+)?)"
)


def parse_literal(raw: str) -> Value:
    """Parse a number, boolean or quoted string literal as JS, TOML, JSON and Python write them.

    ``3e-3``, ``0.003``, ``1_000``, ``0x10``, ``true``/``True``, ``"text"``. Raises ValueError
    for anything else.
    """
    s = raw.strip()
    if s in ("true", "True"):
        return True
    if s in ("false", "False"):
        return False
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "\"'`":
        return s[1:-1]
    if _NUMBER.fullmatch(s):
        body = s.replace("_", "")
        if body.lstrip("+-")[:2].lower() == "0x":
            return int(body, 16)
        if re.fullmatch(r"[-+]?\d+", body):
            return int(body)
        return float(body)
    raise ValueError(f"not a number, boolean or string literal: {raw!r}")


def line_of(text: str, offset: int) -> int:
    """Return the 1-based line number of character ``offset`` in ``text``."""
    return text.count("\n", 0, offset) + 1


def read_text(path: Path) -> str:
    """Return the UTF-8 text of ``path``; raise SurfaceError if it is missing or unreadable."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SurfaceError(path, "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SurfaceError(path, f"cannot read: {exc}") from None
