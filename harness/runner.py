"""``tinygpt-harness run``: run a matrix's cells into a run directory.

The pipeline: load the manifest and the matrix -> expand and shard the cells -> for each cell,
probe its host once, load the artifact once per (host, artifact), run the cell's checks -> write
the cell's rows (and its verdict row) and commit them as the cell ends -> ``run.json``.

Every failure becomes a row, never a crash of the run: a host that is not installed makes its
cells ``skipped`` (with the install hint), a host that refuses a binary makes them
``incompatible`` (with the engine's own words), anything else that goes wrong is an ``error``
with ``Type: message``. Ctrl-C keeps everything recorded so far, marks ``run.json`` interrupted
and exits 130.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from rich.console import Console

from harness.artifact import Artifact, load_manifest
from harness.checks import REGISTRY, begin_run, get_check
from harness.checks.base import CellContext
from harness.hosts.base import (
    ABIError,
    CorruptArtifact,
    Host,
    HostCrashed,
    HostError,
    HostTimeout,
    HostUnavailable,
    IncompatibleArtifact,
    Instance,
    MissingExport,
)
from harness.hosts.timeouts import Timeouts
from harness.machine import fingerprint
from harness.matrix import (
    Cell,
    Matrix,
    MatrixError,
    Names,
    expand_cells,
    load_matrix,
    parse_shard,
    shard,
)
from harness.results import RESULTS_FILE, RUN_FILE, SCHEMA_VERSION, Row, RowWriter, Status
from harness.run_dir import (
    FAILING,
    cell_verdict,
    count_verdicts,
    exit_code,
    git_state,
    write_run_json,
)
from harness.run_progress import LOG_WIDTH, CellProgress, print_summary
from reference.defaults import DEFAULTS
from reference.presets import PRESETS

DEFAULT_MANIFEST = Path("artifacts/build/manifest.json")
EXIT_INTERRUPTED = 130
HostFactory = Callable[[], Host]


def repo_root() -> Path:
    """The checkout this harness runs from (for git state and README surfaces), else the cwd."""
    root = Path(__file__).resolve().parents[1]
    return root if (root / "pyproject.toml").exists() else Path.cwd()


@dataclass(frozen=True)
class RunPlan:
    """Everything a run needs, decided before any host starts."""

    matrix: Matrix
    cells: tuple[Cell, ...]
    artifacts: Mapping[str, Artifact]
    out: Path
    shard: tuple[int, int] = (1, 1)
    checks: tuple[str, ...] = ()  # the check kinds selected (the matrix's, or --checks)
    fail_fast: bool = False
    repo_root: Path = field(default_factory=repo_root)


# -- hosts ---------------------------------------------------------------------------------


@dataclass
class _Probe:
    version: str
    problem: tuple[Status, str] | None  # a cell-wide verdict and its cause, if the host is unusable
    flags: tuple[str, ...] = ()  # the engine flags its figures run under (e.g. --no-liftoff)


class _HostPool:
    """The run's hosts: each probed once; at most one loaded instance per host at a time.

    Cells arrive sorted by id, so a host's cells, and within them an artifact's cells, are
    consecutive: keeping one instance per host loads each (host, artifact) exactly once. A load
    that failed for a reason that cannot change (the engine refused the module, an export is
    missing) is remembered and not retried for the next preset.
    """

    def __init__(self, factories: Mapping[str, HostFactory], matrix: Matrix) -> None:
        self._factories = factories
        self._matrix = matrix
        self._hosts: dict[str, Host] = {}
        self._probes: dict[str, _Probe] = {}
        self._instances: dict[str, Instance] = {}
        self._load_failures: dict[tuple[str, str, str], HostError] = {}
        # artifact -> host -> sha256 of the file as that host loaded it (run.json's artifacts)
        self.loaded_sha256: dict[str, dict[str, str]] = {}

    def host(self, name: str) -> Host:
        """Host ``name``, created on first use (creating a host starts no process)."""
        if name not in self._hosts:
            factory = self._factories.get(name)
            if factory is None:
                raise HostError(f"host {name!r} is not in the host registry")
            self._hosts[name] = factory()
        return self._hosts[name]

    def version(self, name: str) -> str:
        """The version a probe found ("" before the probe or if it failed)."""
        probe = self._probes.get(name)
        return probe.version if probe is not None else ""

    def probe(self, name: str) -> _Probe:
        """Ask host ``name`` its version, once; failures become a cell-wide verdict."""
        if name not in self._probes:
            self._probes[name] = self._probe(name)
        return self._probes[name]

    def _probe(self, name: str) -> _Probe:
        try:
            version = self.host(name).version()
        except HostUnavailable as exc:
            return _Probe("", ("skipped", str(exc)))
        except Exception as exc:
            return _Probe("", ("error", _describe(exc)))
        spec = self._matrix.host(name)
        if not spec.accepts(version):
            problem = (
                f"the matrix pins {name} to version {spec.version} but it reports {version} "
                "(run `tinygpt-harness install-hosts`)"
            )
            return _Probe(version, ("error", problem))
        return _Probe(version, None, self.host(name).engine_flags())

    def instance(self, name: str, artifact: Artifact) -> Instance:
        """Return host ``name``'s instance of ``artifact``, loading it unless it is current."""
        current = self._instances.get(name)
        if current is not None and current.artifact.name == artifact.name:
            return current
        self._drop_instance(name)
        key = (name, artifact.name, artifact.sha256)
        if key in self._load_failures:
            raise self._load_failures[key]
        try:
            instance = self.host(name).load(artifact)
        except (IncompatibleArtifact, CorruptArtifact, MissingExport, ABIError) as exc:
            self._load_failures[key] = exc
            raise
        self._instances[name] = instance
        self.loaded_sha256.setdefault(artifact.name, {})[name] = instance.loaded_sha256
        return instance

    def has_cold(self, name: str) -> bool:
        """Whether host ``name`` can open a cold instance (Host.cold_host)."""
        cold = self.host(name).cold_host()  # a host object only: nothing starts before load
        return cold is not None

    @contextlib.contextmanager
    def cold_instance(self, name: str, artifact: Artifact) -> Iterator[Instance]:
        """``artifact`` in a fresh process of host ``name`` under default engine flags."""
        cold = self.host(name).cold_host()
        if cold is None:
            raise HostError(f"host {name!r} has no cold instance")
        try:
            instance = cold.load(artifact)
            try:
                yield instance
            finally:
                instance.close()
        finally:
            cold.close()

    def _drop_instance(self, name: str) -> None:
        instance = self._instances.pop(name, None)
        if instance is not None:
            with contextlib.suppress(Exception):  # a dead instance may fail to close; it is gone
                instance.close()

    def restart(self, name: str) -> None:
        """Forget host ``name``'s instance and process after a timeout or crash."""
        self._drop_instance(name)
        host = self._hosts.pop(name, None)
        if host is not None:
            with contextlib.suppress(Exception):
                host.close()

    def release_others(self, keep: str) -> None:
        """Close every host but ``keep``: its cells are over (cells come sorted by host)."""
        for name in list(self._hosts):
            if name != keep:
                self.restart(name)

    def close(self) -> None:
        """Close every instance and host."""
        for name in list(self._hosts):
            self.restart(name)

    def versions(self) -> dict[str, dict[str, Any]]:
        """For run.json: each probed host's version, pin, and the problem if it was unusable."""
        out: dict[str, dict[str, Any]] = {}
        for name, probe in self._probes.items():
            entry: dict[str, Any] = {
                "version": probe.version,
                "pin": self._matrix.host(name).version,
            }
            if probe.problem is not None:
                entry["status"], entry["problem"] = probe.problem
            if probe.problem is None:  # e.g. V8's --no-liftoff: the figures' engine tier
                entry["flags"] = list(probe.flags)
            out[name] = entry
        return out


