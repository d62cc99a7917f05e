"""``artifacts/include/tinygpt.h`` and ``harness/abi.py`` describe the same ABI."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.abi import ABI_VERSION, EXPORTS, MAX_THREADS, Kind, Signature

HEADER = Path(__file__).resolve().parents[2] / "artifacts" / "include" / "tinygpt.h"
_PROTO = re.compile(r"([A-Za-z_][\w\s\*]*?)\b(tg_\w+)\s*\(([^)]*)\)\s*;")


def _kind(ctype: str) -> Kind:
    """Map a C type (or a parameter declaration) to an argument kind."""
    t = " ".join(ctype.replace("*", " * ").split())
    if "*" in t or re.search(r"\bsize_t\b", t):
        return "ptr"
    base = t.replace("const ", "")
    if re.fullmatch(r"(u?int32_t)( \w+)?", base):
        return "i32"
    if re.fullmatch(r"float( \w+)?", base):
        return "f32"
    if base == "void":
        return "void"
    raise ValueError(f"tinygpt.h: unmapped C type {ctype!r}")


def parse_header(text: str) -> dict[str, Signature]:
    """Every ``tg_`` prototype of a header's text as a Signature."""
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    out: dict[str, Signature] = {}
    for ret, name, params in _PROTO.findall(text):
        ret = ret.strip().split("\n")[-1]
        plist = [p.strip() for p in params.split(",") if p.strip()]
        kinds = () if plist == ["void"] else tuple(_kind(p) for p in plist)
        out[name] = Signature(params=kinds, result=_kind(ret))
    return out


def abi_differences(header: dict[str, Signature], abi: dict[str, Signature]) -> list[str]:
    """Readable differences between the header's and the ABI table's exports, both ways."""
    diffs = [f"{n}: in tinygpt.h, missing from harness/abi.py" for n in header if n not in abi]
    diffs += [f"{n}: in harness/abi.py, missing from tinygpt.h" for n in abi if n not in header]
    diffs += [
        f"{n}: tinygpt.h says {header[n]}, harness/abi.py says {abi[n]}"
        for n in header
        if n in abi and header[n] != abi[n]
    ]
    return diffs


def test_header_and_abi_table_agree() -> None:
    """Every prototype in tinygpt.h has the same kinds in harness.abi.EXPORTS, and vice versa."""
    assert abi_differences(parse_header(HEADER.read_text()), EXPORTS) == []


def test_header_version_matches_abi_version() -> None:
    """TG_ABI_VERSION in the header equals harness.abi.ABI_VERSION."""
    m = re.search(r"#define\s+TG_ABI_VERSION\s+(\d+)", HEADER.read_text())
    assert m is not None and int(m.group(1)) == ABI_VERSION


def test_max_threads_matches_header() -> None:
    """TG_MAX_THREADS in the header equals harness.abi.MAX_THREADS (the matrix's limit)."""
    m = re.search(r"#define\s+TG_MAX_THREADS\s+(\d+)", HEADER.read_text())
    assert m is not None and int(m.group(1)) == MAX_THREADS


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("void tg_noop(void);", "void tg_noop(int32_t x);", "tg_noop: tinygpt.h says"),
        ("void tg_noop(void);", "void tg_noop2(void);", "tg_noop2: in tinygpt.h, missing"),
        ("void tg_noop(void);", "", "tg_noop: in harness/abi.py, missing from tinygpt.h"),
        ("float tg_model_grad_norm(void *h);", "double tg_model_grad_norm(void *h);", "double"),
    ],
)
def test_sync_check_detects_drift(old: str, new: str, expected: str) -> None:
    """A header edited in one place (kind, name, removal, unknown type) is reported."""
    text = HEADER.read_text()
    assert old in text
    try:
        diffs = abi_differences(parse_header(text.replace(old, new)), EXPORTS)
    except ValueError as exc:
        diffs = [str(exc)]
    assert any(expected in d for d in diffs), diffs
