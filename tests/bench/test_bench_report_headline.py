"""The report's headline: a failed sign-off and an incomplete run are its first lines."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from harness.cli import main
from harness.gate.claim_checks import Finding
from harness.gate.signoff_sheet import markdown
from harness.rundir.reader import load_run

RUN = Path(__file__).parent / "fixtures" / "run_small"


def _run(tmp_path: Path, **meta: object) -> Path:
    run = tmp_path / "latest" / "run"
    shutil.copytree(RUN, run)
    data = json.loads((run / "run.json").read_text())
    data.update(meta)
    (run / "run.json").write_text(json.dumps(data))
    return run


def _sheet(run: Path, findings: list[Finding]) -> Path:
    sheet = run.parent / "signoff"
    sheet.mkdir()
    text = markdown(findings, load_run(run).meta, Path("docs/claims.toml"))
    (sheet / "signoff.md").write_text(text)
    return sheet


def test_failed_signoff_is_the_first_line(tmp_path: Path) -> None:
    """A NOT SIGNED OFF sheet beside the run heads summary.md and index.html."""
    run = _run(tmp_path, status="complete", cells=[])
    _sheet(run, [Finding("c", "stale", "c: stale"), Finding("d", "pass", "d: ok")])
    out = tmp_path / "out"
    assert main(["report", str(run), "--out", str(out)]) == 0
    first = (out / "summary.md").read_text().splitlines()[0]
    assert first.startswith("**❌ RELEASE NOT SIGNED OFF: NOT signed off: 1 failing findings")
    page = (out / "index.html").read_text()
    assert page.index("RELEASE NOT SIGNED OFF") < page.index("<h1>")


def test_signed_off_and_complete_run_headline(tmp_path: Path) -> None:
    """A passing sheet is shown (not in bold red); a complete run adds no warning."""
    run = _run(tmp_path, status="complete", interrupted=False, cells=[])
    sheet = _sheet(run, [Finding("d", "pass", "d: ok")])
    out = tmp_path / "out"
    assert main(["report", str(run), "--out", str(out), "--signoff", str(sheet)]) == 0
    summary = (out / "summary.md").read_text()
    assert summary.splitlines()[0].startswith("✅ release signed off")
    assert "INCOMPLETE" not in summary


def test_incomplete_run_is_headlined(tmp_path: Path) -> None:
    """An interrupted run with planned cells that have no verdict says so at the top."""
    cells = ["native/native/tiny", "node24/wasm64/huge", "chromium/wasm32/xl"]
    run = _run(tmp_path, status="running", interrupted=True, cells=cells)
    out = tmp_path / "out"
    assert main(["report", str(run), "--out", str(out)]) == 0
    first = (out / "summary.md").read_text().splitlines()[0]
    assert "INCOMPLETE RUN: run status 'running', not 'complete'; interrupted" in first
    assert "2 cells not run (node24/wasm64/huge, chromium/wasm32/xl)" in first
    assert "INCOMPLETE RUN" in (out / "index.html").read_text()


def test_missing_sheet_given_is_an_error(tmp_path: Path) -> None:
    """--signoff naming a directory without a sheet exits 2 rather than hiding the verdict."""
    run = _run(tmp_path)
    assert main(["report", str(run), "--out", str(tmp_path / "o"), "--signoff", str(tmp_path)]) == 2