# -- cells ---------------------------------------------------------------------------------


class _Interrupted(Exception):  # a control-flow signal, not an error
    """Ctrl-C inside a cell; carries the rows the cell recorded before it."""

    def __init__(self, rows: list[Row]) -> None:
        super().__init__("interrupted")
        self.rows = rows


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class _CellRunner:
    """Runs one cell's checks and returns its rows, ending with the cell's verdict row."""

    def __init__(self, plan: RunPlan, pool: _HostPool) -> None:
        self.plan = plan
        self.pool = pool
        self.current = ""  # what the cell is doing, to say where a Ctrl-C landed

    def row(
        self, cell: Cell, version: str, check: str, subject: str, status: Status, **kw: Any
    ) -> Row:
        artifact = self.plan.artifacts[cell.artifact]
        return Row(
            host=cell.host,
            host_version=version,
            artifact=cell.artifact,
            artifact_sha256=artifact.sha256,
            preset=cell.preset,
            check=check,
            subject=subject,
            status=status,
            **kw,
        )

    def run(self, cell: Cell) -> list[Row]:
        """Run ``cell``: its rows, ending with its verdict row (``_Interrupted`` on Ctrl-C)."""
        started = time.perf_counter()
        rows: list[Row] = []
        self.current = "host start"
        try:
            self.run_cell(cell, rows)
        except KeyboardInterrupt:
            detail = f"interrupted (Ctrl-C) during {self.current}"
            version = self.pool.version(cell.host)
            rows.append(self.row(cell, version, "cell", "verdict", "skipped", detail=detail))
            raise _Interrupted(rows) from None
        verdict, cause = cell_verdict(rows)
        seconds = time.perf_counter() - started
        version = self.pool.version(cell.host)
        rows.append(
            self.row(
                cell,
                version,
                "cell",
                "verdict",
                verdict,
                detail=cause,
                metric="wall_time",
                unit="s",
                value=seconds,
            )
        )
        return rows

    def run_cell(self, cell: Cell, rows: list[Row]) -> None:
        """Append the cell's rows: can_load first (starts nothing), then the probe, then checks."""
        artifact = self.plan.artifacts[cell.artifact]
        try:
            host = self.pool.host(cell.host)
            reason = host.can_load(artifact)
        except Exception as exc:
            rows.append(self.row(cell, "", "cell", "host", "error", detail=_describe(exc)))
            return
        if reason is not None:
            version = self.pool.version(cell.host)
            rows.append(self.row(cell, version, "cell", "load", "incompatible", detail=reason))
            return
        probe = self.pool.probe(cell.host)
        if probe.problem is not None:
            status, detail = probe.problem
            rows.append(self.row(cell, probe.version, "cell", "host", status, detail=detail))
            return
        version = probe.version
        for kind in cell.checks:
            self.current = f"load of {cell.artifact}"
            try:
                instance = self.pool.instance(cell.host, artifact)
            except IncompatibleArtifact as exc:
                rows.append(
                    self.row(cell, version, "cell", "load", "incompatible", detail=str(exc))
                )
                return
            except Exception as exc:
                if isinstance(exc, HostTimeout | HostCrashed):
                    self.pool.restart(cell.host)
                rows.append(self.row(cell, version, "cell", "load", "error", detail=_describe(exc)))
                return
            self.run_check(cell, kind, version, artifact, instance, rows)

    def run_check(
        self,
        cell: Cell,
        kind: str,
        version: str,
        artifact: Artifact,
        instance: Instance,
        out: list[Row],
    ) -> None:
        """Append check ``kind``'s rows to ``out`` as they come (kept even on Ctrl-C)."""
        self.current = f"check {kind}"
        ctx = CellContext(
            host=cell.host,
            host_version=version,
            artifact=artifact,
            preset=PRESETS[cell.preset],
            instance=instance,
            options=self.plan.matrix.options(kind),
            matrix_path=self.plan.matrix.path,
            repo_root=self.plan.repo_root,
            cold_instance=(
                functools.partial(self.pool.cold_instance, cell.host, artifact)
                if self.pool.has_cold(cell.host)
                else None
            ),
        )
        try:
            for row in get_check(kind)(ctx):
                if not isinstance(row, Row):  # would break the CSV writer for the whole run
                    raise TypeError(f"check {kind} yielded {type(row).__name__}, not a Row")
                out.append(row)
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            if isinstance(exc, HostTimeout | HostCrashed):
                self.pool.restart(cell.host)  # the next check or cell gets a fresh host
            out.append(ctx.row(kind, "exception", "error", detail=_describe(exc)))


