"""``compare --paired``: decide every gated measurement by timing BASE and CAND side by side.

The recorded runs say which cells and measurements exist and how each was set up; the builds
named by ``--base-artifacts`` and ``--artifacts`` (whose sha256s must be the ones BASE and CAND
measured) are then loaded together in each cell's host and timed interleaved
(``harness.gate.paired``), and the paired verdict replaces the verdict computed from the
recorded samples. A measurement without a replay recipe, or a cell whose host fails during the
rerun, keeps its recorded verdict, and the reason is listed in the output.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from harness.artifact import Artifact
from harness.checks.bench import BenchOptions, parse_options
from harness.checks.bench_replay import Replay, replay_for
from harness.gate.errors import GateInputError
from harness.gate.paired import DEFAULT_POLICY, PairedPolicy, balanced_loader, measure_cell
from harness.gate.provenance import require_build
from harness.gate.thresholds import Thresholds
from harness.gate.verdicts import Change, GateResult
from harness.hosts.base import Host, HostError
from harness.rundir.reader import Run
from reference.presets import get_preset

HostFactories = Mapping[str, Callable[[], Host]]


@dataclass(frozen=True)
class PairedSetup:
    """The two builds to load and how much to sample."""

    base_manifest: Path
    cand_manifest: Path
    policy: PairedPolicy = DEFAULT_POLICY


def bench_options(run: Run) -> BenchOptions:
    """The ``[check.bench]`` options the run's matrix recorded (shapes of train/generate)."""
    content = run.meta.matrix.get("content")
    table: Any = content.get("check", {}).get("bench", {}) if isinstance(content, dict) else {}
    try:
        return parse_options(table if isinstance(table, dict) else {})
    except ValueError as exc:
        raise GateInputError(run.meta.path, "matrix.content.check.bench", str(exc)) from exc


def _pairable(result: GateResult) -> dict[str, list[Change]]:
    by_cell: dict[str, list[Change]] = defaultdict(list)
    for change in result.changes:
        if change.gated:
            by_cell[change.key.cell].append(change)
    return dict(by_cell)


def _pair_cell(
    host: Host,
    base_art: Artifact,
    cand_art: Artifact,
    work: list[tuple[Change, Replay]],
    thresholds: Thresholds,
    policy: PairedPolicy,
    started: float,
) -> tuple[dict[Change, Change], Counter[str]]:
    """The cell's measurements re-decided, and how many were decided on each clock."""
    decided = measure_cell(
        balanced_loader(host, base_art, cand_art, policy.loads),
        [(c, r, r, thresholds.decision_for(c.key.check, c.key.name)) for c, r in work],
        policy,
        started,
    )
    out = {}
    clocks: Counter[str] = Counter()
    for change, (comparison, samples) in decided.items():
        if samples.base_ns:
            clocks[samples.clock] += 1
        base_ns = [x for block in samples.base_ns for x in block]
        cand_ns = [x for block in samples.cand_ns for x in block]
        # nothing measured (the cell's budget ran out first): no median to show
        base = float(np.median(base_ns)) if base_ns else math.nan
        cand = float(np.median(cand_ns)) if cand_ns else math.nan
        out[change] = Change(change.key, base, cand, comparison)
    return out, clocks


def pair_changes(
    base: Run,
    cand: Run,
    thresholds: Thresholds,
    result: GateResult,
    setup: PairedSetup,
    console: Console,
    hosts: HostFactories | None = None,
) -> GateResult:
    """Re-decide every gated measurement from a paired rerun; returns the new result."""
    from harness.hosts.registry import all_hosts

    cells = _pairable(result)
    names = {cell.split("/")[1] for cell in cells}
    rerun = _Rerun(
        factories=hosts if hosts is not None else all_hosts(),
        base_arts=require_build(base, setup.base_manifest, names, "BASE"),
        cand_arts=require_build(cand, setup.cand_manifest, names, "CAND"),
        opts=bench_options(cand),
        thresholds=thresholds,
        policy=setup.policy,
        console=console,
    )
    try:
        for cell, cell_changes in sorted(cells.items()):  # a host's cells come one after another
            rerun.pair(cell, cell_changes)
    finally:
        rerun.close()
    changes = tuple(rerun.replaced.get(c, c) for c in result.changes)
    return dataclasses.replace(result, changes=changes, notes=(*result.notes, *rerun.notes))


@dataclass
class _Rerun:
    """One paired rerun: what it pairs with, what it has decided, and its warm host."""

    factories: HostFactories
    base_arts: Mapping[str, Artifact]
    cand_arts: Mapping[str, Artifact]
    opts: BenchOptions
    thresholds: Thresholds
    policy: PairedPolicy
    console: Console
    replaced: dict[Change, Change] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # The host the last cell ran in, kept for the next cell of its kind: its start (a browser's
    # launch, a worker's interpreter) is paid once per host, not once per cell.
    warm: tuple[str, Host] | None = None

    def host(self, name: str) -> Host:
        """The warm host if it is ``name``, else a new one (the warm one is closed)."""
        if self.warm is not None:
            warm_name, host = self.warm
            self.warm = None
            if warm_name == name:
                return host
            host.close()
        return self.factories[name]()

    def close(self) -> None:
        """Close the warm host."""
        if self.warm is not None:
            self.warm[1].close()
            self.warm = None

    def pair(self, cell: str, cell_changes: list[Change]) -> None:
        """Pair one cell's measurements; what cannot be paired keeps its recorded verdict."""
        host_name, artifact, preset = cell.split("/")
        work: list[tuple[Change, Replay]] = []
        for change in cell_changes:
            replay = replay_for(change.key.subject, change.key.x, get_preset(preset), self.opts)
            if isinstance(replay, str):
                self.notes.append(f"{cell} {change.key.name}: recorded verdict kept ({replay})")
            else:
                work.append((change, replay))
        if not work:
            return
        if host_name not in self.factories:
            self.notes.append(
                f"{cell}: recorded verdicts kept (host {host_name!r} is not known here)"
            )
            return
        self.console.print(f"paired rerun: {cell}, {len(work)} measurements", markup=False)
        host = self.host(host_name)
        pair = (self.base_arts[artifact], self.cand_arts[artifact])
        try:
            starting = time.perf_counter()
            host.start(pair, one_process=self.policy.workers == "one")
            start_s = time.perf_counter() - starting
            # The cell's budget counts its loads and measurements, not the host's start, which
            # is listed apart (and is nothing for a warm host's cell).
            started = time.perf_counter()
            paired, clocks = _pair_cell(host, *pair, work, self.thresholds, self.policy, started)
            spent_s = time.perf_counter() - started
        except HostError as exc:
            self.notes.append(f"{cell}: paired rerun failed, recorded verdicts kept: "
                              f"{type(exc).__name__}: {exc}")  # fmt: skip
            host.close()  # the next cell starts a fresh one
            return
        except BaseException:
            host.close()
            raise
        self.warm = (host_name, host)
        self.replaced.update(paired)
        self.notes += [f"{cell} {c.key.name}: unknown ({c.comparison.note})"
                       for c in paired.values() if c.comparison.note]  # fmt: skip
        on = ", ".join(f"{n} on {clock}" for clock, n in sorted(clocks.items()))
        self.notes.append(
            f"{cell}: {len(work)} measurements paired on {host_name} {host.version()} in "
            f"{spent_s:.2f} s, after {start_s:.2f} s starting the host (decided "
            f"{on or 'none: nothing measured'})"
        )
