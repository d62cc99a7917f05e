"""The report's tables, built once and rendered both to Markdown (summary.md) and HTML.

A noisy figure is never printed as a clean number: it carries ``(noisy, cv=...)``.
"""

from __future__ import annotations

import html
import math
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness.crosshost import CrossHostEntry, crosshost_table
from harness.report_data import (
    CellVerdict,
    curve,
    noisy_figures,
    speedup_curve,
    speedup_slopes,
    summary_value,
)
from harness.rundir.rows import COLUMNS, REFERENCE_HOST, Row
from reference.presets import PRESETS

ICONS: dict[str, str] = {
    "pass": "✅",
    "fail": "❌",
    "error": "💥",
    "incompatible": "⛔",
    "skipped": "⏭️",
    "incomplete": "❓",
}


STATUS_COLORS: dict[str, str] = {
    "pass": "#1a7f37",
    "fail": "#cf222e",
    "error": "#bc4c00",
    "incompatible": "#6e7781",
    "skipped": "#8c959f",
    "incomplete": "#9a6700",
}


def html_icons(text: str) -> str:
    """Swap the status emoji for coloured dots: headless browsers often lack an emoji font."""
    for status, icon in ICONS.items():
        dot = f'<span style="color:{STATUS_COLORS[status]}">●</span>'
        text = text.replace(icon, dot)
    return text


@dataclass(frozen=True)
class Table:
    """A titled table of strings."""

    title: str
    header: tuple[str, ...]
    body: tuple[tuple[str, ...], ...]
    note: str = ""

    def markdown(self) -> str:
        """GitHub-flavoured Markdown (pipes in cells escaped)."""

        def cells(row: tuple[str, ...]) -> str:
            return "| " + " | ".join(c.replace("|", "\\|") for c in row) + " |"

        lines = [f"### {self.title}", "", cells(self.header)]
        lines.append("|" + "|".join("---" for _ in self.header) + "|")
        lines += [cells(r) for r in self.body]
        if self.note:
            lines += ["", f"_{self.note}_"]
        return "\n".join(lines)

    def html(self, css_class: str = "") -> str:
        """An HTML table; cells are escaped, then ``<br>`` line breaks restored."""

        def esc(c: str) -> str:
            return html_icons(html.escape(c).replace("&lt;br&gt;", "<br>"))

        head = "".join(f"<th>{esc(h)}</th>" for h in self.header)
        body = "".join(
            "<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in self.body
        )
        note = f'<p class="note">{html.escape(self.note)}</p>' if self.note else ""
        return (
            f"<h3>{html.escape(self.title)}</h3><table class='{css_class}'><thead><tr>{head}"
            f"</tr></thead><tbody>{body}</tbody></table>{note}"
        )


def fmt(value: float, status: str, cv: float = math.nan, unit: str = "", digits: int = 3) -> str:
    """A figure with ``digits`` significant digits and its unit, flagged when noisy."""
    if not math.isfinite(value):
        return "n/a" if status != "noisy" else "n/a (noisy)"
    # Large figures (tokens/s) read better whole, with separators, than in e-notation.
    text = f"{value:,.0f}{unit}" if abs(value) >= 10**digits else f"{value:.{digits}g}{unit}"
    if status == "noisy":
        return f"~{text} (noisy, cv={cv:.2f})" if math.isfinite(cv) else f"~{text} (noisy)"
    return text


def fmt_ns(ns: float) -> str:
    """A duration with a readable unit."""
    if not math.isfinite(ns):
        return "n/a"
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"


def verdict_grid(cells: list[CellVerdict]) -> Table:
    """Hosts down, artifacts across; each entry lists ``preset: icon verdict`` per cell."""
    hosts = sorted({c.host for c in cells})
    artifacts = sorted({c.artifact for c in cells})
    body = []
    for host in hosts:
        row = [host]
        for art in artifacts:
            entries = [
                f"{c.preset or '-'}: {ICONS.get(c.status, '?')} {c.status}"
                + (f" ({c.noisy} noisy)" if c.noisy else "")
                for c in cells
                if c.host == host and c.artifact == art
            ]
            row.append("<br>".join(entries) if entries else "—")
        body.append(tuple(row))
    return Table("Verdicts (host × artifact)", ("host", *artifacts), tuple(body))