# -- the run -------------------------------------------------------------------------------


@contextlib.contextmanager
def _sigint_held() -> Iterator[list[int]]:
    """Hold Ctrl-C while rows are written, so no line is cut in half.

    Yields the list of signals received meanwhile; the caller treats a non-empty list as an
    interrupt once the write is complete.
    """
    received: list[int] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    try:
        previous = signal.signal(signal.SIGINT, hold)
    except ValueError:  # not the main thread: nothing to hold
        yield received
        return
    try:
        yield received
    finally:
        signal.signal(signal.SIGINT, previous)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _artifact_meta(a: Artifact) -> dict[str, Any]:
    return {
        "sha256": a.sha256,
        "kind": a.kind,
        "target": a.target,
        "ptr_width": a.ptr_width,
        "features": list(a.features),
        "toolchain": a.toolchain,
        "path": str(a.path),
    }


def _corpus_sha256(matrix: Matrix) -> str | None:
    """The sha256 of the corpus the corpus check read: its ``corpus`` option, else the default."""
    from reference.corpus import corpus_info, load_corpus  # only when a corpus check ran

    option = matrix.options("corpus").get("corpus")
    # resolved as harness.checks.corpus does: relative to the matrix file
    path = None if option is None else matrix.path.parent / str(option)
    try:
        return str(corpus_info(load_corpus(path))["sha256"])
    except Exception as exc:  # the corpus check itself reports why; keep the run's metadata
        return f"unavailable ({_describe(exc)})"


