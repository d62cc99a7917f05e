"""Speedup claims read the side-by-side figure (``train_step:paired``) with its own CI."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from harness.checks.bench_paired import SUBJECT
from harness.gate.claim_checks import check_values, ci_table, figure, quantity_table
from harness.gate.claims import Quantity, load_claims
from harness.rundir.rows import Row

PARAMS = 112384.0  # the small preset's parameter count: the curve's x


def _row(
    host: str, artifact: str, subject: str, metric: str, value: float, preset: str = "small"
) -> Row:
    return Row(host, "v", artifact, "", preset, "bench", subject, "measured", metric=metric,
               value=value, x_name="params", x_value=PARAMS)  # fmt: skip


def _rows(paired: float, low: float, high: float) -> list[Row]:
    """A run whose timed-apart speedup is 3.0 (a regime-skewed figure) and whose side-by-side
    speedup is ``paired`` with CI ``low``-``high``."""
    return [
        _row("native", "native", "train_step", "median_ns", 1e6),
        _row("native", "native", "train_step", "ci_low_ns", 0.98e6),
        _row("native", "native", "train_step", "ci_high_ns", 1.02e6),
        _row("numpy", "reference", "train_step", "median_ns", 3e6),
        _row("numpy", "reference", "train_step", "ci_low_ns", 2.94e6),
        _row("numpy", "reference", "train_step", "ci_high_ns", 3.06e6),
        _row("native", "native", "train_step", "speedup", 3.0),
        _row("native", "native", SUBJECT, "speedup", paired),
        _row("native", "native", SUBJECT, "speedup_ci_low", low),
        _row("native", "native", SUBJECT, "speedup_ci_high", high),
    ]


def test_the_side_by_side_speedup_carries_its_own_ci() -> None:
    """figure() of the paired speedup is its value and its recorded CI over pairs; the
    timed-apart one keeps numpy's CI over the kernel's."""
    rows = _rows(1.5, 1.45, 1.56)
    table, cis = quantity_table(rows), ci_table(rows)
    paired = Quantity("native", "native", "small", "bench", SUBJECT, "speedup", "")
    assert figure(table, cis, paired) == (1.5, 1.45, 1.56)
    apart = Quantity("native", "native", "small", "bench", "train_step", "speedup", "")
    value, low, high = figure(table, cis, apart) or (0.0, 0.0, 0.0)
    assert value == 3.0
    assert low == pytest.approx(2.94 / 1.02) and high == pytest.approx(3.06 / 0.98)


CLAIMS = """\
schema_version = 2

[scan]
files = ["README.md"]

[[claim]]
id = "speedup-native"
what = "native train-step speedup over numpy, side by side"
host = "native"
artifact = "native"
subject = "train_step:paired"
metric = "speedup"
over = "preset"
points = { tiny = 1.5, small = PUBLISHED }
tolerance = 0.3
tolerance_reason = "a side-by-side ratio: the VM's regimes cancel within a pair"
published = { file = "README.md", marker = "claim:speedup" }
provenance = { commit = "0000000", fingerprint = "fp", runs = 1, band_basis = "tolerance" }
"""


@pytest.mark.parametrize(
    ("published", "status"),
    [(1.5, "pass"), (3.0, "stale"), (0.75, "stale")],
)
def test_a_speedup_claim_is_judged_on_the_side_by_side_figure(
    tmp_path: Path, published: float, status: str
) -> None:
    """The claim passes at the paired value; a number published 2x too high (here also the
    regime-skewed timed-apart figure) or 2x too low is stale, though the timed-apart speedup of
    the same run would have passed the 2x-high one."""
    (tmp_path / "claims.toml").write_text(CLAIMS.replace("PUBLISHED", str(published)))
    (tmp_path / "README.md").write_text(f"<!-- claim:speedup -->\n{published}x\n")
    claim = load_claims(tmp_path / "claims.toml").claims[0]
    rows = _rows(1.5, 1.45, 1.56)
    rows += [dataclasses.replace(r, preset="tiny") for r in rows]
    findings = check_values(claim, quantity_table(rows), ci_table(rows))
    assert [f.status for f in findings] == ["pass", status], findings
