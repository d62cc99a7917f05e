"""Check kind ``corpus``: the default corpus is the real one, and training on it converges.

Identity (no kernel involved): the corpus's sha256 is :data:`DEFAULT_CORPUS_SHA256`; it has at
least :data:`MIN_CORPUS_BYTES` bytes; its characters are 7-bit ASCII prose (the tokenizer's
domain); and its lines look like plays: many short lines, speaker cues, act/scene headings. A
placeholder fails every one of these loudly, each row naming what was found instead (for the
863-byte paragraph TinyGPT shipped: "863 bytes, 1 paragraph, 7 lines, 0 speaker cues").

In ``run --project`` the identity rows judge the project's corpus instead: the text its runs
train on (:func:`harness.convergence_band.corpus_for_band`: ``[convergence] corpus``, else the
profile's first ``file`` source, else the default corpus), against the profile's ``[corpus]``
contract (``contract:*`` rows; ``contract = "builtin"`` is the identity above). A profile
without ``[corpus]`` states no contract and keeps the rows above; a matrix's own
``[check.corpus] corpus`` still wins: it is what the matrix asked for.

Convergence (the kernel's ``train_step`` in this cell, at the reference's default
hyperparameters): see :mod:`harness.convergence`. Kernel parity cannot catch a learning rate 10x
off; a loss band derived from reference runs can.
"""

from __future__ import annotations

import hashlib
import math
import re
import statistics
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from harness.checks.base import CellContext
from harness.profile import CorpusContract
from harness.rundir.rows import Row
from reference.corpus import (
    DEFAULT_CORPUS_SHA256,
    MIN_CORPUS_BYTES,
    CorpusUnavailable,
    load_corpus,
)

CHECK = "corpus"

MIN_LINES = 10_000  # ~46k in the default corpus; a play has a line per verse or cue
MAX_MEDIAN_LINE = (
    80  # verse and dialogue lines are short (37 chars median); prose paragraphs aren't
)
MIN_SPEAKER_CUES = 1_000  # "Ber." / "HAMLET:" on its own line (~8k in the default corpus)
MIN_HEADINGS = 5  # "ACT I" / "Scene II." lines (~240 in the default corpus)
MIN_LETTER_SHARE = 0.8  # letters among non-space characters (0.92 in the default corpus)

_CUE = re.compile(r"^\s*[A-Z][A-Za-z']*(?: [A-Za-z'][A-Za-z']*){0,3}[.:]\s*$", re.M)
_HEADING = re.compile(r"^\s*(?:ACT|Act|SCENE|Scene)\s+[IVXLC\d]+\b", re.M)


@dataclass(frozen=True)
class Identity:
    """The measured traits of a corpus text."""

    sha256: str
    n_bytes: int
    n_lines: int
    n_paragraphs: int
    median_line: float
    speaker_cues: int
    headings: int
    non_ascii: int
    letter_share: float
    has_both_cases: bool
    head: str  # the first words, for the message

    def summary(self) -> str:
        """What was found, in one line: the thing a failing row must name."""
        return (
            f"found {self.n_bytes:,} bytes, {self.n_paragraphs:,} paragraph(s), "
            f"{self.n_lines:,} line(s), {self.speaker_cues:,} speaker cues, sha256 "
            f"{self.sha256[:12]}, starting {self.head!r}"
        )


def measure(text: str) -> Identity:
    """Measure the identity traits of ``text``."""
    data = text.encode("utf-8")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # a final newline ends the last line, it does not start a new one
    non_blank = [s for s in lines if s.strip()]
    paragraphs = [p for p in re.split(r"\n\s*\n", text) if p.strip()]
    non_space = [c for c in text if not c.isspace()]
    letters = sum(c.isalpha() for c in non_space)
    return Identity(
        sha256=hashlib.sha256(data).hexdigest(),
        n_bytes=len(data),
        n_lines=len(lines),
        n_paragraphs=len(paragraphs),
        median_line=float(statistics.median(len(s) for s in non_blank)) if non_blank else 0.0,
        speaker_cues=len(_CUE.findall(text)),
        headings=len(_HEADING.findall(text)),
        non_ascii=sum(1 for b in data if b >= 0x80),
        letter_share=letters / len(non_space) if non_space else 0.0,
        has_both_cases=any(c.isupper() for c in text) and any(c.islower() for c in text),
        head=" ".join(text.split()[:8])[:60],
    )


