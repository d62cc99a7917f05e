"""The scan for numbers that read like performance claims (harness/gate/claim_scan.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.gate.claim_checks import check_text, published_region
from harness.gate.claim_scan import PERF_NUMBER, SPEED_WORDS, uncovered
from harness.gate.claims import load_claims
from harness.gate.errors import GateInputError
from harness.gate.signoff_sheet import passed, verdict_line
from harness.project.claims import as_outcome


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


@pytest.mark.parametrize("word", SPEED_WORDS)
@pytest.mark.parametrize(
    "phrase", ["3.5 times {}", "40% {}", "2.5-fold {}", "3 x {}", "ten times {}"]
)
def test_every_speed_word_is_read_in_every_phrasing(phrase: str, word: str) -> None:
    """A README's "3.5 times quicker" passed uncovered while "3.5 times faster" failed: each
    numeric and spelled phrasing takes every speed word."""
    text = phrase.format(word)
    assert [m.group(0) for m in PERF_NUMBER.finditer(f"it is {text} now")] == [text]


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("twice as fast as numpy", "twice as fast"),
        ("Ten times faster than Python", "Ten times faster"),
        ("twenty five times faster", "twenty five times faster"),
        ("a hundred times faster", "a hundred times faster"),
        ("a ten-fold speedup", "ten-fold speedup"),
        ("an order of magnitude faster", "an order of magnitude faster"),
        ("3 times as fast", "3 times as fast"),
        ("half as fast in the browser", "half as fast"),
    ],
)
def test_spelled_out_speed_claims_are_found(text: str, found: str) -> None:
    """A README that writes "ten times faster than Python" publishes the single point "10x"
    does: each spelled form is found, whole."""
    assert [m.group(0) for m in PERF_NUMBER.finditer(text)] == [found]


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("50k tokens/sec", "50k tokens/sec"),
        ("1.2M tok/s", "1.2M tok/s"),
        ("9.7-fold faster", "9.7-fold faster"),
        ("a 9.7-fold speedup", "9.7-fold speedup"),
        ("a speedup of 4.2 over numpy", "speedup of 4.2"),
        ("a speed-up of 4.2x", "speed-up of 4.2x"),
    ],
)
def test_suffixed_fold_and_speedup_of_phrasings_are_found(text: str, found: str) -> None:
    """A user's README passed with each of these uncovered while "50,000 tokens/sec" failed."""
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
        "10-fold cross-validation",
        "a 4k context window",
        "50k parameters",
        "Python 3.11.7, released 2023-12-04",
        "the speedup of the kernel",
        "two orders of magnitude",  # a number word with no speed word
        "ten-fold cross-validation",
        "one of the three times the test ran",
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


def test_a_binary_file_a_glob_matches_is_skipped_and_listed(tmp_path: Path) -> None:
    """An image under ``docs/*`` (NUL bytes) is not scanned, and the output says so."""
    (tmp_path / "docs").mkdir()
    png = tmp_path / "docs" / "plot.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR 9.7x faster")
    found = uncovered(tmp_path, [png], {})
    assert [(f.claim, f.status) for f in found] == [("skipped:docs/plot.png", "not scanned")]
    assert "not scanned" in found[0].message and "offset 8" in found[0].message
    # listed, never a failure: a sign-off counts it, and `check claims` shows it skipped
    assert passed(found) and "1 scanned files not text" in verdict_line(found)
    assert as_outcome(found[0]).status == "skipped"


def test_a_scanned_file_that_is_not_utf8_is_an_input_error(tmp_path: Path) -> None:
    """One Latin-1 byte in a scanned README: exit-2 error naming the file, line and offset."""
    readme = tmp_path / "README.md"
    readme.write_bytes(b"# Caf\xe9\n9.7x faster\n")
    with pytest.raises(GateInputError, match=r"README\.md:1: .*not UTF-8.*0xe9 at offset 5"):
        uncovered(tmp_path, [readme], {})


def test_a_published_file_that_is_not_utf8_is_an_input_error(tmp_path: Path) -> None:
    """The claim's published file with a Latin-1 byte: an input error, not a traceback."""
    (tmp_path / "claims.toml").write_text(
        'schema_version = 2\n[[claim]]\nid = "tps"\nhost = "node24"\nartifact = "wasm32"\n'
        'preset = "tiny"\nsubject = "generate"\nmetric = "tok_per_s"\nvalue = 1200\n'
        'tolerance = 0.2\ntolerance_reason = "test"\nmachine_independent = true\n'
        'published = { file = "README.md", marker = "claim:tps" }\n'
    )
    claim = load_claims(tmp_path / "claims.toml").claims[0]
    (tmp_path / "README.md").write_bytes(b"<!-- claim:tps -->\nG\xe9n: 1,200 tok/s\n")
    with pytest.raises(GateInputError, match=r"README\.md:2: .*not UTF-8.*0xe9 at offset 20"):
        published_region(claim, tmp_path, tmp_path / "claims.toml")
