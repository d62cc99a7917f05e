"""The verdict rule, the thresholds table, and a tiny calibration session on the real kernels."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from harness.gate import calibrate
from harness.gate.calibrate import (
    UNPAIRED_SAMPLE_MS,
    Session,
    load_instance,
    markdown,
    missed_targets,
    parser,
    run_session,
)
from harness.gate.calibrate_paired import run_paired_session
from harness.gate.errors import GateInputError
from harness.gate.paired import PairedPolicy
from harness.gate.stats import Decision, compare_samples, decide
from harness.gate.thresholds import thresholds_from_matrix_text, thresholds_from_table


@pytest.mark.parametrize(
    ("ratio", "low", "high", "p", "verdict"),
    [
        (1.00, 0.99, 1.01, 0.5, "same"),  # CI inside the +-3 % band
        (1.02, 1.01, 1.025, 1e-6, "same"),  # real but smaller than the threshold
        (1.05, 1.04, 1.06, 1e-6, "slower"),
        (0.95, 0.94, 0.96, 1e-6, "faster"),
        (1.05, 0.98, 1.12, 0.2, "unknown"),  # big but not significant
        (1.02, 0.99, 1.05, 1e-6, "unknown"),  # significant, CI straddles the band edge
    ],
)
def test_decide(ratio: float, low: float, high: float, p: float, verdict: str) -> None:
    """Each region of (ratio, CI, p) maps to its verdict with a 3 % minimum effect."""
    assert decide(ratio, low, high, p, Decision(alpha=0.01, min_effect=0.03)) == verdict


def test_compare_samples_detects_shift_and_ci_covers_it() -> None:
    """A 6 % shift with 1 % noise is 'slower' and the 95 % CI of the ratio covers 1.06."""
    rng = np.random.default_rng(0)
    base, cand = rng.normal(100, 1, 30), rng.normal(106, 1.06, 30)
    result = compare_samples(list(base), list(cand))
    assert result.verdict == "slower"
    assert result.ci_low < 1.06 < result.ci_high and result.p_value < 1e-6


def test_too_few_samples_is_unknown() -> None:
    """Two samples a side decide nothing, however different they look."""
    assert compare_samples([1.0, 1.0], [2.0, 2.0]).verdict == "unknown"


def test_quantile_resists_one_sided_interference() -> None:
    """With 40 % of CAND's samples inflated by preemption, q=0.1 says same where median cannot."""
    rng = np.random.default_rng(1)
    base = rng.normal(100, 0.5, 100)
    cand = rng.normal(100, 0.5, 100)
    cand[rng.permutation(100)[:40]] *= 1.5
    median = compare_samples(list(base), list(cand), Decision())
    low_q = compare_samples(list(base), list(cand), Decision(quantile=0.1))
    assert median.verdict != "same" and low_q.verdict == "same"


def test_thresholds_most_specific_rule_wins() -> None:
    """Exact measurement key beats the longest glob, which beats the check, then the default."""
    t = thresholds_from_matrix_text(
        """
        [thresholds]
        min_effect = 0.03
        quantile = 0.1
        [thresholds.check]
        bench = 0.04
        [thresholds.measurement]
        "op:*" = 0.10
        "op:matmul_*" = 0.06
        "op:matmul_forward@n=64" = 0.02
        """,
        "m.toml",
    )
    assert t.decision_for("bench", "op:matmul_forward@n=64").min_effect == 0.02
    assert t.decision_for("bench", "op:matmul_forward@n=32").min_effect == 0.06
    assert t.decision_for("bench", "op:gelu_forward@n=32").min_effect == 0.10
    assert t.decision_for("bench", "train_step@params=5616").min_effect == 0.04
    assert t.decision_for("other", "x").min_effect == 0.03
    assert t.decision_for("other", "x").quantile == 0.1


