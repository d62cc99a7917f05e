"""A run's bindings checked against its modules at load, before any host starts.

A binding that names an export the module lacks, or gives one the wrong number or kinds of
arguments, is a config error of the run (exit 2, with the binding's ``file:line``): it would
fail every cell of the artifact on every host alike. The module's exports come from its format
(:meth:`~harness.formats.ArtifactFormat.exports_found`): a ``.wasm``'s export and type sections
parsed by wasmtime, a native ``.so``'s ELF dynamic symbols (names only).

Only a binding mismatch is a config error. An artifact whose files are missing, are not the
manifest's (edited, rebuilt) or do not parse is skipped here: its cells report that as ``error``
with the cause, and the rest of the run goes on, as before this check existed.
"""

from __future__ import annotations

from collections.abc import Iterable

from harness.artifact import Artifact
from harness.hosts.base import HostError, verify_artifact


def check_artifact(artifact: Artifact) -> None:
    """Raise BindingError (``file:line: ...``) unless every export ``artifact``'s binding calls
    is in its module with the bound types; return quietly if its files cannot be read as the
    manifest's (those are the cells' errors)."""
    try:
        verify_artifact(artifact)  # not the manifest's files: a per-cell error, never exit 2
        found = artifact.fmt.exports_found(artifact.paths())
    except (HostError, OSError):
        return
    if found is None:  # the format cannot list its exports without loading
        return
    module = f"artifact {artifact.name} ({artifact.paths()[artifact.fmt.exports_role]})"
    artifact.bound().check_exports(found, artifact.ptr_width, module)


def check_artifacts(artifacts: Iterable[Artifact]) -> None:
    """:func:`check_artifact` for each of ``artifacts``; the first mismatch raises."""
    for artifact in artifacts:
        check_artifact(artifact)
