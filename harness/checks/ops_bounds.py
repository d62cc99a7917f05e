"""Bounds probe: does a kernel write outside the buffers the client placed for it, or into its
read-only inputs?

A kernel that writes past the end of its output (``y[n]``, a SIMD tail one vector too long, a
row too many) returns the right values in the buffer, so parity passes; the stray bytes land
in whatever the allocator put next, and the damage shows later, blamed on another op (a trap
in the next op's call, a wrong number in a model). A kernel that writes into an input the
binding calls read-only passes parity too (the client never reads inputs back), and in a model
corrupts a tensor another op still needs.

:class:`Guarded` is a view of the instance (the same kind of view as the accumulator probe's)
that allocates every buffer with :data:`GUARD_BYTES` of guard on each side, fills the guards
with a pattern of its own in the same bulk write as the buffer's contents, and after every
export call reads the live buffers back with their guards to compare: one read of the span
they lie in (one op's buffers, allocated in a row, are adjacent). The client's own reads of the
outputs right after the call are served from that read, so the ops check makes FEWER bridge
requests with the probe than without (measured over every op on the small preset, natively:
1,333 against 1,415), and moves 2 KiB more per buffer each way plus the inputs once back.
The verdict needs no reference, only the binding's argument names and roles. The ops check
runs every parity call over it (:func:`harness.checks.ops.run_cases`); the model check every
call, naming the model API's buffers by :data:`harness.kernel.MODEL_BUFFERS`
(:func:`bounds_rows`).

What is caught: any write within :data:`GUARD_BYTES` after the end or before the start of a
buffer the client placed (a contiguous overrun of any length starts inside the guard, so it is
caught however long it is; one float past the end is the smallest); any change to a buffer of
role ``input``. What is not: a write that skips the guard entirely (``y[n + 300]`` alone, a
stride error into another allocation or the kernel's own statics); a write that happens to
store the guard's own bytes back; a write by an export the client did not place buffers for
(the model API's own tensors). An overrun longer than the guard has gone on past it into other
memory: it is caught, but the instance may already be damaged, so the ops check runs the
remaining ops on a fresh instance when it can.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any

import numpy as np

from harness.bindings import CallBinding
from harness.checks.base import CellContext
from harness.hosts.base import Instance, InstanceView, Scalar
from harness.kernel import Kernels
from harness.rundir.rows import Row

# Guard size, each side of every buffer. One float past the end needs 4 bytes and a SIMD tail
# one vector too long 16 (wasm's 128-bit vectors) or 64 (AVX-512). 1 KiB also holds a whole
# extra row of a small preset's [N, C] output (C <= 256 floats) and a stray write up to 255
# floats away, so those are caught without touching another allocation. The cost is bytes in
# writes and reads that are already made (2 KiB per buffer per call, far below one bridge
# round trip), and address space only. A multiple of 64 keeps the allocator's alignment.
GUARD_BYTES = 1024
# The guard's float words: quiet NaNs (a kernel that READS past an input's end then computes a
# NaN, which parity's non-finite stage reports) with a payload drawn per address, so that a
# kernel copying an input's guard into its output's (``y[n] = x[n]``) still changes the bytes
# there, and a computed NaN (the canonical 0x7FC00000, or x86's 0xFFC00000) never matches.
_QNAN = 0x7FC00000
_PAYLOAD = 1 << 22  # the quiet NaN's 22 free mantissa bits; 0 (the canonical NaN) is excluded
# Bytes between the live buffers that one read may carry besides them (see Guarded._read_all).
_SPAN_SLACK = 64 * 1024
# The row subjects' suffixes: ``<op>.<arg>:bounds``, ``<op>.<arg>:input-written``.
BOUNDS = "bounds"
INPUT_WRITTEN = "input-written"
STAGES = (BOUNDS, INPUT_WRITTEN)
EMPTY: Mapping[Any, Any] = MappingProxyType({})


@dataclass(frozen=True)
class BoundsFinding:
    """One buffer of one op call that the kernel wrote outside of, or wrote while read-only.

    ``kind`` is :data:`BOUNDS` or :data:`INPUT_WRITTEN`; ``overran`` is True when the write
    covered a whole guard, so it may have gone on into other memory.
    """

    op: str
    arg: str  # the canonical argument name, or ``<export> argument #i`` when unbound
    kind: str
    message: str
    overran: bool = False
    forward: bool = False  # a bounds finding past the end (else before the start)
    at: int = 0  # the buffer's start

    @property
    def subject(self) -> str:
        """The row's output part: ``<arg>:bounds`` or ``<arg>:input-written``."""
        return f"{self.arg}:{self.kind}"


