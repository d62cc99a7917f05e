"""Numpy measurements on one BLAS thread, taken in a child process.

The kernels are single-threaded, so the numpy figures they are compared against (the sgemm
roofline and the reference GPT's train step) run with one BLAS thread as well. The thread count of
OpenBLAS/MKL is fixed when numpy is imported, and ``threadpoolctl`` is not a dependency, so the
measurements run in a child interpreter started with ``OPENBLAS_NUM_THREADS=1`` (and friends).

Parent side: :func:`run_jobs` (whole measurements, one child per call) and
:class:`ReferenceWorker` (one long-lived child that times short blocks on request, so the
bench check can interleave them with the kernel's blocks: docs/timing.md, "Side-by-side
ratios"). Child side: ``python -m harness.numpy_baseline`` reads a JSON request on stdin and
writes one JSON result per job on stdout; with ``--serve`` it answers one JSON line per request
line until stdin closes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import select
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.hosts.base import TimingResult
from harness.timing import (
    Measurement,
    Sampler,
    TimingPolicy,
    measure,
    python_sampler,
    summarize,
)

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
    vocab: int = 0  # 0: the preset's; else the preset's architecture at this vocabulary (a
    # bound library with one vocabulary, harness/bindings/model_layout.py: library_config)


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
    if job.vocab:
        cfg = dataclasses.replace(cfg, vocab_size=job.vocab)
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
        return TrainStepJob(str(d["preset"]), int(d["B"]), int(d["T"]), int(d.get("vocab", 0)))
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


def _serve_main() -> int:
    """Child entry with ``--serve``: time one block per request line, until stdin closes.

    A request is ``{"job": {...}, "inner_reps": r, "samples": k, "warmup": w}``; the answer is
    the block's samples. Each job's inputs and model are built once, at its first request.
    """
    samplers: dict[str, Sampler] = {}
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        key = json.dumps(req["job"], sort_keys=True)
        if key not in samplers:
            samplers[key] = python_sampler(_workload(_job_from_json(req["job"])))
        got = samplers[key](int(req["inner_reps"]), int(req["samples"]), int(req["warmup"]))
        print(json.dumps({"samples_ns": got.sample_ns, "inner_reps": got.inner_reps,
                          "clock_resolution_ns": got.clock_resolution_ns, "clock": got.clock}),
              flush=True)  # fmt: skip
    return 0


def _child_env() -> dict[str, str]:
    """This process's environment with one BLAS thread and this checkout importable."""
    env = {**os.environ, **ONE_THREAD_ENV}
    root = Path(__file__).resolve().parent.parent
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH", "")]))
    return env


class ReferenceWorker:
    """A long-lived one-BLAS-thread child that times blocks of numpy jobs on request.

    The bench check's side-by-side speedup alternates short blocks of the kernel (in its host)
    and of the numpy reference (here), so both sides of a ratio are timed within the same
    second of the machine. Close it with :meth:`close` (it also exits when stdin closes).
    """

    def __init__(self, timeout_s: float = 600.0) -> None:
        self.timeout_s = timeout_s  # per block; a huge train step is ~1.3 s here
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "harness.numpy_baseline", "--serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_child_env(),
        )
        self._warm: set[str] = set()  # jobs already warmed up in the child

    def alive(self) -> bool:
        """True while the child runs."""
        return self._proc.poll() is None

    def block(self, job: Job, inner_reps: int, samples: int, warmup: int) -> TimingResult:
        """``samples`` samples of ``inner_reps`` calls of ``job``, timed in the child.

        RuntimeError with the child's own words when it dies, and when it gives no answer
        within ``timeout_s`` (it is killed then, so no cell waits forever on it).
        """
        stdin, stdout = self._proc.stdin, self._proc.stdout
        assert stdin is not None and stdout is not None  # both are pipes (see __init__)
        request = {"job": _job_to_json(job), "inner_reps": inner_reps, "samples": samples,
                   "warmup": warmup}  # fmt: skip
        line, why = "", ""
        try:
            stdin.write(json.dumps(request) + "\n")
            stdin.flush()
            # The child writes whole lines (one print per answer), so a readable pipe has one.
            if select.select([stdout], [], [], self.timeout_s)[0]:
                line = stdout.readline()
            else:
                why = f"gave no answer within {self.timeout_s:g} s (killed)"
                self._proc.kill()
        except OSError:  # BrokenPipeError: the child is gone
            line = ""
        if not line:
            with contextlib.suppress(OSError):  # the child may be gone already
                stdin.close()
            stderr = self._proc.stderr.read() if self._proc.stderr else ""
            self.close()
            why = why or f"exited {self._proc.returncode}"
            raise RuntimeError(f"numpy reference worker {why}: {stderr.strip()[-2000:]}")
        rec = json.loads(line)
        return TimingResult(
            tuple(float(v) for v in rec["samples_ns"]),
            int(rec["inner_reps"]),
            float(rec["clock_resolution_ns"]),
            str(rec["clock"]),
        )

    def warm(self, job: Job, inner_reps: int, calls: int) -> None:
        """Run ``calls`` untimed calls of ``job`` the first time it is asked for (its model is
        built and its pages touched in the child, as in a measurement's warmup)."""
        key = json.dumps(_job_to_json(job), sort_keys=True)
        if key not in self._warm:
            self.block(job, inner_reps, 0, max(1, calls))
            self._warm.add(key)

    def sampler(self, job: Job) -> Sampler:
        """A :data:`harness.timing.Sampler` timing ``job`` in the child."""

        def sample(inner_reps: int, samples: int, warmup: int) -> TimingResult:
            return self.block(job, inner_reps, samples, warmup)

        return sample

    def close(self) -> None:
        """Close stdin (the child's signal to exit) and reap it; kill it if it hangs."""
        if self._proc.stdin and not self._proc.stdin.closed:
            with contextlib.suppress(OSError):  # the child is gone already
                self._proc.stdin.close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        for pipe in (self._proc.stdout, self._proc.stderr):
            if pipe:
                pipe.close()


def run_jobs(
    jobs: Sequence[Job], policy: TimingPolicy, timeout_s: float = 600.0
) -> list[Measurement]:
    """Measure ``jobs`` in a one-BLAS-thread child interpreter; one Measurement per job."""
    request = {"policy": asdict(policy), "jobs": [_job_to_json(j) for j in jobs]}
    env = _child_env()
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
    sys.exit(_serve_main() if sys.argv[1:] == ["--serve"] else _child_main())
