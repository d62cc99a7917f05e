"""The report's figures: matplotlib (Agg), each written as PNG and SVG.

Every figure has labelled axes with units, log scales where sizes span decades, error bars from
the bootstrap CIs, host and artifact in every legend entry, and the run's provenance in its
footer. Noisy points are drawn hollow so they never pass for clean figures.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from harness.report_data import cold_ratios, curve, parity_matrix, speedup_slopes
from harness.rundir.rows import REFERENCE_HOST
from reference.presets import PRESETS, param_count

matplotlib.rcParams["svg.hashsalt"] = "tinygpt-harness"  # stable SVG ids across renders
matplotlib.rcParams["svg.fonttype"] = "none"  # real text in SVGs: smaller, searchable


@dataclass(frozen=True)
class Plot:
    """One written figure."""

    name: str  # file stem under plots/
    title: str
    caption: str


def _footer(fig: Figure, prov: dict[str, str]) -> None:
    text = (
        f"commit {prov['commit']} | {prov['machine']}\n"
        f"hosts: {prov['hosts']}\nartifacts (sha256): {prov['artifacts']}"
    )
    fig.text(0.01, 0.005, text, fontsize=6.5, color="#555555", va="bottom", ha="left", wrap=True)


def _outside_legend(ax: Any) -> None:
    """Put the legend right of the axes: with a dozen cells, one inside hides the curves."""
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)


def _save(fig: Figure, out: Path, name: str, prov: dict[str, str]) -> None:
    _footer(fig, prov)
    fig.tight_layout(rect=(0, 0.09, 1, 1))
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / f"{name}.png", dpi=110)
    fig.savefig(out / f"{name}.svg", metadata={"Date": None})
    plt.close(fig)


def pair_colors(rows: pd.DataFrame) -> dict[tuple[str, str], Any]:
    """One colour per host·artifact, the same in every figure of a report."""
    own = rows[(rows["check"] == "bench") & (rows["host"] != REFERENCE_HOST)]
    pairs = sorted({(str(h), str(a)) for h, a in zip(own["host"], own["artifact"], strict=True)})
    cmap = plt.get_cmap("tab10")
    return {p: cmap(i % 10) for i, p in enumerate(pairs)}


def cell_colors(rows: pd.DataFrame) -> dict[tuple[str, str, str], Any]:
    """One colour per host·artifact·preset, for figures that draw presets separately."""
    own = rows[(rows["check"] == "bench") & (rows["host"] != REFERENCE_HOST)]
    cells = sorted(
        {
            (str(h), str(a), str(p))
            for h, a, p in zip(own["host"], own["artifact"], own["preset"], strict=True)
        }
    )
    cmap = plt.get_cmap("tab20" if len(cells) > 10 else "tab10")
    return {c: cmap(i % cmap.N) for i, c in enumerate(cells)}


def _label(host: str, artifact: str, preset: str = "") -> str:
    return f"{host} · {artifact}" + (f" · {preset}" if preset else "")


def _errorbar(
    ax: Any,
    x: np.ndarray,
    y: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    noisy: np.ndarray,
    label: str | None,
    **style: Any,
) -> Any:
    """Line with CI error bars; noisy points hollow."""
    yerr = np.vstack([np.clip(y - lo, 0, None), np.clip(hi - y, 0, None)])
    yerr = np.where(np.isfinite(yerr), yerr, 0.0)
    line = ax.errorbar(x, y, yerr=yerr, marker="o", capsize=3, label=label, **style)
    color = line[0].get_color()
    if noisy.any():
        ax.plot(x[noisy], y[noisy], "o", mfc="white", mec=color, ms=9, zorder=5)
    return color


def _noisy_note(ax: Any) -> None:
    ax.plot([], [], "o", mfc="white", mec="black", label="hollow: noisy (CI > ±10%)")


def plot_speedup(rows: pd.DataFrame, out: Path, prov: dict[str, str]) -> Plot | None:
    """Speedup over the numpy reference against preset size, one line per cell."""
    pts = curve(rows, "train_step", "speedup")
    if pts.empty:
        return None
    fig, ax = plt.subplots(figsize=(11.5, 5.2))
    slopes = {(s.host, s.artifact): s for s in speedup_slopes(rows)}
    colors = pair_colors(rows)
    for (host, artifact), g in pts.groupby(["host", "artifact"], sort=True):
        x = g["x_value"].to_numpy(float)
        y = g["value"].to_numpy(float)
        ref = y * g["median_ns"].to_numpy(float)  # numpy median = speedup * kernel median
        lo, hi = ref / g["ci_high_ns"].to_numpy(float), ref / g["ci_low_ns"].to_numpy(float)
        slope = slopes.get((str(host), str(artifact)))
        label = _label(str(host), str(artifact))
        if slope is not None:
            mark = "~" if slope.noisy else ""
            label += f" (slope {mark}{slope.slope:+.2f}/decade)"
        color = colors[(str(host), str(artifact))]
        _errorbar(ax, x, y, lo, hi, (g["status"] == "noisy").to_numpy(), label, color=color)
    ax.axhline(1.0, color="black", lw=0.8, ls=":")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}×"))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ticks = sorted({float(v) for v in pts["x_value"]})
    names = {float(param_count(p)): p.name for p in PRESETS.values()}
    ax.set_xticks(ticks, [f"{names.get(t, '?')}\n{t / 1e6:.2g}M" for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("preset (parameters, log scale)")
    ax.set_ylabel("train-step speedup over numpy reference (×, log)")
    ax.set_title("Train step: speedup over the numpy reference (1 BLAS thread)")
    _noisy_note(ax)
    _outside_legend(ax)
    ax.grid(True, which="major", alpha=0.3)
    _save(fig, out, "speedup", prov)
    return Plot(
        "speedup",
        "Speedup over the reference",
        "Ratio of the numpy reference's median train-step time to the kernel's, same "
        "machine and run. Error bars: the kernel's bootstrap 95% CI. Slope: least-squares "
        "fit of log10(speedup) on log10(parameters) over clean points.",
    )


def plot_kernels(rows: pd.DataFrame, out: Path, prov: dict[str, str]) -> Plot | None:
    """GFLOP/s (or GB/s) against size per op, with the one-thread BLAS roofline."""
    ops = sorted({s for s in rows["subject"].unique() if str(s).startswith("op:")})
    panels = []
    for op in ops:
        for metric in ("gflops", "gbps"):
            pts = curve(rows, op, metric)
            if not pts.empty:
                panels.append((op, metric, pts))
    if not panels:
        return None
    roof = curve(rows, "roofline:sgemm", "gflops")
    colors = pair_colors(rows)
    cols = min(2, len(panels))
    nrows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(6.2 * cols, 4.4 * nrows + 0.6), squeeze=False)
    for ax, (op, metric, pts) in zip(axes.flat, panels, strict=False):
        labels = _cell_labels(pts)
        for key, g in pts.groupby(["host", "artifact", "preset"], sort=True):
            cell = (str(key[0]), str(key[1]), str(key[2]))
            x, y = g["x_value"].to_numpy(float), g["value"].to_numpy(float)
            work = y * g["median_ns"].to_numpy(float)  # rate * time = work per call
            lo, hi = work / g["ci_high_ns"].to_numpy(float), work / g["ci_low_ns"].to_numpy(float)
            noisy = (g["status"] == "noisy").to_numpy()
            # Several presets of one host·artifact (ops_once off) share its colour, dashed.
            ls = "-" if cell[2] == min(p for h, a, p in labels if (h, a) == cell[:2]) else "--"
            _errorbar(ax, x, y, lo, hi, noisy, labels[cell], color=colors[cell[:2]], ls=ls)
        if metric == "gflops" and not roof.empty and op.startswith("op:matmul"):
            ax.plot(
                roof["x_value"],
                roof["value"],
                "k--",
                lw=1.5,
                label="roofline: numpy · reference sgemm, 1 thread",
            )
        _noisy_note(ax)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        x_name = str(rows.loc[rows["subject"] == op, "x_name"].iloc[0])
        ax.set_xlabel(f"{x_name} (log₂)" + (" — matmul is n×n×n" if "matmul" in op else ""))
        ax.set_ylabel("GFLOP/s (log)" if metric == "gflops" else "GB/s (log)")
        ax.set_title(op.removeprefix("op:"))
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    fig.suptitle("Kernel throughput against size (timed inside the host)")
    _save(fig, out, "kernels", prov)
    return Plot(
        "kernels",
        "Kernel throughput",
        "Median GFLOP/s (compute-bound ops) or GB/s (memory-bound ops) per call, with "
        "bootstrap 95% CI error bars; the dashed line is numpy's one-thread sgemm.",
    )


def _cell_labels(pts: pd.DataFrame) -> dict[tuple[str, str, str], str]:
    """Legend names; the preset is named only where a host·artifact has several."""
    keys = {
        (str(h), str(a), str(p))
        for h, a, p in zip(pts["host"], pts["artifact"], pts["preset"], strict=True)
    }
    presets: dict[tuple[str, str], int] = {}
    for h, a, _ in keys:
        presets[(h, a)] = presets.get((h, a), 0) + 1
    return {k: _label(k[0], k[1], k[2] if presets[(k[0], k[1])] > 1 else "") for k in sorted(keys)}


def _style_legend(ax: Any, styles: dict[str, str]) -> None:
    """Add one legend entry per line style (e.g. KV on / off) drawn in black."""
    for name, ls in styles.items():
        ax.plot([], [], color="black", ls=ls, label=name)


def plot_generation(rows: pd.DataFrame, out: Path, prov: dict[str, str]) -> Plot | None:
    """Decode tokens/s against context length (KV cache on and off), and time to first token."""
    tags = {"kv": "-", "nokv": "--"}
    tps = {tag: curve(rows, f"generate:{tag}", "tokens_per_s") for tag in tags}
    if all(v.empty for v in tps.values()):
        return None
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 5.2))
    labels = _cell_labels(pd.concat(list(tps.values())))
    colors = cell_colors(rows)
    for tag, ls in tags.items():
        pts, first = tps[tag], curve(rows, f"ttft:{tag}", "median_ns")
        for key, g in pts.groupby(["host", "artifact", "preset"], sort=True):
            cell = (str(key[0]), str(key[1]), str(key[2]))
            label = labels[cell] if tag == "kv" else None
            same = first[["host", "artifact", "preset"]].astype(str).agg("/".join, axis=1)
            f = first[same == "/".join(cell)].set_index("x_value")
            x, y = g["x_value"].to_numpy(float), g["value"].to_numpy(float)
            # tokens/s = k / (t_full - t_first): bound it with the CIs of both timings.
            t1 = f.reindex(x)
            k = y * (g["median_ns"].to_numpy(float) - t1["median_ns"].to_numpy(float))
            lo = k / (g["ci_high_ns"].to_numpy(float) - t1["ci_low_ns"].to_numpy(float))
            hi = k / (g["ci_low_ns"].to_numpy(float) - t1["ci_high_ns"].to_numpy(float))
            hi = np.where(hi > 0, hi, np.nan)
            noisy = (g["status"] == "noisy").to_numpy()
            _errorbar(ax, x, y, lo, hi, noisy, label, color=colors[cell], ls=ls)
            ttft = t1["median_ns"].to_numpy(float) / 1e6
            t_lo = t1["ci_low_ns"].to_numpy(float) / 1e6
            t_hi = t1["ci_high_ns"].to_numpy(float) / 1e6
            t_noisy = (t1["status"] == "noisy").to_numpy()
            _errorbar(ax2, x, ttft, t_lo, t_hi, t_noisy, label, color=colors[cell], ls=ls)
    for a in (ax, ax2):
        _style_legend(a, {"KV cache on": "-", "KV cache off": "--"})
        _noisy_note(a)
        a.set_xscale("log", base=2)
        a.set_yscale("log")
        a.set_xlabel("context length (prompt tokens, log₂)")
        a.grid(True, which="major", alpha=0.3)
        a.legend(fontsize=7)
    ax.set_ylabel("decode tokens/s (log)")
    ax.set_title("Decode speed: KV cache on (solid) vs off (dashed)")
    ax2.set_ylabel("time to first token (ms, log)")
    ax2.set_title("Time to first token (prompt prefill + 1 token)")
    _save(fig, out, "generation", prov)
    return Plot(
        "generation",
        "Generation",
        "Decode rate excludes the prompt's prefill: (new−1) tokens over the extra time of a "
        "new-token call beyond a 1-token call. Error bars combine both timings' CIs.",
    )


def plot_overhead(rows: pd.DataFrame, out: Path, prov: dict[str, str]) -> Plot | None:
    """Overhead fraction of a call's total time against work size, per host."""
    series = {s: curve(rows, s, "overhead_fraction") for s in ("overhead:bridge", "overhead:call")}
    if all(v.empty for v in series.values()):
        return None
    fig, ax = plt.subplots(figsize=(11.5, 5.2))
    colors = pair_colors(rows)
    for subject, pts in series.items():
        for (host, artifact), g in pts.groupby(["host", "artifact"], sort=True):
            key = (str(host), str(artifact))
            kind = "bridge round trip" if subject.endswith("bridge") else "in-host call"
            style: dict[str, Any] = {"ls": "-" if subject.endswith("bridge") else "--"}
            style["color"] = colors[key]
            g = g.drop_duplicates("x_value").sort_values("x_value")
            x, y = g["x_value"].to_numpy(float), g["value"].to_numpy(float)
            noisy = (g["status"] == "noisy").to_numpy()
            line = ax.plot(x, y, marker="o", label=f"{_label(*key)} · {kind}", **style)[0]
            if noisy.any():
                ax.plot(x[noisy], y[noisy], "o", mfc="white", mec=line.get_color(), ms=9)
    ax.set_xscale("log")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("work per call (FLOPs of the first swept op, log)")
    ax.set_ylabel("overhead / (overhead + kernel time)")
    ax.set_title("Per-call overhead as a fraction of total time")
    _noisy_note(ax)
    _outside_legend(ax)
    ax.grid(True, which="major", alpha=0.3)
    _save(fig, out, "overhead", prov)
    return Plot(
        "overhead",
        "Host overhead",
        "Fraction of a call's time spent in overhead: the Python↔host round trip (solid) "
        "and the in-host call of a no-op (dashed), from medians.",
    )


