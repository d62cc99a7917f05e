"""``tinygpt-harness report DIR [--out OUTDIR]``: index.html, plots, summary.md, csv/parquet.

The page opens with the verdicts (host × artifact grid, then the causes), then the key figures,
then the curves. It is one self-contained file: the PNGs are embedded as data URIs, and the SVGs
sit beside it under ``plots/``. ``summary.md`` is short enough for a PR comment or
``$GITHUB_STEP_SUMMARY``.

A partial run (missing run.json, truncated last line, older schema) renders what it can and lists
what is missing at the top. The exit code is non-zero (2) only when no result row is usable.
"""

from __future__ import annotations

import argparse
import base64
import html
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harness.report_data import LoadedRun, load_run_dir, provenance, verdicts
from harness.report_headline import SHEET, Alert, alerts, default_sheet_dir
from harness.report_tables import (
    ICONS,
    Table,
    causes,
    crosshost_summary,
    generation_table,
    html_icons,
    kernel_table,
    noisy_table,
    overhead_table,
    speedup_table,
    verdict_grid,
)
from harness.rundir.rows import RESULTS_FILE

if TYPE_CHECKING:  # matplotlib loads only when a report is rendered
    from harness.report_plots import Plot

EXIT_OK, EXIT_NOTHING_USABLE = 0, 2
PLOTS_DIR = "plots"


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the report command's arguments."""
    parser.add_argument("run_dir", type=Path, metavar="DIR", help="a run directory")
    parser.add_argument(
        "--out", type=Path, default=None, metavar="OUTDIR", help="where to write (default: DIR)"
    )
    parser.add_argument(
        "--signoff",
        type=Path,
        default=None,
        metavar="SHEETDIR",
        help="a sign-off sheet directory to headline (default: signoff/ beside DIR, if any)",
    )


def execute(args: argparse.Namespace) -> int:
    """Render the report of ``args.run_dir``; print where it went and what is missing."""
    run_dir: Path = args.run_dir
    if not run_dir.is_dir():
        print(f"report: {run_dir} is not a directory", file=sys.stderr)
        return EXIT_NOTHING_USABLE
    out: Path = args.out or run_dir
    sheet = args.signoff if args.signoff is not None else default_sheet_dir(run_dir)
    if sheet is not None and not (sheet / SHEET).is_file():
        print(f"report: {sheet / SHEET} does not exist", file=sys.stderr)
        return EXIT_NOTHING_USABLE
    result = render(load_run_dir(run_dir), out, sheet)
    for problem in result.problems:
        print(f"report: {problem}", file=sys.stderr)
    if not result.usable:
        print(f"report: nothing usable in {run_dir}; wrote {out / 'index.html'}", file=sys.stderr)
        return EXIT_NOTHING_USABLE
    print(f"report: {out / 'index.html'}")
    return EXIT_OK


@dataclass(frozen=True)
class Rendered:
    """What :func:`render` wrote."""

    usable: bool
    files: tuple[Path, ...]
    problems: tuple[str, ...]


