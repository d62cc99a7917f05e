"""Host ``none``: a matrix cell that runs the profile's text-only checks, no artifact, no host.

Issue 11 part 7. The cell goes through ``check defaults|corpus|claims``'s own code
(``harness/project/command.py: check_profile``) and is recorded, reported, compared and
resumed like any cell; a check that needs a host on host ``none`` is exit 2 at the matrix's
line.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from harness.cli import main
from harness.matrix import Cell, MatrixError, Names, expand_cells, load_matrix
from harness.rundir.reader import read_rows
from harness.rundir.rows import RESULTS_FILE, Row

SHIPPED = Path(__file__).parents[2] / "matrices" / "project.toml"  # one host none cell
NAMES = Names(hosts=("native", "node24"), artifacts=("native", "wasm32"))
TEXT_ONLY = """\
name = "text"
checks = ["defaults", "corpus", "claims"]

[hosts]
none = {}
"""


def _matrix(tmp_path: Path, text: str) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "m.toml"
    path.write_text(textwrap.dedent(text))
    return path


def _error(tmp_path: Path, text: str) -> str:
    with pytest.raises(MatrixError) as exc:
        load_matrix(_matrix(tmp_path, text), NAMES)
    return str(exc.value)


def test_a_host_none_matrix_needs_no_artifact_or_preset(tmp_path: Path) -> None:
    """Host ``none`` alone: no `artifacts`, no `presets`; one cell, ``none/-/-``."""
    m = load_matrix(_matrix(tmp_path, TEXT_ONLY), NAMES)
    assert expand_cells(m) == [Cell("none", "-", "-", ("defaults", "corpus", "claims"))]


def test_host_none_is_one_cell_beside_the_host_cells(tmp_path: Path) -> None:
    """Artifacts x presets multiply the host cells, not host ``none``; `host = "*"` does not
    match it (a rule names it)."""
    m = load_matrix(
        _matrix(
            tmp_path,
            """\
            name = "mixed"
            artifacts = ["native", "wasm32"]
            presets = ["tiny", "small"]
            checks = ["smoke", "defaults", "claims"]

            [hosts]
            native = {}
            none = {}

            [[exclude]]
            host = "*"
            check = "claims"

            [[exclude]]
            host = "native"
            artifact = "wasm32"

            [[exclude]]
            host = "none"
            check = "smoke"
            """,
        ),
        NAMES,
    )
    cells = {c.id: c.checks for c in expand_cells(m)}
    assert cells == {
        "native/native/small": ("smoke", "defaults"),
        "native/native/tiny": ("smoke", "defaults"),
        "none/-/-": ("defaults", "claims"),
    }


def test_a_check_that_needs_a_host_on_host_none_exits_at_its_line(tmp_path: Path) -> None:
    """ops on host none: the error names `hosts.none`'s line and the fix."""
    msg = _error(tmp_path, TEXT_ONLY.replace('"claims"]', '"claims", "ops", "bench"]'))
    assert msg.startswith(f"{tmp_path / 'm.toml'}:5: host 'none' loads no artifact")
    assert "not ops, bench" in msg and '[[exclude]] host = "none"' in msg


def test_an_include_that_gives_host_none_a_host_check_exits_at_the_rule(tmp_path: Path) -> None:
    """The include rule that added `model` to the none cell is the line named."""
    msg = _error(
        tmp_path,
        TEXT_ONLY + '\n[[include]]\nhost = "none"\ncheck = "model"\n',
    )
    assert msg.startswith(f"{tmp_path / 'm.toml'}:7: host 'none' loads no artifact")


def test_claims_on_a_host_exits_at_its_line(tmp_path: Path) -> None:
    """`claims` is text-only: on a host that loads artifacts it is a config error."""
    msg = _error(
        tmp_path,
        """\
        name = "t"
        artifacts = ["native"]
        presets = ["tiny"]
        checks = ["smoke",
                  "claims"]

        [hosts]
        native = {}
        """,
    )
    assert msg.startswith(f"{tmp_path / 'm.toml'}:5: check claims is text-only")


def test_host_none_takes_no_version_and_a_host_matrix_still_needs_artifacts(
    tmp_path: Path,
) -> None:
    """`none = { version = ... }` is refused; a matrix with a real host still needs `artifacts`."""
    assert "write none = {}" in _error(
        tmp_path, TEXT_ONLY.replace("none = {}", 'none = { version = "1" }')
    )
    msg = _error(tmp_path, TEXT_ONLY.replace("none = {}", "none = {}\nnative = {}"))
    assert "missing required key 'artifacts'" in msg


