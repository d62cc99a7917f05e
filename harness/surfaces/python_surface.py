"""Python surfaces: module constants, dataclass field defaults, dict literals, argparse defaults.

``LEARNING_RATE = 3e-4`` gives key ``LEARNING_RATE``; inside ``class Defaults:`` a field
``learning_rate: float = 3e-4`` gives ``Defaults.learning_rate``; a module-level
``CONFIG = {"lr": 3e-4}`` gives ``CONFIG.lr``. A tuple or list literal is indexed:
``betas = (0.9, 0.95)`` gives ``betas.0`` and ``betas.1`` (a defaults oracle reads those as
``beta1`` and ``beta2``). ``parser.add_argument("--learning-rate", default=3e-4)`` anywhere in
the file gives ``learning_rate`` (argparse's ``dest``: the first long option, dashes as
underscores, or ``dest=`` when given); a default naming a module constant states its value.
Only literal values count (``-3e-4`` included); the file
is parsed with :mod:`ast`, never imported.

:func:`statements` also returns each key assigned code instead of a literal
(``learning_rate = 10 * 3e-4``) as :class:`~harness.surfaces.base.Unreadable`, in file order
with the literal ones: Python keeps the last assignment of a name, the last of a class field
annotated twice and the last of a dict key written twice, so the last statement of a key is the
one in effect, and a literal it replaces must not stand in for it. A call that states no value
(``CONFIG = TrainConfig()``, ``field(default_factory=list)``) is no statement, as before.
"""

from __future__ import annotations

import ast
from pathlib import Path

from harness.surfaces.base import (
    Statement,
    SurfaceEntry,
    SurfaceError,
    Unreadable,
    Value,
    read_text,
)

_RAW_MAX = 80  # an unreadable value's source is quoted in messages; keep it one readable line


_CODE = object()  # the value is code, not a literal


def _literal(node: ast.expr) -> Value | object | None:
    """The scalar a literal states; None for a literal that states no scalar (``None``, bytes,
    a set), as JSON's null states nothing; ``_CODE`` for anything that is not a literal."""
    try:
        v = ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return _CODE
    return v if isinstance(v, bool | int | float | str) else None


def _source(value: ast.expr, src: str) -> str:
    """The expression as written, on one line (shortened past ``_RAW_MAX`` characters)."""
    raw = " ".join((ast.get_source_segment(src, value) or ast.unparse(value)).split())
    return raw if len(raw) <= _RAW_MAX else raw[: _RAW_MAX - 3] + "..."


def _entries(name: str, value: ast.expr, src: str) -> list[Statement]:
    """The statements one assigned expression makes: a scalar, a dict's or a sequence's items;
    a value that is code, not a literal, is one :class:`Unreadable` statement of ``name``."""
    out: list[Statement] = []
    if isinstance(value, ast.Dict):
        for k, v in zip(value.keys, value.values, strict=True):
            if isinstance(k, ast.Constant) and isinstance(k.value, str):
                out.extend(_entries(f"{name}.{k.value}", v, src))
        return out
    if isinstance(value, ast.Tuple | ast.List):
        for i, elt in enumerate(value.elts):
            out.extend(_entries(f"{name}.{i}", elt, src))
        return out
    if isinstance(value, ast.Call) and not value.args:
        # ``field(default=0.1)`` in a dataclass states its default as a keyword
        for kw in value.keywords:
            if kw.arg == "default":
                return _entries(name, kw.value, src)
        return out
    lit = _literal(value)
    if lit is _CODE:
        # stated, but as code: kept so that it replaces an earlier literal of the same key
        out.append(Unreadable(name, _source(value, src), value.lineno))
    elif isinstance(lit, bool | int | float | str):
        raw = ast.get_source_segment(src, value) or repr(lit)
        out.append(SurfaceEntry(name, lit, raw, value.lineno))
    return out


def _assignments(body: list[ast.stmt], prefix: str, src: str) -> list[Statement]:
    out: list[Statement] = []
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
        if isinstance(target, ast.Name):
            out.extend(_entries(prefix + target.id, value, src))
    return out


def _argparse_dest(call: ast.Call) -> str | None:
    for kw in call.keywords:
        if kw.arg == "dest" and isinstance(kw.value, ast.Constant):
            return str(kw.value.value)
    flags = [a.value for a in call.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
    if not flags:
        return None
    long = [f for f in flags if f.startswith("--")]
    chosen = long[0] if long else flags[0]
    return chosen.lstrip("-").replace("-", "_") or None


def _argparse(tree: ast.AST, src: str, constants: dict[str, Statement]) -> list[Statement]:
    """``add_argument(..., default=LITERAL)`` calls, keyed by their dest. A default that names a
    module constant (``default=DEFAULT_LR``) states that constant's value, at its line."""
    out: list[Statement] = []
    for node in ast.walk(tree):
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "add_argument"
        ):
            continue
        default = next((kw.value for kw in node.keywords if kw.arg == "default"), None)
        dest = _argparse_dest(node)
        if default is None or dest is None:
            continue
        if isinstance(default, ast.Name) and default.id in constants:
            c = constants[default.id]
            if isinstance(c, SurfaceEntry):
                out.append(SurfaceEntry(dest, c.value, c.raw, c.line))
            else:
                out.append(Unreadable(dest, c.raw, c.line))
            continue
        out.extend(_entries(dest, default, src))
    return out


def extract(path: Path) -> list[SurfaceEntry]:
    """Return the literal constants and argparse defaults of the Python file ``path``."""
    return [s for s in statements(path) if isinstance(s, SurfaceEntry)]


def statements(path: Path) -> list[Statement]:
    """Every key the Python file ``path`` assigns, literal or not, in file order (by line)."""
    src = read_text(path)
    try:
        tree = ast.parse(src, filename=str(path))
    except SyntaxError as exc:
        raise SurfaceError(path, f"invalid Python: {exc.msg} (line {exc.lineno})") from None
    module = _assignments(tree.body, "", src)
    # the last assignment of a constant is its value, as at runtime
    constants = {e.key: e for e in module if "." not in e.key}
    found = module + _argparse(tree, src, constants)
    return sorted(found, key=lambda e: e.line)