@dataclass(frozen=True)
class Finding:
    """One identity criterion: its subject, whether it holds, and the exact numbers."""

    subject: str
    ok: bool
    value: float
    detail: str


def identity_findings(text: str, expected_sha256: str = DEFAULT_CORPUS_SHA256) -> list[Finding]:
    """Judge ``text`` against the default corpus's identity; one finding per criterion."""
    m = measure(text)
    what = m.summary()

    def finding(subject: str, ok: bool, value: float, need: str, measured: str) -> Finding:
        if ok:
            return Finding(subject, ok, value, f"ok: {measured} ({need})")
        return Finding(subject, ok, value, f"FAILED: need {need}; {what}; {measured}")

    placeholder = "" if m.n_bytes >= MIN_CORPUS_BYTES else " (a placeholder, not the plays)"
    return [
        finding(
            "identity:sha256",
            m.sha256 == expected_sha256,
            float("nan"),
            f"sha256 {expected_sha256}",
            f"sha256 {m.sha256}",
        ),
        finding(
            "identity:bytes",
            m.n_bytes >= MIN_CORPUS_BYTES,
            float(m.n_bytes),
            f">= {MIN_CORPUS_BYTES:,} bytes",
            f"{m.n_bytes:,} bytes{placeholder}",
        ),
        finding(
            "identity:charset",
            m.non_ascii == 0 and m.letter_share >= MIN_LETTER_SHARE and m.has_both_cases,
            m.letter_share,
            f"7-bit ASCII, letters >= {MIN_LETTER_SHARE:.0%} of non-space characters, both cases",
            f"{m.non_ascii} non-ASCII bytes, letters {m.letter_share:.0%}, both cases "
            f"{m.has_both_cases}",
        ),
        finding(
            "identity:lines",
            m.n_lines >= MIN_LINES
            and m.median_line <= MAX_MEDIAN_LINE
            and m.speaker_cues >= MIN_SPEAKER_CUES
            and m.headings >= MIN_HEADINGS,
            float(m.n_lines),
            f"a play's lines: >= {MIN_LINES:,} lines, median line <= {MAX_MEDIAN_LINE} chars, "
            f">= {MIN_SPEAKER_CUES:,} speaker cues, >= {MIN_HEADINGS} act/scene headings",
            f"{m.n_lines:,} lines, median line {m.median_line:.0f} chars, {m.speaker_cues:,} "
            f"speaker cues, {m.headings} act/scene headings",
        ),
    ]


@dataclass(frozen=True)
class ProjectCorpus:
    """The ``--project`` profile's corpus as a run's corpus cells judge it: the text its runs
    train on, where it was read, and the profile's ``[corpus]`` contract."""

    text: str = field(repr=False)
    source: str
    contract: CorpusContract


# ---- the check -------------------------------------------------------------------------------

_OPTIONS = {"corpus", "convergence", "preset", "steps", "learning_rate", "reference"}


def validate_options(options: Mapping[str, Any]) -> None:
    """Raise ValueError naming the bad field of a ``[check.corpus]`` table."""
    extra = sorted(set(options) - _OPTIONS)
    if extra:
        raise ValueError(f"check.corpus: unknown option(s) {extra}; allowed: {sorted(_OPTIONS)}")
    for key in ("corpus", "preset", "reference"):
        if key in options and not isinstance(options[key], str):
            raise ValueError(f"check.corpus.{key} must be a string, got {options[key]!r}")
    if not isinstance(options.get("convergence", True), bool):
        raise ValueError("check.corpus.convergence must be true or false")
    steps = options.get("steps")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise ValueError(f"check.corpus.steps must be a positive int, got {steps!r}")
    lr = options.get("learning_rate")
    if lr is not None and (isinstance(lr, bool) or not isinstance(lr, int | float) or lr <= 0):
        raise ValueError(f"check.corpus.learning_rate must be a positive number, got {lr!r}")


