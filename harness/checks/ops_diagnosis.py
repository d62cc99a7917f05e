"""Wrong-binding diagnosis: which binding mistake, corrected, makes a failing op pass parity.

When a bound op fails parity, the ops check re-runs the LIBRARY call on the failing case under
hypotheses, each a changed binding of that op (``dataclasses.replace`` on its CallBinding, or a
shifted dim): a weight's layout flipped; two arguments of the same kind and size swapped in
``args``; a dim off by one. The first hypothesis under which every output passes is the likely
mistake, and the failure's cause names it. This costs extra calls, so it runs only on failure.

A hypothesis may hand the library larger dims than the buffers were sized for (a swapped or
shifted dim): its buffers are over-allocated (``Override.pad``) so the library still reads and
writes inside them; one whose padding would pass :data:`MAX_PAD` is not tried.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import replace
from itertools import combinations
from types import MappingProxyType
from typing import NamedTuple

from harness.bindings import CallBinding
from harness.bindings.canonical import OPS
from harness.hosts.base import HostCrashed, HostError, HostTimeout, Trap
from harness.kernel import Kernels, Override

# A buffer's size is a product of dims with exponents up to 2 (attention's T x T), so under a
# dim changed by a factor r it grows by at most ceil(r)^2; past this the hypothesis is skipped.
MAX_PAD = 64


class Hypothesis(NamedTuple):
    """One changed binding: ``guess`` says what changed (no claim), ``cause`` is the failure's
    cause when it explains the failure, ``override`` is the binding to call the op by."""

    guess: str
    cause: str
    override: Override


def _other(layout: str) -> str:
    return "in_out" if layout == "out_in" else "out_in"


def _layouts(call: CallBinding) -> Iterator[Hypothesis]:
    """Each weight's layout flipped, then each weight with its gradient, then all of them."""
    weights = [a for a in call.args if OPS[call.op].args[a].weight]
    groups: list[tuple[str, ...]] = [(w,) for w in weights]
    groups += [(w, f"d{w}") for w in weights if f"d{w}" in weights]
    if len(weights) > 2:
        groups.append(tuple(weights))
    for group in groups:
        layout = dict(call.layout) | {w: _other(call.weight_layout(w)) for w in group}
        new = replace(call, layout=MappingProxyType(layout))
        if len(group) == 1:
            w = group[0]
            guess = f"{w}'s layout {layout[w]}"
            text = (
                f"with {w}'s layout {layout[w]} it passes: the binding declares "
                f"{w} = {call.weight_layout(w)}, the library stores {w} transposed"
            )
        else:
            names = ", ".join(group)
            guess = f"the layouts of {names} flipped"
            declared = ", ".join(f"{w} = {call.weight_layout(w)}" for w in group)
            text = (
                f"with the layouts of {names} flipped it passes: the binding declares "
                f"{declared}, the library stores them transposed"
            )
        yield Hypothesis(guess, text, Override(new))


def _pad(a: float, b: float) -> int:
    return math.ceil(max(a, b) / max(min(a, b), 1)) ** 2


def _swaps(call: CallBinding, sizes: dict[str, float]) -> Iterator[Hypothesis]:
    """Each pair of buffers of one kind and size, then each pair of unequal dims, swapped."""
    roles = call.roles
    buffers = [a for a in call.args if roles[a] not in ("dim", "scalar") and sizes.get(a)]
    dims = [a for a in call.args if roles[a] == "dim"]
    pairs = [(a, b, 1) for a, b in combinations(buffers, 2) if sizes[a] == sizes[b]]
    pairs += [
        (a, b, _pad(sizes[a], sizes[b]))
        for a, b in combinations(dims, 2)
        if sizes[a] != sizes[b] and call.kinds[call.args.index(a)] == call.kinds[call.args.index(b)]
    ]
    for a, b, pad in pairs:
        if pad > MAX_PAD:
            continue
        args = list(call.args)
        i, j = args.index(a), args.index(b)
        args[i], args[j] = b, a
        text = (
            f"with args {a!r} and {b!r} swapped it passes: the binding likely lists them in the "
            f"wrong order"
        )
        guess = f"args {a!r} and {b!r} swapped"
        yield Hypothesis(guess, text, Override(replace(call, args=tuple(args)), pad=pad))


def _off_by_one(call: CallBinding, sizes: dict[str, float]) -> Iterator[Hypothesis]:
    """Each dim passed one less, then one more, than the canonical count."""
    for a in call.args:
        if call.roles[a] != "dim" or a not in sizes:
            continue
        n = int(sizes[a])
        for delta in (-1, 1):
            if n + delta < 1:
                continue
            sign = "-" if delta < 0 else "+"
            text = (
                f"with {a} passed as {a}{sign}1 ({n + delta} for {n}) it passes: the binding's "
                f"{a} is off by one from what the library expects"
            )
            guess = f"{a} passed as {a}{sign}1"
            yield Hypothesis(guess, text, Override(call, {a: delta}, pad=_pad(n + delta, n)))


def hypotheses(call: CallBinding, sizes: dict[str, float]) -> Iterator[Hypothesis]:
    """Every hypothesis for ``call``, given the failing call's buffer sizes and dim values."""
    yield from _layouts(call)
    yield from _swaps(call, sizes)
    yield from _off_by_one(call, sizes)


class GuessCrashed(Exception):
    """A hypothesis crashed or hung the host: the instance is gone, the guess explains nothing.

    Raised so the caller can still write the failure it was diagnosing before the crash ends
    the op (a swallowed crash would surface on the next case and lose that verdict). The message
    names the guess and the crash, and says it is no evidence: a guess is a deliberately wrong
    call (e.g. the NaN-filled output passed as the input), so its crash or hang says nothing
    about the binding, which the failure must not be blamed on.
    """

    def __init__(self, guess: str, error: HostCrashed | HostTimeout | Trap) -> None:
        """``guess`` names the changed binding (:attr:`Hypothesis.guess`); ``error`` the crash."""
        super().__init__(
            f"the wrong-binding diagnosis stopped: its guess ({guess}) crashed the host "
            f"({type(error).__name__}: {error}), which is no evidence of a binding mistake"
        )
        # what the caller raises once the failure is written: the instance is lost either way
        self.error = HostCrashed(str(error)) if isinstance(error, Trap) else error


def diagnose(
    kernels: Kernels, op: str, passes: Callable[[Kernels], bool], passed_any: bool = False
) -> str:
    """The first hypothesis under which ``passes`` holds, as a cause; "" when none explains it.

    ``kernels.last_args`` must hold the failing call's sizes (the call just made). A hypothesis
    the library traps on, or the client refuses, does not explain the failure; one that crashes
    or hangs the host (or traps with a fatal signal that took the instance with it, as a native
    worker's segfault does) raises :class:`GuessCrashed`.

    ``passed_any``: another case of the op passed with the binding as declared. Then its dims
    are what the library expects, so no off-by-one guess is tried: one would "explain" a kernel
    wrong at some sizes only (N+1 makes an odd N even), since the padding hides the extra
    element on the cases that passed.
    """
    call = kernels.bound(op)
    sizes = dict(kernels.last_args)
    for h in hypotheses(call, sizes):
        if passed_any and h.override.dim_shift:
            continue
        try:
            if passes(kernels.overridden(h.override)):
                return h.cause
        except (HostCrashed, HostTimeout) as exc:
            raise GuessCrashed(h.guess, exc) from exc
        except Trap as exc:
            if not kernels.instance.usable():  # a fatal signal took the native worker with it
                raise GuessCrashed(h.guess, exc) from exc
            continue
        except (HostError, ValueError):
            continue
    return ""
