"""The sampler every implementation shares: its RNG stream and its draw, as tinygpt.h states them.

``tg_model_generate`` and :func:`reference.generate.generate` must draw identical tokens for the
same seed, temperature and top-k, so the sampler is specified down to the bit, not left to each
side's library RNG:

- RNG: the 64-bit state is ``splitmix64(seed)`` (``seed`` a uint32; a zero state becomes
  ``0x9E3779B97F4A7C15``). Each draw steps xorshift64* (``x ^= x >> 12; x ^= x << 25;
  x ^= x >> 27``) and returns ``((x * 0x2545F4914F6CDD1D mod 2^64) >> 11) * 2^-53`` in [0, 1).
  One draw per generated token at temperature > 0, none when greedy.
- Greedy (temperature 0): argmax of the logits, lowest index on ties.
- top-k: ``0`` or ``>= V`` keeps every token; else the ``k`` tokens first in the order (logit
  descending, index ascending) are kept.
- Draw: in float64, ``z_i = logit_i / temperature``, ``w_i = exp(z_i - max_kept z)`` for kept
  tokens (0 for the others); the token is the lowest kept index whose running sum in index order
  exceeds ``u * sum(w)`` (the last kept index if rounding leaves none).

Why parity is well-defined although the logits are float32 on one side and float64 on the
other: :func:`reachable_tokens` says which tokens a perturbation of the logits by at most
``eps`` can turn the draw into. A check compares draws exactly where that set is one token, and
accepts any member of the set where it is not (docs/checks.md, "Generation and sampling
parity").
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_MIX1, _MIX2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB  # splitmix64's finaliser
_STAR = 0x2545F4914F6CDD1D  # xorshift64*'s output multiplier


class SamplerRNG:
    """xorshift64* seeded through splitmix64: the stream of tinygpt.h, in exact integers."""

    def __init__(self, seed: int) -> None:
        z = ((seed & 0xFFFFFFFF) + _GOLDEN) & _MASK
        z = ((z ^ (z >> 30)) * _MIX1) & _MASK
        z = ((z ^ (z >> 27)) * _MIX2) & _MASK
        z ^= z >> 31
        self.state = z or _GOLDEN

    def uniform(self) -> float:
        """The next draw in [0, 1): 53 bits of the xorshift64* output."""
        x = self.state
        x ^= x >> 12
        x ^= (x << 25) & _MASK
        x ^= x >> 27
        self.state = x
        return (((x * _STAR) & _MASK) >> 11) * 2.0**-53


def first_uniforms(seeds: NDArray[np.uint64]) -> NDArray[np.float64]:
    """``SamplerRNG(seed).uniform()`` for every uint32 seed at once (uint64 arithmetic wraps
    as the exact integers are masked), for searching seeds by their first draw."""
    u64 = np.uint64
    with np.errstate(over="ignore"):
        z = seeds + u64(_GOLDEN)
        z = (z ^ (z >> u64(30))) * u64(_MIX1)
        z = (z ^ (z >> u64(27))) * u64(_MIX2)
        x = z ^ (z >> u64(31))
        x = np.where(x == 0, u64(_GOLDEN), x)
        x ^= x >> u64(12)
        x ^= x << u64(25)
        x ^= x >> u64(27)
        out: NDArray[np.float64] = ((x * u64(_STAR)) >> u64(11)).astype(np.float64) * 2.0**-53
    return out


def kept(logits: NDArray[np.floating], top_k: int) -> NDArray[np.bool_]:
    """Mask of the tokens top-k keeps: the first ``top_k`` by (logit desc, index asc)."""
    V = logits.shape[-1]
    mask = np.zeros(V, dtype=bool)
    if top_k == 0 or top_k >= V:
        mask[:] = True
        return mask
    order = np.lexsort((np.arange(V), -logits.astype(np.float64)))  # primary key last
    mask[order[:top_k]] = True
    return mask


def cdf(logits: NDArray[np.floating], temperature: float, top_k: int) -> NDArray[np.float64]:
    """The unnormalised running sums of the draw (0-weight for tokens top-k drops), index order."""
    z = logits.astype(np.float64) / float(np.float32(temperature))  # (V,)
    keep = kept(logits, top_k)
    w = np.where(keep, np.exp(z - z[keep].max()), 0.0)  # (V,)
    return np.cumsum(w)  # sequential in index order, as the kernel sums


def pick(logits: NDArray[np.floating], temperature: float, top_k: int, u: float | None) -> int:
    """The token the sampler draws from ``logits`` with uniform ``u`` (None when greedy)."""
    if temperature == 0.0:
        return int(np.argmax(logits))
    if u is None:
        raise ValueError("pick: temperature > 0 needs a uniform draw u")
    c = cdf(logits, temperature, top_k)
    keep = kept(logits, top_k)
    i = int(np.searchsorted(c, u * c[-1], side="right"))
    if i >= len(c):  # rounding left no running sum above u * total
        return int(np.flatnonzero(keep)[-1])
    return i  # a dropped token adds 0 to the running sum, so it is never the first to exceed


def reachable_tokens(
    logits: NDArray[np.floating],
    temperature: float,
    top_k: int,
    u: float | None,
    eps: float,
    *,
    rivals: bool = True,
) -> set[int]:
    """Every token the draw can give when each logit may move by at most ``eps``.

    Greedy: the tokens within ``2 eps`` of the max. Sampling: a shift of every ``z_i`` by at most
    ``eps / temperature`` scales each weight by a factor in ``[exp(-d), exp(d)]``, ``d = eps/T``,
    so each normalised CDF boundary moves by at most ``exp(2 d) - 1``; the tokens whose interval
    widened by that much contains ``u`` are reachable. When top-k's boundary logit has rivals
    within ``2 eps``, those rivals are reachable too (the kept set itself can change), unless
    ``rivals`` is False: where the logits are exact and only the CDF's arithmetic may differ,
    the kept set is exact too (the tie rule), and a rival accepted there would accept any kept
    token for any ``u`` on tied logits.
    """
    x = logits.astype(np.float64)
    if temperature == 0.0:
        return {int(i) for i in np.flatnonzero(x >= x.max() - 2 * eps)}
    if u is None:
        raise ValueError("reachable_tokens: temperature > 0 needs a uniform draw u")
    delta = math.expm1(2 * eps / float(np.float32(temperature))) + 1e-12
    keep = kept(x, top_k)
    c = cdf(x, temperature, top_k)
    f = c / c[-1]
    lo = np.concatenate([[0.0], f[:-1]])
    out = {int(i) for i in np.flatnonzero(keep & (lo - delta <= u) & (u < f + delta))}
    if rivals and not keep.all():
        edge = x[keep].min()
        near = np.flatnonzero(np.abs(x - edge) <= 2 * eps)
        if len(near) > 1:
            out |= {int(i) for i in near}
    return out