def _corpus_path(ctx: CellContext) -> Path | None:
    raw = ctx.options.get("corpus")
    if raw is None:
        return None
    p = Path(raw)
    base = ctx.matrix_path.parent if ctx.matrix_path is not None else ctx.repo_root
    return p if p.is_absolute() else base / p


Status = Literal["pass", "fail"]


def run(ctx: CellContext) -> Iterator[Row]:
    """Yield the identity rows, then the convergence rows (when enabled)."""
    validate_options(ctx.options)
    path = _corpus_path(ctx)
    project = ctx.project_corpus if path is None else None
    if project is not None:
        text, label = project.text, f"the project's corpus {project.source}"
        findings = contract_findings(text, project.contract)
    else:
        try:
            text = load_corpus(path)
        except CorpusUnavailable as exc:
            yield ctx.row(CHECK, "identity", "error", detail=f"corpus unavailable: {exc}")
            return
        label = "default corpus" if path is None else f"corpus {path}"
        findings = identity_findings(text)
    for f in findings:
        status: Status = "pass" if f.ok else "fail"
        yield ctx.row(CHECK, f.subject, status, value=f.value, detail=f"{label}: {f.detail}")
    if ctx.options.get("convergence", True):
        if ctx.convergence is not None:  # run --project: the project's band, its corpus
            from harness.convergence_band import band_rows

            yield from band_rows(ctx, ctx.convergence)
            return
        from harness.convergence import convergence_rows  # imports the kernel client

        if project is not None:  # the bundled band was recorded on the default corpus: train
            try:  # on that, not on the project's text (a project's own band is the branch above)
                text = load_corpus(None)
            except CorpusUnavailable as exc:
                yield ctx.row(CHECK, "convergence", "error", detail=f"corpus unavailable: {exc}")
                return
        yield from convergence_rows(ctx, text)


# ---- a project's contract (harness.toml [corpus]) ------------------------------------------


def contract_findings(text: str, contract: CorpusContract) -> list[Finding]:
    """Judge ``text`` against a profile's contract: one finding per criterion it states.

    A builtin contract is :func:`identity_findings` (the default corpus's identity).
    """
    if contract.builtin:
        return identity_findings(text)
    m = measure(text)
    what = m.summary()
    out: list[Finding] = []

    def add(subject: str, ok: bool, value: float, need: str, found: str) -> None:
        detail = f"ok: {found} ({need})" if ok else f"FAILED: need {need}; {what}"
        out.append(Finding(f"contract:{subject}", ok, value, detail))

    hi = contract.max_bytes
    add(
        "bytes",
        contract.min_bytes <= m.n_bytes and (hi is None or m.n_bytes <= hi),
        float(m.n_bytes),
        f"{contract.min_bytes:,}..{hi:,} bytes" if hi is not None else f">= {contract.min_bytes:,}",
        f"{m.n_bytes:,} bytes",
    )
    if contract.sha256 != "any":
        add("sha256", m.sha256 == contract.sha256, math.nan, f"sha256 {contract.sha256}",
            f"sha256 {m.sha256}")  # fmt: skip
    st = contract.structure
    bounds = (
        ("lines", m.n_lines, st.get("min_lines"), st.get("max_lines")),
        ("paragraphs", m.n_paragraphs, st.get("min_paragraphs"), st.get("max_paragraphs")),
        ("speaker_cues", m.speaker_cues, st.get("min_speaker_cues"), None),
        ("headings", m.headings, st.get("min_headings"), None),
        ("median_line", m.median_line, None, st.get("max_median_line")),
    )
    for name, found, low, high in bounds:
        if low is None and high is None:
            continue
        ok = (low is None or found >= low) and (high is None or found <= high)
        need = " and ".join(
            s for s in (f">= {low:,}" if low is not None else "",
                        f"<= {high:,}" if high is not None else "") if s
        )  # fmt: skip
        add(name, ok, float(found), f"{name.replace('_', ' ')} {need}", f"{found:,g} {name}")
    if st.get("ascii"):
        add("ascii", m.non_ascii == 0, float(m.non_ascii), "7-bit ASCII only",
            f"{m.non_ascii} non-ASCII bytes")  # fmt: skip
    return out
