"""HTML / Astro / JSX surfaces: ``<input id="lr" value="0.003">`` and ``<textarea>``.

The key is the element's ``id`` (or its ``name`` when it has no id). An input's value is its
``value`` (or ``defaultValue``) attribute, quoted or as a JSX expression ``{0.003}``; the line is
the line of the value attribute, so a tag spread over several lines points at the number itself.
An Astro/JSX ``value={expr}`` that is not a literal is bound to code, not stated in the page:
it gives no entry. A ``<textarea>``'s value is its text between the tags (HTML entities decoded,
the one newline that may follow the opening tag dropped, as browsers do), a string; its line is
the line where the text starts. :func:`textareas` returns them for the corpus check. A
``<select>``'s value is its selected option's (``value`` attribute, else its text), and with no
``selected`` option the first one's, as a browser shows it; its line is that option's.

HTML comments (``<!-- ... -->``) are blanked first (offsets kept), so a commented-out input or an
old ``<textarea>`` left in a comment states nothing. A ``<textarea>``'s, ``<script>``'s or
``<style>``'s own text is not markup: a ``<!--`` inside one is text, and is kept.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

from harness.surfaces.base import (
    SurfaceEntry,
    SurfaceError,
    Value,
    line_of,
    parse_literal,
    read_text,
)

_TAG = re.compile(r"<input\b(?P<attrs>(?:[^>\"'{]|\"[^\"]*\"|'[^']*'|\{[^}]*\})*)/?>", re.I)
_ATTR = re.compile(
    r"""(?P<name>[A-Za-z_:][-\w:.]*)\s*=\s*(?P<value>"[^"]*"|'[^']*'|\{[^}]*\}|[^\s"'=<>`/]+)"""
)


_TEXTAREA = re.compile(
    r"<textarea\b(?P<attrs>(?:[^>\"'{]|\"[^\"]*\"|'[^']*'|\{[^}]*\})*)>(?P<body>.*?)</textarea\s*>",
    re.I | re.S,
)


_SELECT = re.compile(
    r"<select\b(?P<attrs>(?:[^>\"'{]|\"[^\"]*\"|'[^']*'|\{[^}]*\})*)>(?P<body>.*?)</select\s*>",
    re.I | re.S,
)
_OPTION = re.compile(
    r"<option\b(?P<attrs>(?:[^>\"'{]|\"[^\"]*\"|'[^']*'|\{[^}]*\})*)>(?P<text>[^<]*)", re.I
)
_SELECTED = re.compile(r"(?:^|\s)selected(?:\s|=|$)", re.I)

# Leftmost first: a comment (``<!-->`` and ``<!--->`` are whole empty ones, an unclosed one runs
# to the end of the file, as browsers read them), or an element whose text is not markup, skipped
# whole so a ``<!--`` in a corpus or a script is not taken for a comment.
_COMMENT_OR_TEXT = re.compile(
    r"(?P<comment><!--(?:-?>|.*?(?:-->|\Z)))"
    r"|<(?P<tag>textarea|script|style)(?=[\s/>]).*?(?:</(?P=tag)\s*>|\Z)",
    re.I | re.S,
)


def _blank_comments(text: str) -> str:
    """Return ``text`` with its HTML comments as spaces, newlines kept (offsets do not move)."""

    def blank(m: re.Match[str]) -> str:
        if m.group("comment") is None:
            return m.group(0)
        return "".join(ch if ch == "\n" else " " for ch in m.group(0))

    return _COMMENT_OR_TEXT.sub(blank, text)


def _literal(raw: str) -> Value:
    """A value as written: a number or boolean literal, else the string."""
    try:
        return parse_literal(raw)
    except ValueError:
        return raw


