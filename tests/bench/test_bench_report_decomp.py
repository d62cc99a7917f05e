"""The overhead decomposition (issue 13): a harness-driven train step split per host and preset,
from hand-made bench rows whose arithmetic is known, and its figure."""

from __future__ import annotations

import dataclasses
import math

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from harness.report_decomp import COMPONENTS, decomposition, kernel_majority_preset
from harness.report_plots import decomposition_figure
from harness.rundir.rows import Row
from reference.presets import PRESETS, param_count

TINY, HUGE = (float(param_count(PRESETS[p])) for p in ("tiny", "huge"))


def _median(host: str, subject: str, ns: float, preset: str = "tiny", x: float = math.nan) -> Row:
    return Row(host, "v", "wasm32", "s", preset, "bench", subject, "measured",
               metric="median_ns", value=ns, unit="ns", x_name="params" if x == x else "",
               x_value=x)  # fmt: skip


def _rows(host: str, pm: float, wake: float | None) -> list[Row]:
    """Bridge 1000 ns, a 10 ns call, the given postMessage, steps of 110 ns and 1 s."""
    rows = [_median(host, "bridge:noop", 1000.0), _median(host, "host:noop_call", 10.0),
            _median(host, "host:postmessage", pm),
            _median(host, "train_step", 110.0, "tiny", TINY),
            _median(host, "train_step", 1e9, "huge", HUGE),
            Row(host, "v", "wasm32", "s", "tiny", "bench", "host:load", "measured",
                metric="load_ns", value=5e6, unit="ns")]  # fmt: skip
    if wake is not None:
        rows.append(_median(host, "host:wake_join", wake))
    return rows


def _frame(rows: list[Row]) -> pd.DataFrame:
    return pd.DataFrame([dataclasses.asdict(r) for r in rows])


def _at(d: pd.DataFrame, host: str, preset: str) -> dict[str, float]:
    """The numeric columns of one host's point at one preset."""
    hit = d[(d["host"] == host) & (d["preset"] == preset)]
    assert len(hit) == 1
    return {str(k): float(v) for k, v in hit.iloc[0].items() if isinstance(v, int | float)}


@pytest.fixture
def rows() -> pd.DataFrame:
    """Chromium (its requests cross postMessage) and Node 24 (they do not; the wake and
    postMessage figures of Node are measured but only the wake one is named)."""
    return _frame(_rows("chromium", 300.0, 5000.0) + _rows("node24", 400.0, None))


def test_components_add_up_to_bridge_plus_step_and_postmessage_is_chromiums(
    rows: pd.DataFrame,
) -> None:
    """Chromium's bridge loses its page→worker hop to postMessage; Node pays no postMessage;
    the kernel is the step less the call; the shares of each point sum to 1."""
    d = decomposition(rows)
    c, n = _at(d, "chromium", "tiny"), _at(d, "node24", "tiny")
    assert [c[k] for k in COMPONENTS] == [700, 300, 10, 100]
    assert [n[k] for k in COMPONENTS] == [1000, 0, 10, 100]
    shares = d[[f"share:{k}" for k in COMPONENTS]].sum(axis=1)
    assert shares.to_numpy() == pytest.approx([1.0] * len(d))
    assert c["share:bridge"] == pytest.approx(700 / 1110)


def test_dominant_cost_and_the_kernel_majority_are_named(rows: pd.DataFrame) -> None:
    """At tiny the bridge dominates on both hosts; at huge the kernel does, so the kernel is
    the majority from huge; the wake figure is carried where measured, NaN where not."""
    d = decomposition(rows)
    assert set(d[d["preset"] == "tiny"]["dominant"]) == {"bridge"}
    assert set(d[d["preset"] == "huge"]["dominant"]) == {"kernel"}
    assert kernel_majority_preset(d[d["host"] == "chromium"]) == "huge"
    assert _at(d, "chromium", "tiny")["wake_join_ns"] == 5000.0
    assert math.isnan(_at(d, "node24", "tiny")["wake_join_ns"])


def test_no_train_steps_no_decomposition() -> None:
    """Without train-step rows there is nothing to split: empty frame, no figure."""
    rows = _frame([_median("node24", "bridge:noop", 1.0), _median("node24", "host:noop_call", 1.0)])
    assert decomposition(rows).empty
    assert decomposition_figure(rows) is None


def test_figure_has_a_panel_per_host_naming_what_dominates(rows: pd.DataFrame) -> None:
    """One stacked panel per host·artifact, each title naming the dominant cost at the smallest
    preset, the kernel-majority preset, the load and the wake + join (or that it is missing)."""
    built = decomposition_figure(rows)
    assert built is not None
    fig, plot = built
    try:
        titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
        assert len(titles) == 2
        chromium = next(t for t in titles if t.startswith("chromium"))
        assert "bridge dominates at tiny (63%)" in chromium
        assert "kernel ≥ 50 % from huge" in chromium
        assert "load 5.0 ms" in chromium and "wake + join 5.0 µs per region" in chromium
        assert "wake + join not measured" in next(t for t in titles if t.startswith("node24"))
        assert plot.name == "decomposition"
    finally:
        plt.close(fig)
