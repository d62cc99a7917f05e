"""What a check receives: the cell it runs in."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.artifact import Artifact
from harness.hosts.base import Instance
from harness.rundir.rows import Row, Status
from reference.dump import ReferenceDump
from reference.presets import ModelConfig

if TYPE_CHECKING:  # the band module imports this one
    from harness.checks.corpus import ProjectCorpus
    from harness.convergence_band import BandSet


@dataclass
class CellContext:
    """One host x artifact x preset cell, with a loaded instance and the matrix's options."""

    host: str
    host_version: str
    artifact: Artifact
    preset: ModelConfig
    instance: Instance
    options: Mapping[str, Any] = field(default_factory=dict)  # the check's table in the matrix
    matrix_path: Path | None = None  # to resolve surface files relative to the matrix
    repo_root: Path = Path(".")
    # Opens the cell's artifact in a fresh process of its host under default engine flags (the
    # cold figure); None when the host has none. The instance and its host close on exit.
    cold_instance: Callable[[], AbstractContextManager[Instance]] | None = None
    # Opens another artifact of the run's manifest (by name) in this cell's host, beside the
    # cell's own instance (the WebGPU step timed side by side with a WASM artifact's); it
    # closes on exit. None when the runner offers none (a check called outside a run).
    open_artifact: Callable[[str], AbstractContextManager[Instance]] | None = None
    # Restarts the cell's host and returns a fresh instance of the cell's artifact in it, for a
    # check that goes on after a call crashed, hung or trapped the instance (the ops check: each
    # op gets its verdict). None when the runner offers none (a check called outside a run):
    # such a crash then ends the check.
    reload: Callable[[], Instance] | None = None
    # The model check's oracle when the run's profile names a [reference]: the dump of this
    # cell's preset, loaded and validated at plan time. None: our numpy reference, live.
    reference: ReferenceDump | None = None
    # The corpus check's convergence band when the run's profile has one (recorded by
    # `record-convergence`, checked at plan time). None: the bundled band.
    convergence: BandSet | None = None
    # The corpus check's text and contract in ``run --project`` (harness.checks.corpus); None:
    # the matrix's corpus (or the default one) against the default corpus's identity.
    project_corpus: ProjectCorpus | None = None

    def row(self, check: str, subject: str, status: Status, **kw: Any) -> Row:
        """Build a Row stamped with this cell's host, artifact and preset."""
        return Row(
            host=self.host,
            host_version=self.host_version,
            artifact=self.artifact.name,
            artifact_sha256=self.artifact.sha256,
            preset=self.preset.name,
            check=check,
            subject=subject,
            status=status,
            **kw,
        )


CheckFn = Callable[[CellContext], Iterator[Row]]
