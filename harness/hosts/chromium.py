"""The ``chromium`` host: Debian's Chromium driven by Playwright (no browser download).

The browser is launched once per host object with a fresh profile, and opens one page (in its
own browser context) served from :class:`~harness.hosts.page_server.PageServer` with COOP/COEP,
so the page is ``crossOriginIsolated`` (asserted, recorded). Each loaded artifact runs in a
dedicated worker of that page (its *slot*) over the same ``driver.mjs`` as Node: opening a page
costs ~0.7 s and a worker a fraction of that, and the paired gate loads 24 instances per cell
(docs/gate.md). After ``start(..., one_process=True)`` (the paired gate's) every load is a slot
of one shared worker instead, whose two instances can be timed side by side in one request.
A call over its timeout terminates that instance's worker only (HostTimeout; in a shared
worker, every instance in it is lost); a crashed page or browser raises HostCrashed in every
instance it held; the next load opens a new page (relaunching the browser if it died).
``ChromiumHost(isolated=False)`` serves the page without COOP/COEP: a -pthread artifact is then
``incompatible`` (no SharedArrayBuffer), said before its glue runs, so nothing waits on a
worker pool that cannot start.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import struct
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright
from playwright.sync_api import Error as PlaywrightError

from harness.artifact import Artifact
from harness.hosts import base
from harness.hosts.base import (
    HostCrashed,
    HostError,
    HostUnavailable,
    IncompatibleArtifact,
    Scalar,
)
from harness.hosts.framing import decode_scalar, encode_scalar, pairs_request, time_request
from harness.hosts.install import CHROMIUM_INSTALL, CHROMIUM_PATH
from harness.hosts.page_server import PageServer
from harness.hosts.pipe import artifact_entry, error_from_reply
from harness.hosts.timeouts import Timeouts
from harness.hosts.v8_tier import STEADY_V8_FLAGS, chromium_js_flags
from harness.hosts.wasm_check import engine_rejection

JS_DIR = Path(__file__).resolve().parents[1] / "js"
# Writes of at least this many bytes are kept by the page under their sha256 (page.mjs,
# BLOB_CACHE_BYTES): the paired gate writes the same seeded inputs in every block, and each
# write's base64 crosses Playwright's driver and CDP. On s35's VM (Intel Xeon, 2 vCPUs) a
# 230 KB write took ~16 ms and a round trip ~3 ms. Below this, hashing and keeping cost more
# than they save.
KEPT_WRITE_BYTES = 16 * 1024
ONE_WORKER = "one"  # the page's worker group of start(..., one_process=True)
LAUNCH_ARGS = (
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-gpu",
    "--disable-quic",
)
# WebGPU (the `webgpu` format, docs/webgpu.md): Debian's Chromium 156 headless gives a WebGPU
# adapter (SwiftShader: vendor "google", architecture "swiftshader", a fallback adapter) only
# with this flag; without it navigator.gpu.requestAdapter() returns null. It is a launch flag,
# so it is recorded with the V8 flags in run.json's hosts.chromium.flags.
WEBGPU_FLAGS = ("--enable-unsafe-webgpu",)


def _not_isolated(artifact: Artifact, page_info: dict[str, Any]) -> str:
    """Why a -pthread artifact cannot run in a page that is not cross-origin isolated."""
    sab = "present" if page_info.get("sharedArrayBuffer") else "undefined"
    return (
        f"chromium: {artifact.name} is a -pthread build, and the page is not crossOriginIsolated "
        f"(served without Cross-Origin-Opener-Policy: same-origin and "
        f"Cross-Origin-Embedder-Policy: require-corp; SharedArrayBuffer is {sab}): its memory "
        "cannot be shared with its pthread workers"
    )


class _SharedDriver:
    """Playwright's sync API allows one driver per thread, so hosts share it by reference count."""

    playwright: Playwright | None = None
    users = 0

    @classmethod
    def acquire(cls) -> Playwright:
        if cls.playwright is None:
            cls.playwright = sync_playwright().start()
        cls.users += 1
        return cls.playwright

    @classmethod
    def release(cls) -> None:
        cls.users -= 1
        if cls.users == 0 and cls.playwright is not None:
            cls.playwright.stop()
            cls.playwright = None


