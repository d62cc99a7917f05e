"""Rebuild the workload behind one bench measurement, from its subject and x, in any instance.

The gate's paired reruns (``harness.gate.paired``) time BASE's and CAND's builds side by side on
exactly what the bench check timed in the cell: the same export, the same shapes and the same
seeded inputs. A :class:`Replay` is that recipe; :func:`replay_for` maps a measurement
(``op:matmul_forward`` at n=64, ``train_step``, ``generate:kv`` at context=16, ``bridge:noop``,
...) to it, or says why it cannot be replayed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from harness.checks.bench import THREADS_SUFFIX, BenchOptions
from harness.checks.bench_hostcost import (
    POOL_EXPORT,
    POOL_PROBES,
    POOL_REGIONS,
    enter_pool,
    set_thread_count,
)
from harness.checks.bench_hostcost import PROBES as HOST_PROBES
from harness.checks.bench_workloads import (
    OPS,
    ModelHandle,
    Workload,
    create_model,
    generate,
    noop_call,
    train_step,
)
from harness.hosts.base import Instance, TimedCall, TimingResult
from harness.timing import Sampler, perf_counter_resolution_ns
from reference.presets import ModelConfig
from reference.train import train_context_length


@dataclass(frozen=True)
class Prepared:
    """A workload placed in one instance, and what to free when done with it."""

    workload: Workload
    model: ModelHandle | None = None
    across_bridge: bool = False  # time Python<->host round trips, not a loop inside the host
    threads_after: int | None = None  # the thread count to put back on release (pool probes)
    probe: str | None = None  # time this host-cost probe (Instance.time_probe), not the workload

    def sampler(self, instance: Instance) -> Sampler:
        """The sampler that times this workload in ``instance``."""
        if self.probe is not None:
            kind = self.probe
            return lambda reps, samples, warmup: instance.time_probe(kind, reps, samples, warmup)
        return bridge_sampler(instance) if self.across_bridge else self.workload.sampler(instance)

    def timed_call(self) -> TimedCall | None:
        """The call this workload's samples loop over inside the host (time_calls), or None
        for a probe or a bridge round trip, whose samples are not such a loop."""
        if self.probe is not None or self.across_bridge:
            return None
        return TimedCall(self.workload.export, self.workload.args)

    def only_buffers(self) -> bool:
        """Whether releasing this is freeing ``workload.buffers`` and nothing more (so the
        buffers of several can be freed in one :meth:`Instance.free_all`)."""
        return self.model is None and self.threads_after is None

    def release(self, instance: Instance) -> None:
        """Free the workload's buffers (and its model)."""
        self.workload.release(instance)
        if self.model is not None:
            self.model.release(instance)
        if self.threads_after is not None:
            instance.call("tg_set_threads", self.threads_after)


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


def _on_threads(threads: int, replay: Replay) -> Replay:
    """``replay`` with ``threads`` kernel threads in effect, put back on release (the bench's
    ``<subject>:threads=<n>`` figures)."""

    def prepare(instance: Instance) -> Prepared:
        before = set_thread_count(instance, threads)
        try:
            return dataclasses.replace(replay(instance), threads_after=before)
        except BaseException:
            instance.call("tg_set_threads", before)
            raise

    return prepare


def _host_probe(kind: str) -> Replay:
    """The host's own ``kind`` probe (Instance.time_probe), e.g. ``atomics``: nothing to place."""
    return lambda instance: Prepared(noop_call(), probe=kind)


def _pool_probe(asleep: int, threads: int) -> Replay:
    """``tg_pool_probe_ns(POOL_REGIONS, asleep)`` at ``threads`` threads, timed as whole calls in
    a loop inside the host: each call is POOL_REGIONS regions plus the probe's own clock reads,
    the same in both builds, so the paired ratio is the pool's. Unpaired, two runs' figures of
    this probe differed 2x in an A/A compare (154 against 316 ns, p = 0.0003), hence the pairing."""

    def prepare(instance: Instance) -> Prepared:
        before = enter_pool(instance, threads)
        work = Workload(POOL_EXPORT, (POOL_REGIONS, asleep), 0.0, "none", "", ())
        return Prepared(work, threads_after=before)

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
    for name, kind, _what in HOST_PROBES:  # a JS host's own wake or message, in its helper worker
        if subject == name:
            return _host_probe(kind)
    probe, _, threads = subject.partition(THREADS_SUFFIX)
    if probe == "train_step" and threads.isdigit():
        B, T = opts.batch, opts.seq or train_context_length(cfg)
        return _on_threads(int(threads), _with_model(cfg, lambda i, m: train_step(i, m, cfg, B, T)))
    for name, asleep, _what in POOL_PROBES:
        if probe == name and threads.isdigit():
            return _pool_probe(asleep, int(threads))
    return f"no replay recipe for bench subject {subject!r}"