def causes(cells: list[CellVerdict]) -> Table | None:
    """Why each non-passing cell ended as it did, in the host's own words."""
    body = tuple(
        (
            f"{c.host}/{c.artifact}/{c.preset}",
            f"{ICONS.get(c.status, '?')} {c.status}",
            c.detail + (" [derived: no cell row]" if c.derived else ""),
        )
        for c in cells
        if c.status != "pass"
    )
    if not body:
        return None
    return Table("Causes", ("cell", "verdict", "cause"), body)


def _preset_order(preset: str) -> int:
    names = list(PRESETS)
    return names.index(preset) if preset in names else len(names)


def speedup_table(rows: pd.DataFrame) -> Table | None:
    """Train-step speedup over numpy per cell and preset, with the fitted slope."""
    pts = speedup_curve(rows)
    if pts.empty:
        return None
    presets = sorted(pts["preset"].unique(), key=_preset_order)
    slopes = {(s.host, s.artifact): s for s in speedup_slopes(rows)}
    body = []
    for (host, artifact), g in pts.groupby(["host", "artifact"], sort=True):
        row = [f"{host} · {artifact}"]
        for p in presets:
            hit = g[g["preset"] == p]
            if hit.empty:
                row.append("—")
                continue
            r = hit.iloc[0]
            row.append(fmt(float(r["value"]), str(r["status"]), float(r["cv"]), "×"))
        fit = slopes.get((str(host), str(artifact)))
        if fit is None:
            row.append("—")
        else:
            flag = ", noisy points" if fit.noisy else ""
            row.append(f"{'~' if fit.noisy else ''}{fit.slope:+.2f} ({fit.points} pts{flag})")
        body.append(tuple(row))
    ref = summary_value(rows, host=REFERENCE_HOST, subject="train_step", metric="median_ns")
    ref_row = ["numpy reference (time)"]
    for p in presets:
        hit = ref[ref["preset"] == p]
        ref_row.append(fmt_ns(float(hit.iloc[0]["value"])) if not hit.empty else "—")
    body.append((*ref_row, ""))
    return Table(
        "Train-step speedup over the numpy reference",
        ("cell", *presets, "slope of log speedup per decade of params"),
        tuple(body),
        "Speedup measured side by side: kernel and numpy (1 BLAS thread) in alternating short "
        "blocks, the median of the per-pair ratios; noisy when its bootstrap CI over pairs is "
        "wider than +-10%. Runs without that figure show numpy median / kernel median, timed "
        "apart (noisy when either timing is; the cv shown is the kernel's).",
    )


def kernel_table(rows: pd.DataFrame) -> Table | None:
    """Each op at its largest measured size: time, throughput, share of the roofline."""
    body = []
    for subject in sorted(s for s in rows["subject"].unique() if str(s).startswith("op:")):
        for metric, unit in (("gflops", "GFLOP/s"), ("gbps", "GB/s")):
            pts = curve(rows, subject, metric)
            if pts.empty:
                continue
            frac = curve(rows, subject, "roofline_fraction")
            for (host, artifact), g in pts.groupby(["host", "artifact"], sort=True):
                r = g.sort_values("x_value").iloc[-1]
                f = frac[
                    (frac["host"] == host)
                    & (frac["artifact"] == artifact)
                    & (frac["x_value"] == r["x_value"])
                ]
                share = "—"
                if not f.empty:
                    share = fmt(
                        100 * float(f.iloc[0]["value"]), str(r["status"]), float(r["cv"]), " %"
                    )
                body.append(
                    (
                        subject.removeprefix("op:"),
                        f"{host} · {artifact}",
                        f"{r['x_value']:g}",
                        fmt_ns(float(r["median_ns"])),
                        fmt(float(r["value"]), str(r["status"]), float(r["cv"]), f" {unit}"),
                        share,
                    )
                )
    if not body:
        return None
    return Table(
        "Kernels at their largest size",
        ("op", "cell", "size", "median", "throughput", "of 1-thread BLAS"),
        tuple(body),
    )


def overhead_table(rows: pd.DataFrame) -> Table | None:
    """Per host: the in-host no-op call and the bridge round trip."""
    call = curve(rows, "host:noop_call", "median_ns")
    bridge = curve(rows, "bridge:noop", "median_ns")
    if call.empty and bridge.empty:
        return None
    body = []
    keys = sorted(
        {(str(h), str(a)) for h, a in zip(call["host"], call["artifact"], strict=True)}
        | {(str(h), str(a)) for h, a in zip(bridge["host"], bridge["artifact"], strict=True)}
    )
    for host, artifact in keys:
        cells = []
        for pts in (call, bridge):
            hit = pts[(pts["host"] == host) & (pts["artifact"] == artifact)]
            if hit.empty:
                cells.append("—")
                continue
            r = hit.iloc[0]
            text = fmt_ns(float(r["value"]))
            cells.append(text + (f" (noisy, cv={r['cv']:.2f})" if r["status"] == "noisy" else ""))
        body.append((f"{host} · {artifact}", *cells))
    return Table(
        "Per-call overhead",
        ("cell", "no-op call inside the host", "Python↔host round trip"),
        tuple(body),
    )


