"""Run-directory robustness: --resume, a full disk, an unwritable --out (fake hosts)."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from harness.rundir import writer as writer_module
from harness.rundir.meta import RUN_FILE
from harness.rundir.reader import read_rows, read_run
from harness.rundir.rows import RESULTS_FILE
from tests.runner.runner_fakes import Log, factories, make_artifacts, run_args, run_with
from tests.runner.test_runner_run import fake_checks as fake_checks
from tests.runner.test_runner_run import manifest as manifest
from tests.runner.test_runner_run import matrix

PREFIX = "tinygpt-harness run:"


def _errors(err: str) -> list[str]:
    """The error lines of stderr (the progress lines of the cells that ran go there too)."""
    return [line for line in err.splitlines() if line.startswith(PREFIX)]


def _interrupted_run(tmp_path: Path, manifest: Path) -> tuple[Path, Path, bytes]:
    """A complete run cut back to 3 finished cells + a partial 4th + half a line, "interrupted".

    Returns (matrix, run dir, the bytes of the 3 finished cells as recorded).
    """
    m = matrix(tmp_path)
    out = tmp_path / "run"
    assert run_with(run_args(m, out, manifest), factories(Log(), fa={}, fb={})) == 0
    lines = (out / RESULTS_FILE).read_bytes().splitlines(keepends=True)
    verdict_at = [i for i, line in enumerate(lines) if b",cell,verdict," in line]
    finished = b"".join(lines[: verdict_at[2] + 1])
    partial = lines[verdict_at[2] + 1]  # the 4th cell's first row, without its verdict
    (out / RESULTS_FILE).write_bytes(finished + partial + lines[verdict_at[2] + 2][:20])
    meta = json.loads((out / RUN_FILE).read_text())
    meta.update(status="interrupted", interrupted=True, exit_code=130)
    (out / RUN_FILE).write_text(json.dumps(meta))
    return m, out, finished


def test_resume_finishes_the_run_keeping_the_recorded_rows(tmp_path: Path, manifest: Path) -> None:
    """--resume re-runs the unfinished cells only; the finished cells' bytes are kept as is."""
    m, out, finished = _interrupted_run(tmp_path, manifest)
    log = Log()
    code = run_with(run_args(m, None, manifest, resume=out), factories(log, fa={}, fb={}))
    assert code == 0
    assert (out / RESULTS_FILE).read_bytes().startswith(finished)
    rows = read_rows(out / RESULTS_FILE)  # strict: no cut line, no stray partial rows
    cells = [r.cell for r in rows if r.is_verdict]
    assert len(cells) == len(set(cells)) == 8
    assert sum(1 for r in rows if not r.is_verdict) == 2 * 8  # smoke + ops per cell, once
    meta = json.loads((out / RUN_FILE).read_text())
    assert meta["status"] == "complete" and meta["interrupted"] is False
    assert meta["cells_done"] == 8 and len(meta["resumed_at"]) == 1
    assert sum(1 for e in log.events if e[0] == "load") < 4  # the kept cells were not re-run


def _resume_refused(tmp_path: Path, manifest: Path, m: Path, out: Path) -> str:
    before = (out / RESULTS_FILE).read_bytes()
    code = run_with(run_args(m, None, manifest, resume=out), factories(Log(), fa={}, fb={}))
    assert code == 2
    assert (out / RESULTS_FILE).read_bytes() == before  # a refusal touches nothing
    return str(json.loads((out / RUN_FILE).read_text())["status"])


def test_resume_refuses_another_build(
    tmp_path: Path, manifest: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An artifact whose sha256 differs from the run's is another build: exit 2, one line."""
    m, out, _ = _interrupted_run(tmp_path, manifest)
    other = make_artifacts(tmp_path / "other", salt="rebuilt")
    assert _resume_refused(tmp_path, other, m, out) == "interrupted"
    (err,) = _errors(capsys.readouterr().err)
    assert "another build of" in err


def test_resume_refuses_another_matrix(
    tmp_path: Path, manifest: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A matrix whose sha256 differs from the run's: exit 2, one line naming both."""
    m, out, _ = _interrupted_run(tmp_path, manifest)
    m.write_text(m.read_text() + "# edited\n")
    _resume_refused(tmp_path, manifest, m, out)
    (err,) = _errors(capsys.readouterr().err)
    assert "another matrix" in err


def test_resume_refuses_another_oracle(
    tmp_path: Path, manifest: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """run.json records each preset's model config; a resume under another (a project preset
    redefined, or another --project) is refused: exit 2, one line naming the presets."""
    m, out, _ = _interrupted_run(tmp_path, manifest)
    meta = json.loads((out / RUN_FILE).read_text())
    preset = next(iter(meta["presets"]))
    meta["presets"][preset]["n_embd"] *= 2
    (out / RUN_FILE).write_text(json.dumps(meta))
    _resume_refused(tmp_path, manifest, m, out)
    (err,) = _errors(capsys.readouterr().err)
    assert "another oracle" in err and "presets" in err


def test_resume_refuses_a_complete_run(
    tmp_path: Path, manifest: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Resuming a complete run is refused: exit 2."""
    m = matrix(tmp_path)
    out = tmp_path / "run"
    assert run_with(run_args(m, out, manifest), factories(Log(), fa={}, fb={})) == 0
    assert _resume_refused(tmp_path, manifest, m, out) == "complete"
    assert "already complete" in capsys.readouterr().err


def test_disk_full_mid_row_exits_2_and_keeps_whole_rows(
    tmp_path: Path,
    manifest: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """ENOSPC half-way through a cell's rows: exit 2, one line, file ends with a whole row.

    The writer's one write call is made to put half its bytes on disk and then fail with
    ENOSPC, as a full filesystem does; no root or tmpfs is needed.
    """
    calls = {"n": 0}

    def full_disk(fd: int, data: memoryview) -> int:
        calls["n"] += 1
        if calls["n"] < 4:  # header, then two cells fit
            return os.write(fd, data)
        if calls["n"] == 4:
            os.write(fd, data[: len(data) // 2])  # half of the third cell lands, mid-row
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(writer_module, "_write", full_disk)
    m = matrix(tmp_path)
    out = tmp_path / "run"
    code = run_with(run_args(m, out, manifest), factories(Log(), fa={}, fb={}))
    assert code == 2
    captured = capsys.readouterr().err
    (err,) = _errors(captured)
    assert "results.csv: No space left on device (ENOSPC)" in err
    assert "Traceback" not in captured
    assert (out / RESULTS_FILE).read_bytes().endswith(b"\n")
    rows = read_rows(out / RESULTS_FILE)  # strict: raises on a cut line
    assert [r.cell for r in rows if r.is_verdict] == ["fa/native/small", "fa/native/tiny"]
    meta = json.loads((out / RUN_FILE).read_text())
    assert meta["status"] == "failed" and meta["exit_code"] == 2 and "ENOSPC" in meta["problem"]
    assert read_run(out).problems == ()


def test_unwritable_out_exits_2_with_one_line(
    tmp_path: Path, manifest: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--out under a regular file cannot be created: exit 2, one line, no traceback.

    A path under a regular file, not chmod: the tests run as root, where chmod stops no write.
    """
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    code = run_with(
        run_args(matrix(tmp_path), blocker / "sub", manifest), factories(Log(), fa={}, fb={})
    )
    assert code == 2
    captured = capsys.readouterr().err
    (err,) = _errors(captured)
    assert "cannot write the run directory" in err and "a_file" in err
    assert "Traceback" not in captured
