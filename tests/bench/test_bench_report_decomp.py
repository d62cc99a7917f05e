"""The overhead decomposition (issue 13): a harness-driven train step split per host and preset,
from hand-made bench rows whose arithmetic is known, and its figure."""

from __future__ import annotations

import dataclasses
import math

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from harness.report_decomp import (
    COMPONENTS,
    decomposition,
    kernel_majority_preset,
    wake_join_note,
)
from harness.report_plots import decomposition_figure
from harness.rundir.rows import Row
from reference.presets import PRESETS, param_count

TINY, HUGE = (float(param_count(PRESETS[p])) for p in ("tiny", "huge"))


def _median(host: str, subject: str, ns: float, preset: str = "tiny", x: float = math.nan) -> Row:
    return Row(host, "v", "wasm32", "s", preset, "bench", subject, "measured",
               metric="median_ns", value=ns, unit="ns", x_name="params" if x == x else "",
               x_value=x)  # fmt: skip


def _regions(host: str, subject: str, preset: str, x: float, n: float) -> Row:
    return Row(host, "v", "wasm32", "s", preset, "bench", subject, "measured", metric="regions",
               value=n, unit="count", x_name="params", x_value=x)  # fmt: skip


def _rows(host: str, pm: float, wake: float | None, regions: bool = True) -> list[Row]:
    """Bridge 1000 ns, a 10 ns call, the given postMessage, one-thread steps of 110 ns (tiny,
    0 regions) and 1 s (huge, 40 regions), and a 2-thread tiny step of 30 µs with 3 regions."""
    rows = [_median(host, "bridge:noop", 1000.0), _median(host, "host:noop_call", 10.0),
            _median(host, "host:postmessage", pm),
            _median(host, "train_step", 110.0, "tiny", TINY),
            _median(host, "train_step", 1e9, "huge", HUGE),
            _median(host, "train_step:threads=2", 30_000.0, "tiny", TINY),
            Row(host, "v", "wasm32", "s", "tiny", "bench", "host:load", "measured",
                metric="load_ns", value=5e6, unit="ns")]  # fmt: skip
    if regions:
        rows += [_regions(host, "train_step", "tiny", TINY, 0.0),
                 _regions(host, "train_step", "huge", HUGE, 40.0),
                 _regions(host, "train_step:threads=2", "tiny", TINY, 3.0)]  # fmt: skip
    if wake is not None:
        rows.append(_median(host, "host:wake_join", wake))
    return rows


def _frame(rows: list[Row]) -> pd.DataFrame:
    return pd.DataFrame([dataclasses.asdict(r) for r in rows])


def _at(d: pd.DataFrame, host: str, preset: str, threads: int = 1) -> dict[str, float]:
    """The numeric columns of one host's point at one preset and thread count."""
    hit = d[(d["host"] == host) & (d["preset"] == preset) & (d["threads"] == threads)]
    assert len(hit) == 1
    return {str(k): float(v) for k, v in hit.iloc[0].items() if isinstance(v, int | float)}


@pytest.fixture
def rows() -> pd.DataFrame:
    """Chromium (its requests cross postMessage, its wake + join is measured) and Node 24 (no
    postMessage hop; no wake + join figure here), both with counted regions."""
    return _frame(_rows("chromium", 300.0, 5000.0) + _rows("node24", 400.0, None))


def test_components_add_up_to_bridge_plus_step_and_postmessage_is_chromiums(
    rows: pd.DataFrame,
) -> None:
    """Chromium's bridge loses its page→worker hop to postMessage; Node pays no postMessage;
    a step with no region pays no wake + join; the kernel is the step less the call; the
    shares of each point sum to 1."""
    d = decomposition(rows)
    c, n = _at(d, "chromium", "tiny"), _at(d, "node24", "tiny")
    assert [c[k] for k in COMPONENTS] == [700, 300, 10, 0, 100]
    assert [n[k] for k in COMPONENTS] == [1000, 0, 10, 0, 100]
    shares = d[[f"share:{k}" for k in COMPONENTS]].sum(axis=1)
    assert shares.to_numpy() == pytest.approx([1.0] * len(d))
    assert c["share:bridge"] == pytest.approx(700 / 1110)


def test_wake_join_is_the_per_region_cost_times_the_counted_regions(rows: pd.DataFrame) -> None:
    """Chromium's huge step ran 40 regions at 5 µs: 200 µs of wake + join, taken out of the
    kernel; its 2-thread tiny step ran 3: 15 µs of a 30 µs step. Node's regions are counted but
    its wake + join is not measured: the cost is unknown (NaN), stays inside the kernel share,
    and is not made up."""
    d = decomposition(rows)
    huge = _at(d, "chromium", "huge")
    assert huge["regions"] == 40 and huge["wake+join"] == 40 * 5000.0
    assert huge["kernel"] == 1e9 - 10 - 40 * 5000.0
    two = _at(d, "chromium", "tiny", threads=2)
    assert two["regions"] == 3 and two["wake+join"] == 15_000.0
    assert two["kernel"] == 30_000.0 - 10 - 15_000.0
    assert two["share:wake+join"] == pytest.approx(15_000 / (700 + 300 + 30_000))
    node = _at(d, "node24", "huge")
    assert node["regions"] == 40 and math.isnan(node["wake+join"])
    assert node["kernel"] == 1e9 - 10 and node["share:wake+join"] == 0.0


