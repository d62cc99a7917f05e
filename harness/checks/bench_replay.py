"""Rebuild the workload behind one bench measurement, from its subject and x, in any instance.

The gate's paired reruns (``harness.gate.paired``) time BASE's and CAND's builds side by side on
exactly what the bench check timed in the cell: the same export, the same shapes and the same
seeded inputs. A :class:`Replay` is that recipe; :func:`replay_for` maps a measurement
(``op:matmul_forward`` at n=64, ``train_step``, ``generate:kv`` at context=16, ``bridge:noop``,
...) to it, or says why it cannot be replayed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from harness.checks.bench import BenchOptions
from harness.checks.bench_workloads import (
    OPS,
    ModelHandle,
    Workload,
    create_model,
    generate,
    noop_call,
    train_step,
)
from harness.hosts.base import Instance, TimingResult
from harness.timing import Sampler, perf_counter_resolution_ns
from reference.presets import ModelConfig
from reference.train import train_context_length


@dataclass(frozen=True)
class Prepared:
    """A workload placed in one instance, and what to free when done with it."""

    workload: Workload
    model: ModelHandle | None = None
    across_bridge: bool = False  # time Python<->host round trips, not a loop inside the host

    def sampler(self, instance: Instance) -> Sampler:
        """The sampler that times this workload in ``instance``."""
        return bridge_sampler(instance) if self.across_bridge else self.workload.sampler(instance)

    def release(self, instance: Instance) -> None:
        """Free the workload's buffers (and its model)."""
        self.workload.release(instance)
        if self.model is not None:
            self.model.release(instance)


Replay = Callable[[Instance], Prepared]


@cache
def _clock_resolution_ns() -> float:
    return perf_counter_resolution_ns()


def bridge_sampler(instance: Instance) -> Sampler:
    """Samples of ``inner_reps`` no-op round trips across the bridge (the mean of each group).

    This is the one bench figure timed in Python, as the bench check's ``bridge:noop`` is.
    """

    def sample(inner_reps: int, samples: int, warmup: int) -> TimingResult:
        if warmup:
            instance.bridge_roundtrip_ns(warmup * inner_reps)
        trips = instance.bridge_roundtrip_ns(inner_reps * samples)
        means = tuple(
            sum(trips[k * inner_reps : (k + 1) * inner_reps]) / inner_reps for k in range(samples)
        )
        return TimingResult(means, inner_reps, _clock_resolution_ns(), "wall clock in Python")

    return sample


def _with_model(cfg: ModelConfig, make: Callable[[Instance, ModelHandle], Workload]) -> Replay:
    def prepare(instance: Instance) -> Prepared:
        model = create_model(instance, cfg)
        try:
            return Prepared(make(instance, model), model)
        except BaseException:
            model.release(instance)
            raise

    return prepare


def replay_for(subject: str, x: str, cfg: ModelConfig, opts: BenchOptions) -> Replay | str:
    """The recipe for measurement ``subject`` at ``x`` in a cell of preset ``cfg``, or why not."""
    kind, _, arg = subject.partition(":")
    if kind == "op":
        if arg not in OPS:
            return f"unknown op {arg!r}"
        build = OPS[arg][0]
        n = int(float(x))
        return lambda instance: Prepared(build(instance, n))
    if subject == "host:noop_call":
        return lambda instance: Prepared(noop_call())
    if subject == "train_step":
        B, T = opts.batch, opts.seq or train_context_length(cfg)
        return _with_model(cfg, lambda i, m: train_step(i, m, cfg, B, T))
    if kind in ("generate", "ttft") and arg in ("kv", "nokv"):
        context, kv = int(float(x)), arg == "kv"
        new = opts.new_tokens if kind == "generate" else 1
        return _with_model(cfg, lambda i, m: generate(i, m, cfg, context, new, kv))
    if subject == "bridge:noop":
        return lambda instance: Prepared(noop_call(), across_bridge=True)
    return f"no replay recipe for bench subject {subject!r}"
