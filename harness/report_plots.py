"""The report's figures: matplotlib (Agg), each built as a Figure, then written as PNG and SVG.

Every figure has labelled axes with units, log scales where sizes span decades, error bars from
the bootstrap CIs, host and artifact in every legend entry, and the run's provenance in its
footer. How a series is drawn (at most eight per axis, colours, markers, hollow noisy points,
legends outside) is :mod:`harness.plot_style`'s; this module decides what each figure shows.
The builders return the Figure unsaved, so tests read it through matplotlib's object model.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from harness.checks.bench import THREADS_SUFFIX
from harness.checks.webgpu_curve import CPU_EMULATED
from harness.gate.stats import MIN_SAMPLES
from harness.plot_style import (
    MAX_SERIES,
    Style,
    assign_styles,
    axis_styles,
    data_ticks,
    draw_series,
    facets,
    finish_axis,
    host_family,
    legend_right,
    noisy_note,
    plain_log_labels,
    reference_line,
    reserve_footer,
)
from harness.report_data import cold_ratios, curve, parity_map, speedup_curve, speedup_slopes
from harness.report_decomp import (
    COMPONENTS,
    decomposition,
    host_cost,
    kernel_majority_preset,
    wake_join_note,
)
from harness.report_tables import thread_speedups
from harness.report_webgpu import series_label, webgpu_speedups
from harness.rundir.rows import REFERENCE_HOST
from reference.presets import PRESETS, param_count

matplotlib.rcParams["svg.hashsalt"] = "tinygpt-harness"  # stable SVG ids across renders
matplotlib.rcParams["svg.fonttype"] = "none"  # real text in SVGs: smaller, searchable

Pair = tuple[str, str]  # host, artifact
Cell = tuple[str, str, str]  # host, artifact, preset
KEY_OP = "op:matmul_forward"  # the op the one-thread sgemm roofline measures


@dataclass(frozen=True)
class Plot:
    """One figure of the report."""

    name: str  # file stem under plots/
    title: str
    caption: str
    key: bool = False  # a key curve: shown on the first screen, before any table


Built = tuple[Figure, Plot]
Builder = Callable[[pd.DataFrame], Built | None]


def write(built: Built, out: Path, prov: dict[str, str]) -> Plot:
    """Add the provenance footer and write ``out/<name>.png`` and ``.svg``."""
    fig, plot = built
    text = (
        f"commit {prov['commit']} | {prov['machine']}\n"
        f"hosts: {prov['hosts']}\nartifacts (sha256): {prov['artifacts']}"
    )
    reserve_footer(fig, 0.5)  # three 6.5 pt lines
    fig.text(0.01, 0.004, text, fontsize=6.5, color="#555555", va="bottom", ha="left", wrap=True)
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / f"{plot.name}.png", dpi=100)
    fig.set_layout_engine("none")  # laid out once, for the PNG: the SVG reuses it
    fig.savefig(out / f"{plot.name}.svg", metadata={"Date": None})
    plt.close(fig)
    return plot


def _stacked(n: int) -> tuple[Figure, Any]:
    """Facets one above the other, sharing x: a key figure fits half a 1400 px page."""
    fig, axes = plt.subplots(
        n, 1, figsize=(7.4, 2.5 * n + 1.1), squeeze=False, sharex=True, layout="constrained"
    )
    return fig, axes


def _figure(nrows: int, ncols: int, width: float, height: float) -> tuple[Figure, Any]:
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(width, height), squeeze=False, layout="constrained"
    )
    return fig, axes


def _pairs(frame: pd.DataFrame) -> list[Pair]:
    own = frame[frame["host"] != REFERENCE_HOST]
    found = {(str(h), str(a)) for h, a in zip(own["host"], own["artifact"], strict=True)}
    return sorted(found, key=lambda p: (host_family(p[0]), p))


def pair_styles(rows: pd.DataFrame) -> dict[Pair, Style]:
    """One colour and marker per host·artifact, the same in every figure of a report.

    Ordered by host family, so the cells of one facet take neighbouring, distinct entries.
    """
    return assign_styles(_pairs(rows[rows["check"] == "bench"]))


def _cell_styles(cells: list[Cell], pairs: dict[Pair, Style]) -> dict[Cell, Style]:
    """A cell takes its pair's style; a second preset of a pair gets its own colour."""
    return axis_styles(cells, {c: pairs[c[:2]] for c in cells if c[:2] in pairs})


