"""Check kind ``determinism``: an op run twice, on two fresh devices, gives bitwise-equal output.

Per op (``[check.determinism] ops``, default: every op of the ops check), the ``preset`` shape
case's inputs (:func:`harness.checks.ops.prepare`, the same seeded draw) run once on the cell's
instance and once on a cold instance: the artifact opened in a fresh process of the host
(``CellContext.cold_instance``). For the ``webgpu`` format that is a new browser, adapter and
device, with every shader compiled again: the question is whether the kernels' output depends on
anything but their inputs (a race between invocations, an uninitialised workgroup variable, a
reduction order that varies with scheduling). One row per output: ``metric =
"mismatched_elements"``, the number of elements whose float32 bits differ (NaN payloads
included), ``pass`` at 0. A host without a fresh process, or an op the binding lacks, is a
``skipped`` row with the reason.

With ``threads = [1, 2, ...]`` (the binding's thread setter: ``tg_set_threads``, or a
``[threads]`` table), each op also runs on :data:`THREADS_CASE` (sizes that split: every op's
work is above tinygpt.h's ``TG_PAR_MIN_WORK``, and no split is even: 601 rows, 3 heads, 453
channels) ``repeats`` times at every count, on the cell's instance. Row ``<op>:threads=<n>``:

- every run's outputs within the ops check's tolerance of the float64 reference (a worker's
  range that drops its remainder leaves elements unwritten);
- with ``across_threads = "bitwise"`` (the default, tinygpt.h's promise: every partition keeps
  each output's summation order) ``mismatched_elements`` against the 1-thread bytes; with
  ``"parity"`` (a library whose split reorders a sum) against the count's own first run, so a
  race still shows;
- ``threads=<n>:split``: with the binding's regions counter (``tg_parallel_regions``, or
  ``[threads] regions``), at least one parallel region ran on a pool worker over all the ops
  at ``n`` (a pool that runs everything on the caller gives one thread's bytes at every count);
  ``require_split = false`` makes it a ``measured`` row, for a library whose thresholds are
  above these sizes.

A race between workers shows only when they overlap: ``repeats`` (default 3) gives it more
chances; a pass is evidence, not proof. The count goes back to 1 afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from harness.abi import regions_between
from harness.checks import ops as ops_check
from harness.checks.base import CellContext
from harness.hosts.base import HostError
from harness.kernel import Kernels, NotBound, set_threads
from harness.rundir.rows import Row, Status

CHECK = "determinism"
CASE = "preset"  # the cell preset's own dims: the shapes that matter
_OPTIONS = {"seed", "ops", "threads", "across_threads", "repeats", "require_split"}
ACROSS = ("bitwise", "parity")
# Every op's work above TG_PAR_MIN_WORK (2e6: 272,253 GELU elements, 8 x 601 x 453 LayerNorm
# flops, a 601 x 453 x 97 matmul, 3 heads of 67 x 67 x 151), and uneven at 2 and 3 threads.
THREADS_CASE = ops_check.Case(
    "threads", {"B": 1, "T": 67, "NH": 3, "hs": 151, "C": 453, "N": 601, "OC": 97, "V": 131}
)


def validate_options(options: Mapping[str, Any]) -> None:
    """Raise ValueError naming the bad field of a ``[check.determinism]`` table."""
    ops_check.validate_op_options(CHECK, options, _OPTIONS, ops_check.OPS)
    threads = options.get("threads", [1])
    if (
        not isinstance(threads, list)
        or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in threads)
        or 1 not in threads
        or len(set(threads)) != len(threads)
    ):
        raise ValueError(
            f"[check.{CHECK}] threads: expected distinct positive integers including 1 (the "
            f"count the others are compared with), got {threads!r}"
        )
    across = options.get("across_threads", ACROSS[0])
    if across not in ACROSS:
        raise ValueError(f"[check.{CHECK}] across_threads: {across!r} is not one of {ACROSS}")
    repeats = options.get("repeats", 3)
    if not isinstance(repeats, int) or isinstance(repeats, bool) or not 1 <= repeats <= 100:
        raise ValueError(f"[check.{CHECK}] repeats: expected 1 to 100 runs, got {repeats!r}")
    if not isinstance(options.get("require_split", True), bool):
        raise ValueError(f"[check.{CHECK}] require_split: expected true or false")


def mismatched(a: Any, b: Any) -> int:
    """How many elements of ``a`` and ``b`` differ bit for bit (a shape mismatch: all)."""
    # 1-d at least: a 0-d array (crossentropy's mean loss) cannot be viewed as bytes
    x, y = np.atleast_1d(np.asarray(a)), np.atleast_1d(np.asarray(b))
    if x.shape != y.shape or x.dtype != y.dtype:
        return max(x.size, y.size)
    if x.size == 0:
        return 0
    bx, by = x.view(np.uint8).reshape(x.size, -1), y.view(np.uint8).reshape(y.size, -1)
    return int(np.count_nonzero((bx != by).any(axis=1)))


def run(ctx: CellContext) -> Iterator[Row]:
    """One row per op output: the mismatched elements between two devices' runs; then, with a
    ``threads`` axis, one row per op and count (module docstring)."""
    validate_options(ctx.options)
    yield from _device_rows(ctx)
    threads = tuple(ctx.options.get("threads", [1]))
    if len(threads) > 1:
        yield from _thread_rows(ctx, sorted(threads))


def _device_rows(ctx: CellContext) -> Iterator[Row]:
    """The cell's instance against a fresh process of its host, on the preset case."""
    seed = int(ctx.options.get("seed", 0))
    ops = list(ctx.options.get("ops", list(ops_check.OPS)))
    case = next(c for c in ops_check.cases(ctx.preset, seed) if c.name == CASE)
    first = Kernels(ctx.instance)
    runs: dict[str, tuple[ops_check.Prepared, dict[str, Any]]] = {}
    for op in ops:
        try:
            prepared = ops_check.prepare(first, op, case, seed)
        except NotBound as exc:
            yield ctx.row(CHECK, op, "skipped", detail=f"{op}: not bound: {exc}")
            continue
        runs[op] = (prepared, ops_check.SPECS[op].run(first, prepared.inputs))
    if not runs:
        return
    if ctx.cold_instance is None:
        for op in runs:
            yield ctx.row(CHECK, op, "skipped", detail=f"host {ctx.host} has no fresh process")
        return
    try:
        with ctx.cold_instance() as cold:
            second = Kernels(cold)
            again = {op: ops_check.SPECS[op].run(second, p.inputs) for op, (p, _) in runs.items()}
    except HostError as exc:
        for op in runs:
            yield ctx.row(CHECK, op, "error", detail=f"{op}: the second device: {exc}")
        return
    where = f"{CASE} case ({case.describe()}), the cell's instance vs a fresh {ctx.host} process"
    for op, (_, got) in runs.items():
        for name, value in got.items():
            n = mismatched(value, again[op].get(name))
            size = int(np.asarray(value).size)
            yield ctx.row(
                CHECK,
                f"{op}.{name}",
                "pass" if n == 0 else "fail",
                metric="mismatched_elements",
                value=float(n),
                detail=f"{n} of {size} elements differ bitwise; {where}",
            )


