"""Accumulator probe: does a kernel ADD into the buffers its binding declares ``accumulator``?

The kernel client zeroes an accumulator before the call (:meth:`harness.kernel.Kernels._invoke`),
so a kernel that overwrites it (``dx = g`` instead of ``dx += g``) returns the very values an
accumulating one does and passes parity. In a model, though, that kernel drops every gradient
added into the buffer before it (a residual branch, a weight used twice): training goes wrong
where no op check looks.

The probe calls the op once more, with each accumulator prefilled with quiet NaN instead of
zero. A kernel that accumulates reads the buffer, and NaN + x is NaN, so every element it
touches comes back NaN; an element it does not touch is still the prefill. So every element must
come back NaN, exactly, with no tolerance: a number in any element was written without reading
the buffer. The verdict needs no reference either, only the binding's roles.

To change the prefill without a hook in the kernel client, the probe runs the op's ordinary
client call (the ops check's own :data:`~harness.checks.ops.SPECS` on a
:class:`~harness.checks.ops.Prepared` case) over :class:`_NaNPrefill`, a view of the instance
that overwrites the accumulator buffers with NaN just before the op's export is called and reads
them back just after. The client still builds every argument itself (shapes, layouts, NULL for
an unused optional buffer), so the probe's call is the parity check's call but for the prefill.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from harness.bindings import CallBinding
from harness.bindings.canonical import OPS as CANONICAL
from harness.hosts.base import Instance, InstanceView, Scalar
from harness.kernel import Kernels

if TYPE_CHECKING:  # ops.py imports this module: at run time the import would be circular
    from harness.checks.ops import Case, Prepared

# The ops check's case to probe on (harness.checks.ops.cases): small, with odd sizes that are no
# multiple of a SIMD width (a vectorised body and its scalar tail both write), and with a bias,
# so matmul_backward's optional db is probed too (the ``odd`` case passes NULL for it).
PROBE_CASE = "simd_tail"
# A quiet NaN: any arithmetic on it gives NaN, so only a store that never read it can remove it.
PREFILL = np.float32(np.nan)


@dataclass(frozen=True)
class AccumulatorFinding:
    """One accumulator of one op after the NaN-prefilled call.

    ``written`` elements of ``total`` came back as numbers (0 when the kernel accumulates);
    ``message`` says so either way, naming where the role comes from.
    """

    op: str
    arg: str  # the canonical argument name (``dx``, ``dW``, ...)
    written: int
    total: int
    message: str

    @property
    def ok(self) -> bool:
        """True when every element stayed NaN: the kernel read the buffer it adds into."""
        return self.written == 0

    @property
    def subject(self) -> str:
        """The row subject: ``<op>.<arg>:accumulates``."""
        return f"{self.op}.{self.arg}:accumulates"


def accumulators(call: CallBinding) -> tuple[str, ...]:
    """The canonical arguments ``call``'s binding gives the ``accumulator`` role, in export order.

    An argument a binding switched to ``output`` (lib2's ``dx``) is no accumulator: its kernel
    may overwrite it, and the parity check's NaN sentinel already checks that it writes it all.
    """
    return tuple(a for a in call.args if call.roles[a] == "accumulator")


class _NaNPrefill(InstanceView):
    """A view of ``inner`` that NaN-fills ``call``'s accumulators just before its export runs.

    Everything else is delegated unchanged. The view learns each buffer's size from the
    client's write into it (the client writes a whole buffer at its address, once, right after
    allocating it); an allocation resets it, so an address the allocator reuses never keeps a
    stale size. After the export returns, each accumulator is read back into :attr:`found`.
    """

    def __init__(self, inner: Instance, call: CallBinding) -> None:
        """Wrap ``inner``; probe the calls of ``call.export``."""
        super().__init__(inner)
        self.target = call
        self.sizes: dict[int, int] = {}  # address -> bytes the client wrote there
        self.found: dict[str, tuple[int, int]] = {}  # arg -> (written, total) elements
        self.calls = 0

    def alloc(self, nbytes: int) -> int:
        """Allocate through ``inner``; the new buffer's size is unknown until it is written."""
        ptr = self.inner.alloc(nbytes)
        self.sizes[ptr] = 0
        return ptr

    def free(self, ptr: int) -> None:
        """Free through ``inner`` and forget the buffer."""
        self.sizes.pop(ptr, None)
        self.inner.free(ptr)

    def write(self, ptr: int, data: bytes) -> None:
        """Write through ``inner``, noting how many bytes the buffer at ``ptr`` holds."""
        self.sizes[ptr] = max(self.sizes.get(ptr, 0), len(data))
        self.inner.write(ptr, data)

    def call(self, name: str, *args: Scalar) -> Scalar | None:
        """Call through ``inner``; the probed export gets NaN accumulators, then is read back."""
        if name != self.target.export or len(args) != len(self.target.args):
            return self.inner.call(name, *args)
        self.calls += 1
        probed: dict[str, tuple[int, int]] = {}  # arg -> (address, elements)
        for arg in accumulators(self.target):
            ptr = int(args[self.target.args.index(arg)] or 0)
            n = self.sizes.get(ptr, 0) // 4  # float32 elements; 0 for NULL (an unused bias)
            if ptr and n:
                self.inner.write(ptr, np.full(n, PREFILL, np.float32).tobytes())
                probed[arg] = (ptr, n)
        result = self.inner.call(name, *args)
        for arg, (ptr, n) in probed.items():
            back = np.frombuffer(self.inner.read(ptr, n * 4), dtype=np.float32)
            self.found[arg] = (int(np.count_nonzero(~np.isnan(back))), n)
        return result


