"""harness.checks.smoke: the t=1 AdamW step bound and the option validation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from harness.artifact import Artifact
from harness.checks.base import CellContext
from harness.checks.smoke import _update_row, validate_options
from reference.presets import PRESETS
from tests.runner.runner_fakes import FakeHost, FakeInstance, Log

LR = 3e-4


def context() -> CellContext:
    """A cell context; the update row only stamps rows with it."""
    art = Artifact("native", "native", Path("/nonexistent"), "0" * 64, 64, "x86_64-linux-gnu")
    host = FakeHost("native", Log())
    return CellContext("native", "v1", art, PRESETS["tiny"], FakeInstance(host, art))


def weights() -> dict[str, np.ndarray]:
    """Two small float32 tensors."""
    rng = np.random.default_rng(0)
    return {"w": rng.standard_normal((4, 5)).astype(np.float32), "b": np.zeros(5, np.float32)}


def test_a_sign_sized_step_passes() -> None:
    """Every weight moving by exactly lr (|m/sqrt(v)| = 1, no decay on b) is within the bound."""
    before = weights()
    after = {k: (v - np.float32(LR)).astype(np.float32) for k, v in before.items()}
    row = _update_row(context(), before, after, LR)
    assert row.status == "pass", row.detail
    assert 0.99 < row.value <= 1.0


def test_an_oversized_step_fails() -> None:
    """A step of 1.01 lr where weight decay adds nothing (p = 0) exceeds the bound."""
    before = weights()
    after = dict(before, b=before["b"] - np.float32(1.01 * LR))
    row = _update_row(context(), before, after, LR)
    assert row.status == "fail" and row.value > 1.0 and "(in b)" in row.detail


def test_no_movement_fails() -> None:
    """An AdamW call that changed nothing is a failure."""
    before = weights()
    row = _update_row(context(), before, {k: v.copy() for k, v in before.items()}, LR)
    assert row.status == "fail" and row.detail == "tg_model_adamw changed no weight at all"


def test_non_finite_weight_fails() -> None:
    """A NaN after the step fails and is counted."""
    before = weights()
    after = {k: v.copy() for k, v in before.items()}
    after["w"][1, 2] = np.nan
    row = _update_row(context(), before, after, LR)
    assert row.status == "fail" and "1 of 20 w weights are not finite" in row.detail


@pytest.mark.parametrize("options", [{"seed": -1}, {"seed": True}, {"sed": 1}])
def test_bad_options_are_refused(options: dict[str, object]) -> None:
    """Only a non-negative integer seed is accepted."""
    with pytest.raises(ValueError, match=r"seed|sed"):
        validate_options(options)
