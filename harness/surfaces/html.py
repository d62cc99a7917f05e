"""HTML / Astro / JSX surfaces: ``<input id="lr" value="0.003">``.

The key is the input's ``id`` (or its ``name`` when it has no id); the value is its ``value`` (or
``defaultValue``) attribute, quoted or as a JSX expression ``{0.003}``. The line is the line of
the value attribute, so a tag spread over several lines points at the number itself.
"""

from __future__ import annotations

import re
from pathlib import Path

from harness.surfaces.base import SurfaceEntry, SurfaceError, line_of, parse_literal, read_text

_TAG = re.compile(r"<input\b(?P<attrs>(?:[^>\"'{]|\"[^\"]*\"|'[^']*'|\{[^}]*\})*)/?>", re.I)
_ATTR = re.compile(
    r"""(?P<name>[A-Za-z_:][-\w:.]*)\s*=\s*(?P<value>"[^"]*"|'[^']*'|\{[^}]*\}|[^\s"'=<>`/]+)"""
)


def _unquote(raw: str) -> str:
    if raw[:1] in "\"'{" and len(raw) >= 2:
        return raw[1:-1].strip()
    return raw


def extract(path: Path) -> list[SurfaceEntry]:
    """Return one entry per ``<input>`` that has an id (or name) and a value attribute."""
    text = read_text(path)
    entries: list[SurfaceEntry] = []
    for tag in _TAG.finditer(text):
        attrs: dict[str, tuple[str, int]] = {}
        base = tag.start("attrs")
        for a in _ATTR.finditer(tag.group("attrs")):
            attrs[a.group("name").lower()] = (a.group("value"), base + a.start("value"))
        key = attrs.get("id") or attrs.get("name")
        val = attrs.get("value") or attrs.get("defaultvalue")
        if key is None or val is None:
            continue
        raw, pos = _unquote(val[0]), val[1]
        try:
            value = parse_literal(raw)
        except ValueError:
            value = raw  # a non-numeric value such as "adamw" compares as a string
        if raw[:1] in "\"'":
            value = raw[1:-1]
        entries.append(SurfaceEntry(_unquote(key[0]), value, raw, line_of(text, pos)))
    if not entries and "<input" in text.lower() and not _TAG.search(text):
        raise SurfaceError(path, "found '<input' but no complete <input ...> tag")
    return entries
