"""The pytest plugin: ``pytest --harness-matrix M`` on real hosts, against ``tinygpt-harness run``.

Each test runs pytest in a child process from the repository (so pyproject's ``filterwarnings =
error`` and ``--strict-markers`` apply, as for a user) over a small matrix whose outcomes are
real: the native host passes smoke; a UI surface with a wrong learning rate fails defaults; the
native host refuses wasm32 (incompatible); Node pinned to a version it is not errors.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.artifact import load_manifest
from harness.build import DEFAULT_OUT, MANIFEST, build_all, manifest_is_fresh
from harness.cli import main
from harness.pytest_plugin import PLUGIN_NAME
from harness.rundir.meta import RUN_FILE
from harness.rundir.reader import read_rows
from harness.rundir.rows import RESULTS_FILE, Row
from reference.defaults import DEFAULTS

REPO = Path(__file__).resolve().parents[2]
CELLS = ("native/native/tiny", "native/wasm32/tiny", "node/native/tiny", "node/wasm32/tiny")
EXPECTED = {
    "native/native/tiny::smoke": "passed",
    "native/native/tiny::defaults": "failure",
    "native/wasm32/tiny::smoke": "skipped",
    "native/wasm32/tiny::defaults": "skipped",
    "node/wasm32/tiny::smoke": "error",
    "node/wasm32/tiny::defaults": "error",
}


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh artifact manifest: the repo's build if current, else a new build."""
    if manifest_is_fresh(DEFAULT_OUT):
        return DEFAULT_OUT / MANIFEST
    out = tmp_path_factory.mktemp("build")
    build_all(out)
    return out / MANIFEST


@pytest.fixture
def matrix(tmp_path: Path) -> Path:
    """The small matrix above, with a UI surface that states learning_rate 10x too high."""
    ui = {**DEFAULTS.as_dict(), "learning_rate": DEFAULTS.learning_rate * 10}
    (tmp_path / "ui.json").write_text(json.dumps(ui))
    path = tmp_path / "plugin.toml"
    path.write_text(
        textwrap.dedent(
            """\
            name = "plugin"
            artifacts = ["native", "wasm32"]
            presets = ["tiny"]
            checks = ["smoke", "defaults"]
            [hosts]
            native = {}
            node = { version = "99" }  # the system Node is not 99: its cells error
            [[exclude]]
            host = "node"
            artifact = "native"
            [[check.defaults.surfaces]]
            name = "ui"
            path = "ui.json"
            format = "json"
            """
        )
    )
    return path


def _pytest(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=REPO, capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONWARNINGS": ""},
    )  # fmt: skip


def _junit(path: Path) -> dict[str, str]:
    """``{cell::check: outcome}`` of a pytest --junitxml file (passed/failure/error/skipped)."""
    out = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        child = next((c for c in case if c.tag in ("failure", "error", "skipped")), None)
        # pytest's classname is the node id's parents, dotted: ...plugin.toml.host/artifact/preset
        cell = case.get("classname", "").rsplit(".", 1)[-1]
        out[f"{cell}::{case.get('name')}"] = "passed" if child is None else child.tag
    return out


def _same(row: Row) -> tuple[object, ...]:
    """A row without what differs between two runs of the same cells (the cell's wall time)."""
    return (*(getattr(row, c) for c in ("host", "host_version", "artifact", "artifact_sha256",
            "preset", "check", "subject", "status", "metric", "unit", "detail")),
            None if row.is_verdict else row.value)  # fmt: skip


def _rows(run: Path) -> list[tuple[object, ...]]:
    return [_same(r) for r in read_rows(run / RESULTS_FILE)]


def _run_cli(tmp_path: Path, matrix: Path, manifest: Path) -> list[tuple[object, ...]]:
    out = tmp_path / "cli-run"
    code = main(["run", "--matrix", str(matrix), "--out", str(out), "--artifacts", str(manifest)])
    assert code == 1  # the defaults failure and the Node errors
    return _rows(out)