@pytest.mark.parametrize(
    ("table", "field"),
    [
        ({"alpha": 0}, "thresholds.alpha"),
        ({"alpha": 1.5}, "thresholds.alpha"),
        ({"min_effect": -0.1}, "thresholds.min_effect"),
        ({"quantile": 1.0}, "thresholds.quantile"),
        ({"check": {"bench": "big"}}, "thresholds.check.bench"),
        ({"measurment": {}}, "thresholds.measurment"),
    ],
)
def test_bad_thresholds_name_the_key(table: dict[str, object], field: str) -> None:
    """Every invalid [thresholds] entry is an error naming its dotted key."""
    with pytest.raises(GateInputError) as info:
        thresholds_from_table(table, "m.toml")
    assert info.value.field == field


@dataclass(frozen=True)
class _FixedWorkload:
    """A workload whose every sample is its scale times 1 µs (no instance, no kernel)."""

    scale: float

    def release(self, instance: object) -> None:
        """Nothing was placed."""


def _fixed_run(
    instance: object, workloads: dict[str, _FixedWorkload], policy: object
) -> tuple[dict[str, tuple[float, ...]], float]:
    """measure_run on fixed samples: 15 per kernel, spread 0-1.4 % around the scale's µs."""
    return {k: tuple(1e3 * w.scale * (1 + 1e-3 * i) for i in range(15))
            for k, w in workloads.items()}, 0.0  # fmt: skip


class _Closable:
    """An instance stand-in: the session only closes it."""

    def close(self) -> None:
        """Nothing to close."""


def test_realised_slowdown_is_the_pooled_medians_ratio(monkeypatch: pytest.MonkeyPatch) -> None:
    """The unpaired session's realised slowdown is the slowed kernel's B median over its A
    median, less 1: fixed samples 5 % longer in B read exactly +5 %, and every A/B is slower."""
    kernels = {k: (lambda _i, scale: _FixedWorkload(scale)) for k in calibrate.KERNELS}
    monkeypatch.setattr(calibrate, "KERNELS", kernels)
    monkeypatch.setattr(calibrate, "load_instance", lambda *_: _Closable())
    monkeypatch.setattr(calibrate, "measure_run", _fixed_run)
    figures = calibrate.run_session(
        Session(mode="unpaired", trials=3, slowdown=0.05), Path("unused"), progress=False
    )
    assert figures["realised_slowdown"] == pytest.approx(0.05, abs=1e-12)
    assert figures["ab"] == {"slower": 3, "faster": 0, "same": 0, "unknown": 0}


@pytest.mark.slow
def test_calibration_session_runs_on_real_kernels(tmp_path: Path) -> None:
    """Three unpaired trials on the real native kernels give a complete, self-consistent tally."""
    session = Session(mode="unpaired", trials=3, samples=15, sample_ms=0.2)
    figures = run_session(session, tmp_path / "build", progress=False)
    aa, ab = figures["aa"], figures["ab"]
    assert isinstance(aa, dict) and isinstance(ab, dict)
    # per trial: A1/A2 for each of the 4 kernels, and A1/B for the 3 that are not slowed
    assert sum(ab.values()) == 3 and sum(aa.values()) == 3 * 4 + 3 * 3
    # No bound on the measured figure: it is a timing figure, and on the 2-core Intel VMs under
    # `-n 2` it read +61 % (s34, 5 samples), past the old +-50 % bound once more at 15 samples
    # and 2 trials (s37) and +90 % at 3 trials (s38, a `.ci/run`): most samples of two of the
    # three slowed runs were that slow. What that bound stood for is checked exactly instead:
    # the injected work below (a wrong row count fails it) and the formula on fixed samples
    # (test_realised_slowdown_is_the_pooled_medians_ratio). Speed is the calibration's to report.
    realised = figures["realised_slowdown"]
    assert isinstance(realised, float) and math.isfinite(realised) and realised > -1.0
    instance = load_instance(session.host, tmp_path / "build")  # the build run_session made
    try:
        factory = calibrate.KERNELS[session.slowed]
        base, slowed = factory(instance, 1.0), factory(instance, 1.0 + session.slowdown)
        assert slowed.work / base.work == pytest.approx(1.0 + session.slowdown, abs=1e-12)
        slowed.release(instance)
        base.release(instance)
    finally:
        instance.close()
    text = markdown(figures, "python -m harness.gate.calibrate --trials 2")
    assert "| power, 5 % slowdown in one kernel of one cell | ≥ 95 % |" in text


