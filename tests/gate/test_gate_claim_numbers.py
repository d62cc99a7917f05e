"""Numbers in published text are read whole, exponent included (harness/gate/claim_checks.py
``NUMBER``, and the uncovered-number scan of harness/gate/claim_scan.py that shares it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.gate.claim_checks import check_text, number_value
from harness.gate.claim_scan import PERF_NUMBER, uncovered
from harness.gate.claims import Claim, load_claims


def _claim(tmp_path: Path, value: str, text: str) -> Claim:
    """A machine-independent model claim of ``value``, published by README.md's ``text``."""
    (tmp_path / "claims.toml").write_text(
        'schema_version = 2\n[[claim]]\nid = "traj"\nhost = "native"\nartifact = "native"\n'
        'preset = "tiny"\ncheck = "model"\nsubject = "trajectory"\nmetric = "max_abs_err"\n'
        f'value = {value}\ntolerance = 0.5\ntolerance_reason = "test"\n'
        'machine_independent = true\npublished = { file = "README.md", marker = "claim:traj" }\n'
    )
    (tmp_path / "README.md").write_text(f"# p\n\ntrajectory error {text} <!-- claim:traj -->.\n")
    return load_claims(tmp_path / "claims.toml").claims[0]


@pytest.mark.parametrize(
    "text", ["2.4e-07", "2.4e-7", "2.4E-7", "2.4e−7", "2.4×10⁻⁷", "2.4 x 10^-7"]
)
def test_a_claim_in_scientific_notation_is_carried_by_its_text(tmp_path: Path, text: str) -> None:
    """A correct claim of 2.4e-7 published as ``text`` passes the text check (it was read as
    the numbers 2.4 and 7, and the sign-off failed a correct claim: s44 D4)."""
    claim = _claim(tmp_path, "2.4e-7", text)
    assert check_text(claim, tmp_path, tmp_path / "claims.toml") == []


def test_another_exponent_is_another_number(tmp_path: Path) -> None:
    """2.4e-08 in the text does not carry a claim of 2.4e-7, and the finding names the number
    the text holds, whole."""
    claim = _claim(tmp_path, "2.4e-7", "2.4e-08")
    found = check_text(claim, tmp_path, tmp_path / "claims.toml")
    assert [f.status for f in found] == ["fail"]
    assert "no longer carries the claimed 2.4e-07 (numbers there, as read: 2.4e-08)" in (
        found[0].message
    )


def test_a_decimal_comma_is_listed_as_read_and_named(tmp_path: Path) -> None:
    """A decimal comma ("2,4e-07") fails, and the finding lists the text as it was read ("2"
    and "07", not the values 2 and 7 that hide the cut) and names the comma."""
    claim = _claim(tmp_path, "2.4e-7", "2,4e-07 (1,200 runs)")
    (found,) = check_text(claim, tmp_path, tmp_path / "claims.toml")
    assert found.status == "fail"
    assert found.message.endswith(
        "no longer carries the claimed 2.4e-07 (numbers there, as read: 2, 07, 1,200); "
        "'2,4e-07' is not one number: a comma separates thousands (1,200), a decimal needs a "
        "point"
    )


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1e-3", 1e-3),
        ("-1e-3", -1e-3),
        ("−1e-3", -1e-3),  # a typeset minus sign
        ("1,200", 1200.0),
        ("3×10⁻⁴", 3e-4),
        ("2.5E+3", 2500.0),
    ],
)
def test_a_published_number_has_its_value(text: str, value: float) -> None:
    """Each written form of a number reads as the one value it prints."""
    assert number_value(text) == value


def test_a_band_dash_is_not_a_minus_sign(tmp_path: Path) -> None:
    """In "2.4e-07 (1.2e-07-3.6e-07)" the band's upper end is 3.6e-07, not -3.6e-07: a claim
    of that band end is carried."""
    claim = _claim(tmp_path, "3.6e-7", "2.4e-07 (1.2e-07-3.6e-07)")
    assert check_text(claim, tmp_path, tmp_path / "claims.toml") == []


def test_the_scan_reads_an_exponent_with_its_number(tmp_path: Path) -> None:
    """An uncovered "2.4e-07 s/step" is flagged as itself, not as a "07 s/step" nobody wrote."""
    assert [m.group(0) for m in PERF_NUMBER.finditer("a step: 2.4e-07 s/step")] == [
        "2.4e-07 s/step"
    ]
    readme = tmp_path / "README.md"
    readme.write_text("a step: 2.4e-07 s/step\n")
    (finding,) = uncovered(tmp_path, [readme], {})
    assert "README.md:1: '2.4e-07 s/step' reads like" in finding.message
