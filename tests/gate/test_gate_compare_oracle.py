"""compare and the model check's oracle: a failing subject counts once, and an oracle that
differs between BASE and CAND is said (harness/gate/verdicts.py, compare_render.py, compare.py).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main
from harness.gate.verdicts import blocking_failures
from harness.rundir.oracles import HARNESS_ORACLE, ModelOracle
from harness.rundir.rows import Row, Status
from tests.gate.gate_runs import verdict_row, write_run
from tests.gate.test_gate_compare import clean_rows

DUMP_A = {"source": "/p/reference/small.npz (bytegpt ref/dump.py v0.1)", "sha256": "a" * 64}
DUMP_B = {"source": "/p/reference/small.npz (bytegpt ref/dump.py v0.2)", "sha256": "b" * 64}
ORACLE_TITLE = "Model oracle differs between BASE and CAND"


def model_rows(status: Status = "pass", subject: str = "adamw:params") -> list[Row]:
    """One model subject's three metric rows, as the model check writes them."""
    row = verdict_row("model", status, subject=subject, detail=f"{subject}: 240 elements off")
    return [
        dataclasses.replace(row, metric=m, value=v)
        for m, v in (("max_abs_err", 1e-5), ("max_rel_err", 3.5e-5), ("max_ulp", 466.0))
    ]


def runs(
    tmp_path: Path, base_refs: Any, cand_refs: Any, cand_status: Status = "pass"
) -> tuple[str, str]:
    """BASE (model rows pass) and CAND (``cand_status``) run directories with ``references``."""
    base = write_run(
        tmp_path / "base",
        [*clean_rows(1), *model_rows()],
        extra=base_refs and {"references": base_refs},
    )
    cand = write_run(
        tmp_path / "cand",
        [*clean_rows(100), *model_rows(cand_status)],
        extra=cand_refs and {"references": cand_refs},
    )
    return str(base), str(cand)


def test_one_failing_subject_is_one_failure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``adamw:params`` failing its three metric rows is one parity failure, listed once with
    its metrics (s44 D6: "3 parity/defaults/corpus failures"); the gate still fails."""
    base, cand = runs(tmp_path, None, None, cand_status="fail")
    assert main(["compare", base, cand]) == 1
    out = capsys.readouterr().out
    assert "1 parity/defaults/corpus failures" in out
    assert out.count("model:adamw:params fail") == 1
    assert "model:adamw:params fail max_abs_err, max_rel_err, max_ulp (adamw:params: 240" in out


def test_failing_subjects_in_two_cells_are_two_failures() -> None:
    """The same subject failing in two cells is two failures, each once."""
    rows = [
        *model_rows("fail"),
        *(dataclasses.replace(r, preset="tiny") for r in model_rows("fail")),
    ]
    found = blocking_failures(rows)
    assert [f.split(" (")[0] for f in found] == [
        "native/native/small model:adamw:params fail max_abs_err, max_rel_err, max_ulp",
        "native/native/tiny model:adamw:params fail max_abs_err, max_rel_err, max_ulp",
    ]


def test_another_reference_dump_is_said_and_gates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """BASE and CAND judged against two dumps (sha256 differ): compare names both, and the exit
    code is the gate's own (0: nothing else changed)."""
    base, cand = runs(tmp_path, {"small": DUMP_A}, {"small": DUMP_B})
    md = tmp_path / "gate.md"
    assert main(["compare", base, cand, "--markdown", str(md)]) == 0
    out = " ".join(capsys.readouterr().out.split())  # rich wraps long lines
    assert ORACLE_TITLE in out and "MODEL ORACLE DIFFERS for 1 preset(s)" in out
    assert (
        "small: BASE's model oracle was reference dump /p/reference/small.npz (bytegpt "
        "ref/dump.py v0.1, sha256 aaaaaaaaaaaa), CAND's reference dump /p/reference/small.npz "
        "(bytegpt ref/dump.py v0.2, sha256 bbbbbbbbbbbb)"
    ) in out
    assert ORACLE_TITLE in md.read_text()


def test_a_dump_against_the_harness_reference_is_said(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """BASE without a dump (the harness's numpy reference), CAND with one: said."""
    base, cand = runs(tmp_path, None, {"small": DUMP_A})
    assert main(["compare", base, cand]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"small: BASE's model oracle was {HARNESS_ORACLE}, CAND's reference dump" in out


def test_the_same_oracle_is_not_said(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The same dump in both runs (or none in either): no oracle note."""
    base, cand = runs(tmp_path, {"small": DUMP_A}, {"small": DUMP_A})
    assert main(["compare", base, cand]) == 0
    assert ORACLE_TITLE not in capsys.readouterr().out


def test_a_regression_with_another_oracle_still_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A model failure in CAND fails the gate even when the dump changed too: the oracle note
    explains, it never excuses."""
    base, cand = runs(tmp_path, {"small": DUMP_A}, {"small": DUMP_B}, cand_status="fail")
    assert main(["compare", base, cand]) == 1
    out = " ".join(capsys.readouterr().out.split())
    assert "gate FAIL" in out and "MODEL ORACLE DIFFERS for 1 preset(s)" in out


def test_an_oracle_describes_itself() -> None:
    """A dump names its file, writer and sha256 prefix; no dump is the harness's reference."""
    assert ModelOracle().describe() == HARNESS_ORACLE
    assert ModelOracle("d.npz", "c" * 64).describe() == "reference dump d.npz (sha256 cccccccccccc)"
