"""Claim quantities without an x match the single x-carrying row of their cell, never two."""

from __future__ import annotations

from harness.gate.claim_checks import lookup
from harness.gate.claims import Quantity


def _q(x: str = "", preset: str = "small") -> Quantity:
    return Quantity("native", "native", preset, "bench", "train_step", "speedup", x)


def test_exact_quantity_is_found() -> None:
    """A quantity present as-is returns its value."""
    assert lookup({_q("112384"): 1.9}, _q("112384")) == 1.9


def test_preset_curve_point_matches_the_one_row_with_an_x() -> None:
    """A preset curve names no x; the cell's one train_step speedup row (x = params) is it."""
    assert lookup({_q("112384"): 1.9, _q("826112", "medium"): 1.4}, _q()) == 1.9


def test_two_candidates_are_ambiguous() -> None:
    """Two rows differing only in x cannot be told apart: not measured, never a guess."""
    assert lookup({_q("1"): 1.0, _q("2"): 2.0}, _q()) is None


def test_a_named_x_never_falls_back() -> None:
    """A claim that names an x the run did not measure is not measured."""
    assert lookup({_q("1"): 1.0}, _q("2")) is None
