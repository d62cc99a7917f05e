"""``tinygpt-harness check defaults|corpus|claims [--project PATH]``: text-only checks.

No artifact, no host cell: the project's files (and, for a page corpus source, its built site
in headless Chromium) against the project's profile (docs/profiles.md). Exit 0 when every
outcome passes or is listed as skipped, 1 on any drift or failure, 2 on a bad profile (the
message starts with the profile's ``file:line``).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from rich.console import Console

from harness.profile import Profile, ProfileError, find_profile, load_profile
from harness.project.outcome import Outcome, exit_code

CHECKS = {
    "defaults": "harness.project.defaults",
    "corpus": "harness.project.corpus",
    "claims": "harness.project.claims",
}
_STYLE = {"pass": "green", "fail": "bold red", "error": "bold red", "skipped": "yellow"}


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the check's arguments."""
    parser.add_argument("what", choices=sorted(CHECKS), help="which text-only check to run")
    parser.add_argument(
        "--project",
        type=Path,
        help="the project's directory (holding harness.toml) or a profile file; default: "
        "./harness.toml, else this repository's bundled default profile",
    )


def run_check(what: str, project: Path | None) -> list[Outcome]:
    """Load the profile and run one check; raises ProfileError on a bad profile."""
    return check_profile(what, load_profile(find_profile(project)))


def check_profile(what: str, profile: Profile) -> list[Outcome]:
    """Run text-only check ``what`` on a loaded profile: the one path the command and a
    ``run`` cell with host ``none`` take. Raises ProfileError on a bad profile (one without
    the check's section included)."""
    module = importlib.import_module(CHECKS[what])
    outcomes: list[Outcome] = module.check(profile)
    if not outcomes:
        raise ProfileError(f"{profile.path}:1: the profile has no [{what}] section")
    return outcomes


def execute(args: argparse.Namespace) -> int:
    """Run the check; 0 pass, 1 drift or failure, 2 bad profile."""
    try:
        outcomes = run_check(args.what, args.project)
    except ProfileError as exc:
        print(f"check {args.what}: {exc}", file=sys.stderr)
        return 2
    console = Console(width=160)
    for o in outcomes:
        console.print(
            f"{o.status:>8}  {o.subject}: {o.detail}",
            style=_STYLE[o.status],
            markup=False,
            soft_wrap=True,
        )
    code = exit_code(outcomes)
    counts = {s: sum(o.status == s for o in outcomes) for s in ("pass", "fail", "error", "skipped")}
    summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    console.print(
        f"check {args.what}: {'PASS' if code == 0 else 'FAIL'} ({summary})",
        style="bold green" if code == 0 else "bold red",
    )
    return code
