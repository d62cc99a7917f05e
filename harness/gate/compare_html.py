"""``compare --html DIR``: the comparison report a reviewer reads in ten seconds.

``DIR/index.html``: the gate's verdict, links to both runs, a forest plot of every gated
measurement's ratio CAND/BASE with its bootstrap CI (sorted by effect, slowest on top, coloured
by verdict, each row's threshold band drawn), the top slower and faster measurements, then the
failure lists. ``DIR/forest.svg``/``.png`` is the plot; ``DIR/summary.md`` the PR comment (the
verdict, top slower/faster with ratios, failures with tracebacks in fenced code blocks).
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: headless CI
import matplotlib.pyplot as plt
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter

from harness.gate.compare_render import headline, md_item, sections
from harness.gate.verdicts import Change, GateResult

COLOURS = {"slower": "#c62828", "faster": "#2e7d32", "same": "#757575", "unknown": "#ef6c00"}
TOP = 10  # rows of the top slower / faster lists
FOREST = "forest"
TICKS = (0.1, 0.25, 0.5, 0.67, 0.8, 0.9, 0.95, 1.0, 1.05, 1.1, 1.2, 1.5, 2.0, 4.0, 10.0)


def _label(c: Change) -> str:
    return f"{c.key.cell} {c.key.name}"


def by_effect(result: GateResult) -> list[Change]:
    """Gated changes, largest ratio (slowest) first; ratios that are NaN last."""
    gated = [c for c in result.changes if c.gated]
    return sorted(gated, key=lambda c: (math.isnan(c.comparison.ratio), -c.comparison.ratio))


def top(result: GateResult, verdict: str) -> list[Change]:
    """The :data:`TOP` most changed measurements confirmed ``slower`` (or ``faster``)."""
    picked = [c for c in by_effect(result) if c.comparison.verdict == verdict]
    return picked[:TOP] if verdict == "slower" else picked[::-1][:TOP]


def forest_plot(changes: Sequence[Change], out: Path) -> list[Path]:
    """Draw the forest plot of ``changes`` (in order, top to bottom) to ``out``.svg/.png."""
    n = max(len(changes), 1)
    fig, ax = plt.subplots(figsize=(11, 1.2 + 0.24 * n))
    for i, c in enumerate(changes):
        y = n - 1 - i
        cmp = c.comparison
        band = 1.0 + cmp.min_effect  # the gate's threshold for this measurement
        ax.fill_betweenx([y - 0.4, y + 0.4], 1 / band, band, color="#e0e0e0", lw=0, zorder=0)
        colour = COLOURS[cmp.verdict]
        if not math.isnan(cmp.ci_low):
            ax.hlines(y, cmp.ci_low, cmp.ci_high, color=colour, lw=2, zorder=2)
        if not math.isnan(cmp.ratio):
            ax.plot(cmp.ratio, y, "o", color=colour, ms=5, zorder=3)
    ax.axvline(1.0, color="black", lw=0.8)
    ax.set_xscale("log")
    # ratios read as 0.8 and 1.25, not 8x10^-1: fixed ticks within the data's range
    low, high = ax.get_xlim()
    ax.set_xticks([t for t in TICKS if low <= t <= high], minor=False)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    ax.set_yticks(range(n), [_label(c) for c in reversed(changes)] or [""], fontsize=7)
    ax.set_ylim(-0.6, n - 0.4)
    ax.set_xlabel("CAND / BASE (log; > 1 is slower), 95 % bootstrap CI; grey: the gate's band")
    handles = [Patch(color=v, label=k) for k, v in COLOURS.items()]
    handles.append(Patch(color="#e0e0e0", label="threshold band (1 ± min_effect)"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    ax.grid(axis="x", which="both", lw=0.3, alpha=0.5)
    fig.tight_layout()
    paths = [out / f"{FOREST}.svg", out / f"{FOREST}.png"]
    fig.savefig(paths[0], metadata={"Date": None})
    fig.savefig(paths[1], dpi=110)
    plt.close(fig)
    return paths


def _ratio(c: Change) -> str:
    cmp = c.comparison
    ci = "" if math.isnan(cmp.ci_low) else f" [{cmp.ci_low:.3f}, {cmp.ci_high:.3f}]"
    return f"{cmp.ratio:.3f}×{ci}"


def summary_md(result: GateResult, base: str, cand: str) -> str:
    """The PR comment: verdict, top slower and faster with ratios, failures (code blocks)."""
    lines = [
        f"## Performance gate: {'❌ FAIL' if result.failed else '✅ PASS'}",
        "",
        f"BASE {md_item(base)} → CAND {md_item(cand)}. {headline(result)}.",
        "",
    ]
    for verdict, title in (("slower", "Top slower"), ("faster", "Top faster")):
        picked = top(result, verdict)
        lines += [f"### {title} (CAND / BASE, 95 % CI)", ""]
        lines += [f"- {md_item(_label(c))}: {_ratio(c)}" for c in picked] or ["- none"]
        lines.append("")
    for title, items in sections(result):
        if items:
            lines += [f"### {title}", "", *[md_item(i, bullet=True) for i in items], ""]
    return "\n".join(lines) + "\n"


def _link(target: Path, out: Path, text: str) -> str:
    rel = os.path.relpath(target.resolve(), out.resolve())
    return f'<a href="{html.escape(rel)}">{html.escape(text)}</a>'


def _run_links(run: Path, out: Path) -> str:
    parts = [_link(run, out, str(run))]
    for name in ("run.json", "results.csv"):
        if (run / name).exists():
            parts.append(_link(run / name, out, name))
    report = run.parent / "index.html"  # the main job's layout: REPORT/run next to REPORT/index
    if report.exists():
        parts.append(_link(report, out, "report"))
    return " · ".join(parts)


def _table(changes: Sequence[Change]) -> str:
    if not changes:
        return "<p>none</p>"
    rows = "".join(
        f"<tr><td>{html.escape(c.key.cell)}</td><td>{html.escape(c.key.name)}</td>"
        f'<td style="color:{COLOURS[c.comparison.verdict]}">{html.escape(_ratio(c))}</td>'
        f"<td>{c.comparison.verdict}</td></tr>"
        for c in changes
    )
    head = "<tr><th>cell</th><th>measurement</th><th>ratio</th><th>verdict</th></tr>"
    return f"<table>{head}{rows}</table>"


def write_html(result: GateResult, base: Path, cand: Path, out: Path) -> Path:
    """Write ``out``/index.html, the forest plot and summary.md; return index.html's path."""
    out.mkdir(parents=True, exist_ok=True)
    forest_plot(by_effect(result), out)
    (out / "summary.md").write_text(summary_md(result, str(base), str(cand)), encoding="utf-8")
    verdict = "FAIL" if result.failed else "PASS"
    colour = "#c62828" if result.failed else "#2e7d32"
    lists = "".join(
        f"<h3>{html.escape(title)}</h3>"
        + "".join(f"<pre>{html.escape(item)}</pre>" for item in items)
        for title, items in sections(result)
        if items
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>compare: {verdict}</title>
<style>body{{font-family:sans-serif;max-width:1400px;margin:1em auto;padding:0 1em}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:2px 6px;font-size:13px}}
pre{{background:#f6f6f6;padding:6px;white-space:pre-wrap}}</style></head><body>
<h1 style="color:{colour}">Performance gate: {verdict}</h1>
<p>{html.escape(headline(result))}</p>
<p>BASE: {_run_links(base, out)}<br>CAND: {_run_links(cand, out)}</p>
<h2>CAND / BASE per measurement, slowest first</h2>
<img src="{FOREST}.svg" alt="forest plot of CAND/BASE ratios with 95% CIs" style="max-width:100%">
<h2>Top slower</h2>{_table(top(result, "slower"))}
<h2>Top faster</h2>{_table(top(result, "faster"))}
{lists}
<p><a href="summary.md">summary.md</a> (for a PR comment)</p>
</body></html>
"""
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    return index
