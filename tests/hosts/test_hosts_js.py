"""JS-host specifics: the BigInt ABI under Memory64, crashes of Node workers and Chromium pages,
and the host-cost probes (Atomics wake + join, postMessage, load) of the overhead decomposition."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import Error as PlaywrightError

from harness.abi import ABI_VERSION
from harness.artifact import Artifact
from harness.hosts.base import ABIError, HostCrashed, HostError, Instance
from harness.hosts.chromium import ChromiumHost
from harness.hosts.node import NodeHost, pinned_node
from harness.hosts.pipe import PipeInstance
from harness.hosts.timeouts import Timeouts


@pytest.fixture
def node24(fast: Timeouts) -> Iterator[NodeHost]:
    """A Node 24 host (it loads wasm64)."""
    host = pinned_node("node24", fast)
    yield host
    host.close()


@pytest.fixture(scope="module")
def chromium() -> Iterator[ChromiumHost]:
    """One browser for this module's Chromium tests."""
    host = ChromiumHost(timeouts=Timeouts(call_s=2.0, load_s=30.0, transfer_s=30.0))
    yield host
    host.close()


@pytest.mark.node
def test_node_number_shim_is_reported_as_abi_error(
    artifacts: dict[str, Artifact], fast: Timeouts
) -> None:
    """Passing a ptr as a Number under Memory64 (the TinyGPT bug) is an ABIError in V8's words."""
    node = pinned_node("node24", fast)
    shimmed = NodeHost(
        "node24-shim", node.executable, node.install_hint, timeouts=fast, number_shim=True
    )
    try:
        inst = shimmed.load(artifacts["wasm64"])
        # no ptr argument: the shim changes nothing
        assert inst.call("tg_abi_version") == ABI_VERSION
        with pytest.raises(ABIError, match=r"Cannot convert 64 to a BigInt"):
            inst.call("tg_alloc", 64)
        inst.close()
        correct = node.load(artifacts["wasm64"])  # the same call with the BigInt conversion
        assert correct.alloc(64) > 0
        correct.close()
    finally:
        shimmed.close()
        node.close()


@pytest.mark.node
def test_killed_node_worker_mid_call_is_host_crashed(
    node24: NodeHost, artifacts: dict[str, Artifact]
) -> None:
    """SIGKILL of the Node worker during a call raises HostCrashed; the next load starts anew."""
    slow = NodeHost(
        "node24", node24.executable, node24.install_hint, timeouts=Timeouts(call_s=30.0)
    )
    try:
        inst = slow.load(artifacts["wasm64"])
        assert isinstance(inst, PipeInstance)
        pid = inst.worker_pid
        assert pid is not None
        killer = threading.Timer(0.5, os.kill, (pid, signal.SIGKILL))
        killer.start()
        t0 = time.monotonic()
        with pytest.raises(HostCrashed, match="SIGKILL"):
            inst.call("tg_gelu_forward", 0, 0, -2)  # the fixture's never-returning switch
        killer.join()
        assert time.monotonic() - t0 < 10
        again = slow.load(artifacts["wasm64"])
        assert isinstance(again, PipeInstance) and again.worker_pid not in (None, pid)
        assert again.call("tg_model_create", 1, 14, 0, 0, 0) == 42
        again.close()
    finally:
        slow.close()


@pytest.mark.chromium
def test_chromium_page_is_cross_origin_isolated_with_5us_clock(
    chromium: ChromiumHost, artifacts: dict[str, Artifact]
) -> None:
    """COOP/COEP make page and worker crossOriginIsolated; performance.now then ticks at 5 us."""
    inst = chromium.load(artifacts["wasm64"])
    try:
        assert chromium.page_info["crossOriginIsolated"] is True
        assert inst.worker_cross_origin_isolated
        resolution = inst.time_calls("tg_noop", (), 100, 2, 0).clock_resolution_ns
        assert 1_000 <= resolution <= 5_100  # 100 us if isolation were lost
    finally:
        inst.close()