def generation_table(rows: pd.DataFrame) -> Table | None:
    """Decode tokens/s at the longest context, KV on and off, and the time to first token."""
    body = []
    kv, nokv = (
        curve(rows, "generate:kv", "tokens_per_s"),
        curve(rows, "generate:nokv", "tokens_per_s"),
    )
    ttft = curve(rows, "ttft:kv", "ttft_ns")
    for (host, artifact, preset), g in kv.groupby(["host", "artifact", "preset"], sort=True):
        r = g.sort_values("x_value").iloc[-1]
        match = (nokv["host"] == host) & (nokv["artifact"] == artifact) & (nokv["preset"] == preset)
        n = nokv[match & (nokv["x_value"] == r["x_value"])]
        t = ttft[
            (ttft["host"] == host)
            & (ttft["artifact"] == artifact)
            & (ttft["preset"] == preset)
            & (ttft["x_value"] == r["x_value"])
        ]
        body.append(
            (
                f"{host} · {artifact} · {preset}",
                f"{r['x_value']:g}",
                fmt(float(r["value"]), str(r["status"]), float(r["cv"])),
                fmt(float(n.iloc[0]["value"]), str(n.iloc[0]["status"]), float(n.iloc[0]["cv"]))
                if not n.empty
                else "—",
                fmt_ns(float(t.iloc[0]["value"])) if not t.empty else "—",
            )
        )
    if not body:
        return None
    return Table(
        "Generation at the longest context",
        ("cell", "context", "tokens/s KV on", "tokens/s KV off", "time to first token (KV)"),
        tuple(body),
    )


def noisy_table(rows: pd.DataFrame, limit: int = 20) -> Table | None:
    """The figures flagged noisy, with their CV."""
    noisy = noisy_figures(rows)
    if noisy.empty:
        return None
    body = tuple(
        (
            f"{r['host']}/{r['artifact']}/{r['preset']}",
            str(r["subject"]),
            f"{r['x_name']}={float(r['x_value']):g}" if r["x_name"] else "",
            f"{float(r['cv']):.3f}",
        )
        for _, r in noisy.head(limit).iterrows()
    )
    more = len(noisy) - limit
    return Table(
        "Noisy figures (CI still wider than ±10% of the median when sampling stopped)",
        ("cell", "curve", "point", "cv"),
        body,
        f"{more} more in results.csv" if more > 0 else "",
    )


def crosshost_summary(rows: pd.DataFrame) -> Table | None:
    """Per artifact build and output: bitwise equal across hosts, or the max difference."""
    model = rows[(rows["check"] == "model") & rows["subject"].astype(str).str.startswith("hash:")]
    if model.empty:
        return None
    entries = crosshost_table(_as_rows(model))
    if not entries:
        return None
    groups: dict[tuple[str, str, str], list[CrossHostEntry]] = {}
    for e in entries:
        groups.setdefault((e.artifact, e.artifact_sha256, e.preset), []).append(e)
    body = []
    for (artifact, sha, preset), group in groups.items():
        hosts = sorted({h for e in group for h in e.hosts})
        differ = [e for e in group if not e.bitwise_equal]
        if differ:
            verdict = "≠ " + "; ".join(
                f"{e.output}: max diff {e.max_diff:.3g} ({e.detail})" for e in differ
            )
        else:
            verdict = f"✅ all {len(group)} outputs bitwise equal"
        body.append((f"{artifact} ({sha[:10]})", preset, ", ".join(hosts), verdict))
    return Table(
        "Cross-host equality of model outputs (same artifact build)",
        ("artifact", "preset", "hosts", "logits, grads, adamw, trajectory, generation"),
        tuple(body),
        "From the model check's output hashes; a difference is the max over sampled values.",
    )


