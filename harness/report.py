"""``tinygpt-harness report DIR [--out OUTDIR] [--base RUN] [--store DIR]``: the run's report.

Writes index.html, plots (PNG + SVG), summary.md and results.csv/parquet. The page's first screen
is what a maintainer reads in ten seconds: the run's verdict, the sign-off, the gate's verdict
against ``--base`` (the gate's own decision), and the key curves (speedup by preset, kernel
throughput against the roofline). The tables come after, then the other curves, then the
``history`` trends when ``--store`` names a history store. It is one self-contained file: the
PNGs are embedded as data URIs, and the SVGs sit beside it under ``plots/``. ``summary.md`` is
short enough for a PR comment or ``$GITHUB_STEP_SUMMARY``.

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

from harness.gate.signoff_sheet import other_run
from harness.report_data import (
    CellVerdict,
    LoadedRun,
    fingerprint_id,
    load_run_dir,
    oracle_lines,
    provenance,
    verdicts,
)
from harness.report_headline import (
    SHEET,
    Alert,
    GateView,
    alerts,
    default_sheet_dir,
    gate_view,
    unmeasured_checks,
)
from harness.report_tables import (
    ICONS,
    Table,
    causes,
    crosshost_summary,
    determinism_table,
    generation_table,
    html_icons,
    kernel_table,
    noisy_table,
    overhead_table,
    speedup_table,
    thread_table,
    verdict_grid,
)
from harness.report_webgpu import adapter_equality_table, webgpu_speedup_table
from harness.rundir.meta import RunDirError
from harness.rundir.reader import Run, load_run
from harness.rundir.rows import RESULTS_FILE
from harness.rundir.verdict import INCOMPLETE, PARTLY_SKIPPED
from harness.rundir.writer import check_writable, describe_os_error

if TYPE_CHECKING:  # matplotlib loads only when a report is rendered
    from harness.report_history import HistoryView
    from harness.report_plots import Plot

EXIT_OK, EXIT_NOTHING_USABLE = 0, 2
PLOTS_DIR = "plots"
FAILING = ("fail", "error", INCOMPLETE)  # cell verdicts that fail a run (nox main's rule)
# tables summary.md carries beside its first two: a failure or a thread count must not hide
_SUMMARY_TABLES = ("Speedup over 1 thread", "Determinism (bitwise equal outputs)")


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
    parser.add_argument(
        "--base",
        type=Path,
        default=None,
        metavar="RUN",
        help="headline the gate's verdict on DIR against this run (compare BASE DIR's rule; "
        "the report's exit code does not depend on it)",
    )
    parser.add_argument(
        "--store",
        type=Path,
        default=None,
        metavar="STORE",
        help="embed the key trends and change points of this history store",
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
    wrong = other_run(sheet / SHEET, run_dir) if sheet is not None else ""
    if sheet is not None and wrong:  # another run's verdict would headline this one
        print(f"report: {sheet / SHEET}: {wrong}; sign off {run_dir} first", file=sys.stderr)
        return EXIT_NOTHING_USABLE
    store: Path | None = args.store
    if store is not None and not store.is_dir():
        print(f"report: --store {store} is not a directory", file=sys.stderr)
        return EXIT_NOTHING_USABLE
    try:  # before any reading or plotting: an unwritable --out is bad input, one line
        check_writable(out, directory=True)
    except OSError as exc:
        print(f"report: cannot write {out}: {describe_os_error(exc, out)}", file=sys.stderr)
        return EXIT_NOTHING_USABLE
    base: Run | None = None
    if args.base is not None:
        try:
            base = load_run(args.base)
        except RunDirError as exc:
            print(f"report: --base: {exc}", file=sys.stderr)
            return EXIT_NOTHING_USABLE
    try:
        result = render(load_run_dir(run_dir), out, sheet, base, store)
    except RunDirError as exc:  # a corrupt history entry
        print(f"report: --store: {exc}", file=sys.stderr)
        return EXIT_NOTHING_USABLE
    except OSError as exc:  # the disk filled, or --out changed since the check above
        print(f"report: cannot write {out}: {describe_os_error(exc, out)}", file=sys.stderr)
        return EXIT_NOTHING_USABLE
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


@dataclass(frozen=True)
class Page:
    """Everything a page shows, in reading order."""

    run: LoadedRun
    prov: dict[str, str]
    head: list[Alert]  # sign-off, completeness, gate: failing ones first
    verdict: Alert  # the run's own verdict
    grid: Table
    why: Table | None
    gate: GateView | None
    tables: list[Table]
    unmeasured: list[str]  # check kinds that ran nothing in some cell, and why
    oracles: list[str]  # per model-checked preset: the dump or the harness's reference it met
    plots: list[Plot]
    problems: list[str]
    history: HistoryView | None


def render(
    run: LoadedRun,
    out: Path,
    sheet_dir: Path | None = None,
    base: Run | None = None,
    store: Path | None = None,
) -> Rendered:
    """Write index.html, summary.md, results.csv/.parquet and plots for ``run`` into ``out``.

    ``sheet_dir`` holds the release sign-off sheet, ``base`` the run the gate compares against,
    ``store`` a history store; each, when given, is headlined or embedded.
    """
    # matplotlib is imported only when rendering
    from harness.report_history import history_view
    from harness.report_plots import FIGURES, write

    out.mkdir(parents=True, exist_ok=True)
    prov = provenance(run)
    cells = verdicts(run.rows)
    tables = [
        t
        for t in (
            speedup_table(run.rows),
            kernel_table(run.rows),
            thread_table(run.rows),
            determinism_table(run.rows),
            overhead_table(run.rows),
            generation_table(run.rows),
            crosshost_summary(run.rows),
            noisy_table(run.rows),
            webgpu_speedup_table(run.rows),
            adapter_equality_table(run.rows),
        )
        if t is not None
    ]
    gate = gate_view(base, run.directory) if base is not None else None
    head = alerts(run.meta, run.rows, sheet_dir)
    if gate is not None:
        head = sorted([*head, gate.alert], key=lambda a: not a.bad)
    problems = list(run.problems)
    plots = []
    for build in FIGURES if run.usable else ():
        try:
            built = build(run.rows)
        except (ValueError, KeyError, TypeError) as exc:  # one bad curve must not sink the page
            problems.append(f"plot {build.__name__} failed: {type(exc).__name__}: {exc}")
            continue
        if built is not None:
            plots.append(write(built, out / PLOTS_DIR, prov))
    machine = fingerprint_id(run.meta)
    history = history_view(store, out, machine) if store is not None else None
    page = Page(
        run, prov, head, run_verdict(cells), verdict_grid(cells), causes(cells), gate, tables,
        unmeasured_checks(run.rows), oracle_lines(run), plots, problems, history,
    )  # fmt: skip
    files: list[Path] = []
    if run.usable:
        files += _write_tables(run, out)
    summary = out / "summary.md"
    summary.write_text(_markdown(page), encoding="utf-8")
    index = out / "index.html"
    index.write_text(_html(page, out), encoding="utf-8")
    files += [summary, index]
    for p in plots:
        files += [out / PLOTS_DIR / f"{p.name}.png", out / PLOTS_DIR / f"{p.name}.svg"]
    return Rendered(run.usable, tuple(files), tuple(problems))


def run_verdict(cells: list[CellVerdict]) -> Alert:
    """The run's verdict: FAIL when a cell failed, errored or did not finish."""
    bad = [c for c in cells if c.status in FAILING]
    counts = _counts(cells) or "no cells"
    if not cells:
        return Alert(True, "❓ NO VERDICT: the run has no cells")
    if bad:
        named = ", ".join(f"{c.host}/{c.artifact}/{c.preset} {c.status}" for c in bad[:4])
        more = f" and {len(bad) - 4} more" if len(bad) > 4 else ""
        return Alert(True, f"❌ RUN FAILED: {counts} ({named}{more})")
    # a pass that skipped part of its checks (an op the library's binding lacks, a bench point
    # past its budget) says so: "4 pass" alone reads as everything checked
    partly = [c for c in cells if c.status == "pass" and c.detail.startswith(PARTLY_SKIPPED)]
    if partly:
        first = partly[0]
        counts += (
            f"; {len(partly)} of them partly skipped (e.g. {first.host}/{first.artifact}/"
            f"{first.preset}: {first.detail.removeprefix(PARTLY_SKIPPED)})"
        )
    return Alert(False, f"✅ run passed: {counts}")


