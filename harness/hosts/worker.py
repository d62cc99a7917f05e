"""Python worker: ``python -m harness.hosts.worker --engine native|wasmtime``.

Runs an in-process engine (``harness.engines``) behind the framed protocol of docs/protocol.md on
stdin/stdout, so that a segfault, trap or hang in a kernel kills this process and not the harness.
Replies in order, one per request; errors are ERROR frames naming the HostError class.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import struct
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from harness.artifact import Artifact
from harness.formats import PY_RUNTIMES, loader_class
from harness.hosts.base import ABIError, HostError, Instance, Scalar
from harness.hosts.framing import (
    PROTOCOL_VERSION,
    Frame,
    Op,
    decode_scalar,
    encode_frame,
    encode_scalar,
    read_frame,
)

# The engines a worker can run: the Python runtimes; each artifact's format names the class
# that loads it there (harness.formats), imported only in the worker that uses it.
ENGINES: tuple[str, ...] = PY_RUNTIMES


class _Loader(Protocol):
    def load(self, artifact: Artifact) -> Instance: ...


Reply = tuple[dict[str, object], bytes]


def engine_version(engine: str) -> str:
    """What the engine is: wasmtime-py's version, or ctypes on this CPython and platform."""
    if engine == "wasmtime":
        return f"wasmtime-py {importlib.metadata.version('wasmtime')}"
    return f"ctypes (CPython {platform.python_version()}, {platform.machine()} {platform.system()})"


class Worker:
    """The loaded instances of one worker process and the handler of each opcode."""

    def __init__(self, engine: str) -> None:
        if engine not in ENGINES:
            raise ValueError(f"unknown engine {engine!r}; known: {', '.join(ENGINES)}")
        self.engine = engine
        self.instances: dict[int, Instance] = {}
        self._next_id = 1
        self.handlers: dict[Op, Callable[[Frame], Reply]] = {
            Op.HELLO: self.hello,
            Op.LOAD: self.load,
            Op.CALL: self.call,
            Op.WRITE: self.write,
            Op.READ: self.read,
            Op.TIME: self.time,
            Op.NOOP: lambda _frame: ({}, b""),
            Op.UNLOAD: self.unload,
            Op.PROBE: self.probe,
            Op.PAIRS: self.pairs,
        }

    def loader(self, artifact: Artifact) -> _Loader:
        """The Instance class ``artifact``'s format loads it with in this engine."""
        loader: _Loader = loader_class(artifact.fmt.loader(self.engine))
        return loader

    def instance(self, frame: Frame) -> Instance:
        """The instance a request names."""
        return self.named(frame.header)

    def named(self, header: Mapping[str, Any]) -> Instance:
        """The instance ``header["instance"]`` names."""
        try:
            return self.instances[int(header["instance"])]
        except (KeyError, TypeError, ValueError):
            raise HostError(f"no loaded instance {header.get('instance')!r}") from None

    def hello(self, frame: Frame) -> Reply:
        """Identify the worker and its clock."""
        resolution = time.get_clock_info("perf_counter").resolution
        return {
            "protocol": PROTOCOL_VERSION,
            "runtime": "python",
            "version": platform.python_version(),
            "engine": self.engine,
            "engine_version": engine_version(self.engine),
            "pid": os.getpid(),
            "clock": "perf_counter_ns",
            "clock_resolution_ns": resolution * 1e9,
        }, b""

    def load(self, frame: Frame) -> Reply:
        """Load the manifest entry (absolute path) with the engine."""
        artifact = Artifact.from_json(dict(frame.header["artifact"]), Path("/"))
        instance = self.loader(artifact).load(artifact)
        instance_id, self._next_id = self._next_id, self._next_id + 1
        self.instances[instance_id] = instance
        return {"instance": instance_id, "ptr_width": artifact.ptr_width}, b""

    def call(self, frame: Frame) -> Reply:
        """Call one export."""
        args = [_scalar_arg(a) for a in frame.header.get("args", [])]
        result = self.instance(frame).call(str(frame.header["name"]), *args)
        return {"result": encode_scalar(result) if result is not None else None}, b""

    def write(self, frame: Frame) -> Reply:
        """Copy the blob into memory."""
        self.instance(frame).write(int(frame.header["ptr"]), frame.blob)
        return {}, b""

    def read(self, frame: Frame) -> Reply:
        """Return memory as the blob."""
        h = frame.header
        return {}, self.instance(frame).read(int(h["ptr"]), int(h["n"]))

    def time(self, frame: Frame) -> Reply:
        """Run the engine's timing loop; samples go back as raw float64."""
        h = frame.header
        args = tuple(_scalar_arg(a) for a in h.get("args", []))
        result = self.instance(frame).time_calls(
            str(h["name"]),
            args,
            int(h["inner_reps"]),
            int(h["samples"]),
            int(h["warmup"]),
        )
        header: dict[str, object] = {
            "inner_reps": result.inner_reps,
            "clock_resolution_ns": result.clock_resolution_ns,
            "clock": result.clock,
            "cpu_clock": result.cpu_clock,  # when set, the CPU samples follow the wall ones
        }
        both = (*result.sample_ns, *result.cpu_ns)
        return header, struct.pack(f"<{len(both)}d", *both)

    def pairs(self, frame: Frame) -> Reply:
        """Time two instances of this worker side by side, pair after pair, with no request
        between samples (the same op as ``session.mjs``'s pairs): ``first`` and ``second`` name
        an instance, an export and its args each; ``order`` holds one entry per pair (0: first
        then second, 1: second then first); each sample is one loop of ``inner_reps`` calls, each
        side's first after ``warmup`` untimed calls; no pair after the first starts once
        ``stop_after_ms`` (if not null) have passed. The blob holds first's wall-clock samples,
        then second's, then, when ``cpu_clock`` is set (every sample of both sides stayed on the
        timing thread), their CPU-clock samples in the same order."""
        h = frame.header
        sides = [dict(h["first"]), dict(h["second"])]
        insts = [self.named(side) for side in sides]
        calls = [(str(s["name"]), tuple(_scalar_arg(a) for a in s.get("args", []))) for s in sides]
        order = list(h.get("order") or [])
        if not order or any(k not in (0, 1) or isinstance(k, bool) for k in order):
            raise HostError(f"pairs: order must be a non-empty list of 0 and 1, got {order!r}")
        reps, warmup = int(h["inner_reps"]), int(h["warmup"])
        limit = h.get("stop_after_ms")
        wall: list[list[float]] = [[], []]
        cpu: list[list[float]] = [[], []]
        clocks: set[str] = set()
        cpu_clocks: set[str] = set()
        resolution = 0.0
        started = time.perf_counter()
        for done, second_first in enumerate(order):
            if done and limit is not None and (time.perf_counter() - started) * 1e3 > limit:
                break
            for k in (1, 0) if second_first else (0, 1):
                name, args = calls[k]
                result = insts[k].time_calls(name, args, reps, 1, warmup if done == 0 else 0)
                clocks.add(result.clock)
                cpu_clocks.add(result.cpu_clock)
                resolution = max(resolution, result.clock_resolution_ns)
                wall[k].append(result.sample_ns[0])
                cpu[k].append(result.cpu_ns[0] if result.cpu_ns else 0.0)
        if len(clocks) != 1:
            raise HostError(f"pairs: the two instances time on different clocks ({clocks})")
        (cpu_clock,) = cpu_clocks if len(cpu_clocks) == 1 else ("",)
        header: dict[str, object] = {
            "pairs": len(wall[0]),
            "inner_reps": reps,
            "clock_resolution_ns": resolution,
            "clock": clocks.pop(),
            "cpu_clock": cpu_clock,  # when set, the CPU samples follow the wall ones
        }
        both = (*wall[0], *wall[1], *((*cpu[0], *cpu[1]) if cpu_clock else ()))
        return header, struct.pack(f"<{len(both)}d", *both)

    def probe(self, frame: Frame) -> Reply:
        """A JS host's own-cost probe: a Python engine has no JS workers to time, so it says so
        (the library's pool is timed by the library: the bench's ``pool:wake_join`` rows)."""
        kind = frame.header.get("kind")
        raise HostError(
            f"{self.engine} runs no JS workers: no {kind} round trip to time here "
            "(a pooled build's wake + join is pool:wake_join, timed inside the library)"
        )

    def unload(self, frame: Frame) -> Reply:
        """Close and drop an instance."""
        self.instance(frame).close()
        del self.instances[int(frame.header["instance"])]
        return {}, b""

    def handle(self, frame: Frame) -> bytes:
        """The reply frame for one request (never raises for a failure inside the engine)."""
        handler = self.handlers.get(frame.op)
        try:
            if handler is None:
                raise HostError(f"unexpected opcode {frame.op.name}")
            header, blob = handler(frame)
        except HostError as exc:
            return encode_frame(Op.ERROR, _error_header(exc, type(exc).__name__))
        except Exception as exc:  # an engine bug still gets a reply: the worker stays usable
            return encode_frame(Op.ERROR, _error_header(exc, "HostError"))
        return encode_frame(Op.OK, header, blob)


