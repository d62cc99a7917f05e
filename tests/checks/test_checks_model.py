"""Model parity on the native engine, and the cross-host table built from its hash rows."""

from __future__ import annotations

import dataclasses
import math

import pytest

from harness.artifact import Artifact
from harness.checks.base import CellContext
from harness.checks.model import Settings, _our_reference, run
from harness.crosshost import crosshost_table, to_markdown
from harness.engines.ctypes_engine import CtypesInstance
from harness.rundir.rows import Row
from reference.corpus import load_corpus
from reference.presets import PARAM_NAMES, PRESETS
from reference.tokenizer import encode


def _rows(instance: CtypesInstance, artifact: Artifact, **options: object) -> list[Row]:
    ctx = CellContext("native", "ctypes", artifact, PRESETS["tiny"], instance, options=options)
    return list(run(ctx))


@pytest.fixture(scope="module")
def good_rows(native: CtypesInstance, native_artifact: Artifact) -> list[Row]:
    """The model check's rows on the real kernels (tiny preset, 3 trajectory steps)."""
    return _rows(native, native_artifact, steps=3, batch=2)


@pytest.mark.corpus
def test_model_parity_passes_on_the_real_kernels(good_rows: list[Row]) -> None:
    """Logits, loss, all 16 gradients, AdamW, trajectory, generation and determinism pass."""
    verdicts = {r.subject: r.status for r in good_rows if r.status not in ("measured",)}
    assert set(verdicts.values()) == {"pass"}, {k: v for k, v in verdicts.items() if v != "pass"}
    expected = {"logits", "loss", "adamw:params", "trajectory", "generate:kv", "generate:nokv",
                "determinism"} | {f"grad:{n}" for n in PARAM_NAMES}  # fmt: skip
    assert expected <= set(verdicts)


@pytest.mark.corpus
def test_parity_rows_carry_the_three_metrics_and_tolerance(good_rows: list[Row]) -> None:
    """Each parity subject has max_abs_err, max_rel_err and max_ulp rows naming the tolerance."""
    grad = [r for r in good_rows if r.subject == "grad:qkvw"]
    assert {r.metric for r in grad} == {"max_abs_err", "max_rel_err", "max_ulp"}
    assert all("rtol=" in r.detail and "worst at index" in r.detail for r in grad)
    assert all(math.isfinite(r.value) for r in grad)


@pytest.mark.corpus
def test_lnback_bug_fails_the_gradients_by_name(
    lnback: CtypesInstance, lnback_artifact: Artifact
) -> None:
    """With the layernorm-backward bug, gradients fail by tensor name; the forward still passes."""
    rows = _rows(lnback, lnback_artifact, steps=2, batch=2)
    status = {r.subject: r.status for r in rows if r.metric == "max_abs_err"}
    assert status["logits"] == "pass" and status["loss"] == "pass"
    assert status["grad:ln1w"] == "fail" and status["grad:wte"] == "fail"
    detail = next(r.detail for r in rows if r.subject == "grad:ln1w")
    assert "values stage" in detail and "found" in detail and "expected" in detail


@pytest.mark.corpus
def test_crosshost_table_equal_and_different(good_rows: list[Row]) -> None:
    """Same hashes on two hosts are bitwise equal; a changed trajectory shows its max diff."""
    other = [dataclasses.replace(r, host="wasmtime") for r in good_rows]
    table = crosshost_table(good_rows + other)
    assert {e.output for e in table} >= {"logits", "grads", "trajectory", "generate_kv"}
    assert all(e.bitwise_equal and e.hosts == ("native", "wasmtime") for e in table)
    bumped = [
        dataclasses.replace(r, detail="sha256=" + "0" * 64)
        if r.subject == "hash:trajectory" and r.metric == ""
        else dataclasses.replace(r, value=r.value + 1e-6)
        if r.subject == "hash:trajectory" and r.iteration == 1
        else r
        for r in other
    ]
    (traj,) = [e for e in crosshost_table(good_rows + bumped) if e.output == "trajectory"]
    assert not traj.bitwise_equal and traj.distinct_hashes == 2
    assert traj.max_diff == pytest.approx(1e-6, rel=1e-3)
    assert "| NO |" in to_markdown([traj])


def test_settings_validation() -> None:
    """Bad [check.model] options are refused naming the field."""
    with pytest.raises(ValueError, match=r"check\.model\.steps"):
        Settings.from_options({"steps": 0})
    with pytest.raises(ValueError, match="unknown option"):
        Settings.from_options({"lr": 1})
    assert Settings.from_options({"batch": 3}).batch == 3
    with pytest.raises(ValueError, match=r"check\.model\.adamw_steps must be an int >= 20"):
        Settings.from_options({"adamw_steps": 19})  # fewer steps past warmup hide decay bugs
    assert Settings.from_options({"gen_train_steps": 0}).gen_train_steps == 0


@pytest.mark.corpus
def test_our_reference_is_computed_once_and_read_only() -> None:
    """Every cell of a preset shares one reference dump, and none can write into it."""
    tokens, s = encode(load_corpus()), Settings(steps=2, batch=2)
    dump = _our_reference(PRESETS["tiny"], tokens, s)
    assert _our_reference(PRESETS["tiny"], tokens, s) is dump
    assert _our_reference(PRESETS["tiny"], tokens, Settings(steps=3, batch=2)) is not dump
    with pytest.raises(ValueError, match="read-only"):
        dump.logits[0, 0, 0] = 0.0
    with pytest.raises(ValueError, match="read-only"):
        dump.params["wte"][0, 0] = 0.0
