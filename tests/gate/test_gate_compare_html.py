"""compare --html DIR: the forest plot, the top slower/faster lists, links to both runs, and
Markdown that renders (a CommonMark renderer, markdown-it, reads summary.md and --markdown)."""

from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from harness.cli import main
from harness.gate.compare_html import by_effect
from harness.gate.thresholds import Thresholds
from harness.gate.verdicts import evaluate
from harness.rundir.reader import load_run
from harness.rundir.rows import Row
from tests.gate.gate_runs import bench_rows, noisy, verdict_row, write_run

TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "driver.mjs", line 12, in call\n'
    "    ``` not a fence in the middle ```\n"
    "RangeError: offset is out of bounds"
)


def _rows(seed: int, matmul: float, layernorm: float) -> list[Row]:
    return [
        *bench_rows(noisy(1000.0 * matmul, 20, seed)),
        *bench_rows(noisy(5000.0 * layernorm, 20, seed + 1), subject="op:layernorm_forward", x=64),
        *bench_rows(noisy(3000.0, 20, seed + 2), host="wasmtime", artifact="wasm32"),
        verdict_row("cell", "pass"),
        verdict_row("cell", "pass", host="wasmtime", artifact="wasm32"),
    ]


@pytest.fixture
def runs(tmp_path: Path) -> tuple[Path, Path]:
    """BASE; CAND with matmul 20 % slower, layernorm 20 % faster, and a model error whose
    cause is a multi-line traceback."""
    base = write_run(tmp_path / "base" / "run", _rows(1, 1.0, 1.0))
    error = verdict_row("model", "error", subject="train_step", detail=TRACEBACK)
    cand = write_run(tmp_path / "cand" / "run", [*_rows(100, 1.2, 0.8), error])
    return base, cand


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.imgs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "a" and found.get("href"):
            self.hrefs.append(str(found["href"]))
        if tag == "img" and found.get("src"):
            self.imgs.append(str(found["src"]))


def _code_blocks(markdown: str) -> list[str]:
    """The text of every fenced or indented code block as CommonMark renders it."""
    return [t.content for t in MarkdownIt().parse(markdown) if t.type in ("fence", "code_block")]


def test_html_report_has_the_forest_plot_links_and_top_lists(
    runs: tuple[Path, Path], tmp_path: Path
) -> None:
    """index.html links both runs (relative links that resolve) and embeds the forest plot;
    summary.md lists the slower matmul and the faster layernorm with their ratios."""
    base, cand = runs
    out = tmp_path / "cmp"
    assert main(["compare", str(base), str(cand), "--html", str(out)]) == 1
    page = _Links()
    page.feed((out / "index.html").read_text())
    targets = {(out / h).resolve() for h in page.hrefs}
    assert {base.resolve(), cand.resolve(), (base / "run.json").resolve()} <= targets
    assert page.imgs == ["forest.svg"]
    assert ET.parse(out / "forest.svg").getroot().tag.endswith("svg")
    assert (out / "forest.png").stat().st_size > 1000
    summary = (out / "summary.md").read_text()
    slower = summary.split("### Top slower")[1].split("###")[0]
    faster = summary.split("### Top faster")[1].split("###")[0]
    assert "- `native/native/small op:matmul_forward@n=256`: 1.20" in slower
    assert "layernorm" not in slower
    assert "- `native/native/small op:layernorm_forward@n=64`: 0.80" in faster


def test_forest_order_is_by_effect_slowest_first(runs: tuple[Path, Path]) -> None:
    """The plot's rows run from the largest CAND/BASE ratio to the smallest."""
    base, cand = (load_run(p) for p in runs)
    ordered = by_effect(evaluate(base.rows, cand.rows, Thresholds()))
    ratios = [c.comparison.ratio for c in ordered]
    assert ratios == sorted(ratios, reverse=True) and not any(math.isnan(r) for r in ratios)
    assert (ordered[0].key.subject, ordered[0].comparison.verdict) == (
        "op:matmul_forward",
        "slower",
    )


@pytest.mark.parametrize("flag", ["--html", "--markdown"])
def test_tracebacks_render_as_code_blocks(
    runs: tuple[Path, Path], tmp_path: Path, flag: str
) -> None:
    """The multi-line traceback in CAND's failure list is one code block, whole, in summary.md
    and in --markdown's file, even with a run of backticks inside it."""
    base, cand = runs
    target = tmp_path / ("cmp" if flag == "--html" else "gate.md")
    assert main(["compare", str(base), str(cand), flag, str(target)]) == 1
    text = (target / "summary.md" if flag == "--html" else target).read_text()
    blocks = _code_blocks(text)
    assert any(TRACEBACK in b for b in blocks), blocks
    # and the one-line items are inline code, not blocks swallowing the rest of the page
    assert all("### " not in b for b in blocks)


def test_html_of_a_directory_that_is_not_a_run_is_exit_2_in_one_line(
    runs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """compare --html with a CAND that is no run directory: exit 2, one line, no report."""
    base, _ = runs
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "cmp"
    assert main(["compare", str(base), str(empty), "--html", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("compare: ") and str(empty) in err
    assert not out.exists()
    assert os.listdir(empty) == []
