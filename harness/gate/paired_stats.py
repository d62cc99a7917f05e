"""The verdict on a paired, interleaved measurement: BASE and CAND timed side by side.

A paired measurement (``harness.gate.paired``) takes its samples in *blocks*: each block places
fresh buffers in both builds and times them alternately, one sample of each in a random order.
Within a block the two samples of a pair see the same machine (the same neighbours, the same
clock), so their log ratio cancels the drift that separates two runs. What a block cannot cancel
is where its buffers landed: a memory-bound kernel's time depends on the physical pages behind
its buffers (``residual_forward`` natively: 10 % std from one placement to the next, docs/gate.md
"Calibration"), and that
is shared by every pair of a block. So the independent unit is the block, not the pair:

- each block gives one figure, the median log ratio of its pairs (robust to a preempted sample);
- the test is Wilcoxon's signed-rank test over the block figures (exact, two-sided): it asks
  whether CAND/BASE is centred away from 1 given how much it moves from placement to placement;
- the estimate is their Hodges-Lehmann location (the median of the Walsh averages) and the CI
  the matching distribution-free interval (Walsh averages at the signed-rank critical value),
  so the CI inverts the very test that gives p.

The decision rule is the gate's own (:func:`harness.gate.stats.decide`): ``slower`` needs p below
alpha *and* a ratio beyond ``1 + min_effect``; ``same`` needs the whole CI inside the band.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cache

import numpy as np
from scipy import stats

from harness.gate.stats import Comparison, Decision, decided

DEFAULT_DECISION = Decision()
MIN_BLOCKS = 6  # below this the exact two-sided signed-rank p cannot go under 0.03


@cache
def signed_rank_null(n: int) -> tuple[float, ...]:
    """P(W+ <= w) for w = 0 .. n(n+1)/2 under the null, by counting sign patterns exactly."""
    top = n * (n + 1) // 2
    counts = np.zeros(top + 1, dtype=np.float64)
    counts[0] = 1.0
    for rank in range(1, n + 1):  # each rank joins W+ or not: a subset-sum count
        counts[rank:] = counts[rank:] + counts[: top + 1 - rank].copy()
    return tuple(np.cumsum(counts) / 2.0**n)


def hodges_lehmann(x: Sequence[float], confidence: float) -> tuple[float, float, float]:
    """The Hodges-Lehmann estimate of ``x``'s centre and its exact signed-rank CI.

    The CI is ``[W_(k), W_(N-k+1)]`` over the N sorted Walsh averages, k the largest rank with
    ``P(W+ <= k-1) <= (1-confidence)/2``; too few values for any such k give an infinite CI.
    """
    a = np.asarray(x, dtype=np.float64)
    n = a.size
    i, j = np.triu_indices(n)
    walsh = np.sort((a[i] + a[j]) / 2.0)
    estimate = float(np.median(walsh))
    cdf = signed_rank_null(n)
    tail = (1.0 - confidence) / 2.0
    k = 0
    while k < len(cdf) and cdf[k] <= tail:  # cdf[k] = P(W+ <= k)
        k += 1
    if k == 0:
        return estimate, -math.inf, math.inf
    return estimate, float(walsh[k - 1]), float(walsh[walsh.size - k])


def block_log_ratios(
    base_blocks: Sequence[Sequence[float]], cand_blocks: Sequence[Sequence[float]]
) -> list[float]:
    """One figure per block: the median of ``log(cand/base)`` over its pairs."""
    out = []
    for b, c in zip(base_blocks, cand_blocks, strict=True):
        ratios = np.log(np.asarray(c, dtype=np.float64) / np.asarray(b, dtype=np.float64))
        out.append(float(np.median(ratios)))
    return out


def compare_paired(
    base_blocks: Sequence[Sequence[float]],
    cand_blocks: Sequence[Sequence[float]],
    decision: Decision = DEFAULT_DECISION,
) -> Comparison:
    """The verdict on paired blocks of samples (``ratio`` > 1 means CAND is slower)."""
    d = block_log_ratios(base_blocks, cand_blocks)
    pairs = sum(len(b) for b in base_blocks)
    if len(d) < MIN_BLOCKS or not all(math.isfinite(v) for v in d):
        return Comparison(pairs, pairs, math.nan, math.nan, math.nan, math.nan, "unknown",
                          decision.min_effect, method="paired")  # fmt: skip
    centre, low, high = hodges_lehmann(d, decision.confidence)
    if all(v == 0.0 for v in d):
        p_value = 1.0  # identical timings: no evidence of any change (scipy refuses all-zero)
    else:
        p_value = float(stats.wilcoxon(d, alternative="two-sided", method="exact").pvalue)
    ratio, ci = math.exp(centre), (math.exp(low), math.exp(high))
    return decided(pairs, pairs, ratio, ci, p_value, decision, method="paired")
