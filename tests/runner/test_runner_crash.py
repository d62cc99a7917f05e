"""Rows committed per cell survive a hard crash and a real Ctrl-C (runs in a subprocess)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from harness.rundir.meta import RUN_FILE
from harness.rundir.reader import read_rows
from harness.rundir.rows import RESULTS_FILE
from harness.rundir.verdict import INCOMPLETE, cell_verdicts
from tests.runner.runner_fakes import HERE, make_artifacts

REPO = HERE.parents[1]


def start(tmp_path: Path, options: str) -> tuple[subprocess.Popen[str], Path]:
    """Start ``python runner_fakes.py`` on a fake-host matrix whose smoke check does ``options``."""
    manifest = make_artifacts(tmp_path / "build")
    m = tmp_path / "m.toml"
    m.write_text(
        textwrap.dedent(
            """\
            name = "crash"
            artifacts = ["wasm32", "native"]
            presets = ["tiny", "small"]
            checks = ["smoke"]
            [hosts]
            fa = {}
            fb = {}
            [check.smoke]
            kind = "smoke"
            """
        )
        + options
    )
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "runner_fakes.py"), str(m), str(out), str(manifest)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return proc, out


def test_hard_crash_keeps_every_committed_cell(tmp_path: Path) -> None:
    """os._exit in the third cell: the first two cells' rows are on disk and readable."""
    proc, out = start(tmp_path, '"fa/wasm32/small" = "exit"\n')
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 3, err
    rows = list(read_rows(out / RESULTS_FILE))
    cells = [r.cell for r in rows if r.check == "cell" and r.subject == "verdict"]
    assert cells == ["fa/native/small", "fa/native/tiny"]
    assert all(r.status == "pass" for r in rows)
    meta = json.loads((out / RUN_FILE).read_text())
    assert meta["status"] == "running" and meta["cells_done"] == 2  # no end was written


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_finishes_writing_and_exits_128_plus_signum(
    tmp_path: Path, sig: signal.Signals, code: int
) -> None:
    """A real SIGINT (or SIGTERM, a CI cancel) mid-check: exit 128+signum, run.json interrupted
    and naming the signal, committed rows intact."""
    marker = tmp_path / "sleeping"
    proc, out = start(tmp_path, f'"fb/native/tiny" = "sleep"\nmarker = "{marker}"\n')
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "the sleeping check never started"
        time.sleep(0.05)
    proc.send_signal(sig)
    stdout, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    meta = json.loads((out / RUN_FILE).read_text())
    assert meta["interrupted"] is True and meta["exit_code"] == code
    assert meta["status"] == "interrupted" and meta["signal"] == sig.name
    rows = list(read_rows(out / RESULTS_FILE))
    verdicts = {r.cell: r.status for r in rows if r.check == "cell" and r.subject == "verdict"}
    assert len(verdicts) == 5  # four fa cells and fb/native/small
    # the interrupted cell did not finish: no verdict row, so it reads as incomplete
    assert "fb/native/tiny" not in verdicts
    assert cell_verdicts(rows).get("fb/native/tiny", (INCOMPLETE, ""))[0] == INCOMPLETE
    assert "(interrupted)" in stdout  # the summary still prints
    said = "Ctrl-C" if sig == signal.SIGINT else sig.name  # a CI cancel is not called Ctrl-C
    assert f"interrupted ({said}) during check" in stdout


def test_ctrl_c_to_the_process_group_is_an_interrupt_not_a_crash(tmp_path: Path) -> None:
    """The real CLI on real wasmtime workers; SIGINT to the whole process group, as a terminal.

    Exit 130, run.json interrupted, no ``error`` row (a worker dying of the same Ctrl-C is not
    a crash), and every finished cell's rows intact (the strict reader accepts the file).
    """
    m = tmp_path / "m.toml"
    m.write_text(
        textwrap.dedent(
            """\
            name = "sigint"
            artifacts = ["wasm32"]
            presets = ["tiny", "small"]
            checks = ["smoke", "ops", "model"]
            [hosts]
            wasmtime = {}
            [check.model]
            steps = 10
            """
        )
    )
    out = tmp_path / "run"
    manifest = REPO / "artifacts" / "build" / "manifest.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "run", "--matrix", str(m), "--out", str(out),
         "--artifacts", str(manifest)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,  # its own process group, which the "terminal" signals whole
    )  # fmt: skip
    deadline = time.monotonic() + 240
    results = out / RESULTS_FILE
    while not (results.exists() and ",cell,verdict," in results.read_text()):
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "no cell finished"
        time.sleep(0.02)
    finished = results.read_text()
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    meta = json.loads((out / RUN_FILE).read_text())
    assert meta["interrupted"] is True and meta["status"] == "interrupted"
    assert meta["exit_code"] == 130
    rows = read_rows(results)  # strict: raises on a cut line
    assert not [r for r in rows if r.status == "error"], err
    assert results.read_text().startswith(finished)  # the finished cell's rows, byte for byte
    assert [r.cell for r in rows if r.is_verdict][:1] == ["wasmtime/wasm32/small"]
    assert all(r.status == "pass" for r in rows if r.is_verdict)
