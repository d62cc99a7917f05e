"""``check defaults`` on a project profile: the project's own oracle, modes, surface formats."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli import main
from harness.profile import DEFAULT_PROFILE, ProfileError, load_profile
from harness.project import defaults


def _run(project: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["check", "defaults", "--project", str(project)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_drifted_reports_every_lr_drift_at_file_line(
    drifted: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """lr 3e-3 in types.ts and in the Astro <input> both fail at their lines; exit 1."""
    code, out, _err = _run(drifted, capsys)
    assert code == 1
    fails = [line for line in out.splitlines() if line.strip().startswith("fail")]
    assert len(fails) == 2, out
    assert "browser/src/types.ts:16" in fails[0] and "found 3e-3" in fails[0]
    assert "browser/src/pages/index.astro:11" in fails[1] and "found 0.003" in fails[1]


def test_fixed_passes_against_the_projects_own_oracle(
    fixed: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Seed 42 is the project's (not our 1337); tuple betas, JSON arrays, C call args all match."""
    code, out, _err = _run(fixed, capsys)
    assert code == 0, out
    assert "oracle python_ref/train.py:15: seed = 42" in out
    assert "beta2 (as 'betas.1')" in out  # the JSON array
    assert "kernels/adamw.cpp:18: matches beta1 (as 'adamw_update.6')" in out
    assert "warmup" not in out  # a key the project does not have is never compared


def test_not_applicable_keys_are_listed_with_their_reason(fixed: Path) -> None:
    """dropout is not-applicable: one skipped row quoting the reason, never a silent pass."""
    outcomes = defaults.check(load_profile(fixed / "harness.toml"))
    na = [o for o in outcomes if o.subject == "not-applicable:dropout"]
    assert len(na) == 1 and na[0].status == "skipped"
    assert "ablations only" in na[0].detail
    assert not [o for o in outcomes if o.subject.endswith(":dropout") and o.status == "pass"]


def test_a_drifted_oracle_makes_every_surface_fail(fixed: Path) -> None:
    """The oracle is the project's file: changing it there fails every surface stating the key."""
    train = fixed / "python_ref" / "train.py"
    train.write_text(train.read_text().replace("seed: int = 42", "seed: int = 7"))
    outcomes = defaults.check(load_profile(fixed / "harness.toml"))
    failed = sorted(o.subject for o in outcomes if o.status == "fail")
    assert failed == ["config-json:seed", "ui-types:seed"]


def test_builtin_oracle_with_a_not_applicable_key(tmp_path: Path) -> None:
    """oracle = "builtin" is TrainingDefaults; a key the project lacks is not-applicable."""
    (tmp_path / "cfg.json").write_text('{"lr": 3e-4, "seed": 42}\n')
    (tmp_path / "harness.toml").write_text(
        '[defaults]\noracle = "builtin"\n\n[defaults.keys]\n'
        'warmup_steps = { mode = "not-applicable", reason = "no warmup in this project" }\n\n'
        '[[defaults.surfaces]]\nname = "cfg"\npath = "cfg.json"\nformat = "json"\n'
        'keys = { lr = "learning_rate" }\ncovers = ["learning_rate", "seed", "warmup_steps"]\n'
    )
    outcomes = defaults.check(load_profile(tmp_path / "harness.toml"))
    by = {o.subject: o for o in outcomes}
    assert by["not-applicable:warmup_steps"].status == "skipped"
    assert by["cfg:learning_rate (as 'lr')"].status == "pass"
    # TrainingDefaults' seed is 1337: the project's 42 fails against the builtin oracle
    assert by["cfg:seed"].status == "fail" and "cfg.json:1" in by["cfg:seed"].detail


def test_default_profile_checks_this_repository(capsys: pytest.CaptureFixture[str]) -> None:
    """Without --project (and no ./harness.toml) the bundled profile checks our README."""
    profile = load_profile(DEFAULT_PROFILE)
    assert profile.is_default and profile.defaults is not None
    outcomes = defaults.check(profile)
    assert {o.status for o in outcomes} == {"pass"}
    assert any(o.subject == "readme:learning_rate" for o in outcomes)


# ---- bad input: exit 2 with file:line --------------------------------------------------------


def _edit(project: Path, old: str, new: str) -> None:
    p = project / "harness.toml"
    text = p.read_text()
    assert old in text
    p.write_text(text.replace(old, new, 1))


