"""The function names a native shared library exports, read from its ELF64 ``.dynsym``.

The ``native`` format's :meth:`~harness.formats.ArtifactFormat.exports_found`: a binding that
names an export the ``.so`` lacks is refused at load, before any worker ``dlopen``\\ s it. A
symbol table holds no argument types, so this checks existence only.

Only what ``dlsym`` would find counts: symbols of ``.dynsym`` (not the static ``.symtab``, which
``strip`` removes and ``dlsym`` never reads) that are defined (not ``SHN_UNDEF``: an import),
global, weak or unique, of default or protected visibility (hidden ones are not exported), and
functions (``STT_FUNC``, ``STT_GNU_IFUNC``). The section headers locate the table; a library
without them (``sstrip``), an ELF32 one, or bytes that are not ELF are "cannot say" (None), and
the cell's own ``dlopen`` reports what is wrong with them.
"""

from __future__ import annotations

import struct
from pathlib import Path

ELF_MAGIC = b"\x7fELF"
ELFCLASS64 = 2
ENDIAN = {1: "<", 2: ">"}  # EI_DATA: ELFDATA2LSB, ELFDATA2MSB
SHT_DYNSYM = 11
SHN_UNDEF = 0
SHDR_SIZE = 64  # sizeof(Elf64_Shdr)
SYM_SIZE = 24  # sizeof(Elf64_Sym)
FUNC_TYPES = (2, 10)  # STT_FUNC, STT_GNU_IFUNC
EXPORTED_BINDS = (1, 2, 10)  # STB_GLOBAL, STB_WEAK, STB_GNU_UNIQUE
EXPORTED_VISIBILITY = (0, 3)  # STV_DEFAULT, STV_PROTECTED


def elf_class_width(path: Path) -> int | None:
    """32 or 64 from the ELF header's ``EI_CLASS`` of the file at ``path``; None if it is not
    ELF. OSError if the file cannot be read."""
    with path.open("rb") as f:
        head = f.read(5)
    if len(head) < 5 or head[:4] != ELF_MAGIC or head[4] not in (1, ELFCLASS64):
        return None
    return 64 if head[4] == ELFCLASS64 else 32


# (e_phoff, e_shoff, e_phentsize/e_phnum/e_shentsize/e_shnum at, the address format, and a
# program header's p_offset and p_filesz at) per ELF class: Elf32_Ehdr/Phdr and Elf64_Ehdr/Phdr
_LAYOUT = {32: (0x1C, 0x20, 0x2A, "I", 4, 16), 64: (0x20, 0x28, 0x36, "Q", 8, 32)}
PT_LOAD = 1


def elf_truncation(path: Path) -> str | None:
    """Why the ELF file at ``path`` is cut short, or None when every loadable segment and the
    section header table lie inside it (or it is not ELF: dlopen says what it is).

    ``dlopen`` maps a truncated library's segments past the end of the file and the first
    touch of those pages kills the process with SIGBUS, which would read as a crashed host,
    not as the corrupt file it is. OSError if the file cannot be read.
    """
    data = path.read_bytes()
    if len(data) < 6 or data[:4] != ELF_MAGIC or data[4] not in (1, ELFCLASS64):
        return None
    if data[5] not in ENDIAN:
        return None
    width = 64 if data[4] == ELFCLASS64 else 32
    e = ENDIAN[data[5]]
    ph_at, sh_at, sizes_at, addr, off_at, filesz_at = _LAYOUT[width]
    size = len(data)
    try:
        (phoff,) = struct.unpack_from(e + addr, data, ph_at)
        (shoff,) = struct.unpack_from(e + addr, data, sh_at)
        phentsize, phnum, shentsize, shnum = struct.unpack_from(e + "HHHH", data, sizes_at)
        if phoff + phnum * phentsize > size:
            return (
                f"its program headers end at byte {phoff + phnum * phentsize}, the file has {size}"
            )
        for i in range(phnum):
            at = phoff + i * phentsize
            (p_type,) = struct.unpack_from(e + "I", data, at)
            (offset,) = struct.unpack_from(e + addr, data, at + off_at)
            (filesz,) = struct.unpack_from(e + addr, data, at + filesz_at)
            if p_type == PT_LOAD and offset + filesz > size:
                return (
                    f"its loadable segment {i} ends at byte {offset + filesz}, the file has {size}"
                )
        if shoff and shoff + shnum * shentsize > size:
            return (
                f"its section headers end at byte {shoff + shnum * shentsize}, the file has {size}"
            )
    except struct.error:
        return f"its ELF header is cut short ({size} bytes)"
    return None


def dynamic_functions(path: Path) -> frozenset[str] | None:
    """The functions the ELF64 shared library at ``path`` exports to ``dlsym``; None if the
    file is not one whose ``.dynsym`` can be found (see the module docstring).

    OSError if the file cannot be read.
    """
    data = path.read_bytes()
    try:
        return _dynamic_functions(data)
    except (struct.error, IndexError, ValueError):  # ValueError: an unterminated or non-UTF-8 name
        return None  # truncated or inconsistent offsets: not a library this reader can trust


def _dynamic_functions(data: bytes) -> frozenset[str] | None:
    if data[:4] != ELF_MAGIC or data[4] != ELFCLASS64 or data[5] not in ENDIAN:
        return None
    e = ENDIAN[data[5]]
    (shoff,) = struct.unpack_from(e + "Q", data, 0x28)
    shentsize, shnum = struct.unpack_from(e + "HH", data, 0x3A)
    if shoff == 0 or shentsize != SHDR_SIZE:
        return None
    if shnum == 0:  # more than 0xff00 sections: the count is section 0's sh_size
        (shnum,) = struct.unpack_from(e + "Q", data, shoff + 32)

    def section(i: int) -> tuple[int, int, int, int, int]:
        """(sh_type, sh_offset, sh_size, sh_link, sh_entsize) of section ``i``."""
        at = shoff + i * SHDR_SIZE
        (sh_type,) = struct.unpack_from(e + "I", data, at + 4)
        offset, size, link = struct.unpack_from(e + "QQI", data, at + 24)
        (entsize,) = struct.unpack_from(e + "Q", data, at + 56)
        return sh_type, offset, size, link, entsize

    dynsym = next((s for s in map(section, range(shnum)) if s[0] == SHT_DYNSYM), None)
    if dynsym is None:
        return None
    _, offset, size, link, entsize = dynsym
    if entsize not in (0, SYM_SIZE) or offset + size > len(data):
        return None
    _, str_offset, str_size, _, _ = section(link)  # sh_link: the table's string section
    strtab = data[str_offset : str_offset + str_size]
    names: set[str] = set()
    for at in range(offset + SYM_SIZE, offset + size, SYM_SIZE):  # entry 0 is the null symbol
        name, info, other, shndx = struct.unpack_from(e + "IBBH", data, at)
        if (
            shndx != SHN_UNDEF
            and info & 0xF in FUNC_TYPES
            and info >> 4 in EXPORTED_BINDS
            and other & 0x3 in EXPORTED_VISIBILITY
        ):
            end = strtab.index(b"\0", name)
            names.add(strtab[name:end].decode())
    return frozenset(names)
