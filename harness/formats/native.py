"""Format ``native``: one shared library (``.so``) loaded through ctypes in a worker process.

It has no static check of its own: what could be checked without loading (the ELF header) says
less than ``dlopen``, whose error the ctypes engine reports as CorruptArtifact, and a missing
export is a MissingExport from the binding of each ABI name.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

from harness.abi import Signature
from harness.formats import ArtifactFormat


class NativeFormat(ArtifactFormat):
    """A shared library built against ``tinygpt.h`` for this machine."""

    name = "native"
    description = "a native shared library"
    roles = ("so",)
    loaders = MappingProxyType({"native": "harness.engines.ctypes_engine:CtypesInstance"})

    def static_check(
        self,
        files: Mapping[str, Path],
        ptr_width: int,
        exports: Mapping[str, Signature] | None = None,
    ) -> None:
        """Nothing before dlopen (see the module docstring)."""


FORMAT = NativeFormat()
