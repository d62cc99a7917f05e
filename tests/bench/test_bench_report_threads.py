"""The report's thread axis, its skipped checks and its parity layout (the s43 adoption trial).

A run with ``[check.bench] threads = [1, 2, 3]`` wrote ``threads:train_step`` and
``threads:op:<op>@n=<n>`` speedups and ``<subject>:threads=<n>`` figures that no table or plot
showed, and kernels.png drew one panel per count (none at 1 thread). A run whose every bench row
was skipped (a library bound without tinygpt.h's ABI) said nothing about it, and its determinism
rows were nowhere. parity.png's colour-bar label ran off the figure.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.figure import Figure

from harness.cli import main
from harness.plot_style import SERIES, reserve_footer
from harness.report_data import load_run_dir
from harness.report_plots import kernels_figure, parity_figure, threads_figure
from harness.rundir.meta import RUN_FILE
from harness.rundir.reader import read_rows
from harness.rundir.rows import RESULTS_FILE, Row, encode
from tests.bench.test_bench_report import md_table

FIXTURE = Path(__file__).parent / "fixtures" / "run_small"
CELL = {"host": "native", "host_version": "x", "artifact": "native", "artifact_sha256": "ab" * 32,
        "preset": "tiny"}  # fmt: skip


def _row(check: str, subject: str, status: str, **kw: object) -> Row:
    return Row(**CELL, check=check, subject=subject, status=status, **kw)  # type: ignore[arg-type]


def _append(run: Path, rows: list[Row]) -> None:
    with (run / RESULTS_FILE).open("a", encoding="utf-8", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows(encode(r) for r in rows)


def _thread_rows(run: Path) -> list[Row]:
    """native/native/tiny at 2 threads: matmul's figures at half the 1-thread time, the
    speedups over 1 thread (train step side by side with a CI, matmul at n=64 timed apart), and
    the determinism thread rows: gelu_forward fails at 2 threads, the split passes."""
    base = [r for r in read_rows(run / RESULTS_FILE)
            if r.host == "native" and r.preset == "tiny" and r.subject == "op:matmul_forward"
            and r.iteration == -1]  # fmt: skip
    assert base, "the fixture has 1-thread matmul figures"
    rows = []
    for r in base:
        scale = {"median_ns": 0.5, "ci_low_ns": 0.5, "ci_high_ns": 0.5, "gflops": 2.0}
        value = r.value * scale.get(r.metric, 1.0)
        rows.append(dataclasses.replace(r, subject="op:matmul_forward:threads=2", value=value))
    for n, (v, lo, hi) in {
        1: (1.0, None, None),
        2: (1.62, 1.55, 1.70),
        3: (2.05, 1.9, 2.2),
    }.items():
        rows.append(_row("bench", "threads:train_step", "measured", metric="speedup", value=v,
                         unit="x", x_name="threads", x_value=n))  # fmt: skip
        for metric, bound in (("speedup_ci_low", lo), ("speedup_ci_high", hi)):
            if bound is not None:
                rows.append(_row("bench", "threads:train_step", "measured", metric=metric,
                                 value=bound, unit="x", x_name="threads", x_value=n))  # fmt: skip
    for n, v in ((1, 1.0), (2, 1.9)):
        rows.append(_row("bench", "threads:op:matmul_forward@n=64", "measured", metric="speedup",
                         value=v, unit="x", x_name="threads", x_value=n))  # fmt: skip
    for n in (1, 2):
        rows.append(_row("determinism", f"matmul_forward:threads={n}", "pass",
                         metric="mismatched_elements", value=0.0))  # fmt: skip
    rows.append(_row("determinism", "gelu_forward:threads=1", "pass", metric="mismatched_elements",
                     value=0.0))  # fmt: skip
    differ = "1 elements differ bitwise from the 1-thread run"
    rows.append(_row("determinism", "gelu_forward:threads=2", "fail", metric="mismatched_elements",
                     value=1.0, detail=differ))  # fmt: skip
    rows.append(_row("determinism", "threads=2:split", "pass", metric="regions", value=24.0))
    return rows


@pytest.fixture(scope="module")
def threaded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The fixture run plus the thread rows, and its report."""
    run = tmp_path_factory.mktemp("thr") / "run"
    shutil.copytree(FIXTURE, run)
    _append(run, _thread_rows(run))
    out = run.parent / "out"
    assert main(["report", str(run), "--out", str(out)]) == 0
    return run, out


