"""The pytest plugin (entry point ``pytest11``): ``pytest --harness-matrix matrices/ci.toml``.

One test item per cell x check, with node ids ``MATRIX::host/artifact/preset::check``, so
``-k``, ``-x``, ``--junitxml`` and pytest-xdist's ``-n`` work as on any suite. Outcomes follow
the rows (``harness.rundir.verdict.check_outcomes``): fail -> failed, error -> error (in setup),
incompatible and skipped -> skipped with the cause as the reason.

The cells are run by the runner itself (:class:`harness.runner.RunSession`), so the run
directory holds the same rows as ``tinygpt-harness run``: a cell runs once, whole, when its
first selected item is set up, with the checks selected for it. Under xdist a cell's checks
must stay on one worker (they share one loaded artifact and one verdict): ``-n`` picks
``--dist loadscope``, whose scope is the cell. Each worker writes its own shard run directory
(``OUT/workers/gwN``) and the controller merges them into ``OUT`` (``harness.merge``).

Without ``--harness-matrix`` the plugin only adds its options: nothing else is registered, so
it cannot change another suite (the project's own included). A bad matrix is a usage error
(exit 4) with the matrix's ``FILE:LINE``, before anything is collected.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # the runner imports hosts, checks and rich: only when the plugin is used
    from harness.matrix import Cell
    from harness.rundir.verdict import CheckOutcome
    from harness.runner import HostFactory, RunPlan, RunSession

PLUGIN_NAME = "tinygpt-harness-matrix"
WORKERS_DIR = "workers"
# xdist modes that keep a cell on one worker; "load" (what -n picks) is turned into loadscope
CELL_SAFE_DIST = ("no", "loadscope", "loadfile")


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add the ``--harness-*`` options (the only thing the plugin does unless one is given)."""
    group = parser.getgroup("tinygpt-harness", "tinygpt-harness matrix (docs/ecosystem.md)")
    group.addoption(
        "--harness-matrix",
        metavar="FILE",
        help="collect one test per cell x check of this matrix and run them with the harness",
    )
    group.addoption(
        "--harness-out",
        metavar="DIR",
        help="run directory to write (default: reports/pytest/<UTC time>-<pid> under rootdir)",
    )
    group.addoption(
        "--harness-artifacts",
        metavar="MANIFEST",
        default=None,
        help="artifact manifest.json (default: the bundled library's, in the harness checkout)",
    )
    group.addoption(
        "--harness-project",
        metavar="PATH",
        default=None,
        help="a project profile (harness.toml, or its directory): its [artifacts], presets, "
        "reference and corpus, as `tinygpt-harness run --project` reads them",
    )


def pytest_configure(config: pytest.Config) -> None:
    """With ``--harness-matrix``: validate it (usage error at FILE:LINE) and register the plugin."""
    matrix = config.getoption("harness_matrix")
    if matrix is None:
        return
    config.pluginmanager.register(HarnessMatrixPlugin(config, Path(matrix)), PLUGIN_NAME)


class CheckFailed(Exception):
    """A check's rows say ``fail``; the message is the cause and the failing rows."""


@dataclass
class _Cells:
    """The cells this process runs, and what each of its checks came to."""

    session: RunSession | None = None
    selected: dict[str, list[str]] = field(default_factory=dict)  # cell -> checks, item order
    outcomes: dict[str, dict[str, CheckOutcome]] = field(default_factory=dict)


