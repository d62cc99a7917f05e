"""``tinygpt-harness report`` on a recorded run: files, tables field by field, bad input."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest

from harness.checks.bench import COLD_SUBJECT
from harness.cli import main
from harness.report_data import cold_ratios, curve, load_run_dir
from harness.rundir.meta import RUN_FILE
from harness.rundir.reader import read_rows
from harness.rundir.rows import COLUMNS, REFERENCE_HOST, RESULTS_FILE, Row, encode

FIXTURE = Path(__file__).parent / "fixtures" / "run_small"
PLOTS = ("speedup", "roofline", "kernels", "generation", "overhead", "decomposition", "parity")
KEY_PLOTS = ("speedup", "roofline")  # the first screen's curves


def _report(run_dir: Path, out: Path) -> int:
    return main(["report", str(run_dir), "--out", str(out)])


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture run rendered once into a fresh directory."""
    out = tmp_path_factory.mktemp("report")
    assert _report(FIXTURE, out) == 0
    return out


def md_table(markdown: str, title: str) -> list[dict[str, str]]:
    """The rows of the GFM table under ``### title`` as dicts keyed by header."""
    lines = markdown.splitlines()
    start = lines.index(f"### {title}") + 2
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(
            dict(zip(header, (c.strip() for c in line.strip("|").split(" | ")), strict=True))
        )
    return rows


