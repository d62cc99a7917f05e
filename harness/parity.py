"""The one comparison helper: shape, then dtype, then finiteness, then values.

Like tinygrad's ``helper_test_op``, :func:`compare` stops at the first stage that fails and names
it, so a wrong shape is never reported as "max abs err = nan". A passing or failing comparison
alike carries the metrics a result row reports: max absolute error, max relative error, max ULP
distance, and the worst element (by the tolerance ratio) with both values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from harness.tolerance import HEADROOM, ElementwiseBound, Tolerance, ulp_distance

Stage = Literal["shape", "dtype", "nonfinite", "values", "bias", "pass"]


@dataclass(frozen=True)
class ParityResult:
    """The outcome of comparing one tensor ``name`` against its reference."""

    name: str  # e.g. "layernorm_backward.dinp" or "grad:qkvw"
    stage: Stage  # the first failing stage, or "pass"
    message: str  # one readable line: what, where, found, expected, tolerance
    tolerance: Tolerance
    max_abs_err: float = math.nan
    max_rel_err: float = math.nan
    max_ulp: float = math.nan
    worst_ratio: float = math.nan  # max |f-e| / (atol + rtol |e|); > 1 fails
    worst_index: tuple[int, ...] = ()
    found_at_worst: float = math.nan
    expected_at_worst: float = math.nan

    @property
    def ok(self) -> bool:
        """True when every stage passed."""
        return self.stage == "pass"


class ParityError(AssertionError):
    """Raised by :func:`assert_parity`; carries the failing :class:`ParityResult`."""

    def __init__(self, result: ParityResult) -> None:
        super().__init__(result.message)
        self.result = result


def _index(flat: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(i) for i in np.unravel_index(flat, shape)) if shape else ()


def _block_max(mag: NDArray[np.float64], blocks: tuple[int, ...]) -> NDArray[np.float64]:
    """``max |expected|`` of each element's block (``blocks``: see :func:`compare`), in
    ``mag``'s shape; ValueError when the blocks do not divide the array evenly."""
    n = math.prod(blocks)
    if n == 0 or mag.size % n:
        raise ValueError(f"max_blocks {blocks} do not divide an array of shape {mag.shape}")
    per = np.abs(mag).reshape(n, -1).max(axis=1, keepdims=True)
    return np.broadcast_to(per, (n, mag.size // n)).reshape(mag.shape)


def compare(
    name: str,
    found: ArrayLike,
    expected: ArrayLike,
    tolerance: Tolerance,
    *,
    dtype: str = "float32",
    relative_to_max: bool = False,
    max_blocks: tuple[int, ...] = (),
    bound: ElementwiseBound | None = None,
) -> ParityResult:
    """Compare kernel output ``found`` with reference ``expected`` and return the outcome.

    Stages: ``shape`` (shapes equal), ``dtype`` (``found`` has ``dtype``; integer outputs such
    as token ids compare exactly), ``nonfinite`` (the first NaN/Inf in ``found`` where the
    reference is finite), ``values`` (``|f - e| <= atol + rtol |e|`` everywhere). With
    ``relative_to_max`` the atol is multiplied by ``max |expected|`` (used for gradients):
    over the whole array, or with ``max_blocks`` (the leading shape of equal blocks of the
    flattened array, e.g. ``(L, 3)`` for a fused qkv weight's per-layer q, k and v) over each
    element's own block.
    With ``bound`` (element-wise ops), each element's ``|f - e|`` is judged against its own
    float32 bound instead, and a last ``bias`` stage judges the mean of ``(f - e) / bound``: a
    systematic error (a constant off by 1e-5) hides under the rounding noise of each element but
    not in their mean.
    """
    f: NDArray[Any] = np.asarray(found)
    e: NDArray[Any] = np.asarray(expected)
    tol = tolerance
    if f.shape != e.shape:
        return ParityResult(
            name, "shape", f"{name}: shape stage: found shape {f.shape}, expected {e.shape}", tol
        )
    if f.dtype != np.dtype(dtype):
        return ParityResult(
            name, "dtype", f"{name}: dtype stage: found dtype {f.dtype}, expected {dtype}", tol
        )
    if f.size == 0:
        return ParityResult(
            name, "pass", f"{name}: empty, nothing to compare", tol, 0.0, 0.0, 0.0, 0.0
        )
    if np.issubdtype(f.dtype, np.integer):
        return _compare_exact_ints(name, f, e, tol)

    f64 = f.astype(np.float64)
    e64 = e.astype(np.float64)
    bad = ~np.isfinite(f64) & ~(f64 == e64)  # an inf the reference also has is a match
    if bad.any():
        flat = int(np.flatnonzero(bad.reshape(-1))[0])
        idx = _index(flat, f.shape)
        fv, ev = float(f64.reshape(-1)[flat]), float(e64.reshape(-1)[flat])
        return ParityResult(
            name,
            "nonfinite",
            f"{name}: nonfinite stage: first non-finite value at index {idx}: found {fv!r}, "
            f"expected {ev!r} ({int(bad.sum())} of {f.size} non-finite)",
            tol,
            worst_index=idx,
            found_at_worst=fv,
            expected_at_worst=ev,
        )

    both_inf = np.isinf(f64) & (f64 == e64)
    # matched infinities contribute no error
    diff = np.abs(np.where(both_inf, 0.0, f64) - np.where(both_inf, 0.0, e64))
    mag = np.where(both_inf, 0.0, np.abs(e64))
    ulp = ulp_distance(f, e) if f.dtype == np.float32 else None
    if bound is not None:
        b = np.broadcast_to(bound.bound * HEADROOM, diff.shape)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(diff == 0, 0.0, diff / b)  # bound 0 and diff > 0: inf
    elif tol.max_ulp is not None and ulp is not None:
        # a ULP bound: 0 ULP (correctly rounded) gives ratio 2 per ULP, so 1 ULP fails
        ratio = ulp.astype(np.float64) / max(float(tol.max_ulp), 0.5)
    else:
        atol: float | NDArray[np.float64] = tol.atol
        if relative_to_max:
            atol = tol.atol * _block_max(mag, max_blocks)
        limit = atol + tol.rtol * mag
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(diff == 0, 0.0, diff / limit)  # limit 0 and diff > 0: inf
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(mag > 0, diff / np.where(mag > 0, mag, 1.0), np.where(diff > 0, np.inf, 0.0))
    flat = int(np.argmax(ratio.reshape(-1)))
    idx = _index(flat, f.shape)
    worst = float(ratio.reshape(-1)[flat])
    fv, ev = float(f64.reshape(-1)[flat]), float(e64.reshape(-1)[flat])
    ulps = float(ulp.max()) if ulp is not None else math.nan
    metrics: dict[str, Any] = {
        "max_abs_err": float(diff.max()),
        "max_rel_err": float(rel.max()),
        "max_ulp": ulps,
        "worst_ratio": worst,
        "worst_index": idx,
        "found_at_worst": fv,
        "expected_at_worst": ev,
    }
    where = (
        f"worst at index {idx}: found {fv:.9g}, expected {ev:.9g}, |diff| {abs(fv - ev):.3g} "
        f"({worst:.3g}x the bound; max abs {metrics['max_abs_err']:.3g}, max rel "
        f"{metrics['max_rel_err']:.3g}, max ulp {ulps:.0f}) with {tol.describe()}"
        + (
            f" (atol x max|expected| {_block_max(mag, max_blocks).reshape(-1)[flat]:.3g}"
            + (f" of its block of {mag.size // math.prod(max_blocks)}" if max_blocks else "")
            + ")"
            if relative_to_max
            else ""
        )
    )
    if worst > 1.0:
        n_bad = int((ratio > 1.0).sum())
        msg = f"{name}: values stage: {n_bad} of {f.size} elements out of tolerance; {where}"
        return ParityResult(name, "values", msg, tol, **metrics)
    if bound is not None:
        with np.errstate(invalid="ignore"):
            signed = np.where(f64 == e64, 0.0, f64 - e64)
        estimates = bound.constants(signed)
        for c in estimates:
            where += (f"; constant {c.name}: estimated relative error {c.estimate:.3g} "
                      f"({c.ratio:.3g}x its limit {c.limit:.3g})")  # fmt: skip
            metrics["worst_ratio"] = max(metrics["worst_ratio"], c.ratio)
        bad = [c for c in estimates if c.ratio > 1.0]
        if bad:
            # one wrong constant shows in the others' estimates too (their sensitivities
            # correlate), each over its limit by less: the headline names the one furthest over
            # its limit, the likeliest culprit, not the first in the rule's listing order
            worst_c = max(bad, key=lambda c: c.ratio)
            msg = (f"{name}: bias stage: a systematic error, as if constant {worst_c.name} were "
                   f"off by {worst_c.estimate:.3g} relative ({worst_c.ratio:.3g}x its limit); "
                   f"{where}")  # fmt: skip
            return ParityResult(name, "bias", msg, tol, **metrics)
    return ParityResult(name, "pass", f"{name}: ok; {where}", tol, **metrics)


def _compare_exact_ints(
    name: str, f: NDArray[Any], e: NDArray[Any], tol: Tolerance
) -> ParityResult:
    diff = np.abs(f.astype(np.int64) - e.astype(np.int64))
    if not diff.any():
        return ParityResult(
            name, "pass", f"{name}: ok; all {f.size} equal", tol, 0.0, 0.0, 0.0, 0.0
        )
    flat = int(np.flatnonzero(diff.reshape(-1))[0])
    idx = _index(flat, f.shape)
    fv, ev = int(f.reshape(-1)[flat]), int(e.reshape(-1)[flat])
    return ParityResult(
        name,
        "values",
        f"{name}: values stage: {int((diff > 0).sum())} of {f.size} differ; first at index {idx}: "
        f"found {fv}, expected {ev} (exact match required)",
        tol,
        max_abs_err=float(diff.max()),
        worst_index=idx,
        found_at_worst=float(fv),
        expected_at_worst=float(ev),
    )


def assert_parity(
    name: str,
    found: ArrayLike,
    expected: ArrayLike,
    tolerance: Tolerance,
    *,
    dtype: str = "float32",
    relative_to_max: bool = False,
    max_blocks: tuple[int, ...] = (),
    bound: ElementwiseBound | None = None,
) -> ParityResult:
    """Run :func:`compare` and raise :class:`ParityError` naming the failing stage, if any."""
    result = compare(name, found, expected, tolerance, dtype=dtype,
                     relative_to_max=relative_to_max, bound=bound)  # fmt: skip
    if not result.ok:
        raise ParityError(result)
    return result