def _as_rows(frame: pd.DataFrame) -> list[Row]:
    """DataFrame records back into Rows (the CSV's empty cells are NaN here)."""
    out = []
    for rec in frame.to_dict("records"):
        fields = {c: rec[c] for c in COLUMNS}
        for c in ("host", "host_version", "artifact", "artifact_sha256", "preset", "check",
                  "subject", "status", "metric", "unit", "detail", "x_name"):  # fmt: skip
            v = fields[c]
            fields[c] = "" if isinstance(v, float) and math.isnan(v) else str(v)
        it = fields["iteration"]
        fields["iteration"] = -1 if isinstance(it, float) and math.isnan(it) else int(it)
        out.append(Row(**fields))
    return out


# ---- the thread-count axis -------------------------------------------------------------------

THREAD_PREFIX = "threads:"  # the bench's speedup-over-1-thread rows, x = threads
_ON_THREADS = re.compile(r"^(.*):threads=(\d+)$")  # a figure at n > 1 threads (bench, determinism)


def thread_speedups(rows: pd.DataFrame) -> pd.DataFrame:
    """The bench's ``threads:<subject>`` speedups over 1 thread, one line per point.

    Columns ``host, artifact, preset, series, order, x_value, value, status, ci_low, ci_high``:
    ``series`` is "train step" or "<op> <x_name>=<n>" (``threads:op:<op>@<x_name>=<n>``),
    ``order`` sorts the train step first and an op's sizes ascending; the CI is the side-by-side
    one (``speedup_ci_low``/``_high``) where the rows have it, NaN elsewhere (timed apart).
    Skipped points are left out. Empty when the run has no thread axis.
    """
    cols = ["host", "artifact", "preset", "series", "order", "x_value", "value", "status",
            "ci_low", "ci_high"]  # fmt: skip
    keys = ["host", "artifact", "preset", "subject", "x_value"]
    bench = rows[(rows["check"] == "bench") & (rows["iteration"] == -1)]
    own = bench[
        bench["subject"].astype(str).str.startswith(THREAD_PREFIX)
        & (bench["host"] != REFERENCE_HOST)
    ]
    pts = own[own["metric"] == "speedup"][[*keys, "value", "status"]]
    pts = pts[np.isfinite(pts["value"].to_numpy(float))].drop_duplicates(keys, keep="first")
    if pts.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in cols})
    for metric, name in (("speedup_ci_low", "ci_low"), ("speedup_ci_high", "ci_high")):
        s = own[own["metric"] == metric][[*keys, "value"]].drop_duplicates(keys, keep="first")
        pts = pts.merge(s.rename(columns={"value": name}), on=keys, how="left")
    named = [_thread_series(str(s)) for s in pts["subject"]]
    pts["series"] = [n for n, _ in named]
    pts["order"] = [o for _, o in named]
    out: pd.DataFrame = pts[cols]
    return out.sort_values(["host", "artifact", "preset", "order", "series", "x_value"])


def _thread_series(subject: str) -> tuple[str, tuple[int, str, float]]:
    """A ``threads:`` subject's legend name and its sort key (train step first, sizes up)."""
    what = subject.removeprefix(THREAD_PREFIX)
    if what == "train_step":
        return "train step", (0, "", 0.0)
    op, _, point = what.removeprefix("op:").partition("@")
    name, _, size = point.partition("=")
    try:
        n = float(size)
    except ValueError:
        n = math.nan
    return (f"{op} {name}={size}" if point else op), (1, op, n)


def thread_table(rows: pd.DataFrame) -> Table | None:
    """Speedup over 1 thread per cell and figure (the train step, each op size), a column per
    thread count: the side-by-side CI where measured, noisy figures flagged."""
    pts = thread_speedups(rows)
    if pts.empty:
        return None
    counts = sorted({int(v) for v in pts["x_value"]})
    body = []
    for (host, artifact, preset, _order, series), g in pts.groupby(
        ["host", "artifact", "preset", "order", "series"], sort=True
    ):
        row = [f"{host} · {artifact} · {preset}", str(series)]
        for n in counts:
            hit = g[g["x_value"] == n]
            if hit.empty:
                row.append("—")
                continue
            r = hit.iloc[0]
            text = fmt(float(r["value"]), str(r["status"]), unit="×")
            lo, hi = float(r["ci_low"]), float(r["ci_high"])
            if math.isfinite(lo) and math.isfinite(hi):
                text += f" [{lo:.3g}, {hi:.3g}]"
            row.append(text)
        body.append(tuple(row))
    return Table(
        "Speedup over 1 thread",
        ("cell", "figure", *(f"{n} thread{'s' if n > 1 else ''}" for n in counts)),
        tuple(body),
        "1-thread time over n-thread time (above 1 is faster). Train step: side by side, "
        "alternating 1- and n-thread blocks in one instance, [bootstrap 95% CI over pairs]; "
        "ops: two medians timed apart, no CI. ~ and (noisy): not a clean figure.",
    )


