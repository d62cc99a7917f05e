"""The cell-verdict rule: worst status wins, except that partial skips do not hide a pass."""

from __future__ import annotations

from harness.report import run_verdict
from harness.report_data import CellVerdict
from harness.rundir.rows import Row, Status
from harness.rundir.verdict import NO_ROWS, check_outcomes, decide


def _row(check: str, status: Status, detail: str = "") -> Row:
    return Row("native", "v", "native", "ab", "tiny", check, "s", status, detail=detail)


def test_error_beats_fail_beats_pass() -> None:
    """An error anywhere makes the cell an error, with that row's cause."""
    rows = [_row("ops", "pass"), _row("model", "fail", "x"), _row("bench", "error", "boom")]
    assert decide(rows) == ("error", "bench:s: boom")


def test_budget_skipped_bench_points_keep_a_passing_cell_pass() -> None:
    """A bench point skipped for time does not turn a cell whose checks passed into skipped."""
    verdict, cause = decide([_row("ops", "pass"), _row("bench", "skipped", "budget 3 s")])
    assert verdict == "pass"
    assert cause == "partly skipped: bench:s: budget 3 s"


def test_a_cell_with_only_skipped_rows_is_skipped() -> None:
    """A cell where nothing ran (e.g. the host is missing) is skipped, with the cause."""
    assert decide([_row("cell", "skipped", "no node")]) == ("skipped", "cell:s: no node")


def test_measurements_alone_are_a_pass() -> None:
    """Rows that carry no verdict (measured, noisy) leave the cell at pass."""
    assert decide([_row("bench", "measured"), _row("bench", "noisy")]) == ("pass", "")


def test_a_bench_only_cell_with_measurements_and_skipped_points_is_pass() -> None:
    """A bench-only cell (no verdict rows) that measured something and skipped a point: pass."""
    verdict, cause = decide([_row("bench", "measured"), _row("bench", "skipped", "budget")])
    assert (verdict, cause) == ("pass", "partly skipped: bench:s: budget")


def test_check_outcomes_of_a_cell_cut_mid_run_are_incomplete() -> None:
    """A cell with rows but no verdict row did not finish: each check is incomplete, and a
    failure already seen is named in the cause."""
    rows = [_row("ops", "pass"), _row("model", "fail", "loss off")]
    outcomes = {o.check: o for o in check_outcomes("native/native/tiny", ("ops", "model"), rows)}
    assert {o.status for o in outcomes.values()} == {"incomplete"}
    assert outcomes["model"].cause.endswith("; model:s fail: loss off")
    assert outcomes["model"].details == ("model:s fail: loss off",)


def test_check_outcomes_take_a_load_failure_for_the_checks_it_stopped() -> None:
    """A load error at the second check: the first keeps its own outcome, the rest take the
    cell-level cause; a check that wrote nothing in a finished cell is skipped."""
    rows = [
        _row("ops", "pass"),
        Row(
            "native", "v", "native", "ab", "tiny", "cell", "load", "error", detail="HostCrashed: x"
        ),
        Row("native", "v", "native", "ab", "tiny", "cell", "verdict", "error"),
    ]
    got = check_outcomes("native/native/tiny", ("ops", "model", "bench"), rows)
    assert [(o.check, o.status, o.cause) for o in got] == [
        ("ops", "pass", ""),
        ("model", "error", "cell:load: HostCrashed: x"),
        ("bench", "error", "cell:load: HostCrashed: x"),
    ]
    finished = [
        _row("ops", "pass"),
        Row("native", "v", "native", "ab", "tiny", "cell", "verdict", "pass"),
    ]
    (quiet,) = check_outcomes("native/native/tiny", ("smoke",), finished)
    assert (quiet.status, quiet.cause) == ("error", NO_ROWS)


def test_the_report_headline_says_when_passing_cells_skipped_part_of_their_checks() -> None:
    """A run whose cells passed with ops their binding lacks is "passed; N of them partly
    skipped", naming one cause, not a bare "4 pass" that reads as everything checked."""
    whole = CellVerdict("wasmtime", "w", "tiny", "pass", "", False, 0)
    verdict, cause = decide([_row("ops", "pass"), _row("ops", "skipped", "not bound")])
    partly = CellVerdict("native", "n", "tiny", verdict, cause, False, 0)
    alert = run_verdict([whole, partly])
    assert not alert.bad
    assert "1 of them partly skipped (e.g. native/n/tiny: ops:s: not bound)" in alert.text
    assert "partly" not in run_verdict([whole]).text
