"""The model check with a reference dump as its oracle (issue 11 part 3, the llm.c pattern).

The dump of our own reference must judge the kernel exactly as the live reference does; a dump
whose one gradient is wrong (a fault in the "external reference") must fail that row.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.artifact import Artifact
from harness.checks.base import CellContext
from harness.checks.model import run
from harness.engines.ctypes_engine import CtypesInstance
from harness.rundir.rows import Row
from reference.dump import ReferenceDump, load_dump, save, write_dump
from reference.presets import PRESETS
from reference.train import AdamWState, adamw_step

OPTIONS = {"batch": 2, "steps": 3, "gen_train_steps": 20}  # the dump is written to match
DUMP_JUDGED = {"logits", "loss", "adamw:params", "trajectory", "generate:kv", "generate:nokv"}


def _rows(
    instance: CtypesInstance, artifact: Artifact, reference: ReferenceDump | None
) -> list[Row]:
    ctx = CellContext("native", "ctypes", artifact, PRESETS["tiny"], instance,
                      options=OPTIONS, reference=reference)  # fmt: skip
    return list(run(ctx))


def _verdicts(rows: list[Row]) -> dict[str, set[str]]:
    """Row statuses per subject (measured rows carry values, not verdicts)."""
    out: dict[str, set[str]] = {}
    for r in rows:
        if r.status != "measured":
            out.setdefault(r.subject, set()).add(r.status)
    return out


@pytest.fixture(scope="module")
def dump_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Our reference's dump of tiny, drawn as the check draws with OPTIONS (default seed)."""
    path = tmp_path_factory.mktemp("refdump") / "tiny.npz"
    write_dump(path, PRESETS["tiny"], batch=OPTIONS["batch"], steps=OPTIONS["steps"])
    return path


@pytest.fixture(scope="module")
def live_rows(native: CtypesInstance, native_artifact: Artifact) -> list[Row]:
    """The check's rows against the live numpy reference."""
    return _rows(native, native_artifact, None)


@pytest.mark.corpus
def test_our_dump_gives_the_live_verdicts(
    native: CtypesInstance, native_artifact: Artifact, dump_path: Path, live_rows: list[Row]
) -> None:
    """Loaded from its dump, our reference judges every subject as it does live: same status
    per subject, and row for row the same values; dump-judged rows name the dump, the others
    our reference; the dump's self-check rows (``dump:*``, first) pass."""
    everything = _rows(native, native_artifact, load_dump(dump_path))
    n_self = sum(1 for r in everything if r.subject.startswith("dump:"))
    assert n_self and all(r.subject.startswith("dump:") for r in everything[:n_self])
    assert all(r.status == "pass" for r in everything[:n_self])
    dumped = everything[n_self:]
    assert _verdicts(dumped) == _verdicts(live_rows)
    assert {"pass"} == set().union(*_verdicts(live_rows).values())
    assert DUMP_JUDGED | {f"grad:{n}" for n in ("wte", "qkvw", "lnfb")} <= set(_verdicts(dumped))
    note = f"; oracle: reference dump {dump_path}"
    for r in dumped:
        if r.subject in DUMP_JUDGED or r.subject.startswith("grad:"):
            assert note in r.detail, r
        elif r.subject.startswith(("adamw:", "generate:", "sample:")):
            assert "; oracle: " in r.detail, r
    stripped = [dataclasses.replace(r, detail=r.detail.split("; oracle: ")[0]) for r in dumped]
    assert stripped == live_rows


@pytest.mark.corpus
def test_a_wrong_gradient_in_the_dump_fails_that_row(
    native: CtypesInstance,
    native_artifact: Artifact,
    dump_path: Path,
    live_rows: list[Row],
    tmp_path: Path,
) -> None:
    """An external reference whose backward is off at one element of qkvw (by 5% of the
    tensor's largest gradient; its optimiser steps from that gradient, as a real one would)
    fails grad:qkvw, naming that element, and so does its own self-check (dump:grad:qkvw,
    the cell's first failing row); every other verdict stands."""
    d = load_dump(dump_path)
    grads = dict(d.grads)
    grads["qkvw"] = grads["qkvw"].copy()
    grads["qkvw"][0, 5, 3] += 0.05 * np.abs(grads["qkvw"]).max()
    given = {n: v.astype(np.float32).astype(np.float64) for n, v in grads.items()}
    after: dict[str, Any] = {n: v.astype(np.float64) for n, v in d.params.items()}
    state = AdamWState()
    for t, rate in enumerate(d.adamw_lr.tolist(), start=1):
        after, state, _ = adamw_step(after, given, state, t, d.defaults, lr=rate)
    bad = tmp_path / "bad.npz"
    save(bad, dataclasses.replace(d, grads=grads, adamw_params=after, adamw_m=state.m,
                                  adamw_v=state.v))  # fmt: skip
    rows = _rows(native, native_artifact, load_dump(bad))
    found, live = _verdicts(rows), _verdicts(live_rows)
    assert found["grad:qkvw"] == {"fail"}
    assert {s for s in found if found[s] != live.get(s, {"pass"})} == {
        "grad:qkvw",
        "dump:grad:qkvw",
    }
    detail = next(r.detail for r in rows if r.subject == "grad:qkvw")
    assert "(0, 5, 3)" in detail and f"oracle: reference dump {bad}" in detail
    assert "the dump itself fails its self-check (dump:grad:qkvw)" in detail
    assert next(r for r in rows if r.status == "fail").subject == "dump:grad:qkvw"
