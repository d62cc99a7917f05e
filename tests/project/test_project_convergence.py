"""``record-convergence``: a profile's own convergence band, recorded beside it with its
provenance, and judged by the corpus check of ``run --project`` (harness/convergence_band.py).

The fault is the one the bundled band's tests use (tests/checks/test_checks_corpus.py): the
corpus check's ``learning_rate`` option trains the cell's artifact 10x too hot, as TinyGPT's
browser did; the band must catch it, here for the project's own band and trainer.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from harness.build import DEFAULT_OUT, MANIFEST, manifest_is_fresh
from harness.cli import main
from harness.convergence_band import BandError, load_band
from harness.profile import ProfileError, load_profile
from harness.rundir.reader import read_rows
from harness.rundir.rows import RESULTS_FILE, Row

STEPS = 150  # the shortest run whose losses still order with the rate at tiny (see the record
# test of tests/checks/test_checks_corpus.py); 300 is the default
needs_build = pytest.mark.skipif(
    not manifest_is_fresh(DEFAULT_OUT), reason="needs `tinygpt-harness build`"
)
MATRIX = """\
name = "project-convergence"
artifacts = ["{artifact}"]
presets = ["tiny"]
checks = ["corpus"]
timeout_s = 120
[hosts]
native = {{}}
"""
HOT = "[check.corpus]\nlearning_rate = 3e-3\n"  # 10x the default: TinyGPT's drift


def _project(root: Path, extra: str = "") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "harness.toml").write_text(
        f'[project]\nname = "conv"\n\n[convergence]\npreset = "tiny"\nsteps = {STEPS}\n{extra}'
    )
    return root


def _run(tmp_path: Path, project: Path, artifact: str = "native", extra: str = "") -> int:
    matrix = tmp_path / f"m-{artifact}-{len(extra)}.toml"
    matrix.write_text(MATRIX.format(artifact=artifact) + extra)
    out = tmp_path / f"run-{artifact}-{len(extra)}"
    args = ["run", "--matrix", str(matrix), "--artifacts", str(DEFAULT_OUT / MANIFEST)]
    return main([*args, "--out", str(out), "--project", str(project)])


def _convergence(tmp_path: Path, artifact: str, extra: str = "") -> dict[str, Row]:
    out = tmp_path / f"run-{artifact}-{len(extra)}"
    rows = read_rows(out / RESULTS_FILE)
    return {
        r.subject: r for r in rows if r.subject.startswith("convergence") and r.metric != "loss"
    }


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project whose band the reference recorded (once for the module: ~5 s)."""
    project = _project(tmp_path_factory.mktemp("recorded") / "p")
    assert main(["record-convergence", "--project", str(project)]) == 0
    return project


@pytest.fixture
def project(recorded: Path, tmp_path: Path) -> Path:
    """A writable copy of the recorded project."""
    return Path(shutil.copytree(recorded, tmp_path / "p"))


def test_the_band_is_stored_beside_the_profile_with_its_provenance(recorded: Path) -> None:
    """The default name beside harness.toml; command, commits, machine, trainer, preset config,
    seed, steps, hyperparameters with their sources, corpus sha256 and date are all there."""
    path = recorded / "convergence-band.json"
    data = json.loads(path.read_text())
    assert data["command"].startswith("tinygpt-harness record-convergence --project ")
    assert len(data["commit"]) == 40 and "commit" in data["project_commit"]
    assert len(data["machine"]["fingerprint_id"]) == 12 and data["machine"]["cpu_model"]
    assert data["trainer"] == {"kind": "reference", "calls": "reference.train"}
    assert data["preset"] == "tiny" and data["model"]["n_embd"] == 16
    assert data["steps"] == STEPS and data["seed"] == 1337 and data["window"] == 25
    assert data["defaults"]["learning_rate"] == 3e-4
    assert data["defaults_source"]["learning_rate"] == "reference/defaults.py TrainingDefaults"
    assert data["corpus"]["source"].startswith("the default corpus")
    assert data["corpus_sha256"] == data["corpus"]["sha256"]
    assert data["date"].endswith("Z")
    assert len(data["runs"]["default"]["losses"]) == STEPS
    band = load_band(path)
    assert band.band.lower < band.band.reference_final < band.band.upper


