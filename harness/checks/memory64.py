"""Check kind ``memory64``: the ops and a train step with every buffer above 4 GiB.

Memory64's only point is addressing past 4 GiB, yet every preset's buffers sit below it, so a
pointer or size truncated to 32 bits passes every other check. This one first *places* the
cell's allocations above the boundary, then runs the ops parity cases and one train step there:

1. A 16-byte probe shows where the allocator hands out memory now. If it is below 4 GiB, a
   ballast of ``4 GiB - probe`` bytes is allocated: the allocator has no hole that large, so it
   grows linear memory past the boundary (the bundled allocator, ``tg_alloc.c``, appends the
   grown pages after the old end).
2. Every hole left below 4 GiB (the heap's first pages, a split block's tail) is plugged: sizes
   from :data:`PLUG_START` bytes down to 16 are allocated while they land below 4 GiB. A size
   that lands above is freed and the next smaller one tried.
3. The ops (:data:`OPS`, through the ops check's :func:`harness.checks.ops.run_cases`, with its
   diagnosis of a failure, on the ``one``, ``odd``, ``simd_tail``, ``random`` and ``preset``
   cases) and the smoke check's train step (forward, backward, grad norm, AdamW, against the
   float64 reference) run through a recording view of the instance that notes every pointer
   the harness allocates and every model pointer the library returns; a ``placement`` row
   fails if any lies below 4 GiB, because then the cell did not test what it claims.
4. The ballast and the plugs are freed (linear memory cannot shrink: the pages stay reserved
   but untouched; docs/memory64.md has what each host pays).

A 32-bit artifact is ``incompatible`` (its memory ends at 4 GiB). A host or build whose memory
cannot grow that far (em-wasm64's fixed 1 GiB) is ``incompatible`` with the allocator's result:
a module's ``memory.grow`` fails with -1 and no message, so the row names the request and the
failing call. Native artifacts run too: their addresses are the process's, usually above 4 GiB
already, and the probe says so (no ballast).
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from harness.checks import smoke
from harness.checks.base import CellContext
from harness.checks.ops import Worst, cases, run_cases, validate_op_options
from harness.hosts.base import Instance, InstanceView, Scalar
from harness.kernel import Kernels, NotBound
from harness.rundir.rows import Row
from reference.defaults import DEFAULTS

CHECK = "memory64"
BOUNDARY = 1 << 32  # 4 GiB: the first address a 32-bit pointer cannot hold
OPS: tuple[str, ...] = (
    "matmul_forward", "matmul_backward", "layernorm_forward", "layernorm_backward",
    "attention_forward", "attention_backward", "crossentropy_forward", "crossentropy_backward",
    "adamw_update",
)  # fmt: skip
CASES: tuple[str, ...] = ("one", "odd", "simd_tail", "random", "preset")
# The largest hole plugged. The bundled wasm heap's first free block is under 2 MiB (31 initial
# pages minus data and stack); 64 MiB leaves room for a library whose heap starts larger.
PLUG_START = 64 << 20
PLUG_LIMIT = 4096  # allocations spent plugging before the check gives up (a runaway allocator)
# The library calls whose ptr result is a buffer the library allocated (KernelModel's handle and
# its flat buffers): recorded beside the harness's own allocations.
MODEL_POINTERS = frozenset({"tg_model_create", "tg_model_params", "tg_model_grads",
                            "tg_model_logits"})  # fmt: skip
_OPTIONS = {"seed", "ops"}


def validate_options(options: Mapping[str, Any]) -> None:
    """Raise ValueError naming the bad field of a ``[check.memory64]`` table."""
    validate_op_options("memory64", options, _OPTIONS, OPS)


class Recording(InstanceView):
    """A view of ``inner`` that notes every buffer address the check's work uses."""

    def __init__(self, inner: Instance) -> None:
        """Delegate everything to ``inner``; record its allocations and model pointers."""
        super().__init__(inner)
        self.pointers: list[int] = []

    def alloc(self, nbytes: int) -> int:
        """Allocate through ``inner`` and record the address."""
        ptr = self.inner.alloc(nbytes)
        self.pointers.append(ptr)
        return ptr

    def call(self, name: str, *args: Scalar) -> Scalar | None:
        """Call through ``inner``; a model pointer the library returns is recorded."""
        result = self.inner.call(name, *args)
        if name in MODEL_POINTERS and result:
            self.pointers.append(int(result))
        return result


