"""pyproject's runtime dependencies are what the package imports at runtime, no more, no less;
test and development tools are in dependency groups (and the noxfile installs those)."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("harness", "reference")
# Runtime dependencies the package uses without importing them, each with where it is used.
NOT_IMPORTED = {
    "pyarrow": ("harness/report.py", ".to_parquet("),  # pandas' parquet engine
    "ziglang": ("harness/build.py", '"-m", "ziglang"'),  # the compiler, run as a module
}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _pyproject() -> dict[str, object]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def imported_distributions() -> set[str]:
    """The distributions whose modules harness/ and reference/ import (AST, any depth)."""
    modules: set[str] = set()
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    modules.update(a.name.split(".")[0] for a in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    modules.add(node.module.split(".")[0])
    third_party = modules - set(sys.stdlib_module_names) - set(PACKAGES)
    owners = importlib.metadata.packages_distributions()
    return {owners[m][0].lower().replace("_", "-") for m in third_party}


def test_runtime_dependencies_are_what_the_package_imports() -> None:
    """Every import has its distribution declared, and every declared one is imported (or is
    one of the few used without an import, each checked to be used where it says)."""
    project = _pyproject()["project"]
    assert isinstance(project, dict)
    declared = {_name(r) for r in project["dependencies"]}
    assert imported_distributions() == declared - set(NOT_IMPORTED)
    for name, (path, usage) in NOT_IMPORTED.items():
        assert name in declared and usage in (REPO / path).read_text(), name


def test_test_tools_are_groups_not_runtime() -> None:
    """pytest-benchmark and nox are not runtime dependencies; the groups the noxfile installs
    carry them (tests: pytest-benchmark; typecheck: nox, for noxfile.py)."""
    data = _pyproject()
    project, groups = data["project"], data["dependency-groups"]
    assert isinstance(project, dict) and isinstance(groups, dict)
    declared = {_name(r) for r in project["dependencies"]}
    assert not declared & {"pytest-benchmark", "nox", "hypothesis", "pytest-xdist", "mypy"}
    test = {_name(r) for r in groups["test"]}
    assert {"pytest-benchmark", "pytest-xdist", "junitparser", "pyyaml"} <= test
    assert "nox>=2024.10.9" in groups["typecheck"]
    noxfile = (REPO / "noxfile.py").read_text()
    assert '_install(session, "test")' in noxfile and '_install(session, "typecheck")' in noxfile