@pytest.mark.slow
def test_paired_calibration_session_runs_on_real_kernels(tmp_path: Path) -> None:
    """Two paired trials in fresh native hosts: one A/A per kernel, one A/B, placement spread."""
    session = Session(trials=2, blocks=6, pairs_per_block=2, sample_ms=0.2)
    figures = run_paired_session(session, tmp_path / "build", progress=False)
    aa, ab, spread = figures["aa"], figures["ab"], figures["aa_block_spread"]
    assert isinstance(aa, dict) and isinstance(ab, dict) and isinstance(spread, dict)
    assert sum(ab.values()) == 2 and sum(aa.values()) == 2 * 6  # 4 kernels, bridge, noop call
    assert set(spread) == {"matmul_forward", "layernorm_forward", "gelu_forward",
                           "residual_forward", "bridge:noop", "host:noop_call"}  # fmt: skip
    text = markdown(figures, "python -m harness.gate.calibrate --trials 2")
    assert "Mode `paired`, host `native`; 2 trials; 6 blocks x 2 interleaved pairs" in text
    assert "placement spread" in text
    with pytest.raises(ValueError, match="unpaired"):
        run_session(session, tmp_path / "build", progress=False)


def test_a_calibration_samples_as_long_as_the_gate_it_calibrates() -> None:
    """Paired, a session's samples are the gate's own length (PairedPolicy.min_sample_ms) unless
    given; unpaired they stay 1 ms, as its recorded tables were measured; the CLI leaves it to
    the mode."""
    assert Session().sample_ms == PairedPolicy.min_sample_ms
    assert Session(mode="unpaired").sample_ms == UNPAIRED_SAMPLE_MS == 1.0
    assert Session(sample_ms=0.7).sample_length_ms == 0.7
    assert parser().parse_args([]).sample_ms is None


def test_calibration_exit_code_carries_the_targets() -> None:
    """A figure past any target is named as missed; figures inside all of them miss nothing."""
    met = {"power": 0.97, "false_alarm_rate": 0.0025, "cell_seconds_max": 1.96,
           "cell_budget_s": 2.0}  # fmt: skip
    assert missed_targets(dict(met)) == []
    assert missed_targets({**met, "power": 0.94}) == ["power >= 95 % (measured 0.94)"]
    assert missed_targets({**met, "false_alarm_rate": 0.015}) == [
        "A/A false alarms <= 1 % (measured 0.015)"
    ]
    assert missed_targets({**met, "cell_seconds_max": 3.81}) == [
        "every cell within its budget of measurement (measured 3.81)"
    ]
    assert missed_targets({**met, "cell_seconds_max": 3.81, "cell_budget_s": 5.0}) == []


def test_calibration_whose_load_ends_early_gives_no_figures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A session outliving its competing load exits 2 and writes no JSON: figures measured
    partly without the load would be labelled ``--load 1`` all the same."""
    import harness.gate.calibrate as calibrate
    import harness.gate.calibrate_paired as calibrate_paired
    from harness.gate.loadgen import LoadGenerator

    started: list[LoadGenerator] = []

    class Recorded(LoadGenerator):
        def start(self) -> None:
            super().start()
            started.append(self)

    def session_outliving_its_load(*_args: object, **_kw: object) -> dict[str, object]:
        # Outlives the load by waiting for its end (the load below ends itself after 0.5 s
        # of its own clock), not by a fixed 3 s sleep: the spawned interpreter's start-up
        # comes first, and a load's end took 1.0-1.3 s at loadavg 8 here, so a sleep's margin
        # shrinks with the machine's load. The deadline only guards against a hang.
        deadline = time.monotonic() + 120
        while started[0].alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        return {}  # never shown: leaving the load's block raises first

    monkeypatch.setattr(calibrate, "LoadGenerator", Recorded)
    monkeypatch.setattr(calibrate, "SESSION_LOAD_S", 0.5)
    monkeypatch.setattr(calibrate_paired, "run_paired_session", session_outliving_its_load)
    out = tmp_path / "figures.json"
    code = calibrate.main(["--trials", "1", "--load", "1", "--json", str(out)])
    assert code == 2 and not out.exists()
    assert "no figures: 1 of 1 busy processes (spin) ended" in capsys.readouterr().err
