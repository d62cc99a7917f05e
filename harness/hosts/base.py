"""The Host and Instance interfaces that every host module implements.

A :class:`Host` is a way of running binaries (native ctypes, wasmtime-py, a Node version,
headless Chromium). It loads an :class:`~harness.artifact.Artifact` into an :class:`Instance`,
which exposes the kernel library's exports as calls plus raw memory access. Everything above this
layer (kernel client, checks, benchmarks) is written once against these two ABCs.

Failures are typed so the runner can give each cell its verdict and exact cause:

- :class:`HostUnavailable`   -> the host is not installed (carries the install hint);
- :class:`IncompatibleArtifact` -> the host refused the binary (e.g. Node 22 on wasm64, with the
  engine's own message) -> verdict ``incompatible``;
- :class:`ArtifactHashMismatch` -> the file is not the one the manifest describes -> ``error``;
- everything else derived from :class:`HostError` -> verdict ``error``.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from harness.artifact import Artifact
from harness.formats import FileDigest, file_sha256, set_sha256

Scalar = int | float


class HostError(Exception):
    """A failure inside a host; the message is the host's own words where it has any."""


class HostUnavailable(HostError):
    """The host is not installed or cannot start here."""

    def __init__(self, message: str, install_hint: str) -> None:
        super().__init__(f"{message} (install: {install_hint})")
        self.install_hint = install_hint


class IncompatibleArtifact(HostError):
    """The host cannot load this artifact kind, or its engine rejected the module."""


class CorruptArtifact(HostError):
    """The binary is not a valid module or library (bad magic, truncated, failed validation)."""


class ArtifactHashMismatch(CorruptArtifact):
    """The file's sha256 is not the manifest's: it was rebuilt, edited or replaced since."""

    def __init__(
        self, artifact: Artifact, actual: str, path: Path, expected: str, what: str = ""
    ) -> None:
        subject = f"the {what} of {path}" if what else str(path)
        origin = artifact.origin
        if origin is not None and origin.kind == "profile":
            # a profile artifact has no manifest: its expected hashes are the files' own, taken
            # when the run started (a sha256 pin was checked then), so it changed mid-run
            said = (
                f"{artifact.name}: {subject} has sha256 {actual}, but {expected} when this run "
                f"hashed the files of its {origin.table(artifact.name)} at its start: it changed "
                "during the run; restore it, or start a new run to judge the new files"
            )
        else:
            entry = f" (its {origin.table(artifact.name)})" if origin else ""
            said = (
                f"{artifact.name}: {subject} has sha256 {actual} but the manifest says "
                f"{expected}{entry}; rebuild it and its manifest entry (`tinygpt-harness build` "
                "for the bundled library) or restore the file"
            )
        super().__init__(said)
        self.expected = expected
        self.actual = actual


def verify_artifact(artifact: Artifact) -> str:
    """Return the sha256 of ``artifact``'s file set; raise unless every file is the manifest's.

    Every host's load goes through :meth:`Host.load`, which calls this, so a binary that no
    longer matches its manifest entry never runs and never has rows recorded under that hash.
    Each file is checked against its own sha256 (the message names the file), then the set.
    """
    found: list[FileDigest] = []
    for f in artifact.file_set():
        if not f.path.is_file():
            raise CorruptArtifact(f"{artifact.name}: no {f.role} file at {f.path}")
        actual = file_sha256(f.path)
        if actual != f.sha256:
            raise ArtifactHashMismatch(artifact, actual, f.path, f.sha256)
        found.append(FileDigest(f.role, f.path, actual))
    total = set_sha256(found)
    if total != artifact.sha256:
        raise ArtifactHashMismatch(artifact, total, artifact.path, artifact.sha256, "file set")
    return total


class MissingExport(HostError):
    """An export named in the ABI is absent from the binary."""


class ABIError(HostError):
    """An export exists but its signature or argument conversion is wrong (Number vs BigInt)."""


class Trap(HostError):
    """The kernel trapped (unreachable, out-of-bounds access, ...) or crashed the native process."""


