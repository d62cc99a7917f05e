"""Numpy measurements on one BLAS thread, taken in a child process.

The kernels are single-threaded, so the numpy figures they are compared against (the sgemm
roofline and the reference GPT's train step) run with one BLAS thread as well. The thread count of
OpenBLAS/MKL is fixed when numpy is imported, and ``threadpoolctl`` is not a dependency, so the
measurements run in a child interpreter started with ``OPENBLAS_NUM_THREADS=1`` (and friends).

Parent side: :func:`run_jobs`. Child side: ``python -m harness.numpy_baseline`` reads a JSON
request on stdin and writes one JSON result per job on stdout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.timing import Measurement, TimingPolicy, measure, python_sampler, summarize

ONE_THREAD_ENV: dict[str, str] = {
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "BLIS_NUM_THREADS": "1",
    "VECLIB_MAXIMUM_THREADS": "1",
}


@dataclass(frozen=True)
class SgemmJob:
    """``a (n,n) @ b.T (n,n)`` in float32: the matmul kernel's shape without the bias."""

    n: int


@dataclass(frozen=True)
class TrainStepJob:
    """One reference train step (forward, backward, clipped AdamW) of ``preset`` on (B, T)."""

    preset: str
    B: int
    T: int


Job = SgemmJob | TrainStepJob


def _workload(job: Job) -> Callable[[], object]:
    """Build the callable a job times, with its inputs made once, outside the timed loop."""
    rng = np.random.default_rng(0)
    if isinstance(job, SgemmJob):
        a = rng.standard_normal((job.n, job.n), dtype=np.float32)
        b = rng.standard_normal((job.n, job.n), dtype=np.float32)
        out = np.empty((job.n, job.n), dtype=np.float32)
        bt = b.T
        return lambda: np.matmul(a, bt, out=out)
    from reference.model import GPT, init_params
    from reference.presets import get_preset
    from reference.train import AdamWState, adamw_step

    cfg = get_preset(job.preset)
    model = GPT(cfg, init_params(cfg))
    x = rng.integers(0, cfg.vocab_size, size=(job.B, job.T), dtype=np.int32)
    y = rng.integers(0, cfg.vocab_size, size=(job.B, job.T), dtype=np.int32)
    state = AdamWState.zeros_like(model.params)

    def step() -> None:
        nonlocal state
        model.forward(x, y)
        grads = model.backward()
        # t is fixed: the kernel bench also repeats step 1, and the cost does not depend on t.
        model.params, state, _ = adamw_step(model.params, grads, state, 1)

    return step


def _job_from_json(d: dict[str, Any]) -> Job:
    kind = d.get("kind")
    if kind == "sgemm":
        return SgemmJob(int(d["n"]))
    if kind == "train_step":
        return TrainStepJob(str(d["preset"]), int(d["B"]), int(d["T"]))
    raise ValueError(f"numpy_baseline: unknown job kind {kind!r} in {d}")


def _job_to_json(job: Job) -> dict[str, Any]:
    kind = "sgemm" if isinstance(job, SgemmJob) else "train_step"
    return {"kind": kind, **asdict(job)}


def _child_main() -> int:
    """Child entry: measure each requested job and print the raw samples as JSON lines."""
    request = json.loads(sys.stdin.read())
    policy = TimingPolicy(**request["policy"])
    for raw in request["jobs"]:
        m = measure(python_sampler(_workload(_job_from_json(raw))), policy)
        record = {
            "samples_ns": m.samples_ns,
            "inner_reps": m.inner_reps,
            "clock": m.clock,
            "clock_resolution_ns": m.clock_resolution_ns,
            "wall_s": m.wall_s,
        }
        print(json.dumps(record), flush=True)
    return 0


def run_jobs(
    jobs: Sequence[Job], policy: TimingPolicy, timeout_s: float = 600.0
) -> list[Measurement]:
    """Measure ``jobs`` in a one-BLAS-thread child interpreter; one Measurement per job."""
    request = {"policy": asdict(policy), "jobs": [_job_to_json(j) for j in jobs]}
    env = {**os.environ, **ONE_THREAD_ENV}
    root = Path(__file__).resolve().parent.parent
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH", "")]))
    proc = subprocess.run(
        [sys.executable, "-m", "harness.numpy_baseline"],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout_s,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"numpy baseline child exited {proc.returncode}: {proc.stderr.strip()[-2000:]}"
        )
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    if len(lines) != len(jobs):
        raise RuntimeError(
            f"numpy baseline child returned {len(lines)} results for {len(jobs)} jobs: "
            f"{proc.stderr.strip()[-2000:]}"
        )
    out: list[Measurement] = []
    for line in lines:
        rec = json.loads(line)
        samples = tuple(float(v) for v in rec["samples_ns"])
        summary = summarize(samples, policy.bootstrap_resamples, policy.seed)
        out.append(
            Measurement(
                samples_ns=samples,
                inner_reps=int(rec["inner_reps"]),
                clock=str(rec["clock"]),
                clock_resolution_ns=float(rec["clock_resolution_ns"]),
                summary=summary,
                noisy=summary.is_noisy(policy.noise_band),
                wall_s=float(rec["wall_s"]),
            )
        )
    return out


if __name__ == "__main__":
    sys.exit(_child_main())
