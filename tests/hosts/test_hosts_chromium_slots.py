"""Chromium holds several instances in one page, one worker (slot) each: they share the page
but not memory, a hung or closed instance ends only its own worker, and a crashed page loses
them all while the next load opens a new page. The page keeps large written bytes by content,
and its workers take the clock resolution it measured. Started for the paired gate, loads share
one worker, which times both builds' samples side by side in one request."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page

from harness.artifact import Artifact
from harness.build import Variant, build_variant
from harness.hosts.base import HostCrashed, HostError, HostTimeout, TimedCall
from harness.hosts.chromium import KEPT_WRITE_BYTES, ChromiumHost
from harness.hosts.timeouts import Timeouts

pytestmark = pytest.mark.chromium


@pytest.fixture
def chromium() -> Iterator[ChromiumHost]:
    """A browser of its own per test (one test crashes its page)."""
    host = ChromiumHost(timeouts=Timeouts(call_s=2.0, load_s=30.0, transfer_s=30.0))
    yield host
    host.close()


def test_instances_share_one_page_not_memory(
    chromium: ChromiumHost, artifacts: dict[str, Artifact]
) -> None:
    """Three loads land in one page as three slots; the same address holds each one's own bytes,
    and closing one leaves the others working."""
    insts = [chromium.load(artifacts["wasm32"]) for _ in range(3)]
    try:
        assert len({id(i.page) for i in insts}) == 1
        assert len({i.slot for i in insts}) == 3
        ptrs = [int(i.call("tg_alloc", 16) or 0) for i in insts]
        assert len(set(ptrs)) == 1  # fresh bump allocators: the same address in each
        for k, inst in enumerate(insts):
            inst.write(ptrs[k], bytes([k + 1]) * 16)
        assert [i.read(ptrs[k], 16) for k, i in enumerate(insts)] == [
            bytes([k + 1]) * 16 for k in range(3)
        ]
        insts[1].close()
        with pytest.raises(HostError, match="closed"):
            insts[1].call("tg_noop")
        assert insts[0].read(ptrs[0], 16) == b"\x01" * 16
        assert insts[2].read(ptrs[2], 16) == b"\x03" * 16
    finally:
        for inst in insts:
            inst.close()


def test_hung_instance_ends_only_its_worker(
    chromium: ChromiumHost, artifacts: dict[str, Artifact]
) -> None:
    """A call that never returns times out and loses its own slot; its page neighbour answers."""
    hung, other = chromium.load(artifacts["wasm32"]), chromium.load(artifacts["wasm32"])
    try:
        with pytest.raises(HostTimeout):
            hung.call("tg_gelu_forward", 0, 0, -2)  # N == -2 spins forever (hostfix.c)
        with pytest.raises(HostCrashed):
            hung.call("tg_noop")
        assert other.call("tg_noop") is None
        assert other.page is hung.page
    finally:
        hung.close()
        other.close()


def test_crashed_page_loses_all_its_instances_next_load_opens_a_page(
    chromium: ChromiumHost, artifacts: dict[str, Artifact]
) -> None:
    """chrome://crash in the shared page fails every slot with HostCrashed; a new load gets a
    new page and works."""
    a, b = chromium.load(artifacts["wasm32"]), chromium.load(artifacts["wasm32"])
    with pytest.raises(PlaywrightError, match="crash"):
        a.page.goto("chrome://crash")
    for inst in (a, b):
        with pytest.raises(HostCrashed):
            inst.call("tg_noop")
        inst.close()
    again = chromium.load(artifacts["wasm32"])
    try:
        assert again.page is not a.page
        assert again.call("tg_noop") is None
    finally:
        again.close()


def _methods(chromium: ChromiumHost, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The page methods ``chromium`` calls from now on, in order."""
    seen: list[str] = []
    evaluate = chromium.evaluate

    def spy(page: Page, method: str, *args: Any, timeout_s: float) -> dict[str, Any]:
        seen.append(method)
        return evaluate(page, method, *args, timeout_s=timeout_s)

    monkeypatch.setattr(chromium, "evaluate", spy)
    return seen


