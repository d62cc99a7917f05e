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
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from harness.checks import ops as ops_check
from harness.checks.base import CellContext
from harness.hosts.base import HostError
from harness.kernel import Kernels, NotBound
from harness.rundir.rows import Row

CHECK = "determinism"
CASE = "preset"  # the cell preset's own dims: the shapes that matter
_OPTIONS = {"seed", "ops"}


def validate_options(options: Mapping[str, Any]) -> None:
    """Raise ValueError naming the bad field of a ``[check.determinism]`` table."""
    ops_check.validate_op_options(CHECK, options, _OPTIONS, ops_check.OPS)


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
    """One row per op output: the mismatched elements between two devices' runs."""
    validate_options(ctx.options)
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