def plot_parity(rows: pd.DataFrame, out: Path, prov: dict[str, str]) -> Plot | None:
    """Heat map of the worst parity error, cells × ops (log10)."""
    table, metric = parity_matrix(rows)
    if table.empty:
        return None
    data = table.to_numpy(float)
    shown = np.log10(np.where(data > 0, data, np.nan))
    fig, ax = plt.subplots(figsize=(1.1 * table.shape[1] + 4, 0.45 * table.shape[0] + 2.6))
    im = ax.imshow(shown, aspect="auto", cmap="viridis")
    ax.set_xticks(range(table.shape[1]), [str(c) for c in table.columns], rotation=40, ha="right")
    ax.set_yticks(range(table.shape[0]), [str(i) for i in table.index])
    for i in range(data.shape[0]):
        for j in range(data.shape[1]):
            if math.isfinite(data[i, j]):
                ax.text(
                    j,
                    i,
                    f"{data[i, j]:.1e}" if data[i, j] > 0 else "0 (exact)",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if shown[i, j] < np.nanmean(shown) else "black",
                )
    unit = "relative error" if metric == "max_rel_err" else "ULP"
    fig.colorbar(im, ax=ax, label=f"log10 {metric} ({unit})")
    ax.set_xlabel("op")
    ax.set_ylabel("cell (host/artifact/preset)")
    ax.set_title(f"Parity against the reference: worst {metric} per cell and op")
    _save(fig, out, "parity", prov)
    return Plot("parity", "Parity errors", f"Worst {metric} of each op in each cell (check=ops).")


