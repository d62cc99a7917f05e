"""``tinygpt-harness signoff RUN --claims FILE``: check every published number against a run.

Each claim is checked three ways: the run measures it within the claim's tolerance, the
published text still carries it, and a single-point claim is not one point of a quantity that
varies by more than 20 % across presets. Performance-looking numbers in the scanned docs that no
claim covers fail too. Exit 0 when all pass, 1 on any failing/stale/refused/uncovered finding,
2 on bad input (the message names the file and the field).

``signoff --record RUN1 RUN2 RUN3 [...]`` instead writes the claims' bands from N >= 3 runs
(:mod:`harness.gate.record`; docs/signoff.md, "Recording bands").
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console

from harness.gate.claim_checks import (
    Finding,
    RunFacts,
    check_cells,
    check_run,
    check_single_point,
    check_text,
    check_values,
    ci_table,
    covered_spans,
    host_versions,
    planned_cells,
    quantity_table,
    run_incomplete,
)
from harness.gate.claim_scan import scan_files, uncovered
from harness.gate.claims import load_claims
from harness.gate.errors import GateInputError
from harness.gate.external import check_claim
from harness.gate.recheck import DEFAULT_MAX_CELLS, RecheckPlan, recheck
from harness.gate.record import describe, record
from harness.gate.signoff_sheet import (
    SHEET_HTML,
    SHEET_MD,
    html_page,
    markdown,
    passed,
    verdict_line,
)
from harness.rundir.meta import RunDirError
from harness.rundir.reader import Run, load_run
from harness.rundir.writer import check_writable, describe_os_error

_STYLE = {"pass": "green", "fail": "bold red", "stale": "bold red", "refused": "bold red",
          "uncovered": "yellow", "not comparable": "bold yellow",
          "rechecked": "yellow", "not scanned": "yellow"}  # fmt: skip


def configure(parser: argparse.ArgumentParser) -> None:
    """Add signoff's arguments (``--record`` takes several runs, a sign-off exactly one)."""
    parser.add_argument(
        "run",
        type=Path,
        nargs="+",
        metavar="RUN",
        help="run directory (may be merged); with --record, N >= 3 run directories",
    )
    parser.add_argument("--claims", type=Path, required=True, help="claims TOML file")
    parser.add_argument(
        "--root", type=Path, default=Path("."), help="directory published files are relative to"
    )
    parser.add_argument("--out", type=Path, help="write signoff.md and signoff.html here")
    parser.add_argument(
        "--recheck",
        action="store_true",
        help="measure each stale figure's cells once more (bench only, the same build, beside "
        "RUN) before calling it stale (docs/signoff.md, 'Rechecking a stale figure')",
    )
    parser.add_argument(
        "--artifacts",
        type=Path,
        default=RecheckPlan.manifest,
        help="with --recheck: the manifest of the build RUN measured",
    )
    parser.add_argument(
        "--recheck-cells",
        type=int,
        default=DEFAULT_MAX_CELLS,
        metavar="N",
        help="with --recheck: rerun at most N cells; with more stale, none is rechecked",
    )
    parser.add_argument(
        "--record",
        action="store_true",
        help="record bands, values and provenance from the runs into the claims file and the "
        "published text (docs/signoff.md, 'Recording bands')",
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="ID",
        help="with --record: record only this claim (repeatable)",
    )
    parser.add_argument(
        "--allow-mixed-builds",
        action="store_true",
        help="with --record: accept runs of different commits or artifact builds",
    )


def sign_off(run: Run, claims_path: Path, root: Path) -> list[Finding]:
    """Every finding of every claim, then the uncovered numbers; raises GateInputError."""
    claims = load_claims(claims_path)
    short = check_cells(claims, {r.cell for r in run.rows}, planned_cells(run))
    table = quantity_table(run.rows)
    cis = ci_table(run.rows)
    facts = RunFacts(
        fingerprint=run.meta.fingerprint_id,
        fingerprints=run.meta.cell_fingerprints() or {},
        host_versions=host_versions(run.rows, run.meta.host_versions),
    )
    findings = check_run(run)
    if short:
        # The claims are right and the run is short: each claim it cannot check fails below,
        # and this line says why, rather than blaming the claims file for the run's gap.
        why = run_incomplete(run) or f"{run.directory}: planned cells without a row"
        findings.append(Finding("(run)", "fail", (
            f"{why}; claimed cells it did not measure: {', '.join(short)}"
        )))  # fmt: skip
    for claim in claims.claims:
        if claim.measurements:  # measured by the project's own scripts, not by this run
            findings += check_claim(claim, claims_path)
        else:
            findings += check_values(claim, table, cis, facts)
            findings += check_single_point(claim, table)
        findings += check_text(claim, root, claims_path)
    files = scan_files(root, claims.scan_files, claims.scan_exclude)
    findings += uncovered(root, files, covered_spans(claims, root), claims.not_claims)
    return findings


