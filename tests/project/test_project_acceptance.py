"""Issue 11's acceptance: the browser project fixture, drifted (exit 1) and fixed (exit 0)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from harness.cli import main

pytestmark = pytest.mark.chromium


def test_drifted_every_drift_at_file_line(
    drifted: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """lr 3e-3 (TS and HTML), the 863-byte textarea, the single-point 9.7x: each at file:line."""
    codes = {
        w: main(["check", w, "--project", str(drifted)]) for w in ("defaults", "corpus", "claims")
    }
    out = capsys.readouterr().out
    assert codes == {"defaults": 1, "corpus": 1, "claims": 1}
    for needle in (
        "browser/src/types.ts:16: MISMATCH learning_rate",
        "browser/src/pages/index.astro:11: MISMATCH learning_rate",
        "browser/src/pages/index.astro:16 <textarea id='corpus'>: FAILED: need 20,000..2,000,000 "
        "bytes; found 863 bytes",
        "README.md:7: REFUSED",
    ):
        assert needle in out, needle


def test_fixed_passes_every_text_check(fixed: Path) -> None:
    """The fixed tree: all three checks exit 0, and without any artifact, host or build."""
    start = time.monotonic()
    codes = [main(["check", w, "--project", str(fixed)]) for w in ("defaults", "corpus", "claims")]
    assert codes == [0, 0, 0]
    # not a speed assertion: a record, printed, of how long the text-only checks took
    print(f"text-only checks: {time.monotonic() - start:.1f} s")
