"""The band a claim is published with, recorded from N runs (``signoff --record``).

A hull of N runs would flake: with 3 iid runs a 4th falls outside their range half the time. So
each figure's band is a **prediction interval** for one more run, on the log scale (ratios of
medians are multiplicative), with the between-run standard deviation pooled over all figures of
one claim (a claim's curve shares its host and artifact, so its presets share the noise; pooling
over K figures gives ``K * (N - 1)`` degrees of freedom instead of ``N - 1``)::

    y_rk = log(value of figure k in run r)        r = 1..N, k = 1..K
    s^2  = sum_k sum_r (y_rk - mean_k)^2 / (K * (N - 1))
    half = t(0.5 + PREDICTION_LEVEL / 2, K * (N - 1)) * s * sqrt(1 + 1 / N)
    band = exp(mean_k -/+ half)  united with  [min CI low, max CI high] of the N runs

and the published value is the geometric mean ``exp(mean_k)``. Values and bands are rounded the
way the README prints them (:func:`published_text`), the band outward. docs/signoff.md,
"Recording bands", gives the family-wise reasoning behind ``PREDICTION_LEVEL``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from typing import Literal

import numpy as np
from scipy import stats

from harness.gate.claim_checks import Interval

MIN_RUNS = 3  # fewer runs cannot estimate a spread (and issue 12 asks for at least 3)
# Two-sided level of each figure's prediction interval: a new run's value falls outside with
# probability 1 - PREDICTION_LEVEL = 0.1 % per figure (family-wise reasoning: docs/signoff.md).
PREDICTION_LEVEL = 0.999


@dataclass(frozen=True)
class FigureBand:
    """One figure recorded from N runs: each run's (value, CI low, CI high) and the band."""

    key: str  # the claim's point ("" for a point claim)
    runs: tuple[Interval, ...]
    center: float  # geometric mean of the runs' values (unrounded)
    low: float  # the band before rounding: prediction interval united with the CI hull
    high: float


@dataclass(frozen=True)
class ClaimFit:
    """A claim's recorded figures and the pooled statistics their bands come from."""

    figures: tuple[FigureBand, ...]
    runs: int
    s_pooled: float  # between-run standard deviation of log values, pooled over the figures
    dof: int  # K * (N - 1)
    t: float  # the t quantile at 0.5 + level / 2
    half: float  # the prediction interval's half-width on the log scale


def fit_claim(
    by_key: Mapping[str, Sequence[Interval]], level: float = PREDICTION_LEVEL
) -> ClaimFit:
    """Bands for one claim from each figure's intervals in N runs (same N for every figure)."""
    counts = {len(v) for v in by_key.values()}
    if len(counts) != 1 or min(counts) < MIN_RUNS:
        raise ValueError(f"every figure needs the same number (>= {MIN_RUNS}) of runs: {counts}")
    n = counts.pop()
    logs = {k: np.log([iv[0] for iv in ivs]) for k, ivs in by_key.items()}
    dof = len(by_key) * (n - 1)
    ss = sum(float(((y - y.mean()) ** 2).sum()) for y in logs.values())
    s = math.sqrt(ss / dof)
    t = float(stats.t.ppf(0.5 + level / 2, dof))
    half = t * s * math.sqrt(1 + 1 / n)
    figures = []
    for key, ivs in by_key.items():
        mean = float(logs[key].mean())
        figures.append(
            FigureBand(
                key=key,
                runs=tuple(ivs),
                center=math.exp(mean),
                # The union with the runs' own CIs: the band always covers what was measured.
                low=min(math.exp(mean - half), *(iv[1] for iv in ivs)),
                high=max(math.exp(mean + half), *(iv[2] for iv in ivs)),
            )
        )
    return ClaimFit(tuple(figures), n, s, dof, t, half)


_MODES = {"nearest": ROUND_HALF_EVEN, "down": ROUND_FLOOR, "up": ROUND_CEILING}


def published_text(value: float, rounding: Literal["nearest", "down", "up"] = "nearest") -> str:
    """``value`` as the README prints it: 2 decimals (``1.94``), 2 significant digits below 0.1.

    ``down``/``up`` round a band's ends outward, so the printed band still contains the
    measured one.
    """
    if not value > 0 or not math.isfinite(value):
        raise ValueError(f"a published figure is a positive number, got {value!r}")
    decimals = max(2, 1 - math.floor(math.log10(value)))
    quantum = Decimal(1).scaleb(-decimals)
    return str(Decimal(repr(value)).quantize(quantum, rounding=_MODES[rounding]))