class ChromiumInstance(base.Instance):
    """One artifact in one worker (``slot``) of the host's page; ``page`` (shared with the
    host's other instances) is public so tests can crash it."""

    def __init__(
        self, host: ChromiumHost, page: Page, slot: int, artifact: Artifact,
        load_header: dict[str, Any],
    ) -> None:  # fmt: skip
        self.host = host
        self.page = page
        self.slot = slot
        self.artifact = artifact
        worker = load_header.get("worker", {})
        self.worker_cross_origin_isolated = bool(worker.get("crossOriginIsolated"))
        # the worker took the page's measured clock resolution (page.mjs, pageClock)
        self.worker_clock_from_page = bool(worker.get("clock_from_page"))
        self.worker_id = int(worker.get("id") or 0)  # the page's worker this instance runs in
        self.load_info = dict(load_header.get("info") or {})
        self._lost: str | None = None
        self._closed = False

    def _ask(self, method: str, *args: Any, timeout_s: float) -> dict[str, Any]:
        if self._closed:
            raise HostError(f"chromium: instance of {self.artifact.name} is closed")
        if self._lost is not None:
            raise HostCrashed(
                f"chromium: the instance of {self.artifact.name} was lost ({self._lost}); "
                "load the artifact again"
            )
        try:
            reply = self.host.evaluate(self.page, method, self.slot, *args, timeout_s=timeout_s)
        except (HostCrashed, base.HostTimeout) as exc:
            self._lost = str(exc)
            raise
        except KeyboardInterrupt:
            # Ctrl-C or SIGTERM mid-request: the worker still runs it (a hung call spins on)
            # and owes its reply, so the instance is lost, as a pipe host's worker is; close()
            # still terminates that worker.
            self._lost = f"interrupted during {method}"
            raise
        if "error" in reply:
            error = error_from_reply(reply)
            if isinstance(error, HostCrashed | base.HostTimeout):
                self._lost = str(error)
            raise error
        return reply

    def call(self, name: str, *args: Scalar) -> Scalar | None:
        """Call export ``name`` in the page's worker."""
        t = self.host.timeouts.call_s
        reply = self._ask("call", name, [encode_scalar(a) for a in args], timeout_s=t)
        return decode_scalar(reply["header"].get("result"))

    def write(self, ptr: int, data: bytes) -> None:
        """Copy ``data`` into memory (base64 across the bridge). From KEPT_WRITE_BYTES up,
        the page keeps the bytes under their sha256, and a later write of the same bytes into
        any instance of the page sends that key alone."""
        t = self.host.timeouts.transfer_s
        if len(data) < KEPT_WRITE_BYTES:
            self._ask("write", ptr, base64.b64encode(data).decode("ascii"), None, timeout_s=t)
            return
        key = hashlib.sha256(data).hexdigest()
        if key in self.host.page_keys and not self._ask("writeKey", ptr, key, timeout_s=t).get(
            "miss"
        ):
            return
        self._ask("write", ptr, base64.b64encode(data).decode("ascii"), key, timeout_s=t)
        self.host.page_keys.add(key)

    def place(self, blobs: Sequence[bytes]) -> tuple[int, ...]:
        """:meth:`base.Instance.place` in one request to the page (``tg.place``): every
        allocation and write of a paired-gate block's side, where a request each took ~3 ms on
        s35's VM (~12 ms beside 4 busy processes). Blobs from KEPT_WRITE_BYTES up travel as in
        :meth:`write`: by key when the page holds them. If anything fails, the page frees what
        it allocated and the error is raised."""
        if len(blobs) < 2:
            return super().place(blobs)
        name, free, unit = self.artifact.allocator()
        items: list[dict[str, str]] = []
        kept: list[str] = []
        for blob in blobs:
            if len(blob) < KEPT_WRITE_BYTES:
                items.append({"b64": base64.b64encode(blob).decode("ascii")})
                continue
            key = hashlib.sha256(blob).hexdigest()
            if key in self.host.page_keys:
                items.append({"key": key})
            else:
                items.append({"b64": base64.b64encode(blob).decode("ascii"), "key": key})
                kept.append(key)
        counts = [encode_scalar(-(-len(blob) // unit)) for blob in blobs]
        reply = self._ask("place", name, free, counts, items,
                          timeout_s=self.host.timeouts.transfer_s)  # fmt: skip
        self.host.page_keys.update(kept)
        ptrs = tuple(int(decode_scalar(p) or 0) for p in reply["ptrs"])
        if len(ptrs) != len(blobs):
            self.free_quietly(ptrs)
            raise HostError(f"chromium: place of {len(blobs)} buffers returned {len(ptrs)}")
        try:
            for i in reply.get("missed") or ():  # keys the page dropped: write the bytes again
                self.write(ptrs[int(i)], blobs[int(i)])
        except BaseException:
            self.free_quietly(ptrs)
            raise
        return ptrs

    def free_all(self, ptrs: Sequence[int]) -> None:
        """Free ``ptrs`` in one request: the page calls the allocator's free for each, in order,
        and stops at the first that fails (raised here). A block of the paired gate frees its
        4 buffers per side this way: beside 4 busy processes a call took ~12 ms (median) on
        s35's VM, and a Chromium cell's release of 96 buffers one by one ran it past its budget
        (docs/gate.md, s35)."""
        if len(ptrs) < 2:
            super().free_all(ptrs)
            return
        name = self.artifact.allocator()[1]
        args = [[encode_scalar(ptr)] for ptr in ptrs]
        self._ask("callEach", name, args, timeout_s=self.host.timeouts.call_s)  # per call

    def read(self, ptr: int, nbytes: int) -> bytes:
        """Read memory (base64 across the bridge)."""
        reply = self._ask("read", ptr, nbytes, timeout_s=self.host.timeouts.transfer_s)
        data = base64.b64decode(reply["b64"])
        if len(data) != nbytes:
            raise HostError(f"chromium: read of {nbytes} bytes at {ptr:#x} returned {len(data)}")
        return data

    def time_calls(
        self, name: str, args: tuple[Scalar, ...], inner_reps: int, samples: int, warmup: int
    ) -> base.TimingResult:
        """Time inside the page's worker with performance.now()."""
        header = time_request(name, args, inner_reps, samples, warmup)
        reply = self._ask("time", header, timeout_s=self.host.timeouts.time_s)
        raw = base64.b64decode(reply["b64"])
        if len(raw) != 8 * samples:
            raise HostError(
                f"chromium: time {name}: asked for {samples} samples, got {len(raw) // 8}"
            )
        h = reply["header"]
        return base.TimingResult(
            sample_ns=struct.unpack(f"<{samples}d", raw),
            inner_reps=int(h["inner_reps"]),
            clock_resolution_ns=float(h["clock_resolution_ns"]),
            clock=str(h["clock"]),
        )

    def time_pairs(
        self,
        other: base.Instance,
        mine: base.TimedCall,
        theirs: base.TimedCall,
        other_first: Sequence[bool],
        inner_reps: int,
        warmup: int,
        stop_after_s: float | None = None,
    ) -> tuple[base.TimingResult, base.TimingResult] | None:
        """:meth:`base.Instance.time_pairs` in one request to the worker both instances are in
        (loaded after ``start(..., one_process=True)``); None for instances of two workers."""
        if not (
            isinstance(other, ChromiumInstance)
            and other.page is self.page
            and other.worker_id == self.worker_id
            and not other._closed
        ):
            return None
        asked = len(other_first)
        header = pairs_request((mine.name, mine.args), (theirs.name, theirs.args), other_first,
                               inner_reps, warmup, stop_after_s)  # fmt: skip
        reply = self._ask("pairs", other.slot, header, timeout_s=self.host.timeouts.time_s)
        h = reply["header"]
        done = int(h["pairs"])
        raw = base64.b64decode(reply["b64"])
        if not 0 < done <= asked or len(raw) != 16 * done:
            raise HostError(
                f"chromium: pairs {mine.name}: asked for {asked} pairs, got {done} "
                f"({len(raw)} bytes)"
            )
        times = struct.unpack(f"<{2 * done}d", raw)

        def result(samples: tuple[float, ...]) -> base.TimingResult:
            return base.TimingResult(
                sample_ns=samples,
                inner_reps=int(h["inner_reps"]),
                clock_resolution_ns=float(h["clock_resolution_ns"]),
                clock=str(h["clock"]),
            )

        return result(times[:done]), result(times[done:])

    def time_probe(
        self, kind: str, inner_reps: int, samples: int, warmup: int
    ) -> base.TimingResult:
        """:meth:`base.Instance.time_probe` in the page's worker (its helper is a nested
        Worker)."""
        header = {"kind": kind, "samples": samples, "reps": inner_reps, "warmup": warmup}
        reply = self._ask("probe", header, timeout_s=self.host.timeouts.time_s)
        raw = base64.b64decode(reply["b64"])
        if len(raw) != 8 * samples:
            raise HostError(
                f"chromium: probe {kind}: asked for {samples} samples, got {len(raw) // 8}"
            )
        h = reply["header"]
        return base.TimingResult(
            sample_ns=struct.unpack(f"<{samples}d", raw),
            inner_reps=inner_reps,
            clock_resolution_ns=float(h["clock_resolution_ns"]),
            clock=str(h["clock"]),
        )

    def bridge_roundtrip_ns(self, n: int) -> tuple[float, ...]:
        """Wall-clock ns of ``n`` no-op round trips Python -> CDP -> page -> worker and back."""
        out = []
        for _ in range(n):
            t0 = time.perf_counter_ns()
            self._ask("noop", timeout_s=self.host.timeouts.transfer_s)
            out.append(float(time.perf_counter_ns() - t0))
        return tuple(out)

    def usable(self) -> bool:
        """False once closed, lost (its worker timed out, crashed or was interrupted mid-call)
        or its page closed."""
        return not self._closed and self._lost is None and not self.page.is_closed()

    def close(self) -> None:
        """End this instance's worker; the page and its other instances go on."""
        if self._closed:
            return
        self._closed = True
        if self.page.is_closed():
            return
        with contextlib.suppress(HostError):  # a crashed page has nothing left to end
            self.host.evaluate(self.page, "drop", self.slot, timeout_s=self.host.timeouts.call_s)


class ChromiumHost(base.Host):
    """Headless Chromium; ``number_shim`` reproduces the TinyGPT BigInt bug on purpose."""

    name = "chromium"
    runtime = "chromium"

    def __init__(
        self,
        executable: Path = CHROMIUM_PATH,
        *,
        timeouts: Timeouts | None = None,
        number_shim: bool = False,
        v8_flags: tuple[str, ...] = STEADY_V8_FLAGS,
        isolated: bool = True,
        webgpu: bool = True,
    ) -> None:
        self.v8_flags = v8_flags
        self.webgpu = webgpu  # launch with WEBGPU_FLAGS (False only to test a browser without)
        self.isolated = isolated  # serve COOP/COEP (False only to test a page without them)
        self.executable = executable
        self.timeouts = timeouts or Timeouts()
        self.number_shim = number_shim
        self.page_info: dict[str, Any] = {}  # crossOriginIsolated, clockResolutionNs, userAgent
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None
        self._server: PageServer | None = None
        # the page every instance loads into: (its browser, context, page); None until the first
        # load, or after its page crashed (the next load opens another)
        self._page: tuple[Browser, BrowserContext, Page] | None = None
        self._page_crashed = False
        # sha256 keys of the bytes the page was sent to keep (ChromiumInstance.write): a hint,
        # as the page drops the least recently used past its bound and says so (a miss)
        self.page_keys: set[str] = set()
        # the page's worker group loads go into (page.mjs, load); None: a worker per load
        self.worker_group: str | None = None

    def _require(self) -> None:
        if not self.executable.is_file():
            raise HostUnavailable(
                f"chromium: no browser at {self.executable}", " ".join(CHROMIUM_INSTALL)
            )

    def browser(self) -> Browser:
        """The running browser, launched on first use and relaunched if it died."""
        self._require()
        if self._browser is not None and self._browser.is_connected():
            return self._browser
        if self._browser is not None:  # died: release what is left of it before relaunching
            with contextlib.suppress(PlaywrightError):
                self._browser.close()
            self._browser = None
        if self._playwright is None:
            self._playwright = _SharedDriver.acquire()
        try:  # Playwright gives every launch a fresh temporary user-data-dir, removed at close
            self._browser = self._playwright.chromium.launch(
                executable_path=str(self.executable),
                args=[*LAUNCH_ARGS, *self.engine_flags()],
                headless=True,
                timeout=self.timeouts.start_s * 1000,
            )
        except PlaywrightError as exc:
            raise HostUnavailable(
                f"chromium: launch failed: {exc.message}", " ".join(CHROMIUM_INSTALL)
            ) from None
        return self._browser

    def engine_flags(self) -> tuple[str, ...]:
        """``--js-flags=--no-liftoff``: Chromium 156's V8 takes it (tests/hosts/test_hosts_tier.py
        checks the tier it gives with V8's own %IsTurboFanFunction); and WEBGPU_FLAGS."""
        return (*chromium_js_flags(self.v8_flags), *(WEBGPU_FLAGS if self.webgpu else ()))

    def cold_host(self) -> ChromiumHost:
        """A browser of its own with default V8 flags (launched on its first load)."""
        return ChromiumHost(
            self.executable, timeouts=self.timeouts, number_shim=self.number_shim, v8_flags=(),
            isolated=self.isolated, webgpu=self.webgpu,
        )  # fmt: skip

    def server(self) -> PageServer:
        """The loopback page server, started on first use."""
        if self._server is None:
            self._server = PageServer(JS_DIR, isolated=self.isolated)
        return self._server

    def version(self) -> str:
        """The browser's own version string, e.g. ``156.0.8078.79``."""
        return str(self.browser().version)

    def evaluate(self, page: Page, method: str, *args: Any, timeout_s: float) -> dict[str, Any]:
        """``await window.tg[method](...args, timeoutMs)``; a dead page raises HostCrashed."""
        try:
            reply = page.evaluate(
                "([m, a]) => window.tg[m](...a)", [method, [*args, int(timeout_s * 1000)]]
            )
        except PlaywrightError as exc:
            raise HostCrashed(f"chromium: {method}: {exc.message}") from None
        if not isinstance(reply, dict):
            raise HostError(f"chromium: {method} returned {reply!r}")
        return reply

    def open_page(self) -> tuple[BrowserContext, Page]:
        """A fresh context + page on the host page, checked to be cross-origin isolated."""
        browser = self.browser()
        try:
            context = browser.new_context()
        except PlaywrightError as exc:
            raise HostCrashed(f"chromium: new context: {exc.message}") from None
        try:
            page = context.new_page()
            page.goto(self.server().url("page.html"), timeout=self.timeouts.start_s * 1000)
            info = page.evaluate("() => window.tgReady")
        except PlaywrightError as exc:
            with contextlib.suppress(PlaywrightError):
                context.close()
            raise HostCrashed(f"chromium: opening the host page: {exc.message}") from None
        self.page_info = dict(info)
        if self.isolated and info.get("crossOriginIsolated") is not True:
            context.close()
            raise HostError(
                "chromium: host page is not crossOriginIsolated (COOP/COEP headers not applied)"
            )
        return context, page

    def start(self, artifacts: Sequence[Artifact], *, one_process: bool = False) -> None:
        """Launch the browser and open the page every instance loads into. With
        ``one_process``, later loads go into one worker of that page (a fresh one once all its
        instances are closed or it was lost), where two instances can be timed side by side in
        one request (:meth:`ChromiumInstance.time_pairs`); else each load gets a worker."""
        self._require()
        self.shared_page()
        self.worker_group = ONE_WORKER if one_process else None

    def shared_page(self) -> Page:
        """The page instances load into: opened on first use, and again when the page crashed,
        was closed or belongs to a browser that died (its instances are then lost)."""
        browser = self.browser()
        if self._page is not None:
            owner, context, page = self._page
            if owner is browser and not page.is_closed() and not self._page_crashed:
                return page
            self._drop_page()
        context, page = self.open_page()
        self._page_crashed = False
        page.on("crash", lambda _page: self._mark_crashed())
        self._page = (browser, context, page)
        return page

    def _mark_crashed(self) -> None:
        self._page_crashed = True

    def _drop_page(self) -> None:
        self.page_keys.clear()
        if self._page is not None:
            with contextlib.suppress(PlaywrightError):
                self._page[1].close()
            self._page = None

    def load(self, artifact: Artifact) -> ChromiumInstance:
        """:meth:`base.Host.load` (hash check included), typed as this host's instance."""
        instance = super().load(artifact)
        assert isinstance(instance, ChromiumInstance)  # load_verified below made it
        return instance

    def load_verified(self, artifact: Artifact) -> ChromiumInstance:
        """Open a page for ``artifact`` and load it there."""
        self.static_check(artifact)  # before the browser sees any file
        entry = artifact_entry(artifact, self.runtime)
        # every file of the set is served (the worker fetches them; glue finds its .wasm and
        # worker .js through these URLs), under a URL keyed by its path
        entry["urls"] = {role: self.server().register(p) for role, p in artifact.paths().items()}
        page = self.shared_page()
        if "pthread" in artifact.features and self.page_info.get("crossOriginIsolated") is not True:
            raise IncompatibleArtifact(_not_isolated(artifact, self.page_info))
        options = {"numberShim": self.number_shim, "loadTimeoutMs": self._load_budget_ms()}
        try:
            reply = self.evaluate(
                page, "load", entry, options, self.worker_group, timeout_s=self.timeouts.load_s
            )
        except HostCrashed:
            self._drop_page()  # the page died under the load: the next load opens another
            raise
        if "error" in reply:  # the page ended that worker; the page and its slots go on
            raise engine_rejection(error_from_reply(reply))
        return ChromiumInstance(self, page, int(reply["slot"]), artifact, reply["header"])

    def _load_budget_ms(self) -> int:
        """How long a loader may wait for a module to come up: under the load timeout, so a
        factory that never resolves is reported by the loader, in its words, before the page's
        own timer terminates the worker."""
        return int(self.timeouts.load_s * 900)

    def close(self) -> None:
        """Close the browser, the page server and (when last) the Playwright driver."""
        self._drop_page()
        if self._browser is not None:
            with contextlib.suppress(PlaywrightError):
                self._browser.close()
            self._browser = None
        if self._playwright is not None:
            _SharedDriver.release()
            self._playwright = None
        if self._server is not None:
            self._server.close()
            self._server = None
