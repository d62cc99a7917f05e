"""The client side of the worker protocol: one class for the Python worker and the Node server.

:class:`WorkerClient` owns one worker process, started lazily and restarted lazily after it
died or hung: a request over its timeout kills the process and raises HostTimeout, a process
that exits mid-request raises HostCrashed (or Trap when a kernel crashed it with a fatal signal).
:class:`PipeInstance` is an :class:`~harness.hosts.base.Instance` over a client, and
:class:`PipeHost` the Host base class for every host that runs artifacts in worker processes.
"""

from __future__ import annotations

import abc
import contextlib
import fcntl
import os
import select
import signal
import struct
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from harness.abi import signatures_json
from harness.artifact import Artifact
from harness.hosts import base
from harness.hosts.base import HostCrashed, HostError, HostTimeout, Instance, Scalar, Trap
from harness.hosts.framing import (
    PROTOCOL_VERSION,
    Frame,
    FrameError,
    Op,
    decode_scalar,
    encode_frame,
    encode_scalar,
    pairs_request,
    read_frame,
    time_request,
)
from harness.hosts.timeouts import Timeouts

# Signals by which a kernel (not the harness) kills a process: reported as a Trap.
_FATAL_SIGNALS = {signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE, signal.SIGABRT}
_ERRORS: dict[str, type[HostError]] = {
    cls.__name__: cls
    for cls in (
        base.HostError,
        base.IncompatibleArtifact,
        base.CorruptArtifact,
        base.MissingExport,
        base.ABIError,
        base.Trap,
        base.HostTimeout,
        base.HostCrashed,
    )
}
_STDERR_TAIL_CHARS = 600


class _WorkerDiedError(Exception):
    """The pipe closed before a full reply arrived."""


def error_from_reply(header: Mapping[str, Any]) -> HostError:
    """The typed HostError an error reply names, with the worker's message unchanged."""
    cls = _ERRORS.get(str(header.get("error")), HostError)
    return cls(str(header.get("message", "")))


def artifact_entry(artifact: Artifact, runtime: str) -> dict[str, Any]:
    """The artifact's manifest entry relative to ``/``, as a worker's LOAD header carries, plus
    ``paths`` (role -> absolute path), what its format says ``runtime`` loads it with
    (``loader``) and the signatures a JS loader wraps (the ABI's and the allocator's)."""
    entry = artifact.to_json(Path("/"))
    fmt = artifact.fmt
    entry["paths"] = {role: str(path) for role, path in artifact.paths().items()}
    entry["loader"] = fmt.loader(runtime)
    entry["signatures"] = signatures_json(artifact.exports())
    entry.update(fmt.loader_entry(artifact.paths()))
    return entry


