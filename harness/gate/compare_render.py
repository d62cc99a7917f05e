"""Render a GateResult: a rich terminal table and a Markdown summary for the PR."""

from __future__ import annotations

import math
import re

from rich.console import Console
from rich.table import Table

from harness.gate.verdicts import Change, GateResult

_STYLE = {"slower": "bold red", "faster": "green", "same": "dim", "unknown": "yellow"}


def _ns(v: float) -> str:
    if math.isnan(v):
        return "-"
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if v >= scale:
            return f"{v / scale:.3g} {unit}"
    return f"{v:.3g} ns"


def _pct(r: float) -> str:
    return "-" if math.isnan(r) else f"{(r - 1) * 100:+.1f}%"


def _ci(c: Change) -> str:
    cmp = c.comparison
    if math.isnan(cmp.ci_low):
        return "-"
    return f"[{_pct(cmp.ci_low)}, {_pct(cmp.ci_high)}]"


def _p(p: float) -> str:
    return "-" if math.isnan(p) else f"{p:.2g}"


def _verdict(c: Change) -> str:
    if not c.gated:
        return f"{c.comparison.verdict} (ref)"
    return c.comparison.verdict + (" (paired)" if c.comparison.method == "paired" else "")


def _row(c: Change) -> tuple[str, ...]:
    cmp = c.comparison
    return (
        c.key.cell,
        c.key.name,
        _ns(c.base_ns),
        _ns(c.cand_ns),
        f"{cmp.ratio:.3f}" if not math.isnan(cmp.ratio) else "-",
        _ci(c),
        _p(cmp.p_value),
        f"±{cmp.min_effect * 100:g}%",
        f"{cmp.n_base}/{cmp.n_cand}",
        _verdict(c),
    )


HEADERS = (
    "cell",
    "measurement",
    "base",
    "cand",
    "ratio",
    "95% CI",
    "p",
    "threshold",
    "n",
    "verdict",
)


def headline(result: GateResult) -> str:
    """One line: the gate's outcome and its counts."""
    counts = {v: 0 for v in ("slower", "faster", "same", "unknown")}
    for c in result.changes:
        if c.gated:
            counts[c.comparison.verdict] += 1
    outcome = "FAIL" if result.failed else "PASS"
    return (
        f"gate {outcome}: {counts['slower']} slower, {counts['faster']} faster, "
        f"{counts['same']} same, {counts['unknown']} unknown; "
        f"{len(result.blocking_failures)} parity/defaults/corpus failures; "
        f"{len(result.cell_regressions)} broken cells; {len(result.missing)} missing from CAND"
        # not a failure of its own, but it changes what a model failure means: said up front
        + (
            f"; MODEL ORACLE DIFFERS for {len(result.oracle_changes)} preset(s)"
            if result.oracle_changes
            else ""
        )
        + (
            "; NOTHING COMPARED (no gated measurement in both runs)"
            if result.compared_nothing
            else ""
        )
    )


def sections(result: GateResult) -> list[tuple[str, tuple[str, ...]]]:
    """The failure and note lists, titled, in the order every rendering shows them."""
    return [
        ("Parity, defaults and corpus failures in CAND", result.blocking_failures),
        ("Cells that passed in BASE and are broken in CAND", result.cell_regressions),
        (
            "Model oracle differs between BASE and CAND (a changed model row may be the "
            "oracle's, not the kernel's)",
            result.oracle_changes,
        ),
        ("Measured in BASE, missing from CAND (fails the gate)", result.missing),
        ("Missing from CAND but excluded (--exclude / thresholds exclude)", result.excluded),
        ("Refusals overridden by --allow-cross-machine", result.overridden_refusals),
        ("Paired reruns (BASE and CAND timed side by side)", result.notes),
    ]


def md_item(text: str, bullet: bool = False) -> str:
    """``text`` as Markdown code that renders: inline code for one line, a fenced block for a
    multi-line text (a traceback), the fence longer than any run of backticks inside it."""
    longest = max((len(m) for m in re.findall("`+", text)), default=0)
    if "\n" not in text:
        tick = "`" * (longest + 1)
        pad = " " if text.startswith("`") or text.endswith("`") else ""
        code = f"{tick}{pad}{text}{pad}{tick}"
        return f"- {code}" if bullet else code
    fence = "`" * max(3, longest + 1)
    first, _, _ = text.partition("\n")
    indent = "  " if bullet else ""
    body = "\n".join(f"{indent}{line}" if line else "" for line in text.splitlines())
    block = f"{indent}{fence}text\n{body}\n{indent}{fence}"
    return f"- {first.strip()}\n\n{block}" if bullet else block


def print_table(result: GateResult, console: Console) -> None:
    """Print the comparison table and the failure lists to ``console``."""
    table = Table(title="compare: CAND vs BASE (ratio = CAND / BASE of the compared quantile)")
    for h in HEADERS:
        table.add_column(
            h, justify="right" if h not in ("cell", "measurement", "verdict") else "left"
        )
    for c in result.changes:
        table.add_row(*_row(c), style=_STYLE[c.comparison.verdict] if c.gated else "dim")
    console.print(table)
    if any(not c.gated for c in result.changes):
        console.print("(ref): the numpy reference, timed as a yardstick; shown, never gated")
    for title, items in sections(result):
        if items:
            console.print(f"[bold]{title}[/bold]")
            for item in items:
                console.print(f"  - {item}", markup=False)
    console.print(headline(result), style="bold red" if result.failed else "bold green")


def markdown(result: GateResult, base_label: str, cand_label: str) -> str:
    """The PR comment: headline, regressions first, then every measurement."""
    lines = [
        f"## Performance gate: {'❌ FAIL' if result.failed else '✅ PASS'}",
        "",
        f"BASE {md_item(base_label)} → CAND {md_item(cand_label)}. {headline(result)}.",
        "",
    ]
    for title, items in sections(result):
        if items:
            lines += [f"### {title}", "", *[md_item(i, bullet=True) for i in items], ""]
    ordered = sorted(
        result.changes,
        key=lambda c: (
            not c.gated,
            ("slower", "unknown", "faster", "same").index(c.comparison.verdict),
        ),
    )
    lines += ["### Measurements", "", "(ref): the numpy reference, shown, never gated.", ""]
    lines += ["| " + " | ".join(HEADERS) + " |"]
    lines.append("|" + "|".join("---" for _ in HEADERS) + "|")
    for c in ordered:
        cells = list(_row(c))
        if c.comparison.verdict == "slower" and c.gated:
            cells[-1] = cells[-1].replace("slower", "**slower**", 1)
        lines.append("| " + " | ".join(x.replace("|", "\\|") for x in cells) + " |")
    return "\n".join(lines) + "\n"
