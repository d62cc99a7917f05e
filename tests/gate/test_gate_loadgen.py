"""The calibration's load generator: N busy processes of a documented kind, stopped on exit."""

from __future__ import annotations

import os
import time

import pytest

from harness.gate.loadgen import Load, LoadGenerator, main


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (from /proc, clock ticks)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.parametrize("kind", ["spin", "mem"])
def test_generator_runs_n_busy_processes_and_stops_them(kind: str) -> None:
    """Two processes of ``kind`` run while the block lasts, each burning CPU; none survive it."""
    with LoadGenerator(Load(2, kind)) as gen:
        assert gen.alive() == 2
        procs = list(gen._procs)
        # busy, not sleeping: each gathers CPU time (polled: starting an interpreter under
        # load takes a while, and this asserts work done, not how fast)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not all(
            _cpu_seconds(p.pid) > 0.5 for p in procs if p.pid is not None
        ):
            time.sleep(0.2)
        assert all(_cpu_seconds(p.pid) > 0.5 for p in procs if p.pid is not None)
    assert gen.alive() == 0
    assert all(p.exitcode is not None for p in procs)  # stopped and reaped


def test_zero_processes_is_no_load() -> None:
    """``Load(0)`` starts nothing: the calibration's default."""
    with LoadGenerator(Load()) as gen:
        assert gen.alive() == 0


@pytest.mark.parametrize(
    ("load", "message"),
    [
        ({"processes": -1}, "processes must be >= 0"),
        ({"kind": "disk"}, "kind must be one of"),
        ({"seconds": 0}, "seconds must be > 0"),
    ],
)
def test_bad_load_is_a_clear_error(load: dict[str, object], message: str) -> None:
    """A negative count, unknown kind or non-positive duration is refused, saying which."""
    with pytest.raises(ValueError, match=message):
        Load(**load)  # type: ignore[arg-type]


def test_command_line_ends_after_its_seconds() -> None:
    """``python -m harness.gate.loadgen 1 --seconds 1`` returns 0 once its time is up."""
    start = time.monotonic()
    assert main(["1", "--seconds", "1"]) == 0
    assert time.monotonic() - start < 30  # spawn + 1 s; generous for a loaded machine
