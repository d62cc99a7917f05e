"""Fixtures of the text-only project checks: copies of the browser project fixture's two states."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

FIXTURE = Path(__file__).parents[1] / "fixtures" / "browser_project"


@pytest.fixture
def drifted(tmp_path: Path) -> Path:
    """A writable copy of the drifted project (lr 3e-3, the 863-byte textarea, a 9.7x point)."""
    return Path(shutil.copytree(FIXTURE / "drifted", tmp_path / "drifted"))


@pytest.fixture
def fixed(tmp_path: Path) -> Path:
    """A writable copy of the fixed project."""
    return Path(shutil.copytree(FIXTURE / "fixed", tmp_path / "fixed"))
