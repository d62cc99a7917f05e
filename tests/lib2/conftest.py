"""Fixtures of the lib2 tests: one native build per session, loaded through ctypes."""

from __future__ import annotations

import ctypes
from pathlib import Path

import pytest

from harness.build_lib2 import build_lib2_native
from tests.lib2.lib2_native import load


@pytest.fixture(scope="session")
def lib2_so(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """lib2 built natively (zig cc) into a temporary directory."""
    return build_lib2_native(tmp_path_factory.mktemp("lib2"))


@pytest.fixture(scope="session")
def lib2(lib2_so: Path) -> ctypes.CDLL:
    """The native lib2, with every export's signature declared."""
    return load(lib2_so)