@pytest.mark.slow
def test_items_outcomes_and_rows_are_those_of_run(
    tmp_path: Path, matrix: Path, manifest: Path
) -> None:
    """One item per cell x check, ids host/artifact/preset::check; fail -> failed, error ->
    error, incompatible -> skipped with the reason; the run directory's rows are run's rows."""
    out, junit = tmp_path / "out", tmp_path / "junit.xml"
    proc = _pytest(f"--harness-matrix={matrix}", f"--harness-out={out}",
                   f"--harness-artifacts={manifest}", f"--junitxml={junit}", "-rs")  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert _junit(junit) == EXPECTED
    assert "1 failed, 1 passed, 2 skipped, 2 errors" in proc.stdout
    assert (
        "expected 0.0003, found 0.0029999999999999996" in proc.stdout
    )  # the cause is the failure message
    assert "incompatible: cell:load:" in proc.stdout  # the skip reason
    assert "the matrix pins node to version 99" in proc.stdout
    meta = json.loads((out / RUN_FILE).read_text())
    assert meta["status"] == "complete"
    assert meta["verdicts"] == {"error": 1, "fail": 1, "incompatible": 1, "skipped": 0, "pass": 0}
    assert _rows(out) == _run_cli(tmp_path, matrix, manifest)


@pytest.mark.slow
def test_k_runs_only_the_selected_checks(tmp_path: Path, matrix: Path, manifest: Path) -> None:
    """-k smoke: only the smoke items; the cells run smoke alone, as `run --checks smoke`."""
    out = tmp_path / "out"
    proc = _pytest(f"--harness-matrix={matrix}", f"--harness-out={out}",
                   f"--harness-artifacts={manifest}", "-k", "smoke and native/")  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed, 1 skipped, 4 deselected" in proc.stdout
    rows = list(read_rows(out / RESULTS_FILE))
    assert {r.check for r in rows} == {"smoke", "cell"}
    assert {r.cell for r in rows if r.is_verdict} == {"native/native/tiny", "native/wasm32/tiny"}


@pytest.mark.slow
def test_x_stops_at_the_first_failure_and_says_which_cells_did_not_run(
    tmp_path: Path, matrix: Path, manifest: Path
) -> None:
    """-x: pytest stops after the defaults failure; run.json lists the cells never run."""
    out = tmp_path / "out"
    proc = _pytest(f"--harness-matrix={matrix}", f"--harness-out={out}",
                   f"--harness-artifacts={manifest}", "-x")  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "1 failed, 1 passed" in proc.stdout
    meta = json.loads((out / RUN_FILE).read_text())
    assert meta["cells"] == ["native/native/tiny"]
    assert meta["stopped_early"] == ["native/wasm32/tiny", "node/wasm32/tiny"]


@pytest.mark.slow
def test_xdist_workers_write_shards_merged_into_run_rows(
    tmp_path: Path, matrix: Path, manifest: Path
) -> None:
    """-n 2: the same outcomes; each worker's shard is merged into the run directory, whose
    rows are run's rows (a cell's checks stayed on one worker: loadscope)."""
    out, junit = tmp_path / "out", tmp_path / "junit.xml"
    proc = _pytest(f"--harness-matrix={matrix}", f"--harness-out={out}", "-n", "2", "-v",
                   f"--harness-artifacts={manifest}", f"--junitxml={junit}")  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert _junit(junit) == EXPECTED
    assert "scheduling tests via LoadScopeScheduling" in proc.stdout  # -n's "load", scoped
    meta = json.loads((out / RUN_FILE).read_text())
    assert meta["shard"]["merged"] == [1, 2] and meta["status"] == "complete"
    assert sorted(meta["cells"]) == sorted(c for c in CELLS if c != "node/native/tiny")

    # A cell whose artifact the host refuses (can_load) is decided before the host is probed:
    # its rows carry the host's version only if an earlier cell of the same process probed it.
    # Which cells share a worker is xdist's choice, so that one field is left out here.
    def shardless(rows: list[tuple[object, ...]]) -> list[tuple[object, ...]]:
        return sorted(((r[0], "", *r[2:]) if "incompatible" in r else r for r in rows), key=repr)

    assert shardless(_rows(out)) == shardless(_run_cli(tmp_path, matrix, manifest))