@dataclasses.dataclass
class Placement:
    """What placing the allocations above the boundary took."""

    held: list[int]  # the ballast and the plugs, freed by :func:`release`
    ballast_bytes: int
    plug_bytes: int
    probe: int  # where a 16-byte allocation landed before any ballast
    first_above: int  # where a 16-byte allocation lands once placed
    seconds: float

    def describe(self) -> str:
        """One line for a row's detail."""
        ballast = (f"ballast of {self.ballast_bytes} bytes" if self.ballast_bytes
                   else "no ballast (the allocator was above 4 GiB already)")  # fmt: skip
        return (
            f"probe at {self.probe:#x}; {ballast}; {len(self.held) - bool(self.ballast_bytes)} "
            f"plug(s) of {self.plug_bytes} bytes below 4 GiB; next allocation at "
            f"{self.first_above:#x}; placed in {self.seconds:.3f} s"
        )


class CannotPlace(Exception):
    """The instance's memory cannot reach past 4 GiB; the message says what refused."""


def _alloc_or_none(inst: Instance, nbytes: int) -> int | None:
    """Allocate ``nbytes`` with the binding's allocator, as :meth:`Instance.alloc` does, but
    return None where it would raise: the allocator returned 0 (out of memory)."""
    name, _free, unit = inst.artifact.allocator()
    ptr = inst.call(name, -(-nbytes // unit))
    return int(ptr) if ptr else None


def place_above(inst: Instance, boundary: int = BOUNDARY) -> Placement:
    """Allocate a ballast and plugs so that ``inst``'s next allocations land at >= ``boundary``.

    Raises :class:`CannotPlace` when the allocator returns 0 for the ballast (the memory cannot
    grow that far) or cannot be pushed above the boundary within :data:`PLUG_LIMIT` plugs.
    """
    start = time.perf_counter()
    held: list[int] = []
    probe = inst.alloc(16)
    inst.free(probe)
    ballast = 0
    if probe < boundary:
        ballast = boundary - probe
        ptr = _alloc_or_none(inst, ballast)
        if ptr is None:
            name = inst.artifact.allocator()[0]
            raise CannotPlace(
                f"{name}({ballast}) returned 0 (out of memory): this host and build cannot "
                f"hold memory past 4 GiB (the probe allocation was at {probe:#x}; a failed "
                "memory.grow returns -1 to the module, with no message; a build with a fixed "
                "memory, em-wasm64's 1 GiB, has nothing to grow; docs/memory64.md)"
            )
        held.append(ptr)
    plug_bytes, size, spent = 0, PLUG_START, 0
    while size >= 16:
        if spent >= PLUG_LIMIT:
            release(inst, held)
            raise CannotPlace(f"{PLUG_LIMIT} plugs left the allocator below 4 GiB")
        spent += 1
        ptr = _alloc_or_none(inst, size)
        if ptr is not None and ptr < boundary:
            held.append(ptr)
            plug_bytes += size
            continue
        if ptr is not None:
            inst.free(ptr)
        size //= 2
    first = inst.alloc(16)
    inst.free(first)
    if first < boundary:
        release(inst, held)
        raise CannotPlace(f"after plugging, a 16-byte allocation still lands at {first:#x}")
    return Placement(held, ballast, plug_bytes, probe, first, time.perf_counter() - start)


def release(inst: Instance, held: Sequence[int]) -> None:
    """Free the ballast and plugs (in reverse, so neighbours coalesce as they go)."""
    for ptr in reversed(held):
        inst.free(ptr)


def _op_rows(ctx: CellContext, kernels: Kernels, ops: Sequence[str], seed: int) -> Iterator[Row]:
    """One row per op: pass when every output of every case is within its ops tolerance (the
    ops check's aggregation, so its case filters and its diagnosis of a failure apply)."""
    chosen = [c for c in cases(ctx.preset, seed, include_large=False) if c.name in CASES]
    # run_cases yields each op's items together: one row per op, in the order of ``ops``.
    for op, items in itertools.groupby(run_cases(kernels, ops, chosen, seed), lambda i: i[0]):
        outputs: list[Worst] = []
        for _op, _output, agg in items:
            if isinstance(agg, NotBound):  # the library lacks the op: as in the ops check
                yield ctx.row(CHECK, f"op:{op}", "skipped", detail=str(agg))
            elif isinstance(agg, str):
                yield ctx.row(CHECK, f"op:{op}", "error", detail=agg)
            else:
                outputs.append(agg)
        if not outputs:
            continue
        worst = max(agg.metrics["max_abs_err"] for agg in outputs)
        failure = next((agg.failure for agg in outputs if agg.failure), "")
        n = sum(agg.n_cases for agg in outputs)
        yield ctx.row(
            CHECK, f"op:{op}", "fail" if failure else "pass", metric="max_abs_err", value=worst,
            detail=failure or f"{n} outputs over {len(chosen)} cases within the ops tolerance",
        )  # fmt: skip


def run(ctx: CellContext) -> Iterator[Row]:
    """Place the cell's allocations above 4 GiB, run the ops and a train step there, free."""
    validate_options(ctx.options)
    seed = int(ctx.options.get("seed", 0))
    ops = list(ctx.options.get("ops", list(OPS)))
    if ctx.artifact.ptr_width != 64:
        yield ctx.row(CHECK, "placement", "incompatible",
                      detail=f"{ctx.artifact.name} has {ctx.artifact.ptr_width}-bit pointers: its "
                      "memory ends at 4 GiB, so no buffer can lie above it")  # fmt: skip
        return
    started = time.perf_counter()
    try:
        placed = place_above(ctx.instance)
    except CannotPlace as exc:
        yield ctx.row(CHECK, "placement", "incompatible", detail=str(exc))
        return
    view = Recording(ctx.instance)
    rows: list[Row] = []
    try:
        rows += _op_rows(ctx, Kernels(view), ops, seed)
        if ctx.artifact.bound().abi:  # the train step drives tinygpt.h's tg_model_* handle
            step_ctx = dataclasses.replace(ctx, instance=view)
            rng = np.random.default_rng(int(ctx.options.get("seed", DEFAULTS.seed)))
            step = smoke.train_step_rows(step_ctx, rng)
            rows += [dataclasses.replace(r, check=CHECK) for r in step]
        else:
            why = "not bound: the binding has no tinygpt.h model handle"
            rows.append(ctx.row(CHECK, "train_step", "skipped", detail=why))
    finally:
        release(ctx.instance, placed.held)
    below = [p for p in view.pointers if p < BOUNDARY]
    lowest = min(view.pointers, default=0)
    yield ctx.row(
        CHECK, "placement", "fail" if below or not view.pointers else "pass",
        metric="lowest_buffer", value=float(lowest), unit="byte",
        detail=(f"{len(below)} of {len(view.pointers)} buffers below 4 GiB (first at "
                f"{below[0]:#x}): the check did not run above the boundary; " if below else
                f"all {len(view.pointers)} buffers at or above 4 GiB (lowest {lowest:#x}); ")
        + placed.describe(),
    )  # fmt: skip
    yield from rows
    yield ctx.row(CHECK, "cost:ballast", "measured", metric="ballast_bytes",
                  value=float(placed.ballast_bytes), unit="byte",
                  detail=placed.describe())  # fmt: skip
    yield ctx.row(CHECK, "cost:seconds", "measured", metric="wall_s",
                  value=time.perf_counter() - started, unit="s",
                  detail="placement, ops, train step and release, in this cell")  # fmt: skip
