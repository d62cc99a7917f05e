"""The gate's decision over two runs: measured changes, CAND failures, cell regressions."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.gate.measurements import MeasurementKey, timing_samples
from harness.gate.stats import Comparison, compare_samples
from harness.gate.thresholds import Thresholds
from harness.rundir.oracles import changed_oracles, model_oracles
from harness.rundir.rows import REFERENCE_HOST, Row
from harness.rundir.verdict import INCOMPLETE, cell_verdicts

# Checks whose failure in CAND fails the gate whatever BASE did: parity and the contracts.
BLOCKING_CHECKS = ("ops", "model", "defaults", "corpus")
# A cell that passed in BASE and did not finish in CAND cannot be claimed unchanged.
BROKEN = ("fail", "error", "incompatible", INCOMPLETE)
# The numpy reference is timed beside the kernels as a yardstick (speedup, roofline); it is not
# the project's code, so its changes are shown (a drift indicator) but never fail the gate.


@dataclass(frozen=True)
class Change:
    """The comparison of one measurement between BASE and CAND."""

    key: MeasurementKey
    base_ns: float  # the compared location (the median unless thresholds set a quantile)
    cand_ns: float
    comparison: Comparison

    @property
    def gated(self) -> bool:
        """False for the numpy reference's own timings."""
        return self.key.host != REFERENCE_HOST


@dataclass(frozen=True)
class GateResult:
    """Everything compare reports; :attr:`failed` is the exit-1 condition."""

    changes: tuple[Change, ...]
    blocking_failures: tuple[str, ...]  # parity/defaults/corpus fail in CAND
    cell_regressions: tuple[str, ...]  # passed in BASE, broken in CAND
    missing: tuple[str, ...]  # measured in BASE, absent from CAND and not excluded: fails
    overridden_refusals: tuple[str, ...] = ()
    excluded: tuple[str, ...] = ()  # missing from CAND but excluded (--exclude / thresholds)
    notes: tuple[str, ...] = ()  # how --paired reran each cell, and what it kept recorded
    # presets whose model check had another oracle in BASE than in CAND (:func:`oracle_changes`):
    # said, never gated; a model row that changed may then be the oracle's change, not the kernel's
    oracle_changes: tuple[str, ...] = ()

    @property
    def regressions(self) -> tuple[Change, ...]:
        """Changes confirmed slower beyond their threshold."""
        return tuple(c for c in self.changes if c.comparison.verdict == "slower" and c.gated)

    @property
    def unknown(self) -> tuple[Change, ...]:
        """Changes the samples cannot decide yet."""
        return tuple(c for c in self.changes if c.comparison.verdict == "unknown" and c.gated)

    @property
    def compared_nothing(self) -> bool:
        """True when no gated measurement was present in both runs: a pass would mean nothing."""
        return not any(c.gated for c in self.changes)

    @property
    def failed(self) -> bool:
        """True when the gate must exit 1 (shared by the default, --adaptive and --paired modes)."""
        return bool(
            self.regressions
            or self.blocking_failures
            or self.cell_regressions
            or self.missing
            or self.compared_nothing
        )


def compare_samples_by_key(
    base: Mapping[MeasurementKey, list[float]],
    cand: Mapping[MeasurementKey, list[float]],
    thresholds: Thresholds,
) -> tuple[tuple[Change, ...], tuple[str, ...]]:
    """Compare every measurement present in both; list those missing from CAND."""
    changes = []
    for key in sorted(set(base) & set(cand)):
        decision = thresholds.decision_for(key.check, key.name)
        comparison = compare_samples(base[key], cand[key], decision)
        q = decision.quantile
        changes.append(
            Change(
                key, float(np.quantile(base[key], q)), float(np.quantile(cand[key], q)), comparison
            )
        )
    gone = sorted(k for k in set(base) - set(cand) if k.host != REFERENCE_HOST)
    missing = tuple(
        f"{k.cell} {k.name}" for k in gone if not thresholds.excludes(k.subject, k.name)
    )
    return tuple(changes), missing


