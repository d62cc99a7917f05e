"""The WebGPU-over-WASM train-step speedup (issue 16): the step's samples, the ratio's CI, the plot.

From recorded runs: ``fixtures/webgpu_curve_run`` (the bench's train_step of webgpu and wasm32
in Chromium at tiny and small on SwiftShader, each figure with its samples) and
``fixtures/webgpu_step_run`` (an earlier run whose step figure is a median alone). One test
runs Chromium for real: the webgpu artifact's bench row carries its samples.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import LineCollection
from matplotlib.lines import Line2D

from harness.build import Variant, build_variant
from harness.checks.webgpu_curve import ADAPTER_SUFFIX, CPU_EMULATED, MARK, VERSUS_SUBJECT
from harness.cli import main
from harness.hosts.timeouts import Timeouts
from harness.plot_style import NOISY, SERIES
from harness.report_data import load_run_dir
from harness.report_plots import FIGURES, webgpu_speedup_figure
from harness.report_webgpu import webgpu_speedup_table, webgpu_speedups
from harness.rundir.reader import read_rows
from harness.rundir.rows import COLUMNS, RESULTS_FILE
from tests.formats.bundled_run import run_bundled_kernels

FIXTURES = Path(__file__).parent / "fixtures"
CURVE_RUN = FIXTURES / "webgpu_curve_run"  # samples on both sides
MEDIAN_ONLY_RUN = FIXTURES / "webgpu_step_run"  # the step's median alone (before samples)
EMULATED = "chromium · webgpu · google/swiftshader (CPU-emulated)"


def _samples(run: Path, artifact: str, preset: str) -> list[float]:
    """A figure's time_ns samples, read from results.csv row by row (not through pandas)."""
    return [
        r.value
        for r in read_rows(run / RESULTS_FILE)
        if r.check == "bench" and r.subject == "train_step" and r.metric == "time_ns"
        and r.artifact == artifact and r.preset == preset and r.iteration >= 0
    ]  # fmt: skip


def _series(ax: object) -> dict[str, Line2D]:
    lines: list[Line2D] = ax.get_lines()  # type: ignore[attr-defined]
    return {
        str(line.get_gid()).removeprefix(SERIES): line
        for line in lines
        if str(line.get_gid()).startswith(SERIES)
    }


def _bars(ax: object, label: str) -> list[np.ndarray]:
    """The CI error bars' segments (x, y) of series ``label`` on ``ax``."""
    collections = ax.collections  # type: ignore[attr-defined]
    return [
        np.asarray(s, float)
        for c in collections
        if isinstance(c, LineCollection) and str(c.get_gid()) == f"ci:{label}"
        for s in c.get_segments()
    ]


def test_the_recorded_run_gives_the_speedup_and_a_ci_from_both_sides_samples() -> None:
    """Per preset, the speedup is median(wasm32's samples) / median(the step's samples), its CI
    a proper interval around it, and the table prints both with the sample counts."""
    pts = webgpu_speedups(load_run_dir(CURVE_RUN).rows)
    assert list(pts["preset"]) == ["tiny", "small"]  # by parameter count
    for _, p in pts.iterrows():
        gpu = _samples(CURVE_RUN, "webgpu", str(p["preset"]))
        wasm = _samples(CURVE_RUN, "wasm32", str(p["preset"]))
        assert len(gpu) == p["gpu_n"] == 5 and len(wasm) == p["wasm_n"] >= 5
        assert p["speedup"] == pytest.approx(np.median(wasm) / np.median(gpu), rel=1e-9)
        assert p["ci_low"] < p["ci_high"]
        assert p["ci_low"] <= p["speedup"] <= p["ci_high"]
        assert p["emulated"] and p["adapter"] == "google/swiftshader"
    table = webgpu_speedup_table(load_run_dir(CURVE_RUN).rows)
    assert table is not None
    assert table.header[:4] == ("host · artifact · adapter", "preset", "speedup", "95 % CI")
    for row, (_, p) in zip(table.body, pts.iterrows(), strict=True):
        assert row[0] == EMULATED and row[1] == p["preset"]
        assert row[2] == f"{p['speedup']:.3g}×"
        assert row[3] == f"[{p['ci_low']:.3g}, {p['ci_high']:.3g}]"
        assert row[5].endswith("(n=5)")


