"""``tinygpt-harness run``: run a matrix's cells into a run directory.

The pipeline: load the manifest and the matrix -> expand the cells and check each artifact's
binding against its module (a mismatch is exit 2 at ``file:line``) -> shard them -> for each cell,
probe its host once, load the artifact once per (host, artifact), run the cell's checks -> write
the cell's rows (and its verdict row) and commit them as the cell ends -> ``run.json``.

Every failure of a host or check becomes a row, never a crash of the run: a host that is not
installed makes its cells ``error`` (``skipped`` when the matrix marks it ``optional``), a host
that refuses a binary makes them ``incompatible`` (with the engine's own words), anything else
that goes wrong is an ``error`` with ``Type: message``. Ctrl-C keeps every finished cell, marks
``run.json`` interrupted and exits 130; ``run --resume DIR`` finishes the run. A run directory
the harness cannot write (disk full, not a directory) is exit 2 with one line, and ``run.json``
says ``failed``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from rich.console import Console

from harness.artifact import Artifact, ManifestError, load_manifest
from harness.bindings import BindingError
from harness.bindings.model_layout import UnsupportedConfig
from harness.bindings.verify import check_artifacts, width_problem
from harness.build import BUNDLED_MANIFEST
from harness.checks import begin_run, get_check
from harness.checks.base import CellContext
from harness.checks.corpus import ProjectCorpus
from harness.checks.webgpu_step import adapter_table
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
    HOSTLESS,
    Cell,
    Matrix,
    MatrixError,
    Names,
    check_thread_counts,
    expand_cells,
    load_matrix,
    parse_shard,
    shard,
)
from harness.profile import Profile, ProfileError, find_profile, load_profile, with_artifacts
from harness.project.reference import config_json, reference_dumps
from harness.run_progress import LOG_WIDTH, CellProgress, print_summary
from harness.rundir.meta import RUN_FILE, SCHEMA_VERSION, git_state, write_run_json
from harness.rundir.oracles import REFERENCES, changed_oracles, recorded_oracles, references_meta
from harness.rundir.reader import read_run
from harness.rundir.rows import RESULTS_FILE, Row, Status
from harness.rundir.verdict import (
    FAILING,
    INCOMPLETE,
    NO_ROWS,
    count_verdicts,
    decide,
    exit_code,
)
from harness.rundir.writer import RowWriter, describe_os_error
from reference.defaults import DEFAULTS
from reference.dump import ReferenceDump
from reference.presets import PRESETS, ModelConfig

if TYPE_CHECKING:  # imported when a run has a project band (it imports the kernel client)
    from harness.convergence_band import BandSet

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
    # --resume: the finished cells' rows (kept) and the interrupted run's run.json
    kept_rows: tuple[Row, ...] = ()
    resumed_meta: Mapping[str, Any] | None = None
    # the presets cells may name: ours (reference.presets), plus a --project profile's own
    presets: Mapping[str, ModelConfig] = field(default_factory=lambda: dict(PRESETS))
    # the model check's oracle per preset when the --project profile names a [reference]
    references: Mapping[str, ReferenceDump] = field(default_factory=dict)
    # the corpus check's convergence bands (one per preset and trainer) when the --project
    # profile has a band file (else the bundled band)
    convergence: BandSet | None = None
    # the corpus the --project profile's runs train on, and its contract, for the corpus
    # check's identity rows (harness.checks.corpus.ProjectCorpus)
    project_corpus: ProjectCorpus | None = None
    # the profile a host `none` cell's text-only checks read (--project, else ./harness.toml,
    # else the bundled default profile: what `check defaults|corpus|claims` reads)
    profile: Profile | None = None
    # artifact -> what its native exports' arities were checked from (bindings/verify.py)
    arity: Mapping[str, str] = field(default_factory=dict)
    # the --project profile's root: run.json records its checkout beside the harness's
    project_root: Path | None = None

    def used_artifacts(self) -> list[str]:
        """The artifacts the plan's cells load, sorted (host `none` loads none)."""
        return sorted({c.artifact for c in self.cells if not c.hostless})


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
        # artifact -> host -> the WebGPU adapter it ran on (vendor, architecture, fallback, ...)
        self.adapters: dict[str, dict[str, dict[str, Any]]] = {}

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
            # required unless the matrix says `optional = true`: a CI missing a host is red
            if self._matrix.host(name).optional:
                return _Probe("", ("skipped", str(exc)))
            return _Probe("", ("error", f"{exc} (a required host; `optional = true` skips it)"))
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
        adapter = instance.load_info.get("webgpu")
        if isinstance(adapter, dict):
            self.adapters.setdefault(artifact.name, {})[name] = dict(adapter)
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

    @contextlib.contextmanager
    def other_instance(
        self, name: str, artifacts: Mapping[str, Artifact], wanted: str
    ) -> Iterator[Instance]:
        """Artifact ``wanted`` of ``artifacts`` loaded in host ``name`` beside its current
        instance (both alive at once), closed on exit; HostError when the run has no such
        artifact."""
        artifact = artifacts.get(wanted)
        if artifact is None:
            raise HostError(
                f"no artifact {wanted!r} in the run's manifest (it has {', '.join(artifacts)})"
            )
        instance = self.host(name).load(artifact)
        try:
            yield instance
        finally:
            with contextlib.suppress(Exception):  # a dead instance may fail to close; it is gone
                instance.close()

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


class CellInterrupted(Exception):  # a control-flow signal, not an error
    """Ctrl-C inside a cell; carries the rows the cell recorded before the signal."""

    def __init__(self, rows: list[Row], where: str) -> None:
        super().__init__("interrupted")
        self.rows = rows
        self.where = where


