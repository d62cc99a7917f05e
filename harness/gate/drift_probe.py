"""Probe run-to-run drift: how far the same kernels' timings move between back-to-back runs.

``python -m harness.gate.drift_probe [--pairs 25]`` measures pairs of identical calibration
runs (``harness.gate.calibrate``: same build, same buffers, same process) and prints, per
kernel, the standard deviation and maximum of the log ratio of their 10th percentiles, and the
correlation of those ratios across kernels. It answers one design question of the gate: is the
drift shared by every kernel of a run (then a yardstick timed in each run cancels it) or not
(then only paired, interleaved re-measurement does)? docs/gate.md records its answer.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from harness.gate.calibrate import KERNELS, load_instance, measure_run
from harness.timing import TimingPolicy


def probe(pairs: int, engine: str = "native") -> tuple[list[str], np.ndarray]:
    """Return the kernel names and a (pairs, kernels) array of log ratios of A/A runs."""
    with tempfile.TemporaryDirectory() as build_dir:
        instance = load_instance(engine, Path(build_dir))
        try:
            work = {k: f(instance, 1.0) for k, f in KERNELS.items()}
            policy = TimingPolicy(
                min_samples=100, max_samples=100, min_sample_ns=1e6, budget_s=60.0
            )
            measure_run(instance, work, policy)  # the first run of a process is discarded
            logs = []
            for _ in range(pairs):
                a, _ = measure_run(instance, work, policy)
                b, _ = measure_run(instance, work, policy)
                logs.append([np.log(np.quantile(b[k], 0.1) / np.quantile(a[k], 0.1))
                             for k in KERNELS])  # fmt: skip
        finally:
            instance.close()
    return list(KERNELS), np.array(logs)


def main(argv: Sequence[str] | None = None) -> int:
    """Measure and print the drift table; exit 0."""
    parser = argparse.ArgumentParser(prog="python -m harness.gate.drift_probe")
    parser.add_argument("--pairs", type=int, default=25)
    parser.add_argument("--engine", choices=("native", "wasmtime"), default="native")
    args = parser.parse_args(argv)
    names, logs = probe(args.pairs, args.engine)
    print("| kernel | std of A/A log ratio | max abs drift |")
    print("|---|---|---|")
    for i, name in enumerate(names):
        std, worst = 100 * np.std(logs[:, i]), 100 * np.max(np.abs(logs[:, i]))
        print(f"| `{name}` | {std:.2f} % | {worst:.1f} % |")
    corr = np.corrcoef(logs.T)
    print("\ncorrelation of drift across kernels:")
    for i, name in enumerate(names):
        print(f"  {name:20s} " + " ".join(f"{v:+.2f}" for v in corr[i]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