def test_the_plot_draws_one_line_per_adapter_with_ci_bars_on_a_cpu_emulated_panel() -> None:
    """The figure has one panel, titled CPU-emulated, one series (the adapter) through the two
    presets at their parameter counts, and error bars at the CI."""
    built = webgpu_speedup_figure(load_run_dir(CURVE_RUN).rows)
    assert built is not None
    fig, plot = built
    assert plot.name == "webgpu_speedup"
    (ax,) = fig.axes
    assert ax.get_title().startswith(CPU_EMULATED)
    series = _series(ax)
    (label,) = series
    assert label == f"{EMULATED}\nover wasm32"
    pts = webgpu_speedups(load_run_dir(CURVE_RUN).rows)
    x, y = series[label].get_data()
    assert list(np.asarray(x, float)) == [5616.0, 112384.0]
    points = np.asarray(pts["speedup"], float)
    drawn = np.asarray(y, float)
    hollow = [ln for ln in ax.get_lines() if str(ln.get_gid()) == NOISY + label]
    if hollow:  # a noisy point is off the line (NaN there) and drawn hollow instead
        drawn = np.where(np.isnan(drawn), points, drawn)
    assert np.allclose(drawn, points)
    tops = sorted(float(max(s[:, 1])) for s in _bars(ax, label))
    assert np.allclose(tops, sorted(np.asarray(pts["ci_high"], float)))


def _with_a_gpu_adapter(run: Path, tmp: Path) -> Path:
    """A copy of ``run`` plus a second adapter's figure, not CPU-emulated: the step's rows
    copied under ``train_step:adapter=nvidia/ampere``, its times a thousandth. Synthetic (no
    real GPU here); only the adapter split is under test."""
    raw = pd.read_csv(run / RESULTS_FILE, dtype=str, keep_default_na=False)
    gpu = raw[(raw["artifact"] == "webgpu") & (raw["subject"] == "train_step")].copy()
    gpu["subject"] = f"train_step{ADAPTER_SUFFIX}nvidia/ampere"
    timed = gpu["unit"] == "ns"
    gpu.loc[timed, "value"] = [str(float(v) / 1000) for v in gpu.loc[timed, "value"]]
    gpu["detail"] = [
        d.replace(f"; {CPU_EMULATED} (google/swiftshader)", "").replace(
            "google/swiftshader", "nvidia/ampere"
        )
        for d in gpu["detail"]
    ]
    out = tmp / "two-adapters"
    out.mkdir()
    (out / "run.json").write_text((run / "run.json").read_text())
    pd.concat([raw, gpu])[list(COLUMNS)].to_csv(out / RESULTS_FILE, index=False)
    return out


def test_a_cpu_emulated_adapter_is_never_on_a_real_gpus_axes(tmp_path: Path) -> None:
    """With a GPU adapter beside SwiftShader: two panels, the GPU's line alone on the first,
    SwiftShader's alone on the one titled CPU-emulated; the table keeps them on separate rows."""
    rows = load_run_dir(_with_a_gpu_adapter(CURVE_RUN, tmp_path)).rows
    built = webgpu_speedup_figure(rows)
    assert built is not None
    gpu_ax, cpu_ax = built[0].axes
    assert CPU_EMULATED not in gpu_ax.get_title()
    assert cpu_ax.get_title().startswith(CPU_EMULATED)
    assert list(_series(gpu_ax)) == ["chromium · webgpu · nvidia/ampere\nover wasm32"]
    assert list(_series(cpu_ax)) == [f"{EMULATED}\nover wasm32"]
    pts = webgpu_speedups(rows)
    real = pts[~pts["emulated"]]
    assert list(real["adapter"]) == ["nvidia/ampere"] * 2
    emulated = pts[pts["emulated"]]
    assert np.allclose(real["speedup"].to_numpy(float), 1000 * emulated["speedup"].to_numpy(float))


