"""The worker wire format, shared by the Python worker and the Python client (see docs/protocol.md).

A frame is ``[u32 length][u8 opcode][payload]`` (little-endian), ``length`` counting the opcode
and the payload. A payload is ``[u32 header_length][header: UTF-8 JSON object][blob: raw bytes]``;
a zero-length header means ``{}``. Arrays (memory contents, timing samples) travel in the blob,
never as JSON lists. The Node server (``harness/js/node_server.mjs``) speaks the same format.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

PROTOCOL_VERSION = 1

_FRAME_HEAD = struct.Struct("<IB")
_HEADER_LEN = struct.Struct("<I")


class Op(IntEnum):
    """Request opcodes (client -> worker) and reply opcodes (worker -> client)."""

    HELLO = 0x01
    LOAD = 0x02
    CALL = 0x03
    WRITE = 0x04
    READ = 0x05
    TIME = 0x06
    NOOP = 0x07
    UNLOAD = 0x08
    SHUTDOWN = 0x09
    PROBE = 0x0A  # a JS host's own costs: Atomics wake, postMessage (harness/js/probe.mjs)
    PAIRS = 0x0B  # two instances of one worker timed side by side, a block in one request
    OK = 0x80
    ERROR = 0x81


class FrameError(Exception):
    """The byte stream is not a well-formed frame (wrong length, bad opcode, bad JSON)."""


@dataclass(frozen=True)
class Frame:
    """One decoded frame."""

    op: Op
    header: Mapping[str, Any] = field(default_factory=dict)
    blob: bytes = b""


def encode_frame(op: Op, header: Mapping[str, Any] | None = None, blob: bytes = b"") -> bytes:
    """Return the bytes of one frame; ``header`` must be JSON-safe (see :func:`encode_scalar`)."""
    head = json.dumps(header, separators=(",", ":"), allow_nan=False).encode() if header else b""
    payload_len = _HEADER_LEN.size + len(head) + len(blob)
    return b"".join(
        (_FRAME_HEAD.pack(1 + payload_len, int(op)), _HEADER_LEN.pack(len(head)), head, blob)
    )


def read_frame(read_exact: Callable[[int], bytes]) -> Frame:
    """Read one frame with ``read_exact(n)``, which returns exactly n bytes or raises."""
    length, opcode = _FRAME_HEAD.unpack(read_exact(_FRAME_HEAD.size))
    if length < 1 + _HEADER_LEN.size:
        raise FrameError(f"frame length {length} is shorter than opcode + header length")
    try:
        op = Op(opcode)
    except ValueError:
        raise FrameError(f"unknown opcode {opcode:#04x}") from None
    payload = read_exact(length - 1)
    (head_len,) = _HEADER_LEN.unpack_from(payload)
    end = _HEADER_LEN.size + head_len
    if end > len(payload):
        raise FrameError(f"header length {head_len} overruns the {len(payload)}-byte payload")
    header: dict[str, Any] = {}
    if head_len:
        try:
            header = json.loads(payload[_HEADER_LEN.size : end])
        except ValueError as exc:
            raise FrameError(f"frame header is not JSON: {exc}") from None
        if not isinstance(header, dict):
            raise FrameError(f"frame header is a {type(header).__name__}, not an object")
    return Frame(op=op, header=header, blob=bytes(payload[end:]))


def encode_scalar(value: float) -> float | str:
    """JSON-safe scalar: non-finite floats become "NaN", "Infinity", "-Infinity" (JS spelling)."""
    if isinstance(value, float) and not math.isfinite(value):
        if math.isnan(value):
            return "NaN"
        return "Infinity" if value > 0 else "-Infinity"
    return value


def time_request(
    name: str, args: tuple[float, ...], inner_reps: int, samples: int, warmup: int
) -> dict[str, object]:
    """The JSON header of a timing request; one shape for the pipe workers and the page."""
    return {
        "name": name,
        "args": [encode_scalar(a) for a in args],
        "inner_reps": inner_reps,
        "samples": samples,
        "warmup": warmup,
    }


def pairs_request(
    first: tuple[str, tuple[float, ...]],
    second: tuple[str, tuple[float, ...]],
    other_first: Sequence[bool],
    inner_reps: int,
    warmup: int,
    stop_after_s: float | None,
) -> dict[str, Any]:
    """The JSON header of a PAIRS request (docs/protocol.md); one shape for the pipe workers and
    the page. ``first`` and ``second`` are an export and its args each (the pipe client adds
    the instance each runs in); ``other_first`` holds one entry per pair, True where second's
    sample comes first; no pair starts after ``stop_after_s`` (None: no limit)."""
    return {
        "first": {"name": first[0], "args": [encode_scalar(a) for a in first[1]]},
        "second": {"name": second[0], "args": [encode_scalar(a) for a in second[1]]},
        "order": [int(b) for b in other_first],
        "inner_reps": inner_reps,
        "warmup": warmup,
        "stop_after_ms": None if stop_after_s is None else max(0.0, stop_after_s * 1000),
    }


def decode_scalar(value: object) -> int | float | None:
    """Inverse of :func:`encode_scalar` (also accepts JSON null for a void result)."""
    if value is None or isinstance(value, int | float):
        return value
    if isinstance(value, str) and value in ("NaN", "Infinity", "-Infinity"):
        return float(value.replace("Infinity", "inf"))
    raise FrameError(f"not a scalar: {value!r}")
