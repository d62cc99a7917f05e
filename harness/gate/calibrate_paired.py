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
confounded with its role. The time a cell costs is the paired measurement of its four kernels.
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
from pathlib import Path

import numpy as np

from harness.artifact import Artifact
from harness.build import Variant, build_variant
from harness.checks.bench_replay import Prepared, Replay
from harness.gate.calibrate import KERNELS, Session, Tally, figures_of
from harness.gate.paired import PairedPolicy, measure_paired
from harness.gate.paired_stats import block_log_ratios, compare_paired
from harness.hosts.base import Instance
from harness.hosts.registry import make_host


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


def run_paired_session(
    session: Session, build_dir: Path, progress: bool = True
) -> dict[str, object]:
    """Run the paired trials; return the figures (JSON-ready, the shape of the unpaired ones)."""
    first, second = calibration_builds(session.host, build_dir)
    policy = PairedPolicy(
        blocks=session.blocks,
        pairs_per_block=session.pairs_per_block,
        loads=session.loads,
        min_sample_ms=session.sample_ms,
        seed=session.seed,
    )
    aa, ab = Tally(), Tally()
    aa_by_kernel = {k: Tally() for k in KERNELS}
    cell_seconds: list[float] = []
    ratios_ab: list[float] = []
    spread: dict[str, list[float]] = {k: [] for k in KERNELS}  # placement: block-to-block std
    for trial in range(session.trials):
        host = make_host(session.host)
        try:
            xs, ys = [], []
            for _ in range(policy.loads):
                xs.append(host.load(first))
                ys.append(host.load(second))
            base, cand = (xs, ys) if trial % 2 == 0 else (ys, xs)
            trial_policy = dataclasses.replace(policy, seed=session.seed + trial)
            seconds = 0.0
            for kernel in KERNELS:
                same = measure_paired(base, cand, _replay(kernel, 1.0), _replay(kernel, 1.0),
                                      trial_policy)  # fmt: skip
                seconds += same.wall_s
                spread[kernel].append(float(np.std(block_log_ratios(same.base_ns, same.cand_ns))))
                verdict = compare_paired(
                    same.base_ns, same.cand_ns, session.decision_for(kernel)
                ).verdict
                aa.add(verdict)
                aa_by_kernel[kernel].add(verdict)
            cell_seconds.append(seconds)
            slow = measure_paired(
                base,
                cand,
                _replay(session.slowed, 1.0),
                _replay(session.slowed, 1.0 + session.slowdown),
                trial_policy,
            )
            result = compare_paired(slow.base_ns, slow.cand_ns,
                                    session.decision_for(session.slowed))  # fmt: skip
            ab.add(result.verdict)
            ratios_ab.append(result.ratio)
        finally:
            host.close()
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
        k: {"median": float(np.median(v)), "max": float(np.max(v))} for k, v in spread.items()
    }
    return figures
