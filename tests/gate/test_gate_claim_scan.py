"""The scan for numbers that read like performance claims (harness/gate/claim_scan.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.gate.claim_checks import check_text
from harness.gate.claim_scan import PERF_NUMBER
from harness.gate.claims import load_claims


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("9.7× faster", "9.7×"),
        ("2.5 times slower", "2.5 times slower"),
        ("40% faster than before", "40% faster"),
        ("120 tok/s", "120 tok/s"),
        ("1,200 tokens per second", "1,200 tokens per second"),
        ("3.2 it/s", "3.2 it/s"),
        ("100 samples/sec", "100 samples/sec"),
        ("a step takes 6.8 s/step at XL", "6.8 s/step"),
        ("45 ms per token", "45 ms per token"),
        ("150 µs/call", "150 µs/call"),
        ("12 GFLOP/s", "12 GFLOP/s"),
        ("4x the arithmetic intensity", "4x"),  # flagged by decision (docs/profiles.md)
    ],
)
def test_performance_numbers_are_found(text: str, found: str) -> None:
    """Each form of a speed claim a README uses is found, whole (the real project's README
    had ``6.8 s/step``, which the scan missed)."""
    assert [m.group(0) for m in PERF_NUMBER.finditer(text)] == [found]


@pytest.mark.parametrize(
    "text",
    [
        "1.5 x block_size",
        "100 × clock resolution",
        "35.6 ms at tiny",
        "3 steps at the full rate",
        "5 tokens of context",
        "a 12 % change",
        "version 1,2",
    ],
)
def test_arithmetic_and_plain_quantities_are_not_claims(text: str) -> None:
    """Arithmetic, a duration without a per-unit, a count, a bare percentage: not claims."""
    assert PERF_NUMBER.search(text) is None


def test_a_thousands_separated_figure_is_its_number(tmp_path: Path) -> None:
    """A claim of 1200 tok/s published as "1,200 tok/s" is carried by the text (not read as
    1 and 200); the same text with 1,300 is not."""
    (tmp_path / "claims.toml").write_text(
        'schema_version = 2\n[[claim]]\nid = "tps"\nhost = "node24"\nartifact = "wasm32"\n'
        'preset = "tiny"\nsubject = "generate"\nmetric = "tok_per_s"\nvalue = 1200\n'
        'tolerance = 0.2\ntolerance_reason = "test"\nmachine_independent = true\n'
        'published = { file = "README.md", marker = "claim:tps" }\n'
    )
    claims = load_claims(tmp_path / "claims.toml").claims[0]
    (tmp_path / "README.md").write_text("<!-- claim:tps -->\nGeneration: 1,200 tok/s\n")
    assert check_text(claims, tmp_path, tmp_path / "claims.toml") == []
    (tmp_path / "README.md").write_text("<!-- claim:tps -->\nGeneration: 1,300 tok/s\n")
    assert [f.status for f in check_text(claims, tmp_path, tmp_path / "claims.toml")] == ["fail"]