class HarnessMatrixPlugin:
    """The active plugin: registered only when ``--harness-matrix`` is given."""

    def __init__(self, config: pytest.Config, matrix: Path) -> None:
        self.config = config
        self.matrix = matrix.resolve()
        self.worker: dict[str, Any] | None = getattr(config, "workerinput", None)
        dist = str(getattr(config.option, "dist", "no"))
        self.controller = self.worker is None and dist != "no"  # xdist: runs no cell itself
        if dist == "load":
            config.option.dist = "loadscope"  # a cell's checks are one scope: one worker
        elif dist not in CELL_SAFE_DIST:
            raise pytest.UsageError(
                f"--harness-matrix: --dist {dist} could split a cell's checks across workers "
                "(they share one loaded artifact and verdict); use loadscope or loadfile"
            )
        self.out = self._out_dir()
        self.plan = self._plan()  # validates the matrix and manifest: usage error, file:line
        self.cells = _Cells()
        self.merge_problem = ""
        self.expanded: dict[str, Cell] = {c.id: c for c in self.plan.cells}
        if config.args_source != pytest.Config.ArgsSource.ARGS:
            config.args[:] = [str(self.matrix)]  # no paths given: collect the matrix only
        elif str(self.matrix) not in config.args:
            config.args.append(str(self.matrix))

    # -- configuration ---------------------------------------------------------------------

    def _out_dir(self) -> Path:
        if self.worker is not None:  # the controller chose the directory (pytest_configure_node)
            return Path(self.worker["harness_out"]) / WORKERS_DIR / str(self.worker["workerid"])
        given = self.config.getoption("harness_out")
        if given:
            return Path(given)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        return self.config.rootpath / "reports" / "pytest" / f"{stamp}-{os.getpid()}"

    def _plan(self) -> RunPlan:
        import dataclasses

        from harness.build import BUNDLED_MANIFEST
        from harness.hosts.registry import HOST_NAMES
        from harness.runner import ProjectUsageError, UsageError, plan_from_args

        shard = (1, 1)
        if self.worker is not None:
            shard = (int(str(self.worker["workerid"]).removeprefix("gw")) + 1,
                     int(self.worker["workercount"]))  # fmt: skip
        args = argparse.Namespace(
            matrix=self.matrix, out=self.out, resume=None, shard="1/1", checks=None,
            fail_fast=False, junit=None, artifacts=Path(self.config.getoption("harness_artifacts")
                                                        or BUNDLED_MANIFEST),
            project=Path(p) if (p := self.config.getoption("harness_project")) else None,
        )  # fmt: skip
        try:
            plan = plan_from_args(args, HOST_NAMES)
        except UsageError as exc:
            # the option whose file is at fault: a bad profile is not the matrix's error
            given = (
                "--harness-project" if isinstance(exc, ProjectUsageError) else "--harness-matrix"
            )
            raise pytest.UsageError(f"{given}: {exc}") from None
        # the shard records which worker wrote the rows; every worker sees every cell
        return dataclasses.replace(plan, shard=shard)

    def _factories(self) -> dict[str, HostFactory]:
        from harness.hosts.registry import all_hosts
        from harness.hosts.timeouts import Timeouts

        return dict(all_hosts(Timeouts(call_s=self.plan.matrix.timeout_s)))

    # -- hooks -----------------------------------------------------------------------------

    def pytest_report_header(self) -> str:
        """Say where the rows go."""
        return f"tinygpt-harness: matrix {self.matrix} -> run directory {self.out}"

    def pytest_configure_node(self, node: Any) -> None:
        """xdist controller: every worker writes under the controller's run directory."""
        node.workerinput["harness_out"] = str(self.out)

    def pytest_collect_file(self, file_path: Path, parent: pytest.Collector) -> MatrixFile | None:
        """The matrix file collects as one node per cell."""
        if file_path.resolve() != self.matrix:
            return None
        matrix: MatrixFile = MatrixFile.from_parent(parent, path=file_path)
        return matrix

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        """Note which checks of each cell are selected (after -k and --deselect)."""
        for item in session.items:
            if isinstance(item, CheckItem):
                self.cells.selected.setdefault(item.cell.id, []).append(item.check)

    def outcome(self, item: CheckItem) -> CheckOutcome:
        """The outcome of ``item``'s check, running its cell first if this process has not."""
        cell_id = item.cell.id
        if cell_id not in self.cells.outcomes:
            if self.cells.session is None:
                self.cells.session = self._open()
            selected = self.cells.selected.get(cell_id, [item.check])
            self.cells.outcomes[cell_id] = _run_cell(self.cells.session, item.cell, selected)
        return self.cells.outcomes[cell_id][item.check]

    def _open(self) -> RunSession:
        from harness.runner import open_session

        session = open_session(self.plan, self._factories())
        session.meta["cells"] = []  # filled with the cells this process runs, as they run
        return session

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        """Write the final run.json (a worker, or a lone process); merge workers (controller)."""
        if session.config.option.collectonly:
            return
        if self.controller:
            self.merge_problem = self._merge()
            if self.merge_problem and session.exitstatus == pytest.ExitCode.OK:
                session.exitstatus = pytest.ExitCode.TESTS_FAILED  # the rows are not whole
            return
        if self.cells.session is None:  # ran no cell: still a (complete, empty) shard
            if self.worker is None:
                return
            self.cells.session = self._open()
        run = self.cells.session
        planned = [c for c in self.cells.selected if c not in self.cells.outcomes]
        if planned:  # -x (or a worker given none of them): recorded, not lost
            run.meta["stopped_early"] = planned if self.worker is None else []
        interrupted = exitstatus == pytest.ExitCode.INTERRUPTED
        try:
            run.finish(interrupted)
        finally:
            run.close_hosts()
            run.writer.close()

    def _merge(self) -> str:
        """Merge the workers' shard directories into the run directory; the problem, if any."""
        from harness.merge import MergeError, merge_runs

        shards = sorted((self.out / WORKERS_DIR).glob("gw*"))
        if not shards:
            return ""
        try:
            merge_runs(shards, self.out)
        except MergeError as exc:
            return f"cannot merge the workers' rows: {exc}"
        return ""

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        """One line: where the run directory is."""
        if self.merge_problem:
            terminalreporter.write_line(f"tinygpt-harness: {self.merge_problem}", red=True)
        elif (self.out / "run.json").exists():
            terminalreporter.write_line(f"tinygpt-harness: rows in {self.out}")


