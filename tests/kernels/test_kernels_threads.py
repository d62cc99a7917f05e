"""The kernel library's thread pool: 1, 2 and 3 threads give bitwise the same results, and
2 and 3 threads really split the work.

Every threaded kernel splits only work whose per-element summation order does not depend on the
split (matmul over whole row or column tiles, attention over batch x heads), so the tests compare
bytes, not tolerances. Sizes are chosen above the library's parallel threshold (TG_PAR_MIN_WORK,
2e6 operations) and ragged (not multiples of the 6 x 16 tile), so the split edges land inside
tiles. Equal bytes alone would also come from a pool that never split anything, so every
comparison also reads ``tg_parallel_regions`` around the call: no region ran on a pool worker at
1 thread, at least one did at 2 and 3. The fault build ``-D TG_BUG_SERIAL_POOL`` (a pool that is
sized but runs every region on the caller) passes the byte comparison and fails that assertion.
Speed is never asserted here: that is ``nox -s bench``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from harness.abi import MAX_THREADS, regions_between
from harness.artifact import Artifact
from harness.build import Variant, build_variant
from harness.engines import load_in_process
from harness.hosts.base import Instance
from harness.kernel import KernelModel, Kernels
from reference.defaults import DEFAULTS
from reference.model import flatten_params, init_params
from reference.presets import PRESETS

COUNTS = (1, 2, 3)


@pytest.fixture
def native(built: dict[str, Artifact]) -> Iterator[Instance]:
    """The native artifact in this process, put back to 1 thread afterwards."""
    inst = load_in_process(built["native"])
    try:
        yield inst
    finally:
        inst.call("tg_set_threads", 1)
        inst.close()


def _threads(inst: Instance, n: int) -> None:
    assert inst.call("tg_set_threads", n) == n
    assert inst.call("tg_get_threads") == n


def _bytes(result: Any) -> list[bytes]:
    parts = result if isinstance(result, tuple) else (result,)
    return [np.ascontiguousarray(p).tobytes() for p in parts]


@dataclass(frozen=True)
class PerCount:
    """One computation run at each of :data:`COUNTS` threads."""

    outputs: dict[int, list[bytes]]  # count -> the outputs' bytes
    regions: dict[int, int]  # count -> parallel regions a pool worker took part in


def _counted(inst: Instance, run: Callable[[], Any]) -> tuple[Any, int]:
    """``run()``'s result and the parallel regions it ran (``tg_parallel_regions`` around it)."""
    before = inst.call("tg_parallel_regions")
    result = run()
    return result, regions_between(before, inst.call("tg_parallel_regions"))


def _per_count(inst: Instance, run: Callable[[], Any]) -> PerCount:
    got = PerCount({}, {})
    for n in COUNTS:
        _threads(inst, n)
        result, got.regions[n] = _counted(inst, run)
        got.outputs[n] = _bytes(result)
    return got


def _r(rng: np.random.Generator, *shape: int) -> NDArray[np.float32]:
    return rng.standard_normal(shape).astype(np.float32)


def _assert_all_equal(results: Mapping[int, list[bytes]]) -> None:
    one = results[1]
    for n, got in results.items():
        assert len(got) == len(one)
        for i, (a, b) in enumerate(zip(got, one, strict=True)):
            assert a == b, f"{n} threads: output {i} differs from 1 thread"


def _assert_split(regions: Mapping[int, int]) -> None:
    """No region ran on a pool worker at 1 thread; at least one did at every higher count."""
    assert regions[1] == 0, f"1 thread: {regions[1]} region(s) ran on a pool worker"
    for n, k in regions.items():
        assert n == 1 or k > 0, f"{n} threads in effect, yet no region ran on a pool worker"


def _assert_split_and_equal(got: PerCount) -> None:
    _assert_all_equal(got.outputs)
    _assert_split(got.regions)


@pytest.mark.parametrize(
    ("N", "C", "OC"),
    [(131, 200, 97), (512, 96, 40), (7, 300, 1100)],
    ids=["ragged", "tall", "wide"],  # tall splits rows, wide splits columns
)
def test_matmul_forward_and_backward_bitwise_across_thread_counts(
    native: Instance, N: int, C: int, OC: int
) -> None:
    """matmul forward, dinp, dweight and dbias are bytewise identical on 1, 2 and 3 threads,
    and 2 and 3 threads split them."""
    _assert_split_and_equal(_matmul_forward(native, N, C, OC))
    rng = np.random.default_rng(N * C + OC + 1)
    x, w, dout = _r(rng, N, C), _r(rng, OC, C), _r(rng, N, OC)
    k = Kernels(native)
    _assert_split_and_equal(_per_count(native, lambda: k.matmul_backward(dout, x, w)))


