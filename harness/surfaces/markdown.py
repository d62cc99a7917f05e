"""Markdown surfaces: the defaults table under a heading (the README's).

The format parsed (and the one README.md must keep)::

    ## Default hyperparameters

    | name | value | meaning |
    |---|---|---|
    | `learning_rate` | `3e-4` | peak AdamW learning rate |

The heading text is matched case-insensitively at any level; the first table after it is read
until the first line that is not a table row. Columns are found by header name (``name`` or
``key``; ``value``), so extra columns and any order are fine. Backticks are stripped.
"""

from __future__ import annotations

import re
from pathlib import Path

from harness.surfaces.base import SurfaceEntry, SurfaceError, parse_literal, read_text

DEFAULT_HEADING = "Default hyperparameters"


def _cells(line: str) -> list[str]:
    body = line.strip()
    body = body[1:] if body.startswith("|") else body
    body = body[:-1] if body.endswith("|") else body
    return [c.strip().strip("`").strip() for c in body.split("|")]


def extract(path: Path, *, heading: str = DEFAULT_HEADING) -> list[SurfaceEntry]:
    """Return the name/value rows of the table under ``heading`` in the Markdown file ``path``."""
    lines = read_text(path).splitlines()
    want = re.compile(rf"^#+\s+{re.escape(heading)}\s*#*\s*$", re.I)
    start = next((i for i, s in enumerate(lines) if want.match(s.strip())), None)
    if start is None:
        raise SurfaceError(path, f"no heading {heading!r}")
    top = next((i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("|")), None)
    if top is None or top + 1 >= len(lines) or not re.match(r"^\s*\|?[\s:|-]+$", lines[top + 1]):
        raise SurfaceError(
            path, f"no Markdown table under the heading {heading!r} (line {start + 1})"
        )
    header = [h.lower() for h in _cells(lines[top])]
    try:
        key_col = header.index("name") if "name" in header else header.index("key")
        val_col = header.index("value")
    except ValueError:
        raise SurfaceError(
            path, f"table on line {top + 1} needs 'name' and 'value' columns, has {header}"
        ) from None
    entries = []
    for i in range(top + 2, len(lines)):
        if not lines[i].lstrip().startswith("|"):
            break
        cells = _cells(lines[i])
        if len(cells) <= max(key_col, val_col):
            raise SurfaceError(
                path, f"line {i + 1}: table row has {len(cells)} cells, need {len(header)}"
            )
        raw = cells[val_col]
        try:
            value = parse_literal(raw)
        except ValueError:
            raise SurfaceError(path, f"line {i + 1}: value {raw!r} is not a literal") from None
        entries.append(SurfaceEntry(cells[key_col], value, raw, i + 1))
    return entries