def _label(host: str, artifact: str, preset: str = "") -> str:
    return f"{host} · {artifact}" + (f" · {preset}" if preset else "")


def _cells(pts: pd.DataFrame) -> list[Cell]:
    found = {
        (str(h), str(a), str(p))
        for h, a, p in zip(pts["host"], pts["artifact"], pts["preset"], strict=True)
        if h != REFERENCE_HOST
    }
    return sorted(found, key=lambda c: (host_family(c[0]), c))


def _cell_labels(cells: list[Cell]) -> dict[Cell, str]:
    """Legend names; the preset is named only where a host·artifact has several."""
    n: dict[Pair, int] = {}
    for c in cells:
        n[c[:2]] = n.get(c[:2], 0) + 1
    return {c: _label(c[0], c[1], c[2] if n[c[:2]] > 1 else "") for c in cells}


def _of(pts: pd.DataFrame, key: tuple[str, ...]) -> pd.DataFrame:
    mask = (pts["host"] == key[0]) & (pts["artifact"] == key[1])
    if len(key) > 2:
        mask &= pts["preset"] == key[2]
    return pts[mask].sort_values("x_value")


def _rate_ci(g: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """CI bounds of a rate (work / time) from its time CI: work = rate × median time."""
    work = g["value"].to_numpy(float) * g["median_ns"].to_numpy(float)
    return work / g["ci_high_ns"].to_numpy(float), work / g["ci_low_ns"].to_numpy(float)


def _noisy(g: pd.DataFrame) -> np.ndarray:
    return (g["status"] == "noisy").to_numpy()


def _preset_ticks(ax: Any, x: pd.Series) -> None:
    """Log axes over parameter counts, ticked at the presets by name; y as plain ratios."""
    ax.set_xscale("log")
    ax.set_yscale("log")
    plain_log_labels(ax, "×")
    ticks = sorted({float(v) for v in x})
    names = {float(param_count(p)): p.name for p in PRESETS.values()}
    # names only, slanted: large, xl and huge sit within a factor of 4 on a log axis, and
    # "name (N.NM)" labels overlapped even slanted (seen in 1400 px screenshots of the main
    # job's report); the parameter counts are in the tables
    ax.set_xticks(ticks, [names.get(t, "?") for t in ticks],
                  rotation=30, ha="right", rotation_mode="anchor")  # fmt: skip
    ax.xaxis.set_minor_locator(NullLocator())
    ax.margins(x=0.12)


def _ratio_panel(ax: Any, x: pd.Series, ylabel: str, title: str, gid: str) -> None:
    """A ratio-by-preset panel's finish: the 1× line dotted (``gid``), the preset ticks, labels."""
    ax.axhline(1.0, color="black", lw=0.8, ls=":", gid=gid)
    _preset_ticks(ax, x)
    finish_axis(ax, ylabel, title)


def _facet_pairs(pairs: list[Pair]) -> list[tuple[str, list[Pair]]]:
    return facets(pairs, lambda p: host_family(p[0]), lambda p: p[1])


def _facet_cells(cells: list[Cell], per_key: int = 1) -> list[tuple[str, list[Cell]]]:
    return facets(cells, lambda c: host_family(c[0]), lambda c: c[1], per_key=per_key)


def speedup_figure(rows: pd.DataFrame) -> Built | None:
    """Train-step speedup over the numpy reference against preset size, faceted by host family."""
    pts = speedup_curve(rows)
    pts = pts[pts["host"] != REFERENCE_HOST]
    if pts.empty:
        return None
    slopes = {(s.host, s.artifact): s for s in speedup_slopes(rows)}
    styles = pair_styles(rows)
    panels = _facet_pairs(_pairs(pts))
    fig, axes = _stacked(len(panels))
    for ax, (title, keys) in zip(axes[:, 0], panels, strict=True):
        for key, style in axis_styles(keys, styles).items():
            g = _of(pts, key)
            ref = g["value"].to_numpy(float) * g["median_ns"].to_numpy(float)  # numpy's median
            lo, hi = ref / g["ci_high_ns"].to_numpy(float), ref / g["ci_low_ns"].to_numpy(float)
            if "speedup_ci_low" in g:  # side by side: its own CI over block pairs
                lo, hi = g["speedup_ci_low"].to_numpy(float), g["speedup_ci_high"].to_numpy(float)
            label = _label(*key)
            fit = slopes.get(key)
            if fit is not None:
                label += f" ({fit.slope:+.2f}/decade{', noisy fit' if fit.noisy else ''})"
            x, y = g["x_value"].to_numpy(float), g["value"].to_numpy(float)
            draw_series(ax, x, y, _noisy(g), style, label, lo, hi)
        _ratio_panel(ax, pts["x_value"], "speedup (×, log)", title, "ref:parity")
    axes[-1, 0].set_xlabel("preset (parameters, log)")
    fig.suptitle("Train step: speedup over the numpy reference (1 BLAS thread); 1× dotted")
    return fig, Plot(
        "speedup",
        "Speedup over the reference, by preset",
        "Side by side: the median of per-block-pair ratios of numpy's train-step time to the "
        "kernel's (alternating short blocks), error bars its bootstrap 95% CI over pairs; runs "
        "without it: the ratio of the two medians timed apart, error bars the kernel's CI. "
        "In the legend: the least-squares "
        "slope of log10(speedup) per decade of parameters over clean points (a noisy fit: "
        "fewer than two were clean, so noisy ones were used).",
        key=True,
    )


def roofline_figure(rows: pd.DataFrame) -> Built | None:
    """Matmul GFLOP/s against size beside numpy's one-thread sgemm, faceted by host family."""
    pts = curve(rows, KEY_OP, "gflops")
    if pts.empty:
        return None
    roof = curve(rows, "roofline:sgemm", "gflops").drop_duplicates("x_value")
    cells = _cells(pts)
    labels, styles = _cell_labels(cells), _cell_styles(cells, pair_styles(rows))
    panels = _facet_cells(cells)
    fig, axes = _stacked(len(panels))
    for ax, (title, keys) in zip(axes[:, 0], panels, strict=True):
        for key, style in axis_styles(keys, styles).items():
            g = _of(pts, key)
            lo, hi = _rate_ci(g)
            x, y = g["x_value"].to_numpy(float), g["value"].to_numpy(float)
            draw_series(ax, x, y, _noisy(g), style, labels[key], lo, hi)
        if not roof.empty:
            reference_line(
                ax, roof["x_value"], roof["value"], "roofline: numpy sgemm, 1 thread", "roofline"
            )
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        plain_log_labels(ax)
        data_ticks(ax, pd.concat([pts["x_value"], roof["x_value"]]))
        finish_axis(ax, "GFLOP/s (log)", title)
    axes[-1, 0].set_xlabel("n (log₂): matmul is n×n×n")
    fig.suptitle("matmul_forward throughput against the roofline (timed inside the host)")
    return fig, Plot(
        "roofline",
        "Kernel throughput against the roofline",
        "Median GFLOP/s of matmul_forward per call with bootstrap 95% CI error bars; the "
        "dashed black line is numpy's one-thread sgemm on the same machine.",
        key=True,
    )


def _op_threads(subject: str) -> tuple[str, int]:
    """``op:<op>:threads=<n>`` -> (``op:<op>``, n); a subject without the suffix is 1 thread."""
    base, _, n = subject.partition(THREADS_SUFFIX)
    return base, int(n) if n.isdigit() else 1


ThreadCell = tuple[str, str, str, int]  # host, artifact, preset, threads
_THREAD_LINES = ("-", "--", "-.", ":")  # a thread count's line style, 1 thread solid


def kernels_figure(rows: pd.DataFrame) -> Built | None:
    """Every other op's throughput against size: a row per op, a column per facet; with a thread
    axis, each cell draws a line per thread count (1 included) on the same panel."""
    subjects = sorted({str(s) for s in rows["subject"].unique() if str(s).startswith("op:")})
    by_op: dict[str, list[tuple[int, str]]] = {}
    for subject in subjects:
        base, n = _op_threads(subject)
        by_op.setdefault(base, []).append((n, subject))
    panels = []
    for op, members in sorted(by_op.items()):
        for metric in ("gflops", "gbps"):
            parts = [curve(rows, subject, metric).assign(threads=n) for n, subject in members]
            pts = pd.concat(parts, ignore_index=True)
            threaded = pts["threads"].nunique() > 1
            # matmul at 1 thread is the roofline figure's; its thread counts compare here
            if not pts.empty and (threaded or not (op == KEY_OP and metric == "gflops")):
                panels.append((op, metric, pts))
    if not panels:
        return None
    cells = _cells(pd.concat([p for _, _, p in panels]))
    labels, styles = _cell_labels(cells), _cell_styles(cells, pair_styles(rows))
    counts = sorted({int(n) for _, _, p in panels for n in p["threads"]})
    groups = _facet_cells(cells, per_key=len(counts))
    fig, axes = _figure(len(panels), len(groups), 7.2 * len(groups), 3.8 * len(panels) + 0.6)
    for row, (op, metric, pts) in enumerate(panels):
        measured = rows["subject"].isin([subject for _, subject in by_op[op]])
        x_name = str(rows.loc[measured, "x_name"].iloc[0])
        for ax, (title, keys) in zip(axes[row], groups, strict=True):
            series: list[ThreadCell] = [(*k, n) for k in keys for n in counts]
            preferred = {
                s: Style(styles[s[:3]].color, styles[s[:3]].marker,
                         _THREAD_LINES[counts.index(s[3]) % len(_THREAD_LINES)])
                for s in series
            }  # fmt: skip
            for key, style in axis_styles(series, preferred).items():
                g = _of(pts[pts["threads"] == key[3]], key[:3])
                if g.empty:
                    continue
                lo, hi = _rate_ci(g)
                x, y = g["x_value"].to_numpy(float), g["value"].to_numpy(float)
                label = labels[key[:3]] + (f" · {key[3]} thread{'s' if key[3] > 1 else ''}"
                                           if len(counts) > 1 else "")  # fmt: skip
                draw_series(ax, x, y, _noisy(g), style, label, lo, hi)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            plain_log_labels(ax)
            data_ticks(ax, pts["x_value"])
            ax.set_xlabel(f"{x_name} (log₂)")
            finish_axis(
                ax,
                "GFLOP/s (log)" if metric == "gflops" else "GB/s (log)",
                f"{op.removeprefix('op:')} — {title}",
            )
    fig.suptitle("Kernel throughput against size (timed inside the host)")
    on = (
        f" One line per thread count ({', '.join(map(str, counts))}; 1 thread solid), so the "
        "counts compare on one panel; the speedup over 1 thread is the threads figure."
        if len(counts) > 1
        else ""
    )
    return fig, Plot(
        "kernels",
        "Kernel throughput, every op",
        "Median GFLOP/s (compute-bound ops) or GB/s (memory-bound ops) per call, with "
        "bootstrap 95% CI error bars. matmul_forward against the roofline is the key figure "
        "above." + on,
    )


def threads_figure(rows: pd.DataFrame) -> Built | None:
    """Speedup over 1 thread against the thread count, one panel per host·artifact (and preset):
    the train step (side by side, with its CI) and each op size (timed apart), the 1× line
    dotted and ideal scaling (n×) dashed."""
    pts = thread_speedups(rows)
    if pts.empty:
        return None
    panels: list[tuple[Cell, list[str], int]] = []
    for cell in _cells(pts):
        g = _of(pts, cell)
        names = list(dict.fromkeys(g.sort_values(["order", "series"])["series"]))
        for part in range(0, len(names), MAX_SERIES):  # at most eight series on an axis
            panels.append((cell, names[part : part + MAX_SERIES], part // MAX_SERIES))
    presets = {c[2] for c, _, _ in panels}
    fig, axes = _stacked(len(panels))
    counts = sorted({float(v) for v in pts["x_value"]})
    for ax, (cell, names, part) in zip(axes[:, 0], panels, strict=True):
        g = _of(pts, cell)
        for name, style in assign_styles(names).items():
            s = g[g["series"] == name].sort_values("x_value")
            x, y = s["x_value"].to_numpy(float), s["value"].to_numpy(float)
            lo, hi = s["ci_low"].to_numpy(float), s["ci_high"].to_numpy(float)
            ci = np.isfinite(lo).any()
            label = name + (" (side by side, 95% CI)" if ci else " (timed apart)")
            draw_series(ax, x, y, _noisy(s), style, label,
                        lo if ci else None, hi if ci else None)  # fmt: skip
        ax.plot(counts, counts, color="black", ls="--", lw=1.0, label="ideal: n×",
                gid="ref:ideal")  # fmt: skip
        ax.axhline(1.0, color="black", lw=0.8, ls=":", gid="ref:one-thread")
        ax.set_yscale("log")
        plain_log_labels(ax, "×")
        ax.set_xticks(counts, [f"{c:g}" for c in counts])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.margins(x=0.08)
        title = _label(cell[0], cell[1], cell[2] if len(presets) > 1 else "")
        finish_axis(ax, "speedup over 1 thread (×, log)",
                    title + (f" (part {part + 1})" if part else ""))  # fmt: skip
    axes[-1, 0].set_xlabel("threads")
    fig.suptitle("Speedup over 1 thread, by thread count; 1× dotted, ideal n× dashed")
    return fig, Plot(
        "threads",
        "Speedup over 1 thread",
        "1-thread time over n-thread time, per host · artifact. Train step: side by side "
        "(alternating 1- and n-thread blocks in one instance), error bars the bootstrap 95% CI "
        "over block pairs; each op size: the two medians timed apart, no CI. Hollow: noisy. "
        "Above 1 is faster; the dashed line is perfect scaling.",
    )


def _decode_ci(g: pd.DataFrame, t1: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """tokens/s = k / (t_full - t_first): bound it with the CIs of both timings."""
    y = g["value"].to_numpy(float)
    k = y * (g["median_ns"].to_numpy(float) - t1["median_ns"].to_numpy(float))
    lo = k / (g["ci_high_ns"].to_numpy(float) - t1["ci_low_ns"].to_numpy(float))
    hi = k / (g["ci_low_ns"].to_numpy(float) - t1["ci_high_ns"].to_numpy(float))
    return lo, np.where(hi > 0, hi, np.nan)


def generation_figure(rows: pd.DataFrame) -> Built | None:
    """Decode tokens/s (KV on, KV off) and time to first token against context, per facet."""
    tags = ("kv", "nokv")
    tps = {t: curve(rows, f"generate:{t}", "tokens_per_s") for t in tags}
    first = {t: curve(rows, f"ttft:{t}", "median_ns") for t in tags}
    if all(v.empty for v in tps.values()):
        return None
    cells = _cells(pd.concat(list(tps.values())))
    labels, styles = _cell_labels(cells), _cell_styles(cells, pair_styles(rows))
    groups = _facet_cells(cells)
    fig, axes = _figure(len(groups), 3, 15.5, 3.9 * len(groups) + 0.4)
    for row, (title, keys) in enumerate(groups):
        ax_kv, ax_nokv, ax_ttft = axes[row]
        for key, style in axis_styles(keys, styles).items():
            for tag, ax in (("kv", ax_kv), ("nokv", ax_nokv)):
                g = _of(tps[tag], key)
                if g.empty:
                    continue
                t1 = _of(first[tag], key).set_index("x_value").reindex(g["x_value"])
                lo, hi = _decode_ci(g, t1)
                x, y = g["x_value"].to_numpy(float), g["value"].to_numpy(float)
                draw_series(ax, x, y, _noisy(g), style, labels[key], lo, hi)
            t = _of(first["kv"], key)
            if not t.empty:
                ms = t["value"].to_numpy(float) / 1e6
                lo, hi = t["ci_low_ns"].to_numpy(float) / 1e6, t["ci_high_ns"].to_numpy(float) / 1e6
                x = t["x_value"].to_numpy(float)
                draw_series(ax_ttft, x, ms, _noisy(t), style, labels[key], lo, hi)
        heads = ("decode tokens/s, KV cache on", "decode tokens/s, KV cache off", "first token")
        for ax, head in zip(axes[row], heads, strict=True):
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            plain_log_labels(ax)
            data_ticks(ax, pd.concat([tps["kv"]["x_value"], tps["nokv"]["x_value"]]))
            ax.set_xlabel("context length (prompt tokens, log₂)")
            ax.set_title(f"{head}\n{title}", fontsize=9)
            ax.grid(True, which="major", alpha=0.3)
        ax_kv.set_ylabel("decode tokens/s (log)")
        # One y range for KV on and off, so the two panels compare at a glance.
        (a, b), (c, d) = ax_kv.get_ylim(), ax_nokv.get_ylim()
        for ax in (ax_kv, ax_nokv):
            ax.set_ylim(min(a, c), max(b, d))
        ax_ttft.set_ylabel("time to first token (ms, log)")
        noisy_note(ax_ttft)
        legend_right(axes[row][-1], shared=list(axes[row]))
    fig.suptitle("Generation: decode speed with and without the KV cache, and time to first token")
    return fig, Plot(
        "generation",
        "Generation",
        "Decode rate excludes the prompt's prefill: (new−1) tokens over the extra time of a "
        "new-token call beyond a 1-token call; error bars combine both timings' CIs. Time to "
        "first token: prompt prefill plus one token, KV cache on. KV on and off share a y scale.",
    )


def overhead_figure(rows: pd.DataFrame) -> Built | None:
    """Overhead fraction of a call's total time against work size: bridge and in-host call."""
    kinds = (("overhead:bridge", "Python↔host round trip"), ("overhead:call", "in-host no-op call"))
    series = {s: curve(rows, s, "overhead_fraction") for s, _ in kinds}
    if all(v.empty for v in series.values()):
        return None
    styles = pair_styles(rows)
    groups = _facet_pairs(_pairs(pd.concat(list(series.values()))))
    fig, axes = _figure(len(groups), 2, 13.5, 3.9 * len(groups) + 0.4)
    for row, (title, keys) in enumerate(groups):
        for ax, (subject, kind) in zip(axes[row], kinds, strict=True):
            for key, style in axis_styles(keys, styles).items():
                g = _of(series[subject], key).drop_duplicates("x_value")
                if g.empty:
                    continue
                x, y = g["x_value"].to_numpy(float), g["value"].to_numpy(float)
                draw_series(ax, x, y, _noisy(g), style, _label(*key))
            ax.set_xscale("log")
            plain_log_labels(ax, axis="x")
            ax.set_ylim(0, 1.02)
            ax.set_xlabel("work per call (FLOPs of the first swept op, log)")
            ax.set_ylabel("overhead / (overhead + kernel)")
            ax.set_title(f"{kind}\n{title}", fontsize=9)
            ax.grid(True, which="major", alpha=0.3)
        noisy_note(axes[row][-1])
        legend_right(axes[row][-1], shared=list(axes[row]))
    fig.suptitle("Per-call overhead as a fraction of total time")
    return fig, Plot(
        "overhead",
        "Host overhead",
        "Fraction of a call's time spent in overhead, from medians: the Python↔host round "
        "trip (left) and the in-host call of a no-op (right).",
    )


def parity_figure(rows: pd.DataFrame) -> Built | None:
    """Heat map of the parity margin (worst error / its tolerance bound), cells × ops, log colour.

    The scale is centred on 1 (the bound): passes are green below it, failures red above.
    """
    pm = parity_map(rows)
    if pm is None or pm.margin.empty:
        return None
    data = pm.margin.to_numpy(float)
    positive = data[np.isfinite(data) & (data > 0)]
    # Symmetric decades around 1, so the bound sits in the middle of the colour bar.
    span = max(1.0, *(abs(math.log10(v)) for v in positive)) if positive.size else 1.0
    span = min(math.ceil(span), 12)
    norm = LogNorm(vmin=10.0**-span, vmax=10.0**span)
    cmap = plt.get_cmap("RdYlGn_r").with_extremes(bad="#eeeeee", under="#4575b4", over="#7f0000")
    # Exact zeros (bitwise-equal outputs) sit below the scale: the under colour.
    shown = np.where(data == 0, 10.0 ** -(span + 1), data)
    shape = pm.margin.shape
    # At least 4.3 in tall: the colour bar spans the rows, and its two-line label must fit
    # beside it once the footer's half inch is taken (3 rows clipped it, s43).
    fig, ax = plt.subplots(
        figsize=(max(9.0, 0.72 * shape[1] + 4.2), max(4.3, 0.36 * shape[0] + 2.8)),
        layout="constrained",
    )
    im = ax.imshow(np.ma.masked_invalid(shown), aspect="auto", cmap=cmap, norm=norm)
    im.set_gid("parity:margin")
    ax.set_xticks(range(shape[1]), [str(c) for c in pm.margin.columns], rotation=35, ha="right")
    ax.set_yticks(range(shape[0]), [str(i) for i in pm.margin.index])
    for i in range(shape[0]):
        for j in range(shape[1]):
            v = data[i, j]
            if pm.errored.iat[i, j]:
                text = "error"
            elif math.isnan(v):
                continue
            else:
                text = "0 (exact)" if v == 0 else ("∞" if math.isinf(v) else f"{v:.2g}")
                text += " ✗" if pm.failed.iat[i, j] else ""
            dark = v == 0 or (math.isfinite(v) and v > 0 and abs(math.log10(v)) > 0.6 * span)
            ax.text(j, i, text, ha="center", va="center", fontsize=7,
                    color="white" if dark else "black")  # fmt: skip
    bar = fig.colorbar(im, ax=ax, extend="both")
    bar.set_label("margin = error / bound\n(log; < 1 passes)")
    bar.ax.axhline(1.0, color="black", lw=1.2)
    ax.set_xlabel("op (worst over its outputs and cases)")
    ax.set_ylabel("cell (host/artifact/preset)")
    ax.set_title("Parity: how close each op came to its tolerance")
    return fig, Plot(
        "parity",
        "Parity margins",
        "Each op's worst element over all cases, as its error divided by the tolerance bound "
        "(atol + rtol·|expected|, or the ULP bound) at that element: below 1 passes, above 1 "
        "fails (✗). Blue, 0 (exact): bitwise equal. Grey: not measured. From check=ops rows.",
    )


def cold_figure(rows: pd.DataFrame) -> Built | None:
    """The first train step after instantiation over the steady one, against preset size."""
    pts = cold_ratios(rows)
    if pts.empty:
        return None
    styles = pair_styles(rows)
    panels = _facet_pairs(_pairs(pts))
    fig, axes = _stacked(len(panels))
    for ax, (title, keys) in zip(axes[:, 0], panels, strict=True):
        for key, style in axis_styles(keys, styles).items():
            g = _of(pts, key)
            x, y = g["x_value"].to_numpy(float), g["ratio"].to_numpy(float)
            draw_series(ax, x, y, _noisy(g), style, _label(*key))
        _ratio_panel(ax, pts["x_value"], "first / steady (×, log)", title, "ref:steady")
    axes[-1, 0].set_xlabel("preset (parameters, log)")
    fig.suptitle("Cold start: the first train step over the steady one")
    return fig, Plot(
        "cold",
        "Cold first train step",
        "The first tg_model_train_step call after instantiation, in a fresh host process with "
        "default engine flags (one call, no CI), divided by the steady median timed on the "
        "optimizing tier (--no-liftoff on V8). Hollow: the steady figure is noisy.",
    )


_DECOMP_COLORS = ("#4477aa", "#ee6677", "#ccbb44", "#aa3377", "#228833")  # one per COMPONENTS


def decomposition_figure(rows: pd.DataFrame) -> Built | None:
    """Stacked share of a harness-driven train step per host (one panel per host/artifact and
    thread count): bridge, postMessage, JS→wasm call, the pool's wake + join (per-region cost ×
    the step's counted regions) and kernel against preset size; each panel names the cost that
    dominates at the smallest preset, the preset from which the kernel is the majority, the load,
    and the regions per step at each preset."""
    pts = decomposition(rows)
    if pts.empty:
        return None
    keys = zip(pts["host"], pts["artifact"], pts["threads"], strict=True)
    panels = sorted({(str(h), str(a), int(t)) for h, a, t in keys},
                    key=lambda k: (host_family(k[0]), k))  # fmt: skip
    fig, axes = _stacked(len(panels))
    for ax, (host, artifact, threads) in zip(axes[:, 0], panels, strict=True):
        g = _of(pts, (host, artifact))
        g = g[g["threads"] == threads]
        x = g["x_value"].to_numpy(float)
        shares = [g[f"share:{c}"].to_numpy(float) for c in COMPONENTS]
        ax.stackplot(x, shares, labels=COMPONENTS, colors=_DECOMP_COLORS, alpha=0.85)
        first = g.iloc[0]
        top = str(first["dominant"])
        share = float(first[f"share:{top}"])
        majority = kernel_majority_preset(g) or "no preset here"
        on = f" · {threads} threads" if threads > 1 else ""
        notes = textwrap.fill(  # the wake + join note names counts and two costs: wrap it
            f"load {host_cost(float(first['load_ns']))} (not stacked); {wake_join_note(g)}", 110
        )
        ax.set_title(
            f"{_label(host, artifact)}{on}: {top} dominates at {first['preset']} ({share:.0%}); "
            f"kernel ≥ 50 % from {majority}\n{notes}",
            fontsize=8,
        )
        _preset_ticks(ax, g["x_value"])
        ax.set_yscale("linear")  # shares, not ratios: _preset_ticks makes y log
        ax.set_ylim(0, 1)
        ax.set_ylabel("share of one step")
        ax.grid(True, which="major", alpha=0.3)
    legend_right(axes[0, 0], shared=list(axes[:, 0]))
    axes[-1, 0].set_xlabel("preset (parameters, log)")
    fig.suptitle("Where a train step driven from the harness goes, per host")
    return fig, Plot(
        "decomposition",
        "Overhead decomposition",
        "One tg_model_train_step requested from the harness, split from medians: the bridge "
        "(Python↔host round trip less the page→worker hop), the postMessage hop (Chromium "
        "only), the in-host JS→wasm call of a no-op, the pool's wake + join (per region: the "
        "artifact's pool timed in the library, pool:wake_join, else one Atomics round trip, "
        "host:wake_join; times the parallel regions the step ran, counted by "
        "tg_parallel_regions), and the kernel (the step less the call and the wake + join). "
        "Host costs are measured once per host and artifact, the step and its regions per "
        "preset and thread count (one panel per count); the load is named per panel, not "
        "stacked. Where the regions are counted but the wake + join is not measured (no pool "
        "probe, no JS workers), its cost stays inside the kernel share and the panel says so.",
    )


def webgpu_speedup_figure(rows: pd.DataFrame) -> Built | None:
    """The WebGPU-over-WASM train-step speedup against preset size, one line per adapter, with
    its bootstrap CI; CPU-emulated adapters on a panel of their own, never on a GPU's axes."""
    pts = webgpu_speedups(rows)
    pts = pts[np.isfinite(pts["speedup"].to_numpy(float))] if not pts.empty else pts
    if pts.empty:
        return None
    keys = sorted({(str(h), str(a), str(d), bool(e)) for h, a, d, e in
                   zip(pts["host"], pts["artifact"], pts["adapter"], pts["emulated"], strict=True)},
                  key=lambda k: (k[3], host_family(k[0]), k))  # fmt: skip
    kinds = (
        (False, "GPU adapters"),
        (True, f"{CPU_EMULATED} adapters: a CPU, never compare with a GPU"),
    )
    panels = [
        (title, [k for k in keys if k[3] == emulated])
        for emulated, title in kinds
        if any(k[3] == emulated for k in keys)
    ]
    styles = assign_styles(keys)
    fig, axes = _stacked(len(panels))
    for ax, (title, members) in zip(axes[:, 0], panels, strict=True):
        for key, style in axis_styles(members, styles).items():
            g = pts[(pts["host"] == key[0]) & (pts["artifact"] == key[1])
                    & (pts["adapter"] == key[2]) & (pts["emulated"] == key[3])]  # fmt: skip
            wasm = sorted(set(g["wasm_artifact"]))
            label = f"{series_label(*key)}\nover {wasm[0] if len(wasm) == 1 else 'the best WASM'}"
            lo, hi = g["ci_low"].to_numpy(float), g["ci_high"].to_numpy(float)
            # hollow where the figure is not tight: either side noisy, or no CI to show
            loose = (g["gpu_noisy"] | g["wasm_noisy"]).to_numpy(bool) | ~np.isfinite(lo)
            x, y = g["x_value"].to_numpy(float), g["speedup"].to_numpy(float)
            draw_series(ax, x, y, loose, style, label, lo, hi)
        _ratio_panel(ax, pts["x_value"], "WASM time / WebGPU time (×, log)", title, "ref:parity")
    axes[-1, 0].set_xlabel("preset (parameters, log)")
    fig.suptitle("Train step: WebGPU over the best WASM artifact, same host; 1× dotted")
    return fig, Plot(
        "webgpu_speedup",
        "WebGPU over WASM, by preset and adapter",
        "The fastest WASM artifact's train_step median (bench, 1 thread) over the composed "
        "WebGPU step's, same host, preset and B, T; error bars: the bootstrap 95% CI of that "
        "ratio of medians from both figures' samples. Hollow: either figure noisy, or no CI "
        f"(fewer than {MIN_SAMPLES} samples a side). One line per adapter; {CPU_EMULATED} "
        "adapters (SwiftShader) on their own panel: a CPU's figures, never a GPU's.",
    )


# The order of the page: the key curves first (they open the report), then the rest.
FIGURES: tuple[Builder, ...] = (
    speedup_figure,
    roofline_figure,
    kernels_figure,
    threads_figure,
    cold_figure,
    generation_figure,
    overhead_figure,
    decomposition_figure,
    parity_figure,
    webgpu_speedup_figure,
)
