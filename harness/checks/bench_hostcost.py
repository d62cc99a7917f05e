"""The host's own costs for the bench check's overhead decomposition (issue 13, part 4).

Besides its kernel, a call from the harness into a kernel pays the bridge (``bridge:noop``), the
call into wasm (``host:noop_call``) and, on a threaded emscripten build, a wake and join of the
pool per parallel region. A Chromium request also crosses the page's worker boundary by
postMessage, and a session starts with a load. This module measures the last three inside a JS
host (``harness/js/probe.mjs``): ``host:wake_join``, ``host:postmessage`` and ``host:load``.
Hosts without JS workers (native, wasmtime) get a reason instead, which the check writes as a
``skipped`` row.
"""

from __future__ import annotations

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