def _line_of(project: Path, needle: str) -> int:
    lines = (project / "harness.toml").read_text().splitlines()
    return next(i for i, s in enumerate(lines, start=1) if needle in s)


def test_missing_file_exits_2_at_its_line(
    drifted: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A surface path that does not exist: exit 2 naming the profile line of that path."""
    _edit(drifted, 'path = "configs/training.json"', 'path = "configs/train.json"')
    code, _out, err = _run(drifted, capsys)
    assert code == 2
    assert f"harness.toml:{_line_of(drifted, 'configs/train.json')}:" in err
    assert "'configs/train.json' not found" in err


def test_unknown_key_exits_2_at_its_line(drifted: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A misspelt field of a surface: exit 2 naming the line and the allowed keys."""
    _edit(drifted, 'object = "DEFAULT_CONFIG"', 'objekt = "DEFAULT_CONFIG"')
    code, _out, err = _run(drifted, capsys)
    assert code == 2
    assert f"harness.toml:{_line_of(drifted, 'objekt')}: defaults.surfaces[1].objekt" in err
    assert "unknown key" in err


def test_an_empty_covers_exits_2_at_its_line(tmp_path: Path) -> None:
    """``covers = []`` is refused at its line: read as "every key" (the old reading) or as "no
    key", it passes a surface that states nothing, so the profile must say which keys."""
    (tmp_path / "cfg.json").write_text('{"seed": 1337}\n')
    (tmp_path / "harness.toml").write_text(
        '[defaults]\noracle = "builtin"\n\n[[defaults.surfaces]]\nname = "cfg"\n'
        'path = "cfg.json"\nformat = "json"\ncovers = []\n'
    )
    with pytest.raises(ProfileError, match=r"harness.toml:8: defaults.surfaces\[0\].covers: "
                       "an empty list covers no key"):  # fmt: skip
        load_profile(tmp_path / "harness.toml")


def test_a_shorthand_property_of_a_covered_key_exits_2_saying_why(tmp_path: Path) -> None:
    """``{ lr }`` (its value a variable computed by code) states no value: a covered key written
    that way exits 2 at the surface, and the message names the shorthand, not only `keys`."""
    (tmp_path / "cfg.ts").write_text(
        "const lr = 10 * 3e-4;\nexport const cfg = { lr, seed: 1337 };\n"
    )
    (tmp_path / "harness.toml").write_text(
        '[defaults]\noracle = "builtin"\n\n[[defaults.surfaces]]\nname = "cfg"\n'
        'path = "cfg.ts"\nformat = "typescript"\nobject = "cfg"\n'
        'keys = { lr = "learning_rate" }\ncovers = ["learning_rate", "seed"]\n'
    )
    with pytest.raises(ProfileError, match=r"harness.toml:4: cfg: .*learning_rate.*shorthand"):
        defaults.check(load_profile(tmp_path / "harness.toml"))


def test_unknown_oracle_key_mode_exits_2(drifted: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A mode for a key the oracle does not state (warmup in this project): exit 2 at its line."""
    _edit(drifted, "[defaults.keys]\n", '[defaults.keys]\nwarmup_steps = "compare"\n')
    code, _out, err = _run(drifted, capsys)
    assert code == 2
    assert f"harness.toml:{_line_of(drifted, 'warmup_steps')}:" in err
    assert "no extractable value for 'warmup_steps'" in err


def test_compare_key_with_no_extractable_value_exits_2(
    drifted: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A surface covering a compare key it does not state: exit 2 at the surface's line."""
    types = drifted / "browser" / "src" / "types.ts"
    types.write_text(types.read_text().replace("  seed: 42,\n", ""))
    code, _out, err = _run(drifted, capsys)
    assert code == 2
    header = _line_of(drifted, 'name = "ui-types"') - 1  # the [[defaults.surfaces]] line
    assert f"harness.toml:{header}:" in err
    assert "no extractable value for compare key(s) seed" in err


def test_an_artifact_given_as_a_bare_path_is_refused_at_its_line(tmp_path: Path) -> None:
    """``[artifacts]`` holds one table per artifact (format, files, binding:
    tests/project/test_project_artifacts.py); a bare path is refused at its line."""
    p = tmp_path / "harness.toml"
    p.write_text('[project]\nname = "x"\n\n[artifacts]\nnative = "x.so"\n')
    with pytest.raises(ProfileError, match=r"harness.toml:5: artifacts.native: must be a table"):
        load_profile(p)


def test_tuple_argparse_and_c_surfaces(tmp_path: Path) -> None:
    """The new extractors: Python tuples and argparse defaults, C #define/constexpr/call args."""
    from harness.surfaces import extract

    py = tmp_path / "t.py"
    py.write_text(
        "import argparse\nBETAS = (0.9, 0.95)\np = argparse.ArgumentParser()\n"
        'p.add_argument("--learning-rate", "-l", type=float, default=3e-4)\n'
    )
    got = {e.key: (e.value, e.line) for e in extract(py, "python")}
    assert got == {"BETAS.0": (0.9, 2), "BETAS.1": (0.95, 2), "learning_rate": (3e-4, 4)}
    c = tmp_path / "k.c"
    c.write_text(
        "#define EPS 1e-8f\n// #define OLD 3\nstatic const double WD = 0.1;\n"
        "constexpr float kB1{0.9f};\nvoid adam(float a, float b);\n"
        "void f(void) { adam(lr, 0.95f); }\n"
    )
    got = {e.key: (e.value, e.line) for e in extract(c, "c", {"calls": ["adam"]})}
    assert got == {"EPS": (1e-8, 1), "WD": (0.1, 3), "kB1": (0.9, 4), "adam.1": (0.95, 6)}


def test_textarea_surface(tmp_path: Path) -> None:
    """A <textarea> is an entry: its decoded text at the line where the text starts."""
    from harness.surfaces import extract

    page = tmp_path / "p.html"
    page.write_text('<form>\n<textarea id="t">\nA &amp; B\n</textarea>\n<input id="x" value="1">')
    got = {e.key: (e.value, e.line) for e in extract(page, "html")}
    assert got == {"t": ("A & B\n", 3), "x": (1, 5)}


def test_a_value_bound_to_code_is_not_an_entry(tmp_path: Path) -> None:
    """value={DEFAULT_CONFIG.learningRate} states nothing in the page (the TS surface does)."""
    from harness.surfaces import extract

    page = tmp_path / "index.astro"
    page.write_text(
        '<input id="lr" value={DEFAULT_CONFIG.learningRate} />\n<input id="s" value={7} />'
    )
    assert [(e.key, e.value) for e in extract(page, "html")] == [("s", 7)]


def test_the_oracles_renames_are_the_projects_vocabulary(fixed: Path) -> None:
    """The oracle maps lr -> learning_rate; a JSON stating "lr" is read with that rename."""
    cfg = fixed / "configs" / "training.json"
    cfg.write_text(cfg.read_text().replace('"learning_rate": 3e-4', '"lr": 3e-3'))
    outcomes = defaults.check(load_profile(fixed / "harness.toml"))
    (bad,) = [o for o in outcomes if o.status == "fail"]
    assert bad.subject == "config-json:learning_rate (as 'lr')"
    assert "configs/training.json:3" in bad.detail


def test_argparse_default_naming_a_module_constant(tmp_path: Path) -> None:
    """default=DEFAULT_LR states the constant's value, at the constant's line."""
    from harness.surfaces import extract

    py = tmp_path / "train.py"
    py.write_text(
        "import argparse\nDEFAULT_LR = 3e-4\n\ndef main():\n    p = argparse.ArgumentParser()\n"
        '    p.add_argument("--lr", default=DEFAULT_LR)\n'
    )
    got = [(e.key, e.value, e.line) for e in extract(py, "python")]
    assert got == [("DEFAULT_LR", 3e-4, 2), ("lr", 3e-4, 2)]


def test_missing_corpus_sha256_is_named_missing(fixed: Path) -> None:
    """A [corpus] without `sha256` says the key is missing (it said "got a table None"), at
    the [corpus] line."""
    _edit(fixed, 'sha256 = "any"\n', "")
    with pytest.raises(ProfileError) as info:
        load_profile(fixed / "harness.toml")
    message = str(info.value)
    assert f"harness.toml:{_line_of(fixed, '[corpus]')}: corpus: missing key 'sha256'" in message
    assert "None" not in message


def test_an_unbuilt_site_does_not_stop_the_other_checks(
    fixed: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The page source's site is a build output: before `npm run build` it is missing. The
    defaults and claims checks still run; check corpus reports that source as an error that
    says to build the site (exit 1), not a bad profile (exit 2)."""
    import shutil

    shutil.rmtree(fixed / "dist")
    code, _out, err = _run(fixed, capsys)
    assert code == 0, err
    code = main(["check", "corpus", "--project", str(fixed)])
    out = capsys.readouterr().out
    assert code == 1
    assert "site directory 'dist' not found" in out and "build the site first" in out


def test_an_oracle_that_states_nothing_exits_2_at_the_oracle(
    fixed: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A stub oracle (a docstring-only train.py): exit 2 at [defaults.oracle], saying it states
    no value, not that the profile has no [defaults]."""
    (fixed / "python_ref" / "train.py").write_text('"""The trainer: see the docs."""\n')
    code, _out, err = _run(fixed, capsys)
    assert code == 2
    assert f"harness.toml:{_line_of(fixed, '[defaults.oracle]')}: defaults.oracle:" in err
    assert "python_ref/train.py states no value" in err
    assert "has no [defaults] section" not in err


def test_the_oracles_ignore_drops_its_keys_and_tables(fixed: Path) -> None:
    """`ignore` on a JSON oracle leaves out a key and, by its name, a whole table of notes."""
    (fixed / "configs" / "training.json").write_text(
        '{"training": {"learning_rate": 3e-4, "betas": [0.9, 0.95], "eps": 1e-8,\n'
        '"weight_decay": 0.1, "batch_size": 16, "block_size": 64, "seed": 42,\n'
        '"max_steps": 2000, "optimizer": "adamw", "dropout": 0.1},\n'
        '"_notes": {"initial_loss": "about ln(256)", "why": "prose"}}\n'
    )
    profile = fixed / "harness.toml"
    text = profile.read_text()
    old = (
        "[defaults.oracle]                 # the Python reference's dataclass is the oracle\n"
        'path = "python_ref/train.py"\nformat = "python"\nprefix = "TrainConfig."\n'
        'keys = { lr = "learning_rate" }\n'
    )
    assert old in text
    text = text.replace(
        old,
        '[defaults.oracle]\npath = "configs/training.json"\nformat = "json"\n'
        'prefix = "training."\nignore = ["optimizer", "max_steps", "_notes"]\n',
    )
    profile.write_text(text.replace('[[defaults.surfaces]]\nname = "config-json"\npath = '
                                    '"configs/training.json"\nformat = "json"\nprefix = '
                                    '"training."\nignore = ["max_steps"]\n\n', ""))  # fmt: skip
    keys = {o.subject for o in defaults.check(load_profile(profile))}
    assert "oracle:learning_rate" in keys and "oracle:beta2" in keys
    assert not {k for k in keys if "optimizer" in k or "_notes" in k or "max_steps" in k}


def test_a_string_value_of_a_page_is_quoted_in_its_message(tmp_path: Path) -> None:
    """An <input> holding prose: the row quotes it (an empty textarea shows as "")."""
    from harness.surfaces import extract

    page = tmp_path / "p.html"
    page.write_text('<input id="prompt" value="The model">\n<textarea id="c"></textarea>')
    assert [(e.key, e.raw) for e in extract(page, "html")] == [
        ("prompt", '"The model"'), ("c", '""')
    ]  # fmt: skip


def test_typescript_type_aliases_and_interfaces_state_no_values(tmp_path: Path) -> None:
    """Without `object`, a message union's string-literal types (`{ type: "train" }`) and an
    interface's members are types, not defaults; the consts and object literals are read."""
    from harness.surfaces import extract

    ts = tmp_path / "types.ts"
    ts.write_text(
        'export type Backend = "wasm" | "webgpu";\n'
        'export interface RunConfig {\n  seed: number;\n  backend: "wasm" | "webgpu";\n}\n'
        "export const DEFAULT_CONFIG: RunConfig = {\n  learningRate: 3e-4,\n  seed: 42,\n};\n"
        "export type ToWorker =\n"
        '  | { type: "train"; text: string }\n  | { type: "sample"; temperature: 0.8 }\n'
        'type Alias<T = number> = { kind: "x" }\n'
        "const LR = 3e-3;\n"
    )
    got = [(e.key, e.value, e.line) for e in extract(ts, "typescript")]
    assert got == [("learningRate", 3e-4, 7), ("seed", 42, 8), ("LR", 3e-3, 14)]


def test_typescript_nested_objects_and_arrays_are_keyed_by_path(tmp_path: Path) -> None:
    """`sched: { minLr }` states `sched.minLr` (so `prefix`/`ignore` can name `sched.`), and
    `betas: [0.9, 0.95]` states `betas.0` / `betas.1` (read as beta1 / beta2), as in JSON."""
    from harness.surfaces import extract

    ts = tmp_path / "config.ts"
    ts.write_text(
        "export const DEFAULT_CONFIG = {\n  learningRate: 3e-4,\n  betas: [0.9, 0.95],\n"
        "  sched: { warmupSteps: 100, minLr: 1e-5 },\n  model: {\n    attn: { heads: 4 },\n"
        "  },\n} as const;\n"
    )
    entries = extract(ts, "typescript", {"object": "DEFAULT_CONFIG"})
    got = [(e.key, e.value, e.line) for e in entries]
    assert got == [("learningRate", 3e-4, 2), ("betas.0", 0.9, 3), ("betas.1", 0.95, 3),
                   ("sched.warmupSteps", 100, 4), ("sched.minLr", 1e-5, 4),
                   ("model.attn.heads", 4, 6)]  # fmt: skip
    assert [defaults.canonical(k) for k in ("betas.0", "betas.1")] == ["beta1", "beta2"]


def test_a_select_states_its_selected_option(tmp_path: Path) -> None:
    """A <select> states the option a browser shows: the `selected` one (its value, else its
    text), else the first; at that option's line."""
    from harness.surfaces import extract

    page = tmp_path / "index.astro"
    page.write_text(
        '<select id="batch">\n  <option>8</option>\n  <option selected>32</option>\n</select>\n'
        '<select name="backend"><option value="wasm">WASM</option><option value="webgpu">'
        "WebGPU</option></select>\n"
    )
    assert [(e.key, e.value, e.line) for e in extract(page, "html")] == [
        ("batch", 32, 3), ("backend", "wasm", 5)
    ]  # fmt: skip


def _project(tmp: Path, oracle: str, surface: str, fmt: str = "typescript") -> Path:
    """A project whose oracle is ``train.py`` (class ``Cfg``) and whose one surface is ``ui.ts``
    (``object = "CONFIG"``) or ``cfg.json``; returns the profile's path."""
    (tmp / "train.py").write_text(oracle)
    name = "ui.ts" if fmt == "typescript" else "cfg.json"
    (tmp / name).write_text(surface)
    profile = tmp / "harness.toml"
    profile.write_text(
        '[defaults.oracle]\npath = "train.py"\nformat = "python"\nprefix = "Cfg."\n\n'
        f'[[defaults.surfaces]]\nname = "ui"\npath = "{name}"\nformat = "{fmt}"\n'
        + ('object = "CONFIG"\n' if fmt == "typescript" else "")
        + 'keys = { lr = "learning_rate" }\n'
    )
    return profile


_ORACLE = "class Cfg:\n    learning_rate: float = 3e-4\n    seed: int = 42\n"
_UI = "export const CONFIG = {\n  lr: 3e-4,\n  seed: 42,\n};\n"


def test_an_oracle_field_stated_twice_has_its_last_value_and_fails_as_ambiguous(
    tmp_path: Path,
) -> None:
    """A dataclass field annotated twice: Python keeps the last (3e-3), so the surfaces are
    compared with it, and the oracle row fails naming both lines (not a silent first-wins)."""
    profile = _project(tmp_path, _ORACLE + "    learning_rate: float = 3e-3\n", _UI)
    by = {o.subject: o for o in defaults.check(load_profile(profile))}
    row = by["oracle:learning_rate"]
    assert row.status == "fail"
    assert "train.py:4: learning_rate = 0.003" in row.detail and "3e-4 at train.py:2" in row.detail
    assert by["ui:learning_rate (as 'lr')"].status == "fail"
    assert "expected 0.003" in by["ui:learning_rate (as 'lr')"].detail
    loaded = load_profile(profile)
    assert loaded.defaults is not None
    assert defaults.oracle_values(loaded, loaded.defaults)["learning_rate"] == (3e-3, "train.py:4")


def test_an_oracle_dict_key_written_twice_fails_unless_the_values_agree(tmp_path: Path) -> None:
    """A dict literal's key written twice: the last value is the oracle's; a repeat of the same
    value is no ambiguity (pass), another value fails the oracle row at both lines."""
    oracle = 'CFG = {\n    "learning_rate": 3e-4,\n    "seed": 42,\n    "learning_rate": %s,\n}\n'
    for value, status in (("0.0003", "pass"), ("3e-3", "fail")):
        profile = _project(tmp_path, oracle % value, _UI)
        profile.write_text(profile.read_text().replace('prefix = "Cfg."', 'prefix = "CFG."'))
        by = {o.subject: o for o in defaults.check(load_profile(profile))}
        assert by["oracle:learning_rate"].status == status, by["oracle:learning_rate"].detail
        assert "train.py:4" in by["oracle:learning_rate"].detail


def test_an_oracle_key_last_stated_as_code_exits_2_at_that_line(tmp_path: Path) -> None:
    """A field whose last statement is code (`3 * 1e-3`) after a literal: the stale literal is
    never used; exit 2 naming the code's file:line."""
    profile = _project(tmp_path, _ORACLE + "    learning_rate: float = 3 * 1e-3\n", _UI)
    with pytest.raises(
        ProfileError, match=r"train\.py:4: learning_rate is last stated as `3 \* 1e-3`"
    ):
        defaults.check(load_profile(profile))


def test_a_ts_property_last_written_as_code_exits_2_at_its_line(tmp_path: Path) -> None:
    """`lr: 3e-4, ..., lr: 10 * 3e-4`: JS keeps the last, which is code, so the literal must not
    pass for it; exit 2 at the code's file:line asking for a literal."""
    ui = "export const CONFIG = {\n  lr: 3e-4,\n  seed: 42,\n  lr: 10 * 3e-4, // hotter\n};\n"
    profile = _project(tmp_path, _ORACLE, ui)
    with pytest.raises(ProfileError) as exc:
        defaults.check(load_profile(profile))
    msg = str(exc.value)
    assert "ui.ts:4: learning_rate (as 'lr') is written as `10 * 3e-4`, not a literal" in msg
    assert "it replaces the 3e-4 at line 2" in msg and "write the value as a literal" in msg


def test_a_covered_key_written_as_code_names_its_line_not_only_covers(tmp_path: Path) -> None:
    """`lr: 3 * 1e-4` (or `3e-3 as number`) alone: exit 2 names the property's file:line and
    asks for a literal; narrowing `covers` is not offered as the fix (it would hide a drift)."""
    for code in ("3 * 1e-4", "3e-3 as number"):
        profile = _project(tmp_path, _ORACLE, _UI.replace("3e-4", code))
        with pytest.raises(ProfileError) as exc:
            defaults.check(load_profile(profile))
        msg = str(exc.value)
        assert f"ui.ts:2: learning_rate (as 'lr') is written as `{code}`" in msg
        assert "the check reads literal values only" in msg
        assert "narrow `covers`, or" not in msg


def test_a_ts_property_written_as_code_for_an_unknown_key_fails(tmp_path: Path) -> None:
    """`labelSmoothing: 1 / 10` is a stated key the oracle lacks: it fails like a literal one."""
    profile = _project(
        tmp_path, _ORACLE, _UI.replace("  seed", "  labelSmoothing: 1 / 10,\n  seed")
    )
    by = {o.subject: o for o in defaults.check(load_profile(profile))}
    row = by["ui:labelSmoothing"]
    assert row.status == "fail" and "ui.ts:3" in row.detail and "1 / 10" in row.detail


def test_code_replaced_by_a_later_literal_is_dead_and_the_literal_compares(tmp_path: Path) -> None:
    """`lr: 10 * 3e-4, lr: 3e-4`: the last (a literal) is the value in effect; it is compared."""
    ui = "export const CONFIG = {\n  lr: 10 * 3e-4,\n  lr: 3e-4,\n  seed: 42,\n};\n"
    by = {o.subject: o for o in defaults.check(load_profile(_project(tmp_path, _ORACLE, ui)))}
    assert by["ui:learning_rate (as 'lr')"].status == "pass"
    assert "ui.ts:3" in by["ui:learning_rate (as 'lr')"].detail


def test_a_json_key_written_twice_is_compared_at_each_line(tmp_path: Path) -> None:
    """JSON's duplicate key (the parser keeps the last): each statement is compared, so the last
    one's drift fails at its line, as a stale earlier copy would."""
    cfg = '{\n  "lr": 0.0003,\n  "lr": 0.003,\n  "seed": 42\n}\n'
    by = [o for o in defaults.check(load_profile(_project(tmp_path, _ORACLE, cfg, "json")))]
    fails = [o for o in by if o.status == "fail"]
    assert len(fails) == 1 and "cfg.json:3" in fails[0].detail