def _thread_rows(ctx: CellContext, counts: list[int]) -> Iterator[Row]:
    """Each op on :data:`THREADS_CASE`, ``repeats`` times at every count (module docstring)."""
    seed = int(ctx.options.get("seed", 0))
    ops = list(ctx.options.get("ops", list(ops_check.OPS)))
    bitwise = ctx.options.get("across_threads", ACROSS[0]) == "bitwise"
    repeats = int(ctx.options.get("repeats", 3))
    control = ctx.artifact.bound().threads
    kernels = Kernels(ctx.instance)
    prepared: dict[str, ops_check.Prepared] = {}
    for op in ops:
        try:
            prepared[op] = ops_check.prepare(kernels, op, THREADS_CASE, seed)
        except NotBound:
            continue  # said once, by the device rows
    one: dict[str, dict[str, Any]] = {}  # op -> its 1-thread outputs (the first run)
    lost = ""  # the row whose call lost the instance (a hang, a crash): the rest is not run
    try:
        for n in counts:
            why = "" if lost else set_threads(ctx.instance, n)
            if why and control is not None and ctx.artifact.bound().thread_control is not None:
                why = f"{why}, though its binding's [threads] max is {control.max}"
                status: Status = "fail" if n <= control.max else "skipped"
            else:
                status = "skipped"
            regions = control.regions if control is not None else ""
            before = ctx.instance.call(regions) if regions and not (lost or why) else None
            for p in prepared.values():
                if lost or why:
                    said = why or f"not run: the instance was lost at {lost} (that row says how)"
                    yield ctx.row(CHECK, f"{p.op}:threads={n}", status, detail=said)
                    continue
                row = _thread_row(ctx, kernels, p, n, repeats, one if bitwise else None)
                if row.status == "error" and not ctx.instance.usable():  # a hang, a crash
                    lost = row.subject
                yield row
            if n > 1 and not lost and not why:
                yield _split_row(ctx, n, before)
    finally:  # not on a lost instance (nor one an interrupt took): that would hide its cause
        if not lost and ctx.instance.usable():
            set_threads(ctx.instance, 1)


