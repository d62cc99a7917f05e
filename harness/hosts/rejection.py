"""Tell an engine that does not support a valid module from a module that is broken.

A JS engine reports both as ``CompileError``. Node 22's "invalid table elements limits flags" on
the wasm64 build is a missing feature (verdict ``incompatible``); "expected magic word" on a
truncated file is corruption (verdict ``error``). Instead of matching message texts we ask a
second validator: if wasmtime (with Memory64 and SIMD on) accepts the bytes, the module is valid
WebAssembly and the engine's rejection is an incompatibility, reported in the engine's own words.
"""

from __future__ import annotations

from pathlib import Path

import wasmtime

from harness.hosts.base import CorruptArtifact, HostError, IncompatibleArtifact


def validation_error(path: Path) -> str | None:
    """Return wasmtime's reason the module at ``path`` is invalid, or None when it is valid."""
    config = wasmtime.Config()
    config.wasm_memory64 = True
    config.wasm_simd = True
    try:
        wasmtime.Module.validate(wasmtime.Engine(config), path.read_bytes())
    except wasmtime.WasmtimeError as exc:
        return str(exc)
    return None


def classify_rejection(path: Path, error: HostError) -> HostError:
    """Map a CorruptArtifact raised by a JS engine to IncompatibleArtifact if the module is valid."""
    if not isinstance(error, CorruptArtifact):
        return error
    if validation_error(path) is None:
        return IncompatibleArtifact(str(error))
    return error
