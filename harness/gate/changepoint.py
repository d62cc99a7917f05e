"""Change points in a history series: PELT (``ruptures``) on log values, sized as ratios.

Timings are multiplicative (a 5 % slowdown is 5 % at every size), so the search runs on
``log(value)`` with an L2 cost. The penalty is BIC-like, ``3 * sigma^2 * log(n)``, with ``sigma``
estimated robustly from successive differences (MAD), floored at 0.5 % so a perfectly quiet
series does not turn every wobble into a step. A step needs two commits on each side
(``min_size=2``), so a new level is confirmed by the commit after it, as asv's step detection
does, and steps smaller than ``min_effect`` are dropped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import ruptures as rpt

SIGMA_FLOOR = 0.005
MIN_SIZE = 2


@dataclass(frozen=True)
class Step:
    """A change point: the first commit at the new level and the size of the step."""

    index: int  # position in the series of the first point after the step
    commit: str
    before: float  # median of the segment before
    after: float  # median of the segment after
    ratio: float  # after / before

    @property
    def percent(self) -> float:
        """The step as a signed percentage."""
        return (self.ratio - 1.0) * 100.0


def noise_sigma(logs: np.ndarray) -> float:
    """Robust per-point noise of a log series: MAD of successive differences / sqrt(2)."""
    if len(logs) < 3:
        return SIGMA_FLOOR
    mad = float(np.median(np.abs(np.diff(logs) - np.median(np.diff(logs)))))
    return max(mad / 0.6745 / math.sqrt(2.0), SIGMA_FLOOR)


def detect_steps(
    values: Sequence[float], commits: Sequence[str], min_effect: float = 0.03
) -> list[Step]:
    """Return the steps of ``values`` (one per commit, in order) larger than ``min_effect``."""
    if len(values) != len(commits):
        raise ValueError(f"{len(values)} values but {len(commits)} commits")
    good = [(v, c) for v, c in zip(values, commits, strict=True) if v > 0 and math.isfinite(v)]
    if len(good) < 2 * MIN_SIZE:
        return []
    logs = np.log(np.array([v for v, _ in good]))
    sigma = noise_sigma(logs)
    penalty = 3.0 * sigma**2 * math.log(len(logs))
    algo = rpt.Pelt(model="l2", min_size=MIN_SIZE, jump=1).fit(logs.reshape(-1, 1))
    ends = algo.predict(pen=penalty)
    bounds = [0, *ends]
    steps = []
    for i in range(1, len(bounds) - 1):
        before = float(np.exp(np.median(logs[bounds[i - 1] : bounds[i]])))
        after = float(np.exp(np.median(logs[bounds[i] : bounds[i + 1]])))
        ratio = after / before
        if abs(math.log(ratio)) >= math.log1p(min_effect):
            steps.append(Step(bounds[i], good[bounds[i]][1], before, after, ratio))
    return steps
