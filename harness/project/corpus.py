"""``check corpus``: the corpus the project's UI really trains on meets the profile's contract.

Each ``[[corpus.source]]`` is read (a file; a textarea in the source, at its file:line; the
built page in headless Chromium, :mod:`harness.project.page`; or this repository's default
corpus) and judged against the whole contract by
:func:`harness.checks.corpus.contract_findings`. Every outcome's detail starts with the source
and where it was read, and says what was found (size, lines, paragraphs, cues, sha256, first
words), so the 863-byte placeholder fails as "index.astro:16: 863 bytes ...".
"""

from __future__ import annotations

import re

from harness.checks.corpus import contract_findings
from harness.profile import CorpusContract, CorpusSource, Profile
from harness.project.outcome import Outcome
from harness.project.page import PageReadError, read_element
from harness.surfaces import SurfaceError
from harness.surfaces.html import textareas
from reference.corpus import CorpusUnavailable, load_corpus

CHECK = "corpus"


def _label(source: CorpusSource, index: int) -> str:
    return f"source[{index}]:{source.kind}"


def _element_line(page_file: str, selector: str) -> str:
    """``:LINE`` of ``id="x"`` in the built page for a ``#x`` selector (else empty)."""
    m = re.fullmatch(r"#([\w-]+)", selector)
    if m is None:
        return ""
    try:
        with open(page_file, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError):
        return ""
    hit = re.search(rf"""\bid\s*=\s*["']?{re.escape(m.group(1))}\b""", text)
    return f":{text.count(chr(10), 0, hit.start()) + 1}" if hit else ""


def read_source(profile: Profile, source: CorpusSource) -> tuple[str | None, str]:
    """``(text, where)``; text None means a listed skip (``where`` says why)."""
    if source.kind == "default":
        return load_corpus(None), "the default corpus (reference/corpus.py)"
    assert source.path is not None
    if source.kind == "file":
        if not source.path.is_file():
            raise CorpusUnavailable(
                f"{profile.where(source.line)}: corpus file {source.rel!r} not found (looked at "
                f"{source.path}): fetch or build it first (the check reads what the UI trains on)"
            )
        return load_corpus(source.path), source.rel
    if source.kind == "textarea":
        found = [e for e in textareas(source.path) if e.key == source.element]
        if not found:
            ids = sorted({str(e.key) for e in textareas(source.path)})
            raise SurfaceError(
                source.rel,
                f"no <textarea id={source.element!r}> (named at {profile.where(source.line)}; "
                f"its textareas: {', '.join(map(repr, ids)) or 'none'})",
            )
        entry = found[0]
        where = f"{source.rel}:{entry.line} <textarea id={source.element!r}>"
        text = str(entry.value)
        # an Astro/JSX body {corpusText} is code, not text: the page gets it at build or runtime
        is_code = bool(re.fullmatch(r"\s*\{[^{}]*\}\s*", text))
        if (not text.strip() or is_code) and source.filled_at_runtime:
            state = f"holds the expression {text.strip()}" if is_code else "is empty"
            return None, (
                f"{where} {state} in the source; the page fills it (filled_at_runtime), so the "
                "page source checks what it holds"
            )
        return text, where
    if not source.path.is_dir():
        raise PageReadError(
            f"{profile.where(source.line)}: site directory {source.rel!r} not found (looked at "
            f"{source.path}): build the site first (its build output is what a visitor is served)"
        )
    page_file = str(source.path / source.page)
    read = read_element(source.path, source.page, source.element, source.timeout_s, source.base)
    where = (
        f"{source.rel}/{source.page}{_element_line(page_file, source.element)} "
        f"{source.element} as served ({read.url}) after the page's scripts ran"
    )
    # a failed request (a 404 fetch of the corpus) explains a short value: name it
    failed = [line for line in read.console if not line.startswith("console.")]
    if failed:
        where += f"; the page's errors: {' | '.join(failed[-3:])}"
    return read.value, where


def check_source(profile: Profile, contract: CorpusContract, index: int) -> list[Outcome]:
    """The outcomes of one source: an error, a listed skip, or one per contract criterion."""
    assert profile.corpus is not None
    source = profile.corpus.sources[index]
    label = _label(source, index)
    try:
        text, where = read_source(profile, source)
    except (PageReadError, CorpusUnavailable, SurfaceError) as exc:
        return [Outcome(CHECK, label, "error", f"{source.kind} source: {exc}")]
    if text is None:
        return [Outcome(CHECK, label, "skipped", where)]
    return [
        Outcome(CHECK, f"{label}:{f.subject}", "pass" if f.ok else "fail", f"{where}: {f.detail}")
        for f in contract_findings(text, contract)
    ]


def check(profile: Profile) -> list[Outcome]:
    """Every outcome of the corpus check (empty when the profile has no [corpus])."""
    if profile.corpus is None:
        return []
    out: list[Outcome] = []
    for i in range(len(profile.corpus.sources)):
        out += check_source(profile, profile.corpus.contract, i)
    return out
