"""``tinygpt-harness compare BASE CAND``: the noise-aware CI regression gate.

Exit 1 on a confirmed regression beyond its threshold, on any parity/defaults/corpus failure in
CAND, on a cell that passed in BASE and is broken in CAND, on a measurement of BASE missing from
CAND (unless excluded), or when nothing was compared (a model oracle that differs between the
runs is said, and changes none of these); exit 2 on bad input (an incomplete BASE,
a results.csv cut or empty, an output path that cannot be written) or a refused comparison
(other machine, other build); exit 0 otherwise. BASE and CAND are only ever read.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from rich.console import Console

from harness.build import BUNDLED_MANIFEST
from harness.gate.compare_render import markdown, print_table
from harness.gate.errors import GateInputError, RefusalError
from harness.gate.measurements import timing_samples
from harness.gate.paired import WORKERS, PairedPolicy
from harness.gate.provenance import check_comparable, require_build
from harness.gate.thresholds import Thresholds, thresholds_from_matrix_text, thresholds_from_table
from harness.gate.verdicts import GateResult, evaluate, oracle_changes
from harness.rundir.meta import RUN_FILE, RunDirError
from harness.rundir.reader import Run, load_run
from harness.rundir.rows import RESULTS_FILE
from harness.rundir.verdict import completeness, finished_cells
from harness.rundir.writer import check_writable, describe_os_error


def configure(parser: argparse.ArgumentParser) -> None:
    """Add compare's arguments."""
    parser.add_argument("base", type=Path, metavar="BASE", help="run directory of the baseline")
    parser.add_argument("cand", type=Path, metavar="CAND", help="run directory of the candidate")
    parser.add_argument("--markdown", type=Path, metavar="FILE", help="write a PR summary here")
    parser.add_argument(
        "--html",
        type=Path,
        metavar="DIR",
        help="write the comparison report here: index.html, forest plot, summary.md",
    )
    parser.add_argument(
        "--thresholds",
        type=Path,
        metavar="MATRIX",
        help="read [thresholds] from this matrix file (default: the matrix CAND recorded)",
    )
    parser.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="SUBJECT_GLOB",
        help="a subject or measurement key (glob) CAND may lack without failing (repeatable)",
    )
    parser.add_argument(
        "--allow-cross-machine",
        action="store_true",
        help="compare runs from different machines or builds anyway",
    )
    how = parser.add_mutually_exclusive_group()
    how.add_argument(
        "--adaptive",
        action="store_true",
        help="rerun cells with unknown verdicts (CAND's build) with more samples",
    )
    how.add_argument(
        "--paired",
        action="store_true",
        help="decide every gated measurement by timing BASE's and CAND's builds side by side "
        "(needs --base-artifacts; the calibrated CI gate, docs/gate.md)",
    )
    parser.add_argument(
        "--budget-s", type=float, default=60.0, help="adaptive: wall-clock budget in seconds"
    )
    parser.add_argument("--max-rounds", type=int, default=3, help="adaptive: most reruns per cell")
    parser.add_argument(
        "--samples", type=int, default=30, help="adaptive: timing samples per rerun"
    )
    parser.add_argument(
        "--artifacts",
        type=Path,
        default=BUNDLED_MANIFEST,
        help="adaptive/paired: CAND's build, a manifest.json or a project profile (harness.toml or "
        "its directory, whose [artifacts] are the build); sha256s must match CAND's run.json",
    )
    parser.add_argument(
        "--base-artifacts",
        type=Path,
        metavar="MANIFEST",
        help="paired: BASE's build, a manifest.json or a project profile (harness.toml or its "
        "directory); sha256s must match BASE's run.json",
    )
    d = PairedPolicy()
    paired: tuple[tuple[str, type, float, str], ...] = (
        ("--blocks", int, d.blocks, "independent buffer placements per measurement"),
        ("--pairs-per-block", int, d.pairs_per_block, "interleaved sample pairs per placement"),
        ("--loads", int, d.loads, "instances loaded per build, taking turns block by block"),
        ("--rounds", int, d.rounds, "rounds of fresh loads while a verdict is open"),
        ("--sample-ms", float, d.min_sample_ms, "shortest sample (the kernel loops this long)"),
    )
    for flag, kind, default, text in paired:
        parser.add_argument(flag, type=kind, default=default, help=f"paired: {text}")
    parser.add_argument(
        "--cell-budget-s",
        type=float,
        default=None,
        help="paired: seconds a cell may spend, from its first load (its host is started "
        "before, once per host); what it leaves undecided is unknown, never slower (issue 15 "
        "targets: 2, or 5 on Chromium; default: no limit)",
    )
    chosen: tuple[tuple[str, tuple[str, ...], str, str], ...] = (
        ("--clock", ("cpu", "wall"), d.clock,
         "decide on the timing thread's CPU clock where the host has one and the work stayed on "
         "that thread (the native and wasmtime hosts), else the wall clock (default: cpu); "
         "wall: always the wall clock"),
        ("--workers", WORKERS, d.workers,
         "load BASE's and CAND's builds into one worker process on the hosts that run workers "
         "(default: one; they then share what the machine gives that process), or per-build: "
         "each build its own worker, as in the matrix runner's cells"),
    )  # fmt: skip
    for flag, choices, choice, text in chosen:
        parser.add_argument(flag, choices=choices, default=choice, help=f"paired: {text}")


