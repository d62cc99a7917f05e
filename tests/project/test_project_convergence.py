"""``record-convergence``: a profile's own convergence band, recorded beside it with its
provenance, and judged by the corpus check of ``run --project`` (harness/convergence_band.py).

The fault is the one the bundled band's tests use (tests/checks/test_checks_corpus.py): the
corpus check's ``learning_rate`` option trains the cell's artifact 10x too hot, as TinyGPT's
browser did; the band must catch it, here for the project's own band and trainer.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import Any

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


def _run(
    tmp_path: Path, project: Path, artifact: str = "native", extra: str = "", matrix: str = ""
) -> int:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / f"m-{artifact}-{len(extra)}.toml"
    path.write_text((matrix or MATRIX.format(artifact=artifact)) + extra)
    out = tmp_path / f"run-{artifact}-{len(extra)}"
    args = ["run", "--matrix", str(path), "--artifacts", str(DEFAULT_OUT / MANIFEST)]
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
    stored = json.loads(path.read_text())
    assert (stored["format"], stored["version"]) == ("tinygpt-harness.convergence-band", 2)
    (data,) = stored["bands"]  # one preset recorded, by one trainer
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
    (data,) = json.loads((project / "convergence-band.json").read_text())["bands"]
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
    line = band.read_text().splitlines().index('   "steps": 150') + 2  # the next key's line
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
    assert code == 2 and reason in err and "record it" in err  # the missing preset: record it


def test_without_a_band_a_project_keeps_the_bundled_one(tmp_path: Path) -> None:
    """No [convergence] and no convergence-band.json: the run uses the bundled band (None)."""
    from harness.convergence_band import bands_for_run

    project = tmp_path / "bare"
    project.mkdir()
    (project / "harness.toml").write_text('[project]\nname = "bare"\n')
    assert bands_for_run(load_profile(project / "harness.toml"), None) is None


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
        source.replace(
            '"learning_rate": 0.0003,\n    "beta1"', '"learning_rate": 0.003,\n    "beta1"'
        )
    )
    with pytest.raises(BandError, match="defaults_sha256: does not match"):
        load_band(path)
    data = json.loads(source)
    entry = data["bands"][0]
    entry["upper"] = entry["reference_final"] - 0.01
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


# ---- several bands: one per preset (and trainer) --------------------------------------------

# A project preset with tiny's sizes under its own name: a second band as cheap as tiny's (the
# reference at `small` is minutes per band on this VM under load)
MINI = "\n[presets.mini]\nn_layer = 1\nn_head = 2\nn_embd = 16\nblock_size = 16\n"


def _keys(project: Path) -> list[str]:
    from harness.convergence_band import load_bands

    return [b.key for b in load_bands(project / "convergence-band.json").bands]


def _with_mini(project: Path) -> Path:
    profile = project / "harness.toml"
    profile.write_text(profile.read_text() + MINI)
    return project


def test_record_several_presets_keeps_each_band_with_its_provenance(project: Path) -> None:
    """`--preset` is repeatable and adds to the file: mini's band joins tiny's with its own
    command; tiny, re-recorded, is replaced in its place (one band per preset and trainer)."""
    _with_mini(project)
    path = project / "convergence-band.json"
    before = json.loads(path.read_text())["bands"][0]
    args = ["record-convergence", "--project", str(project), "--window", "20"]
    assert main([*args, "--preset", "mini", "--preset", "tiny"]) == 0
    assert _keys(project) == ["tiny/reference", "mini/reference"]
    tiny, mini = json.loads(path.read_text())["bands"]
    assert tiny["window"] == 20 and before["window"] == 25  # replaced, in place
    assert "--preset mini --window 20" in mini["command"]
    assert "--preset tiny --window 20" in tiny["command"]
    assert mini["model"]["name"] == "mini" and mini["steps"] == STEPS


def test_which_presets_are_recorded(tmp_path: Path) -> None:
    """No --preset: the profile's [convergence] presets; --all-presets adds every
    [presets.NAME]; an unknown --preset is exit 2 before anything trains."""
    from harness.record_convergence import presets_to_record

    project = _project(tmp_path / "p", MINI)
    profile = load_profile(project / "harness.toml")
    assert presets_to_record(profile, None, every=False) == ["tiny"]
    assert presets_to_record(profile, None, every=True) == ["tiny", "mini"]
    assert presets_to_record(profile, ["mini", "mini"], every=False) == ["mini"]
    bare = tmp_path / "bare.toml"
    bare.write_text('[project]\nname = "bare"\n')
    assert presets_to_record(load_profile(bare), None, every=False) == ["tiny"]
    with pytest.raises(ProfileError, match="--all-presets: the profile has neither"):
        presets_to_record(load_profile(bare), None, every=True)
    assert main(["record-convergence", "--project", str(project), "--preset", "nope"]) == 2


def test_a_version_1_file_still_loads_and_is_migrated_on_write(
    recorded: Path, tmp_path: Path
) -> None:
    """A version 1 band file (one band at the top level, as record-convergence wrote it before
    version 2) loads as one band; writing another preset's band makes it version 2 holding
    both, the version 1 band unchanged."""
    from harness.convergence_band import load_bands
    from harness.record_convergence import write_band

    (entry,) = json.loads((recorded / "convergence-band.json").read_text())["bands"]
    path = tmp_path / "band.json"
    path.write_text(json.dumps({"format": "tinygpt-harness.convergence-band", "version": 1,
                                **entry}, indent=1))  # fmt: skip
    found = load_bands(path)
    assert found.version == 1 and [b.key for b in found.bands] == ["tiny/reference"]
    other = {**entry, "preset": "mini", "model": {**entry["model"], "name": "mini"}}
    assert write_band(path, other) == "mini/reference"
    stored = json.loads(path.read_text())
    assert stored["version"] == 2 and stored["bands"] == [entry, other]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: {**d, "version": 3}, "version: 3; this harness reads versions 1, 2"),
        (lambda d: {**d, "bands": []}, "bands: a non-empty array of bands"),
        (lambda d: {**d, "bands": [*d["bands"], 7]}, "bands: each band is a JSON object"),
        (lambda d: {**d, "bands": d["bands"] * 2}, "a second band for tiny/reference"),
    ],
)
def test_a_malformed_version_2_file_names_its_line(
    recorded: Path, tmp_path: Path, edit: Any, message: str
) -> None:
    """Another version, no bands, a band that is not an object, two bands for one preset and
    trainer: each refused with the file's line."""
    from harness.convergence_band import load_bands

    data = json.loads((recorded / "convergence-band.json").read_text())
    path = tmp_path / "b.json"
    path.write_text(json.dumps(edit(data), indent=1))
    with pytest.raises(BandError, match=message) as err:
        load_bands(path)
    assert re.match(rf"{re.escape(str(path))}:\d+: ", str(err.value))


