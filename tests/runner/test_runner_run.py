"""harness.runner with fake hosts and a scriptable fake check: verdicts, rows, reloads, exits.

The fakes (runner_fakes.py) stand in for hosts and checks so each runner decision can be forced;
the real hosts are exercised by test_runner_e2e.py.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from harness.hosts.base import IncompatibleArtifact, MissingExport
from harness.rundir.meta import RUN_FILE, SCHEMA_VERSION
from harness.rundir.reader import read_rows
from harness.rundir.rows import RESULTS_FILE, Row
from harness.rundir.verdict import NO_ROWS
from harness.runner import RunSession
from tests.runner.runner_fakes import (
    Log,
    factories,
    make_artifacts,
    run_args,
    run_with,
    use_fake_checks,
)


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    """A manifest with fake wasm32 and native artifacts."""
    return make_artifacts(tmp_path / "build")


@pytest.fixture(autouse=True)
def fake_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    """smoke and ops run the fake check."""
    use_fake_checks(monkeypatch, "smoke", "ops")


def matrix(tmp_path: Path, extra: str = "", hosts: str = "fa = {}\nfb = {}\n") -> Path:
    """A matrix over fake hosts, both artifacts, tiny+small, smoke+ops, plus ``extra``."""
    head = textwrap.dedent(
        """\
        name = "fake"
        artifacts = ["wasm32", "native"]
        presets = ["tiny", "small"]
        checks = ["smoke", "ops"]
        """
    )
    # Each fake check stamps its rows with the kind it stands for.
    for kind in ("smoke", "ops"):
        if f"[check.{kind}]" not in extra:
            extra += f'[check.{kind}]\nkind = "{kind}"\n'
    path = tmp_path / "m.toml"
    path.write_text(f"{head}[hosts]\n{hosts}{extra}")
    return path


def run(tmp_path: Path, manifest: Path, log: Log, m: Path, **hosts: Any) -> tuple[int, Path]:
    """Run matrix ``m`` with fake hosts ``hosts`` (default fa, fb); return (exit code, out)."""
    out = tmp_path / "run"
    hosts = hosts or {"fa": {}, "fb": {}}
    code = run_with(run_args(m, out, manifest), factories(log, **hosts))
    return code, out


def verdicts(out: Path) -> dict[str, tuple[str, str]]:
    """cell id -> (verdict, first cause) from the verdict rows."""
    return {
        r.cell: (r.status, r.detail)
        for r in read_rows(out / RESULTS_FILE)
        if r.check == "cell" and r.subject == "verdict"
    }


def rows(out: Path) -> list[Row]:
    """All rows of a run."""
    return list(read_rows(out / RESULTS_FILE))


def test_all_pass_exit_0_and_run_json_complete(tmp_path: Path, manifest: Path) -> None:
    """Every cell passes: exit 0, one verdict row per cell, run.json complete with metadata."""
    log = Log()
    code, out = run(tmp_path, manifest, log, matrix(tmp_path))
    assert code == 0
    v = verdicts(out)
    assert len(v) == 8 and {s for s, _ in v.values()} == {"pass"}
    meta = json.loads((out / RUN_FILE).read_text())
    assert meta["schema_version"] == SCHEMA_VERSION
    assert meta["status"] == "complete" and meta["interrupted"] is False
    assert meta["exit_code"] == 0
    assert meta["verdicts"]["pass"] == 8
    assert meta["hosts"]["fa"]["version"] == "v1.2.3"
    assert set(meta["artifacts"]) == {"wasm32", "native"}
    assert len(meta["artifacts"]["native"]["sha256"]) == 64
    assert meta["matrix"]["name"] == "fake" and len(meta["matrix"]["sha256"]) == 64
    assert meta["matrix"]["content"]["presets"] == ["tiny", "small"]
    assert meta["shard"] == {"index": 1, "count": 1}
    assert len(meta["defaults_sha256"]) == 64
    assert len(meta["machine"]["fingerprint_id"]) == 12
    assert set(meta["git"]) == {"commit", "dirty"}
    assert meta["cells_done"] == 8 and meta["ended_at"]


def test_each_host_artifact_loads_once_and_hosts_probe_once(tmp_path: Path, manifest: Path) -> None:
    """An instance is reused across presets and checks; a host's version is asked once."""
    log = Log()
    code, _ = run(tmp_path, manifest, log, matrix(tmp_path))
    assert code == 0
    for host in ("fa", "fb"):
        assert log.count("version", host) == 1
        assert log.count("start", host) == 1
        for artifact in ("wasm32", "native"):
            assert log.count("load", host, artifact) == 1
        assert log.count("close", host) == 1  # everything is closed at the end


