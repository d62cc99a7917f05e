"""``run --project`` with a profile ``[reference]``: the runner's side of the oracle dump (when
its command runs, what an interrupt during it leaves, --resume and the dump, the [check.model]
options a dump fixes), on fake hosts with the fake check standing in for ``model``."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from harness.cli import command_parser
from harness.rundir.meta import RUN_FILE
from harness.rundir.reader import read_rows
from harness.rundir.rows import RESULTS_FILE
from reference.dump import main as dump_main
from tests.project.test_project_reference import process_alive
from tests.runner import runner_fakes as fakes

REPO = fakes.HERE.parents[1]
MATRIX = """\
name = "fake-reference"
artifacts = ["native"]
presets = ["tiny"]
checks = ["smoke", "model"]
[hosts]
fa = {}
fb = {}
[check.smoke]
kind = "smoke"
[check.model]
kind = "model"
"""


def _run(args: argparse.Namespace) -> int:
    """``run`` with ``args`` on fake hosts fa and fb."""
    return fakes.run_with(args, fakes.factories(fakes.Log(), fa={}, fb={}))


@pytest.fixture(autouse=True)
def fake_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    """smoke and model run the fake check (the dump is made and loaded all the same)."""
    fakes.use_fake_checks(monkeypatch, "smoke", "model")


def _project(root: Path, reference: str) -> Path:
    """A project directory whose profile has ``[reference]`` ``reference``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "harness.toml").write_text(f'[project]\nname = "p"\n\n[reference]\n{reference}')
    return root


def _copying_project(tmp_path: Path) -> tuple[Path, Path]:
    """A project whose command copies its ``src.npz`` to ``{out}`` (the "writer" is that file),
    with a dump of tiny (1 sequence, 2 steps) in it; returns (project, src.npz)."""
    project = _project(tmp_path / "proj", 'command = ["{python}", "copy.py", "{out}"]\n')
    (project / "copy.py").write_text("import shutil, sys\nshutil.copy('src.npz', sys.argv[1])\n")
    src = project / "src.npz"
    assert dump_main(["--preset", "tiny", "--out", str(src), "--batch", "1", "--steps", "2"]) == 0
    return project, src


@pytest.mark.corpus
def test_a_check_model_option_the_dump_fixes_is_refused_at_its_matrix_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``[check.model] steps = 5`` against a 2-step dump: exit 2 at the matrix's ``steps`` line,
    saying what the dump's number counts."""
    project, _ = _copying_project(tmp_path)
    m = tmp_path / "m.toml"
    m.write_text(MATRIX + "steps = 5\n")
    args = fakes.run_args(
        m, tmp_path / "run", fakes.make_artifacts(tmp_path / "build"), project=project
    )
    assert _run(args) == 2
    err = capsys.readouterr().err
    assert f"{m}:12: [check.model] steps = 5, but the reference dump of preset tiny (" in err
    assert ") holds 2 trajectory steps: with a dump, the dump decides it" in err


def _interrupted_run(tmp_path: Path) -> tuple[Path, Path, Path, Path, Path]:
    """A run of the copying project (:func:`_copying_project`), then marked interrupted after
    its first cell (its second cell's rows dropped), as a Ctrl-C there would have left it.
    Returns (project, its src.npz, the matrix, the manifest, the run directory)."""
    project, src = _copying_project(tmp_path)
    return (project, src, *_interrupted_run_of(tmp_path, project))


def _interrupted_run_of(tmp_path: Path, project: Path) -> tuple[Path, Path, Path]:
    """A run of ``project``, marked interrupted after its first cell: (matrix, manifest, run)."""
    m = tmp_path / "m.toml"
    m.write_text(MATRIX)
    manifest = fakes.make_artifacts(tmp_path / "build")
    out = tmp_path / "run"
    assert _run(fakes.run_args(m, out, manifest, project=project)) == 0
    _mark_interrupted(out)
    return m, manifest, out


def _mark_interrupted(out: Path) -> None:
    """The run in ``out`` as a Ctrl-C after its first cell would have left it."""
    lines = (out / RESULTS_FILE).read_bytes().splitlines(keepends=True)
    first = next(i for i, line in enumerate(lines) if b",cell,verdict," in line)
    (out / RESULTS_FILE).write_bytes(b"".join(lines[: first + 1]))
    meta = json.loads((out / RUN_FILE).read_text())
    meta.update(status="interrupted", interrupted=True, exit_code=130)
    (out / RUN_FILE).write_text(json.dumps(meta))


