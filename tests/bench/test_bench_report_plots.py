"""The report's figures, read through matplotlib's object model, and its first screen.

The rules under test (issue 14): at most eight series per axis, each with its own colour and
marker; legends outside the data; noisy points hollow and never on a line; parity coloured by
margin (error / bound, a pass below 1) on a log scale; the gate's verdict and the history trends
on the page when ``--base`` and ``--store`` are given.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import LogNorm, to_hex
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from harness.cli import main
from harness.gate.series import build_series
from harness.gate.store import iter_entries
from harness.gate.trend_plots import trend_figure
from harness.parity import compare
from harness.plot_style import MAX_SERIES, NOISY, SERIES, host_family
from harness.report_data import curve, load_run_dir, parity_map, parity_margin
from harness.report_plots import FIGURES, parity_figure, roofline_figure, speedup_figure
from harness.rundir.rows import COLUMNS, REFERENCE_HOST, RESULTS_FILE
from harness.tolerance import Tolerance

FIXTURE = Path(__file__).parent / "fixtures" / "run_small"
NO_LINE = ("None", "none", "", " ")
# Copies of recorded cells under other names, so that a run has 14 host·artifact pairs (10 on
# V8): more than one axis may hold, as a full CI matrix has.
V8_COPIES = [("node", "wasm32"), ("node", "wasm64"), ("node22", "wasm32"), ("node22", "wasm64"),
             ("node24", "wasm64"), ("chromium", "wasm32"), ("chromium", "wasm64"),
             ("node26", "wasm32"), ("node26", "wasm64")]  # fmt: skip
OTHER_COPIES = [("native", "native-x86-64"), ("wasmtime", "wasm64")]


def _fixture_rows() -> pd.DataFrame:
    return load_run_dir(FIXTURE).rows


def _wide_csv() -> pd.DataFrame:
    """The fixture's results.csv plus renamed copies of node24·wasm32 and wasmtime·wasm32."""
    raw = pd.read_csv(FIXTURE / RESULTS_FILE, dtype=str, keep_default_na=False)
    v8 = raw[(raw["host"] == "node24") & (raw["artifact"] == "wasm32")]
    other = raw[(raw["host"] == "wasmtime") & (raw["artifact"] == "wasm32")]
    copies = [v8.assign(host=h, artifact=a) for h, a in V8_COPIES]
    copies += [other.assign(host=h, artifact=a) for h, a in OTHER_COPIES]
    return pd.concat([raw, *copies], ignore_index=True)[list(COLUMNS)]


