"""Target verdicts of ``harness.bench_targets``: met, missed, inconclusive, never lowered; the
thread speedups side by side in one instance, judged on their CI."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.abi import regions_between
from harness.artifact import Artifact, load_manifest
from harness.bench_targets import (
    THREAD_PLAN,
    THREADS_SPEEDUP,
    THREADS_SPEEDUP_JS,
    Figure,
    Target,
    ThreadCase,
    ThreadTarget,
    exit_code,
    measure_thread_target,
    render,
)
from harness.build import DEFAULT_OUT, MANIFEST, build_all, manifest_is_fresh
from harness.checks.bench_paired import Interleaved, PairedPlan, thread_speedup
from harness.checks.bench_workloads import matmul_forward
from harness.engines.ctypes_engine import CtypesInstance
from harness.hosts.wasmtime_host import WasmtimeHost
from harness.timing import Measurement, TimingPolicy, summarize


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Artifact]]:
    """The bundled artifacts: artifacts/build when fresh, else a build in a tmp dir."""
    if manifest_is_fresh(DEFAULT_OUT):
        yield load_manifest(DEFAULT_OUT / MANIFEST)
    else:
        yield build_all(Path(tmp_path_factory.mktemp("build")))


@pytest.fixture(scope="module")
def native(built: dict[str, Artifact]) -> Artifact:
    """The native artifact (pthreads)."""
    return built["native"]


@pytest.fixture(scope="module")
def wasm32(built: dict[str, Artifact]) -> Artifact:
    """The freestanding wasm32 artifact (no threads)."""
    return built["wasm32"]


def _figure(label: str, gflops: float, spread: float) -> Figure:
    """A figure of ``gflops`` whose samples spread +-``spread`` around 1 ms per call."""
    samples = tuple(1e6 * (1 + spread * k) for k in (-1.0, -0.5, 0.0, 0.5, 1.0) * 3)
    s = summarize(samples)
    m = Measurement(samples, 1, "perf_counter_ns", 50.0, s, s.is_noisy(0.10), 0.1)
    return Figure(label, gflops, m)


def test_clean_figures_decide_met_and_missed() -> None:
    """Clean figures: >= threshold is met, below is missed (exit 1), exactly as measured."""
    roof = _figure("blas", 100.0, 0.01)
    assert Target("t", _figure("k", 50.0, 0.01), roof, 0.50).status == "met"
    missed = Target("t", _figure("k", 49.9, 0.01), roof, 0.50)
    assert missed.status == "missed"
    assert exit_code([missed]) == 1


def test_noisy_figure_decides_only_when_ci_cannot_change_the_outcome() -> None:
    """A noisy figure far below the line is missed; one near it is inconclusive."""
    roof = _figure("native", 100.0, 0.01)
    far = Target("t", _figure("wasm", 20.0, 0.6), roof, 0.40)
    near = Target("t", _figure("wasm", 39.0, 0.6), roof, 0.40)
    assert far.numerator.measurement is not None and far.numerator.measurement.noisy
    assert far.status == "missed"
    assert near.status == "inconclusive (noisy)"


def test_missing_figure_is_not_measured_with_reason() -> None:
    """A host that is not installed gives 'not measured' and exit 2, with the reason in text."""
    absent = Figure("wasm32 under node24", None, None, "node24: no node executable")
    t = Target("t", absent, _figure("native", 100.0, 0.01), 0.40)
    assert t.status == "not measured" and t.ratio is None
    assert "not measured: node24: no node executable" in absent.text()
    assert exit_code([t]) == 2


def _thread_target(case: ThreadCase, ratios: list[float]) -> ThreadTarget:
    """A thread target whose pairs gave ``ratios`` (1-thread block 1 ms per call, 2-thread
    block 1/r ms), four samples a block."""
    blocks = Interleaved(
        tuple((1e6,) * 4 for _ in ratios), tuple((1e6 / r,) * 4 for r in ratios), 4, 4, 1.0
    )
    return ThreadTarget(case, 512, blocks.ratio(TimingPolicy()), blocks, machine="busy 50%")


NATIVE = ThreadCase("native", "native", THREADS_SPEEDUP, True)


def test_thread_target_is_judged_on_its_ci_never_re_thresholded() -> None:
    """The side-by-side speedup is met only when its CI's low end reaches 1.7x, missed when
    its high end is below, and inconclusive (exit 1) when the CI straddles the threshold: a
    median of 1.75x whose pairs spread down to 1.2x does not pass."""
    met = _thread_target(NATIVE, [1.78, 1.8, 1.82, 1.79, 1.81, 1.8, 1.77, 1.83])
    missed = _thread_target(NATIVE, [1.2, 1.3, 1.25, 1.22, 1.28, 1.24])
    straddles = _thread_target(NATIVE, [1.2, 1.75, 1.9, 1.3, 1.76, 1.95, 1.74, 1.21, 1.8])
    assert met.status == "met" and met.ratio is not None and met.ratio.ci_low >= 1.7
    assert missed.status == "missed"
    assert straddles.ratio is not None and straddles.ratio.value >= 1.7
    assert straddles.status == "inconclusive (CI straddles)"
    assert exit_code([], [met]) == 0
    assert exit_code([], [met, straddles]) == 1
    assert exit_code([], [met, missed]) == 1


def test_information_cases_and_absent_hosts_are_reported_not_dropped() -> None:
    """A host that cannot run is a 'not measured' row with its reason, and exit 2 when it is a
    target; a case measured for information (Node 22, Node 20) is written but never decides
    the exit code."""
    node20 = ThreadCase("node", "em-wasm32-pthread", THREADS_SPEEDUP_JS, False)
    node24 = ThreadCase("node24", "em-wasm32-pthread", THREADS_SPEEDUP_JS, True)
    info_missed = _thread_target(node20, [1.0, 1.05, 0.98, 1.02])
    absent = ThreadTarget(node24, 512, None, None, "node24: no node executable")
    met = _thread_target(NATIVE, [1.78, 1.8, 1.82, 1.79, 1.81, 1.8, 1.77, 1.83])
    assert info_missed.status == "missed" and exit_code([], [met, info_missed]) == 0
    assert absent.status == "not measured" and exit_code([], [met, absent]) == 2
    text = render([], "python -m harness.bench_targets", {"load": "0.10 before"}, {},
                  [met, info_missed, absent])  # fmt: skip
    assert "not measured: node24: no node executable | 1.5x | ⚠️ not measured |" in text
    assert "≥ 1.5x 1 thread (information) | 1.01x" in text
    assert "1.80x (95% CI [" in text and "| 1.7x | ✅ met |" in text
    assert "busy 50%" in text and "0.10 before" in text


def test_thread_speedup_alternates_blocks_inside_one_instance(native: Artifact) -> None:
    """The native side-by-side figure at 256³: as many pairs as planned, a positive ratio per
    pair, every 2-thread call split onto the pool (tg_parallel_regions grows by at least one
    per 2-thread call, which no 1-thread call adds to), and 1 thread back in effect. No speed
    is asserted."""
    inst = CtypesInstance.load(native)
    try:
        wl = matmul_forward(inst, 256)
        before = int(inst.call("tg_parallel_regions") or 0)
        plan = PairedPlan(pairs=4, block_ms=10.0, seconds=30.0)
        policy = TimingPolicy(min_samples=3, max_samples=3, warmup=1)
        blocks, ratio = thread_speedup(inst, wl.export, wl.args, 2, plan, policy)
        regions = regions_between(before, int(inst.call("tg_parallel_regions") or 0))
        assert inst.call("tg_get_threads") == 1
    finally:
        inst.close()
    assert len(ratio.ratios) == 4 and all(r > 0 for r in ratio.ratios)
    assert len(blocks.num_blocks) == len(blocks.den_blocks) == 4
    # both sides' blocks hold the same calls, sized from the one 1-thread probe
    assert blocks.num_per_block == blocks.den_per_block
    assert all(len(a) == len(b) for a, b in zip(blocks.num_blocks, blocks.den_blocks, strict=True))
    two_thread_calls = sum(len(b) for b in blocks.den_blocks)
    assert regions >= two_thread_calls


def test_a_build_without_threads_is_not_measured_with_its_reason(wasm32: Artifact) -> None:
    """The freestanding wasm32 build puts 1 thread in effect when asked for 2: its case is
    'not measured' with the count it put, through a real host (wasmtime)."""
    host = WasmtimeHost()
    try:
        case = ThreadCase("wasmtime", "wasm32", THREADS_SPEEDUP_JS, True)
        got = measure_thread_target(host, wasm32, case, 64, THREAD_PLAN)
    finally:
        host.close()
    assert got.status == "not measured" and "tg_set_threads(2) put 1" in got.missing