class WorkerClient:
    """One worker process speaking the framed protocol, (re)started on first use."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        label: str,
        start_timeout_s: float,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.argv = list(argv)
        self.label = label
        self.start_timeout_s = start_timeout_s
        self.env = dict(env) if env is not None else None
        self.generation = 0  # bumped on every (re)start; instances of older generations are gone
        self.hello: Mapping[str, Any] = {}
        self.last_failure = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The running worker's pid, or None when no worker is running."""
        return self._proc.pid if self._proc is not None else None

    def ensure_started(self) -> None:
        """Start the worker and exchange HELLO if it is not running."""
        if self._proc is not None:
            return
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the worker
        try:
            self._proc = subprocess.Popen(
                self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
                env=self.env,
                # Its own session: a terminal's Ctrl-C goes to the run's process group, and a
                # worker that died of it first would read as a crash. The run decides and
                # closes its workers; a killed run closes their stdin, which ends them.
                start_new_session=True,
            )  # fmt: skip
        except OSError as exc:
            self._stderr.close()
            raise HostError(f"{self.label}: cannot start {self.argv[0]}: {exc}") from None
        assert self._proc.stdout is not None and self._proc.stdin is not None
        os.set_blocking(self._proc.stdout.fileno(), False)
        os.set_blocking(self._proc.stdin.fileno(), False)
        _widen_pipes(self._proc.stdin.fileno(), self._proc.stdout.fileno())
        self.generation += 1
        reply = self._exchange(Op.HELLO, {"protocol": PROTOCOL_VERSION}, b"", self.start_timeout_s)
        if reply.op is Op.ERROR:
            self.kill()
            raise error_from_reply(reply.header)
        if reply.header.get("protocol") != PROTOCOL_VERSION:
            self.kill()
            raise HostError(
                f"{self.label}: worker speaks protocol {reply.header.get('protocol')!r}, "
                f"the harness {PROTOCOL_VERSION}"
            )
        self.hello = reply.header

    def request(
        self,
        op: Op,
        header: Mapping[str, Any] | None = None,
        blob: bytes = b"",
        *,
        timeout_s: float,
        what: str = "",
    ) -> Frame:
        """Send one request and return its OK reply; an error reply raises its typed HostError."""
        self.ensure_started()
        reply = self._exchange(op, header, blob, timeout_s, what)
        if reply.op is Op.ERROR:
            raise error_from_reply(reply.header)
        return reply

    def request_each(
        self,
        op: Op,
        headers: Sequence[Mapping[str, Any]],
        *,
        timeout_s: float,
        what: str = "",
        blobs: Sequence[bytes] = (),
    ) -> list[Frame]:
        """Send one ``op`` request per header (with its blob, if ``blobs`` is given) at once,
        then read the replies in order, error replies included (not raised): the worker answers
        one after another while the harness waits once, not once per request. Under load each
        wait for the worker is a wait for a core: closing 24 instances one request at a time
        took 0.02 s in one round and 0.11 s in the next at four busy processes (native, s34).
        Every request is written before any reply is read, so the replies must fit the pipe
        (64 KiB on Linux) with room to spare, or the worker would wait to write one while the
        harness still writes: the headers are bounded (``op``'s replies are as small as its
        requests' headers: CALL, WRITE). A blob may be any size, the worker reading each
        request whole before it answers it."""
        if blobs and len(blobs) != len(headers):
            raise ValueError(f"request_each: {len(headers)} headers, {len(blobs)} blobs")
        frames = [encode_frame(op, header, b"") for header in headers]
        if sum(map(len, frames)) > _PIPELINED_BYTES:
            raise ValueError(f"request_each: {len(frames)} {op.name} requests exceed the pipe")
        if blobs:
            frames = [encode_frame(op, h, blob) for h, blob in zip(headers, blobs, strict=True)]
        self.ensure_started()
        return self._exchange_frames(frames, op, timeout_s, what)

    def _exchange(
        self,
        op: Op,
        header: Mapping[str, Any] | None,
        blob: bytes,
        timeout_s: float,
        what: str = "",
    ) -> Frame:
        return self._exchange_frames([encode_frame(op, header, blob)], op, timeout_s, what)[0]

    def _exchange_frames(
        self, frames: Sequence[bytes], op: Op, timeout_s: float, what: str = ""
    ) -> list[Frame]:
        """Write ``frames`` (requests of ``op``), read as many replies; failures as typed errors."""
        proc = self._proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        deadline = time.monotonic() + timeout_s
        doing = what or op.name.lower()
        in_fd, out_fd = proc.stdin.fileno(), proc.stdout.fileno()
        try:
            _write_all(in_fd, b"".join(frames), deadline)
            return [read_frame(lambda n: _read_exact(out_fd, n, deadline)) for _ in frames]
        except FrameError as exc:  # the worker is alive but its stdout is not our protocol
            self.kill()
            self.last_failure = f"malformed reply to {doing}: {exc}"
            raise HostCrashed(f"{self.label}: {self.last_failure}; worker killed") from None
        except TimeoutError:
            self.kill()
            self.last_failure = f"{doing} did not return within {timeout_s:g} s"
            raise HostTimeout(
                f"{self.label}: {self.last_failure}; worker pid {proc.pid} killed "
                "(a new one starts on next use)"
            ) from None
        except (_WorkerDiedError, BrokenPipeError, ConnectionResetError) as exc:
            code = self._wait_exit()
            cause = _describe_exit(code) if code is not None else str(exc)
            self.last_failure = f"worker died during {doing}: {cause}"
            message = f"{self.label}: {self.last_failure}{self._stderr_tail()}"
            self._forget()
            fatal = code is not None and code < 0 and -code in {int(s) for s in _FATAL_SIGNALS}
            if fatal and op in (Op.CALL, Op.TIME, Op.PAIRS):
                raise Trap(message) from None
            raise HostCrashed(message) from None
        except BaseException:
            # An interrupt (Ctrl-C, SIGTERM: the runner's handler raises KeyboardInterrupt) in
            # the middle of an exchange: the worker still owes replies, so the next request
            # would read them as its own, or wait out its timeout behind a hung call. The
            # worker goes now; its instances are lost, as after any failure.
            self.kill()
            self.last_failure = f"interrupted during {doing}"
            raise

    def _wait_exit(self) -> int | None:
        """The dead (or dying) worker's exit status; a worker that lingers is killed."""
        proc = self._proc
        if proc is None:
            return None
        try:
            return proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()

    def _stderr_tail(self) -> str:
        if self._stderr is None or self._stderr.closed:
            return ""
        self._stderr.seek(0, os.SEEK_END)
        size = self._stderr.tell()
        self._stderr.seek(max(0, size - _STDERR_TAIL_CHARS))
        tail = self._stderr.read().decode("utf-8", "replace").strip()
        return f"; stderr: {tail}" if tail else ""

    def _forget(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            for pipe in (proc.stdin, proc.stdout):
                with contextlib.suppress(OSError):
                    if pipe is not None:
                        pipe.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def kill(self) -> None:
        """Kill the worker now (SIGKILL) and forget it; the next request starts a new one."""
        proc = self._proc
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait()
        self._forget()

    def close(self) -> None:
        """Ask the worker to exit, killing it if it does not within a second."""
        if self._proc is None:
            return
        with contextlib.suppress(HostError):
            self._exchange(Op.SHUTDOWN, None, b"", 1.0)
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=1)
            self.kill()


