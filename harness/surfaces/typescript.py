"""TypeScript / JavaScript surfaces: object-literal properties and ``const`` declarations.

Finds ``learningRate: 3e-3`` (a property whose value is a literal, e.g. in ``types.ts``) and
``const LEARNING_RATE = 3e-3``. Type annotations (``learningRate: number``) have no literal and
are ignored, and so are the bodies of ``type X = ...`` and ``interface X {...}``, where
``{ type: "train" }`` is a string-literal type, not a value. A property must start a line or
follow ``{`` or ``,``, so ``a ? b : 3`` is not one.
With ``object_name="DEFAULT_CONFIG"`` only the properties inside that object literal are read.
Comments are blanked first (offsets kept), so commented-out values do not count.
"""

from __future__ import annotations

import re
from pathlib import Path

from harness.surfaces.base import (
    Statement,
    SurfaceEntry,
    SurfaceError,
    Unreadable,
    line_of,
    parse_literal,
    read_text,
)

_NUMBER = r"[-+]?(?:0[xX][0-9a-fA-F_]+|(?:\d[\d_]*(?:\.[\d_]*)?|\.\d[\d_]*)(?:[eE][-+]?\d+)?)"
_LITERAL = r"""(?:"[^"\n]*"|'[^'\n]*'|""" + _NUMBER + r"|true|false)"
_PROPERTY = re.compile(
    r"""(?:^|(?<=[{,]))\s*(?P<q>["']?)(?P<key>[A-Za-z_$][\w$]*)(?P=q)\s*:\s*(?P<value>"""
    + _LITERAL
    + r""")(?:\s+as\s+const)?\s*(?=[,};\n]|$)""",
    re.MULTILINE,
)
_STRINGS = re.compile(r"\"(?:[^\"\\\n]|\\.)*\"|'(?:[^'\\\n]|\\.)*'|`(?:[^`\\]|\\.)*`")
_CONST = re.compile(
    r"""(?:^|(?<=[\s;]))(?:export\s+)?(?:const|let|var)\s+(?P<key>[A-Za-z_$][\w$]*)"""
    r"""(?:\s*:\s*[\w$.<>\[\]| ]+?)?\s*=\s*(?P<value>"""
    + _LITERAL
    + r""")(?:\s+as\s+const)?\s*(?=[;\n]|$)""",
    re.MULTILINE,
)


def blank_comments(text: str) -> str:
    """Return ``text`` with // and /* */ comments replaced by spaces (newlines kept).

    Quotes are tracked so ``"http://x"`` is not a comment.
    """
    out = list(text)
    i, n = 0, len(text)
    quote = ""
    while i < n:
        c = text[i]
        if quote:
            if c == "\\":
                i += 2
                continue
            if c == quote or (c == "\n" and quote != "`"):
                quote = ""
            i += 1
            continue
        if c in "\"'`":
            quote = c
            i += 1
            continue
        if text.startswith("//", i):
            end = text.find("\n", i)
            end = n if end < 0 else end
            out[i:end] = " " * (end - i)
            i = end
            continue
        if text.startswith("/*", i):
            end = text.find("*/", i + 2)
            end = n if end < 0 else end + 2
            out[i:end] = [ch if ch == "\n" else " " for ch in text[i:end]]
            i = end
            continue
        i += 1
    return "".join(out)


_TYPE_DECL = re.compile(
    r"(?:^|(?<=[\s;]))(?:export\s+)?(?:declare\s+)?(?:"
    r"interface\s+[A-Za-z_$][\w$]*[^{;=]*\{|type\s+[A-Za-z_$][\w$]*\s*"
    r"(?:<[^<>]*(?:<[^<>]*>[^<>]*)*>)?\s*=)",
    re.MULTILINE,
)
_OPEN, _CLOSE = "{[(<", "}])>"


def _type_end(text: str, start: int, brace: bool) -> int:
    """End offset of a type declaration body from ``start``: the brace that closes an
    interface's ``{`` (``brace``), else a type alias's ``;`` or, without one, the line end after
    which the type does not go on (the next line does not start with ``|`` or ``&``)."""
    depth = 1 if brace else 0
    i, n = start, len(text)
    while i < n:
        c = text[i]
        if c in _OPEN:
            depth += 1
        elif c in _CLOSE and not (c == ">" and text[i - 1 : i] == "="):  # `=>` is no bracket
            depth -= 1
            if brace and depth == 0:
                return i + 1
        elif not brace and depth == 0:
            if c == ";":
                return i + 1
            if c == "\n":
                before = text[start:i].rstrip()
                after = text[i:].lstrip()
                if before and before[-1] not in "=|&,(<:?" and after[:1] not in ("|", "&"):
                    return i
        i += 1
    return n


