"""The generator of the fixture's ``dist/corpus.txt``: a small play-like text, not a real corpus.

Run ``python -m tests.project.play_text > tests/fixtures/browser_project/fixed/dist/corpus.txt``
to rewrite it; ``test_fixture_corpus_is_the_generators`` keeps the two in step.
"""

from __future__ import annotations

import random
import sys

_NAMES = ("ALDO", "BRIGID", "CASSIUS VANE", "DORA", "FIRST WARDEN", "ELSPETH")
_WORDS = [
    "the",
    "night",
    "is",
    "long",
    "and",
    "we",
    "are",
    "few",
    "but",
    "hold",
    "the",
    "gate",
    "until",
    "the",
    "morning",
    "bells",
    "ring",
    "out",
    "across",
    "the",
    "river",
    "where",
    "the",
    "ships",
    "lie",
    "waiting",
    "for",
    "a",
    "word",
    "from",
    "home",
    "my",
    "lord",
    "I",
    "bring",
    "you",
    "news",
    "of",
    "fire",
    "and",
    "of",
    "a",
    "crown",
    "that",
    "no",
    "one",
    "wears",
]
_ROMAN = ("I", "II", "III", "IV")


def generate(seed: int = 11) -> str:
    """Three acts of four scenes of 22 speeches: speaker cues, short verse lines, headings."""
    rng = random.Random(seed)
    out: list[str] = []
    for act in range(3):
        out += [f"ACT {_ROMAN[act]}", ""]
        for scene in range(4):
            out += [f"SCENE {_ROMAN[scene]}. A hall in the castle.", ""]
            for _speech in range(22):
                out.append(f"{rng.choice(_NAMES)}:")
                for _ in range(rng.randint(2, 6)):
                    line = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(5, 9)))
                    out.append(line[0].upper() + line[1:] + rng.choice([",", ".", ";", "!", "?"]))
                out.append("")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.stdout.write(generate())
