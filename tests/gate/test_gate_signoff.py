"""signoff: claims against a run and the text that publishes them; the sheet; bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from harness.cli import main
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
    assert "wasm64-overhead: published 1.1, measured 1.1 (+0.0%" in out
    assert "native-speedup-curve at preset=small: published 9.7, measured 9.5" in out
    assert "signed off" in out


def test_stale_value_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A published 1.5x that the run measures as 1.1x is stale: exit 1 with both numbers."""
    code, _ = signoff(tmp_path, "stale")
    out = capsys.readouterr().out
    assert code == 1
    assert "stale  wasm64-overhead: published 1.5, the run measures 1.1 (-26.7%)" in out
    assert "beyond the tolerance ±10%" in out


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
         "'claim[wasm64-overhead].host/artifact/preset': unknown cell 'wasmtim/wasm64/small'"),
        (('file = "README.md", marker = "claim:wasm64', 'file = "READ.md", marker = "claim:wasm64'),
         "field 'claim[wasm64-overhead].published.file':"),
        (("schema_version = 1", "schema_version = 3"), "field 'schema_version': unknown version 3"),
        (("tolerance = 0.1\n", ""), "field 'claim[wasm64-overhead].tolerance': missing"),
        (("value = 1.1", "value = '1.1'"), "field 'claim[wasm64-overhead].value': wrong type"),
        (("points = {", "values = {"), "field 'claim[native-speedup-curve].values': unknown key"),
    ],
)  # fmt: skip
def test_bad_claims_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], edit: tuple[str, str], expected: str
) -> None:
    """An unknown cell, a missing published file or a malformed claim exits 2 naming the field."""
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
