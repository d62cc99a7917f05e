"""How long a host waits for each kind of request before it declares the host hung."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Timeouts:
    """Per-request limits in seconds; a request over its limit raises HostTimeout."""

    call_s: float = 300.0  # one export call (a large train step is the slowest)
    load_s: float = 120.0  # compiling + instantiating a module, or dlopen
    time_s: float = 1800.0  # one whole time_calls loop (all samples)
    transfer_s: float = 120.0  # a memory read/write, a no-op, an unload
    start_s: float = 60.0  # starting a worker process or a browser and its hello

    def __post_init__(self) -> None:
        for name in ("call_s", "load_s", "time_s", "transfer_s", "start_s"):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"Timeouts.{name} must be > 0, got {value!r}")
