"""The frame codec shared by the Python worker and the client (docs/protocol.md)."""

from __future__ import annotations

import io
import math
import struct

import pytest

from harness.hosts.framing import (
    Frame,
    FrameError,
    Op,
    decode_scalar,
    encode_frame,
    encode_scalar,
    read_frame,
)


def _decode(data: bytes) -> Frame:
    stream = io.BytesIO(data)

    def read_exact(n: int) -> bytes:
        chunk = stream.read(n)
        if len(chunk) != n:
            raise EOFError
        return chunk

    return read_frame(read_exact)


def test_frame_round_trip_keeps_header_and_raw_blob() -> None:
    """A frame decodes to the same opcode, header and blob bytes it was encoded from."""
    blob = struct.pack("<3d", 1.5, -2.0, 1e-300)
    frame = _decode(encode_frame(Op.TIME, {"name": "tg_noop", "samples": 3}, blob))
    assert frame == Frame(Op.TIME, {"name": "tg_noop", "samples": 3}, blob)


def test_noop_frame_is_nine_bytes_with_empty_header() -> None:
    """An empty header is sent as zero bytes: [u32 len=5][u8 op][u32 0]."""
    data = encode_frame(Op.NOOP)
    assert data == struct.pack("<IBI", 5, Op.NOOP, 0)
    assert _decode(data) == Frame(Op.NOOP, {}, b"")


def test_length_field_counts_opcode_and_payload() -> None:
    """The u32 length is everything after itself, so readers can skip frames they do not parse."""
    data = encode_frame(Op.WRITE, {"ptr": 16}, b"abc")
    (length,) = struct.unpack_from("<I", data)
    assert length == len(data) - 4


def test_unknown_opcode_is_a_frame_error() -> None:
    """A byte stream with an opcode outside Op is rejected by name."""
    with pytest.raises(FrameError, match="unknown opcode 0x42"):
        _decode(struct.pack("<IBI", 5, 0x42, 0))


def test_header_overrunning_payload_is_a_frame_error() -> None:
    """A header length beyond the payload is reported, not read past."""
    with pytest.raises(FrameError, match="overruns"):
        _decode(struct.pack("<IBI", 5, Op.OK, 99))


def test_non_object_header_is_a_frame_error() -> None:
    """Headers are JSON objects; a list is refused."""
    head = b"[1,2]"
    with pytest.raises(FrameError, match="not an object"):
        _decode(struct.pack("<IBI", 5 + len(head), Op.OK, len(head)) + head)


def test_non_finite_floats_cross_json_as_js_spellings() -> None:
    """NaN and infinities survive the JSON header in the spelling JS's Number() parses."""
    assert [encode_scalar(x) for x in (math.nan, math.inf, -math.inf, 1.5, 7)] == [
        "NaN",
        "Infinity",
        "-Infinity",
        1.5,
        7,
    ]
    decoded = [decode_scalar(encode_scalar(x)) for x in (math.inf, -math.inf, 2.5)]
    assert decoded == [math.inf, -math.inf, 2.5]
    nan = decode_scalar("NaN")
    assert isinstance(nan, float) and math.isnan(nan)


def test_bare_nan_in_header_is_refused_at_encode() -> None:
    """A raw NaN in a header would be invalid JSON for the Node worker: encoding refuses it."""
    with pytest.raises(ValueError):
        encode_frame(Op.CALL, {"args": [math.nan]})
