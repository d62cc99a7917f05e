"""harness.checks registry: lazy imports and clear errors for unknown or broken check modules."""

from __future__ import annotations

import pytest

from harness import checks
from harness.checks import CheckUnavailableError, get_check, get_options_validator


def test_every_registered_check_imports_and_has_run() -> None:
    """Each kind in REGISTRY resolves to a callable run(ctx)."""
    for kind in checks.REGISTRY:
        assert callable(get_check(kind))


def test_unknown_kind_lists_the_known_ones() -> None:
    """An unregistered kind names itself and every known kind."""
    with pytest.raises(
        CheckUnavailableError, match=r"unknown check 'speed'; known checks: smoke, ops"
    ):
        get_check("speed")


def test_missing_module_names_the_module(monkeypatch: pytest.MonkeyPatch) -> None:
    """A registered kind whose module does not exist says which module, and why."""
    monkeypatch.setitem(checks.REGISTRY, "ops", "harness.checks.no_such_module")
    with pytest.raises(
        CheckUnavailableError,
        match=r"check 'ops' is registered as module harness.checks.no_such_module, which cannot "
        r"be imported: ModuleNotFoundError",
    ):
        get_check("ops")


def test_module_without_run_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A module with no run(ctx) is not a check."""
    monkeypatch.setitem(checks.REGISTRY, "ops", "harness.checks.base")
    with pytest.raises(CheckUnavailableError, match="defines no run"):
        get_check("ops")


def test_options_validator_is_optional(monkeypatch: pytest.MonkeyPatch) -> None:
    """smoke defines validate_options; a module without one gives None."""
    assert get_options_validator("smoke") is not None
    monkeypatch.setitem(checks.REGISTRY, "ops", "harness.checks.base")
    assert get_options_validator("ops") is None
