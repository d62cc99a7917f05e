"""The kernel library's thread pool: 1, 2 and 3 threads give bitwise the same results.

Every threaded kernel splits only work whose per-element summation order does not depend on the
split (matmul over whole row or column tiles, attention over batch x heads), so the tests compare
bytes, not tolerances. Sizes are chosen above the library's parallel threshold (TG_PAR_MIN_WORK,
2e6 operations) and ragged (not multiples of the 6 x 16 tile), so the split really happens and
its edges land inside tiles. Speed is never asserted here: that is ``nox -s bench``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from harness.abi import MAX_THREADS
from harness.artifact import Artifact
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


def _per_count(inst: Instance, run: Callable[[], Any]) -> dict[int, list[bytes]]:
    out: dict[int, list[bytes]] = {}
    for n in COUNTS:
        _threads(inst, n)
        out[n] = _bytes(run())
    return out


def _r(rng: np.random.Generator, *shape: int) -> NDArray[np.float32]:
    return rng.standard_normal(shape).astype(np.float32)


def _assert_all_equal(results: dict[int, list[bytes]]) -> None:
    one = results[1]
    for n, got in results.items():
        assert len(got) == len(one)
        for i, (a, b) in enumerate(zip(got, one, strict=True)):
            assert a == b, f"{n} threads: output {i} differs from 1 thread"


@pytest.mark.parametrize(
    ("N", "C", "OC"),
    [(131, 200, 97), (512, 96, 40), (7, 300, 1100)],
    ids=["ragged", "tall", "wide"],  # tall splits rows, wide splits columns
)
def test_matmul_forward_and_backward_bitwise_across_thread_counts(
    native: Instance, N: int, C: int, OC: int
) -> None:
    """matmul forward, dinp, dweight and dbias are bytewise identical on 1, 2 and 3 threads."""
    rng = np.random.default_rng(N * C + OC)
    x, w, b, dout = _r(rng, N, C), _r(rng, OC, C), _r(rng, OC), _r(rng, N, OC)
    k = Kernels(native)
    _assert_all_equal(_per_count(native, lambda: k.matmul_forward(x, w, b)))
    _assert_all_equal(_per_count(native, lambda: k.matmul_backward(dout, x, w)))


def test_attention_bitwise_across_thread_counts(native: Instance) -> None:
    """Attention forward (out, att) and backward (dqkv) are identical on 1, 2 and 3 threads."""
    rng = np.random.default_rng(11)
    B, T, C, NH = 5, 63, 128, 4  # 20 heads: 3 workers take 6, 7 and 7
    qkv, dout = _r(rng, B, T, 3 * C), _r(rng, B, T, C)
    k = Kernels(native)
    _assert_all_equal(_per_count(native, lambda: k.attention_forward(qkv, NH)))
    _threads(native, 1)
    _, att = k.attention_forward(qkv, NH)
    _assert_all_equal(_per_count(native, lambda: k.attention_backward(dout, qkv, att, NH)))


def test_layernorm_and_gelu_bitwise_across_thread_counts(native: Instance) -> None:
    """LayerNorm forward (split by rows) and GELU forward/backward (split by elements, at
    boundaries that fall inside a vector) are identical on 1, 2 and 3 threads."""
    rng = np.random.default_rng(5)
    x, w, b = _r(rng, 1001, 257), _r(rng, 257), _r(rng, 257)
    g, dg = _r(rng, 100_003), _r(rng, 100_003)
    k = Kernels(native)
    _assert_all_equal(_per_count(native, lambda: k.layernorm_forward(x, w, b)))
    _assert_all_equal(_per_count(native, lambda: k.gelu_forward(g)))
    _assert_all_equal(_per_count(native, lambda: k.gelu_backward(dg, g)))


def _train(inst: Instance, steps: int) -> tuple[list[float], bytes]:
    cfg = PRESETS["small"]  # tiny's ops are all below the parallel threshold
    params = init_params(cfg, DEFAULTS, seed=5, dtype=np.float32)
    model = KernelModel.create(inst, cfg, flatten_params(cfg, params))
    rng = np.random.default_rng(3)
    B, T = 8, cfg.block_size
    try:
        losses = []
        for t in range(1, steps + 1):
            x = rng.integers(0, cfg.vocab_size, (B, T)).astype(np.int32)
            y = rng.integers(0, cfg.vocab_size, (B, T)).astype(np.int32)
            losses.append(model.train_step(x, y, 1e-3, DEFAULTS, t))
        flat = np.concatenate([v.ravel() for v in model.params().values()])
        return losses, flat.tobytes()
    finally:
        model.free()


def test_train_steps_bitwise_across_thread_counts(native: Instance) -> None:
    """Three train steps of the small preset: the same losses and parameters on 1, 2, 3 threads,
    and the same again on a second run at 2 threads (deterministic for a given count)."""
    runs: dict[int, list[tuple[list[float], bytes]]] = {}
    for n in (*COUNTS, 2):
        _threads(native, n)
        runs.setdefault(n, []).append(_train(native, 3))
    for n, got in runs.items():
        for losses, params in got:
            assert losses == runs[1][0][0], f"{n} threads: losses differ"
            assert params == runs[1][0][1], f"{n} threads: parameters differ"
    assert len(runs[2]) == 2


@pytest.mark.parametrize("bad", [0, -1, MAX_THREADS + 1, 1 << 30])
def test_bad_thread_count_is_refused_and_changes_nothing(native: Instance, bad: int) -> None:
    """n <= 0 or n above the pool size returns -1 and leaves the count in effect as it was."""
    _threads(native, 2)
    assert native.call("tg_set_threads", bad) == -1
    assert native.call("tg_get_threads") == 2


def test_pool_grows_and_shrinks(native: Instance) -> None:
    """Going up to the pool size and back down keeps every count usable (workers are joined and
    restarted, never leaked into a hang)."""
    k = Kernels(native)
    rng = np.random.default_rng(1)
    x, w = _r(rng, 200, 150), _r(rng, 170, 150)
    _threads(native, 1)
    want = k.matmul_forward(x, w, None).tobytes()
    for n in (MAX_THREADS, 1, 4, 2, 3):
        _threads(native, n)
        assert k.matmul_forward(x, w, None).tobytes() == want, f"{n} threads"


@pytest.mark.parametrize("name", ["wasm32", "wasm64"])
def test_freestanding_wasm_reports_one_thread(built: dict[str, Artifact], name: str) -> None:
    """The freestanding wasm builds have no threads: any valid request is 1 in effect, a bad one
    is still -1."""
    inst = load_in_process(built[name])
    try:
        assert inst.call("tg_get_threads") == 1
        assert inst.call("tg_set_threads", 4) == 1
        assert inst.call("tg_set_threads", 0) == -1
        assert inst.call("tg_get_threads") == 1
    finally:
        inst.close()
