"""The report names each preset's model oracle: the project's reference dump or the harness's
numpy reference (harness/report.py, report_data.oracle_lines, report_headline.gate_view)."""

from __future__ import annotations

import html
from pathlib import Path

import pytest

from harness.cli import main
from harness.rundir.oracles import HARNESS_ORACLE
from tests.gate.gate_runs import verdict_row, write_run
from tests.gate.test_gate_compare import clean_rows
from tests.gate.test_gate_compare_oracle import DUMP_A, DUMP_B, model_rows

DUMP_A_SAID = (
    "Model oracle of small: reference dump /p/reference/small.npz (bytegpt ref/dump.py v0.1, "
    "sha256 aaaaaaaaaaaa)"
)


def _reported(tmp_path: Path, references: object) -> tuple[str, str]:
    """summary.md and index.html (unescaped) of a passing model run recording ``references``
    (none when None)."""
    extra = {"references": references} if references is not None else None
    run = write_run(tmp_path / "run", [*model_rows(), verdict_row("cell", "pass")], extra=extra)
    assert main(["report", str(run), "--out", str(tmp_path / "out")]) == 0
    out = tmp_path / "out"
    return (out / "summary.md").read_text(), html.unescape((out / "index.html").read_text())


def test_a_run_judged_against_a_dump_names_it(tmp_path: Path) -> None:
    """A green run of a project's dump says so, with its file, writer and sha256 prefix, in
    summary.md and index.html (s44 D5: neither mentioned the oracle)."""
    summary, index = _reported(tmp_path, {"small": DUMP_A})
    assert f"- {DUMP_A_SAID}" in summary.splitlines()
    assert DUMP_A_SAID.replace("Model", "model") in index


def test_a_run_without_a_dump_names_the_harness_reference(tmp_path: Path) -> None:
    """The same verdicts judged against the harness's own reference say that instead."""
    summary, index = _reported(tmp_path, None)
    assert f"- Model oracle of small: {HARNESS_ORACLE}" in summary.splitlines()
    assert f"model oracle of small: {HARNESS_ORACLE}" in index
    assert "reference dump" not in summary


def test_a_run_without_a_model_check_names_no_oracle(tmp_path: Path) -> None:
    """No model rows, no oracle line: the oracle is the model check's."""
    run = write_run(tmp_path / "run", clean_rows(1))
    assert main(["report", str(run), "--out", str(tmp_path / "out")]) == 0
    assert "oracle" not in (tmp_path / "out" / "summary.md").read_text().lower()


def test_the_gate_headline_says_the_oracle_changed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``report --base`` headlines the gate as compare does, oracle change included, and
    names BASE's oracle beside CAND's in summary.md and index.html."""
    base = write_run(
        tmp_path / "base",
        [*clean_rows(1), *model_rows()],
        extra={"references": {"small": DUMP_B}},
    )
    run = write_run(
        tmp_path / "run",
        [*clean_rows(100), *model_rows()],
        extra={"references": {"small": DUMP_A}},
    )
    assert main(["report", str(run), "--out", str(tmp_path / "out"), "--base", str(base)]) == 0
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "MODEL ORACLE DIFFERS for 1 preset(s)" in summary.splitlines()[0]
    both = (
        "small: BASE's model oracle was reference dump /p/reference/small.npz (bytegpt "
        "ref/dump.py v0.2, sha256 bbbbbbbbbbbb), CAND's reference dump "
        "/p/reference/small.npz (bytegpt ref/dump.py v0.1, sha256 aaaaaaaaaaaa)"
    )
    assert f"- Model oracle differs from BASE for {both}" in summary.splitlines()
    index = html.unescape((tmp_path / "out" / "index.html").read_text())
    assert f"model oracle differs from BASE for {both}" in index
