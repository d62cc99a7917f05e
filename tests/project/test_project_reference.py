"""A profile's ``[reference]``: the model check's oracle is a dump that a command writes or a
file names (docs/profiles.md, docs/reference-dump.md)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from harness.build import DEFAULT_OUT, MANIFEST, manifest_is_fresh
from harness.cli import main
from harness.profile import ProfileError, load_profile
from harness.project.reference import reference_dumps, wait_exited
from harness.rundir.meta import RUN_FILE
from harness.rundir.reader import read_rows
from harness.rundir.rows import RESULTS_FILE
from reference.dump import ReferenceDump, load_dump, save, write_dump
from reference.dump import main as dump_main
from reference.presets import PRESETS, ModelConfig

OUR_DUMP = '["{python}", "-m", "reference.dump", "--out", "{out}", "--batch", "2", "--steps", "3"'
BYTES16 = "[presets.bytes16]\nn_layer = 1\nn_head = 2\nn_embd = 16\nblock_size = 16\n" \
    "vocab_size = 256\n"  # fmt: skip
MATRIX = """\
name = "project-reference"
artifacts = ["native"]
presets = ["bytes16"]
checks = ["model"]
timeout_s = 300
[hosts]
native = {}
[check.model]
gen_train_steps = 20
"""


def _profile(root: Path, body: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / "harness.toml"
    path.write_text('[project]\nname = "p"\n\n' + body)
    return path


@pytest.mark.parametrize(
    ("body", "line", "message"),
    [
        ("[reference]\ntimeout_s = 5\n", 4, "needs 'command' (writes the dump) and/or 'dump'"),
        ('[reference]\ncommand = ["ref", "{outfile}"]\n', 5, "unknown placeholder {outfile}"),
        ('[reference]\ncommand = ["ref", "x.npz"]\n', 5, "must write to {out}"),
        ('[reference]\ncommand = []\n', 5, "must name a program"),
        ('[reference]\ndump = "absent.npz"\n', 5, "file 'absent.npz' not found"),
        ('[reference]\ndump = "d/{name}.npz"\n', 5, "unknown placeholder {name}"),
        ('[reference]\ndump = "{preset}.npz"\nformat = "npz"\n', 6, "unknown key"),
        ('[reference]\ndump = "{preset}.npz"\ntimeout_s = 0\n', 6, "must be > 0"),
    ],
)  # fmt: skip
def test_bad_reference_tables_exit_at_file_and_line(
    tmp_path: Path, body: str, line: int, message: str
) -> None:
    """Each bad [reference] is a ProfileError at the offending table or key's line."""
    path = _profile(tmp_path, body)
    with pytest.raises(ProfileError) as err:
        load_profile(path)
    assert str(err.value).startswith(f"{path}:{line}:")
    assert message in str(err.value)


@pytest.mark.corpus
def test_a_dump_written_by_the_cli_is_named_by_a_profile(tmp_path: Path) -> None:
    """``python -m reference.dump`` writes dumps/tiny.npz; ``dump = "dumps/{preset}.npz"``
    loads it for tiny, and refuses it for small (another model) at the [reference] line."""
    out = tmp_path / "dumps" / "tiny.npz"
    assert dump_main(["--preset", "tiny", "--out", str(out), "--batch", "1", "--steps", "2"]) == 0
    profile = load_profile(_profile(tmp_path, '[reference]\ndump = "dumps/{preset}.npz"\n'))
    dumps = reference_dumps(profile, [PRESETS["tiny"]], tmp_path / "run")
    assert dumps["tiny"].cfg == PRESETS["tiny"] and dumps["tiny"].traj_lr.shape == (2,)
    out.rename(tmp_path / "dumps" / "small.npz")
    with pytest.raises(ProfileError) as err:
        reference_dumps(profile, [PRESETS["small"]], tmp_path / "run")
    assert str(err.value).startswith(f"{profile.path}:4: reference dump ")
    assert "is not preset 'small''s model: n_layer 1 (preset: 2)" in str(err.value)


def test_a_failing_command_quotes_its_stderr(tmp_path: Path) -> None:
    """A command that exits non-zero, or writes nothing, is a ProfileError at [reference]; the
    failing command is quoted as a shell would need it (the ``{config}`` JSON in one quoted
    word) with the directory it ran in."""
    script = tmp_path / "ref.py"
    script.write_text("import sys\nprint('torch not installed', file=sys.stderr)\nsys.exit(3)\n")
    body = '[reference]\ncommand = ["{python}", "ref.py", "--config", "{config}", "{out}"]\n'
    profile = load_profile(_profile(tmp_path, body))
    with pytest.raises(ProfileError) as err:
        reference_dumps(profile, [PRESETS["tiny"]], tmp_path / "run")
    head, ran_in, stderr = str(err.value).splitlines()
    assert head.startswith(f"{profile.path}:4: reference.command for preset 'tiny' exited 3: ")
    argv = shlex.split(head.split("exited 3: ", 1)[1])
    assert argv[:3] == [sys.executable, "ref.py", "--config"]
    assert json.loads(argv[3])["n_embd"] == PRESETS["tiny"].n_embd  # one word, unbroken
    assert ran_in == f"(run in {tmp_path})" and stderr == "torch not installed"
    script.write_text("pass\n")
    with pytest.raises(ProfileError, match="exited 0 but wrote no dump"):
        reference_dumps(profile, [PRESETS["tiny"]], tmp_path / "run")