def test_report_writes_every_file(rendered: Path) -> None:
    """index.html, summary.md, results.csv/.parquet and every plot as PNG and SVG are written."""
    for name in ("index.html", "summary.md", "results.csv", "results.parquet"):
        assert (rendered / name).stat().st_size > 0, name
    for plot in PLOTS:
        assert (rendered / "plots" / f"{plot}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert "<svg" in (rendered / "plots" / f"{plot}.svg").read_text()[:2000]


def test_verdict_grid_golden(rendered: Path) -> None:
    """The host x artifact grid holds each cell's verdict and noisy count, field by field."""
    grid = {
        r["host"]: r
        for r in md_table((rendered / "summary.md").read_text(), "Verdicts (host × artifact)")
    }
    assert list(grid) == ["native", "node", "node24", "wasmtime"]
    assert grid["native"] == {
        "host": "native",
        "native": "small: ✅ pass (3 noisy)<br>tiny: ✅ pass (3 noisy)",
        "wasm32": "—",
        "wasm32-truncated": "—",
        "wasm64": "—",
    }
    assert grid["node"]["wasm64"] == "tiny: ⛔ incompatible"
    assert grid["node24"]["wasm32"] == "small: ✅ pass (4 noisy)<br>tiny: ✅ pass (3 noisy)"
    assert grid["node24"]["wasm32-truncated"] == "tiny: 💥 error"
    assert grid["wasmtime"]["wasm32"] == "small: ✅ pass (10 noisy)<br>tiny: ✅ pass (3 noisy)"


def test_causes_are_the_hosts_own_words(rendered: Path) -> None:
    """Non-passing cells list their verdict and exact cause."""
    causes = md_table((rendered / "summary.md").read_text(), "Causes")
    assert causes == [
        {
            "cell": "node/wasm64/tiny",
            "verdict": "⛔ incompatible",
            "cause": "WebAssembly.compile(): invalid memory limits flags 0x4 "
            "(enable via --experimental-wasm-memory64) @+301",
        },
        {
            "cell": "node24/wasm32-truncated/tiny",
            "verdict": "💥 error",
            "cause": 'CorruptArtifact: WebAssembly.compile(): section (code 10, "Code") extends '
            "past end of the module (length 33600, remaining bytes 3161) @+931",
        },
    ]


def test_speedup_table_golden_and_noisy_never_clean(rendered: Path) -> None:
    """Speedups per cell and preset; noisy figures carry ~ and their CV, clean ones do not."""
    summary = (rendered / "summary.md").read_text()
    title = "Train-step speedup over the numpy reference"
    table = {r["cell"]: r for r in md_table(summary, title)}
    assert table["native · native"]["tiny"] == "4.86×"
    assert table["native · native"]["small"] == "~1.14× (noisy, cv=0.26)"
    assert table["node24 · wasm32"]["tiny"] == "1.89×"
    assert table["node24 · wasm32"]["small"] == "~0.76× (noisy, cv=0.02)"
    assert table["wasmtime · wasm32"]["small"] == "~0.151× (noisy, cv=0.18)"
    assert table["wasmtime · wasm32"]["slope of log speedup per decade of params"] == (
        "~-0.82 (2 pts, noisy points)"
    )
    assert table["numpy reference (time)"]["tiny"] == "652 µs"
    assert table["numpy reference (time)"]["small"] == "9.51 ms"


def test_speedup_row_is_numpy_median_over_kernel_median() -> None:
    """In the recorded rows, speedup = numpy train-step median / the cell's median."""
    rows = list(read_rows(FIXTURE / RESULTS_FILE))

    def one(host: str, preset: str, metric: str) -> Row:
        (row,) = [r for r in rows if r.host == host and r.preset == preset
                  and r.subject == "train_step" and r.metric == metric]  # fmt: skip
        return row

    ref = one("numpy", "tiny", "median_ns").value
    for host in ("native", "wasmtime", "node24"):
        kernel = one(host, "tiny", "median_ns").value
        assert one(host, "tiny", "speedup").value == pytest.approx(ref / kernel, rel=1e-12)


def test_kernel_table_golden(rendered: Path) -> None:
    """Largest size per op: median, throughput and share of the one-thread BLAS roofline."""
    rows = md_table((rendered / "summary.md").read_text(), "Kernels at their largest size")
    native_mm = next(
        r for r in rows if r["op"] == "matmul_forward" and r["cell"] == "native · native"
    )
    assert native_mm == {
        "op": "matmul_forward",
        "cell": "native · native",
        "size": "128",
        "median": "40.9 µs",
        "throughput": "103 GFLOP/s",
        "of 1-thread BLAS": "88.8 %",
    }
    gelu = next(r for r in rows if r["op"] == "gelu_forward" and r["cell"] == "node24 · wasm32")
    assert (gelu["throughput"], gelu["of 1-thread BLAS"]) == ("0.497 GB/s", "—")


def test_results_csv_roundtrips_field_by_field(rendered: Path) -> None:
    """The report's results.csv holds every recorded row with every field unchanged."""
    want = list(read_rows(FIXTURE / RESULTS_FILE))
    got = list(read_rows(rendered / RESULTS_FILE))
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        for column in COLUMNS:
            a, b = getattr(g, column), getattr(w, column)
            if isinstance(b, float) and math.isnan(b):
                assert isinstance(a, float) and math.isnan(a), (column, w)
            else:
                assert a == b, (column, w)


def test_parquet_matches_csv(rendered: Path) -> None:
    """results.parquet has the same columns and values as results.csv."""
    pq = pd.read_parquet(rendered / "results.parquet")
    csv = pd.read_csv(rendered / RESULTS_FILE, keep_default_na=False, dtype={"detail": str})
    assert list(pq.columns) == list(COLUMNS)
    assert pq["value"].fillna(-1).tolist() == pd.to_numeric(csv["value"]).fillna(-1).tolist()
    assert pq["subject"].tolist() == csv["subject"].tolist()


def test_first_screen_is_verdicts_then_key_curves_then_tables(rendered: Path) -> None:
    """index.html: the verdict and the key curves come before the first table; the rest after."""
    page = (rendered / "index.html").read_text()
    first_table = page.index("<table")
    verdict = page.index("class='alert bad verdict'")  # the fixture has an errored cell
    assert "RUN FAILED" in page[verdict:first_table]
    assert "node24/wasm32-truncated/tiny error" in page[verdict:first_table]
    key = [page.index(f"<figure id='{name}'>") for name in KEY_PLOTS]
    assert verdict < key[0] < key[1] < page.index("</section>") < first_table
    others = [page.index(f"<figure id='{name}'>") for name in PLOTS if name not in KEY_PLOTS]
    assert min(others) > page.index("<h2>Key figures</h2>") > first_table
    assert page.count("src='data:image/png;base64,") == len(PLOTS)
    for plot in PLOTS:
        assert f"href='plots/{plot}.svg'" in page
    assert "58dc7c74253d" in page and "node24 v24.21.0" in page


def test_every_figure_names_cells_and_provenance(rendered: Path) -> None:
    """Each SVG carries commit, host versions, sha256 prefixes; legends name host · artifact."""
    for plot in PLOTS:
        svg = (rendered / "plots" / f"{plot}.svg").read_text()
        assert "commit 58dc7c74253d (dirty)" in svg, plot
        assert "node24 v24.21.0" in svg and "wasm32 3ad51a2049" in svg, plot
    for plot in ("speedup", "roofline", "kernels", "generation", "overhead"):
        svg = (rendered / "plots" / f"{plot}.svg").read_text()
        assert "node24 · wasm32" in svg and "native · native" in svg, plot
    assert "roofline: numpy sgemm, 1 thread" in (rendered / "plots" / "roofline.svg").read_text()


def _copy_fixture(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(FIXTURE, run)
    return run


def test_missing_run_json_still_renders(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without run.json the report renders, exits 0 and says provenance is unknown."""
    run = _copy_fixture(tmp_path)
    (run / RUN_FILE).unlink()
    assert _report(run, tmp_path / "out") == 0
    assert "run.json is missing" in capsys.readouterr().err
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "> - run.json is missing" in summary
    assert "commit `unknown`" in summary
    assert "node24 v24.21.0" in summary  # host versions recovered from the rows


def test_a_project_run_names_the_projects_commit_first(tmp_path: Path) -> None:
    """A ``run --project`` run's headline names the project's checkout (its binaries and
    claims are its commit's), then the harness's: not the harness's commit alone."""
    run = _copy_fixture(tmp_path)
    meta = json.loads((run / RUN_FILE).read_text())
    meta["project"] = {"root": "/src/threadgpt", "git": {"commit": "c" * 40, "dirty": True}}
    (run / RUN_FILE).write_text(json.dumps(meta))
    assert _report(run, tmp_path / "out") == 0
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert f"at commit `threadgpt {'c' * 12} (dirty); harness " in summary


def test_truncated_last_line_is_skipped_and_said(tmp_path: Path) -> None:
    """A crash mid-write leaves half a line: it is dropped, the rest renders, exit 0."""
    run = _copy_fixture(tmp_path)
    text = (run / RESULTS_FILE).read_text()
    (run / RESULTS_FILE).write_text(text[: len(text) - 40])  # cut inside the last row
    assert _report(run, tmp_path / "out") == 0
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "the last line is truncated" in summary
    rows = list(read_rows(tmp_path / "out" / RESULTS_FILE))
    assert len(rows) == len(list(read_rows(FIXTURE / RESULTS_FILE))) - 1
    assert not any(r.artifact == "wasm32-truncated" for r in rows)  # it was the last row


def test_crash_mid_run_without_cell_rows(tmp_path: Path) -> None:
    """Rows of a cell that never got its verdict row read as incomplete (the one rule), said so."""
    run = _copy_fixture(tmp_path)
    df = pd.read_csv(run / RESULTS_FILE, keep_default_na=False, dtype=str)
    df = df[df["check"] != "cell"]
    df.to_csv(run / RESULTS_FILE, index=False)
    assert _report(run, tmp_path / "out") == 0
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "have no verdict row" in summary
    grid = {r["host"]: r for r in md_table(summary, "Verdicts (host × artifact)")}
    assert grid["native"]["native"] == (
        "small: ❓ incomplete (3 noisy)<br>tiny: ❓ incomplete (3 noisy)"
    )


def test_older_schema_renders_what_it_has(tmp_path: Path) -> None:
    """schema_version 0 with columns missing: rendered, the gaps listed, exit 0."""
    run = _copy_fixture(tmp_path)
    meta = json.loads((run / RUN_FILE).read_text())
    meta["schema_version"] = 0
    (run / RUN_FILE).write_text(json.dumps(meta))
    df = pd.read_csv(run / RESULTS_FILE, keep_default_na=False, dtype=str)
    df.drop(columns=["iteration", "x_name"]).to_csv(run / RESULTS_FILE, index=False)
    assert _report(run, tmp_path / "out") == 0
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "schema_version 0 (older" in summary
    assert "lacks columns ['x_name', 'iteration']" in summary
    causes = md_table(summary, "Causes")
    assert [c["cell"] for c in causes] == ["node/wasm64/tiny", "node24/wasm32-truncated/tiny"]


def test_nothing_usable_exits_non_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An empty directory renders a page saying what is missing and exits 2."""
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _report(empty, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "results.csv is missing" in err and "nothing usable" in err
    assert "results.csv is missing" in (tmp_path / "out" / "index.html").read_text()


def test_csv_without_required_columns_is_unusable(tmp_path: Path) -> None:
    """A results.csv lacking host/status columns has no usable rows: exit 2, cause named."""
    run = tmp_path / "run"
    run.mkdir()
    (run / RESULTS_FILE).write_text("a,b\n1,2\n")
    assert _report(run, tmp_path / "out") == 2
    assert "lacks required columns" in (tmp_path / "out" / "summary.md").read_text()


def test_not_a_directory_exits_two(tmp_path: Path) -> None:
    """A DIR that does not exist is bad usage (exit 2)."""
    assert _report(tmp_path / "nope", tmp_path / "out") == 2


def test_report_in_place_keeps_the_run_record(tmp_path: Path) -> None:
    """Reporting into DIR itself leaves its results.csv byte for byte as recorded."""
    run = _copy_fixture(tmp_path)
    before = (run / RESULTS_FILE).read_bytes()
    assert main(["report", str(run)]) == 0
    assert (run / RESULTS_FILE).read_bytes() == before
    assert (run / "index.html").is_file() and (run / "results.parquet").is_file()


def _with_cold(tmp_path: Path, factor: float) -> Path:
    """The fixture run plus a cold train-step row per timed cell, ``factor`` x its steady median."""
    run = tmp_path / "run"
    shutil.copytree(FIXTURE, run)
    rows = list(read_rows(run / RESULTS_FILE))
    steady = [r for r in rows if r.subject == "train_step" and r.metric == "median_ns"
              and r.host != REFERENCE_HOST]  # fmt: skip
    assert steady, "the fixture has train-step figures"
    cold = [
        dataclasses.replace(
            r,
            subject=COLD_SUBJECT,
            metric="cold_ns",
            value=factor * r.value,
            status="measured",
            detail="n=1 (no CI)",
        )
        for r in steady
    ]
    with (run / RESULTS_FILE).open("a", encoding="utf-8", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows(encode(r) for r in cold)
    return run


def test_cold_ratio_is_first_call_over_steady_median(tmp_path: Path) -> None:
    """cold_ratios divides each cell's cold_ns by its own steady train-step median."""
    run = load_run_dir(_with_cold(tmp_path, 3.5))
    pts = cold_ratios(run.rows)
    steady = curve(run.rows, "train_step", "median_ns")
    assert len(pts) == len(steady[steady["host"] != REFERENCE_HOST]) > 0  # numpy has no cold
    assert pts["ratio"].to_numpy() == pytest.approx(3.5, rel=1e-12)


def test_cold_plot_is_drawn_only_with_cold_figures(tmp_path: Path) -> None:
    """The report draws plots/cold.png when the run has cold figures, and no such file without."""
    out = tmp_path / "out"
    assert _report(_with_cold(tmp_path, 2.0), out) == 0
    assert (out / "plots" / "cold.png").stat().st_size > 0
    assert "plots/cold.svg" in (out / "index.html").read_text(encoding="utf-8")
    bare = tmp_path / "bare"
    assert _report(FIXTURE, bare) == 0
    assert not (bare / "plots" / "cold.png").exists()
