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
leading ``-``. Comments, and the contents of string and char literals, are blanked first (offsets
kept), so a commented-out value or a call written inside a string (``"adamw_step(0.5f)"``) does
not count; a string literal is still read as a value where one is expected. A preprocessor line
(``#endif``, ``#pragma unroll``) is not the type of the name after it: a call on the next line is
a call. A file whose brackets do not balance is an error, not a file with fewer values.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from harness.surfaces.base import SurfaceEntry, line_of, parse_literal, read_text
from harness.surfaces.typescript import check_balanced

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

# What blanking skips over, leftmost first: comments, then raw strings (C++ R"d(...)d"), strings
# and char literals with their u8/u/U/L prefixes. A quote right after a word character is not a
# char literal: it is a C++14 digit separator (1'000'000, 0xFF'FF).
_C_SKIPPED = re.compile(
    r"""(?P<comment>//[^\n]*|/\*.*?(?:\*/|\Z))"""
    r"""|(?<![\w'])(?:u8|[uUL])?R"(?P<delim>[^()\\\s"]{0,16})\(.*?\)(?P=delim)\x22"""
    r"""|(?<![\w'])(?:u8|[uUL])?"(?:[^"\\\n]|\\.)*"?"""
    r"""|(?<![\w'])(?:u8|[uUL])?'(?:[^'\\\n]|\\.)*'?""",
    re.S,
)
# A preprocessor directive line, with its backslash-continued lines.
_DIRECTIVE = re.compile(r"^[ \t]*#(?:[^\n\\]|\\.)*", re.M | re.S)


def _spaces(chunk: str) -> str:
    """``chunk`` as spaces, its newlines kept, so offsets and line numbers do not move."""
    return "".join(ch if ch == "\n" else " " for ch in chunk)


def _blank_c(text: str) -> tuple[str, str]:
    """Return ``text`` with comments blanked, and a copy with literal contents blanked too.

    The first is where values are read (a string literal keeps its text); the second is where
    structure is matched: its string and char literals keep their quotes but hold only spaces,
    so a call, a bracket or a comma written inside one is not code.
    """
    bare = list(text)
    code = list(text)
    for m in _C_SKIPPED.finditer(text):
        start, end = m.span()
        if m.group("comment"):
            bare[start:end] = code[start:end] = _spaces(m.group(0))
            continue
        # the literal's opening quote follows its prefix (u8, L, R...); an unterminated one (cut
        # at the end of its line) has no closing quote to keep
        first = start + next(i for i, ch in enumerate(m.group(0)) if ch in "\"'")
        closed = end - first >= 2 and text[end - 1] == text[first]
        inner_end = end - 1 if closed else end
        code[first + 1 : inner_end] = _spaces(text[first + 1 : inner_end])
    return "".join(bare), "".join(code)


def _blank_directives(code: str) -> str:
    """Return ``code`` with its preprocessor lines blanked (offsets and line numbers kept)."""
    return _DIRECTIVE.sub(lambda m: _spaces(m.group(0)), code)


def parse_c_literal(raw: str) -> bool | int | float | str:
    """Parse a C/C++ literal: number suffixes (``f``, ``u``, ``L``) and digit separators dropped."""
    s = raw.strip()
    if s[:1] == '"':
        return s[1:-1]
    is_hex = s.lower().lstrip("+-").startswith("0x")
    s = s.rstrip("lLuU") if is_hex else s.rstrip("fFlLuU")  # 0x1F: the F is a digit
    return parse_literal(s.replace("'", ""))


def _split_args(text: str, start: int) -> tuple[list[tuple[str, int]], int]:
    """Split the argument list opening at ``text[start] == '('`` at top-level commas.

    ``text`` has its literal contents blanked, so a comma or bracket inside a string or char
    literal (``','``, ``"(x, y)"``) is already a space.
    """
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
        i += 1
    return args, len(text)


def _is_declaration(text: str, start: int) -> bool:
    """True when the name at ``start`` is declared or defined (``void f(``), not called."""
    before = re.search(r"([\w*&>]+)\s*$", text[:start])
    return before is not None and before.group(1) not in ("return", "else", "do", "co_await")


def extract(path: Path, *, calls: Sequence[str] = ()) -> list[SurfaceEntry]:
    """Return the constants of a C/C++ file, and the literal arguments of the named calls."""
    bare, code = _blank_c(read_text(path))
    # the quotes left in ``code`` enclose only spaces; dropped, a digit separator (1'000) is not
    # taken for a char literal by the bracket check
    check_balanced(code.replace('"', " ").replace("'", " "), path)
    # the declaration heuristic looks at the word before a name: a directive's word (#endif,
    # #pragma unroll) on the line above is no type
    heuristic = _blank_directives(code)
    found: list[tuple[int, SurfaceEntry]] = []
    for pattern in (_DEFINE, _DECL):
        for m in pattern.finditer(code):
            pos, end = m.span("value")
            raw = bare[pos:end]  # a string literal's text is in ``bare`` only
            entry = SurfaceEntry(m.group("key"), parse_c_literal(raw), raw, line_of(code, pos))
            found.append((pos, entry))
    for name in calls:
        seen = 0
        for m in re.finditer(rf"(?<![\w.>:]){re.escape(name)}\s*\(", code):
            if _is_declaration(heuristic, m.start()):
                continue
            seen += 1
            label = name if seen == 1 else f"{name}#{seen}"
            args, _end = _split_args(code, m.end() - 1)
            for i, (arg, offset) in enumerate(args):
                shape = arg.strip()
                if not re.fullmatch(_C_LITERAL, shape):
                    continue
                pos = offset + arg.index(shape)
                raw = bare[pos : pos + len(shape)]
                entry = SurfaceEntry(f"{label}.{i}", parse_c_literal(raw), raw, line_of(code, pos))
                found.append((pos, entry))
    return [e for _, e in sorted(found, key=lambda p: p[0])]