def test_a_median_without_samples_gives_an_unknown_ci_not_a_number() -> None:
    """The earlier run's step has no samples: the ratio of the two medians is shown, the CI is
    NaN and the table says unknown with the counts; the plotted point is hollow, no bar drawn."""
    rows = load_run_dir(MEDIAN_ONLY_RUN).rows
    pts = webgpu_speedups(rows)
    assert list(pts["gpu_n"]) == [0, 0] and pts["ci_low"].isna().all()
    assert pts["ci_high"].isna().all()
    table = webgpu_speedup_table(rows)
    assert table is not None
    for row in table.body:
        assert row[3] == "unknown: 0 WebGPU and 10 WASM samples (at least 3 a side)"
    built = webgpu_speedup_figure(rows)
    assert built is not None
    (ax,) = built[0].axes
    (label,) = _series(ax)
    hollow = [ln for ln in ax.get_lines() if str(ln.get_gid()) == NOISY + label]
    assert len(hollow) == 1 and np.asarray(hollow[0].get_xdata()).size == 2
    assert all(s[0, 1] == s[1, 1] for s in _bars(ax, label))  # zero-length bars, if any


def test_two_samples_a_side_or_no_wasm_figure_give_no_ci(tmp_path: Path) -> None:
    """Two of the step's samples at tiny (below MIN_SAMPLES): no CI there, small keeps its CI;
    with wasm32's rows gone: no speedup at all, the table says so and there is no plot."""
    raw = pd.read_csv(CURVE_RUN / RESULTS_FILE, dtype=str, keep_default_na=False)
    few = (raw["artifact"] == "webgpu") & (raw["preset"] == "tiny") & (raw["metric"] == "time_ns")
    cut = raw[~few | raw["iteration"].isin(["0", "1"])]
    run = tmp_path / "few"
    run.mkdir()
    (run / "run.json").write_text((CURVE_RUN / "run.json").read_text())
    cut[list(COLUMNS)].to_csv(run / RESULTS_FILE, index=False)
    pts = webgpu_speedups(load_run_dir(run).rows)
    tiny, small = (pts[pts["preset"] == p].iloc[0] for p in ("tiny", "small"))
    assert tiny["gpu_n"] == 2 and math.isnan(float(tiny["ci_low"]))
    assert small["gpu_n"] == 5 and math.isfinite(float(small["ci_low"]))
    cut[cut["artifact"] != "wasm32"][list(COLUMNS)].to_csv(run / RESULTS_FILE, index=False)
    rows = load_run_dir(run).rows
    assert webgpu_speedups(rows)["speedup"].isna().all()
    table = webgpu_speedup_table(rows)
    assert table is not None
    assert {r[2] for r in table.body} == {"—"}
    assert {r[3] for r in table.body} == {"unknown: no WASM figure"}
    assert webgpu_speedup_figure(rows) is None


def test_the_report_writes_the_plot_and_links_it_beside_the_table(tmp_path: Path) -> None:
    """``tinygpt-harness report`` on the recorded run writes plots/webgpu_speedup.png and .svg,
    embeds the PNG in index.html, links the SVG, and keeps the table with its CI column."""
    assert webgpu_speedup_figure in FIGURES
    out = tmp_path / "report"
    assert main(["report", str(CURVE_RUN), "--out", str(out)]) == 0
    png, svg = out / "plots" / "webgpu_speedup.png", out / "plots" / "webgpu_speedup.svg"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert CPU_EMULATED in svg.read_text()
    page = (out / "index.html").read_text()
    assert "<a href='plots/webgpu_speedup.svg'>SVG</a>" in page
    assert "WebGPU over WASM, by preset and adapter" in page
    assert "WebGPU train step over the best WASM artifact" in page and "95 % CI" in page


TIMEOUTS = Timeouts(call_s=120.0, load_s=120.0, time_s=120.0, transfer_s=60.0, start_s=60.0)