def test_a_timeout_kills_the_commands_whole_process_group(tmp_path: Path) -> None:
    """A command that outlives ``timeout_s`` is killed with its children: a shell script's
    background ``sleep`` (a grandchild of the harness) does not survive the refusal."""
    pidfile = tmp_path / "child.pid"
    (tmp_path / "slow.sh").write_text(f"sleep 600 &\necho $! > {pidfile}\nwait\n")
    body = '[reference]\ncommand = ["sh", "slow.sh", "{out}"]\ntimeout_s = 1\n'
    profile = load_profile(_profile(tmp_path, body))
    with pytest.raises(ProfileError, match=r"harness.toml:4: .*ran over 1 s \(killed with its"):
        reference_dumps(profile, [PRESETS["tiny"]], tmp_path / "run")
    grandchild = int(pidfile.read_text())
    deadline = time.monotonic() + 10
    while process_alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)  # SIGKILL is delivered asynchronously; init reaps the orphan
    assert not process_alive(grandchild), f"the command's child {grandchild} outlived the timeout"


@pytest.mark.corpus
def test_a_writer_that_exits_but_leaves_a_child_is_not_waited_on(tmp_path: Path) -> None:
    """A command that writes its dump and exits 0 while a child it started keeps running (and
    holds its stderr) is done when it exits: the dump is loaded long before ``timeout_s``, and
    the stray child is killed with the group. Waiting on the output pipes, the harness sat out
    the whole ``timeout_s`` and then called a finished writer slow."""
    assert dump_main(["--preset", "tiny", "--out", str(tmp_path / "src.npz"), "--batch", "1",
                      "--steps", "2"]) == 0  # fmt: skip
    pidfile = tmp_path / "child.pid"
    (tmp_path / "w.sh").write_text(f'cp src.npz "$1"\nsleep 600 &\necho $! > {pidfile}\n')
    body = '[reference]\ncommand = ["sh", "w.sh", "{out}"]\ntimeout_s = 60\n'
    profile = load_profile(_profile(tmp_path, body))
    started = time.monotonic()
    dumps = reference_dumps(profile, [PRESETS["tiny"]], tmp_path / "run")
    assert time.monotonic() - started < 30, "waited for the writer's child, not the writer"
    assert dumps["tiny"].sha256
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 10
    while process_alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)  # SIGKILL is delivered asynchronously; init reaps the orphan
    assert not process_alive(child), f"the writer's child {child} outlived it"


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for init to reap it counts as dead)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def _writer_project(tmp_path: Path) -> tuple[Path, Path]:
    """A project whose command copies ``src.npz`` to ``{out}``: its "writer" is that file."""
    (tmp_path / "copy.py").write_text("import shutil, sys\nshutil.copy('src.npz', sys.argv[1])\n")
    body = '[reference]\ncommand = ["{python}", "copy.py", "{out}"]\n'
    return _profile(tmp_path, body), tmp_path / "src.npz"


def _judged_run(tmp_path: Path) -> tuple[Path, Path, Path, ReferenceDump]:
    """A writer project (see :func:`_writer_project`) and a run judged by its dump: the
    profile, the writer's source file, the run directory and the dump the run kept."""
    path, src = _writer_project(tmp_path)
    assert dump_main(["--preset", "tiny", "--out", str(src), "--batch", "1", "--steps", "2"]) == 0
    run = tmp_path / "run"
    return path, src, run, reference_dumps(load_profile(path), [PRESETS["tiny"]], run)["tiny"]


