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

import time

from harness.hosts.base import HostError, Instance
from harness.timing import Measurement, summarize

# subject, probe kind, what one round trip is
PROBES: tuple[tuple[str, str, str], ...] = (
    ("host:wake_join", "atomics", "Atomics.notify, a helper worker wakes from Atomics.wait and "
     "notifies back: what a pthread build pays per parallel region on a sleeping pool worker"),
    ("host:postmessage", "postmessage", "postMessage to a helper worker and its echo back"),
)  # fmt: skip
PROBE_REPS = 20  # round trips per sample: one is ~5 us, the browser clock ticks at 5 us
LOAD_SUBJECT = "host:load"


def probe(instance: Instance, kind: str, samples: int, noise_band: float) -> Measurement | str:
    """``samples`` means of :data:`PROBE_REPS` round trips of probe ``kind``, or why not."""
    try:
        trips = instance.probe_ns(kind, samples, PROBE_REPS)
    except HostError as exc:
        return f"not measured: {exc}"
    s = summarize(trips)
    return Measurement(tuple(trips), PROBE_REPS, "performance.now inside the host", 0.0, s,
                       s.is_noisy(noise_band), 0.0)  # fmt: skip


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
# regions per sample: 20 back-to-back native regions span ~12 us (0.6 us each, docs/threads.md)
POOL_REGIONS = 20
# Under emscripten clock_gettime is performance.now (Chromium steps it by microseconds), so the
# clock's resolution is the host's, not known here: 0.0, as for the JS probes above.
POOL_CLOCK = "clock_gettime(CLOCK_MONOTONIC) inside the library"
# what tg_pool_probe_ns's negative answers mean (tinygpt.h)
_POOL_REFUSALS = {-1: "no pool in effect", -2: "a pool worker did not take part in a region"}


def pool_thread_counts(axis: tuple[int, ...], limit: int) -> tuple[int, ...]:
    """The thread counts to probe the pool at: the bench axis's counts above 1, or 2 when the
    axis is one thread (the pool's cost exists from 2) and the artifact allows 2."""
    above = tuple(n for n in axis if n > 1)
    return above or ((2,) if limit >= 2 else ())


def pool_probe(
    instance: Instance, threads: int, asleep: int, samples: int, noise_band: float
) -> Measurement | str:
    """``samples`` means of :data:`POOL_REGIONS` empty regions of the artifact's pool at
    ``threads`` threads, timed inside the library, or why not. The thread count in effect is put
    back afterwards."""
    if POOL_EXPORT not in instance.artifact.exports():
        return f"not measured: {instance.artifact.name} has no {POOL_EXPORT} export (ABI 5)"
    before = instance.call("tg_get_threads")
    if not isinstance(before, int):
        return f"not measured: tg_get_threads() returned {before!r}, not a count"
    t0 = time.perf_counter()
    try:
        got = instance.call("tg_set_threads", threads)
        if got != threads:
            return (f"not measured: tg_set_threads({threads}) put {got} in effect: "
                    f"{instance.artifact.name} has no pool of {threads}")  # fmt: skip
        out: list[float] = []
        for _ in range(samples):
            v = instance.call(POOL_EXPORT, POOL_REGIONS, asleep)
            if not isinstance(v, int) or v < 0:
                why = _POOL_REFUSALS.get(v if isinstance(v, int) else 0, "not a time")
                return f"not measured: {POOL_EXPORT} returned {v}: {why}"
            out.append(float(v))
    finally:
        instance.call("tg_set_threads", before)
    s = summarize(out)
    return Measurement(tuple(out), POOL_REGIONS, POOL_CLOCK, 0.0, s, s.is_noisy(noise_band),
                       time.perf_counter() - t0)  # fmt: skip