def _start_meta(plan: RunPlan) -> dict[str, Any]:
    """run.json as written when the run starts."""
    used = sorted({c.artifact for c in plan.cells})
    return {
        "schema_version": SCHEMA_VERSION,
        "status": "running",
        "interrupted": False,
        "git": git_state(plan.repo_root),
        "machine": fingerprint(),
        "hosts": {},
        "artifacts": {name: _artifact_meta(plan.artifacts[name]) for name in used},
        "matrix": {
            "path": str(plan.matrix.path),
            "name": plan.matrix.name,
            "sha256": plan.matrix.sha256,
            "content": dict(plan.matrix.content),
        },
        "shard": {"index": plan.shard[0], "count": plan.shard[1]},
        "checks": list(plan.checks),
        "cells": [c.id for c in plan.cells],
        "cells_done": 0,
        "started_at": _now(),
        "ended_at": None,
        "defaults_sha256": DEFAULTS.sha256(),
        "corpus_sha256": None,
        "verdicts": count_verdicts(()),
        "exit_code": None,
    }


def run_plan(
    plan: RunPlan,
    factories: Mapping[str, HostFactory],
    console: Console | None = None,
) -> int:
    """Run ``plan`` with hosts from ``factories`` into ``plan.out``; return the exit code."""
    begin_run({kind for cell in plan.cells for kind in cell.checks})
    pool = _HostPool(factories, plan.matrix)
    cell_runner = _CellRunner(plan, pool)
    writer = RowWriter(plan.out)
    meta = _start_meta(plan)
    write_run_json(plan.out, meta)
    verdict_rows: list[Row] = []
    progress = CellProgress(len(plan.cells), console or Console(stderr=True))
    interrupted = False
    try:
        for i, cell in enumerate(plan.cells):
            pool.release_others(cell.host)  # its cells are over: free its browser or workers
            progress.start(cell.id)
            try:
                rows = cell_runner.run(cell)
            except _Interrupted as stop:
                rows, interrupted = stop.rows, True
            with _sigint_held() as held:
                writer.write(rows)
                writer.commit()
            interrupted = interrupted or bool(held)
            verdict_rows.append(rows[-1])
            progress.done(cell.id, rows[-1].status)
            meta.update(
                cells_done=i + 1, hosts=pool.versions(), verdicts=count_verdicts(verdict_rows)
            )
            for name, by_host in pool.loaded_sha256.items():
                meta["artifacts"][name]["loaded_sha256"] = dict(by_host)
            write_run_json(plan.out, meta)
            if interrupted:
                break
            if plan.fail_fast and rows[-1].status in FAILING:
                meta["stopped_early"] = [c.id for c in plan.cells[i + 1 :]]
                break
    except KeyboardInterrupt:  # between cells: nothing half-recorded
        interrupted = True
    finally:
        progress.close()
        with _sigint_held() as held:
            pool.close()
            writer.close()
        interrupted = interrupted or bool(held)
    if any("corpus" in c.checks for c in plan.cells[: meta["cells_done"]]):
        meta["corpus_sha256"] = _corpus_sha256(plan.matrix)
    code = EXIT_INTERRUPTED if interrupted else exit_code(meta["verdicts"])
    meta.update(
        status="interrupted" if interrupted else "complete",
        interrupted=interrupted,
        hosts=pool.versions(),
        ended_at=_now(),
        exit_code=code,
    )
    write_run_json(plan.out, meta)
    out = Console()
    if not out.is_terminal:
        out = Console(width=LOG_WIDTH)
    summary = [(r.cell, r.status, r.detail, r.value) for r in verdict_rows]
    print_summary(summary, meta["verdicts"], interrupted, out)
    return code