class _Interrupts:
    """SIGINT while the run works: remembered, and raised as KeyboardInterrupt unless held.

    In a terminal, Ctrl-C reaches the whole process group: a host child that shares it (e.g.
    Playwright's driver) may die of it and the run may first see that as ``HostCrashed``. So the
    handler notes how many rows the running cell had when the signal came (``cut``): rows after
    it are consequences of the interrupt, not results, and are dropped; and any failure seen
    once ``received`` is set is the interrupt, not a crash.
    """

    # SIGTERM (a CI runner's cancel, `kill`, a container stop) ends a run the same way as Ctrl-C:
    # without a handler Python dies at once and run.json would say "running" for ever.
    SIGNALS: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.received = False
        self.signum: int | None = None  # the first signal received
        self.held = False
        self.rows: list[Row] | None = None  # the running cell's rows
        self.cut: int | None = None

    def handle(self, signum: int, frame: FrameType | None) -> None:
        """The SIGINT/SIGTERM handler."""
        if not self.received and self.rows is not None:
            self.cut = len(self.rows)
        if self.signum is None:
            self.signum = signum
        self.received = True
        if not self.held:
            raise KeyboardInterrupt

    def what(self) -> str:
        """The signal received, as a user would name it: Ctrl-C for SIGINT, else its name."""
        if self.signum is None or self.signum == signal.SIGINT:
            return "Ctrl-C"
        return signal.Signals(self.signum).name

    def exit_code(self) -> int:
        """128 + the signal's number, the shell's convention: 130 for Ctrl-C, 143 for SIGTERM."""
        return 128 + (self.signum if self.signum is not None else int(signal.SIGINT))

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """Handle SIGINT and SIGTERM with :meth:`handle` inside the block (main thread only)."""
        previous: dict[signal.Signals, Any] = {}
        try:
            for sig in self.SIGNALS:
                previous[sig] = signal.signal(sig, self.handle)
        except ValueError:  # not the main thread: nothing to install
            yield
            return
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Defer Ctrl-C while rows and run.json are written, so nothing is cut in half."""
        held, self.held = self.held, True
        try:
            yield
        finally:
            self.held = held


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class _CellRunner:
    """Runs one cell's checks and returns its rows, ending with the cell's verdict row."""

    def __init__(self, plan: RunPlan, pool: _HostPool, interrupts: _Interrupts) -> None:
        self.plan = plan
        self.pool = pool
        self.interrupts = interrupts
        self.current = ""  # what the cell is doing, to say where a Ctrl-C landed

    def row(
        self, cell: Cell, version: str, check: str, subject: str, status: Status, **kw: Any
    ) -> Row:
        sha256 = "" if cell.hostless else self.plan.artifacts[cell.artifact].sha256
        return Row(
            host=cell.host,
            host_version=version,
            artifact=cell.artifact,
            artifact_sha256=sha256,
            preset=cell.preset,
            check=check,
            subject=subject,
            status=status,
            **kw,
        )

    def run(self, cell: Cell) -> list[Row]:
        """Run ``cell``: its rows, ending with its verdict row (``CellInterrupted`` on Ctrl-C)."""
        started = time.perf_counter()
        rows: list[Row] = []
        self.current = "host start"
        self.interrupts.rows, self.interrupts.cut = rows, None
        try:
            self.run_cell(cell, rows)
            if self.interrupts.received:  # a failure caused by the signal, caught as a row
                raise KeyboardInterrupt
        except KeyboardInterrupt:
            cut = self.interrupts.cut if self.interrupts.cut is not None else len(rows)
            # No verdict row: the cell did not finish, reads as incomplete, and --resume
            # re-runs it. Rows recorded after the signal are its consequences, not results.
            raise CellInterrupted(
                rows[:cut], f"interrupted ({self.interrupts.what()}) during {self.current}"
            ) from None
        finally:
            self.interrupts.rows = None
        verdict, cause = decide(rows)
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
        if cell.hostless:
            self.run_text_checks(cell, rows)
            return
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
                if self.interrupts.received:  # the host died of the Ctrl-C: not a crash
                    raise KeyboardInterrupt from exc
                if isinstance(exc, HostTimeout | HostCrashed):
                    self.pool.restart(cell.host)
                rows.append(self.row(cell, version, "cell", "load", "error", detail=_describe(exc)))
                return
            self.run_check(cell, kind, version, artifact, instance, rows)

    def run_text_checks(self, cell: Cell, rows: list[Row]) -> None:
        """Host ``none``: the profile's text-only checks, through ``check defaults|corpus|claims``'s
        own code, one row per outcome (its subject, status and ``file:line`` detail)."""
        from harness.project.command import check_profile

        profile = self.plan.profile
        assert profile is not None  # plan_from_args loads it for a plan with a hostless cell
        for kind in cell.checks:
            self.current = f"check {kind}"
            try:
                outcomes = check_profile(kind, profile)
            except KeyboardInterrupt:
                raise
            except ProfileError as exc:  # found only as the check reads (e.g. a surface
                # stating none of its keys): the cell's error, with the profile's file:line
                rows.append(self.row(cell, "", kind, "profile", "error", detail=str(exc)))
                continue
            except Exception as exc:
                rows.append(self.row(cell, "", kind, "exception", "error", detail=_describe(exc)))
                continue
            rows.extend(
                self.row(cell, "", kind, o.subject, o.status, detail=o.detail) for o in outcomes
            )

    def reload(self, host: str, artifact: Artifact) -> Instance:
        """Restart ``host`` and load ``artifact`` anew: a check's fresh instance after one of its
        calls crashed, hung or trapped the old one (``CellContext.reload``)."""
        if self.interrupts.received:  # the host died of the Ctrl-C: stop, do not reload
            raise KeyboardInterrupt
        self.pool.restart(host)
        return self.pool.instance(host, artifact)

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
            preset=self.plan.presets[cell.preset],
            instance=instance,
            options=self.plan.matrix.options(kind),
            matrix_path=self.plan.matrix.path,
            repo_root=self.plan.repo_root,
            reference=self.plan.references.get(cell.preset),
            convergence=self.plan.convergence,
            project_corpus=self.plan.project_corpus,
            cold_instance=(
                functools.partial(self.pool.cold_instance, cell.host, artifact)
                if self.pool.has_cold(cell.host)
                else None
            ),
            open_artifact=functools.partial(
                self.pool.other_instance, cell.host, self.plan.artifacts
            ),
            reload=functools.partial(self.reload, cell.host, artifact),
        )
        try:
            before = len(out)
            for row in get_check(kind)(ctx):
                if not isinstance(row, Row):  # would break the CSV writer for the whole run
                    raise TypeError(f"check {kind} yielded {type(row).__name__}, not a Row")
                out.append(row)
            if len(out) == before:  # a check that checked nothing must not pass for one that did
                out.append(ctx.row(kind, "rows", "error", detail=NO_ROWS))
        except KeyboardInterrupt:
            raise
        except (IncompatibleArtifact, UnsupportedConfig) as exc:
            # a preset the library's model cannot express, in its words
            out.append(ctx.row(kind, "preset", "incompatible", detail=str(exc)))
        except Exception as exc:
            if self.interrupts.received:  # the host died of the Ctrl-C: not a crash
                raise KeyboardInterrupt from exc
            if isinstance(exc, HostTimeout | HostCrashed):
                self.pool.restart(cell.host)  # the next check or cell gets a fresh host
            out.append(ctx.row(kind, "exception", "error", detail=_describe(exc)))


# -- the run -------------------------------------------------------------------------------


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _project_state(root: Path | None) -> dict[str, Any]:
    """run.json's ``project``: the --project profile's root and that checkout's git state,
    beside the harness's own ``git`` (a project's binaries and claims are its commit's, not
    ours); {} without one."""
    if root is None:
        return {}
    return {"project": {"root": str(root), "git": git_state(root)}}


def _artifact_meta(a: Artifact, root: Path, arity: str = "") -> dict[str, Any]:
    return {
        **({"arity": arity} if arity else {}),
        # inside the checkout whose commit run.json records: built from that commit's sources
        # (the bundled library); a project's own binary is not, whatever the harness's commit
        "in_checkout": a.path.resolve().is_relative_to(root.resolve()),
        "sha256": a.sha256,
        "format": a.format,
        "target": a.target,
        "ptr_width": a.ptr_width,
        "features": list(a.features),
        "toolchain": a.toolchain,
        "path": str(a.path),
    }


def _corpus_sha256(matrix: Matrix, project: ProjectCorpus | None) -> str | None:
    """The sha256 of the corpus the corpus check read: its ``corpus`` option, else the
    ``--project`` profile's corpus, else the default."""
    from reference.corpus import corpus_info, load_corpus  # only when a corpus check ran

    option = matrix.options("corpus").get("corpus")
    if option is None and project is not None:
        return str(corpus_info(project.text)["sha256"])
    # resolved as harness.checks.corpus does: relative to the matrix file
    path = None if option is None else matrix.path.parent / str(option)
    try:
        return str(corpus_info(load_corpus(path))["sha256"])
    except Exception as exc:  # the corpus check itself reports why; keep the run's metadata
        return f"unavailable ({_describe(exc)})"