@pytest.mark.corpus
def test_a_resume_never_overwrites_the_runs_dump_with_a_different_one(tmp_path: Path) -> None:
    """With ``kept`` (a --resume), a command that now writes another dump is refused: the
    message names both sha256s and the writer, and the run's dump keeps its bytes; the same
    dump is accepted and loaded from the run's own path."""
    path, src, run, first = _judged_run(tmp_path)
    profile = load_profile(path)
    kept = run / "reference" / "tiny.npz"
    before = kept.read_bytes()
    again = reference_dumps(profile, [PRESETS["tiny"]], run, kept={"tiny": first.sha256})
    assert again["tiny"].source == first.source and again["tiny"].sha256 == first.sha256
    assert dump_main(["--preset", "tiny", "--out", str(src), "--batch", "1", "--steps", "3"]) == 0
    new = hashlib.sha256(src.read_bytes()).hexdigest()
    with pytest.raises(ProfileError) as err:
        reference_dumps(profile, [PRESETS["tiny"]], run, kept={"tiny": first.sha256})
    assert str(err.value) == (
        f"{path}:4: --resume refused: the reference command now writes a different dump of "
        f"preset 'tiny' (sha256 {new}, was {first.sha256}): the writer changed or is not "
        f"deterministic; the run's dump {kept} is left as it was (a new run with --out judges "
        "by the new one)"
    )
    assert kept.read_bytes() == before
    assert sorted(p.name for p in kept.parent.iterdir()) == ["tiny.npz"]  # no scratch left