def _blank_types(text: str) -> str:
    """``text`` with every type alias and interface body blanked (offsets and newlines kept)."""
    out = list(text)
    for m in _TYPE_DECL.finditer(text):
        end = _type_end(text, m.end(), m.group(0).rstrip().endswith("{"))
        out[m.start() : end] = [ch if ch == "\n" else " " for ch in text[m.start() : end]]
    return "".join(out)


def _object_span(text: str, name: str, path: Path) -> tuple[int, int]:
    """Return the [start, end) offsets of the braces of object literal ``name = {...}``."""
    m = re.search(rf"\b{re.escape(name)}\b[^=;{{]*=\s*\{{", text)
    if m is None:
        raise SurfaceError(
            path, f"no object literal named {name!r} (expected `{name} = {{ ... }}`)"
        )
    start = m.end() - 1
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return start, i + 1
    raise SurfaceError(
        path, f"object literal {name!r} opened on line {line_of(text, start)} never closes"
    )


def check_balanced(text: str, path: Path) -> None:
    """Raise SurfaceError at the first unbalanced bracket of comment-blanked ``text``.

    This is the "does it parse" test for a TS/JS surface: a file cut off mid-object must be an
    error row, not a file with fewer keys.
    """
    pairs = {"}": "{", "]": "[", ")": "("}
    stack: list[tuple[str, int]] = []
    stripped = _STRINGS.sub(lambda m: " " * len(m.group(0)), text)
    for i, c in enumerate(stripped):
        if c in "{[(":
            stack.append((c, i))
        elif c in pairs:
            if not stack or stack[-1][0] != pairs[c]:
                raise SurfaceError(path, f"unbalanced {c!r} on line {line_of(text, i)}")
            stack.pop()
    if stack:
        c, i = stack[-1]
        raise SurfaceError(path, f"{c!r} opened on line {line_of(text, i)} is never closed")


_ARRAY_PROPERTY = re.compile(
    r"""(?:^|(?<=[{,]))\s*(?P<q>["']?)(?P<key>[A-Za-z_$][\w$]*)(?P=q)\s*:\s*\[(?P<items>\s*"""
    + _LITERAL
    + r"""(?:\s*,\s*"""
    + _LITERAL
    + r""")*\s*,?\s*)\](?:\s+as\s+const)?\s*(?=[,};\n]|$)""",
    re.MULTILINE,
)
_ITEM = re.compile(_LITERAL)
_OWNER = re.compile(r"""(?P<q>["']?)(?P<key>[A-Za-z_$][\w$]*)(?P=q)\s*:\s*$""")


def _scopes(text: str) -> list[tuple[int, int, str | None]]:
    """Every ``{...}`` of ``text`` (strings masked) as ``(open, close, key)``: ``key`` is the
    property the object is the value of (``sched: {``), None for any other brace."""
    masked = _STRINGS.sub(lambda m: " " * len(m.group(0)), text)
    out: list[tuple[int, int, str | None]] = []
    stack: list[tuple[int, str | None]] = []
    for i, c in enumerate(masked):
        if c == "{":
            owner = _OWNER.search(masked, max(0, i - 200), i)
            stack.append((i, owner.group("key") if owner else None))
        elif c == "}" and stack:
            start, key = stack.pop()
            out.append((start, i, key))
    return out


def _parents(scopes: list[tuple[int, int, str | None]], pos: int, lo: int) -> str:
    """The dotted path of the objects enclosing ``pos`` inside ``[lo, ...)``, e.g. ``sched.``."""
    keys = sorted((o, k) for o, c, k in scopes if lo <= o < pos < c and k is not None)
    return "".join(f"{k}." for _, k in keys)


def extract(path: Path, *, object_name: str | None = None) -> list[SurfaceEntry]:
    """Return every literal-valued property and const declaration of a TS/JS file, in order.

    A property inside a nested object is keyed by its path (``sched: { minLr: 1e-5 }`` states
    ``sched.minLr``), and an array of literals by index (``betas: [0.9, 0.95]`` states
    ``betas.0`` and ``betas.1``), as the JSON surface keys them.
    """
    return [s for s in statements(path, object_name=object_name) if isinstance(s, SurfaceEntry)]


