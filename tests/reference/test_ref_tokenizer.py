"""reference.tokenizer: the 7-bit ASCII character tokenizer."""

from __future__ import annotations

import numpy as np
import pytest

from reference.tokenizer import decode, encode


def test_every_ascii_character_round_trips_with_id_equal_to_ord() -> None:
    """encode maps each of the 128 characters to its code point; decode inverts it."""
    text = "".join(chr(i) for i in range(128))
    ids = encode(text)
    assert ids.dtype == np.int32
    np.testing.assert_array_equal(ids, np.arange(128))
    assert decode(ids) == text
    assert decode([104, 105]) == "hi" and decode([]) == "" and encode("").size == 0


def test_non_ascii_text_is_refused_naming_the_character_and_offset() -> None:
    """The first non-ASCII character is named with its code point and offset."""
    with pytest.raises(ValueError, match=r"'é' \(U\+00E9\) at offset 3"):
        encode("caf" + "é!")


def test_ids_outside_the_vocabulary_are_refused() -> None:
    """decode names the first id outside [0, 128) and its offset."""
    with pytest.raises(ValueError, match=r"id 200 at offset 1 is outside \[0, 128\)"):
        decode([65, 200, 66])
    with pytest.raises(ValueError, match=r"id -1 at offset 0"):
        decode(np.array([-1]))