def load_thresholds(cand: Run, override: Path | None) -> Thresholds:
    """Thresholds from ``override`` or from the matrix text CAND recorded in run.json."""
    if override is not None:
        try:
            text = override.read_text(encoding="utf-8")
        except OSError as exc:
            raise GateInputError(override, "", f"cannot read ({exc.strerror})") from exc
        return thresholds_from_matrix_text(text, override)
    content = cand.meta.matrix.get("content", {})
    source = f"{cand.meta.path} (matrix.content)"
    if isinstance(content, str):  # a run that recorded the matrix as TOML text
        return thresholds_from_matrix_text(content, source)
    if not isinstance(content, dict):
        raise GateInputError(cand.meta.path, "matrix.content", "expected the parsed matrix")
    table = content.get("thresholds", {})
    if not isinstance(table, dict):
        raise GateInputError(cand.meta.path, "matrix.content.thresholds", "must be a table")
    return thresholds_from_table(table, source)


def require_finished(run: Run, role: str) -> None:
    """Refuse (RunDirError, exit 2) a run the gate cannot read as a whole run.

    Either side: run.json says complete but planned cells have no verdict row, so results.csv
    was cut at a line boundary (a partial copy), which the line checks cannot see. BASE also
    must have finished: it is the reference, and an incomplete one compared only what it had
    and passed. An incomplete CAND is the gate's to fail (its cells read broken or missing).
    """
    state = completeness(run.meta.raw, finished_cells(run.rows))
    if state.complete:
        return
    why = "; ".join(state.reasons())
    if state.status == "complete" and not state.interrupted:
        raise RunDirError(
            run.directory / RESULTS_FILE,
            "",
            f"{why}, although {RUN_FILE} says the run is complete: the file was cut (a partial "
            "copy?); use the whole file or run again",
        )
    if role == "BASE":
        raise RunDirError(
            run.directory,
            "",
            f"BASE is incomplete ({why}): the reference must be a finished run; "
            f"{state.how_to_finish(run.directory, run.meta.matrix.get('path', 'MATRIX'))}, "
            "or compare against a complete run",
        )


def paired_policy(args: argparse.Namespace) -> PairedPolicy:
    """The ``--paired`` sampling the arguments ask for; bad values raise GateInputError."""
    if args.base_artifacts is None:
        raise GateInputError("--paired", "", "needs --base-artifacts, the manifest of BASE's build")
    try:
        return PairedPolicy(
            args.blocks, args.pairs_per_block, args.loads, args.rounds, args.sample_ms,
            budget_s=args.cell_budget_s, clock=args.clock, workers=args.workers,
        )  # fmt: skip
    except ValueError as exc:
        raise GateInputError("--paired", "", str(exc)) from None


