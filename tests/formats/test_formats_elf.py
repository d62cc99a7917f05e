"""The ELF64 ``.dynsym`` reader behind the native format's export check (harness/formats/elf.py).

Its answer is compared with binutils' ``nm -D --defined-only`` on real libraries, and bytes that
are not a whole ELF64 library give "cannot say" (None), never an exception.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from harness.build import DEFAULT_OUT, MANIFEST, manifest_is_fresh
from harness.formats.elf import dynamic_functions, elf_truncation

LIBM = Path("/usr/lib/x86_64-linux-gnu/libm.so.6")
# nm's letters for defined functions: T text, W weak (a weak function), i IFUNC, u unique
NM_FUNCTION_LETTERS = frozenset("TWiu")


def _nm_functions(path: Path) -> set[str]:
    """The defined dynamic function symbols as binutils lists them (versions stripped)."""
    out = subprocess.run(["nm", "-D", "--defined-only", str(path)], capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    fields = (line.split() for line in out.splitlines())
    return {f[2].split("@")[0] for f in fields if len(f) == 3 and f[1] in NM_FUNCTION_LETTERS}


def _libraries() -> list[Path]:
    found = [LIBM] if LIBM.is_file() else []
    if manifest_is_fresh(DEFAULT_OUT):
        found.append(DEFAULT_OUT / "native" / "libtinygpt.so")
    return found


@pytest.mark.skipif(shutil.which("nm") is None, reason="binutils' nm is not installed")
@pytest.mark.parametrize("path", _libraries(), ids=str)
def test_reader_lists_what_nm_lists(path: Path) -> None:
    """Every defined dynamic function nm lists, and nothing else (hidden and undefined
    symbols, data objects left out)."""
    found = dynamic_functions(path)
    assert found is not None and set(found) == _nm_functions(path)


def test_the_bundled_library_exports_the_abi() -> None:
    """The built native library's functions include tinygpt.h's and no undefined import."""
    if not manifest_is_fresh(DEFAULT_OUT):
        pytest.skip(f"no fresh {DEFAULT_OUT / MANIFEST}")
    names = dynamic_functions(DEFAULT_OUT / "native" / "libtinygpt.so")
    assert names is not None
    assert {"tg_abi_version", "tg_matmul_forward", "tg_alloc"} <= names
    assert "malloc" not in names and "expf" not in names  # imports from libc/libm


@pytest.mark.skipif(not LIBM.is_file(), reason=f"no {LIBM}")
def test_truncated_or_foreign_bytes_cannot_say(tmp_path: Path) -> None:
    """A library cut short anywhere, an ELF32 header, a wasm module: None, no exception."""
    data = LIBM.read_bytes()
    cut = tmp_path / "cut.so"
    for n in (0, 3, 16, 0x40, 4096, len(data) // 2):  # the section headers are at the end
        cut.write_bytes(data[:n])
        assert dynamic_functions(cut) is None, n
    cut.write_bytes(data[:-1])  # the last header cut: the .dynsym's, read first, is whole
    assert dynamic_functions(cut) in (None, dynamic_functions(LIBM))
    elf32 = tmp_path / "elf32.so"
    elf32.write_bytes(data[:4] + b"\x01" + data[5:])
    assert dynamic_functions(elf32) is None
    wasm = tmp_path / "m.wasm"
    wasm.write_bytes(b"\0asm\x01\0\0\0")
    assert dynamic_functions(wasm) is None


@pytest.mark.skipif(not LIBM.is_file(), reason=f"no {LIBM}")
def test_truncation_is_named_where_the_file_ends(tmp_path: Path) -> None:
    """A whole library: None; cut inside a loadable segment, or before its section headers:
    a reason naming the byte it needed and the file's size; bytes that are not ELF: None
    (dlopen's error says what they are)."""
    data = LIBM.read_bytes()
    assert elf_truncation(LIBM) is None
    cut = tmp_path / "cut.so"
    cut.write_bytes(data[:5000])
    assert (elf_truncation(cut) or "").endswith("the file has 5000")
    cut.write_bytes(data[:-1])
    assert (elf_truncation(cut) or "").startswith("its section headers end at byte")
    cut.write_bytes(data[:0x30])
    assert elf_truncation(cut) is not None  # the header itself is cut
    cut.write_bytes(b"\0asm\x01\0\0\0")
    assert elf_truncation(cut) is None
