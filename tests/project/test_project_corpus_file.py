"""Corpus sources a project names wrongly or has not fetched: that source's error."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli import main
from harness.convergence_band import corpus_for_band
from harness.profile import ProfileError, load_profile
from harness.project import corpus

FILE_SOURCE = '[[corpus.source]]\nkind = "file"\npath = "data/input.txt"\n\n'


def _with_file_source(project: Path) -> int:
    """Put a ``file`` source (data/input.txt, not created) first in ``project``'s [corpus];
    return the line of its ``[[corpus.source]]``."""
    profile = project / "harness.toml"
    text = profile.read_text()
    at = text.index("[[corpus.source]]")
    profile.write_text(text[:at] + FILE_SOURCE + text[at:])
    return text[:at].count("\n") + 1


def test_missing_corpus_file_stops_only_its_source(
    fixed: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The corpus is often a download not fetched yet: the profile still loads, check defaults
    and check claims still run (exit 0), and the file source's outcome is an error naming the
    profile's line and the path it looked at."""
    line = _with_file_source(fixed)
    assert main(["check", "defaults", "--project", str(fixed)]) == 0
    assert main(["check", "claims", "--project", str(fixed)]) == 0
    capsys.readouterr()
    profile = load_profile(fixed / "harness.toml")
    assert profile.corpus is not None
    (got,) = corpus.check_source(profile, profile.corpus.contract, 0)
    assert got.status == "error"
    assert f"harness.toml:{line}: corpus file 'data/input.txt' not found" in got.detail
    assert str(fixed / "data" / "input.txt") in got.detail


def test_a_run_that_trains_on_a_missing_corpus_file_is_a_profile_error(fixed: Path) -> None:
    """A run or a recording trains on the first file source: when it is missing that is a
    ProfileError at the source's line (exit 2 at load), not a traceback."""
    line = _with_file_source(fixed)
    with pytest.raises(ProfileError, match=rf"harness\.toml:{line}: cannot read corpus file"):
        corpus_for_band(load_profile(fixed / "harness.toml"))


def test_a_present_corpus_file_is_judged(fixed: Path) -> None:
    """Once fetched, the same source is read and judged by the contract (here: too short)."""
    _with_file_source(fixed)
    (fixed / "data").mkdir()
    (fixed / "data" / "input.txt").write_text("To be, or not to be.\n")
    profile = load_profile(fixed / "harness.toml")
    assert profile.corpus is not None
    got = {o.subject: o for o in corpus.check_source(profile, profile.corpus.contract, 0)}
    assert got["source[0]:file:contract:bytes"].status == "fail"
    assert corpus_for_band(profile) == ("To be, or not to be.\n", "data/input.txt")


def test_a_textarea_id_the_source_lacks_names_the_profile_line(fixed: Path) -> None:
    """A profile naming a textarea id its file lacks: the error names the profile's line and
    the ids the file has, so the typo is found without opening both files."""
    profile_file = fixed / "harness.toml"
    text = profile_file.read_text()
    profile_file.write_text(text.replace('id = "corpus"', 'id = "corpus-text"'))
    line = text[: text.index('kind = "textarea"')].count("\n")  # its [[corpus.source]] line
    profile = load_profile(profile_file)
    assert profile.corpus is not None
    (got,) = corpus.check_source(profile, profile.corpus.contract, 0)
    assert got.status == "error"
    assert "no <textarea id='corpus-text'>" in got.detail
    assert f"named at {profile_file}:{line}" in got.detail and "'corpus'" in got.detail
