"""signoff: claims against a run and the text that publishes them; the sheet; bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from harness.cli import main
from harness.rundir.meta import RUN_FILE
from harness.rundir.reader import load_run
from harness.rundir.rows import Row
from tests.gate.gate_runs import bench_rows, tree_digest, write_run

FIXTURES = Path(__file__).parent / "fixtures" / "signoff"


def summary(host: str, artifact: str, preset: str, metric: str, value: float) -> Row:
    """A bench summary row of the train_step curve."""
    return Row(host, "1.0", artifact, "2" * 64, preset, "bench", "train_step", "measured",
               metric=metric, value=value)  # fmt: skip


def demo_run(directory: Path, **meta: object) -> Path:
    """A run where wasm64/wasm32 is 1.10 at every preset and native speedup is 2.0 .. 9.7."""
    rows = [
        summary("native", "native", "tiny", "speedup", 2.05),
        summary("native", "native", "small", "speedup", 9.5),
        *bench_rows([1.00e6, 1.01e6, 0.99e6], "wasmtime", "wasm32", "tiny", "train_step"),
        *bench_rows([1.10e6, 1.11e6, 1.09e6], "wasmtime", "wasm64", "tiny", "train_step"),
        summary("wasmtime", "wasm32", "small", "median_ns", 4.0e6),
        summary("wasmtime", "wasm64", "small", "median_ns", 4.4e6),
    ]
    return write_run(directory, rows, extra=dict(meta))


def signoff(tmp_path: Path, case: str, *extra: str) -> tuple[int, Path]:
    """Run signoff of the demo run against fixture ``case``; returns (exit code, its root)."""
    root = tmp_path / case
    shutil.copytree(FIXTURES / case, root)
    run = demo_run(tmp_path / "run")
    code = main(["signoff", str(run), "--claims", str(root / "claims.toml"), "--root", str(root),
                 *extra])  # fmt: skip
    return code, root


def test_good_claims_sign_off(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A ratio point claim and a preset curve within tolerance, published verbatim: exit 0."""
    code, _ = signoff(tmp_path, "good")
    out = capsys.readouterr().out
    assert code == 0, out
    assert "wasm64-overhead: published 1.1 (band 0.99-1.21), the run measures 1.1" in out
    assert "native-speedup-curve at preset=small: published 9.7 (band 7.27-12.1), " in out
    assert "signed off" in out


def test_stale_value_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A published 1.5x that the run measures as 1.1x is stale: exit 1 with both numbers."""
    code, _ = signoff(tmp_path, "stale")
    out = capsys.readouterr().out
    assert code == 1
    assert "stale  wasm64-overhead: published 1.5 (band 1.35-1.65), the run measures 1.1" in out
    assert "(CI 1.1-1.1, -26.7%): the CI and the band do not overlap" in out


def test_single_point_of_curve_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A single 9.7x of a speedup that is 2.05 at tiny and 9.5 at small is refused (9.7x lesson)."""
    code, _ = signoff(tmp_path, "point-of-curve")
    out = capsys.readouterr().out
    assert code == 1
    assert (
        "refused  native-speedup: a single point (small) of a quantity that varies by 363%" in out
    )
    assert 'publish it as a curve (over = "preset")' in out


def test_uncovered_number_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """'120 tok/s' and '3x' outside any claim's region are uncovered: exit 1, file:line named."""
    code, _ = signoff(tmp_path, "uncovered")
    out = capsys.readouterr().out
    assert code == 1
    assert "README.md:14: '120 tok/s' reads like a performance claim" in out
    assert "README.md:14: '3x' reads like a performance claim" in out
    assert out.count("uncovered") == 2  # the claimed 1.1x, 2.0x, 9.7x are covered


def test_text_drift_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """README edited to 9.9x while the claim says 9.7: the text no longer carries the claim."""
    root = tmp_path / "good"
    shutil.copytree(FIXTURES / "good", root)
    readme = root / "README.md"
    readme.write_text(readme.read_text().replace("9.7×", "9.9×"))
    run = demo_run(tmp_path / "run")
    assert main(["signoff", str(run), "--claims", str(root / "claims.toml"),
                 "--root", str(root)]) == 1  # fmt: skip
    assert "README.md:6-10 no longer carries the claimed 9.7" in capsys.readouterr().out


