"""``tinygpt-harness signoff --record RUN1 RUN2 RUN3 [...] --claims FILE``: measure the bands.

Reads every recorded claim's figures (value and CI) from N >= 3 run directories of one machine
and one build, fits each claim's bands (:mod:`harness.gate.claim_bands`), and writes the new
values, bands and provenance into the claims file and the published text
(:mod:`harness.gate.claims_rewrite`). Nothing is written unless the rewritten claims file loads
and every rewritten claim's text check passes. Bad input exits 2 with one line.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.gate.claim_bands import (
    MIN_RUNS,
    PREDICTION_LEVEL,
    ClaimFit,
    fit_claim,
    published_text,
)
from harness.gate.claim_checks import (
    REFERENCE_CELL,
    Interval,
    check_run,
    check_text,
    ci_table,
    host_versions,
    measure_interval,
    quantity_table,
    run_incomplete,
)
from harness.gate.claims import Claim, ClaimsFile, load_claims
from harness.gate.claims_rewrite import ClaimUpdate, rewrite_claims, rewrite_published
from harness.gate.errors import GateInputError
from harness.rundir.reader import Run, load_run

REFUSE = "runs"  # what a refusal about the set of runs (not one file) names


@dataclass(frozen=True)
class Recorded:
    """One recorded claim: its fit and what was written for it."""

    claim: Claim
    fit: ClaimFit
    update: ClaimUpdate
    warnings: tuple[str, ...]  # figures whose band spans 2x or more: a 2x-wrong number may pass


def claim_hosts(claim: Claim) -> set[str]:
    """The hosts whose versions a claim's band depends on (what comparability checks)."""
    hosts = {claim.base.host, claim.relative_to.get("host", claim.base.host)}
    if claim.base.metric == "speedup":
        hosts.add(REFERENCE_CELL[0])
    return hosts


def select(claims: ClaimsFile, only: Sequence[str]) -> list[Claim]:
    """The claims to record: ``only``'s, else every bench claim that is not machine independent."""
    known = {c.id: c for c in claims.claims}
    for cid in only:
        if cid not in known:
            raise GateInputError(claims.path, "--only", f"no claim {cid!r} in the file")
    if only:
        return [known[cid] for cid in dict.fromkeys(only)]
    return [c for c in claims.claims if c.base.check == "bench" and not c.machine_independent]


def load_runs(directories: Sequence[Path]) -> list[Run]:
    """Load the runs; refuse fewer than MIN_RUNS, an incomplete, dirty or foreign-defaults run,
    two machines."""
    if len(directories) < MIN_RUNS:
        raise GateInputError(
            REFUSE,
            "",
            (
                f"needs at least {MIN_RUNS} run directories to measure a spread, got "
                f"{len(directories)}"
            ),
        )
    runs = [load_run(d) for d in directories]
    for run in runs:
        short = run_incomplete(run)
        if short:
            # Its missing figures are the run's gap, not the claims file's: say which.
            raise GateInputError(run.meta.path, "status", f"{short} (a band needs complete runs)")
        bad = check_run(run)
        if bad:
            reason = bad[0].message.removeprefix(f"{run.meta.path}: ")
            raise GateInputError(run.meta.path, "", f"{reason} (a band needs such runs too)")
    first = runs[0]
    for run in runs:
        machines = run.meta.shard_fingerprints()
        if machines != first.meta.shard_fingerprints() or len(machines) != 1:
            raise GateInputError(
                REFUSE,
                "",
                (
                    f"{run.directory} was measured on machine {'/'.join(sorted(machines))}, "
                    f"{first.directory} on {'/'.join(sorted(first.meta.shard_fingerprints()))}: "
                    "a band is measured on one machine"
                ),
            )
    return runs


def check_builds(runs: Sequence[Run], claims: Sequence[Claim], allow_mixed: bool) -> None:
    """Refuse runs of different commits or artifact builds (unless allowed) or host versions."""
    first = runs[0]
    artifacts = sorted(
        {c.base.artifact for c in claims}
        | {c.relative_to.get("artifact", "") for c in claims} - {""}
    )
    for run in runs[1:]:
        if allow_mixed:
            break
        if run.meta.commit != first.meta.commit:
            raise GateInputError(
                REFUSE,
                "",
                (
                    f"{run.directory} is of commit {run.meta.commit[:12]}, {first.directory} of "
                    f"{first.meta.commit[:12]}: record from one build (or --allow-mixed-builds)"
                ),
            )
        ours, theirs = first.meta.project, run.meta.project
        if ours != theirs and (ours is None or theirs is None or ours.commit != theirs.commit):
            raise GateInputError(
                REFUSE,
                "",
                (
                    f"{run.directory} measured the project "
                    f"{theirs.describe() if theirs else '(none)'}, {first.directory} "
                    f"{ours.describe() if ours else '(none)'}: record from one build "
                    "(or --allow-mixed-builds)"
                ),
            )
        for name in artifacts:
            a, b = first.meta.artifacts.get(name), run.meta.artifacts.get(name)
            if a != b:
                raise GateInputError(
                    REFUSE,
                    "",
                    (
                        f"artifact {name} differs: sha256 {str(b)[:12]} in {run.directory}, "
                        f"{str(a)[:12]} in {first.directory} (or --allow-mixed-builds)"
                    ),
                )
    versions = [host_versions(r.rows, r.meta.host_versions) for r in runs]
    for host in sorted(set().union(*(claim_hosts(c) for c in claims))):
        seen = {v.get(host, "") for v in versions}
        if len(seen) > 1:
            raise GateInputError(
                REFUSE,
                "",
                (
                    f"host {host} has different versions across the runs "
                    f"({', '.join(sorted(seen))}): a band belongs to one host version"
                ),
            )


