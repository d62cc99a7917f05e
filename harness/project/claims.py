"""``check claims``: a project's published numbers, without a run.

From the profile's claims file (docs/signoff.md's schema), with published files relative to
the project root: each claim's published text must still carry its values; each claim citing
an external measurement file is checked against that file (its band, and the single-point rule
whatever its ``x``, :mod:`harness.gate.external`); numbers that read like performance claims
outside every claim are ``uncovered``. A claim measured by a harness run cannot be checked
without one: it is listed as ``skipped`` ("needs a run"), not passed. A bad claims or
measurement file is a ProfileError (exit 2) naming its ``file:line``.
"""

from __future__ import annotations

from harness.gate.claim_checks import Finding, check_text, covered_spans, published_region
from harness.gate.claim_scan import scan_files, uncovered
from harness.gate.claims import load_claims
from harness.gate.errors import GateInputError
from harness.gate.external import check_claim
from harness.profile import Profile, ProfileError
from harness.project.outcome import Outcome, Status

CHECK = "claims"
_STATUS: dict[str, Status] = {
    "pass": "pass",
    "fail": "fail",
    "stale": "fail",
    "refused": "fail",
    "uncovered": "fail",
    "not comparable": "skipped",
    "not scanned": "skipped",  # a file the scan's globs match that is not text
    "rechecked": "pass",  # never produced without a run (signoff --recheck); listed for totality
}


def as_outcome(f: Finding, where: str = "") -> Outcome:
    """The ``check claims`` outcome of one sign-off finding (its status mapped by _STATUS)."""
    label = f.status if f.status not in ("pass", "fail") else ""
    detail = f"{label.upper()}: {f.message}" if label else f.message
    return Outcome(CHECK, f.claim, _STATUS[f.status], f"{where}: {detail}" if where else detail)


def check(profile: Profile) -> list[Outcome]:
    """Every outcome of the claims check (empty when the profile has no [claims])."""
    if profile.claims is None:
        return []
    path = profile.claims.file
    root = profile.root
    try:
        claims = load_claims(path)
        out: list[Outcome] = []
        for claim in claims.claims:
            region = published_region(claim, root, path)
            where = claim.published.file if isinstance(region, str) else f"{region[0]}:{region[1]}"
            text = check_text(claim, root, path)
            out += [as_outcome(f) for f in text]
            if not text:
                values = ", ".join(f"{v:g}" for v in claim.points.values())
                out.append(Outcome(CHECK, claim.id, "pass", f"{where}: carries {values}"))
            if claim.measurements:
                out += [as_outcome(f, where) for f in check_claim(claim, path)]
            else:
                out.append(
                    Outcome(
                        CHECK,
                        claim.id,
                        "skipped",
                        f"{claim.id}: measured by a harness run ({claim.base.label()}); needs a "
                        "run: tinygpt-harness signoff RUN --claims " + str(path),
                    )
                )
        files = scan_files(root, claims.scan_files, claims.scan_exclude)
        out += [as_outcome(f) for f in uncovered(root, files, covered_spans(claims, root),
                                                claims.not_claims)]  # fmt: skip
    except GateInputError as exc:
        named = profile.where(profile.claims.line)
        raise ProfileError(f"{exc} (claims file named at {named})") from None
    return out