def _start_meta(plan: RunPlan) -> dict[str, Any]:
    """run.json as written when the run starts (or resumes: the first start is kept)."""
    if plan.resumed_meta is not None:
        meta = dict(plan.resumed_meta)
        kept = [r for r in plan.kept_rows if r.is_verdict]
        meta.update(
            status="running",
            interrupted=False,
            ended_at=None,
            exit_code=None,
            cells_done=len(kept),
            verdicts=count_verdicts(kept),
            resumed_at=[*meta.get("resumed_at", []), _now()],
        )
        meta.pop("problem", None)
        meta.pop("stopped_early", None)  # this resume runs them (a --fail-fast resume re-lists)
        return meta
    used = plan.used_artifacts()
    meta = {
        "schema_version": SCHEMA_VERSION,
        "status": "running",
        "interrupted": False,
        "git": git_state(plan.repo_root),
        **_project_state(plan.project_root),
        "machine": fingerprint(),
        "hosts": {},
        "artifacts": {
            name: _artifact_meta(plan.artifacts[name], plan.repo_root, plan.arity.get(name, ""))
            for name in used
        },
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
    meta.update(oracle_meta(plan))
    return meta


def oracle_meta(plan: RunPlan) -> dict[str, Any]:
    """What the cells were judged against: each preset's model config, and the model check's
    oracle dumps when a profile names them (absent: our reference, live). run.json keeps it, and
    ``--resume`` refuses to finish a run under another."""
    presets = sorted({c.preset for c in plan.cells if not c.hostless})
    meta: dict[str, Any] = {
        "presets": {n: json.loads(config_json(plan.presets[n])) for n in presets}
    }
    if plan.profile is not None:  # what host `none` read: resume must read the same profile
        meta["profile"] = {"path": str(plan.profile.path), "name": plan.profile.name}
    if plan.references:
        meta[REFERENCES] = references_meta(plan.references)
    if plan.convergence is not None:
        meta["convergence"] = {
            "band": str(plan.convergence.path),
            "bands": {
                pb.key: {"recorded": pb.band.date, "trainer": dict(pb.trainer)}
                for pb in plan.convergence.bands
            },
        }
    return meta


class RunDirWriteError(Exception):
    """The run directory cannot be written (disk full, read-only, not a directory): exit 2."""


EXIT_ENVIRONMENT = 2  # the same code as bad usage: nothing about the kernels was decided


def run_plan(
    plan: RunPlan,
    factories: Mapping[str, HostFactory],
    console: Console | None = None,
) -> int:
    """Run ``plan`` with hosts from ``factories`` into ``plan.out``; return the exit code.

    0/1 by the cells' verdicts, 130 on Ctrl-C, 2 when the run directory cannot be written
    (one line on stderr; run.json says ``failed`` if it can still be written).
    """
    try:
        session = open_session(plan, factories)
    except OSError as exc:
        print(f"tinygpt-harness run: cannot write the run directory: {describe_os_error(exc)}",
              file=sys.stderr)  # fmt: skip
        return EXIT_ENVIRONMENT
    try:
        with session.interrupts.installed():
            return _run_cells(session, console)
    except OSError as exc:
        print(f"tinygpt-harness run: cannot write the run directory: {describe_os_error(exc)}",
              file=sys.stderr)  # fmt: skip
        _end_meta(plan.out, session.meta, "failed", EXIT_ENVIRONMENT,
                  problem=describe_os_error(exc))  # fmt: skip
        return EXIT_ENVIRONMENT
    except BaseException as exc:  # a bug: say so in run.json, then let the traceback show it
        _end_meta(plan.out, session.meta, "failed", None, problem=_describe(exc))
        raise
    finally:
        session.writer.close()


def _end_meta(out: Path, meta: dict[str, Any], status: str, code: int | None, problem: str) -> None:
    """Best effort: run.json must not stay "running" after the run stopped."""
    meta.update(status=status, ended_at=_now(), exit_code=code, problem=problem)
    with contextlib.suppress(OSError):  # the disk may still be full; stderr said why
        write_run_json(out, meta)


class RunSession:
    """A run in progress: its hosts, its rows and its run.json; cells are run one at a time.

    ``run`` drives it over the plan's cells (:func:`run_plan`); the pytest plugin
    (``harness/pytest_plugin.py``) drives it one cell per test item. Either way a cell's rows are
    written whole as it ends, with run.json updated, exactly as below.
    """

    def __init__(
        self,
        plan: RunPlan,
        factories: Mapping[str, HostFactory],
        meta: dict[str, Any],
        writer: RowWriter,
        interrupts: _Interrupts,
    ) -> None:
        self.plan = plan
        self.meta = meta
        self.writer = writer
        self.interrupts = interrupts
        self.pool = _HostPool(factories, plan.matrix)
        self._cells = _CellRunner(plan, self.pool, interrupts)
        self.verdict_rows: list[Row] = [r for r in plan.kept_rows if r.is_verdict]

    def run_cell(self, cell: Cell) -> list[Row]:
        """Run ``cell`` and record its rows; on Ctrl-C record what it measured and re-raise
        ``CellInterrupted`` (the cell then has no verdict row)."""
        self.pool.release_others(cell.host)  # its cells are over: free its browser or workers
        try:
            rows = self._cells.run(cell)
        except CellInterrupted as stop:
            with self.interrupts.hold():
                self.writer.write(stop.rows)  # what it measured before; no verdict row
            raise
        with self.interrupts.hold():
            self.writer.write(rows)
            self.verdict_rows.append(rows[-1])
            if cell.id not in self.meta["cells"]:  # a cell the plan did not list (pytest)
                self.meta["cells"].append(cell.id)
            self.meta.update(
                cells_done=len(self.verdict_rows),
                hosts={**self.meta["hosts"], **self.pool.versions()},
                verdicts=count_verdicts(self.verdict_rows),
            )
            for name, by_host in self.pool.loaded_sha256.items():
                self.meta["artifacts"][name]["loaded_sha256"] = dict(by_host)
            for name, adapters in self.pool.adapters.items():
                self.meta["artifacts"][name]["webgpu_adapter"] = dict(adapters)
            for r in adapter_table(rows):  # the webgpu step's cross-adapter table, per cell
                tables = self.meta["artifacts"][r.artifact].setdefault("webgpu_adapter_table", {})
                tables.setdefault(f"{r.host}/{r.preset}", []).append(
                    {"subject": r.subject, "status": r.status, "max_ulp": r.value,
                     "detail": r.detail}
                )  # fmt: skip
            write_run_json(self.plan.out, self.meta)
        return rows

    def close_hosts(self) -> None:
        """Close every host (Ctrl-C held: a half-closed browser is no state to leave)."""
        with self.interrupts.hold():
            self.pool.close()

    def finish(self, interrupted: bool) -> int:
        """Write the final run.json; return the run's exit code. The driver closes the hosts
        (:meth:`close_hosts`) once, in its own ``finally``, so they close on an error too."""
        meta = self.meta
        with self.interrupts.hold():
            ran = {r.cell for r in self.verdict_rows}
            if any("corpus" in c.checks for c in self.plan.cells
                   if c.id in ran and not c.hostless):  # fmt: skip
                meta["corpus_sha256"] = _corpus_sha256(self.plan.matrix, self.plan.project_corpus)
            signum = self.interrupts.signum
            code = self.interrupts.exit_code() if interrupted else exit_code(meta["verdicts"])
            meta.update(
                status="interrupted" if interrupted else "complete",
                interrupted=interrupted,
                signal=signal.Signals(signum).name if signum else None,
                hosts={**meta["hosts"], **self.pool.versions()},
                ended_at=_now(),
                exit_code=code,
            )
            write_run_json(self.plan.out, meta)
        return code


def open_session(plan: RunPlan, factories: Mapping[str, HostFactory]) -> RunSession:
    """Start a run of ``plan`` without running a cell: run.json and results.csv are created.

    Raises OSError when the run directory cannot be written. Installs no signal handler: the
    caller (``run``, or pytest) owns Ctrl-C.
    """
    begin_run({kind for cell in plan.cells if not cell.hostless for kind in cell.checks})
    meta = _start_meta(plan)
    writer = RowWriter(plan.out)
    try:
        write_run_json(plan.out, meta)
    except OSError:
        writer.close()
        raise
    return RunSession(plan, factories, meta, writer, _Interrupts())


STOPPED_SHOWN = 5  # cell ids a --fail-fast run names as not run; the rest are counted


def _run_cells(session: RunSession, console: Console | None) -> int:
    plan, interrupts = session.plan, session.interrupts
    done = {r.cell for r in plan.kept_rows if r.is_verdict}
    todo = [c for c in plan.cells if c.id not in done]
    summary: list[tuple[str, str, str, float]] = [
        (r.cell, r.status, r.detail, r.value) for r in session.verdict_rows
    ]
    progress = CellProgress(len(todo), console or Console(stderr=True))
    interrupted = False
    try:
        for i, cell in enumerate(todo):
            progress.start(cell.id)
            try:
                rows = session.run_cell(cell)
            except CellInterrupted as stop:
                summary.append((cell.id, INCOMPLETE, stop.where, float("nan")))
                interrupted = True
                break
            summary.append((cell.id, rows[-1].status, rows[-1].detail, rows[-1].value))
            progress.done(cell.id, rows[-1].status)
            if interrupts.received:  # Ctrl-C while the cell's rows were written
                interrupted = True
                break
            if plan.fail_fast and rows[-1].status in FAILING:
                session.meta["stopped_early"] = [c.id for c in todo[i + 1 :]]
                break
    except KeyboardInterrupt:  # between cells: nothing half-recorded
        interrupted = True
    finally:
        progress.close()
        session.close_hosts()  # before run.json's last write, and also when a cell raised
    code = session.finish(interrupted or interrupts.received)
    out = Console()
    if not out.is_terminal:
        out = Console(width=LOG_WIDTH)
    stopped = interrupted or interrupts.received
    print_summary(summary, session.meta["verdicts"], stopped, out, total=len(plan.cells))
    again = f"--matrix {plan.matrix.path}" + (
        f" --project {plan.project_root}" if plan.project_root is not None else ""
    )
    resume = f"`tinygpt-harness run {again} --resume {plan.out}`"
    if stopped:  # the rows so far are kept: say how to finish
        print(f"tinygpt-harness run: interrupted; the finished cells are kept in {plan.out}: "
              f"{resume} runs the rest", file=sys.stderr)  # fmt: skip
    elif session.meta.get("stopped_early"):  # "0 skipped" alone hides the cells never run
        left = session.meta["stopped_early"]
        shown = ", ".join(left[:STOPPED_SHOWN]) + (
            f" and {len(left) - STOPPED_SHOWN} more" if len(left) > STOPPED_SHOWN else ""
        )
        print(f"tinygpt-harness run: --fail-fast stopped after a failing cell; {len(left)} "
              f"cell(s) not run ({shown}): {resume} runs them", file=sys.stderr)  # fmt: skip
    return code


# -- command line --------------------------------------------------------------------------


def configure(parser: argparse.ArgumentParser) -> None:
    """Add ``run``'s options to ``parser``."""
    parser.add_argument("--matrix", type=Path, required=True, help="matrix TOML file")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", type=Path, help="run directory to create")
    where.add_argument(
        "--resume",
        type=Path,
        metavar="DIR",
        help="finish the run in DIR: run the cells an interrupted run did not finish, or the "
        "stopped_early cells of a --fail-fast run; every cell with a verdict (failed or not) "
        "is kept as it is, never re-run: that needs a new run with --out (same build, matrix, "
        "--shard and --checks)",
    )
    parser.add_argument("--shard", default="1/1", help="run shard K of N (1-based), e.g. 2/4")
    parser.add_argument(
        "--artifacts", type=Path, default=BUNDLED_MANIFEST, help="artifact manifest.json"
    )
    parser.add_argument("--checks", help="comma-separated check kinds, replacing the matrix's")
    parser.add_argument(
        "--fail-fast", action="store_true", help="stop after the first failing cell"
    )
    parser.add_argument(
        "--project",
        type=Path,
        metavar="PATH",
        help="a project directory (holding harness.toml) or profile file whose [presets.NAME] "
        "the matrix may name beside ours, and whose [reference] is the model check's oracle "
        "(docs/profiles.md)",
    )
    parser.add_argument(
        "--junit",
        type=Path,
        metavar="FILE",
        help="also write JUnit XML here: one testcase per cell x check (docs/ecosystem.md)",
    )


def plan_from_args(args: argparse.Namespace, host_names: Sequence[str]) -> RunPlan:
    """Validate the command line, manifest and matrix into a plan; raises UsageError."""
    presets: dict[str, ModelConfig] = dict(PRESETS)
    project: Profile | None = None
    own_where: dict[str, str] = {}  # the profile's [artifacts.NAME] tables' ``file:line``
    no_manifest = ""  # said beside an unknown artifact when the manifest was not found
    if getattr(args, "project", None) is not None:
        try:
            project = load_profile(find_profile(args.project))
        except ProfileError as exc:
            raise ProjectUsageError(str(exc)) from None
    try:
        artifacts = load_manifest(args.artifacts)
    except FileNotFoundError:
        if project is None or not project.artifacts:
            raise UsageError(
                f"no artifact manifest at {args.artifacts}: run `tinygpt-harness build` first "
                "(the bundled library), or give your own with --artifacts PATH or a profile's "
                "[artifacts] (docs/formats.md, docs/profiles.md)"
            ) from None
        artifacts = {}  # a project's own binaries need no manifest of ours
        no_manifest = (
            f" (no artifact manifest at {args.artifacts}, so only the profile's artifacts are "
            "known: `tinygpt-harness build` builds the bundled library, or give --artifacts PATH)"
        )
    except ManifestError as exc:  # it names the manifest (and a binding's file:line) itself
        raise UsageError(str(exc)) from None
    except (OSError, ValueError, KeyError) as exc:
        raise UsageError(f"{args.artifacts}: bad manifest: {_describe(exc)}") from None
    if project is not None:
        try:
            artifacts = with_artifacts(project, artifacts, args.artifacts)
        except ProfileError as exc:
            raise ProjectUsageError(str(exc)) from None
        own_where = {n: f"{spec.where}: artifacts.{n}" for n, spec in project.artifacts.items()}
        clash = sorted(set(project.presets) & set(PRESETS))
        if clash:
            raise ProjectUsageError(
                f"{project.path}: preset name(s) {', '.join(clash)} are the harness's own; "
                "give the project's presets their own names"
            )
        presets.update(project.presets)
    try:
        matrix = load_matrix(
            args.matrix,
            Names(hosts=tuple(host_names), artifacts=tuple(artifacts), presets=tuple(presets)),
        )
        shard_k, shard_n = parse_shard(args.shard)
    except (MatrixError, ValueError) as exc:
        unknown_artifact = "unknown artifact" in str(exc)
        raise UsageError(str(exc) + (no_manifest if unknown_artifact else "")) from None
    only: tuple[str, ...] | None = None
    if args.checks:
        only = tuple(c.strip() for c in args.checks.split(",") if c.strip())
        unknown = [c for c in only if c not in matrix.names.checks]
        if unknown or not only:
            named = ", ".join(map(repr, unknown))
            raise UsageError(
                f"--checks: unknown check {named}; known: {', '.join(matrix.names.checks)}"
            )
    try:
        every_cell = expand_cells(matrix, only)
    except MatrixError as exc:  # --checks gave host `none` a check that needs a host
        raise UsageError(str(exc)) from None
    loaded = sorted({c.artifact for c in every_cell if not c.hostless})
    versus = matrix.options("bench").get("versus")
    if isinstance(versus, str) and versus and "bench" in (only or matrix.checks):
        # the artifact the WebGPU step is timed beside (harness.checks.webgpu_curve): loaded by
        # the bench cells, so it must exist, and its binding is checked with the others
        if versus not in artifacts:
            raise UsageError(
                f"{args.matrix}: [check.bench] versus = {versus!r}: no such artifact in the "
                f"manifest (it has {', '.join(sorted(artifacts))})"
            )
        loaded = sorted({*loaded, versus})
    for name in loaded:  # before the exports: a wrong width makes a correct binding mismatch
        problem = width_problem(artifacts[name])
        if problem:
            where = own_where.get(name, f"{args.artifacts}: artifact {name!r}")
            raise UsageError(f"{where}: {problem}")
    try:  # every shard checks every artifact of the run: one verdict on the config, not N
        arity = check_artifacts(artifacts[name] for name in loaded)
    except BindingError as exc:
        raise UsageError(str(exc)) from None
    for name, status in sorted(arity.items()):
        if status.startswith("arity unchecked"):  # never silent: one line, and run.json's
            print(f"tinygpt-harness run: {name}: {status}", file=sys.stderr)
    try:  # a pthread pool fixed at build time caps the bench's thread axis
        limits = {name: artifacts[name].thread_capacity() for name in loaded}
        check_thread_counts(matrix, every_cell, limits)
    except MatrixError as exc:
        raise UsageError(str(exc)) from None
    cells = tuple(shard(every_cell, shard_k, shard_n))
    plan = RunPlan(
        matrix=matrix,
        cells=cells,
        artifacts=artifacts,
        out=args.resume if args.resume is not None else args.out,
        shard=(shard_k, shard_n),
        checks=only if only is not None else matrix.checks,
        fail_fast=args.fail_fast,
        presets=presets,
        profile=text_profile(matrix, every_cell, project, getattr(args, "project", None)),
        arity=arity,
        project_root=project.root if project is not None else None,
    )
    plan = with_project_corpus(with_band(plan, project), project)
    if args.resume is not None:
        # everything resume can check without the oracle first: a refused resume must not
        # have run the reference command, and a differing dump must not replace the run's
        raw = resumable_meta(plan)
        kept = {name: o.sha256 for name, o in recorded_oracles(raw).items()}
        return resume_plan(with_references(plan, project, kept), raw)
    out: Path = args.out
    if (out / RESULTS_FILE).exists() or (out / RUN_FILE).exists():
        raise UsageError(f"{out} already holds a run; give --out a new directory")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is not a directory")
    return with_references(plan, project)


def text_profile(
    matrix: Matrix, cells: Sequence[Cell], project: Profile | None, given: Path | None
) -> Profile | None:
    """The profile a host ``none`` cell checks (None when the matrix has no such cell): the
    ``--project`` one, else ``check``'s own choice (./harness.toml, else the bundled default
    profile). UsageError (exit 2) for a bad profile, or one without the section of a check
    the cell runs (at the matrix's ``hosts.none`` line and the profile's)."""
    hostless = [c for c in cells if c.hostless]
    if not hostless:
        return None
    try:
        profile = project if project is not None else load_profile(find_profile(given))
    except ProfileError as exc:
        raise ProjectUsageError(str(exc)) from None
    sections = {"defaults": profile.defaults, "corpus": profile.corpus, "claims": profile.claims}
    missing = [k for k in hostless[0].checks if sections.get(k) is None]
    if missing:
        line = matrix.lines.line_of(("hosts", HOSTLESS))
        raise UsageError(
            f"{matrix.path}:{line}: host 'none' runs check {', '.join(missing)}, but the "
            f"profile {profile.path} has no [{'], ['.join(missing)}] section; exclude the check "
            "for host none or give --project a profile with it"
        )
    return profile


def with_band(plan: RunPlan, project: Profile | None) -> RunPlan:
    """``plan`` with the ``--project`` profile's convergence bands (one per preset and
    trainer), when a corpus cell judges convergence and the profile has a band file
    (harness/convergence_band.py); UsageError (exit 2, the profile's file:line) for a named
    file that is missing or malformed, a required preset without a band, or a band recorded
    for another preset config, corpus or hyperparameters."""
    options = plan.matrix.options("corpus")
    judged = options.get("convergence", True) and any(
        "corpus" in c.checks for c in plan.cells if not c.hostless
    )
    if project is None or not judged:
        return plan
    from harness.convergence_band import bands_for_run

    preset = options.get("preset")
    try:
        band = bands_for_run(project, str(preset) if preset is not None else None)
    except ProfileError as exc:
        raise ProjectUsageError(str(exc)) from None
    return dataclasses.replace(plan, convergence=band)


def with_project_corpus(plan: RunPlan, project: Profile | None) -> RunPlan:
    """``plan`` with the ``--project`` profile's corpus for the host cells' corpus check: the
    text its runs train on and the profile's contract (harness.checks.corpus). A profile
    without ``[corpus]`` states no contract: its cells keep the matrix's corpus rows. UsageError
    (exit 2) when that text cannot be read."""
    if project is None or project.corpus is None:
        return plan
    if not any("corpus" in c.checks for c in plan.cells if not c.hostless):
        return plan
    from harness.convergence_band import corpus_for_band  # imports the kernel client

    try:
        text, source = corpus_for_band(project)
    except ProfileError as exc:  # it names the profile's file:line
        raise ProjectUsageError(str(exc)) from None
    return dataclasses.replace(
        plan, project_corpus=ProjectCorpus(text, source, project.corpus.contract)
    )


# What each [check.model] option a dump fixes counts, said beside the dump's number.
DUMP_FIXES = {"batch": "sequences per batch", "steps": "trajectory steps",
              "generate": "generated tokens"}  # fmt: skip


def with_references(
    plan: RunPlan, project: Profile | None, kept: Mapping[str, str] | None = None
) -> RunPlan:
    """``plan`` with the oracle dump of each preset a model cell runs, when ``project`` names a
    ``[reference]`` (its command runs now, before any host); UsageError on a bad one.
    ``kept``: a --resume's recorded dump sha256s (harness.project.reference.reference_dumps)."""
    if project is None or project.reference is None:
        return plan
    needed = sorted({c.preset for c in plan.cells if "model" in c.checks})
    try:
        refs = reference_dumps(project, [plan.presets[n] for n in needed], plan.out, kept)
    except ProfileError as exc:
        raise ProjectUsageError(str(exc)) from None
    # the dump fixes the batch, the steps and the generation: options asking for others would
    # be silently ignored, so they are a usage error
    options = plan.matrix.options("model")
    for name, dump in sorted(refs.items()):
        fixed = {"batch": dump.x.shape[0], "steps": dump.traj_loss.shape[0],
                 "generate": dump.greedy.shape[0]}  # fmt: skip
        for key, value in fixed.items():
            if key in options and options[key] != value:
                line = plan.matrix.lines.line_of(("check", "model", key))
                raise UsageError(
                    f"{plan.matrix.path}:{line}: [check.model] {key} = {options[key]}, but the "
                    f"reference dump of preset {name} ({dump.source}) holds {value} "
                    f"{DUMP_FIXES[key]}: with a dump, the dump decides it (drop the option, or "
                    f"set it to {value})"
                )
    return dataclasses.replace(plan, references=refs)


def resumable_meta(plan: RunPlan) -> dict[str, Any]:
    """The run.json of the run in ``plan.out`` once it is one ``plan`` can finish: the same
    matrix (sha256), the same artifact builds (sha256 per artifact used), the same cells
    (--shard/--checks), with cells left to run (interrupted, or a --fail-fast run's
    ``stopped_early``). UsageError otherwise; nothing is written."""
    out = plan.out
    found = read_run(out)  # lenient: a killed run may end in a cut line
    if not found.meta:
        raise UsageError(f"--resume {out}: no readable {RUN_FILE} (is it a run directory?)")
    raw: dict[str, Any] = json.loads((out / RUN_FILE).read_text(encoding="utf-8"))
    if raw.get("schema_version") != SCHEMA_VERSION:
        raise UsageError(f"--resume {out}: schema_version {raw.get('schema_version')!r}, "
                         f"this harness writes {SCHEMA_VERSION}")  # fmt: skip
    if raw.get("status") == "complete" and not raw.get("stopped_early"):
        raise UsageError(f"--resume {out}: the run is already complete: every cell has a "
                         "verdict, and --resume never re-runs one (failed or not); a new run "
                         "with --out is needed")  # fmt: skip
    recorded = raw.get("matrix", {}).get("sha256")
    if recorded != plan.matrix.sha256:
        raise UsageError(f"--resume {out}: another matrix: the run used sha256 {recorded}, "
                         f"{plan.matrix.path} is {plan.matrix.sha256}")  # fmt: skip
    shas = {k: v.get("sha256") for k, v in raw.get("artifacts", {}).items() if isinstance(v, dict)}
    for name in plan.used_artifacts():
        now = plan.artifacts[name].sha256
        if shas.get(name) != now:
            raise UsageError(f"--resume {out}: another build of {name}: the run used sha256 "
                             f"{shas.get(name)}, the manifest has {now}")  # fmt: skip
    if list(raw.get("cells", [])) != [c.id for c in plan.cells]:
        raise UsageError(f"--resume {out}: other cells than the run planned "
                         "(give the same --shard and --checks)")  # fmt: skip
    return raw


def resume_plan(plan: RunPlan, raw: Mapping[str, Any] | None = None) -> RunPlan:
    """``plan`` continuing the run in ``plan.out``; UsageError unless it is the same run
    (:func:`resumable_meta`, whose run.json ``raw`` is, when given) under the same oracle.

    Cells with a verdict row are kept; the rows after the last verdict row (an unfinished
    cell's, and a line cut by a kill) are dropped, and results.csv is rewritten without them
    (temporary file, then rename) before any cell runs, so the resumed cell's rows are never
    mixed with its first attempt.
    """
    out = plan.out
    raw = resumable_meta(plan) if raw is None else raw
    oracle = oracle_meta(plan)
    changed = _changed_dumps(raw, oracle)
    if changed:
        raise UsageError(f"--resume {out}: another oracle: {changed}: restore it, or judge by "
                         "the new one in a new run with --out")  # fmt: skip
    for key in ("presets", REFERENCES, "convergence", "profile"):
        if raw.get(key) != oracle.get(key):
            raise UsageError(
                f"--resume {out}: another oracle: the run's {key} were {raw.get(key)}, now "
                f"{oracle.get(key)} (give the same --project)"
            )
    found = read_run(out)
    last = max((i for i, r in enumerate(found.rows) if r.is_verdict), default=-1)
    kept = found.rows[: last + 1]
    _rewrite_rows(out, kept)
    return dataclasses.replace(plan, kept_rows=kept, resumed_meta=dict(raw))


def _changed_dumps(was: Mapping[str, Any], now: Mapping[str, Any]) -> str:
    """The presets whose reference dump, at the same source, is another file than the run's
    (a ``dump`` file rewritten since: the project is the same, its file is not), from the two
    run.json tables ``was`` and ``now``; "" if none."""
    return "; ".join(
        f"the reference dump of preset {name!r} ({new.source}) changed since the run "
        f"(sha256 {new.sha256}, was {old.sha256})"
        for name, old, new in changed_oracles(recorded_oracles(was), recorded_oracles(now))
        if old.source == new.source
    )


def _rewrite_rows(out: Path, rows: Sequence[Row]) -> None:
    tmp = out / f".{RESULTS_FILE}.resume.tmp"
    tmp.unlink(missing_ok=True)
    writer = RowWriter(out, name=tmp.name)
    try:
        writer.write(rows)
    finally:
        writer.close()
    os.replace(tmp, out / RESULTS_FILE)


class UsageError(Exception):
    """Bad command line, manifest or matrix: exit code 2."""


class ProjectUsageError(UsageError):
    """A UsageError found in the project's profile (the message starts with its file:line), so
    a caller that names the option at fault (the pytest plugin) names the project's."""


def execute(args: argparse.Namespace) -> int:
    """Run the matrix; exit 0 (all pass/incompatible/skipped), 1 (fail/error), 2 (bad usage,
    or a run directory that cannot be written), or 130 (Ctrl-C)."""
    from harness.hosts.registry import HOST_NAMES, all_hosts

    return run_command(args, HOST_NAMES, lambda m: all_hosts(Timeouts(call_s=m.timeout_s)))


def run_command(
    args: argparse.Namespace,
    host_names: Sequence[str],
    factories_for: Callable[[Matrix], Mapping[str, HostFactory]],
) -> int:
    """``run`` over hosts ``host_names``, built by ``factories_for(matrix)``; 2 on a usage error."""
    interrupts = _Interrupts()  # planning runs a [reference] command: Ctrl-C/SIGTERM stop it
    try:
        with interrupts.installed():
            plan = plan_from_args(args, host_names)
    except KeyboardInterrupt:
        print(f"tinygpt-harness run: {_interrupted_before_cells(args, interrupts)}",
              file=sys.stderr)  # fmt: skip
        return interrupts.exit_code()
    except OSError as exc:  # --resume DIR unwritable
        print(f"tinygpt-harness run: cannot write the run directory: {describe_os_error(exc)}",
              file=sys.stderr)  # fmt: skip
        return EXIT_ENVIRONMENT
    except UsageError as exc:
        print(f"tinygpt-harness run: {exc}", file=sys.stderr)
        return 2
    code = run_plan(plan, factories_for(plan.matrix))
    if args.junit is not None and code != EXIT_ENVIRONMENT:
        return _write_junit(args.junit, plan, code)
    return code


def _interrupted_before_cells(args: argparse.Namespace, interrupts: _Interrupts) -> str:
    """What an interrupt while the run was planned (before run.json) leaves: the one line."""
    what = f"interrupted ({interrupts.what()}) before any cell ran"
    if args.resume is not None:  # its run.json was read, not written: it resumes as before
        project = getattr(args, "project", None)
        again = f"--matrix {args.matrix}" + (f" --project {project}" if project else "")
        return (f"{what}; the run in {args.resume} is as it was: `tinygpt-harness run {again} "
                f"--resume {args.resume}` finishes it")  # fmt: skip
    return (f"{what}; no run.json was written in {args.out}, so there is nothing to resume: "
            "run the same command again")  # fmt: skip


def _write_junit(path: Path, plan: RunPlan, code: int) -> int:
    """Write ``--junit``: the plan's cells x checks as the run directory records them."""
    from harness.junit import write_junit

    rows = read_run(plan.out).rows  # a resumed run's kept rows included
    try:
        write_junit(path, f"tinygpt-harness {plan.matrix.name}", plan.cells, rows)
    except OSError as exc:
        print(f"tinygpt-harness run: cannot write --junit: {describe_os_error(exc)}",
              file=sys.stderr)  # fmt: skip
        return EXIT_ENVIRONMENT
    return code