def render(run: LoadedRun, out: Path, sheet_dir: Path | None = None) -> Rendered:
    """Write index.html, summary.md, results.csv/.parquet and plots for ``run`` into ``out``.

    ``sheet_dir`` holds the release sign-off sheet; its verdict heads both pages.
    """
    from harness.report_plots import PLOTTERS  # matplotlib is imported only when rendering

    out.mkdir(parents=True, exist_ok=True)
    prov = provenance(run)
    cells = verdicts(run.rows)
    tables = [
        t
        for t in (
            speedup_table(run.rows),
            kernel_table(run.rows),
            overhead_table(run.rows),
            generation_table(run.rows),
            crosshost_summary(run.rows),
            noisy_table(run.rows),
        )
        if t is not None
    ]
    grid, why = verdict_grid(cells), causes(cells)
    head = alerts(run.meta, run.rows, sheet_dir)
    problems = list(run.problems)
    plots = []
    for plotter in PLOTTERS if run.usable else ():
        try:
            plot = plotter(run.rows, out / PLOTS_DIR, prov)
        except (ValueError, KeyError, TypeError) as exc:  # one bad curve must not sink the page
            problems.append(f"plot {plotter.__name__} failed: {type(exc).__name__}: {exc}")
            continue
        if plot is not None:
            plots.append(plot)
    files: list[Path] = []
    if run.usable:
        files += _write_tables(run, out)
    summary = out / "summary.md"
    summary.write_text(_markdown(run, prov, grid, why, tables, problems, head), encoding="utf-8")
    index = out / "index.html"
    index.write_text(
        _html(run, prov, grid, why, tables, plots, problems, out, head), encoding="utf-8"
    )
    files += [summary, index]
    for p in plots:
        files += [out / PLOTS_DIR / f"{p.name}.png", out / PLOTS_DIR / f"{p.name}.svg"]
    return Rendered(run.usable, tuple(files), tuple(problems))


def _write_tables(run: LoadedRun, out: Path) -> list[Path]:
    csv_path, parquet_path = out / RESULTS_FILE, out / "results.parquet"
    source = run.directory / RESULTS_FILE
    # Reporting in place keeps the run's own results.csv untouched: it is the record.
    if not (csv_path.exists() and source.exists() and csv_path.samefile(source)):
        run.rows.to_csv(csv_path, index=False)
    run.rows.to_parquet(parquet_path, index=False)
    return [csv_path, parquet_path]


def _counts(run: LoadedRun) -> str:
    cells = verdicts(run.rows)
    counts: dict[str, int] = {}
    for c in cells:
        counts[c.status] = counts.get(c.status, 0) + 1
    order = ("pass", "fail", "error", "incompatible", "skipped", "incomplete")
    return ", ".join(f"{ICONS[s]} {counts[s]} {s}" for s in order if counts.get(s))


def _markdown(
    run: LoadedRun,
    prov: dict[str, str],
    grid: Table,
    why: Table | None,
    tables: list[Table],
    problems: list[str],
    head: list[Alert],
) -> str:
    # The sign-off and completeness come first: a failing one is the page's first line.
    lines = [f"**{a.text}**" if a.bad else a.text for a in head]
    lines += [""] if head else []
    lines += [
        f"## TinyGPT harness: run `{run.directory.name}` at commit `{prov['commit']}`",
        "",
        f"**{_counts(run) or 'no cells'}** · {prov['machine']}",
        "",
    ]
    if problems:
        lines += ["> [!WARNING]", "> Partial report:"]
        lines += [f"> - {p}" for p in problems]
        lines.append("")
    lines += [grid.markdown(), ""]
    if why is not None:
        lines += [why.markdown(), ""]
    for t in tables[:2]:  # the PR comment keeps to verdicts, speedups and kernels
        lines += [t.markdown(), ""]
    noisy = [t for t in tables if t.title.startswith("Noisy")]
    if noisy:
        lines += [f"{len(noisy[0].body)} noisy figure(s) flagged; see index.html.", ""]
    lines.append(f"_hosts: {prov['hosts']} · artifacts: {prov['artifacts']}_")
    return "\n".join(lines) + "\n"


