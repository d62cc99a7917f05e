"""The determinism check's comparison (harness/checks/determinism.py: mismatched): bits, not
values. Its runs on two devices are tests/formats/test_formats_webgpu_faults.py's."""

from __future__ import annotations

import numpy as np
import pytest

from harness.checks.determinism import mismatched, validate_options


def test_equal_values_with_other_bits_are_mismatches() -> None:
    """-0.0 and 0.0 compare equal but differ in bits; two NaNs with other payloads too; the same
    NaN bits match; a scalar (the mean loss) compares as one element."""
    a = np.array([0.0, 1.0, np.nan, 3.0], np.float32)
    b = a.copy()
    assert mismatched(a, b) == 0
    b[0] = -0.0
    b[2] = np.frombuffer(np.uint32(0x7FC00001).tobytes(), np.float32)[0]
    assert mismatched(a, b) == 2
    assert mismatched(np.float32(1.5), np.float32(1.5)) == 0
    assert mismatched(1.5, np.nextafter(1.5, 2.0)) == 1


def test_a_shape_or_dtype_difference_counts_every_element() -> None:
    """Outputs that do not even line up differ everywhere (the larger size)."""
    assert mismatched(np.zeros(3, np.float32), np.zeros(4, np.float32)) == 4
    assert mismatched(np.zeros(3, np.float32), np.zeros(3, np.float64)) == 3
    assert mismatched(np.zeros(0, np.float32), np.zeros(0, np.float32)) == 0


def test_options_are_the_ops_checks_seed_and_ops() -> None:
    """[check.determinism] takes seed and ops (names of the ops check); anything else fails."""
    validate_options({"seed": 1, "ops": ["matmul_forward"]})
    with pytest.raises(ValueError, match="unknown op"):
        validate_options({"ops": ["matmul"]})
    with pytest.raises(ValueError, match="unknown option"):
        validate_options({"cases": 2})