@pytest.fixture(scope="module")
def wide_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory with 14 host·artifact pairs (the fixture's run.json)."""
    run = tmp_path_factory.mktemp("wide") / "run"
    shutil.copytree(FIXTURE, run)
    _wide_csv().to_csv(run / RESULTS_FILE, index=False)
    return run


def _figures(rows: pd.DataFrame) -> Iterator[tuple[str, Figure]]:
    for build in FIGURES:
        built = build(rows)
        if built is not None:
            yield built[1].name, built[0]


def _series(ax: object) -> dict[str, Line2D]:
    lines: list[Line2D] = ax.get_lines()  # type: ignore[attr-defined]
    return {
        str(line.get_gid())[len(SERIES) :]: line
        for line in lines
        if str(line.get_gid()).startswith(SERIES)
    }


@pytest.mark.parametrize("which", ["fixture", "wide"])
def test_each_axis_has_at_most_eight_series_styled_apart(which: str, wide_run: Path) -> None:
    """Every axis of every figure: <= 8 series, no colour twice, no marker twice."""
    rows = _fixture_rows() if which == "fixture" else load_run_dir(wide_run).rows
    names = []
    for name, fig in _figures(rows):
        names.append(name)
        drawn = 0
        for ax in fig.axes:
            lines = _series(ax)
            assert len(lines) <= MAX_SERIES, (name, ax.get_title())
            colours = [to_hex(line.get_color()) for line in lines.values()]
            assert len(set(colours)) == len(colours), (name, ax.get_title(), colours)
            markers = [line.get_marker() for line in lines.values()]
            assert len(set(markers)) == len(markers), (name, ax.get_title(), markers)
            drawn += len(lines)
        # the heat map and the stacked shares draw areas, not series
        assert drawn > 0 or name in ("parity", "decomposition"), name
        plt.close(fig)
    assert {"speedup", "roofline", "generation", "overhead"} <= set(names)


def test_wide_run_is_faceted_and_every_pair_drawn_once(wide_run: Path) -> None:
    """14 pairs: the speedup figure splits V8's 10 over two panels and draws each pair once."""
    rows = load_run_dir(wide_run).rows
    built = speedup_figure(rows)
    assert built is not None
    fig = built[0]
    per_axis = [list(_series(ax)) for ax in fig.axes if _series(ax)]
    assert len(per_axis) >= 3  # native and wasmtime, and V8 split by artifact
    labels = [label.split(" (")[0] for axis in per_axis for label in axis]
    pts = curve(rows, "train_step", "speedup")
    pairs = {f"{h} · {a}" for h, a in zip(pts["host"], pts["artifact"], strict=True)}
    assert sorted(labels) == sorted(pairs - {f"{REFERENCE_HOST} · reference"})
    assert len(pairs) == 14
    for axis in per_axis:  # one family per axis
        assert len({host_family(label.split(" · ")[0]) for label in axis}) == 1
    plt.close(fig)


def test_legends_sit_outside_the_data(wide_run: Path) -> None:
    """Once drawn, no legend overlaps its axes' data area."""
    for name, fig in _figures(load_run_dir(wide_run).rows):
        fig.canvas.draw()
        for ax in fig.axes:
            legend = ax.get_legend()
            if legend is None:
                continue
            inside = legend.get_window_extent().overlaps(ax.get_window_extent())
            assert not inside, (name, ax.get_title())
        plt.close(fig)


def _lined_points(ax: object) -> set[tuple[float, float]]:
    """Every finite (x, y) of a series line that draws segments."""
    out = set()
    for line in _series(ax).values():
        if line.get_linestyle() in NO_LINE:
            continue
        x, y = np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)
        out |= {(a, b) for a, b in zip(x, y, strict=True) if np.isfinite(a) and np.isfinite(b)}
    return out


def test_noisy_points_are_hollow_and_on_no_line() -> None:
    """Noisy points: separate hollow markers without linestyle; no line passes through them."""
    hollow = 0
    for name, fig in _figures(_fixture_rows()):
        for ax in fig.axes:
            lined = _lined_points(ax)
            for line in ax.get_lines():
                if not str(line.get_gid()).startswith(NOISY):
                    continue
                assert line.get_linestyle() in NO_LINE, name
                assert to_hex(line.get_markerfacecolor()) == "#ffffff", name
                x, y = np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)
                for point in zip(x, y, strict=True):
                    assert point not in lined, (name, ax.get_title(), point)
                    hollow += 1
        plt.close(fig)
    assert hollow > 0  # the fixture has noisy figures: the test saw some


def test_every_noisy_speedup_is_drawn_hollow_and_no_clean_one_is() -> None:
    """From the rows: the noisy speedups are exactly the hollow points of the speedup figure."""
    rows = _fixture_rows()
    pts = curve(rows, "train_step", "speedup")
    pts = pts[pts["host"] != REFERENCE_HOST]
    noisy = pts[pts["status"] == "noisy"]
    want = {(float(x), float(y)) for x, y in zip(noisy["x_value"], noisy["value"], strict=True)}
    built = speedup_figure(rows)
    assert built is not None and want
    hollow, lined = set(), set()
    for ax in built[0].axes:
        lined |= _lined_points(ax)
        for line in ax.get_lines():
            if str(line.get_gid()).startswith(NOISY):
                x, y = np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)
                hollow |= {(float(a), float(b)) for a, b in zip(x, y, strict=True)}
    assert hollow == want
    assert not (want & lined)
    plt.close(built[0])


