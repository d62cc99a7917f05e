"""The fixed 7-bit ASCII character tokenizer: token id == byte value, vocabulary of 128.

There is nothing to train or store, so every implementation (numpy, C, JS) agrees by
construction. Text outside 7-bit ASCII is refused rather than silently mapped.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from numpy.typing import NDArray

from reference.presets import VOCAB_SIZE


def encode(text: str) -> NDArray[np.int32]:
    """Return the token ids of ``text`` (int32, id == ``ord(ch)``).

    Raises ``ValueError`` naming the first non-ASCII character and its offset.
    """
    try:
        raw = text.encode("ascii")
    except UnicodeEncodeError as err:
        ch = text[err.start]
        raise ValueError(
            f"encode: character {ch!r} (U+{ord(ch):04X}) at offset {err.start} is not 7-bit "
            f"ASCII; the tokenizer has {VOCAB_SIZE} ids"
        ) from None
    return np.frombuffer(raw, dtype=np.uint8).astype(np.int32)


def decode(ids: Iterable[int] | NDArray[np.integer]) -> str:
    """Return the text of token ``ids``; raises ``ValueError`` naming an id outside [0, 128)."""
    arr = np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids)
    if arr.size == 0:
        return ""
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"decode: ids has shape {arr.shape} dtype {arr.dtype}, expected 1-D ints")
    bad = np.flatnonzero((arr < 0) | (arr >= VOCAB_SIZE))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"decode: id {int(arr[i])} at offset {i} is outside [0, {VOCAB_SIZE})")
    return arr.astype(np.uint8).tobytes().decode("ascii")