def _scalar_arg(value: object) -> Scalar:
    decoded = decode_scalar(value)
    if decoded is None:
        raise ABIError("null is not an argument value")
    return decoded


def _error_header(exc: BaseException, kind: str) -> dict[str, object]:
    # a HostError's text is already the engine's words; anything else gets its type named
    message = str(exc) if isinstance(exc, HostError) else f"{type(exc).__name__}: {exc}"
    return {"error": kind, "engine_error": type(exc).__name__, "message": message}


def _read_exact(stream: BinaryIO) -> Callable[[int], bytes]:
    def read(n: int) -> bytes:
        data = stream.read(n)
        if data is None or len(data) < n:
            raise EOFError
        return data

    return read


def serve(engine: str, stdin: BinaryIO, stdout: BinaryIO) -> int:
    """Answer requests until SHUTDOWN or end of input; returns the exit status."""
    worker = Worker(engine)
    read = _read_exact(stdin)
    while True:
        try:
            frame = read_frame(read)
        except EOFError:
            return 0
        if frame.op is Op.SHUTDOWN:
            stdout.write(encode_frame(Op.OK))
            stdout.flush()
            return 0
        stdout.write(worker.handle(frame))
        stdout.flush()


def main(argv: list[str] | None = None) -> int:
    """Entry point: keep fd 1 for frames only, send stray prints (C printf too) to stderr."""
    parser = argparse.ArgumentParser(prog="python -m harness.hosts.worker")
    parser.add_argument("--engine", required=True, choices=sorted(ENGINES))
    args = parser.parse_args(argv)
    protocol_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return serve(args.engine, sys.stdin.buffer, protocol_out)


if __name__ == "__main__":
    sys.exit(main())