def _write_tables(run: LoadedRun, out: Path) -> list[Path]:
    csv_path, parquet_path = out / RESULTS_FILE, out / "results.parquet"
    source = run.directory / RESULTS_FILE
    # Reporting in place keeps the run's own results.csv untouched: it is the record.
    if not (csv_path.exists() and source.exists() and csv_path.samefile(source)):
        run.rows.to_csv(csv_path, index=False)
    run.rows.to_parquet(parquet_path, index=False)
    return [csv_path, parquet_path]


def _counts(cells: list[CellVerdict]) -> str:
    counts: dict[str, int] = {}
    for c in cells:
        counts[c.status] = counts.get(c.status, 0) + 1
    order = ("pass", "fail", "error", "incompatible", "skipped", "incomplete")
    return ", ".join(f"{ICONS[s]} {counts[s]} {s}" for s in order if counts.get(s))


def _oracle_changes(page: Page) -> tuple[str, ...]:
    """With ``--base``, the presets whose model oracle was another in BASE, naming both (the
    headline says the oracle differs; the page alone lists only CAND's)."""
    if page.gate is None or page.gate.result is None:
        return ()
    return page.gate.result.oracle_changes


def _markdown(page: Page) -> str:
    run, prov = page.run, page.prov
    # The sign-off, completeness and the gate come first: a failing one is the page's first line.
    lines = [f"**{a.text}**" if a.bad else a.text for a in page.head]
    lines += [""] if page.head else []
    lines += [
        f"## TinyGPT harness: run `{run.directory.name}` at commit `{prov['commit']}`",
        "",
        f"**{page.verdict.text}** · {prov['machine']}",
        "",
    ]
    # a pass against a project's dump and one against our own reference read alike without it
    lines += [f"- Model oracle of {o}" for o in page.oracles]
    lines += [f"- Model oracle differs from BASE for {c}" for c in _oracle_changes(page)]
    lines += [""] if page.oracles else []
    if page.problems:
        lines += ["> [!WARNING]", "> Partial report:"]
        lines += [f"> - {p}" for p in page.problems]
        lines.append("")
    lines += [page.grid.markdown(), ""]
    if page.why is not None:
        lines += [page.why.markdown(), ""]
    if page.unmeasured:  # silence must not read as measured: say what ran nothing
        lines += ["**Not measured:**", *(f"- {u}" for u in page.unmeasured), ""]
    # the PR comment keeps to verdicts, speedups and kernels, the thread axis and determinism
    for t in page.tables[:2] + [t for t in page.tables[2:] if t.title in _SUMMARY_TABLES]:
        lines += [t.markdown(), ""]
    noisy = [t for t in page.tables if t.title.startswith("Noisy")]
    if noisy:
        lines += [f"{len(noisy[0].body)} noisy figure(s) flagged; see index.html.", ""]
    lines.append(f"_hosts: {prov['hosts']} · artifacts: {prov['artifacts']}_")
    return "\n".join(lines) + "\n"