def _role_source(call: CallBinding, binding: str, arg: str) -> str:
    """Where ``arg``'s accumulator role comes from: the canonical default or a ``roles`` entry."""
    where = f"the {binding} binding ({call.export}, line {call.line})"
    if CANONICAL[call.op].args[arg].role == "accumulator":
        return f"{where}, by the canonical default of {call.op}.{arg}"
    return f"{where}, by its roles table"


def _message(call: CallBinding, binding: str, arg: str, written: int, total: int) -> str:
    op, source = call.op, _role_source(call, binding, arg)
    if not written:
        return (
            f"{op}: {arg} is an accumulator in {source}; all {total} elements stayed NaN over a "
            "NaN prefill: the kernel adds into it"
        )
    return (
        f"{op}: {arg} is an accumulator in {source}, but the kernel wrote {written} of {total} "
        f"elements over a NaN prefill without adding to it: it overwrites (parity's zeroed "
        f"buffer hides this; in a model it drops the gradient already there). If the library "
        f'means to overwrite, declare roles = {{ {arg} = "output" }} in its binding'
    )


def probe_accumulators(kernels: Kernels, prepared: Prepared) -> list[AccumulatorFinding]:
    """Call ``prepared``'s op once with its accumulators prefilled with NaN; one result per
    accumulator the call passed (ok or not), in the export's argument order.

    Empty when the op's binding declares no accumulator. An optional accumulator the case
    leaves out (a matmul's ``db`` without bias: NULL) or an empty one is not judged. The op's
    binding comes from ``kernels`` (its override included); a host failure raises as from any
    client call (HostError, or HostCrashed/HostTimeout when the instance is gone).
    """
    from harness.checks.ops import SPECS  # ops.py imports this module: import at call time

    call = kernels.bound(prepared.op)
    if not accumulators(call):
        return []
    view = _NaNPrefill(kernels.instance, call)
    SPECS[prepared.op].run(Kernels(view, kernels.override), prepared.inputs)
    if view.calls != 1:  # the client calls each op's export once: else no buffer was judged
        raise RuntimeError(
            f"{prepared.op}: the accumulator probe saw {view.calls} calls of {call.export}, "
            "expected 1"
        )
    binding = kernels.instance.artifact.bound().name
    found = []
    for arg in accumulators(call):
        if arg in view.found:
            written, total = view.found[arg]
            message = _message(call, binding, arg, written, total)
            found.append(AccumulatorFinding(call.op, arg, written, total, message))
    return found


def overwritten_accumulators(kernels: Kernels, prepared: Prepared) -> list[AccumulatorFinding]:
    """The accumulators of ``prepared``'s op that its kernel overwrites (see
    :func:`probe_accumulators`): empty when it adds into every one, or has none."""
    return [f for f in probe_accumulators(kernels, prepared) if not f.ok]


def probe_case(case_list: Sequence[Case]) -> Case:
    """The case to probe on among the cell's cases: :data:`PROBE_CASE` when there, else the
    first (the verdict needs only some element written, so any case will do)."""
    if not case_list:
        raise ValueError("no case to probe the accumulators on")
    return next((c for c in case_list if c.name == PROBE_CASE), case_list[0])