def record_claim(claim: Claim, runs: Sequence[Run]) -> Recorded:
    """Fit ``claim``'s bands from the runs; refuse a run that does not measure a figure."""
    by_key: dict[str, list[Interval]] = {k: [] for k in claim.points}
    for run in runs:
        table, cis = quantity_table(run.rows), ci_table(run.rows)
        for key in claim.points:
            got = measure_interval(claim, key, table, cis)
            if isinstance(got, str):
                at = f" at {claim.over}={key}" if claim.over else ""
                raise GateInputError(run.directory, f"claim[{claim.id}]", f"{at.strip()} {got}")
            by_key[key].append(got)
    fit = fit_claim(by_key)
    points: dict[str, str] = {}
    bands: dict[str, tuple[str, str]] = {}
    warnings = []
    for fig in fit.figures:
        points[fig.key] = published_text(fig.center)
        low, high = published_text(fig.low, "down"), published_text(fig.high, "up")
        bands[fig.key] = (low, high)
        if float(high) >= 2 * float(low):
            at = f" at {claim.over}={fig.key}" if claim.over else ""
            warnings.append(
                f"{claim.id}{at}: band {low}–{high} spans 2× or more, so a number published 2× "
                "too high could still sign off; record more runs or quieter ones"
            )
    first = runs[0].meta
    versions = host_versions(runs[0].rows, first.host_versions)
    commits = list(dict.fromkeys(r.meta.commit[:7] for r in runs))
    provenance = {
        "commit": "+".join(commits),
        "fingerprint": first.fingerprint_id,
        "hosts": {h: versions[h] for h in sorted(claim_hosts(claim)) if h in versions},
        "dates": sorted({r.meta.start[:10] for r in runs if r.meta.start}),
        "runs": len(runs),
        "band_basis": "runs",
    }
    points_over = f"its {len(fit.figures)} {claim.over or 'point'}s"
    reason = (
        f"Recorded by signoff --record from {len(runs)} runs: per figure a {PREDICTION_LEVEL:.1%} "
        f"prediction interval for one more run on the log scale, exp(mean -/+ t * s * "
        f"sqrt(1 + 1/{len(runs)})) with s = {fit.s_pooled:.3f} (between-run sd of log values "
        f"pooled over {points_over}, {fit.dof} dof) and t = {fit.t:.2f}, united with the hull "
        "of the runs' CIs; value = geometric mean (docs/signoff.md, Recording bands)."
    )
    return Recorded(claim, fit, ClaimUpdate(points, bands, reason, provenance), tuple(warnings))


def record(
    directories: Sequence[Path],
    claims_path: Path,
    root: Path,
    only: Sequence[str] = (),
    allow_mixed: bool = False,
) -> list[Recorded]:
    """Record the bands and rewrite the claims file and published text; raises GateInputError."""
    claims = load_claims(claims_path)
    chosen = select(claims, only)
    if not chosen:
        raise GateInputError(claims_path, "", "no bench claim to record")
    runs = load_runs(directories)
    check_builds(runs, chosen, allow_mixed)
    recorded = [record_claim(c, runs) for c in chosen]
    updates = {r.claim.id: r.update for r in recorded}
    claims_text = rewrite_claims(claims_path.read_text(encoding="utf-8"), claims, updates)
    published = rewrite_published(root, claims, updates)
    _validate(claims_path, claims_text, root, published, updates)
    for file, text in published.items():
        (root / file).write_text(text, encoding="utf-8")
    claims_path.write_text(claims_text, encoding="utf-8")
    return recorded


def _validate(
    claims_path: Path,
    claims_text: str,
    root: Path,
    published: Mapping[Path, str],
    updates: Mapping[str, ClaimUpdate],
) -> None:
    """Load the rewritten claims and text-check them in a scratch copy before writing anything."""
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch)
        new_claims = tmp / claims_path.name
        new_claims.write_text(claims_text, encoding="utf-8")
        for file, text in published.items():
            (tmp / file).parent.mkdir(parents=True, exist_ok=True)
            (tmp / file).write_text(text, encoding="utf-8")
        loaded = load_claims(new_claims)  # raises on a rewrite the loader would reject
        for claim in loaded.claims:
            if claim.id in updates:
                failed = check_text(claim, tmp, new_claims)  # every updated file is in tmp
                if failed:
                    raise GateInputError(
                        claims_path,
                        f"claim[{claim.id}]",
                        f"rewritten text fails its check: {failed[0].message}",
                    )


def describe(rec: Recorded) -> list[str]:
    """Console lines for one recorded claim: each figure's runs and band, then the fit."""
    out = []
    claim = rec.claim
    for fig in rec.fit.figures:
        at = f" at {claim.over}={fig.key}" if claim.over else ""
        lo, hi = rec.update.bands[fig.key]
        runs = ", ".join(f"{v:.3g} ({a:.3g}–{b:.3g})" for v, a, b in fig.runs)
        out.append(
            f"recorded  {claim.id}{at}: {rec.update.points[fig.key]} ({lo}–{hi}) from runs {runs}"
        )
    spread = math.exp(rec.fit.half) - 1
    out.append(
        f"          {claim.id}: s = {rec.fit.s_pooled:.3f} pooled over {len(rec.fit.figures)} "
        f"figure(s), {rec.fit.dof} dof, t = {rec.fit.t:.2f}: prediction band ±{spread:.0%}"
    )
    return out