def _matmul_forward(inst: Instance, N: int, C: int, OC: int) -> PerCount:
    rng = np.random.default_rng(N * C + OC)
    x, w, b = _r(rng, N, C), _r(rng, OC, C), _r(rng, OC)
    k = Kernels(inst)
    return _per_count(inst, lambda: k.matmul_forward(x, w, b))


def test_attention_bitwise_across_thread_counts(native: Instance) -> None:
    """Attention forward (out, att) and backward (dqkv) are identical on 1, 2 and 3 threads,
    and 2 and 3 threads split them."""
    rng = np.random.default_rng(11)
    B, T, C, NH = 5, 63, 128, 4  # 20 heads: 3 workers take 6, 7 and 7
    qkv, dout = _r(rng, B, T, 3 * C), _r(rng, B, T, C)
    k = Kernels(native)
    _assert_split_and_equal(_per_count(native, lambda: k.attention_forward(qkv, NH)))
    _threads(native, 1)
    _, att = k.attention_forward(qkv, NH)
    _assert_split_and_equal(_per_count(native, lambda: k.attention_backward(dout, qkv, att, NH)))


def test_layernorm_and_gelu_bitwise_across_thread_counts(native: Instance) -> None:
    """LayerNorm forward (split by rows) and GELU forward/backward (split by elements, at
    boundaries that fall inside a vector) are identical on 1, 2 and 3 threads, and 2 and 3
    threads split them."""
    rng = np.random.default_rng(5)
    x, w, b = _r(rng, 1001, 257), _r(rng, 257), _r(rng, 257)
    g, dg = _r(rng, 100_003), _r(rng, 100_003)
    k = Kernels(native)
    _assert_split_and_equal(_per_count(native, lambda: k.layernorm_forward(x, w, b)))
    _assert_split_and_equal(_per_count(native, lambda: k.gelu_forward(g)))
    _assert_split_and_equal(_per_count(native, lambda: k.gelu_backward(dg, g)))


@dataclass(frozen=True)
class TrainRun:
    """Losses, final parameters and the parallel regions of each step of one training run."""

    losses: list[float]
    params: bytes
    regions: list[int]


def _train(inst: Instance, steps: int) -> TrainRun:
    cfg = PRESETS["small"]  # tiny's ops are all below the parallel threshold
    params = init_params(cfg, DEFAULTS, seed=5, dtype=np.float32)
    model = KernelModel.create(inst, cfg, flatten_params(cfg, params))
    rng = np.random.default_rng(3)
    B, T = 8, cfg.block_size
    try:
        losses, regions = [], []
        for t in range(1, steps + 1):
            x = rng.integers(0, cfg.vocab_size, (B, T)).astype(np.int32)
            y = rng.integers(0, cfg.vocab_size, (B, T)).astype(np.int32)
            loss, k = _counted(inst, lambda: model.train_step(x, y, 1e-3, DEFAULTS, t))  # noqa: B023
            losses.append(loss)
            regions.append(k)
        flat = np.concatenate([v.ravel() for v in model.params().values()])
        return TrainRun(losses, flat.tobytes(), regions)
    finally:
        model.free()


def test_train_steps_bitwise_across_thread_counts(native: Instance) -> None:
    """Three train steps of the small preset: the same losses and parameters on 1, 2, 3 threads,
    and the same again on a second run at 2 threads (deterministic for a given count). Every
    step splits on 2 and 3 threads and none on 1, and a step's region count is the same from
    step to step and run to run at one count: it depends on the shapes and the count only,
    which is what lets the bench count one step and the report multiply by it."""
    runs: dict[int, list[TrainRun]] = {}
    for n in (*COUNTS, 2):
        _threads(native, n)
        runs.setdefault(n, []).append(_train(native, 3))
    one = runs[1][0]
    for n, got in runs.items():
        for run in got:
            assert run.losses == one.losses, f"{n} threads: losses differ"
            assert run.params == one.params, f"{n} threads: parameters differ"
            assert run.regions == [run.regions[0]] * 3, f"{n} threads: {run.regions}"
            assert run.regions == got[0].regions
        _assert_split({1: one.regions[0], n: got[0].regions[0]})
    assert len(runs[2]) == 2