def _thread_row(
    ctx: CellContext,
    kernels: Kernels,
    p: ops_check.Prepared,
    n: int,
    repeats: int,
    one: dict[str, dict[str, Any]] | None,
) -> Row:
    """Row ``<op>:threads=<n>``: ``repeats`` runs, each within the reference's tolerance and
    bitwise equal to the 1-thread run (``one``, filled at n = 1), or with ``one`` None to this
    count's first run."""
    subject = f"{p.op}:threads={n}"
    where = f"{THREADS_CASE.describe()}, {repeats} run(s) at {n} thread(s)"
    base = None if one is None else one.get(p.op)
    worst, failure, differing = 0, "", 0
    for i in range(repeats):
        try:
            found = ops_check.SPECS[p.op].run(kernels, p.inputs)
        except HostError as exc:
            return ctx.row(CHECK, subject, "error", detail=f"{where}: run {i + 1}: {exc}")
        bad = [r for r in ops_check.compare_outputs(kernels, p, found) if not r.ok]
        if bad and not failure:
            failure = f"run {i + 1}: {bad[0].message}; "
        if base is None:
            base = found
            continue
        here = max([0, *(mismatched(v, base.get(k)) for k, v in found.items())])
        worst, differing = max(worst, here), differing + (here > 0)
    if one is not None and n == 1 and base is not None:
        one[p.op] = base
    against = "the 1-thread run" if one is not None else "this count's first run"
    compared = repeats if one is not None and n > 1 else repeats - 1
    detail = (f"{failure}{worst} elements differ bitwise from {against} (in {differing} of "
              f"{compared} runs compared); {where}")  # fmt: skip
    status: Status = "pass" if worst == 0 and not failure else "fail"
    return ctx.row(CHECK, subject, status, metric="mismatched_elements", value=float(worst),
                   detail=detail)  # fmt: skip


def _split_row(ctx: CellContext, n: int, before: object) -> Row:
    """Row ``threads=<n>:split``: did any region run on a pool worker over the ops at ``n``?"""
    subject = f"threads={n}:split"
    control = ctx.artifact.bound().threads
    if before is None or control is None:
        why = ("the binding names no regions counter ([threads] regions), so a pool that never "
               "splits cannot be told apart")  # fmt: skip
        listed = [e for e in ctx.artifact.bound().extra_exports if "region" in e.lower()]
        if listed:
            why += f" ([exports] lists {', '.join(listed)}: if it counts them, name it there)"
        return ctx.row(CHECK, subject, "skipped", detail=why)
    regions = regions_between(before, ctx.instance.call(control.regions))
    required = bool(ctx.options.get("require_split", True))
    status: Status = "pass" if regions > 0 else ("fail" if required else "measured")
    said = (f"{regions} parallel regions ran on pool workers over every op at {n} threads "
            f"({control.regions})")  # fmt: skip
    if regions == 0:
        said += ": every region ran on the caller, so the n-thread bytes are 1 thread's"
    return ctx.row(CHECK, subject, status, metric="regions", value=float(regions), detail=said)
