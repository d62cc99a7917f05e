"""The worker client and the Python worker: hello, error replies, restarts."""

from __future__ import annotations

import fcntl
import sys

import pytest

from harness.abi import ABI_VERSION
from harness.artifact import Artifact
from harness.hosts import pipe
from harness.hosts.base import ABIError, HostCrashed, HostError, MissingExport
from harness.hosts.framing import PROTOCOL_VERSION, Op
from harness.hosts.pipe import PipeInstance, WorkerClient
from harness.hosts.timeouts import Timeouts
from harness.hosts.wasmtime_host import WasmtimeHost


def _wasmtime_worker() -> WorkerClient:
    """A client of the Python worker with the wasmtime engine, not started yet."""
    return WorkerClient(
        [sys.executable, "-m", "harness.hosts.worker", "--engine", "wasmtime"],
        label="test",
        start_timeout_s=60,
        env=WasmtimeHost().worker_env(),
    )


def test_python_worker_hello_names_engine_and_clock() -> None:
    """HELLO reports the protocol version, the engine and a measured clock resolution."""
    client = _wasmtime_worker()
    try:
        client.ensure_started()
        assert client.hello["protocol"] == PROTOCOL_VERSION
        assert client.hello["engine_version"] == "wasmtime-py 50.0.1"
        assert client.hello["pid"] == client.pid
        assert client.hello["clock_resolution_ns"] > 0
        with pytest.raises(HostError, match="no loaded instance 99"):
            client.request(Op.CALL, {"instance": 99, "name": "tg_noop"}, timeout_s=10)
    finally:
        client.close()
    assert client.pid is None


@pytest.mark.skipif(not hasattr(fcntl, "F_GETPIPE_SZ"), reason="pipe sizes are Linux's")
def test_worker_pipes_are_widened() -> None:
    """A started worker's stdin and stdout pipes hold harness.hosts.pipe._PIPE_BYTES (wider than
    Linux's default 64 KiB), so a block's buffers cross in a few writes, not one wake of the
    worker per 64 KiB."""
    client = _wasmtime_worker()
    try:
        client.ensure_started()
        proc = client._proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        sizes = [fcntl.fcntl(f.fileno(), fcntl.F_GETPIPE_SZ) for f in (proc.stdin, proc.stdout)]
        # 64 KiB is Linux's default pipe size (pipe(7)): widening must give more than that
        assert pipe._PIPE_BYTES > 64 * 1024
        assert sizes == [pipe._PIPE_BYTES, pipe._PIPE_BYTES]
    finally:
        client.close()


def test_error_reply_keeps_worker_and_instance(
    artifacts: dict[str, Artifact], fast: Timeouts
) -> None:
    """ABIError/MissingExport replies come back typed; the same worker process keeps serving."""
    host = WasmtimeHost(fast)
    try:
        inst = host.load(artifacts["wasm64"])
        assert isinstance(inst, PipeInstance)
        pid = inst.worker_pid
        with pytest.raises(ABIError, match="tg_alloc takes 1 arguments"):
            inst.call("tg_alloc")
        with pytest.raises(MissingExport, match="tg_nonexistent"):
            inst.call("tg_nonexistent")
        assert inst.call("tg_abi_version") == ABI_VERSION and inst.worker_pid == pid
    finally:
        host.close()


def test_worker_that_cannot_start_is_host_crashed_with_its_stderr() -> None:
    """A worker dying before HELLO raises HostCrashed quoting its exit status and stderr."""
    client = WorkerClient(
        [sys.executable, "-c", "import sys; sys.stderr.write('boom at start'); sys.exit(3)"],
        label="broken",
        start_timeout_s=30,
    )
    with pytest.raises(HostCrashed, match=r"exited with status 3.*boom at start"):
        client.ensure_started()


def test_worker_writing_text_to_stdout_is_caught_not_hung() -> None:
    """Stray text on the frame stream is a HostCrashed naming the bad opcode, within the timeout."""
    script = "import sys, time; sys.stdin.buffer.read(9); print('hello there'); time.sleep(60)"
    client = WorkerClient([sys.executable, "-c", script], label="chatty", start_timeout_s=30)
    with pytest.raises(HostCrashed, match="malformed reply to hello: unknown opcode"):
        client.ensure_started()
    assert client.pid is None  # killed, not left sleeping
