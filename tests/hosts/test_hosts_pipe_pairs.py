"""The worker hosts (native, wasmtime, Node) time a paired-gate block in one PAIRS request when
both builds are in one worker, and place and free a workload's buffers in an exchange or two; a
fault inside either is that request's typed error, and the worker goes on."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from harness.artifact import Artifact
from harness.hosts.base import HostCrashed, HostError, TimedCall, Trap
from harness.hosts.framing import Op
from harness.hosts.pipe import PipeHost, PipeInstance, WorkerClient
from harness.hosts.registry import make_host
from harness.hosts.timeouts import Timeouts

HOSTS = ["native", "wasmtime", pytest.param("node24", marks=pytest.mark.node)]
TRAP = -1  # hostfix.c: tg_gelu_forward(out, inp, -1) traps (ud2 natively)
NOOP = TimedCall("tg_noop", ())


@pytest.fixture(params=HOSTS)
def host(request: pytest.FixtureRequest, fast: Timeouts) -> Iterator[PipeHost]:
    """A worker host of its own per test (tests kill and crash workers)."""
    made = make_host(str(request.param), fast)
    assert isinstance(made, PipeHost)
    yield made
    made.close()


def _build(host: PipeHost, artifacts: dict[str, Artifact]) -> Artifact:
    return artifacts["native" if host.name == "native" else "wasm32"]


def _two_builds(art: Artifact, where: Path) -> tuple[Artifact, Artifact]:
    """Two byte-identical builds at paths of their own (BASE and CAND, to the host)."""
    where.mkdir(parents=True, exist_ok=True)
    out = []
    for name in ("base", "cand"):
        path = where / f"{name}-{art.path.name}"
        path.write_bytes(art.path.read_bytes())
        out.append(replace(art, name=f"{art.name}-{name}", path=path))
    return out[0], out[1]


def _ops(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every exchange any worker client makes from now on, as its opcodes' names."""
    seen: list[str] = []
    exchange = WorkerClient._exchange_frames

    def spy(self: WorkerClient, frames: list[bytes], op: Op, *args: object) -> object:
        seen.append(f"{op.name}x{len(frames)}")
        return exchange(self, frames, op, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(WorkerClient, "_exchange_frames", spy)
    return seen


def test_a_block_of_pairs_is_one_request_in_one_worker(
    host: PipeHost, artifacts: dict[str, Artifact], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After ``start(one_process=True)`` BASE's and CAND's instances time a block of pairs in
    one PAIRS request, one sample per pair and side, on the CPU clock too where the engine has
    one; with no time left only the first pair runs; instances of two workers, or a closed one,
    answer None (the gate then times each sample on its own)."""
    base, cand = _two_builds(_build(host, artifacts), tmp_path / "one")
    host.start([base, cand], one_process=True)
    a, b = host.load(base), host.load(cand)
    assert isinstance(a, PipeInstance) and isinstance(b, PipeInstance)
    seen = _ops(monkeypatch)
    timed = a.time_pairs(b, NOOP, NOOP, [True, False, True, False, True], 2000, 1)
    assert seen == ["PAIRSx1"] and timed is not None
    assert [len(t.sample_ns) for t in timed] == [5, 5]
    assert all(x > 0 for t in timed for x in t.sample_ns)
    assert {t.inner_reps for t in timed} == {2000} and timed[0].clock == timed[1].clock
    if host.name != "node24":  # the Python engines read each sample on the thread's CPU clock
        assert [len(t.cpu_ns) for t in timed] == [5, 5]
        assert {t.cpu_clock for t in timed} == {"thread_time_ns"}
    late = a.time_pairs(b, NOOP, NOOP, [False] * 4, 50, 0, stop_after_s=0.0)
    assert late is not None and [len(t.sample_ns) for t in late] == [1, 1]
    b.close()
    assert a.time_pairs(b, NOOP, NOOP, [True], 10, 0) is None
    a.close()
    apart = _two_builds(_build(host, artifacts), tmp_path / "two")
    host.start(list(apart))
    c, d = (host.load(art) for art in apart)
    try:
        assert c.time_pairs(d, NOOP, NOOP, [True], 10, 0) is None
    finally:
        c.close()
        d.close()


def test_a_fault_in_a_pair_is_its_typed_error_and_bad_orders_are_refused(
    host: PipeHost, artifacts: dict[str, Artifact], tmp_path: Path
) -> None:
    """A kernel that traps inside a PAIRS request raises Trap (natively the worker dies of it:
    its instances are lost, the next load works); an order that is not 0s and 1s is refused in
    words and the worker still answers."""
    base, cand = _two_builds(_build(host, artifacts), tmp_path / "one")
    host.start([base, cand], one_process=True)
    a, b = host.load(base), host.load(cand)
    assert isinstance(a, PipeInstance)
    try:
        bad = {"instance": a.instance_id, "name": "tg_noop", "args": []}
        header = {"first": bad, "second": dict(bad, instance=b.instance_id),  # type: ignore[attr-defined]
                  "order": [0, 2], "inner_reps": 1, "warmup": 0, "stop_after_ms": None}  # fmt: skip
        with pytest.raises(HostError, match="order must be a non-empty list of 0 and 1"):
            a.client.request(Op.PAIRS, header, timeout_s=60.0)
        assert a.call("tg_model_create", 1, 14, 0, 0, 0) == 42
        trap = TimedCall("tg_gelu_forward", (0, 0, TRAP))
        with pytest.raises(Trap):
            a.time_pairs(b, NOOP, trap, [False, True], 1, 0)
        if host.name == "native":  # ud2 killed the worker, and both instances with it
            with pytest.raises(HostCrashed, match="lost"):
                b.call("tg_noop")
    finally:
        a.close()
        b.close()
    again = host.load(base)
    try:
        assert again.call("tg_model_create", 1, 14, 0, 0, 0) == 42
    finally:
        again.close()


def test_place_and_free_all_are_one_exchange_each_and_a_lost_instance_says_so(
    host: PipeHost, artifacts: dict[str, Artifact], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Placing a workload's buffers is two exchanges (every allocation, then every write, at
    once) and freeing them one; the worker stays in step (its next reply is the next
    request's); a closed instance refuses, and one whose worker was killed raises HostCrashed
    without a request."""
    inst = host.load(_build(host, artifacts))
    assert isinstance(inst, PipeInstance)
    seen = _ops(monkeypatch)
    blobs = [bytes([k]) * (64 << k) for k in range(5)]
    ptrs = inst.place(blobs)
    assert [inst.read(p, len(b)) == b for p, b in zip(ptrs, blobs, strict=True)] == [True] * 5
    inst.free_all(ptrs)
    assert seen == ["CALLx5", "WRITEx5", *["READx1"] * 5, "CALLx5"]
    seen.clear()
    assert inst.call("tg_model_create", 1, 14, 0, 0, 0) == 42
    inst.client.kill()
    with pytest.raises(HostCrashed, match="lost"):
        inst.free_all(ptrs)
    assert seen == ["CALLx1"]  # the call above; the lost free_all sent nothing
    inst.close()
    with pytest.raises(HostError, match="is closed"):
        inst.free_all(ptrs)