def test_missing_marker_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A marker removed from the README makes its claim fail, naming the marker."""
    root = tmp_path / "good"
    shutil.copytree(FIXTURES / "good", root)
    readme = root / "README.md"
    readme.write_text(readme.read_text().replace("<!-- claim:wasm64-overhead -->\n", ""))
    run = demo_run(tmp_path / "run")
    assert main(["signoff", str(run), "--claims", str(root / "claims.toml"),
                 "--root", str(root)]) == 1  # fmt: skip
    out = capsys.readouterr().out
    assert "marker 'claim:wasm64-overhead' is not in README.md" in out


def test_sheet_carries_provenance(tmp_path: Path) -> None:
    """The Markdown and HTML sheets list every claim and the run's full provenance."""
    code, _ = signoff(tmp_path, "good", "--out", str(tmp_path / "sheet"))
    assert code == 0
    md = (tmp_path / "sheet" / "signoff.md").read_text()
    page = (tmp_path / "sheet" / "signoff.html").read_text()
    for text in (md, page):
        assert "SIGNED OFF" in text and "wasm64-overhead" in text
        for needle in ("a" * 40, "fp-test-machine", "2" * 64, "c" * 64, "gate-test", "50.0.1"):
            assert needle in text, needle
    assert "defaults sha256" in md and "corpus sha256" in md and "matrix" in md


def test_run_never_modified(tmp_path: Path) -> None:
    """Signing off (even failing) leaves every file of the run byte-identical."""
    run = demo_run(tmp_path / "run")
    before = tree_digest(run)
    root = tmp_path / "stale"
    shutil.copytree(FIXTURES / "stale", root)
    assert main(["signoff", str(run), "--claims", str(root / "claims.toml"), "--root", str(root),
                 "--out", str(tmp_path / "o")]) == 1  # fmt: skip
    assert tree_digest(run) == before


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (('host = "wasmtime"', 'host = "wasmtim"'),
         "claims.toml:9: field 'claim[wasm64-overhead].host/artifact/preset': "
         "unknown cell 'wasmtim/wasm64/small'"),
        (('preset = "small"', 'preset = "smal"'),
         "claims.toml:11: field 'claim[wasm64-overhead].host/artifact/preset': "
         "unknown cell 'wasmtime/wasm64/smal'"),
        (('{ artifact = "wasm32" }', '{ artifact = "wasm23" }'),
         "claims.toml:14: field 'claim[wasm64-overhead].host/artifact/preset': "
         "unknown cell 'wasmtime/wasm23/small'"),
        (("points = { tiny = 2.0", "points = { tini = 2.0"),
         "claims.toml:29: field 'claim[native-speedup-curve].preset': "
         "unknown cell 'native/native/tini'"),
        (('file = "README.md", marker = "claim:wasm64', 'file = "READ.md", marker = "claim:wasm64'),
         "field 'claim[wasm64-overhead].published.file':"),
        (("schema_version = 2", "schema_version = 3"), "field 'schema_version': unknown version 3"),
        (("tolerance = 0.1\n", ""),
         "claims.toml:6: field 'claim[wasm64-overhead].band': give exactly one of tolerance"),
        (("tolerance = 0.1\n", "band = [1.2, 1.3]\n"),
         "claims.toml:16: field 'claim[wasm64-overhead].band': [1.2, 1.3] does not contain"),
        (('runs = 1, band_basis = "tolerance" }', "runs = 1 }"),
         "claims.toml:19: field 'claim[wasm64-overhead].provenance.band_basis': missing"),
        (('fingerprint = "fp-test-machine", runs = 1', 'fingerprint = "fp-test-machine", runs = 0'),
         "claims.toml:19: field 'claim[wasm64-overhead].provenance.runs': expected a run count"),
        (("value = 1.1", "value = '1.1'"), "field 'claim[wasm64-overhead].value': wrong type"),
        (("points = {", "values = {"), "field 'claim[native-speedup-curve].values': unknown key"),
    ],
)  # fmt: skip
def test_bad_claims_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], edit: tuple[str, str], expected: str
) -> None:
    """An unknown cell, a missing published file or a malformed claim exits 2 naming the field
    (an unknown cell at the line of the host, artifact, preset or point that names it)."""
    root = tmp_path / "good"
    shutil.copytree(FIXTURES / "good", root)
    claims = root / "claims.toml"
    text = claims.read_text()
    assert edit[0] in text
    claims.write_text(text.replace(edit[0], edit[1], 1))
    run = demo_run(tmp_path / "run")
    assert main(["signoff", str(run), "--claims", str(claims), "--root", str(root)]) == 2
    err = capsys.readouterr().err
    assert str(claims) in err and expected in err