@pytest.mark.parametrize("bad", [0, -1, MAX_THREADS + 1, 1 << 30])
def test_bad_thread_count_is_refused_and_changes_nothing(native: Instance, bad: int) -> None:
    """n <= 0 or n above the pool size returns -1 and leaves the count in effect as it was."""
    _threads(native, 2)
    assert native.call("tg_set_threads", bad) == -1
    assert native.call("tg_get_threads") == 2


def test_pool_grows_and_shrinks(native: Instance) -> None:
    """Going up to the pool size and back down keeps every count usable (workers are joined and
    restarted, never leaked into a hang), and every count above 1 still splits."""
    k = Kernels(native)
    rng = np.random.default_rng(1)
    x, w = _r(rng, 200, 150), _r(rng, 170, 150)
    _threads(native, 1)
    want = k.matmul_forward(x, w, None).tobytes()
    for n in (MAX_THREADS, 1, 4, 2, 3):
        _threads(native, n)
        out, regions = _counted(native, lambda: k.matmul_forward(x, w, None))
        assert out.tobytes() == want, f"{n} threads"
        assert (regions > 0) == (n > 1), f"{n} threads: {regions} region(s)"


@pytest.mark.parametrize("asleep", [0, 1])
@pytest.mark.parametrize("n", [2, 3])
def test_pool_probe_times_regions_that_really_ran_on_the_pool(
    native: Instance, n: int, asleep: int
) -> None:
    """tg_pool_probe_ns at n threads returns a time (ns per region, positive) and has run its
    regions on the pool: tg_parallel_regions grows by them (one more when back to back: the
    untimed region that wakes the workers first). At 1 thread, and for regions < 1, it is -1."""
    _threads(native, n)
    regions = 5
    ns, ran = _counted(native, lambda: native.call("tg_pool_probe_ns", regions, asleep))
    assert isinstance(ns, int) and ns > 0
    assert ran == regions + (0 if asleep else 1)
    assert native.call("tg_pool_probe_ns", 0, asleep) == -1
    _threads(native, 1)
    assert _counted(native, lambda: native.call("tg_pool_probe_ns", regions, asleep)) == (-1, 0)


@pytest.mark.parametrize("name", ["wasm32", "wasm64"])
def test_freestanding_wasm_reports_one_thread(built: dict[str, Artifact], name: str) -> None:
    """The freestanding wasm builds have no threads: any valid request is 1 in effect and
    allocates nothing, a bad one is still -1, and a matmul above the split threshold runs no
    parallel region."""
    inst = load_in_process(built[name])
    try:
        assert inst.call("tg_get_threads") == 1
        before = inst.alloc(16)
        assert inst.call("tg_set_threads", 4) == 1
        # and reserves no pack buffers for workers that never exist: the heap is untouched
        # (a worker's pair is 917,504 bytes on wasm; the next 16 bytes come right after the last)
        assert 0 < inst.alloc(16) - before <= 64
        assert inst.call("tg_set_threads", 0) == -1
        assert inst.call("tg_get_threads") == 1
        rng = np.random.default_rng(2)
        k = Kernels(inst)
        _, regions = _counted(
            inst, lambda: k.matmul_forward(_r(rng, 131, 200), _r(rng, 97, 200), None)
        )
        assert regions == 0
        assert inst.call("tg_pool_probe_ns", 10, 0) == -1  # no pool to time
    finally:
        inst.close()


SERIAL_POOL = Variant("native-bug-serial-pool", "native", ("TG_BUG_SERIAL_POOL",))


def test_a_pool_that_never_splits_fails_the_split_assertion(tmp_path: Path) -> None:
    """The fault build TG_BUG_SERIAL_POOL puts 2 and 3 threads in effect but runs every region
    on the caller: its results are bitwise those of 1 thread, so the byte comparison alone
    passes; the region count is 0 at every count and the split assertion fails."""
    inst = load_in_process(build_variant(tmp_path, SERIAL_POOL))
    try:
        got = _matmul_forward(inst, 512, 96, 40)  # the "tall" case above
        _assert_all_equal(got.outputs)  # what the tests checked before: fooled
        assert got.regions == {n: 0 for n in COUNTS}
        with pytest.raises(AssertionError, match="2 threads in effect, yet no region ran"):
            _assert_split(got.regions)
        _threads(inst, 2)  # its pool probe refuses to time regions the workers never joined
        assert inst.call("tg_pool_probe_ns", 10, 0) == -2
    finally:
        inst.call("tg_set_threads", 1)
        inst.close()
