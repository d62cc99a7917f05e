"""Surface extractors, one module per format, behind one :func:`extract`.

A matrix names a surface's ``format``; :data:`FORMATS` maps it to the extractor. Format options
(``object`` for TypeScript, ``heading`` for Markdown, ``calls`` for C/C++) pass through.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from harness.surfaces import (
    c_source,
    html,
    json_surface,
    markdown,
    python_surface,
    toml_surface,
    typescript,
)
from harness.surfaces.base import (
    Statement,
    SurfaceEntry,
    SurfaceError,
    Unreadable,
    Value,
    parse_literal,
)

__all__ = [
    "FORMATS",
    "Statement",
    "SurfaceEntry",
    "SurfaceError",
    "Unreadable",
    "Value",
    "extract",
    "parse_literal",
    "statements",
]


def _typescript(path: Path, options: Mapping[str, Any]) -> list[SurfaceEntry]:
    return typescript.extract(path, object_name=options.get("object"))


def _markdown(path: Path, options: Mapping[str, Any]) -> list[SurfaceEntry]:
    return markdown.extract(path, heading=str(options.get("heading", markdown.DEFAULT_HEADING)))


def _c(path: Path, options: Mapping[str, Any]) -> list[SurfaceEntry]:
    return c_source.extract(path, calls=tuple(options.get("calls", ())))


FORMATS: Mapping[str, Callable[[Path, Mapping[str, Any]], list[SurfaceEntry]]] = {
    "typescript": _typescript,  # also plain JS: .ts, .js, .mjs
    "html": lambda p, _o: html.extract(p),  # also .astro, .jsx, .tsx, .vue templates
    "json": lambda p, _o: json_surface.extract(p),
    "toml": lambda p, _o: toml_surface.extract(p),
    "python": lambda p, _o: python_surface.extract(p),
    "markdown": _markdown,
    "c": _c,  # C and C++: #define, constexpr, static const, literal arguments of named calls
}
FORMAT_OPTIONS: Mapping[str, frozenset[str]] = {
    "typescript": frozenset({"object"}),
    "markdown": frozenset({"heading"}),
    "c": frozenset({"calls"}),
}


def extract(
    path: Path, format: str, options: Mapping[str, Any] | None = None
) -> list[SurfaceEntry]:
    """Return the entries of surface file ``path`` read as ``format``.

    Raises SurfaceError naming the file when it is missing or does not parse, and KeyError for an
    unknown format.
    """
    try:
        fn = FORMATS[format]
    except KeyError:
        raise KeyError(f"unknown surface format {format!r}; known: {', '.join(FORMATS)}") from None
    return fn(path, options or {})


# The formats whose extractor also reports a key stated as code (`Unreadable`): there a later
# statement of a key replaces an earlier one, so one that is code must not be dropped.
_STATEMENTS: Mapping[str, Callable[[Path, Mapping[str, Any]], list[Statement]]] = {
    "python": lambda p, _o: python_surface.statements(p),
    "typescript": lambda p, o: typescript.statements(p, object_name=o.get("object")),
}


def statements(
    path: Path, format: str, options: Mapping[str, Any] | None = None
) -> list[Statement]:
    """Return the statements of surface file ``path`` read as ``format``, in file order: its
    literal entries and, for the formats that report them (python, typescript), the keys stated
    as code (:class:`Unreadable`). Other formats state literals only: :func:`extract`'s entries.

    Raises as :func:`extract` does.
    """
    reader = _STATEMENTS.get(format)
    if reader is None:
        return list(extract(path, format, options))
    return reader(path, options or {})