def test_a_bad_matrix_is_a_usage_error_at_its_line_and_nothing_is_collected(
    tmp_path: Path, manifest: Path
) -> None:
    """A typo in the matrix: exit 4 (usage), one error naming FILE:LINE, no test collected."""
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\nartifacts = ["native"]\npresets = ["tiny"]\n'
                   'checks = ["smoke"]\n[hosts]\nnaitve = {}\n')  # fmt: skip
    proc = _pytest(f"--harness-matrix={bad}", f"--harness-artifacts={manifest}",
                   f"--harness-out={tmp_path / 'out'}")  # fmt: skip
    assert proc.returncode == pytest.ExitCode.USAGE_ERROR, proc.stdout + proc.stderr
    assert f"ERROR: --harness-matrix: {bad}:6: " in proc.stderr
    assert "naitve" in proc.stderr
    assert "collected" not in proc.stdout and not (tmp_path / "out").exists()


def test_a_bad_project_profile_is_blamed_on_harness_project(tmp_path: Path, manifest: Path) -> None:
    """A bad profile under --harness-project: the usage error names --harness-project and the
    profile's FILE:LINE, not --harness-matrix (whose file is fine)."""
    project = tmp_path / "proj"
    project.mkdir()
    (project / "harness.toml").write_text('[project]\nname = "p"\n\n[reference]\ntimeout_s = 5\n')
    m = tmp_path / "m.toml"
    m.write_text('name = "ok"\nartifacts = ["native"]\npresets = ["tiny"]\n'
                 'checks = ["smoke"]\n[hosts]\nnative = {}\n')  # fmt: skip
    proc = _pytest(f"--harness-matrix={m}", f"--harness-artifacts={manifest}",
                   f"--harness-out={tmp_path / 'out'}", f"--harness-project={project}")  # fmt: skip
    assert proc.returncode == pytest.ExitCode.USAGE_ERROR, proc.stdout + proc.stderr
    assert f"ERROR: --harness-project: {project / 'harness.toml'}:4: " in proc.stderr
    assert "--harness-matrix:" not in proc.stderr


def test_the_plugin_is_inert_without_harness_matrix(pytestconfig: pytest.Config) -> None:
    """This very suite runs with the entry point loaded and the matrix plugin not registered."""
    assert pytestconfig.pluginmanager.has_plugin("tinygpt_harness")  # the pytest11 entry point
    assert pytestconfig.pluginmanager.get_plugin(PLUGIN_NAME) is None
    assert pytestconfig.getoption("harness_matrix") is None
    proc = _pytest("--collect-only", "-q", "tests/runner/test_runner_verdict.py")
    without = _pytest("--collect-only", "-q", "-p", "no:tinygpt_harness",
                      "tests/runner/test_runner_verdict.py")  # fmt: skip
    assert proc.returncode == 0 and without.returncode == 0

    def ids(stdout: str) -> list[str]:  # the summary line carries a time; the ids do not
        return [line for line in stdout.splitlines() if "::" in line]

    # every test of the file, counted from its source, not restated
    tests = (Path(__file__).parents[1] / "runner" / "test_runner_verdict.py").read_text()
    assert ids(proc.stdout) == ids(without.stdout)
    assert len(ids(proc.stdout)) == tests.count("\ndef test_")


@pytest.mark.slow
def test_a_project_profile_s_artifacts_run_under_the_plugin(tmp_path: Path, manifest: Path) -> None:
    """--harness-project: a profile's own ``[artifacts.mine]`` (a copy of the native .so, no
    manifest at all) is what the matrix's cells run, as with ``run --project``."""
    so = load_manifest(manifest)["native"].path
    project = tmp_path / "proj"
    (project / "build").mkdir(parents=True)
    shutil.copy(so, project / "build" / so.name)
    (project / "harness.toml").write_text(
        f'[project]\nname = "mine"\n\n[artifacts.mine]\nformat = "native"\n'
        f'path = "build/{so.name}"\n'
    )
    m = tmp_path / "m.toml"
    m.write_text('name = "proj"\nartifacts = ["mine"]\npresets = ["tiny"]\nchecks = ["smoke"]\n'
                 "[hosts]\nnative = {}\n")  # fmt: skip
    out = tmp_path / "out"
    proc = _pytest(f"--harness-matrix={m}", f"--harness-out={out}",
                   f"--harness-artifacts={tmp_path / 'none.json'}",
                   f"--harness-project={project}")  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout
    assert {r.cell for r in read_rows(out / RESULTS_FILE) if r.is_verdict} == {"native/mine/tiny"}