V8_HOSTS = ("node", "chromium")  # host-name prefixes whose first call runs Liftoff code


def plot_cold(rows: pd.DataFrame, out: Path, prov: dict[str, str]) -> Plot | None:
    """The first train step after instantiation over the steady one, against preset size.

    Two panels, so no axis carries more than eight series: the V8 hosts (Node, Chromium), whose
    first call compiles lazily and runs Liftoff code, and the others (native, wasmtime).
    """
    pts = cold_ratios(rows)
    if pts.empty:
        return None
    v8 = pts["host"].astype(str).str.startswith(V8_HOSTS)
    panels = [(g, t) for g, t in ((pts[v8], "V8 hosts (Node, Chromium): Liftoff first"),
                                  (pts[~v8], "native and wasmtime")) if not g.empty]  # fmt: skip
    fig, axes = plt.subplots(1, len(panels), figsize=(12.5, 4.6), squeeze=False)
    colors = pair_colors(rows)
    markers = "osD^v<>P"
    for ax, (group, title) in zip(axes[0], panels, strict=True):
        for i, ((host, artifact), g) in enumerate(group.groupby(["host", "artifact"], sort=True)):
            g = g.sort_values("x_value")
            noisy = (g["status"] == "noisy").to_numpy()
            color = colors.get((str(host), str(artifact)), "black")
            x, y = g["x_value"].to_numpy(float), g["ratio"].to_numpy(float)
            # no line through points whose steady figure is noisy: a joined noisy point lies
            ax.plot(x[~noisy], y[~noisy], marker=markers[i % len(markers)], color=color,
                    label=_label(str(host), str(artifact)))  # fmt: skip
            ax.plot(x[noisy], y[noisy], markers[i % len(markers)], mfc="white", mec=color, ms=9)
        ax.axhline(1.0, color="black", lw=0.8, ls=":")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}×"))
        ax.set_xlabel("parameters (log)")
        ax.set_ylabel("first train step / steady median (×, log)")
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=7, loc="upper right")
    fig.suptitle("Cold start: what a visitor's first train step costs against the steady state")
    _save(fig, out, "cold", prov)
    return Plot(
        "cold",
        "Cold first train step",
        "The first tg_model_train_step call after instantiation, in a fresh host process with "
        "default engine flags (one call, no CI), divided by the steady median timed on the "
        "optimizing tier (--no-liftoff on V8). Hollow: the steady figure is noisy.",
    )


PLOTTERS: tuple[Callable[[pd.DataFrame, Path, dict[str, str]], Plot | None], ...] = (
    plot_speedup,
    plot_kernels,
    plot_cold,
    plot_generation,
    plot_overhead,
    plot_parity,
)
