"""One line of a text-only check's output."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Status = Literal["pass", "fail", "error", "skipped"]


@dataclass(frozen=True)
class Outcome:
    """A verdict on one subject (a key at a surface, a corpus criterion, a claim)."""

    check: str  # "defaults", "corpus", "claims"
    subject: str
    status: Status
    detail: str


def exit_code(outcomes: list[Outcome]) -> int:
    """0 when nothing failed or errored (skipped rows are listed, not failures), else 1."""
    return 1 if any(o.status in ("fail", "error") for o in outcomes) else 0