def test_a_kept_write_crosses_as_its_key_and_lands_in_every_instance(
    chromium: ChromiumHost, artifacts: dict[str, Artifact], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bytes written once are kept by the page: writing them again, into another instance,
    sends their key alone, and each instance reads back exactly what was written to it; other
    bytes of the same length are written in full, never mistaken for the kept ones."""
    a, b = chromium.load(artifacts["wasm32"]), chromium.load(artifacts["wasm32"])
    try:
        data = np.random.default_rng(5).bytes(KEPT_WRITE_BYTES)
        other = bytes(reversed(data))
        pa, pb = (int(i.call("tg_alloc", len(data)) or 0) for i in (a, b))
        seen = _methods(chromium, monkeypatch)
        a.write(pa, data)
        b.write(pb, data)
        b.write(pb, other)
        assert seen == ["write", "writeKey", "write"]
        assert a.read(pa, len(data)) == data
        assert b.read(pb, len(data)) == other
        b.write(pb, data)
        assert seen[-2:] == ["read", "writeKey"] and b.read(pb, len(data)) == data
    finally:
        a.close()
        b.close()


def test_a_write_whose_key_the_page_lost_is_sent_in_full(
    chromium: ChromiumHost, artifacts: dict[str, Artifact], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A key the page does not hold (dropped past its bound, or never sent) is a miss, not an
    error and not a silent skip: the bytes then cross in full and land."""
    inst = chromium.load(artifacts["wasm32"])
    try:
        data = np.random.default_rng(6).bytes(KEPT_WRITE_BYTES + 3)
        ptr = int(inst.call("tg_alloc", len(data)) or 0)
        chromium.page_keys.add(hashlib.sha256(data).hexdigest())  # believed kept, never sent
        seen = _methods(chromium, monkeypatch)
        inst.write(ptr, data)
        assert seen == ["writeKey", "write"]
        assert inst.read(ptr, len(data)) == data
    finally:
        inst.close()


def test_workers_take_the_pages_measured_clock_resolution(
    chromium: ChromiumHost, artifacts: dict[str, Artifact]
) -> None:
    """A worker as cross-origin isolated as its page reports the resolution the page measured
    (it does not spend ~100 ms measuring its own) in its hello and in every timing reply."""
    inst = chromium.load(artifacts["wasm32"])
    try:
        page_ns = float(chromium.page_info["clockResolutionNs"])
        assert inst.worker_cross_origin_isolated and inst.worker_clock_from_page
        assert page_ns > 0
        timed = inst.time_calls("tg_noop", (), 10, 2, 1)
        assert timed.clock_resolution_ns == page_ns
    finally:
        inst.close()


def _noop() -> TimedCall:
    return TimedCall("tg_noop", ())


def test_one_process_loads_share_a_worker_and_time_pairs_in_one_request(
    chromium: ChromiumHost, artifacts: dict[str, Artifact], monkeypatch: pytest.MonkeyPatch
) -> None:
    """After ``start(one_process=True)`` two loads share one worker, not memory: a block of
    pairs is one ``pairs`` request, with one sample per pair and side; with no time left it
    runs its first pair only. After a plain start each load has a worker of its own, and
    ``time_pairs`` says it cannot (None)."""
    art = artifacts["wasm32"]
    chromium.start([art], one_process=True)
    a, b = chromium.load(art), chromium.load(art)
    try:
        assert a.worker_id == b.worker_id and a.slot != b.slot
        pa, pb = (int(i.call("tg_alloc", 16) or 0) for i in (a, b))
        a.write(pa, b"\x01" * 16)
        b.write(pb, b"\x02" * 16)
        assert (a.read(pa, 16), b.read(pb, 16)) == (b"\x01" * 16, b"\x02" * 16)
        seen = _methods(chromium, monkeypatch)
        timed = a.time_pairs(b, _noop(), _noop(), [True, False, True, False, True], 20000, 1)
        assert seen == ["pairs"] and timed is not None
        assert [len(t.sample_ns) for t in timed] == [5, 5]
        assert all(x > 0 for t in timed for x in t.sample_ns)
        assert timed[0].clock == "performance.now" and timed[0].inner_reps == 20000
        late = a.time_pairs(b, _noop(), _noop(), [False] * 4, 50, 0, stop_after_s=0.0)
        assert late is not None and [len(t.sample_ns) for t in late] == [1, 1]
    finally:
        a.close()
        b.close()
    chromium.start([art])
    c, d = chromium.load(art), chromium.load(art)
    try:
        assert c.worker_id != d.worker_id
        assert c.time_pairs(d, _noop(), _noop(), [True], 10, 0) is None
    finally:
        c.close()
        d.close()


def test_a_shared_worker_outlives_one_close_and_ends_with_its_last(
    chromium: ChromiumHost, artifacts: dict[str, Artifact]
) -> None:
    """Closing one instance of a shared worker unloads it there and the other goes on; once the
    last is closed the worker ends, and the next load of the group starts a fresh one."""
    art = artifacts["wasm32"]
    chromium.start([art], one_process=True)
    a, b = chromium.load(art), chromium.load(art)
    a.close()
    try:
        assert b.call("tg_noop") is None
        assert b.time_pairs(a, _noop(), _noop(), [True], 10, 0) is None  # a is closed
    finally:
        b.close()
    c = chromium.load(art)
    try:
        assert c.worker_id not in (a.worker_id, 0)
    finally:
        c.close()


def test_a_hung_call_in_a_shared_worker_loses_its_instances_and_the_page_goes_on(
    chromium: ChromiumHost, artifacts: dict[str, Artifact]
) -> None:
    """A call that never returns ends the shared worker: its caller gets HostTimeout, the other
    instance of that worker HostCrashed (lost, in the page's words), and the next load starts
    a new worker that answers."""
    art = artifacts["wasm32"]
    chromium.start([art], one_process=True)
    hung, other = chromium.load(art), chromium.load(art)
    try:
        with pytest.raises(HostTimeout):
            hung.call("tg_gelu_forward", 0, 0, -2)  # N == -2 spins forever (hostfix.c)
        with pytest.raises(HostCrashed, match="lost"):
            other.call("tg_noop")
        again = chromium.load(art)
        try:
            assert again.worker_id != hung.worker_id and again.call("tg_noop") is None
        finally:
            again.close()
    finally:
        hung.close()
        other.close()


def test_free_all_is_one_request_that_stops_at_the_first_failure(
    chromium: ChromiumHost,
    artifacts: dict[str, Artifact],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """Freeing a workload's buffers is one ``callEach`` request, and the kernel library's
    allocator (first fit, unlike the fixture's bump allocator) hands the freed space out again.
    A call that fails ends the request there, and its error says how many calls returned
    before it."""
    inst = chromium.load(build_variant(tmp_path, Variant("wasm32-calibrate", "wasm32", ())))
    try:
        ptrs = [inst.alloc(64) for _ in range(3)]
        seen = _methods(chromium, monkeypatch)
        inst.free_all(ptrs)
        assert seen == ["callEach"]
        assert inst.alloc(64) in ptrs  # freed: the allocator reuses the space
    finally:
        inst.close()
    fixture = chromium.load(artifacts["wasm32"])
    try:
        trapping = [[0, 0, -1]] * 3  # N == -1 traps (hostfix.c)
        reply = chromium.evaluate(fixture.page, "callEach", fixture.slot, "tg_gelu_forward",
                                  trapping, timeout_s=10.0)  # fmt: skip
        assert reply["error"] == "Trap" and "after 0 of 3 calls" in reply["message"]
        assert fixture.call("tg_noop") is None
    finally:
        fixture.close()