def test_a_bad_key_in_the_second_band_is_named_at_its_own_line(
    recorded: Path, tmp_path: Path
) -> None:
    """Each band's fields are located inside its own object: the second band's bad `steps` is
    its line, not the first band's."""
    from harness.convergence_band import load_bands

    data = json.loads((recorded / "convergence-band.json").read_text())
    second = {**data["bands"][0], "trainer": {"kind": "artifact", "artifact": "native",
              "host": "native"}, "steps": 0}  # fmt: skip
    data["bands"].append(second)
    path = tmp_path / "b.json"
    path.write_text(json.dumps(data, indent=1))
    with pytest.raises(BandError, match="steps: must be a positive integer") as err:
        load_bands(path)
    lines = path.read_text().splitlines()
    steps_lines = [i + 1 for i, line in enumerate(lines) if line.strip().startswith('"steps"')]
    assert str(err.value).startswith(f"{path}:{steps_lines[1]}:")


@pytest.mark.parametrize(
    ("section", "line", "message"),
    [
        ('[convergence]\npresets = ["tiny", "nope"]\n', 2, "unknown preset 'nope'"),
        ('[convergence]\npresets = ["tiny", "tiny"]\n', 2, "'tiny' is listed twice"),
        ('[convergence]\npreset = "tiny"\npresets = ["small"]\n', 3, "preset or presets"),
        ("[convergence]\npresets = []\n", 2, "must name at least one preset"),
    ],
)
def test_convergence_presets_errors_name_the_line(
    tmp_path: Path, section: str, line: int, message: str
) -> None:
    """`[convergence] presets` (several bands) is validated at its line."""
    path = tmp_path / "harness.toml"
    path.write_text(section)
    with pytest.raises(ProfileError, match=message) as err:
        load_profile(path)
    assert str(err.value).startswith(f"{path}:{line}:")