@pytest.mark.chromium
def test_the_webgpu_bench_row_carries_its_samples(tmp_path: Path) -> None:
    """``run`` of the bench's train_step on chromium/webgpu/tiny (3 samples): three time_ns
    rows, and the median and CI rows are those samples' (median among them, CI around it)."""
    code, out = run_bundled_kernels(
        tmp_path,
        'name = "webgpu-samples"\npresets = ["tiny"]\nchecks = ["bench"]\ntimeout_s = 120\n'
        '[hosts]\nchromium = {}\n[check.bench]\ncurves = ["train_step"]\nreference = false\n'
        "paired = false\nmin_samples = 3\nmax_samples = 3\n",
        TIMEOUTS,
    )
    assert code == 0
    rows = [r for r in read_rows(out / RESULTS_FILE) if r.subject == "train_step"]
    samples = [r.value for r in rows if r.metric == "time_ns"]
    assert [r.iteration for r in rows if r.metric == "time_ns"] == [0, 1, 2]
    assert all(v > 0 for v in samples)
    stats = {r.metric: r for r in rows if r.iteration == -1}
    assert stats["median_ns"].value == pytest.approx(float(np.median(samples)))
    assert min(samples) <= stats["ci_low_ns"].value <= stats["median_ns"].value
    assert stats["median_ns"].value <= stats["ci_high_ns"].value <= max(samples)
    assert (
        MARK in stats["median_ns"].detail and "clock=timestamp-query" in stats["median_ns"].detail
    )


VERSUS_BODY = (
    'name = "webgpu-versus"\npresets = ["tiny"]\nchecks = ["bench"]\ntimeout_s = 120\n'
    '[hosts]\nchromium = {}\n[check.bench]\ncurves = ["train_step"]\nreference = false\n'
    "paired = false\nmin_samples = 3\nmax_samples = 3\npairs = 4\nblock_ms = 50.0\n"
    'paired_s = 5.0\nversus = "%s"\n'
)


@pytest.mark.chromium
def test_the_step_is_timed_beside_the_wasm_artifact_it_names(tmp_path: Path) -> None:
    """``versus = "wasm32"``: the WASM artifact is loaded in the same Chromium beside the step
    and their blocks alternate; the figure (``train_step:vs_wasm``) is the median of the
    per-pair ratios with a CI around it, and the report takes it, saying it was side by side,
    in place of the two cells' medians."""
    built = build_variant(tmp_path / "build", Variant("wasm32-versus", "wasm32", ()))
    wasm = dataclasses.replace(built, name="wasm32")
    code, out = run_bundled_kernels(tmp_path, VERSUS_BODY % "wasm32", TIMEOUTS, also=(wasm,))
    assert code == 0
    rows = [r for r in read_rows(out / RESULTS_FILE) if r.subject == VERSUS_SUBJECT]
    ratios = [r.value for r in rows if r.metric == "pair_ratio"]
    stats = {r.metric: r for r in rows if r.iteration == -1}
    assert len(ratios) >= 3 and all(v > 0 for v in ratios)
    assert stats["speedup"].value == pytest.approx(float(np.median(ratios)))
    assert stats["speedup_ci_low"].value <= stats["speedup"].value
    assert stats["speedup"].value <= stats["speedup_ci_high"].value
    assert f"{MARK} beside wasm32 (tg_model_train_step) in one chromium instance" in (
        stats["speedup"].detail
    )
    pts = webgpu_speedups(load_run_dir(out).rows)
    tiny = pts[pts["preset"] == "tiny"].iloc[0]
    assert str(tiny["method"]).startswith("side by side (") and tiny["wasm_artifact"] == "wasm32"
    assert float(tiny["speedup"]) == pytest.approx(stats["speedup"].value)


def test_a_versus_artifact_the_manifest_lacks_exits_2_at_load(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A matrix timing the step beside an artifact the manifest does not have is bad config:
    exit 2 before any host starts, naming the option and the artifacts there are."""
    code, _ = run_bundled_kernels(tmp_path, VERSUS_BODY % "wasm33", TIMEOUTS)
    assert code == 2
    err = capsys.readouterr().err
    assert (
        "[check.bench] versus = 'wasm33': no such artifact in the manifest (it has webgpu)" in err
    )