# -- command line --------------------------------------------------------------------------


def configure(parser: argparse.ArgumentParser) -> None:
    """Add ``run``'s options to ``parser``."""
    parser.add_argument("--matrix", type=Path, required=True, help="matrix TOML file")
    parser.add_argument("--out", type=Path, required=True, help="run directory to create")
    parser.add_argument("--shard", default="1/1", help="run shard K of N (1-based), e.g. 2/4")
    parser.add_argument(
        "--artifacts", type=Path, default=DEFAULT_MANIFEST, help="artifact manifest.json"
    )
    parser.add_argument("--checks", help="comma-separated check kinds, replacing the matrix's")
    parser.add_argument(
        "--fail-fast", action="store_true", help="stop after the first failing cell"
    )


def plan_from_args(args: argparse.Namespace, host_names: Sequence[str]) -> RunPlan:
    """Validate the command line, manifest and matrix into a plan; raises UsageError."""
    try:
        artifacts = load_manifest(args.artifacts)
    except FileNotFoundError:
        raise UsageError(
            f"no artifact manifest at {args.artifacts}: run `tinygpt-harness build` first"
        ) from None
    except (OSError, ValueError, KeyError) as exc:
        raise UsageError(f"{args.artifacts}: bad manifest: {_describe(exc)}") from None
    try:
        matrix = load_matrix(
            args.matrix, Names(hosts=tuple(host_names), artifacts=tuple(artifacts))
        )
        shard_k, shard_n = parse_shard(args.shard)
    except (MatrixError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    only: tuple[str, ...] | None = None
    if args.checks:
        only = tuple(c.strip() for c in args.checks.split(",") if c.strip())
        unknown = [c for c in only if c not in REGISTRY]
        if unknown or not only:
            named = ", ".join(map(repr, unknown))
            raise UsageError(f"--checks: unknown check {named}; known: {', '.join(REGISTRY)}")
    out: Path = args.out
    if (out / RESULTS_FILE).exists() or (out / RUN_FILE).exists():
        raise UsageError(f"{out} already holds a run; give --out a new directory")
    cells = shard(expand_cells(matrix, only), shard_k, shard_n)
    return RunPlan(
        matrix=matrix,
        cells=tuple(cells),
        artifacts=artifacts,
        out=out,
        shard=(shard_k, shard_n),
        checks=only if only is not None else matrix.checks,
        fail_fast=args.fail_fast,
    )


class UsageError(Exception):
    """Bad command line, manifest or matrix: exit code 2."""


def execute(args: argparse.Namespace) -> int:
    """Run the matrix; exit 0 (all pass/incompatible/skipped), 1 (fail/error), 2, or 130."""
    from harness.hosts.registry import HOST_NAMES, all_hosts

    return run_command(args, HOST_NAMES, lambda m: all_hosts(Timeouts(call_s=m.timeout_s)))


def run_command(
    args: argparse.Namespace,
    host_names: Sequence[str],
    factories_for: Callable[[Matrix], Mapping[str, HostFactory]],
) -> int:
    """``run`` over hosts ``host_names``, built by ``factories_for(matrix)``; 2 on a usage error."""
    try:
        plan = plan_from_args(args, host_names)
    except UsageError as exc:
        print(f"tinygpt-harness run: {exc}", file=sys.stderr)
        return 2
    return run_plan(plan, factories_for(plan.matrix))
