"""Format ``wasm``: one freestanding module (no imports, exports ``memory`` and the ABI).

Loaded by wasmtime-py in a worker process, and by the harness's own JS driver in Node and
Chromium (``harness/js/format_wasm.mjs``). Its static check parses the module with wasmtime
(Memory64 and SIMD on) and compares every export's wasm types with the ABI at the artifact's
pointer width, so a JS engine's later CompileError means a missing engine feature.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

from harness.abi import Signature
from harness.formats import ArtifactFormat, WasmTypes


class WasmFormat(ArtifactFormat):
    """A freestanding ``.wasm`` built against ``tinygpt.h``."""

    name = "wasm"
    description = "a freestanding .wasm module"
    roles = ("wasm",)
    exports_role = "wasm"
    loaders = MappingProxyType(
        {
            "wasmtime": "harness.engines.wasmtime_engine:WasmtimeInstance",
            "node": "format_wasm.mjs",
            "chromium": "format_wasm.mjs",
        }
    )

    def check_files(
        self, files: Mapping[str, Path], ptr_width: int, wanted: Mapping[str, Signature]
    ) -> None:
        """validate_wasm_abi: the module's exports, their wasm types and its memory."""
        from harness.engines.wasmtime_engine import validate_wasm_abi

        validate_wasm_abi(files["wasm"], ptr_width, wanted)

    def ptr_width_of(self, files: Mapping[str, Path]) -> int | None:
        """The width of the module's linear memory."""
        from harness.engines.wasmtime_engine import read_module

        path = files["wasm"]
        return read_module(path, str(path)).memory_width(imported=False)

    def exports_found(self, files: Mapping[str, Path]) -> Mapping[str, WasmTypes | None]:
        """The module's function exports with their wasm types; CorruptArtifact if it does not
        parse."""
        from harness.engines.wasmtime_engine import read_module

        path = files[self.exports_role]
        return read_module(path, str(path)).funcs


FORMAT = WasmFormat()
