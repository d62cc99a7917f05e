"""Trend plots (PNG + SVG) of history series and the ``history.html`` page that shows them."""

from __future__ import annotations

import html
import re
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: never open a window, work on headless CI
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from harness.gate.changepoint import Step
from harness.gate.series import Series
from harness.gate.store import short_version
from harness.plot_style import (
    assign_styles,
    axis_styles,
    draw_series,
    facets,
    host_family,
    legend_right,
    reserve_footer,
)

_SLUG = re.compile(r"[^A-Za-z0-9]+")
_UNIT_SCALE = (("s", 1e9), ("ms", 1e6), ("µs", 1e3), ("ns", 1.0))


def _scale(series: Sequence[Series]) -> tuple[str, float]:
    """Pick a readable time unit for ns series (other units are plotted as recorded)."""
    if not series or series[0].unit != "ns":
        return (series[0].unit if series else ""), 1.0
    top = max(max(s.values) for s in series)
    for unit, factor in _UNIT_SCALE:
        if top >= factor:
            return unit, factor
    return "ns", 1.0


def slug(*parts: str) -> str:
    """A file-name-safe name for a plot."""
    return _SLUG.sub("-", "_".join(p for p in parts if p)).strip("-").lower()


def _cell_parts(cell: str) -> tuple[str, str]:
    parts = [*cell.split("/"), "", ""]
    return parts[0], parts[1]


def _family(cell: str) -> str:
    return host_family(_cell_parts(cell)[0])


def trend_figure(
    series: Sequence[Series], steps: dict[str, list[Step]], commit_order: Sequence[str]
) -> Figure:
    """Every cell's series of one measurement: panels of at most eight, faceted by host family."""
    unit, factor = _scale(series)
    index = {c: i for i, c in enumerate(commit_order)}
    cells = sorted({s.key.cell for s in series}, key=lambda c: (_family(c), c))
    styles = assign_styles(cells)
    panels = facets(cells, _family, lambda c: _cell_parts(c)[1])
    fig, axes = plt.subplots(
        len(panels), 1, figsize=(10.5, 3.6 * len(panels) + 0.5), squeeze=False,
        layout="constrained",
    )  # fmt: skip
    first = series[0].key
    for ax, (title, members) in zip(axes[:, 0], panels, strict=True):
        chosen = axis_styles(members, styles)
        for s in (s for s in series if s.key.cell in chosen):
            style = chosen[s.key.cell]
            xs = np.array([index[c] for c in s.commits], dtype=float)
            ys = np.array(s.values, dtype=float) / factor
            version = s.last.host_version.split(",")[0]  # "ctypes/CPython 3.11.7, zig cc ..."
            label = (
                f"{s.last.host} {version} · {s.last.artifact} "
                f"{s.last.artifact_sha256[:8]} · {s.last.preset}"
            )
            draw_series(ax, xs, ys, np.zeros(len(xs), dtype=bool), style, label)
            if s.ci:
                ax.fill_between(
                    xs,
                    [lo / factor for lo, _ in s.ci],
                    [hi / factor for _, hi in s.ci],
                    color=style.color,
                    alpha=0.15,
                    linewidth=0,
                )
            for step in steps.get(s.key.cell, []):
                ax.axvline(index[step.commit] - 0.5, color=style.color, linestyle="--", lw=1)
                ax.annotate(
                    f"{step.percent:+.1f}%",
                    (index[step.commit] - 0.5, step.after / factor),
                    color=style.color,
                    fontsize=8,
                )
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("commit (measurement order)")
        ax.set_ylabel(f"{first.metric} [{unit}]" if unit else first.metric)
        stride = max(1, len(commit_order) // 20)
        ticks = list(range(0, len(commit_order), stride))
        ax.set_xticks(
            ticks, [short_version(commit_order[i], 8) for i in ticks], rotation=45, ha="right"
        )
        ax.grid(True, alpha=0.3)
        legend_right(ax)
    fig.suptitle(f"{first.measurement} — {first.metric} over commits")
    return fig


def plot_measurement(
    series: Sequence[Series],
    steps: dict[str, list[Step]],
    out_stem: Path,
    commit_order: Sequence[str],
    footer: str,
) -> list[Path]:
    """Plot every cell's series of one measurement (:func:`trend_figure`); the PNG and SVG."""
    fig = trend_figure(series, steps, commit_order)
    reserve_footer(fig, 0.25)
    fig.text(0.01, 0.005, footer, fontsize=6, color="0.4")
    out_stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [out_stem.with_suffix(".png"), out_stem.with_suffix(".svg")]
    fig.savefig(paths[0], dpi=100)
    fig.set_layout_engine("none")  # laid out once, for the PNG: the SVG reuses it
    fig.savefig(paths[1])
    plt.close(fig)
    return paths


def footer_text(fingerprint_id: str, machine: dict[str, object], n_commits: int) -> str:
    """The provenance line under every plot."""
    cpu = machine.get("cpu_model", "unknown cpu")
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    return (
        f"machine {fingerprint_id} ({cpu}); {n_commits} commits; tinygpt-harness history, {stamp}"
    )


def _figure(out: Path, title: str, png: Path) -> str:
    src = html.escape(str(png.relative_to(out)))
    svg = html.escape(str(png.with_suffix(".svg").relative_to(out)))
    return (
        f'<figure><img src="{src}" alt="{html.escape(title)}"><figcaption>'
        f'{html.escape(title)} (<a href="{svg}">svg</a>)</figcaption></figure>'
    )


def write_page(
    out: Path, plots: dict[str, list[tuple[str, Path]]], steps: list[tuple[Series, Step]]
) -> Path:
    """Write ``out/history.html``: a change-point table and every plot, per machine."""
    rows = "".join(
        f"<tr><td>{html.escape(s.key.fingerprint_id)}</td><td>{html.escape(s.key.cell)}</td>"
        f"<td>{html.escape(s.key.measurement)}</td><td><code>{html.escape(short_version(st.commit))}</code>"
        f"</td><td>{st.before:.4g}</td><td>{st.after:.4g}</td><td>{st.percent:+.1f}%</td></tr>"
        for s, st in steps
    )
    table = (
        "<table><tr><th>machine</th><th>cell</th><th>measurement</th><th>first commit</th>"
        f"<th>before</th><th>after</th><th>step</th></tr>{rows}</table>"
        if steps
        else "<p>No change points.</p>"
    )
    sections = []
    by_machine: dict[str, list[tuple[str, Path]]] = defaultdict(list)
    for fp, items in plots.items():
        by_machine[fp].extend(items)
    for fp, items in sorted(by_machine.items()):
        figs = "".join(_figure(out, title, png) for title, png in items)
        sections.append(f"<section><h2>Machine {html.escape(fp)}</h2>{figs}</section>")
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>tinygpt-harness history</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 6px}img{max-width:100%}</style></head><body>"
        f"<h1>History</h1><h2>Change points</h2>{table}{''.join(sections)}</body></html>\n"
    )
    path = out / "history.html"
    path.write_text(page, encoding="utf-8")
    return path
