"""The host's own costs for the bench check's overhead decomposition (issue 13, part 4).

Besides its kernel, a call from the harness into a kernel pays the bridge (``bridge:noop``), the
call into wasm (``host:noop_call``) and, on a threaded emscripten build, a wake and join of the
pool per parallel region. A Chromium request also crosses the page's worker boundary by
postMessage, and a session starts with a load. This module measures the last three inside a JS
host (``harness/js/probe.mjs``): ``host:wake_join``, ``host:postmessage`` and ``host:load``.
Hosts without JS workers (native, wasmtime) get a reason instead, which the check writes as a
``skipped`` row.

The library's own pool is timed by the library (``tg_pool_probe_ns``, ABI 5): empty parallel
regions at n > 1 threads, back to back while the workers spin (``pool:wake_join``) and each
after a pause that lets them fall asleep (``pool:wake_join_asleep``). That is the wake + join a
kernel of this artifact really pays per region, on every host that runs a pooled build (native,
emscripten ``-pthread``); a build without a pool gets a reason.
"""

from __future__ import annotations

from dataclasses import replace

from harness.hosts.base import ABIError, HostError, Instance, MissingExport, TimingResult
from harness.timing import Measurement, TimingPolicy, measure

# subject, probe kind, what one round trip is
PROBES: tuple[tuple[str, str, str], ...] = (
    ("host:wake_join", "atomics", "Atomics.notify, a helper worker wakes from Atomics.wait and "
     "notifies back: what a pthread build pays per parallel region on a sleeping pool worker"),
    ("host:postmessage", "postmessage", "postMessage to a helper worker and its echo back"),
)  # fmt: skip
LOAD_SUBJECT = "host:load"
# A host cost is a wake or a message: one scheduler event, whose cost varies from event to event
# far more than a kernel call does. Samples of the protocol's 0.2 ms (4-13 round trips) had a cv
# of 0.05-0.94 and left the median's CI at +-3 to +-10 % (+-74 % once at 1 ms); samples of 5 ms
# (140-265 round trips or regions) had a cv of 0.02-0.13 and a CI of +-2 to +-8 %, for 0.2 s of
# wall per JS figure and ~3 s per asleep pool figure (node24 wasm32 and native, 2026-12-05,
# docs/threads.md "How a host cost is sampled"). So a host-cost sample lasts at least this long.
SAMPLE_NS = 5e6


def _host_cost_policy(policy: TimingPolicy, min_inner_reps: int = 1) -> TimingPolicy:
    """``policy`` with samples of at least :data:`SAMPLE_NS` and ``min_inner_reps`` calls."""
    return replace(
        policy,
        min_sample_ns=max(policy.min_sample_ns, SAMPLE_NS),
        min_inner_reps=max(policy.min_inner_reps, min_inner_reps),
    )


def probe(instance: Instance, kind: str, policy: TimingPolicy) -> Measurement | str:
    """Probe ``kind``'s round trip, timed inside the host by the timing protocol (round trips
    per sample calibrated to :data:`SAMPLE_NS`, samples added while the CI is wide), or why
    not."""

    def sample(reps: int, samples: int, warmup: int) -> TimingResult:
        return instance.time_probe(kind, reps, samples, warmup)

    try:
        return measure(sample, _host_cost_policy(policy))
    except HostError as exc:
        return f"not measured: {exc}"


def load_ns(instance: Instance) -> float | str:
    """The load of this instance timed inside the host (read, compile, instantiate, and a
    glue's factory with its pthread pool), or why there is none."""
    value = instance.load_info.get("load_ns")
    if value is None:
        return f"not measured: {type(instance).__name__} does not time its load inside the host"
    return float(value)


