"""The calibration's load generator: N busy processes of a documented kind, stopped on exit."""

from __future__ import annotations

import os
import time

import pytest

from harness.gate.loadgen import Load, LoadGenerator, LoadLost, main


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


def test_a_load_that_ends_early_voids_the_block() -> None:
    """A busy process killed while the block runs: leaving it raises LoadLost, naming how many
    of the processes were gone, so no figure is labelled with a load it did not run under."""
    lost = pytest.raises(LoadLost, match=r"1 of 2 busy processes \(spin\) ended")
    with lost, LoadGenerator(Load(2, "spin")) as gen:
        victim = gen._procs[0]
        victim.kill()
        victim.join(timeout=30)
    assert gen.alive() == 0


def test_a_load_that_runs_out_its_seconds_is_lost_too() -> None:
    """``seconds`` shorter than the block: the processes end themselves, and that is a lost load."""
    lost = pytest.raises(LoadLost, match="1 of 1 busy processes")
    with lost, LoadGenerator(Load(1, "spin", seconds=0.5)) as gen:
        deadline = time.monotonic() + 60
        while gen.alive() and time.monotonic() < deadline:
            time.sleep(0.1)


def test_an_error_in_the_block_is_not_replaced_by_load_lost() -> None:
    """The block's own error propagates unchanged, even when the load was lost as well."""
    with pytest.raises(KeyError), LoadGenerator(Load(1, "spin")) as gen:
        gen._procs[0].kill()
        gen._procs[0].join(timeout=30)
        raise KeyError("the block's own failure")