def test_other_defaults_fail(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A run measured under other training defaults cannot sign off this code."""
    root = tmp_path / "good"
    shutil.copytree(FIXTURES / "good", root)
    run = demo_run(tmp_path / "run", defaults_sha256="0" * 64)
    assert main(["signoff", str(run), "--claims", str(root / "claims.toml"),
                 "--root", str(root)]) == 1  # fmt: skip
    assert "measured with defaults sha256 0000" in capsys.readouterr().out


def test_reviewed_exception_is_not_uncovered(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A [[scan.not_a_claim]] entry excuses exactly its text; the other number still fails."""
    root = tmp_path / "uncovered"
    shutil.copytree(FIXTURES / "uncovered", root)
    claims = root / "claims.toml"
    claims.write_text(claims.read_text() + (
        '\n[[scan.not_a_claim]]\nfile = "README.md"\ntext = "3x faster than before"\n'
        'reason = "a changelog remark, not a measurement"\n'
    ))  # fmt: skip
    run = demo_run(tmp_path / "run")
    assert main(["signoff", str(run), "--claims", str(claims), "--root", str(root)]) == 1
    out = capsys.readouterr().out
    assert "'120 tok/s'" in out and "'3x'" not in out


def test_exception_without_reason_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An exception to the scan must say why: a missing reason is bad input naming the field."""
    root = tmp_path / "good"
    shutil.copytree(FIXTURES / "good", root)
    claims = root / "claims.toml"
    claims.write_text(
        claims.read_text() + '\n[[scan.not_a_claim]]\nfile = "README.md"\ntext = "x"\n'
    )
    run = demo_run(tmp_path / "run")
    assert main(["signoff", str(run), "--claims", str(claims), "--root", str(root)]) == 2
    assert "field 'scan.not_a_claim[0].reason'" in capsys.readouterr().err


def test_dirty_run_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Numbers measured from a dirty checkout cannot sign off a release."""
    root = tmp_path / "good"
    shutil.copytree(FIXTURES / "good", root)
    run = demo_run(tmp_path / "run", git={"commit": "a" * 40, "dirty": True})
    assert main(["signoff", str(run), "--claims", str(root / "claims.toml"),
                 "--root", str(root)]) == 1  # fmt: skip
    assert "measured from a dirty checkout of aaaaaaaaaaaa" in capsys.readouterr().out


def test_a_dirty_project_checkout_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A ``run --project`` run of a clean harness but a dirty project checkout cannot sign off
    (the project's binaries and claims are its commit's, not the harness's); the same project
    committed signs off, its commit named in the sheet."""
    root = tmp_path / "good"
    shutil.copytree(FIXTURES / "good", root)
    clean = {"commit": "a" * 40, "dirty": False}
    for dirty, code in ((True, 1), (False, 0)):
        project = {"root": "/src/proj", "git": {"commit": "b" * 40, "dirty": dirty}}
        run = demo_run(tmp_path / f"run-{dirty}", git=clean, project=project)
        sheet = tmp_path / f"sheet-{dirty}"
        assert main(["signoff", str(run), "--claims", str(root / "claims.toml"),
                     "--root", str(root), "--out", str(sheet)]) == code  # fmt: skip
        out = capsys.readouterr().out
        said = f"measured the project /src/proj at {'b' * 40} (dirty), a dirty checkout"
        assert (said in out) == dirty, out
        assert f"| project | `/src/proj at {'b' * 40}" in (sheet / "signoff.md").read_text()


# -- bands, comparability, the 2x-wrong claim on a real run, and the single-point bypass -------

REAL_RUN = Path(__file__).parents[1] / "bench" / "fixtures" / "run_small"


def _claim_text(cid: str, body: str, fingerprint: str = "fp-test-machine", hosts: str = "") -> str:
    prov = (f'provenance = {{ commit = "0000000", fingerprint = "{fingerprint}", {hosts}'
            'runs = 3, band_basis = "runs" }')  # fmt: skip
    return (f'[[claim]]\nid = "{cid}"\n{body}\n'
            f'published = {{ file = "README.md", marker = "claim:{cid}" }}\n{prov}\n')  # fmt: skip


def _signoff_text(tmp_path: Path, run: Path, claims: str, readme: str) -> tuple[int, str]:
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    (root / "README.md").write_text(readme)
    (root / "claims.toml").write_text(
        'schema_version = 2\n[scan]\nfiles = ["README.md"]\n' + claims
    )
    code = main(["signoff", str(run), "--claims", str(root / "claims.toml"), "--root", str(root)])
    return code, ""


def test_point_claim_with_x_is_still_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 11: a point claim naming x (a train step's parameter count, which only its own
    preset has) is compared across presets all the same, and refused when they spread."""
    rows = [
        Row("native", "1.0", "native", "2" * 64, p, "bench", "train_step", "measured",
            metric="speedup", value=v, x_name="params", x_value=x)
        for p, v, x in (("tiny", 2.05, 5616.0), ("small", 9.5, 112384.0))
    ]  # fmt: skip
    run = write_run(tmp_path / "run", rows)
    body = ('host = "native"\nartifact = "native"\npreset = "small"\nsubject = "train_step"\n'
            'metric = "speedup"\nx = 112384\nvalue = 9.5\ntolerance = 0.1')  # fmt: skip
    code, _ = _signoff_text(tmp_path, run, _claim_text("sp", body), "<!-- claim:sp -->\n9.5x\n")
    out = capsys.readouterr().out
    assert code == 1, out
    assert "refused  sp: a single point (small) of a quantity that varies by 363%" in out


def test_band_overlapping_the_runs_ci_passes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Real run: node24 wasm32 tiny speedup 1.89 (CI 1.68-2.07). A band 2.0-2.3 just above the
    point but overlapping the CI is not stale; a band 2.1-2.3 beyond the CI is."""
    fp = "3886613962dc"  # the fixture run's machine
    body = ('host = "node24"\nartifact = "wasm32"\npreset = "tiny"\nsubject = "train_step"\n'
            'metric = "speedup"\nvalue = {v}\nband = [{lo}, {hi}]')  # fmt: skip
    claims = _claim_text("ok", body.format(v=2.1, lo=2.0, hi=2.3), fp) + _claim_text(
        "far", body.format(v=2.2, lo=2.1, hi=2.3), fp
    )
    readme = "<!-- claim:ok -->\n2.1x\n\n<!-- claim:far -->\n2.2x\n"
    _signoff_text(tmp_path, REAL_RUN, claims, readme)
    out = capsys.readouterr().out
    assert "pass  ok: published 2.1 (band 2-2.3), the run measures 1.892 (CI 1.68-2.07" in out
    assert "stale  far: published 2.2 (band 2.1-2.3)" in out


@pytest.mark.parametrize("cell", ["native/native", "wasmtime/wasm32", "node24/wasm32"])
def test_twice_the_true_speedup_is_stale_on_a_real_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], cell: str
) -> None:
    """Publishing 2x the speedup a real run measured, with the project's +-30 % band, is stale
    at every preset whose CI the run resolved (tiny: CI within +-11 %); never a pass."""
    from harness.gate.claim_checks import ci_table, figure, quantity_table
    from harness.gate.claims import Quantity

    rows = load_run(REAL_RUN).rows
    table, cis = quantity_table(rows), ci_table(rows)
    host, artifact = cell.split("/")
    true = figure(
        table, cis, Quantity(host, artifact, "tiny", "bench", "train_step", "speedup", "")
    )
    assert true is not None
    wrong = round(2 * true[0], 2)
    body = (f'host = "{host}"\nartifact = "{artifact}"\nsubject = "train_step"\n'
            f'metric = "speedup"\nover = "preset"\npoints = {{ tiny = {wrong}, small = 9.9 }}\n'
            "tolerance = 0.3")  # fmt: skip
    claims = _claim_text("twice", body, "3886613962dc")
    code, _ = _signoff_text(tmp_path, REAL_RUN, claims, f"<!-- claim:twice -->\n{wrong}x 9.9x\n")
    out = capsys.readouterr().out
    assert code == 1
    assert f"stale  twice at preset=tiny: published {wrong:g}" in out
    assert "pass  twice" not in out


def test_other_machine_or_host_version_is_not_comparable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A band measured on another machine, or another host version, is listed as not comparable
    (exit 0: neither confirmed nor refuted); machine_independent claims are still checked."""
    body = ('host = "node24"\nartifact = "wasm32"\npreset = "tiny"\nsubject = "train_step"\n'
            'metric = "speedup"\nvalue = 9.0\ntolerance = 0.1')  # fmt: skip
    claims = _claim_text("elsewhere", body, "another-machine") + _claim_text(
        "oldnode", body, "3886613962dc", 'hosts = { node24 = "20.1.0" }, '
    )
    readme = "<!-- claim:elsewhere -->\n9.0x\n\n<!-- claim:oldnode -->\n9.0x\n"
    code, _ = _signoff_text(tmp_path, REAL_RUN, claims, readme)
    out = capsys.readouterr().out
    assert "not comparable  elsewhere: published 9" in out
    assert "not comparable: machine 3886613962dc, the band's is another-machine" in out
    assert "not comparable  oldnode" in out and "the band's is 20.1.0" in out
    assert "stale" not in out
    # (The fixture run is dirty and varies across presets: those findings fail, not these.)
    assert "failing findings (2 findings not comparable: other machine or host version)" in out
    assert code == 1
    independent = _claim_text("anywhere", body, "another-machine").replace(
        'id = "anywhere"', 'id = "anywhere"\nmachine_independent = true'
    )
    _signoff_text(tmp_path, REAL_RUN, independent, "<!-- claim:anywhere -->\n9.0x\n")
    assert "stale  anywhere: published 9" in capsys.readouterr().out


def test_measured_band_must_be_published(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A band measured from runs is printed with its value, '2.1× (2.0–2.3)'; text without the
    band ends fails, text with them passes the text check."""
    body = ('host = "node24"\nartifact = "wasm32"\npreset = "tiny"\nsubject = "train_step"\n'
            'metric = "speedup"\nvalue = 2.1\nband = [2.0, 2.3]')  # fmt: skip
    claims = _claim_text("b", body, "3886613962dc")
    _signoff_text(tmp_path, REAL_RUN, claims, "<!-- claim:b -->\n| 2.1× |\n")
    assert "b: README.md:1-2 no longer carries the claimed 2, 2.3" in capsys.readouterr().out
    _signoff_text(tmp_path, REAL_RUN, claims, "<!-- claim:b -->\n| 2.1× (2.0–2.3) |\n")
    out = capsys.readouterr().out
    assert "no longer carries" not in out and "pass  b: published 2.1" in out


def test_a_figure_printed_twice_is_covered_and_checked_at_both(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The headline 1.1x repeated in the README's first line: uncovered until the claim names
    it in `published.also`; then covered, and a drift there fails the claim naming that line."""
    root = tmp_path / "good"
    shutil.copytree(FIXTURES / "good", root)
    readme = root / "README.md"
    readme.write_text("Memory64 costs 1.1× per train step.\n" + readme.read_text())
    run = demo_run(tmp_path / "run")
    args = ["signoff", str(run), "--claims", str(root / "claims.toml"), "--root", str(root)]
    assert main(args) == 1
    assert "README.md:1: '1.1×' reads like a performance claim" in capsys.readouterr().out
    claims = root / "claims.toml"
    old = 'published = { file = "README.md", marker = "claim:wasm64-overhead" }'
    assert old in claims.read_text()
    claims.write_text(claims.read_text().replace(
        old, old[:-2] + ', also = [{ file = "README.md", line = 1 }] }'))  # fmt: skip
    assert main(args) == 0, capsys.readouterr().out
    capsys.readouterr()
    readme.write_text(readme.read_text().replace("costs 1.1×", "costs 1.3×", 1))
    assert main(args) == 1
    assert "README.md:1 no longer carries the claimed 1.1" in capsys.readouterr().out


def test_a_bad_also_location_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`also` entries need a file and one of line or marker: anything else exits 2."""
    root = tmp_path / "good"
    shutil.copytree(FIXTURES / "good", root)
    claims = root / "claims.toml"
    old = 'published = { file = "README.md", marker = "claim:wasm64-overhead" }'
    claims.write_text(claims.read_text().replace(
        old, old[:-2] + ', also = [{ file = "README.md" }] }'))  # fmt: skip
    run = demo_run(tmp_path / "run")
    assert main(["signoff", str(run), "--claims", str(claims), "--root", str(root)]) == 2
    assert "needs file and one of line, marker" in capsys.readouterr().err


def test_a_cell_an_interrupted_run_did_not_reach_fails_the_run_not_the_claims(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A claim on a cell the run planned but was interrupted before: the claims file is right,
    so it is a ``fail`` finding (exit 1) naming the run's status and ``run --resume``, not an
    "unknown cell" blamed on the claims file (exit 2)."""
    root = tmp_path / "good"
    shutil.copytree(FIXTURES / "good", root)
    claims = root / "claims.toml"
    claims.write_text(claims.read_text().replace('preset = "small"', 'preset = "large"'))
    run = demo_run(tmp_path / "run")
    large = ["wasmtime/wasm64/large", "wasmtime/wasm32/large"]  # the claim and its denominator
    planned = sorted({r.cell for r in load_run(run).rows} | set(large))
    meta = json.loads((run / RUN_FILE).read_text())
    meta.update(status="interrupted", cells=planned, cells_done=3)
    (run / RUN_FILE).write_text(json.dumps(meta))
    assert main(["signoff", str(run), "--claims", str(claims), "--root", str(root)]) == 1
    captured = capsys.readouterr()
    assert "unknown cell" not in captured.out + captured.err
    out = " ".join(captured.out.split())  # the console wraps long findings
    assert (
        f"fail {run} is an incomplete run (run status 'interrupted', not 'complete'; "
        f"{len(planned)} cells not run ("
    ) in out
    assert f"finish it with `tinygpt-harness run --resume {run} --matrix " in out
    assert f"claimed cells it did not measure: {', '.join(large)}" in out
    assert "wasm64-overhead: not measured in the run: wasmtime/wasm64/large" in out


@pytest.mark.parametrize(
    ("out", "why"),
    [
        ("afile", "Not a directory (ENOTDIR)"),
        ("afile/sub", "Not a directory (ENOTDIR)"),
        ("sheet", "signoff.md: Is a directory (EISDIR)"),
    ],
)
def test_an_unwritable_out_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], out: str, why: str
) -> None:
    """``--out`` that is a file, lies under one, or whose ``signoff.md`` cannot be written:
    exit 2 (bad input) with one line naming the path and the OS error, not a traceback and
    exit 1 (the code of a failed sign-off)."""
    (tmp_path / "afile").write_text("")
    (tmp_path / "sheet" / "signoff.md").mkdir(parents=True)  # the sheet's name is taken
    code, _ = signoff(tmp_path, "good", "--out", str(tmp_path / out))
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith(f"signoff: {tmp_path / out}") and why in err and err.count("\n") == 1


def test_report_refuses_the_sheet_of_another_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``report RUN --signoff SHEET`` with the sheet of another run exits 2 naming both runs
    (it headlined the other run's verdict as RUN's); a copy of the signed-off run is the same
    run (known by when it was measured, not by its path) and reports."""
    from harness.gate.claim_checks import Finding
    from harness.gate.signoff_sheet import markdown

    signed, other = tmp_path / "signed", tmp_path / "other"
    shutil.copytree(REAL_RUN, signed)
    shutil.copytree(REAL_RUN, other)
    meta = json.loads((other / RUN_FILE).read_text())
    meta["started_at"] = "2030-01-01T00:00:00+00:00"  # another measurement
    (other / RUN_FILE).write_text(json.dumps(meta))
    sheet = tmp_path / "sheet"
    sheet.mkdir()
    text = markdown([Finding("c", "pass", "c: ok")], load_run(signed).meta, Path("claims.toml"))
    (sheet / "signoff.md").write_text(text)
    args = ["--out", str(tmp_path / "out"), "--signoff", str(sheet)]
    assert main(["report", str(other), *args]) == 2
    err = capsys.readouterr().err
    assert f"the sheet signs off run {signed} (measured " in err
    assert f"not {other} (measured 2030-01-01T00:00:00+00:00 .. " in err
    assert err.count("\n") == 1
    moved = tmp_path / "moved"
    shutil.copytree(signed, moved)
    assert main(["report", str(moved), *args]) == 0
