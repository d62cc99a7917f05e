"""Optimizer checks (issue 15 part 2): per-tensor AdamW past warmup, and the per-step trajectory.

The fault build ``native-bug-decay`` (-D TG_BUG_DECAY_ALL) decays biases and LayerNorm
parameters too; the single t=1 ``adamw:params`` step and the convergence band let it through.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np
import pytest

from harness.artifact import Artifact
from harness.checks import corpus, optimizer
from harness.checks.base import CellContext
from harness.engines.ctypes_engine import CtypesInstance
from harness.rundir.rows import Row
from reference.defaults import DEFAULTS
from reference.model import DECAYED_PARAMS, init_params
from reference.presets import PARAM_NAMES, PRESETS

Fault = Callable[[str], tuple[CtypesInstance, Artifact]]
TINY = PRESETS["tiny"]


def _ctx(instance: CtypesInstance, artifact: Artifact) -> CellContext:
    return CellContext("native", "ctypes", artifact, TINY, instance)


def _adamw(instance: CtypesInstance, artifact: Artifact) -> dict[str, Row]:
    params = init_params(TINY, DEFAULTS, seed=DEFAULTS.seed, dtype=np.float32)
    rows = optimizer.rows(_ctx(instance, artifact), TINY, params, DEFAULTS, 24, DEFAULTS.seed)
    return {r.subject: r for r in rows if r.metric == "max_abs_err"}


def _ratio(row: Row) -> float:
    m = re.search(r"\(([0-9.e+-]+)x the bound", row.detail)
    assert m is not None, row.detail
    return float(m.group(1))


def test_biases_and_layernorm_start_off_init() -> None:
    """Every bias and LayerNorm tensor is moved off its init (0 or 1), the weights are not."""
    params = init_params(TINY, DEFAULTS, seed=1, dtype=np.float32)
    moved = optimizer.off_init(params, 1)
    for name in PARAM_NAMES:
        changed = not np.array_equal(moved[name], params[name])
        assert changed == (name not in DECAYED_PARAMS), name


def test_clean_adamw_passes_every_tensor_within_half_its_bound(
    native: CtypesInstance, native_artifact: Artifact
) -> None:
    """124 steps (warmup 100 + 24): all 16 tensors pass, each at < 0.5x its derived bound."""
    rows = _adamw(native, native_artifact)
    assert set(rows) == {f"adamw:{n}" for n in PARAM_NAMES}
    assert {r.status for r in rows.values()} == {"pass"}
    assert max(_ratio(r) for r in rows.values()) < 0.5


def test_decay_mask_bug_fails_exactly_the_undecayed_tensors(fault: Fault) -> None:
    """TG_BUG_DECAY_ALL: each bias/LayerNorm tensor fails by name; the 2-D weights pass."""
    rows = _adamw(*fault("native-bug-decay"))
    for name in PARAM_NAMES:
        assert rows[f"adamw:{name}"].status == ("pass" if name in DECAYED_PARAMS else "fail"), name


def _convergence(instance: CtypesInstance, artifact: Artifact) -> dict[str, Row]:
    rows = corpus.run(_ctx(instance, artifact))
    return {r.subject: r for r in rows if r.subject.startswith("convergence") and
            r.status != "measured"}  # fmt: skip


@pytest.mark.corpus
def test_trajectory_against_the_recorded_run(
    native: CtypesInstance, native_artifact: Artifact, fault: Fault
) -> None:
    """Clean: every step within its bound. Decay bug: the trajectory fails, the band does not."""
    clean = _convergence(native, native_artifact)
    assert clean["convergence:trajectory"].status == "pass"
    assert clean["convergence:trajectory"].value < 0.5
    bad = _convergence(*fault("native-bug-decay"))
    assert bad["convergence:trajectory"].status == "fail", bad["convergence:trajectory"].detail
    assert bad["convergence"].status == "pass"  # the +-band alone is the weakness
