"""Format ``native``: one shared library (``.so``) loaded through ctypes in a worker process.

Its static check reads the ELF headers only for what ``dlopen`` would not report: a file cut
short (dlopen maps the missing pages and the process dies of SIGBUS on touching them) and an ELF
class other than the declared ``ptr_width``; everything else is ``dlopen``'s error, which the
ctypes engine reports as CorruptArtifact. Its exports are read from the ELF ``.dynsym``
(:mod:`harness.formats.elf`, names only: a symbol has no types), so a binding naming an export
the library lacks is refused at load, before any worker starts.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

from harness.abi import Signature
from harness.formats import ArtifactFormat, WasmTypes
from harness.formats.elf import dynamic_functions, elf_class_width, elf_truncation


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
        """The ELF class against the declared ``ptr_width``, and a file cut short (whose
        dlopen would die of SIGBUS, not fail): CorruptArtifact / ABIError before any worker."""
        from harness.hosts.base import ABIError, CorruptArtifact

        so = files[self.exports_role]
        cut = elf_truncation(so)
        if cut is not None:
            raise CorruptArtifact(f"{so.name} is truncated: {cut}")
        width = elf_class_width(so)
        if width is not None and width != ptr_width:
            raise ABIError(
                f"{so.name} is an ELF{width} library ({width}-bit pointers) but the artifact's "
                f"ptr_width is {ptr_width}"
            )

    def ptr_width_of(self, files: Mapping[str, Path]) -> int | None:
        """64 for an ELF64 library, 32 for ELF32; None for bytes that are not ELF."""
        return elf_class_width(files[self.exports_role])

    def exports_found(self, files: Mapping[str, Path]) -> Mapping[str, WasmTypes | None] | None:
        """The library's dynamic function symbols, each with no types (None); None if its
        symbol table cannot be read (not ELF64, no section headers)."""
        names = dynamic_functions(files[self.exports_role])
        return None if names is None else dict.fromkeys(names)


FORMAT = NativeFormat()
