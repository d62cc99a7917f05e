"""Check kinds a matrix selects: smoke, ops, model, defaults, corpus, bench, memory64, growth,
determinism.

Each check kind is one module with a ``run(ctx)`` that yields :class:`~harness.rundir.rows.Row`.
:data:`REGISTRY` maps the kind name to it; the runner calls them per cell. Modules are imported
only when a check is used, so loading a matrix that selects ``smoke`` does not import the
benchmark machinery. A module may also define ``validate_options(options) -> None`` (raising
``ValueError``) to vet its ``[check.<kind>]`` table when the matrix is loaded, and
``begin_run() -> None`` to forget per-run state (caches of what a run has already recorded)
before a new run starts in the same process.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # base imports hosts and results; keep `import harness.checks` light
    from harness.checks.base import CellContext
    from harness.rundir.rows import Row

REGISTRY: dict[str, str] = {
    "smoke": "harness.checks.smoke",
    "ops": "harness.checks.ops",
    "model": "harness.checks.model",
    "defaults": "harness.checks.defaults",
    "corpus": "harness.checks.corpus",
    "bench": "harness.checks.bench",
    "memory64": "harness.checks.memory64",
    "growth": "harness.checks.growth",
    "determinism": "harness.checks.determinism",
}

OptionsValidator = Callable[[Mapping[str, Any]], None]


class CheckUnavailableError(Exception):
    """A check kind is unknown, or its module cannot be imported or has no ``run``."""


def _module(kind: str) -> ModuleType:
    try:
        path = REGISTRY[kind]
    except KeyError:
        raise CheckUnavailableError(
            f"unknown check {kind!r}; known checks: {', '.join(REGISTRY)}"
        ) from None
    try:
        return importlib.import_module(path)
    except ImportError as exc:
        raise CheckUnavailableError(
            f"check {kind!r} is registered as module {path}, which cannot be imported: "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def get_check(kind: str) -> Callable[[CellContext], Iterator[Row]]:
    """Return the ``run`` function of check ``kind``; raises CheckUnavailableError if it cannot."""
    module = _module(kind)
    fn = getattr(module, "run", None)
    if not callable(fn):
        raise CheckUnavailableError(f"check module {module.__name__} defines no run(ctx) function")
    return fn  # type: ignore[no-any-return]


def get_options_validator(kind: str) -> OptionsValidator | None:
    """Return check ``kind``'s ``validate_options`` if it defines one, else None."""
    fn = getattr(_module(kind), "validate_options", None)
    return fn if callable(fn) else None


def begin_run(kinds: Iterable[str]) -> None:
    """Call ``begin_run()`` of each check kind in ``kinds`` that defines one."""
    for kind in dict.fromkeys(kinds):
        hook = getattr(_module(kind), "begin_run", None)
        if callable(hook):
            hook()
