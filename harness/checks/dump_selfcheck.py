"""A reference dump judged against itself, before it judges the kernel.

Part of check kind ``model`` with a profile's reference dump (docs/reference-dump.md, "Is the
dump consistent with itself?"). A dump whose own ``logits`` do not follow from its own
``param.*`` (a square weight stored ``[in, out]``, which no shape check can see) made ~20
kernel-vs-dump rows fail, each reading "the kernel found X, the oracle expected Y" (adoption
trial s44, D15). Here our float64 GPT (``reference/model.py``, the architecture tinygpt.h's
model implements) runs on the dump's ``param.*`` and ``tokens.x``/``tokens.y``, and the dump's
``logits``, ``loss`` and every ``grad.<name>`` are compared with it at the model tolerances
(:func:`harness.tolerance.model_tolerance`, the bounds a float32 kernel meets; a float64 dump
of this architecture sits ~1e-15 from it). One row set per array, ``dump:logits``,
``dump:loss``, ``dump:grad:<name>``, comes first in the cell, so a self-inconsistent dump is the
cell's first cause.

It cannot see what only matters away from init: at the dump's random-init weights exact-erf
and tanh GELU differ by ~3e-7 (docs/reference-dump.md).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from harness.checks.base import CellContext
from harness.parity import ParityResult, compare
from harness.rundir.rows import Row, Status
from harness.tolerance import grad_blocks, model_dims, model_tolerance
from reference.dump import ReferenceDump
from reference.model import GPT
from reference.presets import PARAM_NAMES

CHECK = "model"
METRICS = ("max_abs_err", "max_rel_err", "max_ulp")
PREFIX = "dump:"  # subject prefix of the self-check rows: "dump:logits", "dump:grad:wte"

CAUSES = (
    "a Linear weight stored [in, out] (an HF Conv1D; a square one passes the shape check), "
    "exact-erf GELU instead of tanh, another head split of qkv, another LayerNorm eps, a loss "
    "reduction other than the mean over B x T, an untied LM head"
)


@dataclass(frozen=True)
class SelfCheck:
    """The dump's arrays against our float64 GPT on the dump's own inputs."""

    results: tuple[ParityResult, ...]  # logits, loss, grad:<name> (PARAM_NAMES order)

    @property
    def ok(self) -> bool:
        """True when every array follows from the dump's own parameters."""
        return all(r.ok for r in self.results)

    @property
    def failing(self) -> list[str]:
        """The names of the arrays that do not."""
        return [r.name for r in self.results if not r.ok]


# One self-check per dump file (sha256): a matrix of many cells of one preset shares the dump,
# and the forward/backward need not run per cell. Bounded, oldest out.
_CHECKED: dict[tuple[object, ...], SelfCheck] = {}
_CHECKED_MAX = 8


def _key(dump: ReferenceDump) -> tuple[object, ...]:
    """The dump's file hash; a dump built in memory (no file) is hashed from its inputs."""
    if dump.sha256:
        return (dump.cfg, dump.sha256)
    h = hashlib.sha256()
    for a in (*(dump.params[n] for n in sorted(dump.params)), dump.x, dump.y, dump.logits):
        h.update(np.ascontiguousarray(a).tobytes())
    return (dump.cfg, h.hexdigest(), dump.loss)


def self_check(dump: ReferenceDump) -> SelfCheck:
    """Compare ``dump``'s logits, loss and gradients with our float64 GPT on its own params,
    at the model tolerances of the dump's own batch."""
    key = _key(dump)
    if key in _CHECKED:
        return _CHECKED[key]
    cfg = dump.cfg
    dims = model_dims(cfg.n_layer, cfg.n_embd, dump.x.shape)
    model = GPT(cfg, {n: np.asarray(v, dtype=np.float64) for n, v in dump.params.items()})
    logits, loss = model.forward(dump.x, dump.y)  # (B, T, V)
    grads = model.backward()
    results = [
        compare("dump:logits", dump.logits, logits, model_tolerance("logits", **dims).tolerance,
                dtype="float64"),
        compare("dump:loss", np.float64(dump.loss), np.float64(loss if loss is not None else 0),
                model_tolerance("loss", **dims).tolerance, dtype="float64"),
    ]  # fmt: skip
    rule = model_tolerance("grad", **dims)
    for name in PARAM_NAMES:
        results.append(compare(f"dump:grad:{name}", dump.grads[name], grads[name], rule.tolerance,
                               dtype="float64", relative_to_max=rule.relative_to_max,
                               max_blocks=grad_blocks(name, cfg.n_layer)))  # fmt: skip
    if len(_CHECKED) >= _CHECKED_MAX:
        _CHECKED.pop(next(iter(_CHECKED)))
    _CHECKED[key] = out = SelfCheck(tuple(results))
    return out