def test_the_pools_own_region_cost_prices_the_regions_at_its_thread_count() -> None:
    """A native pool probed by the library at 2 threads (pool:wake_join:threads=2, 700 ns)
    prices the 2-thread step's 3 regions; on Chromium it is preferred over the Atomics round
    trip (5 µs); a count it was not probed at (3 threads) falls back to Atomics, or NaN
    without JS workers; the note names the source and the asleep figure (not priced)."""
    native = [
        *_rows("native", 0.0, None),
        _median("native", "pool:wake_join:threads=2", 700.0),
        _median("native", "pool:wake_join_asleep:threads=2", 40_000.0),
        _median("native", "train_step:threads=3", 30_000.0, "tiny", TINY),
        _regions("native", "train_step:threads=3", "tiny", TINY, 3.0),
    ]
    chromium = [
        *_rows("chromium", 300.0, 5000.0),
        _median("chromium", "pool:wake_join:threads=2", 900.0),
        _median("chromium", "train_step:threads=3", 30_000.0, "tiny", TINY),
        _regions("chromium", "train_step:threads=3", "tiny", TINY, 3.0),
    ]
    d = decomposition(_frame(native + chromium))
    two = _at(d, "native", "tiny", threads=2)
    assert two["wake_join_ns"] == 700.0 and two["wake+join"] == 3 * 700.0
    assert two["kernel"] == 30_000.0 - 10 - 3 * 700.0
    assert _at(d, "chromium", "tiny", threads=2)["wake+join"] == 3 * 900.0
    assert _at(d, "chromium", "tiny", threads=3)["wake+join"] == 3 * 5000.0
    assert math.isnan(_at(d, "native", "tiny", threads=3)["wake+join"])
    panel = d[(d["host"] == "native") & (d["threads"] == 2)]
    assert (
        wake_join_note(panel) == "regions/step tiny 3, × 0.7 µs wake+join (the pool, timed in "
        "the library; 40.0 µs with the workers asleep)"
    )
    panel = d[(d["host"] == "chromium") & (d["threads"] == 3)]
    assert wake_join_note(panel).endswith("× 5.0 µs wake+join (one Atomics round trip)")


def test_a_run_without_region_counts_leaves_the_wake_join_unknown() -> None:
    """Rows from before tg_parallel_regions: the regions are NaN (unknown), the wake + join is
    not in the shares, and the note says the regions were not counted."""
    d = decomposition(_frame(_rows("chromium", 300.0, 5000.0, regions=False)))
    tiny = _at(d, "chromium", "tiny")
    assert math.isnan(tiny["regions"]) and math.isnan(tiny["wake+join"])
    assert tiny["kernel"] == 100 and tiny["share:wake+join"] == 0.0
    assert "not counted" in wake_join_note(d[d["threads"] == 1])


def test_dominant_cost_and_the_kernel_majority_are_named(rows: pd.DataFrame) -> None:
    """At tiny the bridge dominates on both hosts; at huge the kernel does, so the kernel is
    the majority from huge; the wake figure is carried where measured, NaN where not."""
    d = decomposition(rows)
    one = d[d["threads"] == 1]
    assert set(one[one["preset"] == "tiny"]["dominant"]) == {"bridge"}
    assert set(one[one["preset"] == "huge"]["dominant"]) == {"kernel"}
    assert kernel_majority_preset(one[one["host"] == "chromium"]) == "huge"
    assert _at(d, "chromium", "tiny")["wake_join_ns"] == 5000.0
    assert math.isnan(_at(d, "node24", "tiny")["wake_join_ns"])


def test_no_train_steps_no_decomposition() -> None:
    """Without train-step rows there is nothing to split: empty frame, no figure."""
    rows = _frame([_median("node24", "bridge:noop", 1.0), _median("node24", "host:noop_call", 1.0)])
    assert decomposition(rows).empty
    assert decomposition_figure(rows) is None


def test_figure_has_a_panel_per_host_and_count_naming_what_dominates(rows: pd.DataFrame) -> None:
    """One stacked panel per host·artifact and thread count, each title naming the dominant
    cost at the smallest preset, the kernel-majority preset, the load and the regions per step
    with their wake + join cost (or that it is not measured)."""
    built = decomposition_figure(rows)
    assert built is not None
    fig, plot = built
    try:
        titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
        assert len(titles) == 4
        chromium = next(t for t in titles if t.startswith("chromium · wasm32:"))
        assert "bridge dominates at tiny (63%)" in chromium
        assert "kernel ≥ 50 % from huge" in chromium and "load 5.0 ms" in chromium
        assert "regions/step tiny 0, huge 40, × 5.0 µs wake+join" in chromium
        two = next(t for t in titles if t.startswith("chromium · wasm32 · 2 threads:"))
        assert "regions/step tiny 3, × 5.0 µs wake+join" in two
        node = next(t for t in titles if t.startswith("node24 · wasm32:"))
        assert "regions/step tiny 0, huge 40; wake+join not measured (in kernel)" in node
        assert plot.name == "decomposition"
    finally:
        plt.close(fig)