class HostTimeout(HostError):
    """A call did not return within its timeout; the host was restarted."""


class HostCrashed(HostError):
    """The host process died (killed, crashed) during a call; it will be restarted."""


@dataclass(frozen=True)
class TimingResult:
    """Per-sample timings of a loop run inside the host (never across the bridge)."""

    sample_ns: tuple[float, ...]  # mean ns per call in each sample
    inner_reps: int  # calls per sample
    clock_resolution_ns: float  # measured resolution of the host's clock
    clock: str  # e.g. "performance.now", "perf_counter_ns"
    # The same samples on the calling thread's CPU clock (mean ns per call), where the host has
    # one and the work stayed on that thread (harness.engines.call_loop.time_batches); empty
    # otherwise. Preemption by other processes does not count in it: the paired gate's clock
    # under load (docs/gate.md, `--clock cpu`).
    cpu_ns: tuple[float, ...] = ()
    cpu_clock: str = ""  # e.g. "thread_time_ns"; "" when cpu_ns is empty


@dataclass(frozen=True)
class TimedCall:
    """One export and its arguments: what :meth:`Instance.time_calls` loops over."""

    name: str
    args: tuple[Scalar, ...]


class Instance(abc.ABC):
    """One loaded artifact inside one host."""

    artifact: Artifact
    loaded_sha256: str = ""  # the sha256 of the file as loaded (set by Host.load)
    flag_warning: str = ""  # the host's Host.flag_warning when it loaded this (set by Host.load)
    # what the format's loader reported about the loaded module (e.g. pthread_workers)
    load_info: Mapping[str, Any] = MappingProxyType({})

    @abc.abstractmethod
    def call(self, name: str, *args: Scalar) -> Scalar | None:
        """Call export ``name``; argument kinds come from the artifact's signatures."""

    @abc.abstractmethod
    def write(self, ptr: int, data: bytes) -> None:
        """Copy ``data`` into the instance's memory at ``ptr``."""

    @abc.abstractmethod
    def read(self, ptr: int, nbytes: int) -> bytes:
        """Return ``nbytes`` of the instance's memory at ``ptr``."""

    @abc.abstractmethod
    def time_calls(
        self, name: str, args: tuple[Scalar, ...], inner_reps: int, samples: int, warmup: int
    ) -> TimingResult:
        """Time ``samples`` loops of ``inner_reps`` calls of ``name(*args)`` inside the host."""

    @abc.abstractmethod
    def bridge_roundtrip_ns(self, n: int) -> tuple[float, ...]:
        """Return ``n`` wall-clock round trips (ns) of a no-op request across the bridge."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the instance (its memory, its page or its worker)."""

    def usable(self) -> bool:
        """Whether the instance can still take requests. True here: a trap leaves an in-process
        instance (wasmtime, a JS engine's) as it was; a host whose worker a kernel's fatal signal
        kills (raised as Trap) overrides it, so a caller can tell a trap from a lost instance."""
        return True

    @classmethod
    def close_group(cls, instances: Sequence[Instance]) -> None:
        """Close ``instances``, all of this class: one by one here; a host whose closes each wait
        for another process overrides it to wait once for all of them."""
        for instance in instances:
            instance.close()

    def time_pairs(
        self,
        other: Instance,
        mine: TimedCall,
        theirs: TimedCall,
        other_first: Sequence[bool],
        inner_reps: int,
        warmup: int,
        stop_after_s: float | None = None,
    ) -> tuple[TimingResult, TimingResult] | None:
        """Time ``mine`` here and ``theirs`` in ``other`` side by side in one request, with no
        round trip between samples: per entry of ``other_first``, one sample of ``inner_reps``
        calls on each side (``other``'s first where True), each side's first sample after
        ``warmup`` untimed calls. No pair starts once ``stop_after_s`` have passed, so the
        results may hold fewer pairs than asked, never a part of one. None (the default) where
        this host cannot (``other`` is not in the same worker, or the host has no such
        request): the caller then times each sample with :meth:`time_calls`."""
        return None

    def time_probe(self, kind: str, inner_reps: int, samples: int, warmup: int) -> TimingResult:
        """Time ``samples`` means of ``inner_reps`` round trips of a host-cost probe inside the
        host, after ``warmup`` untimed ones (at least 3): ``atomics`` (an Atomics.wait/notify
        wake and join with a helper worker) or ``postmessage`` (a message to that worker and
        back). The counterpart of :meth:`time_calls`, so the timing protocol calibrates and
        extends it like any figure. Hosts without JS workers raise HostError saying so."""
        raise HostError(f"{type(self).__name__} has no JS workers: no {kind} round trip to time")

    def alloc(self, nbytes: int) -> int:
        """Allocate ``nbytes`` with the binding's allocator (``tg_alloc``, ``malloc``, a
        library's own; a float-counting one gets ``ceil(nbytes / 4)``); HostError on OOM."""
        name, _free, unit = self.artifact.allocator()
        count = -(-nbytes // unit)
        ptr = self.call(name, count)
        if not ptr:
            raise HostError(f"{name}({count}) returned 0 (out of memory for {nbytes} bytes)")
        return int(ptr)

    def free(self, ptr: int) -> None:
        """Free a pointer from :meth:`alloc`."""
        self.call(self.artifact.allocator()[1], ptr)

    def place(self, blobs: Sequence[bytes]) -> tuple[int, ...]:
        """Allocate a buffer for each of ``blobs``, in order (:meth:`alloc`), write the blob into
        it, and return the pointers. If one fails, the buffers already placed are freed and its
        error raised: nothing leaks. A host whose every request is a round trip to another
        process (or page) overrides it to place them all in a few; under load each round trip
        is a wait for a core."""
        ptrs: list[int] = []
        try:
            for blob in blobs:
                ptrs.append(self.alloc(len(blob)))
                self.write(ptrs[-1], blob)
        except BaseException:
            self.free_quietly(ptrs)
            raise
        return tuple(ptrs)

    def free_quietly(self, ptrs: Sequence[int]) -> None:
        """Free ``ptrs`` while another error is being raised: a failure to free (the instance
        died with that error) must not replace it."""
        with contextlib.suppress(HostError):
            self.free_all(ptrs)

    def free_all(self, ptrs: Sequence[int]) -> None:
        """Free every pointer of ``ptrs`` (from :meth:`alloc`), in order, raising the first
        failure. Here that stops the frees; a host whose every call is a round trip to another
        process may override it to send every free at once, and then raises the first failure
        once all have been answered."""
        for ptr in ptrs:
            self.free(ptr)

    def read_cstring(self, ptr: int, limit: int = 1 << 16) -> str:
        """Read a NUL-terminated UTF-8 string at ``ptr`` (at most ``limit`` bytes)."""
        chunk = self.read(ptr, limit)
        end = chunk.find(b"\0")
        if end < 0:
            raise ABIError(f"string at {ptr:#x} is not NUL-terminated within {limit} bytes")
        return chunk[:end].decode("utf-8")


class InstanceView(Instance):
    """A view of another instance that forwards every request to it; a check subclasses it to
    watch or alter a few (memory64's recording of addresses, the accumulator probe's NaN
    prefill). Allocations and frees are :class:`Instance`'s, so they reach :meth:`call` like any
    other export. The view never closes ``inner``: whoever loaded it owns it."""

    def __init__(self, inner: Instance) -> None:
        """Forward to ``inner``, reporting its artifact and load facts as the view's own."""
        self.inner = inner
        self.artifact: Artifact = inner.artifact
        self.loaded_sha256 = inner.loaded_sha256
        self.flag_warning = inner.flag_warning
        self.load_info = inner.load_info

    def call(self, name: str, *args: Scalar) -> Scalar | None:
        """Call through ``inner``."""
        return self.inner.call(name, *args)

    def write(self, ptr: int, data: bytes) -> None:
        """Write through ``inner``."""
        self.inner.write(ptr, data)

    def read(self, ptr: int, nbytes: int) -> bytes:
        """Read through ``inner``."""
        return self.inner.read(ptr, nbytes)

    def time_calls(
        self, name: str, args: tuple[Scalar, ...], inner_reps: int, samples: int, warmup: int
    ) -> TimingResult:
        """Time through ``inner``."""
        return self.inner.time_calls(name, args, inner_reps, samples, warmup)

    def bridge_roundtrip_ns(self, n: int) -> tuple[float, ...]:
        """Round trips through ``inner``."""
        return self.inner.bridge_roundtrip_ns(n)

    def usable(self) -> bool:
        """Whether ``inner`` can still take requests."""
        return self.inner.usable()

    def close(self) -> None:  # the loader of ``inner`` closes it, never the view
        """Do nothing."""


def close_all(instances: Iterable[Instance]) -> None:
    """Close every one of ``instances``, each class's together (:meth:`Instance.close_group`)."""
    by_class: dict[type[Instance], list[Instance]] = {}
    for instance in instances:
        by_class.setdefault(type(instance), []).append(instance)
    for kind, group in by_class.items():
        kind.close_group(group)


class Host(abc.ABC):
    """A way of running artifacts, e.g. ``node24`` or ``chromium``."""

    name: str  # the id used in matrices and result rows
    runtime: str  # the engine kind formats name loaders for (harness.formats.*_RUNTIMES)
    flag_warning: str = ""  # set when the host had to drop its wanted engine flags (why)

    @abc.abstractmethod
    def version(self) -> str:
        """Return the exact version (e.g. ``v24.21.0``); raises HostUnavailable if not installed."""

    def can_load(self, artifact: Artifact) -> str | None:
        """Return None if ``artifact``'s format has a loader for this host's runtime, else why
        not (the format decides: no host knows format names)."""
        return artifact.fmt.refusal(self.runtime, self.name)

    def load(self, artifact: Artifact) -> Instance:
        """Verify ``artifact``'s files against the manifest, then load it.

        Raises ArtifactHashMismatch before the host sees a file that is not the manifest's, and
        IncompatibleArtifact/CorruptArtifact/MissingExport/... from the host's own load (which
        starts with the format's static checks: :meth:`static_check`).
        """
        reason = self.can_load(artifact)
        if reason is not None:  # before hashing: a host refusing the format need not read it
            raise IncompatibleArtifact(reason)
        sha256 = verify_artifact(artifact)
        instance = self.load_verified(artifact)
        instance.loaded_sha256 = sha256
        instance.flag_warning = self.flag_warning
        return instance

    def static_check(self, artifact: Artifact) -> None:
        """Run ``artifact``'s format's static checks (before any engine sees it)."""
        artifact.fmt.static_check(artifact.paths(), artifact.ptr_width, artifact.exports())

    @abc.abstractmethod
    def load_verified(self, artifact: Artifact) -> Instance:
        """Load ``artifact``, whose file :meth:`load` has just checked against the manifest."""

    def engine_flags(self) -> tuple[str, ...]:
        """The engine flags this host runs its timed figures under (recorded in run.json)."""
        return ()

    def cold_host(self) -> Host | None:
        """A new host of this kind under the engine's default flags, whose first load starts a
        fresh process (or browser), so its first call is cold: the cold figure's host. None: this
        host has no such figure. The caller closes it."""
        return None

    def start(  # noqa: B027 - optional hook
        self, artifacts: Sequence[Artifact], *, one_process: bool = False
    ) -> None:
        """Start now what loading ``artifacts`` will need (worker processes, the browser and
        its page), which hosts otherwise start on the first load: a caller that budgets its
        loads and measurements (the paired gate's cells) keeps the host's start out of them.
        Hosts with nothing to start do nothing. Raises what a load would raise starting it.

        ``one_process``: load all of ``artifacts`` into one process, where the host would
        otherwise give each its own (the paired gate: BASE's and CAND's builds then share
        whatever that process gets, rather than each keeping its own for the whole cell).
        Hosts that already load everything into one process ignore it."""

    def close(self) -> None:  # noqa: B027 - optional hook, most hosts hold nothing
        """Shut the host down (processes, browser)."""