@needs_build
def test_recorded_band_passes_a_clean_build_and_fails_a_hot_learning_rate(
    project: Path, tmp_path: Path
) -> None:
    """run --project judges the native kernel against the project's band: inside it, and every
    step within the trajectory rule of the recorded run; 10x the rate lands below it (exit 1)."""
    assert _run(tmp_path, project) == 0
    rows = _convergence(tmp_path, "native")
    assert rows["convergence"].status == "pass"
    assert str(project / "convergence-band.json") in rows["convergence"].detail
    assert rows["convergence:trajectory"].status == "pass"
    assert _run(tmp_path, project, extra=HOT) == 1
    hot = _convergence(tmp_path, "native", HOT)["convergence"]
    assert hot.status == "fail" and "BELOW the band" in hot.detail and "lr 0.003" in hot.detail


@needs_build
def test_the_projects_own_trainer_records_through_its_binding(tmp_path: Path) -> None:
    """--artifact lib2-native --host native: lib2's own train_step (model-level binding) records
    the band; its provenance names the artifact, its sha256 and the host's version; a lib2 cell
    passes it, and lib2 10x too hot fails it."""
    project = _project(tmp_path / "lib2")
    args = ["record-convergence", "--project", str(project), "--artifacts"]
    args += [str(DEFAULT_OUT / MANIFEST), "--artifact", "lib2-native", "--host", "native"]
    assert main(args) == 0
    data = json.loads((project / "convergence-band.json").read_text())
    trainer = data["trainer"]
    assert trainer["kind"] == "artifact" and trainer["artifact"] == "lib2-native"
    assert len(trainer["artifact_sha256"]) == 64 and trainer["host_version"].startswith("ctypes")
    assert "--artifact lib2-native --host native" in data["command"]
    assert _run(tmp_path, project, "lib2-native") == 0
    rows = _convergence(tmp_path, "lib2-native")
    assert (
        rows["convergence"].status == "pass"
        and "lib2-native (native)" in rows["convergence"].detail
    )
    # lib2 trains from its own init on its own batches: no recorded run is its twin
    assert rows["convergence:trajectory"].status == "skipped"
    assert _run(tmp_path, project, "lib2-native", HOT) == 1
    assert _convergence(tmp_path, "lib2-native", HOT)["convergence"].status == "fail"


def _stderr_of(
    tmp_path: Path, project: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str]:
    capsys.readouterr()
    code = _run(tmp_path, project)
    return code, capsys.readouterr().err


@needs_build
def test_a_named_band_that_is_missing_exits_2_at_the_profiles_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A profile naming a band file that does not exist: exit 2 at the `band` line."""
    project = _project(tmp_path / "p", 'band = "bands/tiny.json"\n')
    code, err = _stderr_of(tmp_path, project, capsys)
    assert code == 2
    assert f"{project / 'harness.toml'}:7: convergence.band (bands/tiny.json)" in err
    assert "bands/tiny.json:1: no band file" in err
    assert f"record it: tinygpt-harness record-convergence --project {project}" in err


@needs_build
def test_a_malformed_band_exits_2_naming_both_files(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Broken JSON in the band: exit 2 with the profile's line and the band's file:line."""
    band = project / "convergence-band.json"
    band.write_text(band.read_text().replace('"steps": 150,', '"steps": 150'))
    code, err = _stderr_of(tmp_path, project, capsys)
    assert code == 2
    assert f"{project / 'harness.toml'}:4: convergence.band" in err
    line = band.read_text().splitlines().index(' "steps": 150') + 2  # the next key's line
    assert f"{band}:{line}: not JSON" in err


@needs_build
@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (('preset = "tiny"', 'preset = "small"'), "recorded for preset 'tiny', not 'small'"),
        (("[convergence]", '[convergence]\ncorpus = "corpus.txt"'), "recorded on another corpus"),
        (
            ("[project]", '[defaults.oracle]\npath = "cfg.json"\nformat = "json"\n\n[project]'),
            "learning_rate 0.0003 then, 0.003 now",
        ),
    ],
)
def test_a_band_recorded_for_another_preset_corpus_or_rate_is_refused(
    project: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    edit: tuple[str, str],
    reason: str,
) -> None:
    """The profile moved on since the band was recorded: exit 2, saying what changed."""
    (project / "corpus.txt").write_text("To be, or not to be.\n" * 2000)
    (project / "cfg.json").write_text('{"learning_rate": 3e-3}\n')
    profile = project / "harness.toml"
    profile.write_text(profile.read_text().replace(*edit))
    code, err = _stderr_of(tmp_path, project, capsys)
    assert code == 2 and reason in err and "re-record it" in err


