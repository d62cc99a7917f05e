"""One comparison of exports against wasm types, and one parse of each module per run.

The binding's check at load (``Binding.check_exports``) and the format's static check
(``check_module_abi``) both report from ``harness.formats.export_mismatches``; both read a
module through ``read_module``, which compiles each module content once per process.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from harness.abi import Signature
from harness.artifact import Artifact
from harness.bindings import BindingError, bundled
from harness.engines import wasmtime_engine
from harness.engines.wasmtime_engine import check_module_abi, read_module
from harness.formats import ExportMismatch, export_mismatches
from harness.hosts.base import ABIError


def test_export_mismatches_lists_missing_and_mistyped_in_wanted_order() -> None:
    """Absent exports come back with found None, mistyped ones with their types; a names-only
    entry (a native symbol) is never mistyped, and a matching one is not listed."""
    wanted = {
        "b": Signature(("ptr",), "void"),
        "a": Signature(("i32", "f32"), "f32"),
        "n": Signature(("ptr",), "ptr"),
        "ok": Signature((), "i32"),
    }
    found = {"a": (("i32",), ("f32",)), "n": None, "ok": ((), ("i32",))}
    assert export_mismatches(found, wanted, 64) == [
        ExportMismatch("b", (("i64",), ()), None),
        ExportMismatch("a", (("i32", "f32"), ("f32",)), (("i32",), ("f32",))),
    ]
    assert export_mismatches(found, {"ok": wanted["ok"], "n": wanted["n"]}, 32) == []


def test_binding_check_and_static_check_name_the_same_first_mismatch(
    built: dict[str, Artifact],
) -> None:
    """The bundled wasm32 module passes both checks at 32-bit pointers; at 64-bit both fail on
    the same export, the first pointer-taking one in the binding's order."""
    art = built["wasm32"]
    info = read_module(art.path, str(art.path))
    binding = bundled()
    binding.check_exports(info.funcs, 32, "m")
    check_module_abi(info, 32, "m", art.exports())
    first = export_mismatches(info.funcs, binding.signatures(), 64)[0].name
    with pytest.raises(BindingError, match=rf"export '{first}' has wasm type"):
        binding.check_exports(info.funcs, 64, "m")
    with pytest.raises(ABIError, match=rf"export {first} expected"):
        check_module_abi(info, 64, "m", art.exports())


def test_read_module_compiles_each_content_once(
    built: dict[str, Artifact], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same bytes at another path are not compiled again (keyed by sha256); other bytes
    are."""
    compiled: list[Path] = []
    real = wasmtime_engine._compile

    def counting(engine: object, data: bytes, path: Path, label: str) -> object:
        compiled.append(path)
        return real(engine, data, path, label)  # type: ignore[arg-type]

    monkeypatch.setattr(wasmtime_engine, "_INFO", {})
    monkeypatch.setattr(wasmtime_engine, "_compile", counting)
    copy = tmp_path / "copy.wasm"
    shutil.copyfile(built["wasm32"].path, copy)
    first = read_module(built["wasm32"].path, "a")
    assert read_module(copy, "b") is first
    assert compiled == [built["wasm32"].path]
    other = read_module(built["wasm64"].path, "c")
    assert compiled == [built["wasm32"].path, built["wasm64"].path]
    assert other.memory_is_64 is True and first.memory_is_64 is False