def selects(text: str) -> list[SurfaceEntry]:
    """One entry per ``<select>`` with an id (or name) and at least one option."""
    out: list[SurfaceEntry] = []
    for m in _SELECT.finditer(text):
        attrs = _attrs(text, m.start("attrs"), m.group("attrs"))
        key = attrs.get("id") or attrs.get("name")
        options = list(_OPTION.finditer(text, m.start("body"), m.end("body")))
        if key is None or not options:
            continue
        chosen = next((o for o in options if _SELECTED.search(o.group("attrs"))), options[0])
        oattrs = _attrs(text, chosen.start("attrs"), chosen.group("attrs"))
        if "value" in oattrs:
            raw, pos = _unquote(oattrs["value"][0]), oattrs["value"][1]
        else:
            raw, pos = html.unescape(chosen.group("text")).strip(), chosen.start("text")
        value = _literal(raw)
        shown = _shown(value) if isinstance(value, str) else raw
        out.append(SurfaceEntry(_unquote(key[0]), value, shown, line_of(text, pos)))
    return out


def _attrs(text: str, start: int, attrs: str) -> dict[str, tuple[str, int]]:
    out: dict[str, tuple[str, int]] = {}
    for a in _ATTR.finditer(attrs):
        out[a.group("name").lower()] = (a.group("value"), start + a.start("value"))
    return out


def textareas(path: Path) -> list[SurfaceEntry]:
    """Return one entry per ``<textarea>`` with an id (or name): its decoded text, as a string."""
    text = _blank_comments(read_text(path))
    out: list[SurfaceEntry] = []
    for m in _TEXTAREA.finditer(text):
        attrs = _attrs(text, m.start("attrs"), m.group("attrs"))
        key = attrs.get("id") or attrs.get("name")
        if key is None:
            continue
        body = m.group("body")
        start = m.start("body")
        if body.startswith("\r\n"):
            body, start = body[2:], start + 2
        elif body.startswith("\n"):
            body, start = body[1:], start + 1
        value = html.unescape(body)
        out.append(SurfaceEntry(_unquote(key[0]), value, _shown(value), line_of(text, start)))
    if not out and "<textarea" in text.lower() and not _TEXTAREA.search(text):
        raise SurfaceError(path, "found '<textarea' but no complete <textarea ...>...</textarea>")
    return out


def _shown(text: str, limit: int = 60) -> str:
    """A string value as a message shows it: quoted (an empty one is visibly ``""``), and cut
    after ``limit`` characters (a textarea may hold a whole corpus)."""
    cut = text if len(text) <= limit else text[: limit - 3] + "..."
    return json.dumps(cut, ensure_ascii=False)


def _unquote(raw: str) -> str:
    if raw[:1] in "\"'{" and len(raw) >= 2:
        return raw[1:-1].strip()
    return raw


def extract(path: Path) -> list[SurfaceEntry]:
    """Return one entry per ``<input>`` with an id (or name) and a value, then the textareas."""
    text = _blank_comments(read_text(path))
    entries: list[SurfaceEntry] = []
    for tag in _TAG.finditer(text):
        attrs = _attrs(text, tag.start("attrs"), tag.group("attrs"))
        key = attrs.get("id") or attrs.get("name")
        val = attrs.get("value") or attrs.get("defaultvalue")
        if key is None or val is None:
            continue
        raw, pos = _unquote(val[0]), val[1]
        try:
            value = parse_literal(raw)
        except ValueError:
            if val[0].startswith("{"):
                # value={DEFAULT_CONFIG.learningRate}: bound to code, not stated here (the code's
                # own surface states it), so it is no entry of this one
                continue
            value = raw  # a non-numeric value such as "adamw" compares as a string
        if raw[:1] in "\"'":
            value = raw[1:-1]
        shown = _shown(value) if isinstance(value, str) else raw
        entries.append(SurfaceEntry(_unquote(key[0]), value, shown, line_of(text, pos)))
    if not entries and "<input" in text.lower() and not _TAG.search(text):
        raise SurfaceError(path, "found '<input' but no complete <input ...> tag")
    return sorted(entries + selects(text) + textareas(path), key=lambda e: e.line)
