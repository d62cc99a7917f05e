"""Wrong-binding diagnosis: which binding mistake, corrected, makes a failing op pass parity.

When a bound op fails parity, the ops check re-runs the LIBRARY call on the failing case under
hypotheses, each a changed binding of that op (``dataclasses.replace`` on its CallBinding, or a
shifted dim): a weight's layout flipped; two arguments of the same kind and size swapped in
``args``; a dim off by one. The first hypothesis under which every output passes is the likely
mistake, and the failure's cause names it. This costs extra calls, so it runs only on failure.

A hypothesis that passes shows only that the binding and the library disagree, not which one is
wrong: the library's own declaration of the export (a webgpu artifact's kernels.toml sizes its
buffers and orders its arguments; a C library's code is its declaration) is as likely at fault
as the binding. So each cause names both, with where each is written (:class:`Parties`).

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


class Parties(NamedTuple):
    """The two sides a passing hypothesis finds in disagreement, as a cause names them."""

    binding: str  # e.g. "the binding (gpuformer.binding.toml:10)"
    library: str  # e.g. "gf_gelu as the library declares it (kernels.toml)"

    @classmethod
    def of(cls, kernels: Kernels, call: CallBinding) -> Parties:
        """Both sides of ``call`` in ``kernels``' artifact: its binding file and line, and the
        file the artifact's format reads its exports from (``exports_role``: kernels.toml for
        webgpu, the .so or .wasm for a compiled library)."""
        artifact = kernels.instance.artifact
        path = artifact.bound().path
        at = f"{path.name}:{call.line}" if call.line else path.name
        files = artifact.paths()
        declared = files.get(artifact.fmt.exports_role, artifact.path).name
        return cls(f"the binding ({at})", f"{call.export} as the library declares it ({declared})")


def _generic(call: CallBinding) -> Parties:
    """Both sides without an artifact to say where they are written."""
    return Parties("the binding", f"{call.export} as the library declares it")


class Hypothesis(NamedTuple):
    """One changed binding: ``guess`` says what changed (no claim), ``cause`` is the failure's
    cause when it explains the failure, ``override`` is the binding to call the op by."""

    guess: str
    cause: str
    override: Override


def _other(layout: str) -> str:
    return "in_out" if layout == "out_in" else "out_in"


def _layouts(call: CallBinding, parties: Parties) -> Iterator[Hypothesis]:
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
                f"with {w}'s layout {layout[w]} it passes: {parties.binding} declares "
                f"{w} = {call.weight_layout(w)}, {parties.library} reads {w} transposed; "
                f"either may be the one at fault"
            )
        else:
            names = ", ".join(group)
            guess = f"the layouts of {names} flipped"
            declared = ", ".join(f"{w} = {call.weight_layout(w)}" for w in group)
            text = (
                f"with the layouts of {names} flipped it passes: {parties.binding} declares "
                f"{declared}, {parties.library} reads them transposed; either may be the one "
                f"at fault"
            )
        yield Hypothesis(guess, text, Override(new))


def _pad(a: float, b: float) -> int:
    return math.ceil(max(a, b) / max(min(a, b), 1)) ** 2


def _swaps(call: CallBinding, sizes: dict[str, float], parties: Parties) -> Iterator[Hypothesis]:
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
            f"with args {a!r} and {b!r} swapped it passes: {parties.binding} and "
            f"{parties.library} list them in different orders; either may be the one at fault"
        )
        guess = f"args {a!r} and {b!r} swapped"
        yield Hypothesis(guess, text, Override(replace(call, args=tuple(args)), pad=pad))


def _off_by_one(
    call: CallBinding, sizes: dict[str, float], parties: Parties
) -> Iterator[Hypothesis]:
    """Each dim passed one less, then one more, than the canonical count."""
    for a in call.args:
        if call.roles[a] != "dim" or a not in sizes:
            continue
        n = int(sizes[a])
        for delta in (-1, 1):
            if n + delta < 1:
                continue
            sign = "-" if delta < 0 else "+"
            # the library side may be its count or a buffer it sizes from it (a webgpu
            # artifact's `out = "N - 1"` passes as N+1 too), so neither side is singled out
            text = (
                f"with {a} passed as {a}{sign}1 ({n + delta} for {n}) it passes: the {a} that "
                f"{parties.binding} passes is off by one from what {parties.library} "
                f"expects (its {a}, or a buffer sized from it); either may be the one at fault"
            )
            guess = f"{a} passed as {a}{sign}1"
            yield Hypothesis(guess, text, Override(call, {a: delta}, pad=_pad(n + delta, n)))


def hypotheses(
    call: CallBinding, sizes: dict[str, float], parties: Parties | None = None
) -> Iterator[Hypothesis]:
    """Every hypothesis for ``call``, given the failing call's buffer sizes and dim values;
    ``parties`` names the binding's and the library's side in each cause (None: unplaced)."""
    both = parties or _generic(call)
    yield from _layouts(call, both)
    yield from _swaps(call, sizes, both)
    yield from _off_by_one(call, sizes, both)


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
    for h in hypotheses(call, sizes, Parties.of(kernels, call)):
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