def _ops_row(cell: str, subject: str, status: str, rel: float, detail: str) -> dict[str, object]:
    host, artifact, preset = cell.split("/")
    row: dict[str, object] = dict.fromkeys(COLUMNS, "")
    row.update(host=host, artifact=artifact, preset=preset, check="ops", subject=subject,
               status=status, metric="max_rel_err", value=rel, detail=detail,
               x_value=float("nan"), iteration=-1)  # fmt: skip
    return row


def test_parity_colours_encode_margin_on_a_log_scale_centred_on_one() -> None:
    """A pass with a huge relative error is coloured by its margin (0.006), on the pass side."""
    rows = _fixture_rows()
    extra = pd.DataFrame([
        _ops_row("native/native/tiny", "attention_backward.dinp", "pass", 8.9e9,
                 "ok over 6 cases; closest to tolerance: [B=2] attention_backward.dinp: ok; "
                 "worst at index (0,): found 1e-12, expected 0, |diff| 1e-12 (0.00612x the "
                 "bound; max abs 1e-12, max rel 8.9e+09, max ulp 3) with rtol=1e-05 atol=1e-05"),
        _ops_row("native/native/small", "attention_backward.dinp", "fail", 0.02,
                 "[B=2] attention_backward.dinp: values stage: 3 of 64 elements out of "
                 "tolerance; worst at index (1,): found 1.02, expected 1, |diff| 0.02 (3.5x the "
                 "bound; max abs 0.02, max rel 0.02, max ulp 9) with rtol=1e-05 atol=1e-05"),
    ])  # fmt: skip
    rows = pd.concat([rows, extra.astype(rows.dtypes.to_dict())], ignore_index=True)
    built = parity_figure(rows)
    assert built is not None
    fig = built[0]
    (image,) = [im for ax in fig.axes for im in ax.get_images() if im.get_gid() == "parity:margin"]
    norm = image.norm
    assert isinstance(norm, LogNorm)
    assert norm.vmin is not None and norm.vmax is not None
    assert norm.vmin * norm.vmax == pytest.approx(1.0)  # 1, the bound, is the middle colour
    pm = parity_map(rows)
    assert pm is not None
    array = image.get_array()
    assert array is not None
    shown = np.ma.getdata(array)
    cells, ops = list(pm.margin.index), list(pm.margin.columns)
    at = (cells.index("native/native/tiny"), ops.index("attention_backward"))
    assert shown[at] == pytest.approx(0.00612)
    assert float(norm(shown[at])) < 0.5
    bad = (cells.index("native/native/small"), ops.index("attention_backward"))
    assert shown[bad] == pytest.approx(3.5) and float(norm(shown[bad])) > 0.5
    # Every other cell passed: its margin is below the bound, its colour on the pass side.
    margin = pm.margin.to_numpy(float)
    passed = ~pm.failed.to_numpy() & np.isfinite(margin) & (margin > 0)
    assert passed.sum() > 10
    assert (margin[passed] <= 1).all() and (np.asarray(norm(margin[passed])) < 0.5).all()
    # The fixture's older details name the worst element: the margin is recomputed from it.
    gelu = pm.margin.loc["native/native/tiny", "gelu_forward"]
    got, want = -0.00019898793834727257, -0.0001988755102502182
    assert gelu == pytest.approx(abs(got - want) / (1e-05 + 1.3e-06 * abs(want)))
    plt.close(fig)


def test_margin_read_from_the_parity_message_is_its_worst_ratio() -> None:
    """parity.compare's own message gives back its worst_ratio, passing or failing."""
    tol = Tolerance(rtol=1e-3, atol=1e-6, reason="test")
    expected = np.linspace(-2, 2, 50, dtype=np.float32)
    for scale in (0.2, 0.9, 4.0):
        found = (expected * (1 + scale * 1e-3)).astype(np.float32)
        r = compare("op.out", found, expected, tol)
        status = "pass" if r.ok else "fail"
        assert parity_margin(r.message, status) == pytest.approx(r.worst_ratio, rel=5e-3)
    nan = compare("op.out", np.full(3, np.nan, np.float32), np.zeros(3, np.float32), tol)
    assert parity_margin(nan.message, "fail") == float("inf")