@pytest.mark.corpus
def test_a_resume_whose_dump_file_changed_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A project naming its dump by ``dump`` (no command): the file is rewritten between the
    run and its --resume, which is refused naming the preset, the file and both sha256s, not
    "give the same --project" (the project is the same; its file is not)."""
    project = _project(tmp_path / "proj", 'dump = "d.npz"\n')
    dump = project / "d.npz"
    assert dump_main(["--preset", "tiny", "--out", str(dump), "--batch", "1", "--steps", "2"]) == 0
    was = hashlib.sha256(dump.read_bytes()).hexdigest()
    m, manifest, out = _interrupted_run_of(tmp_path, project)
    assert dump_main(["--preset", "tiny", "--out", str(dump), "--batch", "1", "--steps", "3"]) == 0
    now = hashlib.sha256(dump.read_bytes()).hexdigest()
    capsys.readouterr()
    assert _run(fakes.run_args(m, None, manifest, project=project, resume=out)) == 2
    err = capsys.readouterr().err
    assert f"the reference dump of preset 'tiny' ({dump}" in err
    assert f"changed since the run (sha256 {now}, was {was}): restore it" in err
    assert "--project" not in err


@pytest.mark.corpus
def test_a_resume_whose_command_writes_another_dump_leaves_the_run_untouched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An interrupted run, then its writer changes: --resume is refused naming both sha256s
    and the writer (not --project), and the run's kept dump, rows and run.json keep their
    bytes; with the writer back as it was, the resume finishes the run."""
    project, src, m, manifest, out = _interrupted_run(tmp_path)
    kept = out / "reference" / "tiny.npz"
    before = {p: p.read_bytes() for p in (kept, out / RESULTS_FILE, out / RUN_FILE)}
    original = src.read_bytes()
    assert dump_main(["--preset", "tiny", "--out", str(src), "--batch", "1", "--steps", "3"]) == 0
    resume = fakes.run_args(m, None, manifest, project=project, resume=out)
    assert _run(resume) == 2
    err = capsys.readouterr().err
    assert "--resume refused: the reference command now writes a different dump of preset" in err
    assert "the writer changed or is not deterministic" in err and "--project" not in err
    assert {p: p.read_bytes() for p in before} == before
    assert sorted(p.name for p in kept.parent.iterdir()) == ["tiny.npz"]  # no scratch left

    src.write_bytes(original)
    assert _run(resume) == 0
    assert kept.read_bytes() == before[kept]
    assert len([r for r in read_rows(out / RESULTS_FILE) if r.is_verdict]) == 2