def _pattern(ptr: int, side: int) -> bytes:
    """The guard bytes before (``side`` 0) or after (1) the buffer at ``ptr``."""
    rng = np.random.default_rng((ptr, side))
    payload = rng.integers(1, _PAYLOAD, GUARD_BYTES // 4, dtype=np.uint32)
    return (payload | np.uint32(_QNAN)).astype("<u4").tobytes()


def _changed(a: bytes, b: bytes) -> np.ndarray:
    """The offsets of the bytes that differ between ``a`` and ``b`` (same length)."""
    return np.flatnonzero(np.frombuffer(a, np.uint8) != np.frombuffer(b, np.uint8))


class Guarded(InstanceView):
    """A view of ``inner`` that puts guards around every buffer it allocates and checks them,
    and the contents of read-only inputs, after every export call (see the module).

    Findings collect in :attr:`findings` until :meth:`take`. Pointers it returns are the
    buffers' starts; the allocations themselves begin :data:`GUARD_BYTES` earlier.
    """

    def __init__(
        self, inner: Instance, known: Mapping[str, Mapping[int, tuple[str, str]]] = EMPTY
    ) -> None:
        """Guard the buffers allocated through this view of ``inner``. ``known`` names the
        buffer arguments of exports the binding does not bind as ops (export -> {index:
        (name, role)}; the model API's :data:`harness.kernel.MODEL_BUFFERS`)."""
        super().__init__(inner)
        self.known = known
        self.guarded_calls = 0  # calls made while buffers of this view were live
        self.sizes: dict[int, int] = {}  # buffer start -> its size in bytes (live buffers)
        self.guards: dict[int, tuple[bytes, bytes]] = {}  # start -> guards written around it
        self.placed: dict[int, bytes] = {}  # start -> the contents the client wrote
        self.after: dict[int, bytes] = {}  # start -> its contents read after the last call
        self.findings: list[BoundsFinding] = []
        self._exports: dict[str, CallBinding] | None = None

    def take(self) -> list[BoundsFinding]:
        """The findings since the last take, oldest first; clears them."""
        found, self.findings = self.findings, []
        return found

    def alloc(self, nbytes: int) -> int:
        """Allocate ``nbytes`` with a guard each side; the guards are written with the data."""
        self.after.clear()
        ptr = self.inner.alloc(nbytes + 2 * GUARD_BYTES) + GUARD_BYTES
        self.sizes[ptr] = nbytes
        return ptr

    def _forget(self, ptr: int) -> int:
        """Drop the bookkeeping of ``ptr``; the address to free in ``inner``."""
        self.after.clear()
        if self.sizes.pop(ptr, None) is None:
            return ptr  # not allocated here (a library's own buffer)
        self.guards.pop(ptr, None)
        self.placed.pop(ptr, None)
        return ptr - GUARD_BYTES

    def free(self, ptr: int) -> None:
        """Free the allocation ``ptr`` lies in."""
        self.inner.free(self._forget(ptr))

    def free_all(self, ptrs: Sequence[int]) -> None:
        """Free them all in one go where ``inner`` can (a pipe host sends every free at once)."""
        self.inner.free_all([self._forget(p) for p in ptrs])

    def write(self, ptr: int, data: bytes) -> None:
        """Write through ``inner``; a buffer's first full write carries its guards with it."""
        self.after.clear()
        size = self.sizes.get(ptr)
        if size is None or len(data) != size:
            self.inner.write(ptr, data)
            return
        self.placed[ptr] = bytes(data)
        if ptr in self.guards:
            self.inner.write(ptr, data)
            return
        guards = self.guards[ptr] = (_pattern(ptr, 0), _pattern(ptr, 1))
        self.inner.write(ptr - GUARD_BYTES, guards[0] + bytes(data) + guards[1])

    def read(self, ptr: int, nbytes: int) -> bytes:
        """Read through ``inner``, or from the check's read when nothing has changed since."""
        got = self.after.get(ptr)
        if got is not None and nbytes <= len(got):
            return got[:nbytes]
        return self.inner.read(ptr, nbytes)

    def call(self, name: str, *args: Scalar) -> Scalar | None:
        """Call through ``inner``, then check every live buffer's guards (and inputs)."""
        self.after.clear()
        for ptr in self.sizes:
            if ptr not in self.guards:  # allocated but never written whole (a padded buffer)
                guards = self.guards[ptr] = (_pattern(ptr, 0), _pattern(ptr, 1))
                self.inner.write(ptr - GUARD_BYTES, guards[0])
                self.inner.write(ptr + self.sizes[ptr], guards[1])
        result = self.inner.call(name, *args)
        self._check(name, args)
        return result

    def _binding(self, export: str, nargs: int) -> CallBinding | None:
        """The artifact's binding of ``export`` taking ``nargs`` arguments, if any."""
        if self._exports is None:
            self._exports = {c.export: c for c in self.artifact.bound().ops.values()}
        call = self._exports.get(export)
        return call if call is not None and len(call.args) == nargs else None

    def _read_all(self) -> dict[int, bytes]:
        """Every live buffer with its guards, by start: in ONE read of the span they lie in when
        it is not much larger than they are (one op's buffers, allocated in a row, usually are;
        on a host whose every read is a round trip, as a page's, reads are the probe's cost),
        else one read per buffer."""
        spans = {p: (p - GUARD_BYTES, p + n + GUARD_BYTES) for p, n in self.sizes.items()}
        if not spans:
            return {}
        lo = min(a for a, _ in spans.values())
        hi = max(b for _, b in spans.values())
        if hi - lo > 2 * sum(b - a for a, b in spans.values()) + _SPAN_SLACK:
            return {p: self.inner.read(a, b - a) for p, (a, b) in spans.items()}
        whole = self.inner.read(lo, hi - lo)
        return {p: whole[a - lo : b - lo] for p, (a, b) in spans.items()}

    def _check(self, export: str, args: tuple[Scalar, ...]) -> None:
        """Read every live buffer with its guards; note each change as a finding."""
        call = self._binding(export, len(args))
        op = call.op if call is not None else export
        names: dict[int, tuple[str, str]] = {}  # start -> (argument name, role)
        known = self.known.get(export, EMPTY)
        for i, value in enumerate(args):
            if isinstance(value, int) and value in self.sizes:
                if call is not None:
                    names.setdefault(value, (call.args[i], call.roles[call.args[i]]))
                else:
                    names.setdefault(value, known.get(i, (f"{export} argument #{i}", "")))
        if self.sizes:
            self.guarded_calls += 1
        regions = self._read_all()
        found: list[BoundsFinding] = []
        for ptr, size in self.sizes.items():
            region = regions[ptr]
            contents = self.after[ptr] = region[GUARD_BYTES : GUARD_BYTES + size]
            arg, role = names.get(ptr, (f"a buffer at {ptr:#x} not passed to {export}", ""))
            before, after = self.guards[ptr]
            where = f"{op}: {arg} ({size} bytes at {ptr:#x})"
            hit = _changed(region[size + GUARD_BYTES :], after)
            if hit.size:
                far = (int(hit[-1]) // 4 + 1) * 4  # to the end of the float it lies in
                found.append(
                    BoundsFinding(op, arg, BOUNDS, _overrun(where, far, "past its end"),
                                  overran=far == GUARD_BYTES, forward=True, at=ptr)
                )  # fmt: skip
            hit = _changed(region[:GUARD_BYTES], before)
            if hit.size:
                far = GUARD_BYTES - int(hit[0]) // 4 * 4
                found.append(
                    BoundsFinding(op, arg, BOUNDS, _overrun(where, far, "before its start"),
                                  overran=far == GUARD_BYTES, at=ptr)
                )  # fmt: skip
            placed = self.placed.get(ptr)
            if role == "input" and placed is not None and contents != placed:
                hit = _changed(contents, placed)
                found.append(
                    BoundsFinding(
                        op, arg, INPUT_WRITTEN,
                        f"{where}: the kernel wrote {hit.size} of its {size} bytes (first at "
                        f"byte {int(hit[0])}), but the binding makes {arg} a read-only input: "
                        "a model that still needs it reads the changed values. If the library "
                        f'means to update it, declare roles = {{ {arg} = "inout" }}',
                        at=ptr,
                    )
                )  # fmt: skip
        self.findings += _sources(found)


def _sources(found: list[BoundsFinding]) -> list[BoundsFinding]:
    """``found`` with an overrun's collateral folded into it: a write that runs through a whole
    guard goes on into the buffers beyond, whose guards and contents then change too; those are
    named in the overrun's message, not reported as the kernel's own writes. The source of a
    forward overrun (past an end, the common kind) is the lowest buffer that has one, and its
    collateral every finding above it; a backward one's, the highest, and below it."""
    ahead = [f for f in found if f.overran and f.forward]
    behind = [f for f in found if f.overran and not f.forward]
    if ahead:
        source = min(ahead, key=lambda f: f.at)
        collateral = [f for f in found if f.at > source.at]
    elif behind:
        source = max(behind, key=lambda f: f.at)
        collateral = [f for f in found if f.at < source.at]
    else:
        return found
    if not collateral:
        return found
    names = ", ".join(dict.fromkeys(f.arg for f in collateral))
    kept = [f for f in found if not any(f is c for c in collateral)]
    note = f"; it reached {names} too"
    return [replace(f, message=f.message + note) if f is source else f for f in kept]


def _overrun(where: str, far: int, side: str) -> str:
    """The message of a write ``far`` bytes ``side`` (``past its end``, ``before its start``)."""
    if far >= GUARD_BYTES:
        return (
            f"{where}: the kernel wrote at least {far} bytes {side}, to the far end of the "
            "guard: the write may go further and damage other memory (a later crash or wrong "
            "value may be this op's doing)"
        )
    return f"{where}: the kernel wrote {far} bytes {side} ({far // 4} float(s) out of bounds)"


def guarded(kernels: Kernels) -> tuple[Kernels, Guarded]:
    """``kernels`` over a :class:`Guarded` view of its instance (the override kept), and the
    view, whose :meth:`Guarded.take` gives the findings of the calls since the last take."""
    view = Guarded(kernels.instance)
    return Kernels(view, kernels.override), view


def bounds_rows(ctx: CellContext, check: str, view: Guarded) -> Iterator[Row]:
    """The rows of a check's calls over ``view`` (the model check's): one ``fail`` row per
    ``<export>.<arg>:bounds`` / ``:input-written`` finding (the first of each, with its
    message), else one ``pass`` row ``bounds`` saying how many calls were guarded."""
    first: dict[str, BoundsFinding] = {}
    for f in view.take():
        first.setdefault(f"{f.op}.{f.subject}", f)
    for subject, f in first.items():
        yield ctx.row(check, subject, "fail", detail=f.message)
    if not first:
        yield ctx.row(
            check, "bounds", "pass", metric="guarded_calls", value=float(view.guarded_calls),
            detail=(f"{view.guarded_calls} calls with client buffers, each with {GUARD_BYTES} "
                    "bytes of guard each side: no write outside them, none into an input"),
        )  # fmt: skip
