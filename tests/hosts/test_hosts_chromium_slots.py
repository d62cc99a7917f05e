"""Chromium holds several instances in one page, one worker (slot) each: they share the page
but not memory, a hung or closed instance ends only its own worker, and a crashed page loses
them all while the next load opens a new page."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Error as PlaywrightError

from harness.artifact import Artifact
from harness.hosts.base import HostCrashed, HostError, HostTimeout
from harness.hosts.chromium import ChromiumHost
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