_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:1rem auto;max-width:1360px;
color:#1b1b1b;padding:0 1rem;line-height:1.35}
h1{font-size:1.25rem;margin:.4rem 0 .1rem}h2{border-bottom:1px solid #ddd;padding-bottom:.2rem;
margin-top:1.6rem}h3{margin-bottom:.4rem}
.prov{color:#555;font-size:.78rem;margin:.1rem 0 .5rem}
.prov code{background:#f3f3f3;padding:0 .25rem}
table{border-collapse:collapse;margin:.4rem 0 1rem;font-size:.88rem}
th,td{border:1px solid #d6d6d6;padding:.3rem .55rem;text-align:left;vertical-align:top}
th{background:#f2f4f7}.grid td{min-width:9rem}
.problems{background:#fff4e5;border:1px solid #f0b060;padding:.4rem 1rem;border-radius:6px;
font-size:.85rem}
.note{color:#555;font-size:.82rem;margin-top:-.6rem}
figure{margin:.6rem 0 1.4rem}figure img{max-width:100%;border:1px solid #e3e3e3}
figcaption{color:#444;font-size:.82rem}
.alert{font-size:1.02rem;font-weight:bold;padding:.35rem .8rem;border-radius:6px;margin:.25rem 0}
.alert.bad{background:#fde7e9;border:2px solid #c62828;color:#8e0000}
.alert.good{background:#e6f4ea;border:1px solid #2e7d32}
.verdict{font-size:1.2rem}
.key{display:grid;grid-template-columns:1fr 1fr;gap:.8rem}.key figure{margin:.3rem 0}
.key h3{font-size:.95rem;margin:.2rem 0}
@media (max-width:1100px){.key{grid-template-columns:1fr}}
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


def _alert_html(a: Alert, extra: str = "") -> str:
    kind = "bad" if a.bad else "good"
    return f"<p class='alert {kind} {extra}'>{html_icons(html.escape(a.text))}</p>"


def _not_checked(page: Page) -> str:
    """Say what the first screen does not show, so its silence is not read as a pass."""
    missing = []
    if not any("SIGNED OFF" in a.text.upper() for a in page.head):
        missing.append("no sign-off sheet (signoff/ beside the run, or --signoff)")
    if page.gate is None:
        missing.append("no gate verdict (--base RUN)")
    shown = f"<p class='prov'>Not shown: {html.escape('; '.join(missing))}.</p>" if missing else ""
    if page.unmeasured:  # a check that ran nothing: no figure is not a figure that passed
        items = "".join(f"<li>{html.escape(u)}</li>" for u in page.unmeasured)
        shown += (
            "<div class='problems' id='not-measured'><strong>Not measured:</strong>"
            f"<ul>{items}</ul></div>"
        )
    return shown


def _figure_html(plot: Plot, out: Path) -> str:
    e = html.escape
    data = base64.b64encode((out / PLOTS_DIR / f"{plot.name}.png").read_bytes()).decode("ascii")
    return (
        f"<figure id='{plot.name}'><h3>{e(plot.title)}</h3>"
        f"<img alt='{e(plot.title)}' src='data:image/png;base64,{data}'>"
        f"<figcaption>{e(plot.caption)} "
        f"<a href='{PLOTS_DIR}/{plot.name}.svg'>SVG</a></figcaption></figure>"
    )


def _gate_table(gate: GateView, limit: int = 25) -> Table | None:
    """The gated measurements the gate did not call the same, slowest first (``limit`` shown)."""
    if gate.result is None:
        return None
    moved = [c for c in gate.result.changes if c.gated and c.comparison.verdict != "same"]
    if not moved:
        return None
    moved.sort(key=lambda c: -c.comparison.ratio)
    body = tuple(
        (
            c.key.cell,
            c.key.name,
            f"{c.comparison.ratio:.3f}",
            f"[{c.comparison.ci_low:.3f}, {c.comparison.ci_high:.3f}]",
            f"±{c.comparison.min_effect * 100:g}%",
            c.comparison.verdict,
        )
        for c in moved[:limit]
    )
    more = f" {len(moved) - limit} more: tinygpt-harness compare." if len(moved) > limit else ""
    return Table(
        f"Gate: measurements that moved (CAND / BASE), {len(moved)}",
        ("cell", "measurement", "ratio", "95% CI", "threshold", "verdict"),
        body,
        "The gate's own decision (tinygpt-harness compare); same-verdict rows are left out." + more,
    )


def _html(page: Page, out: Path) -> str:
    e = html.escape
    run, prov = page.run, page.prov
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>TinyGPT harness report: {e(run.directory.name)}</title>",
        f"<style>{_CSS}</style></head><body>",
        # The first screen: verdicts in one line each, then the key curves. No table before.
        "<section id='first-screen'>",
        *(_alert_html(a) for a in page.head),
        f"<h1>TinyGPT harness report — {e(run.directory.name)}</h1>",
        f"<p class='prov'>commit <code>{e(prov['commit'])}</code> · {e(prov['machine'])} · "
        f"{e(prov['start'])} → {e(prov['end'] or 'unfinished')}"
        f"<br>hosts: {e(prov['hosts'])}<br>artifacts (sha256): {e(prov['artifacts'])}"
        + "".join(f"<br>model oracle of {e(o)}" for o in page.oracles)
        + "".join(f"<br>model oracle differs from BASE for {e(c)}" for c in _oracle_changes(page))
        + "</p>",
        _alert_html(page.verdict, "verdict"),
        _not_checked(page),
    ]
    if page.problems:
        items = "".join(f"<li>{e(p)}</li>" for p in page.problems)
        parts.append(
            f"<div class='problems'><strong>Partial report.</strong><ul>{items}</ul></div>"
        )
    key = [p for p in page.plots if p.key]
    if key:
        parts.append("<div class='key' id='key-curves'>")
        parts += [_figure_html(p, out) for p in key]
        parts.append("</div>")
    parts.append("</section>")
    parts += ["<h2>Verdicts by cell</h2>", _grid_html(page.grid)]
    if page.why is not None:
        parts.append(page.why.html())
    gate_table = _gate_table(page.gate) if page.gate is not None else None
    if gate_table is not None:
        parts += ["<h2>Gate</h2>", gate_table.html()]
    if page.tables:
        parts.append("<h2>Key figures</h2>")
        parts += [t.html() for t in page.tables]
    rest = [p for p in page.plots if not p.key]
    if rest:
        parts.append("<h2>Curves</h2>")
        parts += [_figure_html(p, out) for p in rest]
    if page.history is not None:
        parts += _history_html(page.history, out)
    parts.append(
        "<h2>Data</h2><p><a href='results.csv'>results.csv</a> · "
        "<a href='results.parquet'>results.parquet</a> · <a href='summary.md'>summary.md</a></p>"
        "</body></html>"
    )
    return "\n".join(parts)


def _history_html(history: HistoryView, out: Path) -> list[str]:
    e = html.escape
    parts = [
        "<h2 id='history'>History</h2>",
        f"<p>{history.entries} stored run(s) over {history.commits} commit(s) in "
        f"<code>{e(str(history.store))}</code>; every measurement's trend: "
        f"<code>tinygpt-harness history --store {e(str(history.store))} --out DIR</code>.</p>",
    ]
    parts.append(history.steps.html() if history.steps is not None else "<p>No change points.</p>")
    for title, png in history.plots:
        data = base64.b64encode(png.read_bytes()).decode("ascii")
        svg = png.with_suffix(".svg").relative_to(out).as_posix()
        parts.append(
            f"<figure><img alt='{e(title)}' src='data:image/png;base64,{data}'>"
            f"<figcaption>{e(title)} <a href='{e(svg)}'>SVG</a></figcaption></figure>"
        )
    return parts
