"""``run --junit FILE``: one testcase per cell x check, read back by junitparser (a JUnit reader
CI report tools are built on) and by ElementTree; outcomes follow the rows the run wrote."""

from __future__ import annotations

import argparse
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import junitparser
import pytest

from harness.rundir.reader import read_rows
from harness.rundir.rows import RESULTS_FILE
from harness.runner import configure
from tests.runner.runner_fakes import (
    Log,
    factories,
    make_artifacts,
    run_args,
    run_with,
    use_fake_checks,
)


@pytest.fixture(autouse=True)
def fake_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    """smoke and ops run the fake check."""
    use_fake_checks(monkeypatch, "smoke", "ops")


def _matrix(
    tmp_path: Path, smoke: str = "", ops: str = "", hosts: str = "fa = {}\nfb = {}\n"
) -> Path:
    text = textwrap.dedent(
        """\
        name = "fake"
        artifacts = ["wasm32", "native"]
        presets = ["tiny", "small"]
        checks = ["smoke", "ops"]
        """
    )
    text += (
        f'[hosts]\n{hosts}[check.smoke]\nkind = "smoke"\n{smoke}[check.ops]\nkind = "ops"\n{ops}'
    )
    path = tmp_path / "m.toml"
    path.write_text(text)
    return path


def _run(tmp_path: Path, m: Path, **hosts: Any) -> tuple[int, Path, Path]:
    out, junit = tmp_path / "run", tmp_path / "reports" / "junit.xml"
    manifest = make_artifacts(tmp_path / "build")
    args = run_args(m, out, manifest, junit=junit)
    code = run_with(args, factories(Log(), **(hosts or {"fa": {}, "fb": {}})))
    return code, out, junit


def _cases(junit: Path) -> dict[str, junitparser.TestCase]:
    xml = junitparser.JUnitXml.fromfile(str(junit))
    return {f"{c.classname}::{c.name}": c for suite in xml for c in suite}


def test_one_testcase_per_cell_and_check_with_the_cause_as_message(tmp_path: Path) -> None:
    """A failing ops check is a <failure> whose message is the cause; the rest pass."""
    m = _matrix(tmp_path, ops='"fb/native/small" = "fail"\n')
    code, out, junit = _run(tmp_path, m)
    assert code == 1
    cases = _cases(junit)
    cells = [
        f"{h}/{a}/{p}"
        for h in ("fa", "fb")
        for a in ("native", "wasm32")
        for p in ("small", "tiny")
    ]
    assert set(cases) == {f"{c}::{k}" for c in cells for k in ("smoke", "ops")}
    failed = {k: c for k, c in cases.items() if not c.is_passed}
    assert list(failed) == ["fb/native/small::ops"]
    (result,) = failed["fb/native/small::ops"].result
    assert isinstance(result, junitparser.Failure)
    assert result.message == "ops:second: max_abs_err too big in fb"
    assert "ops:second fail: max_abs_err too big in fb" in (result.text or "")
    # the document's counts agree with its testcases, and each suite's time is the cell's
    root = ET.parse(junit).getroot()
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("16", "1", "0")
    walls = {r.cell: r.value for r in read_rows(out / RESULTS_FILE) if r.is_verdict}
    for suite in root.iter("testsuite"):
        assert float(suite.get("time", "nan")) == pytest.approx(
            walls[suite.get("name", "")], abs=1e-3
        )


def test_errors_and_skips_map_to_error_and_skipped(tmp_path: Path) -> None:
    """A raising check is <error>; an optional missing host and a refused artifact are <skipped>
    with their reason, for every check of the cell (those checks never ran)."""
    m = _matrix(
        tmp_path, smoke='"fa/native/tiny" = "raise"\n', hosts="fa = {}\nfb = { optional = true }\n"
    )
    code, _, junit = _run(
        tmp_path,
        m,
        fa={"cannot_load": {"wasm32": "no \x1b[31mwasm\x1b[0m here"}},
        fb={"unavailable": True},
    )
    assert code == 1
    cases = _cases(junit)
    (err,) = cases["fa/native/tiny::smoke"].result
    assert isinstance(err, junitparser.Error)
    assert err.message == "smoke:exception: RuntimeError: boom"
    assert cases["fa/native/tiny::ops"].is_passed  # ops ran after smoke raised
    for check in ("smoke", "ops"):
        (skip,) = cases[f"fb/wasm32/small::{check}"].result
        assert isinstance(skip, junitparser.Skipped)
        assert skip.message.startswith("skipped: cell:host: fb is not installed")
        (refused,) = cases[f"fa/wasm32/tiny::{check}"].result
        assert isinstance(refused, junitparser.Skipped)
        # the terminal colour codes of a host's message cannot stand in XML 1.0
        assert refused.message == "incompatible: cell:load: no \\x1b[31mwasm\\x1b[0m here"


def test_cells_a_fail_fast_run_never_started_are_skipped_as_not_run(tmp_path: Path) -> None:
    """--fail-fast stops after the first failing cell; the cells after it are skipped, not lost."""
    out, junit = tmp_path / "run", tmp_path / "j.xml"
    m = _matrix(tmp_path, ops='"fa/native/small" = "fail"\n')
    args = run_args(m, out, make_artifacts(tmp_path / "build"), junit=junit, fail_fast=True)
    assert run_with(args, factories(Log(), fa={}, fb={})) == 1
    cases = _cases(junit)
    assert len(cases) == 16
    not_run = [k for k, c in cases.items() if c.is_skipped]
    assert len(not_run) == 14 and all(
        "not run: the run stopped" in cases[k].result[0].message for k in not_run
    )


def test_unwritable_junit_path_is_exit_2_after_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A --junit path that cannot be written: the run's rows stay, exit 2 in one line."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    m = _matrix(tmp_path)
    manifest = make_artifacts(tmp_path / "build")
    args = run_args(m, tmp_path / "run", manifest, junit=blocker / "junit.xml")
    assert run_with(args, factories(Log(), fa={}, fb={})) == 2
    # stderr also carries the per-cell progress lines; the failure is one line of its own
    err = [x for x in capsys.readouterr().err.splitlines() if "--junit" in x]
    assert len(err) == 1 and err[0].startswith("tinygpt-harness run: cannot write --junit: ")
    assert str(blocker) in err[0]
    assert (tmp_path / "run" / RESULTS_FILE).exists()


def test_the_run_parser_takes_junit() -> None:
    """``run``'s real parser takes --junit FILE."""
    parser = argparse.ArgumentParser()
    configure(parser)
    args = parser.parse_args(["--matrix", "m.toml", "--out", "r", "--junit", "j.xml"])
    assert args.junit == Path("j.xml")