@pytest.mark.corpus
def test_a_resume_whose_command_writes_a_truncated_dump_says_so(tmp_path: Path) -> None:
    """A --resume whose command now leaves a cut-short file says the new dump is bad
    ("truncated write?"), not that the writer changed, and leaves the run's dump as it was."""
    path, src, run, first = _judged_run(tmp_path)
    profile = load_profile(path)
    kept = run / "reference" / "tiny.npz"
    before = kept.read_bytes()
    src.write_bytes(before[: len(before) // 2])  # the writer now stops half way
    with pytest.raises(ProfileError) as err:
        reference_dumps(profile, [PRESETS["tiny"]], run, kept={"tiny": first.sha256})
    message = str(err.value)
    assert message.startswith(
        f"{path}:4: --resume refused: the reference command's new dump of preset 'tiny' is bad: "
    )
    assert "is not a complete .npz (zip) file: truncated write?" in message
    assert message.endswith(f"; the run's dump {kept} is left as it was")
    assert "writer changed" not in message
    assert kept.read_bytes() == before


def test_a_dump_path_that_is_a_directory_says_so(tmp_path: Path) -> None:
    """A fixed ``dump`` path that exists as a directory is named as one at its line, not
    "not found" (the user would look for a file that is there)."""
    (tmp_path / "d.npz").mkdir()
    path = _profile(tmp_path, '[reference]\ndump = "d.npz"\n')
    with pytest.raises(ProfileError) as err:
        load_profile(path)
    assert str(err.value).startswith(f"{path}:5: ")
    assert f"file 'd.npz' is a directory ({tmp_path / 'd.npz'})" in str(err.value)


def test_a_bad_dump_file_is_a_profile_error(tmp_path: Path) -> None:
    """A named dump that is not a dump names the profile line, the preset and the cause."""
    (tmp_path / "tiny.npz").write_bytes(b"not a zip")
    profile = load_profile(_profile(tmp_path, '[reference]\ndump = "{preset}.npz"\n'))
    cfg = ModelConfig("tiny", n_layer=1, n_head=2, n_embd=16, block_size=16)
    with pytest.raises(ProfileError, match=r"harness.toml:4: .*preset 'tiny'.*not an \.npz \(zip"):
        reference_dumps(profile, [cfg], tmp_path / "run")


@pytest.mark.parametrize(
    ("content", "cause"),
    [(b"", "is empty (0 bytes)"),
     (b"PK\x03\x04" + bytes(40), "is not a complete .npz (zip) file: truncated write?")],
)  # fmt: skip
def test_an_empty_or_truncated_dump_is_refused_at_the_reference_line(
    tmp_path: Path, content: bytes, cause: str
) -> None:
    """A 0-byte file and a zip cut short are ProfileErrors (exit 2 under ``run``) at the
    [reference] line saying what is wrong with the file, not tracebacks (exit 1)."""
    (tmp_path / "tiny.npz").write_bytes(content)
    profile = load_profile(_profile(tmp_path, '[reference]\ndump = "{preset}.npz"\n'))
    with pytest.raises(ProfileError) as err:
        reference_dumps(profile, [PRESETS["tiny"]], tmp_path / "run")
    assert str(err.value).startswith(
        f"{profile.path}:4: reference dump of preset 'tiny': {tmp_path / 'tiny.npz'}: {cause}"
    )


@pytest.mark.corpus
@pytest.mark.skipif(not manifest_is_fresh(DEFAULT_OUT), reason="needs `tinygpt-harness build`")
def test_run_judges_the_kernel_against_the_commands_dump(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``run --project``: the profile's command (our CLI, with the project preset as
    ``{config}``) writes the run's reference/bytes16.npz; the model check judges the native
    kernel against it and passes, and run.json records the dump's sha256; a dump that fails
    its self-check, or is not one, exits 2 at the [reference] line."""
    project = tmp_path / "proj"
    command = f"[reference]\ncommand = {OUR_DUMP}, \"--config\", '{{config}}']\n\n"
    _profile(project, command + BYTES16)
    matrix = tmp_path / "m.toml"
    matrix.write_text(MATRIX)
    base = ["run", "--matrix", str(matrix), "--artifacts", str(DEFAULT_OUT / MANIFEST),
            "--project", str(project)]  # fmt: skip
    out = tmp_path / "run"
    assert main([*base, "--out", str(out)]) == 0, capsys.readouterr().err
    dump = out / "reference" / "bytes16.npz"
    rows = [r for r in read_rows(out / RESULTS_FILE) if r.check == "model"]
    assert {r.status for r in rows} == {"pass", "measured"}
    logits = [r for r in rows if r.subject == "logits"]
    assert logits and all(f"oracle: reference dump {dump}" in r.detail for r in logits)
    recorded = json.loads((out / RUN_FILE).read_text())["references"]["bytes16"]
    assert recorded["sha256"] == hashlib.sha256(dump.read_bytes()).hexdigest()

    # a dump that fails its self-check: refused before any cell, no row written
    _transposed(dump, project / "transposed.npz")
    _profile(project, '[reference]\ndump = "transposed.npz"\n\n' + BYTES16)
    assert main([*base, "--out", str(tmp_path / "run1")]) == 2
    err = capsys.readouterr().err
    assert "reference dump of preset 'bytes16'" in err and "it fails its self-check" in err
    assert not (tmp_path / "run1" / RESULTS_FILE).exists()

    (project / "bad.npz").write_bytes(b"junk")
    _profile(project, '[reference]\ndump = "bad.npz"\n\n' + BYTES16)
    assert main([*base, "--out", str(tmp_path / "run2")]) == 2
    err = capsys.readouterr().err
    assert f"{project / 'harness.toml'}:4: reference dump of preset 'bytes16'" in err

    # the dump holds 3 trajectory steps: a matrix asking for 5 would be silently ignored
    (project / "harness.toml").unlink()
    _profile(project, command + BYTES16)
    matrix.write_text(MATRIX + "steps = 5\n")
    assert main([*base, "--out", str(tmp_path / "run3")]) == 2
    assert "[check.model] steps = 5, but the reference dump of preset bytes16" in (
        capsys.readouterr().err
    )


def _transposed(src: Path, dst: Path) -> None:
    """``src``'s dump with its square attprojw stored [in, out] (its arrays computed from the
    right orientation): the HF Conv1D mistake no shape check sees (trial s44, D15)."""
    d = load_dump(src)
    params = dict(d.params)
    params["attprojw"] = np.ascontiguousarray(params["attprojw"].transpose(0, 2, 1))
    save(dst, dataclasses.replace(d, params=params))


@pytest.mark.corpus
def test_a_dump_that_fails_its_self_check_is_refused_at_the_reference_line(
    tmp_path: Path,
) -> None:
    """A dump whose own logits do not follow from its own param.* is the oracle's fault: a
    ProfileError at [reference] naming the preset, the file, the failing arrays with their
    errors and the usual causes, before any host starts; the same dump unmutated is loaded."""
    write_dump(tmp_path / "good.npz", PRESETS["tiny"], batch=2, steps=3)
    _transposed(tmp_path / "good.npz", tmp_path / "tiny.npz")
    profile = load_profile(_profile(tmp_path, '[reference]\ndump = "{preset}.npz"\n'))
    with pytest.raises(ProfileError) as err:
        reference_dumps(profile, [PRESETS["tiny"]], tmp_path / "run")
    said = str(err.value)
    assert said.startswith(f"{profile.path}:4: reference dump of preset 'tiny' "
                           f"({tmp_path / 'tiny.npz'}): it fails its self-check")  # fmt: skip
    assert "dump:logits: " in said and "[in, out]" in said and "exact-erf GELU" in said
    assert "dump:grad:attprojw" in said  # named in "and N more" when not among the first
    (tmp_path / "good.npz").rename(tmp_path / "tiny.npz")
    assert reference_dumps(profile, [PRESETS["tiny"]], tmp_path / "run")["tiny"].cfg.name == "tiny"


def test_the_command_is_waited_on_unreaped_so_its_group_id_stays_its_own(tmp_path: Path) -> None:
    """wait_exited returns once the command has exited but leaves it a zombie, holding its pid
    (its process group id) until the group is killed and it is reaped; past the timeout it
    raises with the command still running."""
    done = subprocess.Popen(["sh", "-c", "exit 3"], start_new_session=True)
    wait_exited(done, 30)
    assert Path(f"/proc/{done.pid}/stat").read_text().split(") ", 1)[1][0] == "Z"
    assert done.returncode is None
    assert done.wait() == 3
    slow = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            wait_exited(slow, 0.2)
        assert slow.poll() is None
    finally:
        slow.kill()
        slow.wait()