@pytest.mark.chromium
def test_chromium_number_shim_is_reported_as_abi_error(artifacts: dict[str, Artifact]) -> None:
    """In Chromium too, a Number where Memory64 wants a BigInt is an ABIError in V8's words."""
    shimmed = ChromiumHost(timeouts=Timeouts(call_s=5.0), number_shim=True)
    try:
        inst = shimmed.load(artifacts["wasm64"])
        with pytest.raises(ABIError, match=r"Cannot convert 16 to a BigInt"):
            inst.call("tg_model_num_params", 16)
        inst.close()
    finally:
        shimmed.close()


@pytest.mark.chromium
def test_chromium_page_crash_is_host_crashed_then_recovers(
    chromium: ChromiumHost, artifacts: dict[str, Artifact]
) -> None:
    """A crashed renderer (chrome://crash) fails the call with HostCrashed; a new load works."""
    inst = chromium.load(artifacts["wasm32"])
    with pytest.raises(PlaywrightError, match="crash"):
        inst.page.goto("chrome://crash")
    with pytest.raises(HostCrashed):
        inst.call("tg_noop")
    inst.close()
    again = chromium.load(artifacts["wasm32"])
    assert again.call("tg_model_create", 1, 14, 0, 0, 0) == 42
    again.close()


@pytest.mark.chromium
def test_chromium_relaunches_a_dead_browser(artifacts: dict[str, Artifact], fast: Timeouts) -> None:
    """A browser that went away (closed under the host) is relaunched on the next load."""
    host = ChromiumHost(timeouts=fast)
    try:
        inst = host.load(artifacts["wasm32"])
        host.browser().close()
        with pytest.raises(HostCrashed):
            inst.call("tg_noop")
        again = host.load(artifacts["wasm32"])
        assert again.call("tg_abi_version") == ABI_VERSION
        again.close()
    finally:
        host.close()


def _assert_probes(inst: Instance) -> None:
    """Both probes give the asked number of positive, finite samples of the asked round trips,
    and name their clock and its resolution (what calibration sizes a sample by); an unknown
    one is a HostError naming the known ones; the load was timed inside the host."""
    for kind in ("atomics", "postmessage"):
        got = inst.time_probe(kind, 3, 4, 5)
        assert len(got.sample_ns) == 4 and all(0 < s < 1e9 for s in got.sample_ns), (kind, got)
        assert got.inner_reps == 3 and got.clock == "performance.now"
        assert 0 < got.clock_resolution_ns < 1e6, got
    with pytest.raises(HostError, match="unknown probe bogus; known: atomics, postmessage"):
        inst.time_probe("bogus", 2, 2, 0)
    assert inst.load_info["load_ns"] > 0


@pytest.mark.node
def test_node_probes_wake_join_and_postmessage_inside_the_host(
    node24: NodeHost, artifacts: dict[str, Artifact]
) -> None:
    """Node 24 times an Atomics wake + join and a postMessage round trip with a helper
    worker_threads Worker, and its own load."""
    inst = node24.load(artifacts["wasm32"])
    _assert_probes(inst)
    inst.call("tg_noop")  # the instance is still usable after the helper worker is gone


@pytest.mark.chromium
def test_chromium_probes_and_a_page_without_isolation_cannot_wait(
    chromium: ChromiumHost, artifacts: dict[str, Artifact]
) -> None:
    """The page's worker times both probes with a nested Worker; in a page served without
    COOP/COEP there is no SharedArrayBuffer, and the wake probe says so instead of hanging."""
    inst = chromium.load(artifacts["wasm32"])
    try:
        _assert_probes(inst)
    finally:
        inst.close()
    bare = ChromiumHost(timeouts=Timeouts(call_s=10.0, load_s=30.0, time_s=30.0), isolated=False)
    try:
        inst = bare.load(artifacts["wasm32"])
        with pytest.raises(HostError, match="no SharedArrayBuffer here"):
            inst.time_probe("atomics", 2, 2, 0)
        assert len(inst.time_probe("postmessage", 2, 2, 0).sample_ns) == 2
    finally:
        bare.close()
