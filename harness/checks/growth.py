"""Check kind ``growth``: does a threaded build stay right when its memory grows mid-session?

TinyGPT's real out-of-bounds bug came from memory growth meeting pthread workers (issue 13). The
check puts the artifact's whole pool to work, grows memory, and checks parity again:

1. ``growth:before``: ``tg_set_threads(pool)`` (the caller plus every pool worker:
   ``-sPTHREAD_POOL_SIZE=N`` gives N + 1; a build without that flag asks for
   :data:`NATIVE_THREADS`), then a matmul big enough to be split across them
   (:data:`MATMUL_SHAPE`, above ``TG_PAR_MIN_WORK``) against the float64 reference. With more
   than one thread in effect the matmul must also have run a parallel region on a pool worker
   (``tg_parallel_regions`` around it): a pool that ran it serially would test growth with no
   worker at work, and fails the row saying so.
2. ``growth:grow``: one ``grow_mib`` MiB allocation (default 64, four times emscripten's default
   16 MiB initial memory, so an emscripten growth build must grow) while the workers are alive
   and parked in the pool; a pattern written across its last bytes reads back equal. The row's
   value is the end address of the buffer.
3. ``growth:after``: the same matmul again, its buffers allocated above the grown region, against
   the reference and bytes-equal to ``before`` (same inputs, same count: the pool's split is
   deterministic, docs/threads.md), and split again.

What can go stale is a host's view of memory, never the module's: wasm threads share one memory
and see its new size themselves. A glue that keeps a view from before the growth fails step 2 or
3 in the host's words (``... is outside memory (16777216 bytes)``) or in the engine's (a
``RangeError``, a ``TypeError`` of the glue); that is a ``fail`` or an ``error`` row, and the
run goes on. A fixed-memory build (em-wasm64) or a native one allocates without growing and
passes: the row's detail says the count in effect and the address range, not whether it grew
(no host reports a memory size).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from harness.abi import MAX_THREADS, regions_between
from harness.artifact import Artifact
from harness.checks.base import CellContext
from harness.kernel import Kernels
from harness.parity import ParityResult, compare
from harness.rundir.rows import Row
from harness.tolerance import op_tolerance
from reference import ops
from reference.defaults import DEFAULTS

CHECK = "growth"
OPTIONS = ("seed", "grow_mib")
DEFAULT_GROW_MIB = 64
# N, C, OC: 2·N·C·OC = 16.8 Mflop, 8x TG_PAR_MIN_WORK, so every pool worker gets rows
MATMUL_SHAPE = (256, 128, 256)
PATTERN_BYTES = 4096  # written across the end of the grown buffer and read back
# the native pool is not fixed at build time: one thread per core, at most the library's pool
NATIVE_THREADS = max(1, min(MAX_THREADS, os.cpu_count() or 1))


def validate_options(options: Mapping[str, Any]) -> None:
    """``[check.growth]`` takes ``seed`` (int >= 0) and ``grow_mib`` (int >= 1)."""
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown}; allowed: {list(OPTIONS)}")
    for key, least in (("seed", 0), ("grow_mib", 1)):
        v = options.get(key, least)
        if isinstance(v, bool) or not isinstance(v, int) or v < least:
            raise ValueError(f"'{key}' must be an integer >= {least}, got {v!r}")


def pool_threads(artifact: Artifact) -> int:
    """The thread count that puts every pool worker to work: an emscripten pool's size plus the
    caller (:meth:`Artifact.thread_limit`), else :data:`NATIVE_THREADS`."""
    return NATIVE_THREADS if artifact.pthread_pool() is None else artifact.thread_limit()


def run(ctx: CellContext) -> Iterator[Row]:
    """Yield ``growth:before``, ``growth:grow`` and ``growth:after``; threads go back to 1."""
    validate_options(ctx.options)
    if not ctx.artifact.bound().abi:  # the pool is tinygpt.h's tg_set_threads
        yield ctx.row(CHECK, "growth:before", "incompatible",
                      detail="growth sets the thread pool through tinygpt.h's tg_set_threads; "
                      f"{ctx.artifact.name}'s binding has no tinygpt.h ABI")  # fmt: skip
        return
    rng = np.random.default_rng(int(ctx.options.get("seed", DEFAULTS.seed)))
    grow = int(ctx.options.get("grow_mib", DEFAULT_GROW_MIB)) << 20
    N, C, OC = MATMUL_SHAPE
    x = rng.standard_normal((N, C)).astype(np.float32)
    W = rng.standard_normal((OC, C)).astype(np.float32)
    b = rng.standard_normal(OC).astype(np.float32)
    expected = ops.matmul_forward(x.astype(np.float64), W.astype(np.float64), b.astype(np.float64))
    tol = op_tolerance("matmul_forward", "out", {"N": N, "C": C, "OC": OC})
    inst = ctx.instance
    kernels = Kernels(inst)
    asked = pool_threads(ctx.artifact)
    got = inst.call("tg_set_threads", asked)
    threads = f"tg_set_threads({asked}) put {got} in effect"
    big = 0

    def split_matmul(subject: str) -> tuple[NDArray[np.float32], Row]:
        """The matmul's output and its row (parity, and the regions it ran on the pool)."""
        r0 = inst.call("tg_parallel_regions")
        out = kernels.matmul_forward(x, W, b)
        regions = regions_between(r0, inst.call("tg_parallel_regions"))
        result = compare("matmul_forward.out", out, expected, tol)
        return out, _matmul_row(ctx, subject, result, threads, got, regions)

    try:
        before, row = split_matmul("growth:before")
        yield row
        big = inst.alloc(grow)
        end = big + grow
        pattern = rng.integers(0, 256, PATTERN_BYTES, dtype=np.uint8).tobytes()
        inst.write(end - PATTERN_BYTES, pattern)
        same = inst.read(end - PATTERN_BYTES, PATTERN_BYTES) == pattern
        back = "read back equal" if same else "read back CHANGED"
        yield _row(ctx, "growth:grow", same, float(end), "end_address",
                   f"{grow >> 20} MiB at [{big:#x}, {end:#x}) with {threads}; the last "
                   f"{PATTERN_BYTES} bytes {back}")  # fmt: skip
        after, row = split_matmul("growth:after")  # its buffers land above the grown one
        equal = after.tobytes() == before.tobytes()
        same_bytes = "bytes equal to" if equal else "bytes DIFFER from"
        ok = row.status == "pass" and equal
        yield _row(ctx, "growth:after", ok, row.value, row.metric,
                   f"{row.detail}; {same_bytes} growth:before")  # fmt: skip
    finally:
        if big:
            inst.free(big)
        if got != 1:
            inst.call("tg_set_threads", 1)


def _matmul_row(ctx: CellContext, subject: str, result: ParityResult, threads: str, got: object,
                regions: int) -> Row:  # fmt: skip
    """The parity row of one growth matmul; with more than one thread in effect it also fails
    when no parallel region ran on a pool worker (the pool at work is the check's premise)."""
    split = not (isinstance(got, int) and got > 1) or regions > 0
    said = (
        f"{regions} parallel region(s) ran on the pool"
        if split
        else f"no parallel region ran on a pool worker: the matmul ran serially with {got} "
        "threads in effect"
    )
    return _row(ctx, subject, result.ok and split, result.max_abs_err, "max_abs_err",
                f"{threads}; {said}; {result.message}")  # fmt: skip


def _row(ctx: CellContext, subject: str, ok: bool, value: float, metric: str, detail: str) -> Row:
    return ctx.row(CHECK, subject, "pass" if ok else "fail", metric=metric, value=value,
                   detail=detail)  # fmt: skip
