"""compare and report: an output path that cannot be written is exit 2 in one line, never a
traceback and exit 1 (which reads as a regression)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli import main
from tests.gate.gate_runs import bench_rows, noisy, verdict_row, write_run


def same_runs(tmp_path: Path) -> tuple[Path, Path]:
    """Two runs that pass the gate: any non-zero exit below is the output path's doing."""
    rows = [*bench_rows(noisy(1000.0, 20, 1)), verdict_row("cell", "pass")]
    return write_run(tmp_path / "base", rows), write_run(tmp_path / "cand", rows)


@pytest.mark.parametrize(
    ("flag", "where"),
    [
        ("--html", "afile"),  # an existing file named as the report's directory
        ("--html", "afile/sub"),
        ("--markdown", "afile/gate.md"),  # a file used as the Markdown's directory
        ("--markdown", "adir"),  # a directory named as the Markdown file
    ],
)
def test_compare_unwritable_output_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, where: str
) -> None:
    """One line naming the flag, the path and the OS error; exit 2; nothing compared first."""
    base, cand = same_runs(tmp_path)
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    target = tmp_path / where
    assert main(["compare", str(base), str(cand), flag, str(target)]) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert f"compare: cannot write {flag} {target}: " in captured.err
    assert "gate PASS" not in captured.out  # checked before the comparison, not after


def test_compare_writable_outputs_still_written(tmp_path: Path) -> None:
    """The check creates missing directories, as the write always did."""
    base, cand = same_runs(tmp_path)
    md = tmp_path / "new" / "deep" / "gate.md"
    assert main(["compare", str(base), str(cand), "--markdown", str(md)]) == 0
    assert "PASS" in md.read_text()


@pytest.mark.parametrize("where", ["afile", "afile/out", "/proc/nope"])
def test_report_unwritable_out_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    """``report RUN --out PATH`` that cannot be written: exit 2, one line naming PATH."""
    base, _ = same_runs(tmp_path)
    (tmp_path / "afile").write_text("x")
    target = Path(where) if where.startswith("/") else tmp_path / where
    assert main(["report", str(base), "--out", str(target)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"report: cannot write {target}: " in err
