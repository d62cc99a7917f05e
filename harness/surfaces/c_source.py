"""C / C++ source surfaces: ``#define``, ``constexpr``, ``static const`` and named-call arguments.

A kernel states its AdamW constants as literals in its source; this reads them without a compiler:

- ``#define BETA1 0.9f`` gives ``BETA1``;
- ``constexpr float kBeta2 = 0.95f;`` and ``static const double EPS = 1e-8;`` (also
  ``static constexpr``, ``inline``, ``const`` qualifiers in any order) give ``kBeta2``, ``EPS``;
- with ``calls = ["adamw_step"]``, every literal argument of every ``adamw_step(...)`` call (not
  its declaration or definition: ``void adamw_step(`` is skipped) gives
  ``adamw_step.<i>`` (the 0-based argument position; a second call of the same name gives
  ``adamw_step#2.<i>``). Non-literal arguments (``lr``, ``m + i``) are skipped but keep their
  position.

Literals are C's: ``0.9f``, ``1e-8F``, ``16u``, ``100UL``, ``0x10``, ``true``/``false``, and a
leading ``-``. Comments are blanked first (offsets kept), so commented-out values do not count.
A file whose brackets do not balance is an error, not a file with fewer values.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from harness.surfaces.base import SurfaceEntry, line_of, parse_literal, read_text
from harness.surfaces.typescript import blank_comments, check_balanced

_C_NUMBER = (
    r"[-+]?(?:0[xX][0-9a-fA-F']+|(?:\d[\d']*(?:\.[\d']*)?|\.\d[\d']*)(?:[eE][-+]?\d+)?)"
    r"(?:[fFlLuU]{1,3})?"
)
_C_LITERAL = rf"(?:{_C_NUMBER}|true|false|\"[^\"\n]*\")"
_DEFINE = re.compile(
    rf"^[ \t]*#[ \t]*define[ \t]+(?P<key>[A-Za-z_]\w*)[ \t]+\(?(?P<value>{_C_LITERAL})\)?[ \t]*$",
    re.M,
)
_QUALIFIER = r"(?:static|constexpr|const|inline|constinit|extern)"
_DECL = re.compile(
    rf"(?:^|(?<=[;{{}}\s]))(?P<quals>(?:{_QUALIFIER}\s+)+)(?:[\w:<>]+\s+)*?"
    rf"(?P<key>[A-Za-z_]\w*)\s*(?:=\s*|\{{\s*)\(?(?P<value>{_C_LITERAL})\)?\s*\}}?\s*;"
)


def parse_c_literal(raw: str) -> bool | int | float | str:
    """Parse a C/C++ literal: number suffixes (``f``, ``u``, ``L``) and digit separators dropped."""
    s = raw.strip()
    if s[:1] == '"':
        return s[1:-1]
    is_hex = s.lower().lstrip("+-").startswith("0x")
    s = s.rstrip("lLuU") if is_hex else s.rstrip("fFlLuU")  # 0x1F: the F is a digit
    return parse_literal(s.replace("'", ""))


def _split_args(text: str, start: int) -> tuple[list[tuple[str, int]], int]:
    """Split the argument list opening at ``text[start] == '('`` at top-level commas."""
    depth = 0
    args: list[tuple[str, int]] = []
    arg_start = start + 1
    i = start
    while i < len(text):
        c = text[i]
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth == 0:
                args.append((text[arg_start:i], arg_start))
                return args, i
        elif c == "," and depth == 1:
            args.append((text[arg_start:i], arg_start))
            arg_start = i + 1
        elif c == '"':
            i = text.index('"', i + 1)
        i += 1
    return args, len(text)


def _is_declaration(text: str, start: int) -> bool:
    """True when the name at ``start`` is declared or defined (``void f(``), not called."""
    before = re.search(r"([\w*&>]+)\s*$", text[:start])
    return before is not None and before.group(1) not in ("return", "else", "do", "co_await")


def extract(path: Path, *, calls: Sequence[str] = ()) -> list[SurfaceEntry]:
    """Return the constants of a C/C++ file, and the literal arguments of the named calls."""
    text = blank_comments(read_text(path))
    check_balanced(text, path)
    found: list[tuple[int, SurfaceEntry]] = []
    for pattern in (_DEFINE, _DECL):
        for m in pattern.finditer(text):
            raw = m.group("value")
            pos = m.start("value")
            entry = SurfaceEntry(m.group("key"), parse_c_literal(raw), raw, line_of(text, pos))
            found.append((pos, entry))
    for name in calls:
        seen = 0
        for m in re.finditer(rf"(?<![\w.>:]){re.escape(name)}\s*\(", text):
            if _is_declaration(text, m.start()):
                continue
            seen += 1
            label = name if seen == 1 else f"{name}#{seen}"
            args, _end = _split_args(text, m.end() - 1)
            for i, (arg, offset) in enumerate(args):
                raw = arg.strip()
                if not re.fullmatch(_C_LITERAL, raw):
                    continue
                pos = offset + arg.index(raw)
                entry = SurfaceEntry(f"{label}.{i}", parse_c_literal(raw), raw, line_of(text, pos))
                found.append((pos, entry))
    return [e for _, e in sorted(found, key=lambda p: p[0])]