def run_compare(args: argparse.Namespace, console: Console) -> GateResult:
    """Load, check comparability, decide (and adapt); raises GateInputError or RefusalError."""
    # Bad sampling arguments fail before anything is loaded.
    policy = paired_policy(args) if args.paired else None
    base, cand = load_run(args.base), load_run(args.cand)
    require_finished(base, "BASE")
    require_finished(cand, "CAND")
    thresholds = load_thresholds(cand, args.thresholds)
    if args.exclude:
        thresholds = dataclasses.replace(thresholds, exclude=(*thresholds.exclude, *args.exclude))
    timed = {k.cell for k in timing_samples(base.rows)} & {
        k.cell for k in timing_samples(cand.rows)
    }
    overridden = check_comparable(
        base.meta, cand.meta, args.allow_cross_machine, timed, perf=bool(timed)
    )
    if args.adaptive:
        from harness.gate.adaptive import AdaptiveBudget, resolve_unknown

        # Refuse a wrong build whatever the first verdicts are: whether a rerun is needed
        # depends on noise, and a refusal must not.
        require_build(
            cand, args.artifacts, {k.cell.split("/")[1] for k in timing_samples(cand.rows)}, "CAND"
        )
    result = evaluate(base.rows, cand.rows, thresholds)
    if args.adaptive and result.unknown:
        budget = AdaptiveBudget(args.budget_s, args.max_rounds, args.samples, args.artifacts)
        result = resolve_unknown(base, cand, thresholds, result, budget, console)
    if policy is not None:
        result = run_paired(args, policy, base, cand, thresholds, result, console)
    return dataclasses.replace(
        result,
        overridden_refusals=tuple(overridden),
        oracle_changes=oracle_changes(base.meta.raw, base.rows, cand.meta.raw, cand.rows),
    )


def run_paired(
    args: argparse.Namespace,
    policy: PairedPolicy,
    base: Run,
    cand: Run,
    thresholds: Thresholds,
    result: GateResult,
    console: Console,
) -> GateResult:
    """``--paired``: this machine must be the runs' own; then rerun every gated measurement."""
    from harness.gate.paired_gate import PairedSetup, pair_changes
    from harness.machine import fingerprint

    here = str(fingerprint()["fingerprint_id"])
    if here != cand.meta.fingerprint_id and not args.allow_cross_machine:
        raise RefusalError(
            f"--paired: this machine ({here}) is not CAND's ({cand.meta.fingerprint_id}); the "
            "paired rerun must be measured where the runs were (or pass --allow-cross-machine)"
        )
    setup = PairedSetup(args.base_artifacts, args.artifacts, policy)
    return pair_changes(base, cand, thresholds, result, setup, console)


def _cannot_write(flag: str, path: Path, exc: OSError) -> int:
    """Say why ``flag``'s output ``path`` cannot be written; returns exit 2 (bad input)."""
    print(f"compare: cannot write {flag} {path}: {describe_os_error(exc, path)}", file=sys.stderr)
    return 2


def execute(args: argparse.Namespace) -> int:
    """Run the gate; returns 0 pass, 1 fail, 2 bad input, refused or an unwritable output."""
    console = Console(stderr=False, width=160)
    # An unwritable output is bad input: said before any comparing (or paired timing) is
    # spent, and never exit 1, which would read as a regression.
    for flag, path, directory in (
        ("--markdown", args.markdown, False),
        ("--html", args.html, True),
    ):
        if path is not None:
            try:
                check_writable(path, directory=directory)
            except OSError as exc:
                return _cannot_write(flag, path, exc)
    try:
        result = run_compare(args, console)
    except (RunDirError, RefusalError) as exc:  # GateInputError is a RunDirError
        print(f"compare: {exc}", file=sys.stderr)
        return 2
    print_table(result, console)
    if args.markdown is not None:
        try:
            args.markdown.parent.mkdir(parents=True, exist_ok=True)
            text = markdown(result, str(args.base), str(args.cand))
            args.markdown.write_text(text, encoding="utf-8")
        except OSError as exc:  # the disk filled, or the path changed since the check
            return _cannot_write("--markdown", args.markdown, exc)
    if args.html is not None:
        from harness.gate.compare_html import write_html  # matplotlib: only when asked

        try:
            index = write_html(result, args.base, args.cand, args.html)
        except OSError as exc:
            return _cannot_write("--html", args.html, exc)
        console.print(f"comparison report: {index}")
    return 1 if result.failed else 0
