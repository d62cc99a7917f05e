"""Find numbers in the docs that read like performance claims and that no claim covers."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from harness.gate.claim_checks import NUMBER, Finding
from harness.gate.claims import NotAClaim, read_utf8

# "9.7×", "3x faster", "2.5 times slower", "40% faster", "120 tok/s", "1,200 tokens per second",
# "3.2 it/s", "6.8 s/step", "45 ms per token", "12 GFLOP/s", "8 GB/s". A spaced "1.5 x
# block_size" or "100 × clock resolution" is arithmetic, not a claim: "x" and "×" count when
# glued to the number, or when "faster"/"slower"/"speedup" follows. A glued multiplier of
# something that is not a speed ("4x the arithmetic intensity") is still flagged: it is a
# number the text asserts, and a reviewed ``not_a_claim`` (with its reason) is the way out.
# Also "50k tokens/sec" and "1.2M tok/s" (a glued k/K/M/B, case-sensitive: "50m" may be minutes
# or metres), "9.7-fold faster"/"9.7-fold speedup" ("-fold" only with a speed word: "10-fold
# cross-validation" is not a claim) and "speedup of 4.2" (the number after the word).
# Spelled-out claims too: "twice as fast", "three times faster", "ten-fold speedup", "an order of
# magnitude faster" (a README that writes "ten times faster than Python" publishes the same
# single point as "10x"); a number word alone ("two orders of magnitude") is not a claim.
_TIME = r"(?:ns|µs|us|ms|s|secs?|seconds?|mins?|minutes?)"
_UNIT = r"(?:steps?|tok(?:en)?s?|it(?:er(?:ation)?s?)?|batch(?:es)?|epochs?|samples?|calls?)"
# A number is read whole, exponent included, as the text check reads it: "2.4e-07 s/step" is
# flagged as itself, not as "07 s/step" (a number no claim or reader would recognise).
_NUM = NUMBER
# The speed words, in one place: a phrasing that listed its own missed "3.5 times quicker".
SPEED_WORDS: tuple[str, ...] = ("faster", "slower", "quicker")
_SPEED = rf"(?:{'|'.join(SPEED_WORDS)}|speed-?ups?)"
_AS_FAST = r"as\s+(?:fast|quick|slow)"
_WORD = (
    r"(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen"
    r"|sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety"
    r"|(?:a\s+)?hundred|(?:a\s+)?thousand)"
)
_SPELLED = (
    rf"\b(?:(?:twice|thrice|half)\s+{_AS_FAST}"
    rf"|{_WORD}(?:[\s-]+{_WORD})?(?:\s+times\s+(?:{_SPEED}|{_AS_FAST})|\s*-?\s*fold\s+{_SPEED})"
    rf"|(?:an|one|two|three|several)\s+orders?\s+of\s+magnitude\s+{_SPEED})(?!\w)"
)
PERF_NUMBER = re.compile(
    rf"{_SPELLED}"
    rf"|speed-?ups?\s+of\s+(?:(?:about|around|roughly|nearly|almost|over|up\s+to)\s+|~\s*)?"
    rf"{_NUM}(?:\s*(?:×|x)(?!\w))?"
    rf"|{_NUM}(?-i:[kKMB])?"
    rf"(?:(?:×|x)(?!\w)|\s*(?:×|x)\s+{_SPEED}|\s*-?\s*fold\s+{_SPEED}"
    rf"|\s*times\s+(?:{_SPEED}|{_AS_FAST})|\s*%\s*{_SPEED}"
    rf"|\s*{_UNIT}\s*(?:/\s*s(?:ec)?|per\s+sec(?:ond)?)(?!\w)"
    rf"|\s*{_TIME}\s*(?:/\s*|per\s+){_UNIT}(?!\w)"
    r"|\s*[GMT]FLOP/?s|\s*GB/s)",
    re.IGNORECASE,
)


def scan_files(root: Path, patterns: tuple[str, ...], exclude: tuple[str, ...]) -> list[Path]:
    """The files to scan: ``patterns`` globbed under ``root``, minus ``exclude``."""
    skip = {(root / e).resolve() for e in exclude}
    found: dict[Path, None] = {}
    for pattern in patterns:
        for path in sorted(root.glob(pattern)):
            if path.is_file() and path.resolve() not in skip:
                found[path] = None
    return list(found)


def _text(path: Path, label: str) -> str | Finding:
    """The file's text, or the finding that lists it as skipped: a file with a NUL byte is not
    text (an image a ``docs/*`` glob matches), while a text file with one stray Latin-1 byte
    is an input error (read_utf8), never skipped silently."""
    nul = path.read_bytes().find(b"\0")
    if nul >= 0:
        return Finding(f"skipped:{label}", "not scanned", (
            f"{label}: not scanned: not a text file (NUL byte at offset {nul})"
        ))  # fmt: skip
    return read_utf8(path, "scanned file")


def _excused(line: str, start: int, end: int, texts: list[str]) -> bool:
    for text in texts:
        at = line.find(text)
        while at >= 0:
            if at <= start and end <= at + len(text):
                return True
            at = line.find(text, at + 1)
    return False


def uncovered(
    root: Path,
    files: list[Path],
    spans: Mapping[str, list[tuple[int, int]]],
    not_claims: tuple[NotAClaim, ...] = (),
) -> list[Finding]:
    """One finding per performance-looking number outside every claim and every exception, and
    one "not scanned" finding per file that is not text (it holds a NUL byte)."""
    out = []
    for path in files:
        label = str(path.relative_to(root))
        mine = spans.get(label, [])
        excuses = [n.text for n in not_claims if Path(n.file) == Path(label)]
        text = _text(path, label)
        if isinstance(text, Finding):
            out.append(text)  # listed, so a skipped file is visible; it fails nothing
            continue
        for number, line in enumerate(text.splitlines(), start=1):
            if any(a <= number <= b for a, b in mine):
                continue
            for match in PERF_NUMBER.finditer(line):
                if _excused(line, match.start(), match.end(), excuses):
                    continue
                out.append(Finding(f"uncovered:{label}:{number}", "uncovered", (
                    f"{label}:{number}: {match.group(0)!r} reads like a performance claim "
                    "but no claim covers it (add a [[claim]] or reword it)"
                )))  # fmt: skip
    return out
