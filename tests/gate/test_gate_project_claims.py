"""The project's own claims file: valid, pointing at real files, and covering the docs."""

from __future__ import annotations

from pathlib import Path

from harness.gate.claim_checks import covered_spans
from harness.gate.claim_scan import scan_files, uncovered
from harness.gate.claims import load_claims

ROOT = Path(__file__).resolve().parents[2]
CLAIMS = ROOT / "docs" / "claims.toml"
RATIO_METRICS = ("speedup", "overhead_fraction", "roofline_fraction")


def test_project_claims_file_is_valid() -> None:
    """docs/claims.toml parses, every claim gives a reason for its tolerance, files exist."""
    claims = load_claims(CLAIMS)
    assert claims.claims
    for claim in claims.claims:
        assert claim.tolerance_reason.strip(), claim.id
        assert (ROOT / claim.published.file).is_file(), claim.published.file
        # A README claim is a same-run ratio: two cells of the run (relative_to), or a metric
        # the run itself computes as a ratio of two medians it measured (speedup over numpy).
        same_run_ratio = bool(claim.relative_to) or claim.base.metric in RATIO_METRICS
        assert same_run_ratio, f"{claim.id}: README claims are same-run ratios"


def test_no_uncovered_performance_numbers_in_docs() -> None:
    """README.md and docs/*.md carry no performance-looking number outside a claim or exception."""
    claims = load_claims(CLAIMS)
    files = scan_files(ROOT, claims.scan_files, claims.scan_exclude)
    found = uncovered(ROOT, files, covered_spans(claims, ROOT), claims.not_claims)
    assert [f.message for f in found] == []