# ---- determinism -----------------------------------------------------------------------------


def determinism_table(rows: pd.DataFrame) -> Table | None:
    """The determinism check per cell: its outputs across two devices, then each thread count's
    ops (``<op>:threads=<n>``) and split (``threads=<n>:split``), as status counts; failures and
    errors named with their detail, or the first skip's reason when nothing ran."""
    det = rows[(rows["check"] == "determinism") & (rows["host"] != REFERENCE_HOST)]
    if det.empty:
        return None
    det = det.drop_duplicates(["host", "artifact", "preset", "subject"], keep="first")
    columns = ["across devices"]
    kinds = [_determinism_kind(s) for s in det["subject"].astype(str)]
    det = det.assign(kind=kinds)
    counts = sorted({int(k.split("=")[1].split()[0]) for k in kinds if k != "across devices"})
    columns += [f"threads={n}" for n in counts]
    body = []
    for (host, artifact, preset), g in det.groupby(["host", "artifact", "preset"], sort=True):
        row = [f"{host}/{artifact}/{preset}"]
        for column in columns:
            part = g[g["kind"] == column]
            text = _status_counts(part["status"])
            split = g[g["kind"] == f"{column} split"]
            if not split.empty:
                s = split.iloc[0]
                value = float(s["value"])
                regions = f"{value:g} regions" if math.isfinite(value) else str(s["status"])
                text += f"<br>split: {ICONS.get(str(s['status']), '')} {regions}".rstrip()
            row.append(text or "—")
        bad = g[g["status"].isin(["fail", "error"])]
        if not bad.empty:
            notes = [f"{ICONS[str(r['status'])]} {r['subject']}: {r['detail']}"
                     for _, r in bad.head(3).iterrows()]  # fmt: skip
            more = len(bad) - 3
            row.append("<br>".join(notes) + (f"<br>{more} more in results.csv" if more > 0 else ""))
        else:
            row.append(_skip_reasons(g[g["status"] == "skipped"]))
        body.append(tuple(row))
    return Table(
        "Determinism (bitwise equal outputs)",
        ("cell", *columns, "failures, or why skipped"),
        tuple(body),
        "Across devices: each op output of the cell's instance against a fresh process. "
        "threads=n: each op on sizes that split, repeated, against the reference and the "
        "1-thread bytes; split: parallel regions that ran on a pool worker.",
    )


def _skip_reasons(skipped: pd.DataFrame, shown: int = 2) -> str:
    """'⏭️ 12 skipped (adamw_update, ...): OP: not bound: ...': the reasons with each row's own
    subject taken out, so one reason over many ops is said once."""
    if skipped.empty:
        return ""
    by_reason: dict[str, list[str]] = {}
    for subject, detail in zip(skipped["subject"], skipped["detail"], strict=True):
        op = str(subject).split(":")[0]
        by_reason.setdefault(str(detail).replace(op, "OP"), []).append(str(subject))
    parts = []
    for reason, subjects in sorted(by_reason.items(), key=lambda kv: -len(kv[1]))[:shown]:
        names = ", ".join(subjects[:3]) + (", ..." if len(subjects) > 3 else "")
        parts.append(f"⏭️ {len(subjects)} skipped ({names}): {reason}")
    more = len(by_reason) - shown
    return "<br>".join(parts) + (f"<br>{more} other reasons in results.csv" if more > 0 else "")


def _determinism_kind(subject: str) -> str:
    """Which column a determinism row belongs to: across devices, or threads=<n> (split)."""
    hit = _ON_THREADS.match(subject)
    if hit:
        return f"threads={hit.group(2)}"
    if subject.startswith("threads=") and subject.endswith(":split"):
        return f"{subject.removesuffix(':split')} split"
    return "across devices"


def _status_counts(statuses: pd.Series) -> str:
    """'✅ 13 pass, ⏭️ 12 skipped': each status with its count, worst first."""
    order = ("fail", "error", "incompatible", "pass", "measured", "skipped")
    seen = statuses.astype(str).value_counts()
    return ", ".join(
        f"{ICONS.get(s, '')} {int(seen[s])} {s}".strip() for s in order if s in seen.index
    )