@needs_build
def test_each_cell_is_judged_by_its_presets_band(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """tiny has a band, mini not yet: the tiny cell trains and passes, the mini cell says it
    has no band (skipped, not a pass); a profile that lists mini in [convergence] presets
    without its band exits 2; once mini is recorded, its cell passes its own band."""
    _with_mini(project)
    matrix = MATRIX.format(artifact="native").replace('["tiny"]', '["tiny", "mini"]')

    def convergence(run: Path) -> dict[str, Row]:
        rows = read_rows(run / "run-native-0" / RESULTS_FILE)
        return {r.preset: r for r in rows if r.subject == "convergence" and r.metric != "loss"}

    assert _run(tmp_path / "one", project, matrix=matrix) == 0
    conv = convergence(tmp_path / "one")
    assert conv["tiny"].status == "pass" and "tiny/reference" in conv["tiny"].detail
    assert conv["mini"].status == "skipped"
    assert "no convergence band for preset 'mini'" in conv["mini"].detail
    assert "--preset mini" in conv["mini"].detail
    profile = project / "harness.toml"
    profile.write_text(profile.read_text().replace('preset = "tiny"', 'presets = ["tiny", "mini"]'))
    capsys.readouterr()
    assert _run(tmp_path / "listed", project, matrix=matrix) == 2
    assert "no band for preset 'mini'" in capsys.readouterr().err
    assert main(["record-convergence", "--project", str(project), "--preset", "mini"]) == 0
    assert _run(tmp_path / "both", project, matrix=matrix) == 0
    conv = convergence(tmp_path / "both")
    assert conv["mini"].status == "pass" and "mini/reference" in conv["mini"].detail


def _corpus_project(root: Path, low: int) -> Path:
    """A project training on its own 3,000-byte file corpus, whose contract wants ``low``+."""
    root.mkdir(parents=True)
    (root / "data.txt").write_text("To be, or not to be.\n" * 150)  # 3,150 bytes
    (root / "harness.toml").write_text(
        f'[project]\nname = "own-corpus"\n\n[corpus]\nbytes = [{low}, 10_000]\nsha256 = "any"\n\n'
        '[[corpus.source]]\nkind = "file"\npath = "data.txt"\n'
    )
    return root


@needs_build
@pytest.mark.parametrize(("low", "code", "status"), [(1_000, 0, "pass"), (5_000, 1, "fail")])
def test_a_project_runs_corpus_cells_judge_its_own_corpus_by_its_contract(
    tmp_path: Path, low: int, code: int, status: str
) -> None:
    """run --project: the host cell's corpus rows judge the corpus the project trains on (its
    file source) by the profile's contract, naming the file, not the default corpus by the
    default identity; a contract the file does not meet fails the run."""
    project = _corpus_project(tmp_path / "p", low)
    extra = "[check.corpus]\nconvergence = false\n"
    assert _run(tmp_path / "r", project, extra=extra) == code
    rows = read_rows(tmp_path / "r" / f"run-native-{len(extra)}" / RESULTS_FILE)
    corpus = {r.subject: r for r in rows if r.check == "corpus"}
    assert set(corpus) == {"contract:bytes"}
    got = corpus["contract:bytes"]
    assert got.status == status and got.value == 3150.0
    assert got.detail.startswith("the project's corpus data.txt: ")
    meta = json.loads((tmp_path / "r" / f"run-native-{len(extra)}" / "run.json").read_text())
    want = hashlib.sha256((project / "data.txt").read_bytes()).hexdigest()
    assert meta["corpus_sha256"] == want  # run.json names the corpus the cells judged


@needs_build
def test_without_a_band_the_bundled_band_still_trains_on_the_default_corpus(
    tmp_path: Path,
) -> None:
    """A project with its own (3 KB, one repeated line) corpus but no band: its corpus rows
    judge that file, while convergence is the bundled band's, recorded on the default corpus, so
    the kernel trains on the default corpus (on the file its loss would fall far below the
    band) and passes."""
    project = _corpus_project(tmp_path / "p", 1_000)
    assert _run(tmp_path / "r", project) == 0
    rows = read_rows(tmp_path / "r" / "run-native-0" / RESULTS_FILE)
    got = {r.subject: r for r in rows if r.check == "corpus" and r.metric != "loss"}
    assert got["contract:bytes"].detail.startswith("the project's corpus data.txt: ")
    assert got["convergence"].status == "pass"


@needs_build
def test_a_project_without_a_corpus_contract_keeps_the_matrix_corpus_rows(tmp_path: Path) -> None:
    """A profile that trains on its own file ([convergence] corpus) but states no [corpus]
    contract is not judged by our identity: its cells keep the default corpus's rows (pass)."""
    project = _project(tmp_path / "p", 'corpus = "data.txt"\n')
    (project / "data.txt").write_text("To be, or not to be.\n" * 150)
    extra = "[check.corpus]\nconvergence = false\n"
    assert _run(tmp_path / "r", project, extra=extra) == 0
    rows = read_rows(tmp_path / "r" / f"run-native-{len(extra)}" / RESULTS_FILE)
    corpus = {r.subject: r for r in rows if r.check == "corpus"}
    assert set(corpus) == {
        "identity:sha256",
        "identity:bytes",
        "identity:charset",
        "identity:lines",
    }
    assert all(
        r.status == "pass" and r.detail.startswith("default corpus: ") for r in corpus.values()
    )
