"""The noise-aware verdict on one measurement: ratio of medians, its CI, and a decision.

A verdict needs two things at once, as asv and Pinpoint do: evidence that the samples differ
(a two-sided Mann-Whitney U test, which assumes nothing about the shape of timing noise) and a
change large enough to matter (the ratio of medians beyond ``1 + min_effect``). ``same`` is a
claim too, so it needs evidence: the bootstrap CI of the ratio must fit inside the band
``[1/(1+min_effect), 1+min_effect]``. Anything else is ``unknown``: more samples are needed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from scipy import stats

Verdict = Literal["faster", "slower", "same", "unknown"]
MIN_SAMPLES = 3  # below this neither the U test nor the bootstrap means anything


@dataclass(frozen=True)
class Decision:
    """How to decide: significance level, minimum relative effect, CI confidence and resamples."""

    alpha: float = 0.01
    min_effect: float = 0.03
    confidence: float = 0.95
    quantile: float = 0.5  # the location compared: 0.5 = medians; 0.1 resists interference
    resamples: int = 2000
    seed: int = 20240601  # the bootstrap is seeded so a comparison is reproducible

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")
        if not 0 <= self.min_effect < 10:
            raise ValueError(f"min_effect must be in [0, 10), got {self.min_effect}")
        if not 0 < self.quantile < 1:
            raise ValueError(f"quantile must be in (0, 1), got {self.quantile}")


@dataclass(frozen=True)
class Comparison:
    """The comparison of one measurement's samples: CAND / BASE (> 1 means CAND is slower)."""

    n_base: int
    n_cand: int
    ratio: float  # quantile(cand) / quantile(base); the ratio of medians by default
    ci_low: float
    ci_high: float
    p_value: float
    verdict: Verdict
    min_effect: float
    method: str = "unpaired"  # "paired": BASE and CAND timed side by side (gate/paired_stats.py)
    note: str = ""  # why the verdict is what it is when the figures alone don't say (a budget)


def compare_samples(
    base: Sequence[float], cand: Sequence[float], decision: Decision = Decision()
) -> Comparison:
    """Compare two sets of timing samples (lower is better) and return the verdict."""
    a = np.asarray([x for x in base if math.isfinite(x)], dtype=np.float64)
    b = np.asarray([x for x in cand if math.isfinite(x)], dtype=np.float64)
    q = decision.quantile
    if len(a) < MIN_SAMPLES or len(b) < MIN_SAMPLES:
        ratio = float(np.quantile(b, q) / np.quantile(a, q)) if len(a) and len(b) else math.nan
        return Comparison(
            len(a), len(b), ratio, math.nan, math.nan, math.nan, "unknown", decision.min_effect
        )
    ratio = float(np.quantile(b, q) / np.quantile(a, q))
    p_value = float(stats.mannwhitneyu(a, b, alternative="two-sided").pvalue)
    low, high = _bootstrap_ci(a, b, decision)
    return decided(len(a), len(b), ratio, (low, high), p_value, decision)


def decided(
    n_base: int,
    n_cand: int,
    ratio: float,
    ci: tuple[float, float],
    p_value: float,
    decision: Decision,
    method: str = "unpaired",
) -> Comparison:
    """A :class:`Comparison` whose verdict :func:`decide` gives from these figures."""
    low, high = ci
    verdict = decide(ratio, low, high, p_value, decision)
    return Comparison(n_base, n_cand, ratio, low, high, p_value, verdict, decision.min_effect,
                      method)  # fmt: skip


def _bootstrap_ci(
    a: NDArray[np.float64], b: NDArray[np.float64], decision: Decision
) -> tuple[float, float]:
    if np.all(a == a[0]) and np.all(b == b[0]):
        only = float(b[0] / a[0])  # no spread to resample: the CI is the point
        return only, only
    q = decision.quantile

    def ratio(base: NDArray[np.float64], cand: NDArray[np.float64], axis: int) -> object:
        return np.quantile(cand, q, axis=axis) / np.quantile(base, q, axis=axis)

    res = stats.bootstrap(
        (a, b),
        ratio,
        n_resamples=decision.resamples,
        confidence_level=decision.confidence,
        method="percentile",  # BCa's jackknife is degenerate for medians of tied samples
        vectorized=True,
        rng=np.random.default_rng(decision.seed),
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def decide(ratio: float, low: float, high: float, p_value: float, decision: Decision) -> Verdict:
    """Turn a ratio, its CI and a p-value into faster/slower/same/unknown (see module doc)."""
    upper = 1.0 + decision.min_effect
    lower = 1.0 / upper
    if lower <= low and high <= upper:
        return "same"
    if p_value < decision.alpha and ratio > upper:
        return "slower"
    if p_value < decision.alpha and ratio < lower:
        return "faster"
    return "unknown"