@pytest.mark.slow
def test_first_screen_carries_the_gate_and_names_the_regression(tmp_path: Path) -> None:
    """--base: the gate's verdict (its own rule) heads the page; a 2x slower step is named."""
    cand = tmp_path / "cand"
    shutil.copytree(FIXTURE, cand)
    raw = pd.read_csv(cand / RESULTS_FILE, dtype=str, keep_default_na=False)
    slow = (raw["host"] == "native") & (raw["preset"] == "tiny") & (raw["subject"] == "train_step")
    slow &= raw["metric"] == "time_ns"
    raw.loc[slow, "value"] = [repr(2 * float(v)) for v in raw.loc[slow, "value"]]
    raw.to_csv(cand / RESULTS_FILE, index=False)
    out = tmp_path / "out"
    assert main(["report", str(cand), "--out", str(out), "--base", str(FIXTURE)]) == 0
    page = (out / "index.html").read_text()
    first = page[: page.index("<table")]
    assert "GATE FAIL" in first and "native/native/tiny train_step" in first
    # summary.md: among the headline lines above the title (the fixture is also incomplete)
    assert "GATE FAIL" in (out / "summary.md").read_text().split("## TinyGPT")[0]
    assert "<h2>Gate</h2>" in page


def test_bad_base_or_store_exits_two_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--base that is not a run directory, or a missing --store: exit 2, one line."""
    out = str(tmp_path / "out")
    assert main(["report", str(FIXTURE), "--out", out, "--base", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("report: --base:") and "\n" not in err
    assert main(["report", str(FIXTURE), "--out", out, "--store", str(tmp_path / "no")]) == 2
    assert "is not a directory" in capsys.readouterr().err


@pytest.mark.slow
def test_store_embeds_trends_after_the_tables(tmp_path: Path, wide_run: Path) -> None:
    """--store: the train-step trends are embedded after the tables; each axis <= 8 series."""
    store = tmp_path / "store"
    assert main(["history", "--store", str(store), "--add", str(wide_run)]) == 0
    out = tmp_path / "out"
    # The fixture reported against a store holding the wide run (the same machine): its trends.
    assert main(["report", str(FIXTURE), "--out", str(out), "--store", str(store)]) == 0
    page = (out / "index.html").read_text()
    assert page.index("<h2>Key figures</h2>") < page.index("<h2 id='history'>")
    trends = sorted((out / "history").rglob("train-step*.png"))
    assert len(trends) == 2  # tiny and small on the fixture's machine
    history = page[page.index("<h2 id='history'>") :]
    assert history.count("src='data:image/png;base64,") == 2
    series = [s for s in build_series(iter_entries(store)) if s.key.subject == "train_step"]
    order = list(dict.fromkeys(e.commit for e in iter_entries(store)))
    fig = trend_figure([s for s in series if s.key.x == series[0].key.x], {}, order)
    counts = [len(_series(ax)) for ax in fig.axes]
    assert max(counts) <= MAX_SERIES and sum(counts) == 15  # 14 pairs and numpy
    plt.close(fig)


def test_roofline_figure_draws_the_sgemm_line_in_every_panel(wide_run: Path) -> None:
    """Each panel of the key throughput figure carries the one-thread sgemm yardstick."""
    built = roofline_figure(load_run_dir(wide_run).rows)
    assert built is not None
    panels = [ax for ax in built[0].axes if _series(ax)]
    assert len(panels) >= 2
    for ax in panels:
        assert any(line.get_gid() == "ref:roofline" for line in ax.get_lines())
    plt.close(built[0])
