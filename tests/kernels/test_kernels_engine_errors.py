"""The engines turn every way a binary can be wrong into the right typed HostError.

Broken modules are crafted here with zig cc from stub sources generated from harness.abi, so
each differs from a good artifact in exactly one way.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from harness.abi import EXPORTS, Signature
from harness.artifact import Artifact
from harness.engines import load_in_process
from harness.engines.ctypes_engine import CtypesInstance
from harness.engines.wasmtime_engine import WasmtimeInstance, validate_wasm_abi
from harness.hosts.base import (
    ABIError,
    CorruptArtifact,
    MissingExport,
    Trap,
)

_C = {"ptr": "unsigned long", "i32": "int", "f32": "float", "void": "void"}
_TARGETS = {"wasm32": "wasm32-freestanding", "native": "x86_64-linux-gnu"}


def stub_source(sigs: dict[str, Signature], trapping: str = "") -> str:
    """C defining every export in ``sigs`` as a stub (``trapping`` runs __builtin_trap)."""
    lines = []
    for name, sig in sigs.items():
        params = ", ".join(f"{_C[k]} a{i}" for i, k in enumerate(sig.params)) or "void"
        body = "__builtin_trap();" if name == trapping else ""
        if sig.result != "void":
            body += " return 0;"
        lines.append(f'__attribute__((visibility("default"))) {_C[sig.result]} {name}({params}) '
                     f"{{ {body} }}")  # fmt: skip
    return "\n".join(lines) + "\n"


def compile_stub(
    tmp: Path, name: str, kind: str, sigs: dict[str, Signature], trapping: str = ""
) -> Artifact:
    """Build a stub module (wasm32 or native) and describe it as an Artifact."""
    src = tmp / f"{name}.c"
    src.write_text(stub_source(sigs, trapping))
    out = tmp / (f"{name}.wasm" if kind == "wasm32" else f"lib{name}.so")
    cmd = [sys.executable, "-m", "ziglang", "cc", f"--target={_TARGETS[kind]}", "-O1", str(src),
           "-o", str(out)]  # fmt: skip
    if kind == "wasm32":
        cmd += ["-Wl,--no-entry", *(f"-Wl,--export={n}" for n in sigs)]
    else:
        cmd += ["-shared", "-fPIC"]
    subprocess.run(cmd, check=True, capture_output=True)
    return Artifact(name=name, format="wasm" if kind == "wasm32" else "native", path=out,
                    sha256="", ptr_width=32 if kind == "wasm32" else 64,
                    target=_TARGETS[kind])  # fmt: skip


WITHOUT_GENERATE = {n: s for n, s in EXPORTS.items() if n != "tg_model_generate"}
NOOP_TAKES_INT = {**EXPORTS, "tg_noop": Signature(params=("i32",), result="void")}


@pytest.fixture(scope="module")
def stubs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Artifact]:
    """The crafted modules: missing export (wasm, native), wrong signature, trapping export."""
    tmp = tmp_path_factory.mktemp("stubs")
    return {
        "missing-wasm": compile_stub(tmp, "missing", "wasm32", WITHOUT_GENERATE),
        "missing-native": compile_stub(tmp, "missing", "native", WITHOUT_GENERATE),
        "wrong-sig": compile_stub(tmp, "wrongsig", "wasm32", NOOP_TAKES_INT),
        "trap": compile_stub(tmp, "trap", "wasm32", EXPORTS, trapping="tg_noop"),
    }


def test_missing_export_wasm(stubs: dict[str, Artifact]) -> None:
    """A wasm module lacking one ABI export raises MissingExport naming it."""
    with pytest.raises(MissingExport, match="tg_model_generate"):
        WasmtimeInstance.load(stubs["missing-wasm"])
    with pytest.raises(MissingExport, match="tg_model_generate"):
        validate_wasm_abi(stubs["missing-wasm"].path, 32)


def test_missing_export_wasm_is_refused_on_every_load(stubs: dict[str, Artifact]) -> None:
    """The engine reads a module's types once per content (load_module), but checks them on
    every load: a load after the first, from the cached types, is refused as the first was."""
    for _ in range(3):
        with pytest.raises(MissingExport, match="tg_model_generate"):
            WasmtimeInstance.load(stubs["missing-wasm"])


def test_missing_export_native(stubs: dict[str, Artifact]) -> None:
    """A shared library lacking one ABI export raises MissingExport naming it."""
    with pytest.raises(MissingExport, match="tg_model_generate"):
        CtypesInstance.load(stubs["missing-native"])


def test_wrong_signature_names_export_expected_and_found(stubs: dict[str, Artifact]) -> None:
    """An export with other wasm types raises ABIError with the export, expected and found."""
    with pytest.raises(ABIError) as info:
        validate_wasm_abi(stubs["wrong-sig"].path, 32)
    msg = str(info.value)
    assert "tg_noop" in msg and "expected ((), ())" in msg and "found (('i32',), ())" in msg


def test_wasm64_module_checked_as_wasm32_is_an_abi_error(built: dict[str, Artifact]) -> None:
    """Validating the Memory64 artifact at ptr_width 32 fails on its i64 pointers."""
    validate_wasm_abi(built["wasm64"].path, 64)
    with pytest.raises(ABIError, match="expected"):
        validate_wasm_abi(built["wasm64"].path, 32)


def test_trapping_export_raises_trap_and_instance_survives(stubs: dict[str, Artifact]) -> None:
    """A call hitting `unreachable` raises Trap with wasmtime's message; other calls still work."""
    inst = WasmtimeInstance.load(stubs["trap"])
    try:
        with pytest.raises(Trap, match="unreachable"):
            inst.call("tg_noop")
        assert inst.call("tg_abi_version") == 0
    finally:
        inst.close()