def _run(tmp_path: Path, matrix: str, *extra: str) -> tuple[int, Path]:
    out = tmp_path / "run"
    code = main(["run", "--matrix", str(_matrix(tmp_path, matrix)), "--out", str(out), *extra])
    return code, out


def test_defaults_and_claims_of_the_default_profile_in_a_run(tmp_path: Path) -> None:
    """Without --project, host none checks the bundled default profile, as `check` does: its
    rows are the command's outcomes, the verdict row closes the cell, run.json names the
    profile, JUnit has a testcase per check, and the report shows the cell."""
    matrix = TEXT_ONLY.replace('"corpus", ', "")
    code, out = _run(tmp_path, matrix, "--junit", str(tmp_path / "junit.xml"))
    assert code == 0
    junit = (tmp_path / "junit.xml").read_text()
    assert '<testcase classname="none/-/-" name="defaults"' in junit
    assert '<testcase classname="none/-/-" name="claims"' in junit
    rows = read_rows(out / RESULTS_FILE)
    assert {r.cell for r in rows} == {"none/-/-"}
    assert all(r.artifact_sha256 == "" for r in rows)
    assert rows[-1].is_verdict and rows[-1].status == "pass"
    seed = [r for r in rows if r.check == "defaults" and r.subject == "readme:seed"]
    assert seed and "README.md:" in seed[0].detail
    skipped = [r for r in rows if r.check == "claims" and r.status == "skipped"]
    assert skipped and "needs a run" in skipped[0].detail  # listed, not passed
    meta = json.loads((out / "run.json").read_text())
    assert meta["profile"]["path"].endswith("harness/profiles/default.toml")
    assert meta["artifacts"] == {} and meta["presets"] == {}
    assert main(["report", str(out)]) == 0
    assert "| none | -: ✅ pass |" in (out / "summary.md").read_text()  # its verdict, shown


def test_a_host_check_on_host_none_via_checks_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`run --checks ops` would give host none a check that needs a host: exit 2, its line."""
    code, _ = _run(tmp_path, TEXT_ONLY, "--checks", "ops")
    assert code == 2
    assert f"{tmp_path / 'm.toml'}:5: host 'none' loads no artifact" in capsys.readouterr().err


def test_a_profile_without_the_checks_section_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """host none runs claims, the profile has no [claims]: exit 2 at load, naming both."""
    profile = tmp_path / "harness.toml"
    profile.write_text('[project]\nname = "bare"\n\n[corpus]\ncontract = "builtin"\n\n'
                       '[[corpus.source]]\nkind = "default"\n')  # fmt: skip
    code, _ = _run(tmp_path, TEXT_ONLY, "--project", str(profile))
    assert code == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'm.toml'}:5: host 'none' runs check defaults, claims" in err
    assert str(profile) in err


def _by_check(rows: list[Row]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for r in rows:
        out.setdefault(r.check, set()).add(r.status)
    return out


@pytest.mark.chromium
def test_the_fixture_project_drifted_fails_at_file_line_and_fixed_passes(
    tmp_path: Path, drifted: Path, fixed: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 11's acceptance through `run --project` and matrices/project.toml: drifted exits
    1 with every drift at file:line in the rows (TS and HTML lr, the 863-byte textarea, the
    single-point claim); fixed exits 0. compare sees the broken cell; resume refuses another
    profile."""
    shipped = SHIPPED.read_text()
    code, bad = _run(tmp_path / "d", shipped, "--project", str(drifted))
    assert code == 1
    rows = read_rows(bad / RESULTS_FILE)
    details = "\n".join(r.detail for r in rows if r.status == "fail")
    for needle in (
        "browser/src/types.ts:16: MISMATCH learning_rate",
        "browser/src/pages/index.astro:11: MISMATCH learning_rate",
        "browser/src/pages/index.astro:16 <textarea id='corpus'>: FAILED",
        "README.md:7: REFUSED",
    ):
        assert needle in details, needle
    assert _by_check(rows)["cell"] == {"fail"}
    code, good = _run(tmp_path / "f", shipped, "--project", str(fixed))
    assert code == 0
    assert _by_check(read_rows(good / RESULTS_FILE))["cell"] == {"pass"}
    assert main(["compare", str(good), str(bad)]) == 1  # the broken cell fails the gate
    # a resumed run must check the same profile: mark the drifted run unfinished, resume it
    # with the fixed project
    meta = json.loads((bad / "run.json").read_text())
    (bad / "run.json").write_text(json.dumps({**meta, "status": "interrupted"}))
    resume = ["run", "--matrix", str(tmp_path / "d" / "m.toml"), "--resume", str(bad)]
    capsys.readouterr()
    assert main([*resume, "--project", str(fixed)]) == 2
    assert "another oracle: the run's profile" in capsys.readouterr().err
