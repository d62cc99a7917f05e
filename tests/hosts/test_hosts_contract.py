"""Every host honours the Host/Instance contract on the fixture library, including its failures.

Each fault test ends by loading and calling again: a failure costs one cell, not the host.
"""

from __future__ import annotations

import hashlib
import math
import os
import signal
import struct
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from harness.abi import ABI_VERSION
from harness.artifact import Artifact
from harness.hosts.base import (
    ABIError,
    ArtifactHashMismatch,
    CorruptArtifact,
    Host,
    HostCrashed,
    HostError,
    HostTimeout,
    IncompatibleArtifact,
    Instance,
    MissingExport,
    Trap,
    close_all,
)
from harness.hosts.chromium import KEPT_WRITE_BYTES
from harness.hosts.framing import Op
from harness.hosts.pipe import PipeInstance
from harness.hosts.registry import make_host
from harness.hosts.timeouts import Timeouts

WASM_HOSTS = [
    "wasmtime",
    pytest.param("node", marks=pytest.mark.node),
    pytest.param("node22", marks=pytest.mark.node),
    pytest.param("node24", marks=pytest.mark.node),
    pytest.param("chromium", marks=pytest.mark.chromium),
]
ALL_HOSTS = ["native", *WASM_HOSTS]
# Node 20 and 22 reject the wasm64 module (its table64); these hosts run both widths.
WASM64_HOSTS = {"wasmtime", "node24", "chromium"}


@pytest.fixture(scope="module")
def hosts() -> Iterator[dict[str, Host]]:
    """Hosts created once per module (one browser launch), all closed at the end."""
    made: dict[str, Host] = {}
    yield made
    for host in made.values():
        host.close()


@pytest.fixture
def host(request: pytest.FixtureRequest, hosts: dict[str, Host], fast: Timeouts) -> Host:
    """The host named by the test's parameter, with 2 s call timeouts."""
    name = str(request.param)
    if name not in hosts:
        hosts[name] = make_host(name, fast)
    return hosts[name]


def _widths(host: Host) -> list[str]:
    if host.name == "native":
        return ["native"]
    return ["wasm32", "wasm64"] if host.name in WASM64_HOSTS else ["wasm32"]


# The fixture's fault switch: tg_gelu_forward(out, inp, N) with these N (see hostfix.c).
TRAP, SPIN, SEGV = -1, -2, -3


def _usable(host: Host, artifact: Artifact) -> None:
    """Load ``artifact`` afresh and make one real call: the host survived the previous fault."""
    inst = host.load(artifact)
    try:
        assert inst.call("tg_model_create", 1, 14, 0, 0, 0) == 42  # 3 * 14 via the table
    finally:
        inst.close()


@pytest.mark.parametrize("host", ALL_HOSTS, indirect=True)
def test_load_and_call_every_kind(host: Host, artifacts: dict[str, Artifact]) -> None:
    """i32, f32 (incl. inf/NaN), ptr results and an indirect call come back right at each width."""
    for width in _widths(host):
        inst = host.load(artifacts[width])
        try:
            assert inst.call("tg_abi_version") == ABI_VERSION
            assert inst.call("tg_model_create", 0, 21, 0, 0, 0) == 42  # 2 * 21 via the table
            assert inst.read_cstring(int(inst.call("tg_defaults_json") or 0)) == "{}"
            # tg_crossentropy_forward of the fixture returns N / V as f32
            assert inst.call("tg_crossentropy_forward", 0, 0, 0, 0, 3, 2) == 1.5
            assert inst.call("tg_crossentropy_forward", 0, 0, 0, 0, 1, 0) == math.inf
            nan = inst.call("tg_crossentropy_forward", 0, 0, 0, 0, 0, 0)
            assert isinstance(nan, float) and math.isnan(nan)
            assert inst.call("tg_noop") is None
            p = inst.alloc(64)
            assert p > 0 and p % 16 == 0
            assert inst.call("tg_model_num_params", p) == p + 1  # ptr in, ptr out
        finally:
            inst.close()