def test_thread_speedups_are_a_table_in_summary_and_index(threaded: tuple[Path, Path]) -> None:
    """summary.md and index.html carry "Speedup over 1 thread": per cell and figure, a column
    per count, the train step's CI beside its value."""
    _, out = threaded
    table = md_table((out / "summary.md").read_text(encoding="utf-8"), "Speedup over 1 thread")
    by = {r["figure"]: r for r in table if r["cell"] == "native · native · tiny"}
    assert by["train step"]["1 thread"] == "1×"
    assert by["train step"]["2 threads"] == "1.62× [1.55, 1.7]"
    assert by["train step"]["3 threads"] == "2.05× [1.9, 2.2]"
    assert by["matmul_forward n=64"]["2 threads"] == "1.9×"
    assert by["matmul_forward n=64"]["3 threads"] == "—"
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "<h3>Speedup over 1 thread</h3>" in page
    assert "id='threads'" in page and "plots/threads.svg" in page
    assert (out / "plots" / "threads.png").stat().st_size > 0


def _series(ax: object) -> list[str]:
    return [str(line.get_gid())[len(SERIES) :] for line in ax.get_lines()  # type: ignore[attr-defined]
            if str(line.get_gid()).startswith(SERIES)]  # fmt: skip


def test_threads_figure_draws_speedup_against_count_with_the_ci(
    threaded: tuple[Path, Path],
) -> None:
    """plots/threads: x = thread count, the train step with its CI bars, each op size a line."""
    run, _ = threaded
    built = threads_figure(load_run_dir(run).rows)
    assert built is not None
    fig, plot = built
    assert plot.name == "threads"
    (ax,) = [a for a in fig.axes if _series(a)]
    assert _series(ax) == ["train step (side by side, 95% CI)", "matmul_forward n=64 (timed apart)"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "3"]
    step = next(line for line in ax.get_lines() if line.get_gid() == SERIES + _series(ax)[0])
    assert np.asarray(step.get_ydata(), dtype=float).tolist() == pytest.approx([1.0, 1.62, 2.05])
    bars = [c for c in ax.get_children() if str(c.get_gid()).startswith("ci:train step")]
    assert bars, "the train step's side-by-side CI is drawn"
    assert not [c for c in ax.get_children() if str(c.get_gid()).startswith("ci:matmul")]
    plt.close(fig)


def test_kernels_compare_thread_counts_on_one_panel(threaded: tuple[Path, Path]) -> None:
    """kernels.png: matmul_forward at 1 and 2 threads on the same axis, no per-count panel."""
    run, _ = threaded
    built = kernels_figure(load_run_dir(run).rows)
    assert built is not None
    fig: Figure = built[0]
    titles = [ax.get_title() for ax in fig.axes if _series(ax)]
    assert not [t for t in titles if "threads=" in t], titles
    matmul = [ax for ax in fig.axes if ax.get_title().startswith("matmul_forward — native")]
    assert len(matmul) == 1
    assert {"native · native · 1 thread", "native · native · 2 threads"} <= set(_series(matmul[0]))
    plt.close(fig)


