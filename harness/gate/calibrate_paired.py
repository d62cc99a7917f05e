"""Calibrate ``compare --paired``: the gate that times BASE's and CAND's builds side by side.

Each trial starts a fresh host (a new worker process, page or browser) and loads the
calibration build from two files, as CI loads BASE's and CAND's builds, ``loads`` times each (as
``compare --paired`` does): separate instances with their own code and memory. Then, with the
gate's own measurement (:func:`harness.gate.paired.measure_paired`) and decision
(:func:`harness.gate.paired_stats.compare_paired`):

- A/A: every kernel, the same work in both instances; ``slower`` is a false alarm;
- A/B: the slowed kernel with 5 % more work in CAND (``calibrate.matmul_rows``, the same
  injection as the unpaired calibration); ``slower`` is a detection.

Which instance plays BASE alternates from trial to trial, so an instance's load order is not
confounded with its role. The time a cell costs is everything from starting the host to the end
of the paired measurement of its four kernels (loads, placements and calibration included).
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from harness.artifact import Artifact
from harness.build import Variant, build_variant
from harness.checks.bench import BenchOptions
from harness.checks.bench_replay import Prepared, Replay, replay_for
from harness.gate.calibrate import KERNELS, NOOP_SUBJECTS, Session, Tally, figures_of
from harness.gate.paired import PairedPolicy, balanced_loader, measure_cell
from harness.gate.paired_stats import block_log_ratios
from harness.hosts.base import Instance
from harness.hosts.registry import make_host
from reference.presets import get_preset


def calibration_builds(host: str, build_dir: Path) -> tuple[Artifact, Artifact]:
    """The calibration build for ``host`` (native or wasm32) and a byte-identical second file."""
    base = "native" if host == "native" else "wasm32"
    art = build_variant(build_dir, Variant(f"{base}-calibrate", base, ()))
    twin = art.path.with_name(f"twin-{art.path.name}")
    shutil.copyfile(art.path, twin)
    return art, dataclasses.replace(art, name=f"{art.name}-twin", path=twin)


def _replay(kernel: str, scale: float) -> Replay:
    make = KERNELS[kernel]

    def prepare(instance: Instance) -> Prepared:
        return Prepared(make(instance, scale))

    return prepare


# The cell's no-op rows, replayed as the gate replays them (bench_replay): any preset will do,
# neither touches a model.
NOOPS: dict[str, Replay] = {}
for _subject in NOOP_SUBJECTS:
    _recipe = replay_for(_subject, "", get_preset("tiny"), BenchOptions())
    assert not isinstance(_recipe, str), _recipe
    NOOPS[_subject] = _recipe


def run_paired_session(
    session: Session, build_dir: Path, progress: bool = True
) -> dict[str, object]:
    """Run the paired trials; return the figures (JSON-ready, the shape of the unpaired ones)."""
    first, second = calibration_builds(session.host, build_dir)
    policy = PairedPolicy(
        blocks=session.blocks,
        pairs_per_block=session.pairs_per_block,
        loads=session.loads,
        rounds=session.rounds,
        min_sample_ms=session.sample_length_ms,
        seed=session.seed,
        budget_s=session.budget_s,
        clock="wall" if session.clock == "wall" else "cpu",
        workers="per-build" if session.workers == "per-build" else "one",
    )
    aa, ab = Tally(), Tally()
    subjects = (*KERNELS, *NOOP_SUBJECTS)
    aa_by_kernel = {k: Tally() for k in subjects}
    cell_seconds: list[float] = []
    ratios_ab: list[float] = []
    spread: dict[str, list[float]] = {k: [] for k in subjects}  # placement: block-to-block std
    budget_unknown = {"aa": 0, "ab": 0}  # verdicts unknown because the cell's budget ran out
    clocks: dict[str, Counter[str]] = {"aa": Counter(), "ab": Counter()}  # what decided them
    host_start_s: list[float] = []
    for trial in range(session.trials):
        host = make_host(session.host)
        # Which file plays BASE alternates between trials; the gate's own balanced load order.
        roles = (first, second) if trial % 2 == 0 else (second, first)
        starting = time.perf_counter()
        try:
            host.start(roles, one_process=policy.workers == "one")
        except BaseException:
            host.close()
            raise
        host_start_s.append(time.perf_counter() - starting)
        # the cell's cost counts from its first load: its host was started for it above, as
        # `compare --paired` starts (or reuses) the host before the cell's budget starts
        started = time.perf_counter()
        load = balanced_loader(host, *roles, policy.loads)
        work = [(kernel, _replay(kernel, 1.0), _replay(kernel, 1.0),
                 session.decision_for(kernel)) for kernel in KERNELS]  # fmt: skip
        work += [(subject, noop, noop, session.decision_for(subject))
                 for subject, noop in NOOPS.items()]  # fmt: skip
        slowed = (_replay(session.slowed, 1.0), _replay(session.slowed, 1.0 + session.slowdown))
        trial_policy = dataclasses.replace(policy, seed=session.seed + trial)
        try:
            same = measure_cell(load, work, trial_policy, started)
            cell_seconds.append(time.perf_counter() - started)
            # the A/B measurement is a cell of its own (its budget counts from here): one
            # measurement of a cell whose other measurements are the A/A ones
            ab_started = time.perf_counter()
            slow = measure_cell(
                load, [("A/B", *slowed, session.decision_for(session.slowed))], trial_policy,
                ab_started,
            )  # fmt: skip
            cell_seconds.append(time.perf_counter() - ab_started)  # every cell is held to it
        finally:
            host.close()
        for kernel, (comparison, samples) in same.items():
            aa.add(comparison.verdict)
            aa_by_kernel[kernel].add(comparison.verdict)
            if samples.base_ns:
                spread[kernel].append(
                    float(np.std(block_log_ratios(samples.base_ns, samples.cand_ns)))
                )
            budget_unknown["aa"] += bool(comparison.note)
            clocks["aa"][samples.clock if samples.base_ns else "nothing measured"] += 1
        ab.add(slow["A/B"][0].verdict)
        budget_unknown["ab"] += bool(slow["A/B"][0].note)
        clocks["ab"][slow["A/B"][1].clock if slow["A/B"][1].base_ns else "nothing measured"] += 1
        ratios_ab.append(slow["A/B"][0].ratio)
        if progress:
            print(f"trial {trial + 1}/{session.trials}: A/B {ab}  A/A {aa}", file=sys.stderr)
    figures = figures_of(
        session,
        aa,
        aa_by_kernel,
        ab,
        realised=float(np.median(ratios_ab)) - 1.0,
        ratios_ab=ratios_ab,
        cell_seconds=cell_seconds,
        artifact=first,
    )
    figures["aa_block_spread"] = {
        k: {"median": float(np.median(v)) if v else math.nan,
            "max": float(np.max(v)) if v else math.nan}
        for k, v in spread.items()
    }  # fmt: skip
    figures["budget_unknown"] = budget_unknown
    figures["host_start_s"] = {"median": float(np.median(host_start_s)),
                               "max": float(np.max(host_start_s))}  # fmt: skip
    figures["clocks"] = {kind: dict(c) for kind, c in clocks.items()}
    return figures
