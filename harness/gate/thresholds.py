"""The ``[thresholds]`` table of a matrix file: how big a change must be before it counts.

Schema (every key optional; see docs/gate.md)::

    [thresholds]
    alpha = 0.01        # significance level of the two-sided Mann-Whitney U test
    min_effect = 0.03   # default minimum relative change of the median (0.03 = 3 %)
    confidence = 0.95   # confidence level of the bootstrap CI of the ratio
    quantile = 0.5      # the location compared: 0.5 = ratio of medians (see docs/gate.md)

    [thresholds.check]          # min_effect per check kind
    bench = 0.03

    [thresholds.measurement]    # min_effect per measurement: a glob over the measurement key
    "op:matmul_forward" = 0.02  # "subject" or "subject@x_name=x_value"
    "generate:*" = 0.08

    exclude = ["generate:*"]    # subjects/measurement keys (globs) that CAND may lack

The most specific rule wins: an exact measurement key, then the longest matching glob, then the
check kind, then the default.
"""

from __future__ import annotations

import fnmatch
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.gate.errors import GateInputError
from harness.gate.stats import Decision

_TOP_KEYS = {"alpha", "min_effect", "confidence", "quantile", "check", "measurement", "exclude"}


@dataclass(frozen=True)
class Thresholds:
    """Parsed thresholds: defaults plus per-check and per-measurement minimum effects."""

    alpha: float = 0.01
    min_effect: float = 0.03
    confidence: float = 0.95
    quantile: float = 0.5
    per_check: Mapping[str, float] = field(default_factory=dict)
    per_measurement: Mapping[str, float] = field(default_factory=dict)
    # Globs over a subject or measurement key that CAND may lack without failing the gate.
    exclude: tuple[str, ...] = ()

    def excludes(self, subject: str, measurement: str) -> bool:
        """True when an exclusion glob matches the subject or the measurement key."""
        return any(
            fnmatch.fnmatchcase(subject, g) or fnmatch.fnmatchcase(measurement, g)
            for g in self.exclude
        )

    def decision_for(self, check: str, measurement: str) -> Decision:
        """Return the Decision (alpha, min effect) that applies to one measurement."""
        effect = self.per_measurement.get(measurement)
        if effect is None:
            globs = [g for g in self.per_measurement if fnmatch.fnmatchcase(measurement, g)]
            if globs:
                effect = self.per_measurement[max(globs, key=len)]
        if effect is None:
            effect = self.per_check.get(check, self.min_effect)
        return Decision(
            alpha=self.alpha,
            min_effect=effect,
            confidence=self.confidence,
            quantile=self.quantile,
        )


def thresholds_from_table(table: Mapping[str, Any], source: Path | str) -> Thresholds:
    """Validate a ``[thresholds]`` table; errors name ``source`` and the offending key."""
    unknown = set(table) - _TOP_KEYS
    if unknown:
        key = sorted(unknown)[0]
        raise GateInputError(source, f"thresholds.{key}", f"unknown key (allowed: {_TOP_KEYS})")
    alpha = _fraction(table, "alpha", 0.01, source, upper=1.0)
    effect = _fraction(table, "min_effect", 0.03, source, upper=10.0)
    confidence = _fraction(table, "confidence", 0.95, source, upper=1.0)
    quantile = _fraction(table, "quantile", 0.5, source, upper=1.0)
    return Thresholds(
        alpha=alpha,
        min_effect=effect,
        confidence=confidence,
        quantile=quantile,
        per_check=_effects(table, "check", source),
        per_measurement=_effects(table, "measurement", source),
        exclude=_globs(table, "exclude", source),
    )


def _globs(table: Mapping[str, Any], key: str, source: Path | str) -> tuple[str, ...]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise GateInputError(
            source, f"thresholds.{key}", f"expected a list of globs, got {value!r}"
        )
    return tuple(value)


def thresholds_from_matrix_text(text: str, source: Path | str) -> Thresholds:
    """Read ``[thresholds]`` from a matrix file's TOML text (defaults when the table is absent)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise GateInputError(source, "matrix.content", f"not valid TOML ({exc})") from exc
    table = data.get("thresholds", {})
    if not isinstance(table, dict):
        raise GateInputError(source, "thresholds", "must be a table")
    return thresholds_from_table(table, source)


def _fraction(
    table: Mapping[str, Any],
    key: str,
    default: float,
    source: Path | str,
    upper: float,
    prefix: str = "thresholds",
) -> float:
    value = table.get(key, default)
    label = f"{prefix}.{key}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise GateInputError(source, label, f"expected a number, got {value!r}")
    zero_ok = prefix != "thresholds" or key == "min_effect"
    if not 0 <= float(value) < upper or (value == 0 and not zero_ok):
        raise GateInputError(source, label, f"out of range: {value}")
    return float(value)


def _effects(table: Mapping[str, Any], key: str, source: Path | str) -> dict[str, float]:
    sub = table.get(key, {})
    if not isinstance(sub, dict):
        raise GateInputError(source, f"thresholds.{key}", "must be a table of name = min_effect")
    return {
        str(k): _fraction(sub, str(k), 0.0, source, upper=10.0, prefix=f"thresholds.{key}")
        for k in sub
    }
