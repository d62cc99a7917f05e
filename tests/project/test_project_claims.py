"""``check claims`` and external measurement files: claims measured by the project's scripts."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli import main
from harness.gate.claims import load_claims
from harness.gate.errors import GateInputError
from harness.gate.external import check_claim, load_measurements
from harness.profile import load_profile
from harness.project import claims


def test_drifted_single_point_is_refused_at_its_published_line(
    drifted: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """9.7x is one preset of 2.1..9.7 in the project's own file: refused at README.md:7, x given."""
    assert main(["check", "claims", "--project", str(drifted)]) == 1
    out = capsys.readouterr().out
    refused = [line for line in out.splitlines() if "REFUSED" in line]
    assert len(refused) == 1
    assert "README.md:7" in refused[0] and "varies by 362%" in refused[0]
    assert "bench/measure.ts at 4f2c9e1" in refused[0]  # the file's provenance is named


def test_fixed_curve_passes(fixed: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The same numbers published as a curve over presets pass, point by point."""
    assert main(["check", "claims", "--project", str(fixed)]) == 0
    out = capsys.readouterr().out
    assert out.count("the file has") == 3


def test_a_stale_point_in_the_file_fails(fixed: Path) -> None:
    """The project's script re-measured small at 6.1: the published 9.7 is stale."""
    results = fixed / "bench" / "results" / "browser.json"
    results.write_text(results.read_text().replace('"value": 9.7', '"value": 6.1'))
    got = claims.check(load_profile(fixed / "harness.toml"))
    stale = [o for o in got if "STALE" in o.detail]
    assert len(stale) == 1 and "preset=small" in stale[0].detail


def test_csv_measurements_name_any_backend(tmp_path: Path) -> None:
    """A CSV with provenance on every row; host/artifact are the project's (webgpu in Chrome)."""
    csv = tmp_path / "m.csv"
    csv.write_text(
        "host,artifact,preset,subject,metric,x,value,commit,machine,date,script\n"
        "chrome,webgpu,tiny,train_step,speedup,104832,2.1,4f2c9e1,M2,2026-11-20,measure.ts\n"
        "chrome,webgpu,small,train_step,speedup,411648,2.2,4f2c9e1,M2,2026-11-20,measure.ts\n"
    )
    data = load_measurements(csv)
    assert len(data.table) == 2 and data.provenance["script"] == "measure.ts"
    toml = tmp_path / "claims.toml"
    toml.write_text(
        'schema_version = 2\n[[claim]]\nid = "c"\nhost = "chrome"\nartifact = "webgpu"\n'
        'preset = "small"\nsubject = "train_step"\nmetric = "speedup"\nx = 411648\nvalue = 2.2\n'
        'tolerance = 0.1\nmeasurements = "m.csv"\npublished = { file = "R.md" }\n'
    )
    (claim,) = load_claims(toml).claims
    found = check_claim(claim, toml)
    # a 5 % spread across presets is not refused; the value is inside its band
    assert [f.status for f in found] == ["pass"]


def test_a_repeated_quantity_in_a_csv_is_refused_at_its_line(tmp_path: Path) -> None:
    """Two values for one quantity: row order would pick the one the claim is judged on."""
    csv = tmp_path / "m.csv"
    row = "chrome,webgpu,small,train_step,speedup,411648,{},4f2c9e1,M2,2026-11-20,measure.ts\n"
    csv.write_text(
        "host,artifact,preset,subject,metric,x,value,commit,machine,date,script\n"
        + row.format(2.2)
        + row.format(9.7)
    )
    with pytest.raises(GateInputError, match=r"m\.csv:3.*repeats chrome/webgpu/small train_step"):
        load_measurements(csv)


@pytest.mark.parametrize(
    ("edit", "where", "field"),
    [
        (('"script": "bench/measure.ts",', ""), ":3", "provenance.script"),
        (('"value": 4.3', '"value": "fast"'), ":13", "value"),
        (('"metric": "speedup", "x": 104832,', '"x": 104832,'), ":11", "metric"),
        (('"value": 4.3', '"value": true'), ":13", "value"),  # was read as 1.0
        (('"value": 4.3', '"value": "4.3"'), ":13", "value"),  # a JSON string, not a number
    ],
)
def test_bad_measurement_file_exits_2_with_file_line(
    drifted: Path,
    capsys: pytest.CaptureFixture[str],
    edit: tuple[str, str],
    where: str,
    field: str,
) -> None:
    """Missing provenance, a non-number, a missing column: exit 2 naming file:line and field."""
    results = drifted / "bench" / "results" / "browser.json"
    text = results.read_text()
    assert edit[0] in text
    results.write_text(text.replace(edit[0], edit[1], 1))
    with pytest.raises(GateInputError, match=field):
        load_measurements(results)
    assert main(["check", "claims", "--project", str(drifted)]) == 2
    err = capsys.readouterr().err
    assert f"browser.json{where}" in err and field in err


def test_claims_needing_a_run_are_listed_not_passed(capsys: pytest.CaptureFixture[str]) -> None:
    """The default profile's claims are measured by harness runs: skipped, each saying so."""
    got = claims.check(load_profile(Path(__file__).parents[2] / "harness/profiles/default.toml"))
    skipped = [o for o in got if o.status == "skipped"]
    assert skipped and all("needs a run" in o.detail for o in skipped)
    assert not [o for o in got if o.status in ("fail", "error")]


def test_signoff_checks_an_external_claim_against_its_file_not_the_run(
    tmp_path: Path, fixed: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """In `signoff RUN`, a claim citing a measurement file names cells the run lacks (chrome,
    webgpu): it is not an unknown cell, it is checked against the file."""
    from harness.rundir.rows import Row
    from tests.gate.gate_runs import write_run

    rows = [
        Row("native", "1.0", "native", "2" * 64, "tiny", "bench", "train_step", "measured",
            metric="speedup", value=2.0, x_name="params", x_value=5616.0)
    ]  # fmt: skip
    run = write_run(tmp_path / "run", rows)
    args = ["signoff", str(run), "--claims", str(fixed / "bench" / "claims.toml")]
    assert main([*args, "--root", str(fixed)]) == 0
    out = capsys.readouterr().out
    assert "webgpu-speedup at preset=small: published 9.7" in out and "browser.json" in out
    claims_toml = fixed / "bench" / "claims.toml"
    claims_toml.write_text(claims_toml.read_text().replace("tiny = 2.1", "tiny = 3.1"))
    (fixed / "README.md").write_text((fixed / "README.md").read_text().replace("2.1x", "3.1x"))
    assert main([*args, "--root", str(fixed)]) == 1
    assert "stale  webgpu-speedup at preset=tiny" in capsys.readouterr().out


@pytest.mark.parametrize("value", ["1_000", "1_0.5"])
def test_a_csv_value_that_is_not_a_decimal_number_is_refused(tmp_path: Path, value: str) -> None:
    """Python's float() reads "1_000" as 1000; a measurement's value is a decimal number."""
    csv = tmp_path / "m.csv"
    csv.write_text(
        "host,artifact,preset,subject,metric,value,commit,machine,date,script\n"
        f"chrome,webgpu,small,train_step,speedup,2.2,4f2c9e1,M2,2026-11-20,measure.ts\n"
        f"chrome,webgpu,tiny,train_step,speedup,{value},4f2c9e1,M2,2026-11-20,measure.ts\n"
    )
    with pytest.raises(GateInputError, match=r"m\.csv:3: field 'value'"):
        load_measurements(csv)


def test_a_published_readme_that_is_not_utf8_exits_2_naming_it(
    drifted: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A README with one Latin-1 byte: exit 2 naming README.md and the byte's offset."""
    readme = drifted / "README.md"
    readme.write_bytes(readme.read_bytes().replace(b"browser,", b"browser\xe9,"))
    assert main(["check", "claims", "--project", str(drifted)]) == 2
    err = capsys.readouterr().err
    assert "README.md:3:" in err and "not UTF-8" in err and "offset" in err


def test_a_binary_file_under_a_scan_glob_is_listed_as_skipped(
    fixed: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``docs/*`` matching a PNG: the image is not scanned, the output lists it, and the verdict
    is the claims' own (exit 0)."""
    claims_toml = fixed / "bench" / "claims.toml"
    claims_toml.write_text(
        claims_toml.read_text().replace('files = ["README.md"]', 'files = ["README.md", "docs/*"]')
    )
    (fixed / "docs").mkdir()
    (fixed / "docs" / "plot.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    assert main(["check", "claims", "--project", str(fixed)]) == 0
    out = capsys.readouterr().out
    assert "docs/plot.png: not scanned" in out
