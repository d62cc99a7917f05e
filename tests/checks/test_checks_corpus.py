"""The corpus check: identity of the default corpus, and the convergence band on the kernel."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from harness.artifact import Artifact
from harness.checks.base import CellContext
from harness.checks.corpus import identity_findings, run, validate_options
from harness.convergence import REFERENCE_FILE, Band, judge, kernel_losses, record
from harness.engines.ctypes_engine import CtypesInstance
from reference.corpus import load_corpus
from reference.defaults import DEFAULTS
from reference.presets import PRESETS, get_preset
from reference.tokenizer import encode

PLACEHOLDER = Path(__file__).parent / "fixtures" / "placeholder_corpus.txt"


def test_placeholder_fixture_is_the_863_byte_paragraph() -> None:
    """The fixture reproduces TinyGPT's placeholder: one paragraph of exactly 863 bytes."""
    assert len(PLACEHOLDER.read_bytes()) == 863


def test_placeholder_fails_loudly_naming_863_bytes() -> None:
    """sha256, size and line structure fail, each naming 863 bytes and the single paragraph."""
    by_subject = {f.subject: f for f in identity_findings(PLACEHOLDER.read_text())}
    failed = {s for s, f in by_subject.items() if not f.ok}
    assert failed == {"identity:sha256", "identity:bytes", "identity:lines"}
    for s in failed:
        assert "863 bytes" in by_subject[s].detail and "1 paragraph" in by_subject[s].detail
    assert "a placeholder, not the plays" in by_subject["identity:bytes"].detail
    assert by_subject["identity:bytes"].value == 863


def test_non_ascii_text_fails_the_charset() -> None:
    """A text outside the tokenizer's 7-bit ASCII fails the charset criterion, counting bytes."""
    (charset,) = [f for f in identity_findings("Ünïcödé text\n") if f.subject == "identity:charset"]
    assert not charset.ok and "non-ASCII bytes" in charset.detail


@pytest.mark.corpus
def test_real_corpus_passes_identity() -> None:
    """The default corpus passes every identity criterion."""
    assert all(f.ok for f in identity_findings(load_corpus()))


def _ctx(instance: CtypesInstance, artifact: Artifact, **options: object) -> CellContext:
    return CellContext("native", "ctypes", artifact, PRESETS["tiny"], instance, options=options)


def test_check_on_placeholder_file_fails_and_skips_convergence(
    native: CtypesInstance, native_artifact: Artifact
) -> None:
    """Pointed at the placeholder, the check fails identity and skips convergence, saying why."""
    rows = list(run(_ctx(native, native_artifact, corpus=str(PLACEHOLDER))))
    status = {r.subject: r.status for r in rows}
    assert status["identity:bytes"] == "fail" and status["convergence"] == "skipped"
    assert "not the one the band was recorded" in next(
        r.detail for r in rows if r.subject == "convergence"
    )


def test_committed_band_has_its_provenance() -> None:
    """The committed band names command, commit, date, preset, steps, seed and the losses."""
    data = json.loads(REFERENCE_FILE.read_text())
    for key in ("command", "commit", "date", "preset", "steps", "seed", "runs", "defaults_sha256"):
        assert data[key], key
    assert len(data["runs"]["default"]["losses"]) == data["steps"]
    band = Band.load()
    assert band.lower < band.reference_final < band.upper
    assert band.defaults_sha256 == DEFAULTS.sha256()


@pytest.mark.corpus
@pytest.mark.parametrize(
    ("lr", "ok", "words"),
    [(3e-4, True, "inside"), (3e-3, False, "too hot"), (3e-5, False, "too cold")],
)
def test_convergence_passes_at_3e4_and_fails_at_3e3(
    native: CtypesInstance, lr: float, ok: bool, words: str
) -> None:
    """Kernel training at the default 3e-4 lands in the band; TinyGPT's 3e-3 (and 3e-5) does not."""
    band = Band.load()
    defaults = dataclasses.replace(DEFAULTS, learning_rate=lr)
    losses = kernel_losses(
        native, get_preset(band.preset), encode(load_corpus()), band.steps, defaults, band.seed
    )
    verdict = judge(losses, band, defaults)
    assert verdict.ok is ok and words in verdict.detail


@pytest.mark.corpus
def test_check_rows_through_the_native_engine(
    native: CtypesInstance, native_artifact: Artifact
) -> None:
    """On the real corpus and kernels the corpus check passes; learning_rate=3e-3 makes it fail."""
    good = list(run(_ctx(native, native_artifact)))
    assert {r.status for r in good if r.status != "measured"} == {"pass"}
    bad = list(run(_ctx(native, native_artifact, learning_rate=3e-3)))
    (conv,) = [r for r in bad if r.subject == "convergence" and r.status != "measured"]
    assert conv.status == "fail" and "BELOW the band" in conv.detail and "lr 0.003" in conv.detail


def test_mismatched_steps_are_an_error_not_a_silent_pass(
    native: CtypesInstance, native_artifact: Artifact
) -> None:
    """A matrix asking for a step count the band was not recorded at gets an error row."""
    from harness.convergence import convergence_rows

    rows = list(convergence_rows(_ctx(native, native_artifact, steps=30), load_corpus()))
    assert rows[0].status == "error" and "recorded over 300 steps" in rows[0].detail


@pytest.mark.slow
@pytest.mark.corpus
def test_record_derives_a_monotonic_band(tmp_path: Path) -> None:
    """Recording over a short run still orders hot < default < cold (a derivable band)."""
    data = record("tiny", steps=150, window=25)
    assert data["lower"] < data["reference_final"] < data["upper"]


@pytest.mark.parametrize(
    ("options", "message"),
    [({"steps": 0}, "steps"), ({"corpus": 3}, "corpus"), ({"nope": 1}, "unknown option")],
)
def test_validate_options(options: dict[str, object], message: str) -> None:
    """A bad [check.corpus] table is refused naming the field."""
    with pytest.raises(ValueError, match=message):
        validate_options(options)