@pytest.mark.parametrize("host", ["native", "wasmtime"], indirect=True)
def test_a_python_host_refuses_a_js_probe_in_words(
    host: Host, artifacts: dict[str, Artifact]
) -> None:
    """The native and wasmtime hosts have no JS workers: a host-cost probe is a HostError that
    says so and points at the pool's own figure, and the instance stays usable."""
    inst = host.load(artifacts[_widths(host)[0]])
    try:
        with pytest.raises(HostError, match="runs no JS workers: no atomics round trip"):
            inst.time_probe("atomics", 2, 2, 0)
        assert inst.call("tg_abi_version") == ABI_VERSION
    finally:
        inst.close()


@pytest.mark.parametrize("host", ALL_HOSTS, indirect=True)
def test_write_read_round_trip_through_kernels(host: Host, artifacts: dict[str, Artifact]) -> None:
    """Bytes written reach the kernel through a ptr argument, and the kernel's output reads back."""
    for width in _widths(host):
        inst = host.load(artifacts[width])
        try:
            n = 1000
            src, dst = inst.alloc(4 * n), inst.alloc(4 * n)
            payload = bytes(range(256)) * 3
            inst.write(src, payload)
            assert inst.read(src, len(payload)) == payload
            # generate copies prompt[i % len] into out: ints through two pointers
            inst.write(src, struct.pack("<3i", 7, -8, 9))
            assert inst.call("tg_model_generate", 0, src, 3, n, dst, 0, 0, 0.0, 0, 0) == n
            assert struct.unpack(f"<{n}i", inst.read(dst, 4 * n)) == tuple(
                (7, -8, 9)[i % 3] for i in range(n)
            )
            # crossentropy_backward writes probs * dloss: floats in, an f32 argument, floats out
            xs = [i * 0.25 for i in range(n)]
            inst.write(src, struct.pack(f"<{n}f", *xs))
            inst.call("tg_crossentropy_backward", dst, src, 0, -2.0, n, 1)
            assert struct.unpack(f"<{n}f", inst.read(dst, 4 * n)) == tuple(-2.0 * x for x in xs)
        finally:
            inst.close()


HEAP_BYTES = 1 << 20  # hostfix.c's bump heap: a larger allocation returns 0


