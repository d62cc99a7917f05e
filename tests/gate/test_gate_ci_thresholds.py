"""ci.toml gates with the calibrated per-subject rules (issue 15: the bridge rule everywhere)."""

from __future__ import annotations

from pathlib import Path

from harness.gate.thresholds import thresholds_from_matrix_text

ROOT = Path(__file__).resolve().parents[2]


def test_ci_matrix_carries_the_calibrated_per_subject_rules() -> None:
    """Every per-measurement rule of docs/gate-thresholds.toml is in ci.toml, with its value."""
    calibrated = ROOT / "docs" / "gate-thresholds.toml"
    ci = ROOT / "matrices" / "ci.toml"
    want = thresholds_from_matrix_text(calibrated.read_text(encoding="utf-8"), calibrated)
    got = thresholds_from_matrix_text(ci.read_text(encoding="utf-8"), ci)
    assert want.per_measurement, "the calibrated table lost its per-subject rules"
    assert dict(got.per_measurement) == dict(want.per_measurement)


def test_a_noisy_bridge_change_is_judged_by_the_bridge_rule_in_ci() -> None:
    """A bridge row in ci.toml needs a change beyond 25 %, not the global min_effect."""
    ci = ROOT / "matrices" / "ci.toml"
    got = thresholds_from_matrix_text(ci.read_text(encoding="utf-8"), ci)
    assert got.decision_for("bench", "bridge:noop").min_effect == 0.25
    assert got.decision_for("bench", "op:matmul_forward@n=32").min_effect == got.min_effect
