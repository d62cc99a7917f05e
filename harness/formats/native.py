"""Format ``native``: one shared library (``.so``) loaded through ctypes in a worker process.

It has no static check of its own: what could be checked without loading (the ELF header) says
less than ``dlopen``, whose error the ctypes engine reports as CorruptArtifact. Its exports are
read from the ELF ``.dynsym`` (:mod:`harness.formats.elf`, names only: a symbol has no types), so
a binding naming an export the library lacks is refused at load, before any worker starts.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

from harness.abi import Signature
from harness.formats import ArtifactFormat, WasmTypes
from harness.formats.elf import dynamic_functions, elf_class_width


class NativeFormat(ArtifactFormat):
    """A shared library built against ``tinygpt.h`` for this machine."""

    name = "native"
    description = "a native shared library"
    roles = ("so",)
    exports_role = "so"
    loaders = MappingProxyType({"native": "harness.engines.ctypes_engine:CtypesInstance"})

    def check_files(
        self, files: Mapping[str, Path], ptr_width: int, wanted: Mapping[str, Signature]
    ) -> None:
        """Nothing before dlopen (see the module docstring)."""

    def ptr_width_of(self, files: Mapping[str, Path]) -> int | None:
        """64 for an ELF64 library, 32 for ELF32; None for bytes that are not ELF."""
        return elf_class_width(files[self.exports_role])

    def exports_found(self, files: Mapping[str, Path]) -> Mapping[str, WasmTypes | None] | None:
        """The library's dynamic function symbols, each with no types (None); None if its
        symbol table cannot be read (not ELF64, no section headers)."""
        names = dynamic_functions(files[self.exports_role])
        return None if names is None else dict.fromkeys(names)


FORMAT = NativeFormat()