# The most request bytes :meth:`WorkerClient.request_each` writes before reading: a quarter of a
# Linux pipe at its default size, so neither the requests nor their (as small) replies can fill
# one, widened or not.
_PIPELINED_BYTES = 16 * 1024

# What each pipe to and from a worker is widened to, from Linux's default 64 KiB. A paired-gate
# block's buffers (the calibration matmul places 486 KiB in each build) then cross in 2 writes,
# not 8, each a wake of the worker: a placement on node24 took 1.12 ms (median of 6 runs' medians
# of 50) against 1.56 ms at 64 KiB, and 1.18 ms at 1 MiB, sizes in turns, nothing else running
# (s40, docs/gate.md). Not wider: a user whose pipes hold more than pipe-user-pages-soft (64 MiB
# by default; root is exempt) gets 8 KiB pipes from then on, so 2 x 256 KiB a worker leaves
# room for 128 workers.
_PIPE_BYTES = 256 * 1024


def _widen_pipes(*fds: int) -> None:
    """Widen each pipe to ``_PIPE_BYTES`` where the system allows it; a pipe left at its size
    (not Linux, or the user's pipe quota spent) works the same, only with more wakes."""
    set_size = getattr(fcntl, "F_SETPIPE_SZ", None)
    if set_size is None:
        return
    for fd in fds:
        with contextlib.suppress(OSError):
            fcntl.fcntl(fd, set_size, _PIPE_BYTES)


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with status {code}"


def _wait(fd: int, for_write: bool, deadline: float) -> None:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    ready = select.select([], [fd], [], left) if for_write else select.select([fd], [], [], left)
    if not any(ready):
        raise TimeoutError


