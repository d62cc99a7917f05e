"""TOML surfaces: every scalar value, keyed by its dotted path (``training.learning_rate``).

An array of scalars is indexed: ``betas = [0.9, 0.95]`` gives ``betas.0`` and ``betas.1``.

Values come from :mod:`tomllib` (its error message is the one reported); lines come from a
scan of table headers and ``key = value`` lines. A key that only appears inside an inline table
gets the line of the line that holds it.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.surfaces.base import SurfaceEntry, SurfaceError, read_text

_HEADER = re.compile(r"^\s*\[\[?\s*(?P<name>[^\]]+?)\s*\]\]?\s*(?:#.*)?$")
_ASSIGN = re.compile(r"""^\s*(?P<key>[A-Za-z0-9_.\-"' ]+?)\s*=\s*(?P<raw>.*?)\s*(?:#[^"']*)?$""")


def _bare(key: str) -> str:
    return ".".join(part.strip().strip("\"'") for part in key.split("."))


def _lines(text: str) -> dict[str, tuple[int, str]]:
    """Map dotted key -> (line, raw text after '=') for every ``key = value`` line."""
    where: dict[str, tuple[int, str]] = {}
    table = ""
    for n, line in enumerate(text.splitlines(), start=1):
        h = _HEADER.match(line)
        if h:
            table = _bare(h.group("name"))
            continue
        a = _ASSIGN.match(line)
        if a:
            key = _bare(a.group("key"))
            where.setdefault(f"{table}.{key}" if table else key, (n, a.group("raw")))
    return where


def _flatten(data: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for k, v in data.items():
        key = f"{prefix}.{k}" if prefix else k
        if isinstance(v, Mapping):
            out.extend(_flatten(v, key))
        elif isinstance(v, list) and all(isinstance(x, bool | int | float | str) for x in v):
            out.extend((f"{key}.{i}", x) for i, x in enumerate(v))  # betas = [0.9, 0.95]
        elif isinstance(v, bool | int | float | str):
            out.append((key, v))
    return out


def extract(path: Path) -> list[SurfaceEntry]:
    """Return the scalar values of the TOML file ``path`` with their lines."""
    text = read_text(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SurfaceError(path, f"invalid TOML: {exc}") from None
    where = _lines(text)
    entries = []
    for key, value in _flatten(data):
        line, raw = where.get(key, (0, repr(value)))
        if line == 0 and key.rsplit(".", 1)[-1].isdigit():  # an array element: the array's line
            line = where.get(key.rsplit(".", 1)[0], (0, ""))[0]
            raw = repr(value)
        if line == 0:  # inside an inline table: find the line naming its last part
            leaf = key.rsplit(".", 1)[-1]
            for n, src in enumerate(text.splitlines(), start=1):
                if re.search(rf"\b{re.escape(leaf)}\s*=", src):
                    line = n
                    break
        entries.append(SurfaceEntry(key, value, raw, line))
    return entries