def execute(args: argparse.Namespace) -> int:
    """Run the sign-off (or ``--record``); 0 signed off, 1 any failing finding, 2 bad input."""
    if args.record:
        return _execute_record(args)
    console = Console(width=160)
    try:
        if len(args.run) != 1 or args.only or args.allow_mixed_builds:
            raise GateInputError(
                "signoff", "", "checks one RUN; --only and --allow-mixed-builds go with --record"
            )
        if args.recheck_cells < 1:
            raise GateInputError("signoff", "--recheck-cells", "must be at least 1")
        if args.out is not None:
            _ready_out(args.out)  # before the work: an unwritable --out is bad input, not a verdict
        run = load_run(args.run[0])
        findings = sign_off(run, args.claims, args.root)
        if args.recheck:
            plan = RecheckPlan(manifest=args.artifacts, max_cells=args.recheck_cells)
            findings = recheck(run, load_claims(args.claims), findings, plan, console)
    except RunDirError as exc:  # GateInputError is a RunDirError
        print(f"signoff: {exc}", file=sys.stderr)
        return 2
    for f in findings:
        console.print(
            f"{f.status:>9}  {f.message}", style=_STYLE[f.status], markup=False, soft_wrap=True
        )
    ok = passed(findings)
    console.print(verdict_line(findings), style="bold green" if ok else "bold red")
    if args.out is not None:
        try:
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / SHEET_MD).write_text(markdown(findings, run.meta, args.claims), "utf-8")
            (args.out / SHEET_HTML).write_text(html_page(findings, run.meta, args.claims), "utf-8")
        except OSError as exc:  # a name taken by a directory, a disk full after the check
            why = f"cannot write the sheet: {describe_os_error(exc, args.out)}"
            error = GateInputError(args.out, "--out", why)
            print(f"signoff: {error}", file=sys.stderr)
            return 2
    return 0 if ok else 1


def _ready_out(out: Path) -> None:
    """Refuse an ``--out`` that cannot be the sheet's directory, naming it and the OS error;
    creates nothing, so a sign-off that then stops on bad input leaves no empty directory."""
    try:
        check_writable(out, directory=True)
    except OSError as exc:
        raise GateInputError(
            out, "--out", f"cannot write the sheet: {describe_os_error(exc, out)}"
        ) from None


def _execute_record(args: argparse.Namespace) -> int:
    """``--record``: write bands from N runs; 0 written, 2 refused (nothing written)."""
    console = Console(width=160)
    try:
        if args.out is not None:
            raise GateInputError(
                "signoff", "--out", "writes a sheet of a sign-off, not of --record"
            )
        if args.recheck:
            raise GateInputError(
                "signoff", "--recheck", "measures a sign-off's stale figures, not --record's runs"
            )
        recorded = record(args.run, args.claims, args.root, args.only, args.allow_mixed_builds)
    except RunDirError as exc:  # GateInputError is a RunDirError
        print(f"signoff --record: {exc}", file=sys.stderr)
        return 2
    for rec in recorded:
        for line in describe(rec):
            console.print(line, markup=False, soft_wrap=True)
        for warning in rec.warnings:
            console.print(
                f"  warning  {warning}", style="bold yellow", markup=False, soft_wrap=True
            )
    files = sorted({str(r.claim.published.file) for r in recorded})
    console.print(
        f"recorded {len(recorded)} claims from {len(args.run)} runs into {args.claims} and "
        f"{', '.join(files)}",
        style="bold green",
    )
    return 0