@pytest.fixture
def wasm32(built: dict[str, Artifact]) -> Iterator[WasmtimeInstance]:
    """The real wasm32 artifact, loaded."""
    inst = WasmtimeInstance.load(built["wasm32"])
    try:
        yield inst
    finally:
        inst.close()


def test_out_of_bounds_kernel_access_is_a_trap(wasm32: WasmtimeInstance) -> None:
    """A real kernel writing past linear memory traps with an out-of-bounds message."""
    buf = wasm32.alloc(64)
    with pytest.raises(Trap, match="out of bounds"):
        wasm32.call("tg_residual_forward", 0xFFFFFF00, buf, buf, 1024)
    with pytest.raises(Trap, match="outside linear memory"):
        wasm32.read(0xFFFFFFF0, 64)


@pytest.mark.parametrize("kind", ["wasm32", "native"])
def test_garbage_file_is_corrupt(kind: str, built: dict[str, Artifact], tmp_path: Path) -> None:
    """Bytes that are not a module or library raise CorruptArtifact."""
    bad = tmp_path / "garbage.bin"
    bad.write_bytes(b"\x7fELF not really" if kind == "native" else b"\0asm\x01\0\0\0garbage")
    art = replace(built[kind], path=bad)
    loader = CtypesInstance if kind == "native" else WasmtimeInstance
    with pytest.raises(CorruptArtifact):
        loader.load(art)


def test_truncated_wasm_is_corrupt_with_wasmtime_message(
    built: dict[str, Artifact], tmp_path: Path
) -> None:
    """Half a real module fails validation; CorruptArtifact carries wasmtime's words."""
    cut = tmp_path / "cut.wasm"
    cut.write_bytes(built["wasm32"].path.read_bytes()[:5000])
    with pytest.raises(CorruptArtifact, match=r"cut\.wasm: failed to parse[\s\S]*unexpected end"):
        validate_wasm_abi(cut, 32)


def test_the_format_routes_and_an_engine_refuses_another_formats_file(
    built: dict[str, Artifact],
) -> None:
    """load_in_process takes the engine from the format; an engine handed the other format's
    file (bypassing the format) reports it corrupt in its own words, never runs it."""
    for name, engine in (("native", CtypesInstance), ("wasm32", WasmtimeInstance)):
        inst = load_in_process(built[name])
        try:
            assert isinstance(inst, engine)
        finally:
            inst.close()
    with pytest.raises(CorruptArtifact, match="invalid ELF header"):
        CtypesInstance.load(built["wasm32"])
    with pytest.raises(CorruptArtifact, match=r"libtinygpt\.so: input was not valid utf-8"):
        WasmtimeInstance.load(built["native"])


def test_manifest_with_other_signatures_is_refused(built: dict[str, Artifact]) -> None:
    """An artifact whose manifest signatures disagree with harness.abi raises ABIError."""
    sigs = dict(built["native"].signatures)
    sigs["tg_noop"] = {"params": ["i32"], "result": "void"}
    with pytest.raises(ABIError, match="tg_noop"):
        CtypesInstance.load(replace(built["native"], signatures=sigs))