def test_the_run_closes_its_hosts_once(
    tmp_path: Path, manifest: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One owner closes the hosts: the run's driver, once (RunSession.finish does not again)."""
    calls: list[int] = []
    real = RunSession.close_hosts

    def counting(self: RunSession) -> None:
        calls.append(1)
        real(self)

    monkeypatch.setattr(RunSession, "close_hosts", counting)
    code, _ = run(tmp_path, manifest, Log(), matrix(tmp_path))
    assert code == 0 and len(calls) == 1


def test_fail_row_gives_exit_1_and_cause(tmp_path: Path, manifest: Path) -> None:
    """A fail row in one check fails its cell (with the cause) and the run exits 1."""
    log = Log()
    m = matrix(tmp_path, '[check.ops]\nkind = "ops"\n"fb/native/small" = "fail"\n')
    code, out = run(tmp_path, manifest, log, m)
    assert code == 1
    v = verdicts(out)
    assert v["fb/native/small"] == ("fail", "ops:second: max_abs_err too big in fb")
    assert sum(s == "pass" for s, _ in v.values()) == 7


def test_exception_becomes_error_row_and_the_run_goes_on(tmp_path: Path, manifest: Path) -> None:
    """A check raising is an error row 'Type: message'; the other check and cells still run."""
    log = Log()
    m = matrix(tmp_path, '[check.smoke]\nkind = "smoke"\nsmall = "raise"\n')
    code, out = run(tmp_path, manifest, log, m)
    assert code == 1
    r = rows(out)
    errors = [x for x in r if x.status == "error" and x.check == "smoke"]
    assert len(errors) == 4 and all(x.detail == "RuntimeError: boom" for x in errors)
    assert all(x.subject == "exception" for x in errors)
    # the row yielded before the raise is kept, and ops still ran in the same cells
    assert sum(x.check == "ops" and x.status == "pass" for x in r) == 8
    assert verdicts(out)["fa/wasm32/small"] == ("error", "smoke:exception: RuntimeError: boom")


def test_a_check_yielding_a_non_row_is_an_error(tmp_path: Path, manifest: Path) -> None:
    """A buggy check that yields something else errors its cell instead of breaking the CSV."""
    log = Log()
    m = matrix(tmp_path, '[check.ops]\nkind = "ops"\ntiny = "not-a-row"\n')
    code, out = run(tmp_path, manifest, log, m)
    assert code == 1
    status, cause = verdicts(out)["fa/native/tiny"]
    assert status == "error" and "yielded str, not a Row" in cause
    assert verdicts(out)["fa/native/small"][0] == "pass"


def test_a_check_writing_no_rows_is_an_error(tmp_path: Path, manifest: Path) -> None:
    """A check that checked nothing errors its cell (exit 1), never passes it as checked."""
    log = Log()
    m = matrix(tmp_path, '[check.ops]\nkind = "ops"\ntiny = "nothing"\n')
    code, out = run(tmp_path, manifest, log, m)
    assert code == 1
    status, cause = verdicts(out)["fa/native/tiny"]
    assert status == "error" and NO_ROWS in cause, cause
    assert verdicts(out)["fa/native/small"][0] == "pass"


def test_measured_rows_do_not_change_the_verdict(tmp_path: Path, manifest: Path) -> None:
    """A cell with only measurements is pass."""
    log = Log()
    m = matrix(tmp_path, '[check.ops]\nkind = "ops"\ndefault = "measure"\n')
    code, out = run(tmp_path, manifest, log, m)
    assert code == 0
    assert any(r.status == "measured" for r in rows(out))
    assert {s for s, _ in verdicts(out).values()} == {"pass"}


def test_unavailable_required_host_errors_its_cells(tmp_path: Path, manifest: Path) -> None:
    """A host is required by default: not installed errors its cells (with the hint), exit 1."""
    log = Log()
    code, out = run(tmp_path, manifest, log, matrix(tmp_path), fa={}, fb={"unavailable": True})
    assert code == 1
    v = verdicts(out)
    errors = {k: d for k, (s, d) in v.items() if s == "error"}
    assert set(errors) == {f"fb/{a}/{p}" for a in ("wasm32", "native") for p in ("tiny", "small")}
    assert all("install: apt install fb" in d and "required host" in d for d in errors.values())
    assert not any(e[:2] == ("load", "fb") for e in log.events)
    meta = json.loads((out / RUN_FILE).read_text())
    assert meta["hosts"]["fb"]["status"] == "error"


def test_unavailable_optional_host_skips_its_cells_with_the_hint(
    tmp_path: Path, manifest: Path
) -> None:
    """``optional = true``: a missing host's cells are skipped, nothing is loaded, exit 0."""
    log = Log()
    m = matrix(tmp_path, hosts="fa = {}\nfb = { optional = true }\n")
    code, out = run(tmp_path, manifest, log, m, fa={}, fb={"unavailable": True})
    assert code == 0
    v = verdicts(out)
    skipped = {k: d for k, (s, d) in v.items() if s == "skipped"}
    assert set(skipped) == {f"fb/{a}/{p}" for a in ("wasm32", "native") for p in ("tiny", "small")}
    assert all("install: apt install fb" in d for d in skipped.values())
    assert not any(e[:2] == ("load", "fb") for e in log.events)
    meta = json.loads((out / RUN_FILE).read_text())
    assert meta["hosts"]["fb"]["status"] == "skipped"


def test_can_load_refusal_is_incompatible_without_loading(tmp_path: Path, manifest: Path) -> None:
    """can_load's reason makes the cell incompatible and the artifact is never loaded."""
    log = Log()
    fb = {"cannot_load": {"native": "fb runs only wasm"}}
    code, out = run(tmp_path, manifest, log, matrix(tmp_path), fa={}, fb=fb)
    assert code == 0
    v = verdicts(out)
    assert v["fb/native/tiny"] == ("incompatible", "cell:load: fb runs only wasm")
    assert log.count("load", "fb", "native") == 0


def test_a_host_that_can_load_nothing_is_never_probed(tmp_path: Path, manifest: Path) -> None:
    """can_load comes first: a host whose every cell is incompatible starts nothing."""
    log = Log()
    fb = {"cannot_load": {"native": "no", "wasm32": "no"}, "unavailable": True}
    code, out = run(tmp_path, manifest, log, matrix(tmp_path), fa={}, fb=fb)
    assert code == 0
    assert {s for c, (s, _) in verdicts(out).items() if c.startswith("fb/")} == {"incompatible"}
    assert log.count("version", "fb") == 0 and log.count("load", "fb", "native") == 0


def test_incompatible_at_load_keeps_the_engine_message(tmp_path: Path, manifest: Path) -> None:
    """IncompatibleArtifact from load -> incompatible with the host's own words."""
    log = Log()
    msg = "WebAssembly.Module(): invalid table elements limits flags @+176"
    fb = {"load_errors": {"wasm32": IncompatibleArtifact(msg)}}
    code, out = run(tmp_path, manifest, log, matrix(tmp_path), fa={}, fb=fb)
    assert code == 0
    assert verdicts(out)["fb/wasm32/small"] == ("incompatible", f"cell:load: {msg}")
    assert verdicts(out)["fb/wasm32/tiny"] == ("incompatible", f"cell:load: {msg}")
    assert log.count("load", "fb", "wasm32") == 1  # a refusal is not retried for the next preset


def test_other_load_failure_is_an_error(tmp_path: Path, manifest: Path) -> None:
    """MissingExport at load -> error 'MissingExport: ...', exit 1."""
    log = Log()
    fb = {"load_errors": {"native": MissingExport("tg_noop is missing")}}
    code, out = run(tmp_path, manifest, log, matrix(tmp_path), fa={}, fb=fb)
    assert code == 1
    assert verdicts(out)["fb/native/tiny"] == (
        "error",
        "cell:load: MissingExport: tg_noop is missing",
    )


@pytest.mark.parametrize("action", ["timeout", "crash"])
def test_timeout_or_crash_restarts_the_host(tmp_path: Path, manifest: Path, action: str) -> None:
    """After HostTimeout/HostCrashed the host is closed and restarted for what comes next."""
    log = Log()
    m = matrix(tmp_path, f'[check.smoke]\nkind = "smoke"\n"fa/native/small" = "{action}"\n')
    code, out = run(tmp_path, manifest, log, m)
    assert code == 1
    status, cause = verdicts(out)["fa/native/small"]
    assert status == "error" and cause.startswith("smoke:exception: Host")
    assert log.count("start", "fa") == 2  # restarted after the failure
    assert log.count("load", "fa", "native") == 2  # ops of the same cell got a fresh instance
    assert verdicts(out)["fa/native/tiny"][0] == "pass"


def test_pinned_version_mismatch_is_an_error(tmp_path: Path, manifest: Path) -> None:
    """A host reporting a version other than the matrix's pin errors every cell of it."""
    log = Log()
    m = matrix(tmp_path, hosts='fa = { version = "1.3" }\nfb = { version = "1.2" }\n')
    code, out = run(tmp_path, manifest, log, m)
    assert code == 1
    v = verdicts(out)
    assert v["fa/native/tiny"][0] == "error" and "pins fa to version 1.3" in v["fa/native/tiny"][1]
    assert v["fb/native/tiny"][0] == "pass"


def test_fail_fast_stops_after_the_first_failing_cell(
    tmp_path: Path, manifest: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--fail-fast writes no cell after the first failure and records what was not run; the
    summary says how many cells finished, and stderr names the cells not run and the --resume
    that runs them."""
    log = Log()
    m = matrix(tmp_path, '[check.ops]\nkind = "ops"\n"fa/native/tiny" = "fail"\n')
    out = tmp_path / "run"
    code = run_with(run_args(m, out, manifest, fail_fast=True), factories(log, fa={}, fb={}))
    assert code == 1
    v = verdicts(out)
    assert list(v) == ["fa/native/small", "fa/native/tiny"]
    meta = json.loads((out / RUN_FILE).read_text())
    assert len(meta["stopped_early"]) == 6
    said = capsys.readouterr()
    assert "\n2 of 8 cells finished: 0 error, 1 fail, " in said.out
    shown = ", ".join(meta["stopped_early"][:5])
    assert (
        f"--fail-fast stopped after a failing cell; 6 cell(s) not run ({shown} and 1 more): "
        f"`tinygpt-harness run --matrix {m} --resume {out}` runs them"
    ) in said.err


def test_keyboard_interrupt_keeps_rows_and_exits_130(
    tmp_path: Path, manifest: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ctrl-C in a check: earlier cells and the partial cell (no verdict) are on disk; exit 130;
    stderr says how to finish the run; the summary counts the finished cells of all 8, not the
    interrupted one among them."""
    log = Log()
    m = matrix(tmp_path, '[check.ops]\nkind = "ops"\n"fa/wasm32/small" = "interrupt"\n')
    code, out = run(tmp_path, manifest, log, m)
    assert code == 130
    said = capsys.readouterr()
    assert f"run --matrix {m} --resume {out}` runs the rest" in said.err
    counts = "0 error, 0 fail, 0 incompatible, 0 skipped, 2 pass (interrupted)"
    assert f"\n2 of 8 cells finished: {counts}\n" in said.out
    v = verdicts(out)
    # the interrupted cell has no verdict row: it did not finish (incomplete; --resume re-runs it)
    assert list(v) == ["fa/native/small", "fa/native/tiny"]
    partial = [r for r in rows(out) if r.cell == "fa/wasm32/small" and r.check != "cell"]
    assert [(r.check, r.subject) for r in partial] == [("smoke", "first"), ("ops", "first")]
    meta = json.loads((out / RUN_FILE).read_text())
    assert meta["interrupted"] is True and meta["status"] == "interrupted"
    assert meta["exit_code"] == 130
    assert log.count("close", "fa") == 1  # hosts are shut down on the way out


def test_checks_option_restricts_and_unknown_check_exits_2(tmp_path: Path, manifest: Path) -> None:
    """--checks smoke runs only smoke; --checks nope is a usage error (exit 2)."""
    log = Log()
    m = matrix(tmp_path)
    out = tmp_path / "run"
    assert run_with(run_args(m, out, manifest, checks="smoke"), factories(log, fa={})) == 2
    code = run_with(run_args(m, out, manifest, checks="smoke"), factories(log, fa={}, fb={}))
    assert code == 0
    assert {r.check for r in rows(out)} == {"smoke", "cell"}
    bad = run_args(m, tmp_path / "run2", manifest, checks="smoke,nope")
    assert run_with(bad, factories(log, fa={}, fb={})) == 2


def test_usage_errors_exit_2(
    tmp_path: Path, manifest: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bad matrix, missing manifest, bad shard, or an existing run directory: exit 2, no run."""
    log = Log()
    hosts = factories(log, fa={}, fb={})
    bad = tmp_path / "bad.toml"
    bad.write_text(
        'name = "x"\nartifacts = ["wasm32"]\npresets = ["tiny"]\nchecks = ["nope"]\n'
        "[hosts]\nfa = {}\n"
    )
    assert run_with(run_args(bad, tmp_path / "r1", manifest), hosts) == 2
    assert f"{bad}:4: unknown check 'nope'" in capsys.readouterr().err
    m = matrix(tmp_path)
    assert run_with(run_args(m, tmp_path / "r2", tmp_path / "none.json"), hosts) == 2
    assert "tinygpt-harness build" in capsys.readouterr().err
    assert run_with(run_args(m, tmp_path / "r3", manifest, shard="3/2"), hosts) == 2
    assert not (tmp_path / "r1").exists() and not (tmp_path / "r3").exists()
    assert run_with(run_args(m, tmp_path / "r4", manifest), hosts) == 0
    assert run_with(run_args(m, tmp_path / "r4", manifest), hosts) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert log.events  # the good run did start hosts


def test_shards_split_the_cells(tmp_path: Path, manifest: Path) -> None:
    """--shard 1/3 .. 3/3 together run every cell exactly once."""
    log = Log()
    m = matrix(tmp_path)
    seen: list[str] = []
    for k in (1, 2, 3):
        out = tmp_path / f"s{k}"
        code = run_with(run_args(m, out, manifest, shard=f"{k}/3"), factories(log, fa={}, fb={}))
        assert code == 0
        seen.extend(verdicts(out))
        assert json.loads((out / RUN_FILE).read_text())["shard"] == {"index": k, "count": 3}
    assert sorted(seen) == sorted(set(seen)) and len(seen) == 8