def excluded_missing(
    base: Mapping[MeasurementKey, list[float]],
    cand: Mapping[MeasurementKey, list[float]],
    thresholds: Thresholds,
) -> tuple[str, ...]:
    """Measurements of BASE missing from CAND that an exclusion pattern covers (listed only)."""
    gone = sorted(k for k in set(base) - set(cand) if k.host != REFERENCE_HOST)
    return tuple(f"{k.cell} {k.name}" for k in gone if thresholds.excludes(k.subject, k.name))


def blocking_failures(cand_rows: Iterable[Row]) -> tuple[str, ...]:
    """Every parity, defaults or corpus subject of CAND that failed or errored, once per cell,
    with its failing metrics and cause.

    A subject writes one row per metric (``adamw:params``: max_abs_err, max_rel_err, max_ulp),
    all with the same cause: counted per row, one failing subject read as three failures.
    """
    found: dict[tuple[str, str, str], tuple[dict[str, None], dict[str, None], dict[str, None]]]
    found = {}
    for r in cand_rows:
        if r.check in BLOCKING_CHECKS and r.status in ("fail", "error"):
            statuses, metrics, details = found.setdefault(
                (r.cell, r.check, r.subject), ({}, {}, {})
            )
            statuses[r.status] = None  # dicts as ordered sets: first seen first, each once
            metrics.update({r.metric: None} if r.metric else {})
            details.update({r.detail: None} if r.detail else {})
    return tuple(
        f"{cell} {check}:{subject} {'/'.join(statuses)}"
        + (f" {', '.join(metrics)}" if metrics else "")
        + (f" ({'; '.join(details)})" if details else "")
        for (cell, check, subject), (statuses, metrics, details) in found.items()
    )


def model_presets(rows: Iterable[Row]) -> set[str]:
    """The presets whose model check wrote rows (the kernels' cells, not the numpy reference)."""
    return {r.preset for r in rows if r.check == "model" and r.host != REFERENCE_HOST}


def oracle_changes(
    base_meta: Mapping[str, Any],
    base_rows: Iterable[Row],
    cand_meta: Mapping[str, Any],
    cand_rows: Iterable[Row],
) -> tuple[str, ...]:
    """One line per preset both runs model-checked whose oracle differs: another dump
    (sha256), or a dump in one run and the harness's numpy reference in the other.

    Such a preset's model verdicts changed with the oracle as well as with the kernel: a
    regression there may be the oracle's. Said beside the gate's lists; the exit code stays the
    gate's own (a real regression must not turn into a pass because the dump also changed).
    """
    base = model_oracles(base_meta, model_presets(base_rows))
    cand = model_oracles(cand_meta, model_presets(cand_rows))
    return tuple(
        f"{preset}: BASE's model oracle was {was.describe()}, CAND's {now.describe()}"
        for preset, was, now in changed_oracles(base, cand)
    )


def cell_regressions(base_rows: Iterable[Row], cand_rows: Iterable[Row]) -> tuple[str, ...]:
    """Cells whose verdict was pass in BASE and is fail/error/incompatible in CAND."""
    before, after = cell_verdicts(base_rows), cell_verdicts(cand_rows)
    out = []
    for cell in sorted(before):
        if before[cell][0] == "pass" and cell in after and after[cell][0] in BROKEN:
            status, detail = after[cell]
            out.append(f"{cell}: pass -> {status}" + (f" ({detail})" if detail else ""))
    return tuple(out)


def evaluate(
    base_rows: tuple[Row, ...],
    cand_rows: tuple[Row, ...],
    thresholds: Thresholds,
    extra_cand_samples: Mapping[MeasurementKey, list[float]] | None = None,
) -> GateResult:
    """Decide the gate; ``extra_cand_samples`` are adaptive reruns merged into CAND's samples."""
    cand_samples = timing_samples(cand_rows)
    for key, more in (extra_cand_samples or {}).items():
        cand_samples[key] = [*cand_samples.get(key, []), *more]
    base_samples = timing_samples(base_rows)
    changes, missing = compare_samples_by_key(base_samples, cand_samples, thresholds)
    return GateResult(
        excluded=excluded_missing(base_samples, cand_samples, thresholds),
        changes=changes,
        blocking_failures=blocking_failures(cand_rows),
        cell_regressions=cell_regressions(base_rows, cand_rows),
        missing=missing,
    )