def _run_cell(session: RunSession, cell: Cell, selected: list[str]) -> dict[str, CheckOutcome]:
    """Run ``cell`` with its selected checks (as ``run --checks`` would); each one's outcome."""
    import dataclasses

    from harness.rundir.verdict import check_outcomes
    from harness.runner import CellInterrupted

    ran = dataclasses.replace(cell, checks=tuple(c for c in cell.checks if c in selected))
    try:
        rows = session.run_cell(ran)
    except CellInterrupted:  # its partial rows are recorded; pytest ends the session
        raise KeyboardInterrupt from None
    return {o.check: o for o in check_outcomes(ran.id, ran.checks, rows)}


def _plugin(config: pytest.Config) -> HarnessMatrixPlugin:
    plugin = config.pluginmanager.get_plugin(PLUGIN_NAME)
    assert isinstance(plugin, HarnessMatrixPlugin)
    return plugin


class MatrixFile(pytest.File):
    """A matrix file: one :class:`CellNode` per cell, in the runner's (sorted) order."""

    def collect(self) -> Iterator[pytest.Item | pytest.Collector]:
        """The matrix's cells (already validated when the plugin was configured)."""
        for cell in _plugin(self.config).plan.cells:
            yield CellNode.from_parent(self, name=cell.id, cell=cell)


class CellNode(pytest.Collector):
    """One cell ``host/artifact/preset``: one :class:`CheckItem` per check it runs."""

    def __init__(self, *, cell: Cell, **kw: Any) -> None:
        super().__init__(**kw)
        self.cell = cell

    def collect(self) -> Iterator[pytest.Item | pytest.Collector]:
        """The cell's checks."""
        for check in self.cell.checks:
            yield CheckItem.from_parent(self, name=check, cell=self.cell, check=check)


class CheckItem(pytest.Item):
    """One check of one cell; its outcome is read from the cell's rows."""

    def __init__(self, *, cell: Cell, check: str, **kw: Any) -> None:
        super().__init__(**kw)
        self.cell = cell
        self.check = check
        self.outcome: CheckOutcome | None = None

    def setup(self) -> None:
        """Run the cell (once); an error is reported as an error, a skip as a skip."""
        outcome = self.outcome = _plugin(self.config).outcome(self)
        if outcome.status in ("error", "incomplete"):
            pytest.fail(_message(outcome), pytrace=False)  # in setup: pytest reports ERROR
        if outcome.status in ("incompatible", "skipped"):
            pytest.skip(f"{outcome.status}: {outcome.cause}")

    def runtest(self) -> None:
        """Fail when the check's rows failed."""
        if self.outcome is not None and self.outcome.status == "fail":
            raise CheckFailed(_message(self.outcome))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        """A failed check is its cause and its failing rows, not a traceback into the plugin."""
        if isinstance(excinfo.value, CheckFailed):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        """Where the item comes from: the matrix file, and its id."""
        return self.path, None, f"{self.cell.id}::{self.check}"


def _message(outcome: CheckOutcome) -> str:
    head = f"{outcome.status}: {outcome.cause}"
    if len(outcome.details) < 2:  # the one row is the cause
        return head
    return "\n".join([head, "rows:", *(f"  {d}" for d in outcome.details)])