def test_resume_runs_the_cells_a_fail_fast_run_stopped_before(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A --fail-fast run that stopped after its first (failing) cell is complete, with the rest
    under ``stopped_early``: --resume runs exactly those, keeps the failed cell as it was, and
    run.json no longer lists them; resuming the now complete run is refused, saying a new run
    is needed to re-run a cell."""
    m = tmp_path / "m.toml"
    m.write_text(MATRIX.replace('kind = "smoke"\n', 'kind = "smoke"\n"fa/native/tiny" = "fail"\n'))
    manifest = fakes.make_artifacts(tmp_path / "build")
    out = tmp_path / "run"
    assert _run(fakes.run_args(m, out, manifest, fail_fast=True)) == 1
    meta = json.loads((out / RUN_FILE).read_text())
    assert meta["status"] == "complete" and meta["stopped_early"] == ["fb/native/tiny"]
    failed = (out / RESULTS_FILE).read_bytes()

    resume = fakes.run_args(m, None, manifest, resume=out)
    assert _run(resume) == 1  # the kept cell still failed
    verdicts = {r.cell: r.status for r in read_rows(out / RESULTS_FILE) if r.is_verdict}
    assert verdicts == {"fa/native/tiny": "fail", "fb/native/tiny": "pass"}
    assert (out / RESULTS_FILE).read_bytes().startswith(failed)
    meta = json.loads((out / RUN_FILE).read_text())
    assert meta["status"] == "complete" and "stopped_early" not in meta

    capsys.readouterr()
    assert _run(resume) == 2
    assert "a new run with --out is needed" in capsys.readouterr().err


DRIVER = """\
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import runner_fakes as f
for kind in ("smoke", "model"):
    f.checks.REGISTRY[kind] = "runner_fakes"
m, out, manifest, project = map(Path, sys.argv[2:6])
if sys.argv[6:] == ["resume"]:
    args = f.run_args(m, None, manifest, project=project, resume=out)
else:
    args = f.run_args(m, out, manifest, project=project)
sys.exit(f.run_with(args, f.factories(f.Log(), fa={}, fb={})))
"""


def _hang(project: Path, pids: Path) -> None:
    """Make ``project``'s command a shell script that starts a child and waits on it, having
    written both pids to ``pids``."""
    (project / "harness.toml").write_text(
        '[project]\nname = "p"\n\n[reference]\ncommand = ["sh", "hang.sh", "{out}"]\n'
    )
    (project / "hang.sh").write_text(
        textwrap.dedent(f"""\
            sleep 600 &
            echo $$ $! > {pids}.tmp && mv {pids}.tmp {pids}
            wait
            """)
    )


def _signal_the_command(
    project: Path, m: Path, out: Path, manifest: Path, sig: signal.Signals, *resume: str
) -> tuple[int, str, tuple[int, int]]:
    """Start ``run`` (in a child Python, fake hosts) whose [reference] command hangs, send
    ``sig`` once the command runs; return the exit code, stderr and the command's two pids."""
    pids = project.parent / "pids"
    _hang(project, pids)
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    driver = [sys.executable, "-c", DRIVER, str(fakes.HERE)]
    proc = subprocess.Popen(
        [*driver, str(m), str(out), str(manifest), str(project), *resume],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not pids.exists():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "the reference command never started"
        time.sleep(0.05)
    shell, sleeper = map(int, pids.read_text().split())
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    deadline = time.monotonic() + 10
    while (process_alive(shell) or process_alive(sleeper)) and time.monotonic() < deadline:
        time.sleep(0.05)  # SIGKILL lands asynchronously; init reaps the orphans
    return proc.returncode, err, (shell, sleeper)


@pytest.mark.parametrize(("sig", "code", "said"), [(signal.SIGTERM, 143, "SIGTERM"),
                                                   (signal.SIGINT, 130, "Ctrl-C")])  # fmt: skip
def test_a_signal_during_the_reference_command_stops_its_group_and_exits_128_plus_signum(
    tmp_path: Path, sig: signal.Signals, code: int, said: str
) -> None:
    """SIGTERM (a CI cancel) or SIGINT while the [reference] command runs: the command and its
    own child die with the harness, which exits 128+signum with one line saying there is
    nothing to resume (no run.json yet), and no traceback."""
    project = _project(tmp_path / "proj", "")
    m = tmp_path / "m.toml"
    m.write_text(MATRIX)
    out = tmp_path / "run"
    manifest = fakes.make_artifacts(tmp_path / "build")
    got, err, pids = _signal_the_command(project, m, out, manifest, sig)
    assert got == code, err
    assert err.strip() == (
        f"tinygpt-harness run: interrupted ({said}) before any cell ran; no run.json was "
        f"written in {out}, so there is nothing to resume: run the same command again"
    )
    assert not any(map(process_alive, pids)), f"the command {pids} outlived the harness"
    assert not (out / RUN_FILE).exists()


@pytest.mark.corpus
def test_a_signal_during_a_resumes_reference_command_leaves_the_run_resumable(
    tmp_path: Path,
) -> None:
    """SIGTERM while a --resume's command runs: exit 143, the command's group killed, and the
    run directory exactly as it was (its kept dump too), so the line says to resume again."""
    project, _, m, manifest, out = _interrupted_run(tmp_path)
    before = {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    got, err, pids = _signal_the_command(project, m, out, manifest, signal.SIGTERM, "resume")
    assert got == 143, err
    assert err.strip() == (
        f"tinygpt-harness run: interrupted (SIGTERM) before any cell ran; the run in {out} is "
        f"as it was: `tinygpt-harness run --matrix {m} --project {project} --resume {out}` "
        "finishes it"
    )
    assert not any(map(process_alive, pids)), f"the command {pids} outlived the harness"
    assert {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()} == before


def test_run_help_says_what_resume_does_with_a_fail_fast_run() -> None:
    """``run --help`` says --resume runs a --fail-fast run's stopped_early cells and never
    re-runs a cell with a verdict (that needs a new run)."""
    text = " ".join(command_parser("run")[1].format_help().split())
    assert "or the stopped_early cells of a --fail-fast run" in text
    assert "never re-run: that needs a new run with --out" in text