def statements(path: Path, *, object_name: str | None = None) -> list[Statement]:
    """Every property :func:`extract` reads, plus each object-literal property whose value is
    code (``lr: 10 * 3e-4``, ``lr: 3e-3 as number``) as :class:`Unreadable`, in file order.

    JS keeps the last of a key written twice in one object literal, so a property that is code
    must not vanish: it replaces an earlier literal of its key, and it states its key (an
    unknown one is still unknown). A property's value that is an object is no statement (its
    properties are), and neither is an array of literals (its items are).
    """
    text = blank_comments(read_text(path))
    check_balanced(text, path)
    if object_name is None:
        text = _blank_types(text)
    lo, hi = (0, len(text)) if object_name is None else _object_span(text, object_name, path)
    scopes = _scopes(text)
    found: list[tuple[int, Statement]] = []
    patterns = (_PROPERTY,) if object_name is not None else (_PROPERTY, _CONST)
    for pattern in patterns:
        for m in pattern.finditer(text, lo, hi):
            raw = m.group("value")
            pos = m.start("key")
            key = m.group("key")
            if pattern is _PROPERTY:
                key = _parents(scopes, pos, lo) + key
            found.append((pos, SurfaceEntry(key, parse_literal(raw), raw, line_of(text, pos))))
    for m in _ARRAY_PROPERTY.finditer(text, lo, hi):
        key = _parents(scopes, m.start("key"), lo) + m.group("key")
        for i, item in enumerate(_ITEM.finditer(m.group("items"))):
            pos = m.start("items") + item.start()
            raw = item.group(0)
            found.append(
                (pos, SurfaceEntry(f"{key}.{i}", parse_literal(raw), raw, line_of(text, pos)))
            )
    read = {m.start("key") for p in (_PROPERTY, _ARRAY_PROPERTY) for m in p.finditer(text, lo, hi)}
    found += [
        (pos, Unreadable(_parents(scopes, pos, lo) + key, raw, line_of(text, pos)))
        for pos, key, raw in _code_properties(text, lo, hi)
        if pos not in read
    ]
    return [e for _, e in sorted(found, key=lambda p: p[0])]


_KEY = re.compile(
    r"""(?:^|(?<=[{,]))\s*(?P<q>["']?)(?P<key>[A-Za-z_$][\w$]*)(?P=q)\s*:""", re.MULTILINE
)
_OBJECT_AFTER = "=:(,[?|&"  # a `{` after one of these opens an object literal, not a block
_OBJECT_AFTER_WORDS = ("return", "default", "yield")
_RAW_MAX = 80  # a value that is code is quoted in messages; keep it one readable line


def _code_properties(text: str, lo: int, hi: int) -> list[tuple[int, str, str]]:
    """``(offset, key, value as written)`` of every property in ``[lo, hi)`` of an object
    literal whose value is neither an object nor empty (literal ones are filtered by the
    caller). A ``key: value`` inside a string, a block, a class body or a parameter list
    (``(a: number, b: string)``) is no property: its innermost bracket must be a ``{`` that opens
    an object literal."""
    masked = _STRINGS.sub(lambda m: " " * len(m.group(0)), text)
    opens = {m.start() for m in _STRINGS.finditer(text)}
    candidates = [
        m
        for m in _KEY.finditer(text, lo, hi)
        # a key inside a string is text, not a property; a quoted key is a string of its own
        if ((m.start("q") in opens) if m.group("q") else masked[m.start("key")] != " ")
    ]
    inside = _innermost_is_object(masked, [m.start("key") for m in candidates])
    out: list[tuple[int, str, str]] = []
    for m in candidates:
        pos = m.start("key")
        if not inside.get(pos, False):
            continue
        end = _value_end(masked, m.end(), hi)
        raw = " ".join(text[m.end() : end].split())
        if not raw or raw.startswith("{"):
            continue  # a nested object states its own properties
        short = raw if len(raw) <= _RAW_MAX else raw[: _RAW_MAX - 3] + "..."
        out.append((pos, m.group("key"), short))
    return out


def _innermost_is_object(masked: str, positions: list[int]) -> dict[int, bool]:
    """For each offset, whether the innermost bracket around it is an object literal's ``{``."""
    out: dict[int, bool] = {}
    todo = sorted(positions)
    k = 0
    stack: list[bool] = []  # per open bracket: is it an object literal's `{`
    for i, c in enumerate(masked):
        while k < len(todo) and todo[k] == i:
            out[i] = bool(stack) and stack[-1]
            k += 1
        if c == "{":
            j = i - 1
            while j >= 0 and masked[j].isspace():
                j -= 1
            word = re.search(r"[\w$]+$", masked[max(0, j - 9) : j + 1])
            stack.append(
                (j >= 0 and masked[j] in _OBJECT_AFTER)
                or (word is not None and word.group(0) in _OBJECT_AFTER_WORDS)
            )
        elif c in "([":
            stack.append(False)
        elif c in ")]}" and stack:
            stack.pop()
    return out


def _value_end(masked: str, start: int, hi: int) -> int:
    """The end of a property's value from ``start``: the ``,`` or ``;`` at its own depth, or
    the bracket that closes its object."""
    depth = 0
    for i in range(start, hi):
        c = masked[i]
        if c in "([{":
            depth += 1
        elif c in ")]}":
            if depth == 0:
                return i
            depth -= 1
        elif c in ",;" and depth == 0:
            return i
    return hi
