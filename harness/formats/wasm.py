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

from harness.abi import EXPORTS, Signature
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

    def __init__(self) -> None:
        self._passed: set[tuple[object, ...]] = set()

    def static_check(
        self,
        files: Mapping[str, Path],
        ptr_width: int,
        exports: Mapping[str, Signature] | None = None,
    ) -> None:
        """validate_wasm_abi, once per (file version, pointer width, exports) in this process."""
        from harness.engines.wasmtime_engine import validate_wasm_abi

        wanted = dict(exports) if exports is not None else dict(EXPORTS)
        path = files["wasm"]
        stat = path.stat()
        key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size, ptr_width,
               tuple(sorted(wanted.items())))  # fmt: skip
        if key not in self._passed:
            validate_wasm_abi(path, ptr_width, wanted)
            self._passed.add(key)

    def exports_found(self, files: Mapping[str, Path]) -> Mapping[str, WasmTypes | None]:
        """The module's function exports with their wasm types; CorruptArtifact if it does not
        parse."""
        from harness.engines.wasmtime_engine import func_types, make_engine, parse_module

        path = files[self.exports_role]
        return func_types(parse_module(make_engine(), path, str(path)))


FORMAT = WasmFormat()