def test_determinism_thread_rows_are_shown_and_a_failure_is_named(
    threaded: tuple[Path, Path],
) -> None:
    """The determinism table has a column per count; a failing op is ❌, named with its detail."""
    _, out = threaded
    md = (out / "summary.md").read_text(encoding="utf-8")
    table = {r["cell"]: r for r in md_table(md, "Determinism (bitwise equal outputs)")}
    row = table["native/native/tiny"]
    assert row["threads=1"] == "✅ 2 pass"
    assert row["threads=2"] == "❌ 1 fail, ✅ 1 pass<br>split: ✅ 24 regions"
    assert "❌ gelu_forward:threads=2: 1 elements differ bitwise" in row["failures, or why skipped"]
    assert "gelu_forward:threads=2" in (out / "index.html").read_text(encoding="utf-8")


def _bound_run(tmp_path: Path) -> Path:
    """A run of a library bound without tinygpt.h's ABI: one cell passes, its bench skipped,
    its determinism rows measured (one output passes, one op skipped)."""
    run = tmp_path / "bound"
    run.mkdir()
    shutil.copy(FIXTURE / RUN_FILE, run / RUN_FILE)
    why = "not bound: lib.binding.toml has no tinygpt.h ABI (tg_noop, tg_* ops, tg_model_*)"
    rows = [
        _row("ops", "matmul_forward.out", "pass", metric="max_abs_err", value=0.0),
        _row("determinism", "matmul_forward.out", "pass", metric="mismatched_elements", value=0.0),
        _row("determinism", "adamw_update", "skipped", detail="adamw_update: not bound: x"),
        _row("bench", "ops", "skipped", detail=why),
        _row("cell", "verdict", "pass", detail="partly skipped: bench:ops: " + why),
    ]
    with (run / RESULTS_FILE).open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow([f.name for f in dataclasses.fields(Row)])
        w.writerows(encode(r) for r in rows)
    return run


def test_a_run_whose_every_bench_row_skipped_says_so(tmp_path: Path) -> None:
    """index.html and summary.md say the bench ran no figure, with the skipped rows' reason,
    and the determinism rows appear in a table."""
    run = _bound_run(tmp_path)
    out = tmp_path / "out"
    assert main(["report", str(run), "--out", str(out)]) == 0
    page = (out / "index.html").read_text(encoding="utf-8")
    first = page[: page.index("</section>")]
    assert "Not measured" in first
    assert (
        "bench: no speed figure in any cell: every row skipped (not bound: lib.binding.toml"
        in first
    )
    md = (out / "summary.md").read_text(encoding="utf-8")
    assert "- bench: no speed figure in any cell: every row skipped (not bound:" in md
    table = {r["cell"]: r for r in md_table(md, "Determinism (bitwise equal outputs)")}
    row = table["native/native/tiny"]
    assert row["across devices"] == "✅ 1 pass, ⏭️ 1 skipped"
    assert row["failures, or why skipped"] == "⏭️ 1 skipped (adamw_update): OP: not bound: x"
    assert "ops:" not in md.split("**Not measured:**")[1].split("###")[0]  # ops did run


def test_parity_colour_bar_label_stays_inside_the_figure() -> None:
    """With three cells (a short heat map) and the footer's half inch taken, the colour bar's
    label is drawn inside the figure."""
    rows = load_run_dir(FIXTURE).rows
    three = rows[(rows["check"] != "ops") | (rows["preset"] == "tiny")]
    built = parity_figure(three)
    assert built is not None
    fig = built[0]
    reserve_footer(fig, 0.5)  # as report_plots.write does
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    box = fig.get_window_extent()
    labels = [a.yaxis.label for a in fig.axes if a.get_ylabel().startswith("margin")]
    assert labels, "the colour bar is labelled"
    extent = labels[0].get_window_extent(renderer)
    assert box.y0 <= extent.y0 and extent.y1 <= box.y1, (extent, box)
    assert box.x0 <= extent.x0 and extent.x1 <= box.x1, (extent, box)
    plt.close(fig)


def test_run_json_of_the_fixture_is_untouched(threaded: tuple[Path, Path]) -> None:
    """The fixture's own files are copied, never written (a guard for the tests above)."""
    run, _ = threaded
    assert json.loads((run / RUN_FILE).read_text()) == json.loads((FIXTURE / RUN_FILE).read_text())
