"""run.json's ``references``: which oracle judged each preset's model check.

One definition for its writer (the runner, :func:`references_meta`) and its readers: a
``--resume`` refusing another dump, ``compare`` naming an oracle change beside the gate, and
``report`` naming each preset's oracle. A preset the table does not list was judged by the
harness's own numpy reference, computed live.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reference.dump import ReferenceDump

REFERENCES = "references"  # run.json's key: {preset: {"source": ..., "sha256": ...}}
# What a model check was judged against when run.json records no reference dump for its preset.
HARNESS_ORACLE = "the harness's numpy reference"


@dataclass(frozen=True)
class ModelOracle:
    """What one preset's model check was judged against: a project's reference dump (its
    source, the file and its writer, and its sha256), or, when the run recorded none, the
    harness's own numpy reference (both fields empty)."""

    source: str = ""
    sha256: str = ""

    @property
    def is_dump(self) -> bool:
        """True for a project's reference dump."""
        return bool(self.source or self.sha256)

    def judges_as(self, other: ModelOracle) -> bool:
        """True when ``other`` is the same oracle: the same dump file content (a moved file
        judges as before), or the harness's reference in both."""
        return self.is_dump == other.is_dump and self.sha256 == other.sha256

    def describe(self) -> str:
        """``reference dump FILE (WRITER, sha256 PREFIX)``, or :data:`HARNESS_ORACLE`."""
        if not self.is_dump:
            return HARNESS_ORACLE
        sha = f"sha256 {self.sha256[:12]}" if self.sha256 else "sha256 not recorded"
        # the runner records "FILE (WRITER)": the digest joins the writer inside its brackets
        if self.source.endswith(")") and " (" in self.source:
            return f"reference dump {self.source[:-1]}, {sha})"
        return f"reference dump {self.source or '(file not recorded)'} ({sha})"


def references_meta(dumps: Mapping[str, ReferenceDump]) -> dict[str, dict[str, str]]:
    """run.json's ``references`` table of the run's oracle dumps, by preset."""
    return {name: {"source": d.source, "sha256": d.sha256} for name, d in sorted(dumps.items())}


def recorded_oracles(meta: Mapping[str, Any]) -> dict[str, ModelOracle]:
    """The dumps ``meta`` (a run.json) records, by preset; ``{}`` for a run without one (or a
    table that is not one)."""
    refs = meta.get(REFERENCES)
    if not isinstance(refs, Mapping):
        return {}
    return {
        str(preset): ModelOracle(str(entry.get("source") or ""), str(entry.get("sha256") or ""))
        for preset, entry in refs.items()
        if isinstance(entry, Mapping)
    }


def model_oracles(meta: Mapping[str, Any], presets: Iterable[str]) -> dict[str, ModelOracle]:
    """Each of ``presets`` (those a run's model check judged) with its oracle, from ``meta``
    (run.json); a preset it does not list had the harness's numpy reference."""
    recorded = recorded_oracles(meta)
    return {preset: recorded.get(preset, ModelOracle()) for preset in sorted(set(presets))}


def changed_oracles(
    was: Mapping[str, ModelOracle], now: Mapping[str, ModelOracle]
) -> list[tuple[str, ModelOracle, ModelOracle]]:
    """``(preset, was, now)`` for each preset in both whose oracle differs
    (:meth:`ModelOracle.judges_as`), in preset order."""
    return [(p, was[p], now[p]) for p in sorted(set(was) & set(now))
            if not was[p].judges_as(now[p])]  # fmt: skip