POOL_EXPORT = "tg_pool_probe_ns"
# subject, the probe's ``asleep`` argument, what one region is
POOL_PROBES: tuple[tuple[str, int, str], ...] = (
    ("pool:wake_join", 0, "one empty parallel region of the library's pool right after the "
     "last, its workers still spinning for it: what back-to-back kernels pay per region"),
    ("pool:wake_join_asleep", 1, "one empty parallel region ~1 ms after the last, past the "
     "workers' spin: they are asleep on the condition variable (the first kernel after a pause)"),
)  # fmt: skip
# regions per probe call where a fixed count is wanted (the paired gate's replay, bench_replay.py)
POOL_REGIONS = 20
# The back-to-back figure's calibration starts at this many regions per call. Each call first
# runs one untimed region that wakes the workers, yet its next regions can still cost a whole
# wake: native, 2 threads, calls of 1 to 50 regions measured ~104 us per region and one of 200
# 287 ns, with another process busy on the other vCPU (quiet, a calibration that started at one
# region settled on 3 regions of 105 us each; 2026-12-05). A few regions are another subject,
# so a sample never holds fewer than this; SAMPLE_NS then takes it to thousands.
POOL_MIN_REGIONS = 200
# Under emscripten clock_gettime is performance.now (Chromium steps it by microseconds): the
# library cannot know its resolution, so it is given as 0.0; a 5 ms sample spans 1000 steps.
POOL_CLOCK = "clock_gettime(CLOCK_MONOTONIC) inside the library"
# what tg_pool_probe_ns's negative answers mean (tinygpt.h)
_POOL_REFUSALS = {-1: "no pool in effect", -2: "a pool worker did not take part in a region"}


def pool_thread_counts(axis: tuple[int, ...], limit: int) -> tuple[int, ...]:
    """The thread counts to probe the pool at: the bench axis's counts above 1, or 2 when the
    axis is one thread (the pool's cost exists from 2) and the artifact allows 2."""
    above = tuple(n for n in axis if n > 1)
    return above or ((2,) if limit >= 2 else ())


def pool_probe(
    instance: Instance, threads: int, asleep: int, policy: TimingPolicy
) -> Measurement | str:
    """Empty regions of the artifact's pool at ``threads`` threads, timed inside the library
    (``tg_pool_probe_ns``) by the timing protocol, or why not. A sample is one probe call of
    ``inner_reps`` regions, calibrated to :data:`SAMPLE_NS` (and at least
    :data:`POOL_MIN_REGIONS` back to back); the thread count in effect is put back
    afterwards."""
    try:
        before = enter_pool(instance, threads)
    except (MissingExport, ABIError) as exc:
        return f"not measured: {exc}"

    def one(regions: int) -> float:
        v = instance.call(POOL_EXPORT, regions, asleep)
        if not isinstance(v, int) or v < 0:
            why = _POOL_REFUSALS.get(v if isinstance(v, int) else 0, "not a time")
            raise _Refused(f"not measured: {POOL_EXPORT} returned {v}: {why}")
        return float(v)

    def sample(reps: int, samples: int, warmup: int) -> TimingResult:
        if warmup:
            one(min(warmup, reps))
        return TimingResult(tuple(one(reps) for _ in range(samples)), reps, 0.0, POOL_CLOCK)

    try:
        return measure(sample, _host_cost_policy(policy, 1 if asleep else POOL_MIN_REGIONS))
    except _Refused as exc:
        return str(exc)
    finally:
        instance.call("tg_set_threads", before)


def enter_pool(instance: Instance, threads: int) -> int:
    """Put ``threads`` in effect for a pool probe and return the count to put back after it.

    Raises :class:`MissingExport` when the artifact has no pool probe (ABI 5), and
    :class:`ABIError` when the thread count cannot be read or ``threads`` cannot be put in
    effect; the count in effect is then as it was.
    """
    if POOL_EXPORT not in instance.artifact.exports():
        raise MissingExport(f"{instance.artifact.name} has no {POOL_EXPORT} export (ABI 5)")
    return set_thread_count(instance, threads)


def set_thread_count(instance: Instance, threads: int) -> int:
    """Put ``threads`` kernel threads in effect and return the count to put back after.

    Raises :class:`ABIError` when the count cannot be read or ``threads`` cannot be put in
    effect; the count in effect is then as it was."""
    before = instance.call("tg_get_threads")
    if not isinstance(before, int):
        raise ABIError(f"tg_get_threads() returned {before!r}, not a count")
    got = instance.call("tg_set_threads", threads)
    if got != threads:
        instance.call("tg_set_threads", before)
        raise ABIError(
            f"tg_set_threads({threads}) put {got} in effect: "
            f"{instance.artifact.name} has no pool of {threads}"
        )
    return before


class _Refused(Exception):
    """The pool probe answered with a refusal, not a time (its message is the row's reason)."""