def _write_all(fd: int, data: bytes, deadline: float) -> None:
    view = memoryview(data)
    while view:
        _wait(fd, True, deadline)
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            continue
        view = view[n:]


def _read_exact(fd: int, n: int, deadline: float) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        _wait(fd, False, deadline)
        try:
            chunk = os.read(fd, min(n - len(buf), 1 << 20))
        except BlockingIOError:
            continue
        if not chunk:
            raise _WorkerDiedError(f"pipe closed after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


# UNLOAD (or free CALL) requests sent in one exchange: each frame is well under 100 bytes
# (docs/protocol.md), so this many stay far inside _PIPELINED_BYTES.
_UNLOADS_AT_ONCE = _CALLS_AT_ONCE = 64


class PipeInstance(Instance):
    """An artifact loaded in a worker process; dead once that worker died or was killed."""

    def __init__(
        self, client: WorkerClient, instance_id: int, artifact: Artifact, timeouts: Timeouts
    ) -> None:
        self.client = client
        self.instance_id = instance_id
        self.artifact = artifact
        self.timeouts = timeouts
        self._generation = client.generation
        self._closed = False

    @property
    def worker_pid(self) -> int | None:
        """Pid of the worker process holding this instance (tests kill it to simulate a crash)."""
        return self.client.pid if self._alive() else None

    def usable(self) -> bool:
        """False once closed, or once the worker holding it died (a kernel's fatal signal is
        raised as Trap, yet the instance went with the worker)."""
        return self._alive()

    def _alive(self) -> bool:
        return (
            not self._closed
            and self.client.generation == self._generation
            and (self.client.pid is not None)
        )

    def _check_usable(self) -> None:
        """Raise unless this instance may be sent a request: closed, or lost with its worker."""
        if self._closed:
            raise HostError(f"{self.client.label}: instance of {self.artifact.name} is closed")
        if not self._alive():
            raise HostCrashed(
                f"{self.client.label}: the instance of {self.artifact.name} was lost when its "
                f"worker failed ({self.client.last_failure}); load the artifact again"
            )

    def _request(
        self, op: Op, header: dict[str, Any], blob: bytes, timeout_s: float, what: str
    ) -> Frame:
        self._check_usable()
        header["instance"] = self.instance_id
        return self.client.request(op, header, blob, timeout_s=timeout_s, what=what)

    def call(self, name: str, *args: Scalar) -> Scalar | None:
        """Call export ``name`` in the worker."""
        header = {"name": name, "args": [encode_scalar(a) for a in args]}
        reply = self._request(Op.CALL, header, b"", self.timeouts.call_s, f"call {name}")
        return decode_scalar(reply.header.get("result"))

    def write(self, ptr: int, data: bytes) -> None:
        """Copy ``data`` into the worker's instance memory at ``ptr``."""
        self._request(Op.WRITE, {"ptr": ptr}, bytes(data), self.timeouts.transfer_s, "write")

    def read(self, ptr: int, nbytes: int) -> bytes:
        """Read ``nbytes`` of the worker's instance memory at ``ptr``."""
        reply = self._request(
            Op.READ, {"ptr": ptr, "n": nbytes}, b"", self.timeouts.transfer_s, "read"
        )
        if len(reply.blob) != nbytes:
            raise HostError(f"read of {nbytes} bytes at {ptr:#x} returned {len(reply.blob)}")
        return reply.blob

    def time_calls(
        self, name: str, args: tuple[Scalar, ...], inner_reps: int, samples: int, warmup: int
    ) -> base.TimingResult:
        """Time the calls inside the worker's engine; samples come back as raw float64."""
        header = time_request(name, args, inner_reps, samples, warmup)
        reply = self._request(Op.TIME, header, b"", self.timeouts.time_s, f"time {name}")
        cpu_clock = str(reply.header.get("cpu_clock") or "")
        count = len(reply.blob) // (16 if cpu_clock else 8)  # wall samples, then CPU ones
        if count != samples or len(reply.blob) != count * (16 if cpu_clock else 8):
            raise HostError(f"time {name}: asked for {samples} samples, got {count}")
        values = struct.unpack(f"<{len(reply.blob) // 8}d", reply.blob)
        return base.TimingResult(
            sample_ns=values[:count],
            inner_reps=int(reply.header["inner_reps"]),
            clock_resolution_ns=float(reply.header["clock_resolution_ns"]),
            clock=str(reply.header["clock"]),
            cpu_ns=values[count:],
            cpu_clock=cpu_clock,
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
        """:meth:`base.Instance.time_pairs` in one PAIRS request to the worker both instances
        are in (loaded after ``start(..., one_process=True)``); None for instances of two
        workers, or one that is closed or lost."""
        if not (
            isinstance(other, PipeInstance)
            and other.client is self.client
            and other._alive()
            and self._alive()
        ):
            return None
        asked = len(other_first)
        header = pairs_request((mine.name, mine.args), (theirs.name, theirs.args), other_first,
                               inner_reps, warmup, stop_after_s)  # fmt: skip
        header["first"]["instance"] = self.instance_id
        header["second"]["instance"] = other.instance_id
        reply = self._request(Op.PAIRS, header, b"", self.timeouts.time_s, f"pairs {mine.name}")
        h = reply.header
        done = int(h.get("pairs", 0))
        cpu_clock = str(h.get("cpu_clock") or "")
        width = 4 if cpu_clock else 2  # wall samples of each side, then CPU ones
        if not 0 < done <= asked or len(reply.blob) != 8 * width * done:
            raise HostError(
                f"{self.client.label}: pairs {mine.name}: asked for {asked} pairs, got {done} "
                f"({len(reply.blob)} bytes)"
            )
        times = struct.unpack(f"<{width * done}d", reply.blob)

        def result(k: int) -> base.TimingResult:
            cpu = times[(2 + k) * done : (3 + k) * done] if cpu_clock else ()
            return base.TimingResult(
                sample_ns=times[k * done : (k + 1) * done],
                inner_reps=int(h["inner_reps"]),
                clock_resolution_ns=float(h["clock_resolution_ns"]),
                clock=str(h["clock"]),
                cpu_ns=cpu,
                cpu_clock=cpu_clock,
            )

        return result(0), result(1)

    def time_probe(
        self, kind: str, inner_reps: int, samples: int, warmup: int
    ) -> base.TimingResult:
        """:meth:`base.Instance.time_probe` inside the worker (a JS worker; a Python one answers
        that it runs no JS workers)."""
        header = {"kind": kind, "samples": samples, "reps": inner_reps, "warmup": warmup}
        reply = self._request(Op.PROBE, header, b"", self.timeouts.time_s, f"probe {kind}")
        count = len(reply.blob) // 8
        if count != samples:
            raise HostError(f"probe {kind}: asked for {samples} samples, got {count}")
        return base.TimingResult(
            sample_ns=struct.unpack(f"<{count}d", reply.blob),
            inner_reps=inner_reps,
            clock_resolution_ns=float(reply.header["clock_resolution_ns"]),
            clock=str(reply.header["clock"]),
        )

    def place(self, blobs: Sequence[bytes]) -> tuple[int, ...]:
        """:meth:`Instance.place` in two exchanges with the worker (per _CALLS_AT_ONCE
        buffers), not two per buffer: every allocation written at once and answered in order,
        then every write. A paired-gate block places 3-6 buffers in each build: 6-12 waits for
        the worker, each a wait for a core under load. If one allocation or write fails, every
        buffer allocated is freed and the first failure raised."""
        if len(blobs) < 2:
            return super().place(blobs)
        self._check_usable()
        name, _free, unit = self.artifact.allocator()
        ptrs: list[int] = []
        failure: HostError | None = None
        for start in range(0, len(blobs), _CALLS_AT_ONCE):
            chunk = blobs[start : start + _CALLS_AT_ONCE]
            headers = [{"instance": self.instance_id, "name": name,
                        "args": [-(-len(blob) // unit)]} for blob in chunk]  # fmt: skip
            replies = self.client.request_each(
                Op.CALL, headers, timeout_s=self.timeouts.call_s, what=f"call {name}"
            )
            for reply, blob in zip(replies, chunk, strict=True):
                if reply.op is Op.ERROR:
                    failure = failure or error_from_reply(reply.header)
                    continue
                ptr = decode_scalar(reply.header.get("result"))
                if not ptr:
                    failure = failure or HostError(
                        f"{name}({-(-len(blob) // unit)}) returned 0 (out of memory for "
                        f"{len(blob)} bytes)"
                    )
                    continue
                ptrs.append(int(ptr))
            if failure is not None:
                break
        try:
            if failure is not None:
                raise failure
            for start in range(0, len(blobs), _CALLS_AT_ONCE):
                at = ptrs[start : start + _CALLS_AT_ONCE]
                replies = self.client.request_each(
                    Op.WRITE,
                    [{"instance": self.instance_id, "ptr": ptr} for ptr in at],
                    timeout_s=self.timeouts.transfer_s,
                    what="write",
                    blobs=[bytes(blob) for blob in blobs[start : start + _CALLS_AT_ONCE]],
                )
                errors = [r for r in replies if r.op is Op.ERROR]
                if errors:
                    raise error_from_reply(errors[0].header)
        except BaseException:
            self.free_quietly(ptrs)
            raise
        return tuple(ptrs)

    def free_all(self, ptrs: Sequence[int]) -> None:
        """Free ``ptrs`` with the allocator's free, written to the worker at once and answered
        in order (:meth:`WorkerClient.request_each`): one wait for the worker, not one per
        pointer, which under load is one wait for a core each. Every free is sent; the first
        that failed is raised."""
        if not ptrs:
            return
        self._check_usable()
        name = self.artifact.allocator()[1]
        for start in range(0, len(ptrs), _CALLS_AT_ONCE):
            headers = [{"instance": self.instance_id, "name": name, "args": [p]}
                       for p in ptrs[start : start + _CALLS_AT_ONCE]]  # fmt: skip
            replies = self.client.request_each(
                Op.CALL, headers, timeout_s=self.timeouts.call_s, what=f"call {name}"
            )
            errors = [r for r in replies if r.op is Op.ERROR]
            if errors:
                raise error_from_reply(errors[0].header)

    def bridge_roundtrip_ns(self, n: int) -> tuple[float, ...]:
        """Wall-clock ns of ``n`` NOOP round trips through the pipe and the worker's loop."""
        self._request(Op.NOOP, {}, b"", self.timeouts.transfer_s, "noop")  # liveness check
        client, limit = self.client, self.timeouts.transfer_s
        out = []
        for _ in range(n):
            t0 = time.perf_counter_ns()
            client.request(Op.NOOP, None, timeout_s=limit, what="noop")
            out.append(float(time.perf_counter_ns() - t0))
        return tuple(out)

    def close(self) -> None:
        """Drop the instance in the worker (the worker itself stays for the next load)."""
        if self._closed:
            return
        if self._alive():
            with contextlib.suppress(HostError):
                self._request(Op.UNLOAD, {}, b"", self.timeouts.transfer_s, "unload")
        self._closed = True

    @classmethod
    def close_group(cls, instances: Sequence[base.Instance]) -> None:
        """Close ``instances`` with one exchange per worker (:meth:`WorkerClient.request_each`);
        a worker that fails meanwhile has lost its instances, which are closed all the same."""
        by_client: dict[int, list[PipeInstance]] = {}
        for instance in instances:
            assert isinstance(instance, PipeInstance)
            if instance._alive():
                by_client.setdefault(id(instance.client), []).append(instance)
            instance._closed = True
        for group in by_client.values():
            client = group[0].client
            for start in range(0, len(group), _UNLOADS_AT_ONCE):
                chunk = group[start : start + _UNLOADS_AT_ONCE]
                with contextlib.suppress(HostError):
                    client.request_each(
                        Op.UNLOAD, [{"instance": i.instance_id} for i in chunk],
                        timeout_s=max(i.timeouts.transfer_s for i in chunk), what="unload",
                    )  # fmt: skip


_ArtifactKey = tuple[str, str, str]


def _key(artifact: Artifact) -> _ArtifactKey:
    """What tells one artifact's worker from another's: its name, content and file."""
    return (artifact.name, artifact.sha256, str(artifact.path))


class PipeHost(base.Host):
    """A host whose artifacts run in worker processes: one persistent worker per artifact, or
    one for a group that :meth:`start` was told to keep in one process."""

    def __init__(self, timeouts: Timeouts | None = None) -> None:
        self.timeouts = timeouts or Timeouts()
        # artifact -> its worker; artifacts started with one_process share one client
        self._clients: dict[_ArtifactKey, WorkerClient] = {}

    @abc.abstractmethod
    def worker_argv(self) -> list[str]:
        """The command that starts one worker process."""

    def worker_env(self) -> dict[str, str] | None:
        """The worker's environment (None: inherit the harness's)."""
        return None

    def load_options(self) -> dict[str, Any]:
        """Extra options sent with LOAD (e.g. the JS Number shim)."""
        return {}

    def refine_load_error(self, artifact: Artifact, error: HostError) -> HostError:
        """Turn a worker's load failure into its final class (JS: compile error -> incompatible)."""
        return error

    def _new_client(self, label: str) -> WorkerClient:
        """A worker (not yet started) labelled ``label`` in its errors."""
        return WorkerClient(
            self.worker_argv(),
            label=f"{self.name}[{label}]",
            start_timeout_s=self.timeouts.start_s,
            env=self.worker_env(),
        )

    def client_for(self, artifact: Artifact) -> WorkerClient:
        """The persistent worker of ``artifact`` (created, not yet started, on first use)."""
        key = _key(artifact)
        if key not in self._clients:
            self._clients[key] = self._new_client(artifact.name)
        return self._clients[key]

    def load_verified(self, artifact: Artifact) -> PipeInstance:
        """Load ``artifact`` in its worker; failures come back typed (see base.py)."""
        self.static_check(artifact)
        client = self.client_for(artifact)
        header = {
            "artifact": artifact_entry(artifact, self.runtime),
            "options": self.load_options(),
        }
        try:
            reply = client.request(
                Op.LOAD, header, timeout_s=self.timeouts.load_s, what=f"load {artifact.name}"
            )
        except HostError as exc:
            raise self.refine_load_error(artifact, exc) from None
        instance = PipeInstance(client, int(reply.header["instance"]), artifact, self.timeouts)
        instance.load_info = dict(reply.header.get("info") or {})
        return instance

    def start(self, artifacts: Sequence[Artifact], *, one_process: bool = False) -> None:
        """Start the worker process of each of ``artifacts`` (each its own, or with
        ``one_process`` one for all of them that have none yet: an artifact that already has a
        worker keeps it), and load each once and drop it: a worker's first load costs more than
        its later ones (wasmtime compiles the module, which the worker then keeps; the engines'
        lazy imports), and that is the start's cost, not the first cell's. Measured: 24 loads of
        the calibration build took 0.44 s in a fresh wasmtime worker and 0.05 s after (native
        0.14 and 0.03 s, Node 24 0.14 and 0.03 s; docs/gate.md, "Under load at the gate's
        defaults")."""
        if one_process:
            fresh = [a for a in artifacts if _key(a) not in self._clients]
            if fresh:
                shared = self._new_client("+".join(dict.fromkeys(a.name for a in fresh)))
                for artifact in fresh:
                    self._clients[_key(artifact)] = shared
        for artifact in artifacts:
            self.client_for(artifact).ensure_started()
            self.load(artifact).close()

    def close(self) -> None:
        """Stop every worker (each once, however many artifacts it holds)."""
        for client in {id(c): c for c in self._clients.values()}.values():
            client.close()
        self._clients.clear()
