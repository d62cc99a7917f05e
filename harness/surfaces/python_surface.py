"""Python surfaces: module constants, dataclass field defaults and dict literals.

``LEARNING_RATE = 3e-4`` gives key ``LEARNING_RATE``; inside ``class Defaults:`` a field
``learning_rate: float = 3e-4`` gives ``Defaults.learning_rate``; a module-level
``CONFIG = {"lr": 3e-4}`` gives ``CONFIG.lr``. Only literal values count (``-3e-4`` included);
the file is parsed with :mod:`ast`, never imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

from harness.surfaces.base import SurfaceEntry, SurfaceError, Value, read_text


def _literal(node: ast.expr) -> Value | None:
    try:
        v = ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None
    return v if isinstance(v, bool | int | float | str) else None


def _assignments(body: list[ast.stmt], prefix: str, src: str) -> list[SurfaceEntry]:
    out: list[SurfaceEntry] = []
    for stmt in body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
            target, value = stmt.targets[0], stmt.value
        elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
            target, value = stmt.target, stmt.value
        elif isinstance(stmt, ast.ClassDef) and not prefix:
            out.extend(_assignments(stmt.body, f"{stmt.name}.", src))
            continue
        else:
            continue
        if not isinstance(target, ast.Name):
            continue
        name = prefix + target.id
        if isinstance(value, ast.Dict):
            for k, v in zip(value.keys, value.values, strict=True):
                if isinstance(k, ast.Constant) and isinstance(k.value, str):
                    lit = _literal(v)
                    if lit is not None:
                        raw = ast.get_source_segment(src, v) or repr(lit)
                        out.append(SurfaceEntry(f"{name}.{k.value}", lit, raw, v.lineno))
            continue
        lit = _literal(value)
        if lit is not None:
            raw = ast.get_source_segment(src, value) or repr(lit)
            out.append(SurfaceEntry(name, lit, raw, value.lineno))
    return out


def extract(path: Path) -> list[SurfaceEntry]:
    """Return the literal constants of the Python file ``path``."""
    src = read_text(path)
    try:
        tree = ast.parse(src, filename=str(path))
    except SyntaxError as exc:
        raise SurfaceError(path, f"invalid Python: {exc.msg} (line {exc.lineno})") from None
    return _assignments(tree.body, "", src)
