"""Format ``emscripten``: a MODULARIZE + EXPORT_ES6 module, loaded through its OWN glue.

An artifact is the glue (``.js``/``.mjs``: ``export default`` a factory returning a promise of
the Module), its ``.wasm``, and for a ``-pthread`` build the pthread ``.worker.js``. Node and
Chromium import the glue (``harness/js/format_emscripten.mjs``) and call the factory with
``wasmBinary`` (the file's bytes) and ``locateFile`` (each file of the set by name), so whatever
the glue does (the Memory64 argument conversions, ``_malloc`` returning a Number, the pthread
pool) is what runs. Exports are the ABI's names prefixed ``_``; memory is read and written
through the glue's ``HEAPU8``; buffers come from ``_malloc``/``_free``.

With ``-sMEMORY64=1 -sWASM_BIGINT`` the glue's wrappers take BigInt for every pointer (and
``size_t``): the pointer kind comes from the artifact's ``ptr_width`` and the ABI's ``ptr`` kinds,
as for every format, so a host that passes Numbers gets the engine's TypeError as an ABIError.

The static check parses the ``.wasm`` with wasmtime (Memory64, SIMD and threads on): every ABI
export present under its C name with the ABI's wasm types at the artifact's pointer width, plus
``malloc``/``free``; a memory (exported, or imported for ``-pthread``) of that width; a shared
memory needs the pthread worker file; and the glue is an ES module with a default export.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

from harness.abi import Signature
from harness.formats import ArtifactFormat, WasmTypes

_ES6_DEFAULT = re.compile(rb"export\s+default\s+\w+")
ALLOCATOR = ("malloc", "free")


class EmscriptenFormat(ArtifactFormat):
    """An emscripten ``-sMODULARIZE -sEXPORT_ES6`` build of a library with the ABI's exports."""

    name = "emscripten"
    description = "an emscripten ES6 module factory (glue .js + .wasm [+ pthread worker .js])"
    roles = ("glue", "wasm", "worker")
    optional_roles = ("worker",)
    exports_role = "wasm"
    loaders = MappingProxyType(
        {"node": "format_emscripten.mjs", "chromium": "format_emscripten.mjs"}
    )
    allocator = ALLOCATOR
    allocator_signatures = MappingProxyType(
        {"malloc": Signature(("ptr",), "ptr"), "free": Signature(("ptr",), "void")}
    )

    def check_files(
        self, files: Mapping[str, Path], ptr_width: int, wanted: Mapping[str, Signature]
    ) -> None:
        """Check the glue and the module without running either (see the module docstring)."""
        from harness.engines.wasmtime_engine import check_module_abi, read_module
        from harness.hosts.base import CorruptArtifact, MissingExport

        glue = files["glue"]
        if not _ES6_DEFAULT.search(glue.read_bytes()):
            raise CorruptArtifact(
                f"{glue}: no `export default` factory: not an -sMODULARIZE -sEXPORT_ES6 glue"
            )
        label = str(files["wasm"])
        module = read_module(files["wasm"], label, threads=True)
        check_module_abi(
            module, ptr_width, label, wanted, freestanding=False,
            hint=" (the glue offers an export as `_name` only if -sEXPORTED_FUNCTIONS lists it)",
        )  # fmt: skip
        shared = any(imp[:2] == ("env", "memory") for imp in module.imports)
        if shared and "worker" not in files:
            raise MissingExport(
                f"{label}: imports its memory (a -pthread build) but the artifact lists no "
                "pthread worker .js file"
            )

    def ptr_width_of(self, files: Mapping[str, Path]) -> int | None:
        """The width of the module's linear memory (exported, or imported by a -pthread build)."""
        from harness.engines.wasmtime_engine import read_module

        path = files["wasm"]
        return read_module(path, str(path), threads=True).memory_width(imported=True)

    def exports_found(self, files: Mapping[str, Path]) -> Mapping[str, WasmTypes | None]:
        """The ``.wasm``'s function exports under their C names (the glue adds the ``_``), with
        their wasm types; CorruptArtifact if it does not parse."""
        from harness.engines.wasmtime_engine import read_module

        path = files[self.exports_role]
        return read_module(path, str(path), threads=True).funcs


FORMAT = EmscriptenFormat()
