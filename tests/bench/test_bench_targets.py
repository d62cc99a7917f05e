"""Target verdicts of ``harness.bench_targets``: met, missed, inconclusive, never lowered."""

from __future__ import annotations

from harness.bench_targets import THREADS_SPEEDUP, Figure, Target, exit_code, render
from harness.timing import Measurement, summarize


def _figure(label: str, gflops: float, spread: float) -> Figure:
    """A figure of ``gflops`` whose samples spread +-``spread`` around 1 ms per call."""
    samples = tuple(1e6 * (1 + spread * k) for k in (-1.0, -0.5, 0.0, 0.5, 1.0) * 3)
    s = summarize(samples)
    m = Measurement(samples, 1, "perf_counter_ns", 50.0, s, s.is_noisy(0.10), 0.1)
    return Figure(label, gflops, m)


def test_clean_figures_decide_met_and_missed() -> None:
    """Clean figures: >= threshold is met, below is missed (exit 1), exactly as measured."""
    roof = _figure("blas", 100.0, 0.01)
    assert Target("t", _figure("k", 50.0, 0.01), roof, 0.50).status == "met"
    missed = Target("t", _figure("k", 49.9, 0.01), roof, 0.50)
    assert missed.status == "missed"
    assert exit_code([missed]) == 1


def test_noisy_figure_decides_only_when_ci_cannot_change_the_outcome() -> None:
    """A noisy figure far below the line is missed; one near it is inconclusive."""
    roof = _figure("native", 100.0, 0.01)
    far = Target("t", _figure("wasm", 20.0, 0.6), roof, 0.40)
    near = Target("t", _figure("wasm", 39.0, 0.6), roof, 0.40)
    assert far.numerator.measurement is not None and far.numerator.measurement.noisy
    assert far.status == "missed"
    assert near.status == "inconclusive (noisy)"


def test_missing_figure_is_not_measured_with_reason() -> None:
    """A host that is not installed gives 'not measured' and exit 2, with the reason in text."""
    absent = Figure("wasm32 under node24", None, None, "node24: no node executable")
    t = Target("t", absent, _figure("native", 100.0, 0.01), 0.40)
    assert t.status == "not measured" and t.ratio is None
    assert "not measured: node24: no node executable" in absent.text()
    assert exit_code([t]) == 2


def test_speedup_target_reads_as_a_multiple_with_the_load_beside_it() -> None:
    """The thread target (threshold above 1) is written as 1.85x against 1.7x, not as 185%,
    and the page names the load average the figures were taken under."""
    one = _figure("native, 1 thread", 100.0, 0.01)
    two = _figure("native, 2 threads", 185.0, 0.01)
    t = Target("2 threads ≥ 1.7x 1 thread", two, one, THREADS_SPEEDUP)
    assert t.status == "met"
    text = render([t], "python -m harness.bench_targets", {"load": "0.10/0.20/0.30 before"}, {})
    assert "| 1.85x | 1.7x | ✅ met |" in text
    assert "0.10/0.20/0.30 before" in text
    slow = Target("t", _figure("native, 2 threads", 150.0, 0.01), one, THREADS_SPEEDUP)
    assert slow.status == "missed"