def rows(ctx: CellContext, checked: SelfCheck, dump_note: str) -> Iterator[Row]:
    """One row set per compared array (subject ``dump:<array>``), pass or fail; ``dump_note``
    names the dump."""
    for r in checked.results:
        status: Status = "pass" if r.ok else "fail"
        if r.ok:
            what = ("the dump's own array follows from its param.* and tokens under a float64 "
                    "GPT-2 of the documented architecture (reference/model.py)")  # fmt: skip
        else:
            what = (
                f"the dump's own arrays disagree with a float64 GPT-2 of the documented "
                f"architecture (reference/model.py) on the dump's own param.* and tokens, "
                f"so the dump, not the kernel, is the first suspect; usual causes: {CAUSES}"
            )
        # the message's "found" is the dump's value, "expected" our GPT's
        detail = (f"{what}; {r.message} (found: the dump, expected: our float64 GPT){dump_note}"
                  "; oracle: harness numpy reference (reference/model.py in float64, on the "
                  "dump's own param.* and tokens)")  # fmt: skip
        for m in METRICS:
            yield ctx.row(CHECK, r.name, status, metric=m, value=float(getattr(r, m)),
                          detail=detail)  # fmt: skip


def refusal(checked: SelfCheck, shown: int = 3) -> str:
    """Why a run refuses a dump that fails its self-check: what the check did, each failing
    array's parity message (the first ``shown``), and the usual causes ("" when it passes)."""
    if checked.ok:
        return ""
    bad = [r for r in checked.results if not r.ok]
    lines = [f"  {r.message}" for r in bad[:shown]]  # each message starts with its name
    if len(bad) > shown:
        lines.append(f"  and {len(bad) - shown} more: {', '.join(r.name for r in bad[shown:])}")
    return (
        "it fails its self-check: its own arrays disagree with a float64 GPT-2 of the "
        "documented architecture (reference/model.py) on its own param.* and tokens, so it "
        "cannot judge a kernel (found: the dump, expected: our float64 GPT):\n"
        + "\n".join(lines)
        + f'\nusual causes: {CAUSES} (docs/reference-dump.md, "How the check uses it")'
    )


def blame_note(checked: SelfCheck) -> str:
    """What a failing kernel-vs-dump row adds when the dump fails its self-check ("" if not)."""
    if checked.ok:
        return ""
    bad = checked.failing
    names = ", ".join(bad[:4]) + (f" and {len(bad) - 4} more" if len(bad) > 4 else "")
    return (
        f"; the dump itself fails its self-check ({names}): its own arrays do not follow "
        f"from its param.*, so this row may blame the kernel for the dump's fault"
    )


# The arrays a reference computes (not the float32 inputs it was given), by their names in the
# file; a float32 dump is widened on load (reference.dump.load_dump), so what is left of its
# dtype is that every value is exactly a float32.
def _computed(dump: ReferenceDump) -> dict[str, dict[str, NDArray[Any]]]:
    return {
        "logits": {"": dump.logits},
        "loss": {"": np.asarray(dump.loss)},
        "grad": {n: dump.grads[n] for n in PARAM_NAMES},
        "adamw.param": {n: dump.adamw_params[n] for n in PARAM_NAMES},
        "trajectory.loss": {"": dump.traj_loss},
    }


def _float32_only(a: NDArray[Any]) -> bool:
    """Every value survives a round trip through float32, and one is non-zero (an all-zero
    array says nothing). A float64 computation gives such a value by chance with odds ~2^-29."""
    return bool(np.any(a != 0)) and np.array_equal(a.astype(np.float32).astype(np.float64), a)


def float32_arrays(dump: ReferenceDump) -> list[str]:
    """The computed arrays of ``dump`` that hold float32 numbers only (so were written as float32,
    or computed in it), by file name; ``grad.*`` when every gradient does."""
    out = []
    for group, parts in _computed(dump).items():
        narrow = [n for n, a in parts.items() if _float32_only(a)]
        if narrow == list(parts):
            out.append(group if list(parts) == [""] else f"{group}.*")
        else:
            out += [f"{group}.{n}" for n in narrow]
    return out


def float32_note(dump: ReferenceDump) -> str:
    """``"; oracle arrays float32: ..."`` for a dump with float32 computed arrays, else ""."""
    names = float32_arrays(dump)
    if not names:
        return ""
    return (
        f"; oracle arrays float32 ({', '.join(names)}, widened on load): the reference's own "
        f"float32 rounding counts against the bound"
    )