_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2rem auto;max-width:1200px;
color:#1b1b1b;padding:0 1rem;line-height:1.4}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{border-bottom:1px solid #ddd;padding-bottom:.2rem;
margin-top:2rem}h3{margin-bottom:.4rem}
.prov{color:#555;font-size:.85rem}.prov code{background:#f3f3f3;padding:0 .25rem}
table{border-collapse:collapse;margin:.4rem 0 1rem;font-size:.88rem}
th,td{border:1px solid #d6d6d6;padding:.3rem .55rem;text-align:left;vertical-align:top}
th{background:#f2f4f7}.grid td{min-width:9rem}
.problems{background:#fff4e5;border:1px solid #f0b060;padding:.6rem 1rem;border-radius:6px}
.note{color:#555;font-size:.82rem;margin-top:-.6rem}
figure{margin:1rem 0 2rem}figure img{max-width:100%;border:1px solid #e3e3e3}
figcaption{color:#444;font-size:.85rem}
.counts{font-size:1.05rem}
.alert{font-size:1.15rem;font-weight:bold;padding:.5rem 1rem;border-radius:6px;margin:.3rem 0}
.alert.bad{background:#fde7e9;border:2px solid #c62828;color:#8e0000}
.alert.good{background:#e6f4ea;border:1px solid #2e7d32}
"""


def _status_class(cell_html: str) -> str:
    for status in ("error", "fail", "incompatible", "incomplete", "skipped", "pass"):
        if status in cell_html:
            return status
    return ""


def _grid_html(grid: Table) -> str:
    colors = {
        "pass": "#e6f4ea",
        "fail": "#fde7e9",
        "error": "#fde0d0",
        "incompatible": "#eeeeee",
        "skipped": "#f5f5f5",
        "incomplete": "#fff4e5",
        "": "#ffffff",
    }
    head = "".join(f"<th>{html.escape(h)}</th>" for h in grid.header)
    body = ""
    for row in grid.body:
        tds = f"<th>{html.escape(row[0])}</th>"
        for cell in row[1:]:
            # The worst status in the cell decides its colour.
            color = colors[_status_class(cell)]
            text = html_icons(html.escape(cell).replace("&lt;br&gt;", "<br>"))
            tds += f'<td style="background:{color}">{text}</td>'
        body += f"<tr>{tds}</tr>"
    return f"<table class='grid'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _html(
    run: LoadedRun,
    prov: dict[str, str],
    grid: Table,
    why: Table | None,
    tables: list[Table],
    plots: list[Plot],
    problems: list[str],
    out: Path,
    head: list[Alert],
) -> str:
    e = html.escape
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>TinyGPT harness report: {e(run.directory.name)}</title>",
        f"<style>{_CSS}</style></head><body>",
        *(f"<p class='alert {'bad' if a.bad else 'good'}'>{e(a.text)}</p>" for a in head),
        f"<h1>TinyGPT harness report — {e(run.directory.name)}</h1>",
        f"<p class='prov'>commit <code>{e(prov['commit'])}</code> · {e(prov['machine'])}"
        f"<br>hosts: {e(prov['hosts'])}<br>artifacts (sha256): {e(prov['artifacts'])}"
        f"<br>{e(prov['start'])} → {e(prov['end'] or 'unfinished')}</p>",
    ]
    if problems:
        items = "".join(f"<li>{e(p)}</li>" for p in problems)
        parts.append(
            f"<div class='problems'><strong>Partial report.</strong><ul>{items}</ul></div>"
        )
    parts += [
        "<h2>Verdicts</h2>",
        f"<p class='counts'>{html_icons(e(_counts(run) or 'no cells'))}</p>",
        _grid_html(grid),
    ]
    if why is not None:
        parts.append(why.html())
    if tables:
        parts.append("<h2>Key figures</h2>")
        parts += [t.html() for t in tables]
    if plots:
        parts.append("<h2>Curves</h2>")
    for plot in plots:
        png = (out / PLOTS_DIR / f"{plot.name}.png").read_bytes()
        data = base64.b64encode(png).decode("ascii")
        parts.append(
            f"<figure id='{plot.name}'><h3>{e(plot.title)}</h3>"
            f"<img alt='{e(plot.title)}' src='data:image/png;base64,{data}'>"
            f"<figcaption>{e(plot.caption)} "
            f"<a href='{PLOTS_DIR}/{plot.name}.svg'>SVG</a></figcaption>"
            "</figure>"
        )
    parts.append(
        "<h2>Data</h2><p><a href='results.csv'>results.csv</a> · "
        "<a href='results.parquet'>results.parquet</a> · <a href='summary.md'>summary.md</a></p>"
        "</body></html>"
    )
    return "\n".join(parts)