@pytest.mark.parametrize("host", ALL_HOSTS, indirect=True)
def test_place_writes_each_buffer_and_a_failed_allocation_frees_the_rest(
    host: Host, artifacts: dict[str, Artifact], monkeypatch: pytest.MonkeyPatch
) -> None:
    """place allocates a buffer per blob, in order, and writes it: the bytes read back, also the
    second time, when Chromium's page sends a large blob by its key. A blob the allocator cannot
    hold raises HostError saying so, the buffers placed before it are freed (by the harness on
    worker hosts, by the page in Chromium), and the instance goes on."""
    freed: list[int] = []
    free_all = PipeInstance.free_all

    def spy(self: PipeInstance, ptrs: Sequence[int]) -> None:
        freed.extend(ptrs)
        free_all(self, ptrs)

    monkeypatch.setattr(PipeInstance, "free_all", spy)
    big = bytes(range(256)) * (KEPT_WRITE_BYTES // 256 + 1)  # kept by the page, then by key
    blobs = (struct.pack("<i", -7), big, big[::-3])
    for width in _widths(host):
        inst = host.load(artifacts[width])
        try:
            for _ in range(2):
                ptrs = inst.place(blobs)
                assert len(set(ptrs)) == len(blobs)
                assert [inst.read(p, len(b)) for p, b in zip(ptrs, blobs, strict=True)] == [*blobs]
            with pytest.raises(HostError, match=r"returned 0 \(out of memory"):
                inst.place((bytes(8), bytes(HEAP_BYTES + 1)))
            if isinstance(inst, PipeInstance):
                assert len(freed) == 1  # the 8-byte buffer placed before the failure
            freed.clear()
            assert inst.call("tg_model_create", 1, 14, 0, 0, 0) == 42
        finally:
            inst.close()


@pytest.mark.parametrize("host", ALL_HOSTS, indirect=True)
def test_time_calls_and_bridge_are_sane(host: Host, artifacts: dict[str, Artifact]) -> None:
    """time_calls returns one finite positive mean per sample and a measured clock resolution."""
    inst = host.load(artifacts[_widths(host)[-1]])
    try:
        result = inst.time_calls("tg_noop", (), inner_reps=2000, samples=5, warmup=200)
        assert len(result.sample_ns) == 5 and result.inner_reps == 2000
        assert all(math.isfinite(s) and 0 <= s < 1e6 for s in result.sample_ns)
        assert 0 < result.clock_resolution_ns < 1e6 and result.clock
        src = inst.alloc(64)
        args = (0, src, 4, 4, src + 16, 0, 0, 0.0, 0, 0)  # pointer and float args converted once
        copied = inst.time_calls("tg_model_generate", args, inner_reps=100, samples=3, warmup=1)
        assert len(copied.sample_ns) == 3
        trips = inst.bridge_roundtrip_ns(20)
        assert len(trips) == 20 and all(t > 0 for t in trips)
    finally:
        inst.close()


@pytest.mark.parametrize("host", ALL_HOSTS, indirect=True)
def test_kind_mismatch_is_incompatible_before_trying(
    host: Host, artifacts: dict[str, Artifact]
) -> None:
    """Native x wasm (and wasm x native) is refused by the format, never attempted."""
    other = artifacts["wasm32"] if host.name == "native" else artifacts["native"]
    assert host.can_load(other) is not None
    with pytest.raises(IncompatibleArtifact, match=other.format):
        host.load(other)


@pytest.mark.parametrize("host", ALL_HOSTS, indirect=True)
def test_trap_is_reported_and_host_recovers(host: Host, artifacts: dict[str, Artifact]) -> None:
    """`unreachable` (ud2 natively) raises Trap; the next load and call work."""
    artifact = artifacts[_widths(host)[0]]
    inst = host.load(artifact)
    try:
        with pytest.raises(Trap):
            inst.call("tg_gelu_forward", 0, 0, TRAP)
    finally:
        inst.close()
    _usable(host, artifact)


@pytest.mark.parametrize("host", WASM_HOSTS, indirect=True)
def test_wasm_trap_leaves_the_instance_usable(host: Host, artifacts: dict[str, Artifact]) -> None:
    """A wasm trap unwinds to the host: the same instance keeps its memory and answers."""
    inst = host.load(artifacts["wasm32"])
    try:
        p = inst.alloc(8)
        inst.write(p, struct.pack("<2i", 40, 2))
        with pytest.raises(Trap, match="unreachable"):
            inst.call("tg_gelu_forward", 0, 0, TRAP)
        assert inst.usable() and inst.read(p, 8) == struct.pack("<2i", 40, 2)
        assert inst.call("tg_model_num_params", p) == p + 1
    finally:
        inst.close()


@pytest.mark.parametrize("host", ALL_HOSTS, indirect=True)
def test_missing_export_fails_the_load(host: Host, artifacts: dict[str, Artifact]) -> None:
    """A build lacking an ABI export raises MissingExport naming it; the host then loads fine."""
    good = artifacts["native" if host.name == "native" else "wasm32"]
    with pytest.raises(MissingExport, match="tg_defaults_json"):
        host.load(artifacts[f"{good.name}-missing"])
    _usable(host, good)


PIPE_HOSTS = [h for h in ALL_HOSTS if getattr(h, "values", (h,))[0] != "chromium"]


@pytest.mark.parametrize("host", PIPE_HOSTS, indirect=True)
def test_start_loads_each_build_once_and_fails_as_its_load_would(
    host: Host, artifacts: dict[str, Artifact]
) -> None:
    """A worker host's start loads (and drops) each build, so its first-load costs (wasmtime's
    compile) fall in the start, not in a budgeted cell: a build lacking an export fails there,
    as its load would; the host then starts and loads the good build."""
    good = artifacts["native" if host.name == "native" else "wasm32"]
    with pytest.raises(MissingExport, match="tg_defaults_json"):
        host.start([good, artifacts[f"{good.name}-missing"]])
    host.start([good])
    _usable(host, good)


def _copies(artifact: Artifact, where: Path, n: int) -> list[Artifact]:
    """``n`` byte-identical copies of ``artifact`` at paths of their own: builds the host has not
    seen, each needing its own worker unless started together."""
    where.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        path = where / f"{i}-{artifact.path.name}"
        path.write_bytes(artifact.path.read_bytes())
        out.append(replace(artifact, name=f"{artifact.name}-copy{i}", path=path))
    return out


@pytest.mark.parametrize("host", PIPE_HOSTS, indirect=True)
def test_start_one_process_puts_both_builds_in_one_worker(
    host: Host, artifacts: dict[str, Artifact], tmp_path: Path
) -> None:
    """``start(one_process=True)`` (the paired gate's) loads BASE's and CAND's builds into one
    worker process; a plain start gives each its own; closing the host stops them all."""
    good = artifacts["native" if host.name == "native" else "wasm32"]
    together, apart = _copies(good, tmp_path / "one", 2), _copies(good, tmp_path / "two", 2)
    host.start(together, one_process=True)
    host.start(apart)
    loaded = [host.load(a) for a in (*together, *apart)]
    try:
        assert all(isinstance(inst, PipeInstance) for inst in loaded)
        pids = [inst.worker_pid or 0 for inst in loaded if isinstance(inst, PipeInstance)]
        assert 0 not in pids  # every instance's worker runs
        assert pids[0] == pids[1], pids
        assert len({pids[0], pids[2], pids[3]}) == 3, pids
        for inst in loaded:
            assert inst.call("tg_model_create", 1, 14, 0, 0, 0) == 42
    finally:
        for inst in loaded:
            inst.close()
    host.close()  # the module's host: later tests start it again on their first load
    for pid in set(pids):
        assert _gone(pid), f"worker {pid} still runs after close"


@pytest.mark.parametrize("host", PIPE_HOSTS, indirect=True)
def test_close_all_unloads_a_workers_instances_in_one_exchange_and_keeps_it_in_step(
    host: Host, artifacts: dict[str, Artifact]
) -> None:
    """``close_all`` closes every instance (a closed one refuses calls); the worker's replies
    to the pipelined UNLOADs are all read, error replies too, so its next reply is the next
    request's; a group whose worker died meanwhile closes without raising."""
    good = artifacts["native" if host.name == "native" else "wasm32"]
    group = [host.load(good) for _ in range(5)]
    close_all(group)
    for inst in group:
        with pytest.raises(HostError, match="is closed"):
            inst.call("tg_model_create", 1, 14, 0, 0, 0)
    first = group[0]
    assert isinstance(first, PipeInstance)
    unknown = [{"instance": 10**9 + k, "name": "tg_noop", "args": []} for k in range(2)]
    replies = first.client.request_each(Op.CALL, unknown, timeout_s=60.0)
    assert [r.op for r in replies] == [Op.ERROR, Op.ERROR]  # unknown ids, read and not raised
    with pytest.raises(ValueError, match="exceed the pipe"):  # more than the pipes can hold
        first.client.request_each(Op.UNLOAD, [{"instance": 1}] * 2000, timeout_s=60.0)
    _usable(host, good)
    doomed = [host.load(good) for _ in range(3)]
    pid = doomed[0].worker_pid  # type: ignore[attr-defined]
    os.kill(pid, signal.SIGKILL)
    assert _gone(pid)
    close_all(doomed)
    _usable(host, good)


def _gone(pid: int, wait_s: float = 10.0) -> bool:
    """Whether process ``pid`` has ended (or is a zombie nobody waits for) within ``wait_s``."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("host", WASM_HOSTS, indirect=True)
def test_corrupt_module_is_corrupt_artifact(host: Host, artifacts: dict[str, Artifact]) -> None:
    """A truncated .wasm raises CorruptArtifact (not incompatible); the host then loads fine."""
    with pytest.raises(CorruptArtifact):
        host.load(artifacts["corrupt"])
    _usable(host, artifacts["wasm32"])


@pytest.mark.parametrize("host", ["native"], indirect=True)
def test_truncated_or_mis_declared_native_library_is_refused_before_dlopen(
    host: Host, artifacts: dict[str, Artifact]
) -> None:
    """A .so cut in half is CorruptArtifact naming where it ends (its dlopen killed the worker
    with SIGBUS: a crashed host, not a corrupt file); an ELF64 library declared ptr_width 32 is
    an ABIError; the host then loads fine."""
    with pytest.raises(CorruptArtifact, match=r"is truncated: its .* the file has"):
        host.load(artifacts["corrupt-native"])
    with pytest.raises(ABIError, match=r"ELF64 library .* ptr_width is 32"):
        host.load(replace(artifacts["native"], ptr_width=32))
    _usable(host, artifacts["native"])


@pytest.mark.parametrize("host", ALL_HOSTS, indirect=True)
def test_hanging_call_times_out_and_host_recovers(
    host: Host, artifacts: dict[str, Artifact]
) -> None:
    """An infinite loop raises HostTimeout after ~2 s; the lost instance says so; reload works."""
    artifact = artifacts[_widths(host)[0]]
    inst: Instance = host.load(artifact)
    t0 = time.monotonic()
    with pytest.raises(HostTimeout, match="tg_gelu_forward"):
        inst.call("tg_gelu_forward", 0, 0, SPIN)
    assert 1.5 < time.monotonic() - t0 < 15
    with pytest.raises(HostCrashed, match="load the artifact again"):
        inst.call("tg_noop")
    inst.close()
    _usable(host, artifact)


@pytest.mark.parametrize("host", ALL_HOSTS, indirect=True)
def test_an_interrupt_mid_call_kills_the_worker_at_once(
    host: Host, artifacts: dict[str, Artifact]
) -> None:
    """Ctrl-C or SIGTERM (the runner's handler raises KeyboardInterrupt) while a worker runs a
    hung call: the worker, which still owes that call's reply, is killed then and there (a
    page's worker: lost, and terminated by close), so the instance is lost and the next load
    starts a fresh worker, instead of the next request reading a stale reply or waiting out its
    timeout behind the hung call."""
    artifact = artifacts[_widths(host)[0]]
    inst = host.load(artifact)
    pid = inst.worker_pid if isinstance(inst, PipeInstance) else None  # a page has no pid
    assert inst.usable() and (pid is not None or not isinstance(inst, PipeInstance))

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        with pytest.raises(KeyboardInterrupt):
            inst.call("tg_gelu_forward", 0, 0, SPIN)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert not inst.usable()
    assert not isinstance(inst, PipeInstance) or inst.worker_pid is None
    with pytest.raises(HostCrashed, match="interrupted during"):
        inst.call("tg_noop")
    inst.close()
    _usable(host, artifact)


@pytest.mark.parametrize(
    "host",
    [pytest.param("node", marks=pytest.mark.node), pytest.param("node22", marks=pytest.mark.node)],
    indirect=True,
)
def test_old_node_rejects_wasm64_in_v8_words(host: Host, artifacts: dict[str, Artifact]) -> None:
    """Node 20/22 refuse the wasm64 module: IncompatibleArtifact carrying V8's own message."""
    with pytest.raises(IncompatibleArtifact, match="invalid table elements limits flags"):
        host.load(artifacts["wasm64"])
    _usable(host, artifacts["wasm32"])


@pytest.mark.parametrize("host", ["native"], indirect=True)
def test_native_segfault_kills_only_the_worker(host: Host, artifacts: dict[str, Artifact]) -> None:
    """A store through NULL in native code is a Trap naming SIGSEGV; the harness lives on. The
    instance went with its worker, and says so (``usable``), unlike a wasm trap's."""
    inst = host.load(artifacts["native"])
    assert inst.usable()
    with pytest.raises(Trap, match="SIGSEGV"):
        inst.call("tg_gelu_forward", 0, 0, SEGV)
    assert not inst.usable()
    inst.close()
    _usable(host, artifacts["native"])


@pytest.mark.parametrize("host", ALL_HOSTS, indirect=True)
def test_modified_file_is_refused_naming_both_hashes(
    host: Host, artifacts: dict[str, Artifact], tmp_path: Path
) -> None:
    """A file changed after its manifest entry was written is ArtifactHashMismatch naming the
    manifest's hash and the file's, before the host runs it; the unmodified file still loads."""
    good = artifacts[_widths(host)[0]]
    data = good.path.read_bytes()
    copy = tmp_path / good.path.name
    copy.write_bytes(data + b"\0")  # one appended byte: still loadable, no longer the manifest's
    actual = hashlib.sha256(copy.read_bytes()).hexdigest()
    with pytest.raises(ArtifactHashMismatch) as caught:
        host.load(replace(good, path=copy))
    assert good.sha256 in str(caught.value) and actual in str(caught.value)
    assert (caught.value.expected, caught.value.actual) == (good.sha256, actual)
    inst = host.load(good)
    try:
        assert inst.loaded_sha256 == good.sha256 == hashlib.sha256(data).hexdigest()
        assert inst.call("tg_abi_version") == ABI_VERSION
    finally:
        inst.close()