def test_without_a_band_a_project_keeps_the_bundled_one(tmp_path: Path) -> None:
    """No [convergence] and no convergence-band.json: the run uses the bundled band (None)."""
    from harness.convergence_band import band_for_run

    project = tmp_path / "bare"
    project.mkdir()
    (project / "harness.toml").write_text('[project]\nname = "bare"\n')
    assert band_for_run(load_profile(project / "harness.toml"), None) is None


@pytest.mark.parametrize(
    ("text", "key", "message"),
    [
        ('{"format": "other"}', "format", "must be 'tinygpt-harness.convergence-band'"),
        ("[1, 2]", None, "a band file is a JSON object"),
    ],
)
def test_load_band_names_the_line(tmp_path: Path, text: str, key: str | None, message: str) -> None:
    """A band file that is not one is refused at its file:line."""
    path = tmp_path / "b.json"
    path.write_text(text)
    with pytest.raises(BandError, match=message) as err:
        load_band(path)
    assert str(err.value).startswith(f"{path}:1:")


def test_a_hand_edited_band_is_refused(recorded: Path, tmp_path: Path) -> None:
    """A band whose defaults were edited without re-recording (its sha256 then disagrees) and
    one whose edges do not hold its own run are refused, at the offending key's line."""
    source = (recorded / "convergence-band.json").read_text()
    path = tmp_path / "b.json"
    path.write_text(
        source.replace('"learning_rate": 0.0003,\n  "beta1"', '"learning_rate": 0.003,\n  "beta1"')
    )
    with pytest.raises(BandError, match="defaults_sha256: does not match"):
        load_band(path)
    data = json.loads(source)
    data["upper"] = data["reference_final"] - 0.01
    path.write_text(json.dumps(data, indent=1))
    with pytest.raises(BandError, match="the band must hold its own run") as err:
        load_band(path)
    message = str(err.value)
    assert message.startswith(f"{path}:") and not message.startswith(f"{path}:1:")


@pytest.mark.parametrize(
    ("section", "line", "message"),
    [
        ("[convergence]\nsteps = 0\n", 2, "convergence.steps: must be >= 1"),
        ('[convergence]\npreset = "nope"\n', 2, "unknown preset 'nope'"),
        ("[convergence]\nwindow = 3\n", 2, "convergence.window: unknown key"),
        ('[convergence]\ncorpus = "missing.txt"\n', 2, "file 'missing.txt' not found"),
    ],
)
def test_convergence_section_errors_name_the_line(
    tmp_path: Path, section: str, line: int, message: str
) -> None:
    """A bad [convergence] table exits 2 at its line (ProfileError with file:line)."""
    path = tmp_path / "harness.toml"
    path.write_text(section)
    with pytest.raises(ProfileError, match=message) as err:
        load_profile(path)
    assert str(err.value).startswith(f"{path}:{line}:")


def test_record_refuses_artifact_without_host(tmp_path: Path) -> None:
    """--artifact without --host is a usage error (exit 2), before anything trains."""
    project = _project(tmp_path / "p")
    assert main(["record-convergence", "--project", str(project), "--artifact", "native"]) == 2


def test_the_profiles_oracle_sets_the_training_hyperparameters(fixed: Path) -> None:
    """The fixture's oracle (python_ref/train.py) gives lr 3e-4 and seed 42 with their lines;
    keys it does not state (warmup) stay TrainingDefaults', and dropout is no training key."""
    from harness.convergence_band import training_defaults

    defaults, where = training_defaults(load_profile(fixed / "harness.toml"))
    assert (defaults.learning_rate, defaults.seed, defaults.batch_size) == (3e-4, 42, 16)
    assert where["learning_rate"] == "python_ref/train.py:8"
    assert where["seed"] == "python_ref/train.py:15"
    assert where["warmup_steps"] == "reference/defaults.py TrainingDefaults"
    assert "dropout" not in where
