"""Artifact formats (``harness.formats``) and the versioned manifest that names them.

A bad manifest stops ``run`` at load with exit 2 and a message naming the file, the entry and the
key; hosts take whether they can load an artifact from its format, never from a name they know.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from harness.artifact import MANIFEST_SCHEMA, ManifestError, load_manifest
from harness.cli import main
from harness.formats import (
    JS_RUNTIMES,
    PY_RUNTIMES,
    FileDigest,
    FormatError,
    all_formats,
    digest,
    get_format,
    loader_class,
    set_sha256,
)
from harness.hosts.registry import make_host

HARNESS = Path(__file__).resolve().parents[2] / "harness"

MATRIX = """\
name = "m"
artifacts = ["a"]
presets = ["tiny"]
checks = ["smoke"]
[hosts]
native = {}
"""


def _manifest(tmp_path: Path, **override: Any) -> dict[str, Any]:
    """A valid one-artifact manifest (a real file with its real hash) as data."""
    (tmp_path / "a.so").write_bytes(b"not really a library")
    files, sha = digest({"so": tmp_path / "a.so"})
    entry = {
        "name": "a",
        "format": "native",
        "path": "a.so",
        "sha256": sha,
        "files": [{"role": "so", "path": "a.so", "sha256": files[0].sha256}],
        "ptr_width": 64,
        "target": "x86_64-linux-gnu",
    }
    entry.update(override)
    return {"schema": MANIFEST_SCHEMA, "artifacts": [entry]}


def _write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


def test_every_format_declares_files_loaders_and_a_static_check() -> None:
    """wasm and native are discovered; each names its file roles and a loader per runtime."""
    formats = all_formats()
    assert {"wasm", "native"} <= set(formats)
    assert formats["wasm"].roles == ("wasm",) and formats["native"].roles == ("so",)
    assert set(formats["wasm"].loaders) == {"wasmtime", "node", "chromium"}
    assert set(formats["native"].loaders) == {"native"}
    with pytest.raises(FormatError, match=r"unknown artifact format 'elf'.*known: "):
        get_format("elf")


def test_a_valid_manifest_loads_with_its_files(tmp_path: Path) -> None:
    """The entry's format, file set and set hash come back as the Artifact's."""
    art = load_manifest(_write(tmp_path, _manifest(tmp_path)))["a"]
    assert art.format == "native" and art.fmt is get_format("native")
    assert art.paths() == {"so": (tmp_path / "a.so").resolve()}
    assert art.sha256 == art.files[0].sha256  # one file: the set's hash is the file's


def test_the_set_hash_covers_every_file_and_its_role(tmp_path: Path) -> None:
    """Several files: changing one file's hash, or swapping roles, changes the set's."""
    a = FileDigest("glue", tmp_path / "x.js", "1" * 64)
    b = FileDigest("wasm", tmp_path / "x.wasm", "2" * 64)
    base = set_sha256([a, b])
    assert set_sha256([b, a]) == base  # order of listing does not matter
    assert set_sha256([a, FileDigest("wasm", b.path, "3" * 64)]) != base
    assert (
        set_sha256([FileDigest("wasm", a.path, a.sha256), FileDigest("glue", b.path, b.sha256)])
        != base
    )


BAD: list[tuple[str, Any, str]] = [
    ("schema 1", "schema1",
     r"manifest schema 1, this harness reads schema 2 \(the bundled library's: rebuild it"),
    ("no schema", "noschema", r"manifest schema None, this harness reads schema 2"),
    ("not JSON", "{oops", r"manifest.json:1: not JSON"),
    ("unknown format", {"format": "elf"}, r"\(a\): key 'format': unknown artifact format"),
    ("missing key", {"target": None}, r"artifacts\[0\] \(a\): missing key 'target'"),
    ("mistyped key", {"target": 3}, r"artifacts\[0\] \(a\): key 'target': expected str, got int"),
    ("bad width", {"ptr_width": 16}, r"key 'ptr_width': must be 32 or 64, got 16"),
    ("bad role", {"files": [{"role": "wasm", "path": "a.so", "sha256": "0"}]},
     r"key 'files': unknown file role\(s\) \['wasm'\] for format native"),
]  # fmt: skip


@pytest.mark.parametrize(("what", "change", "message"), BAD, ids=[b[0] for b in BAD])
def test_a_bad_manifest_is_refused_naming_entry_and_key(
    tmp_path: Path, what: str, change: Any, message: str
) -> None:
    """Each defect raises ManifestError with the file, the entry and the key at fault."""
    data: Any = _manifest(tmp_path)
    if change == "schema1":
        data["schema"] = 1
    elif change == "noschema":
        del data["schema"]
    elif isinstance(change, str):
        data = change
    else:
        entry = data["artifacts"][0]
        for key, value in change.items():
            if value is None:
                del entry[key]
            else:
                entry[key] = value
    path = _write(tmp_path, data)
    with pytest.raises(ManifestError, match=message) as info:
        load_manifest(path)
    assert str(path) in str(info.value)


def test_a_repeated_name_is_refused(tmp_path: Path) -> None:
    """Two entries with one name: the second is named."""
    data = _manifest(tmp_path)
    data["artifacts"].append(copy.deepcopy(data["artifacts"][0]))
    with pytest.raises(ManifestError, match=r"artifacts\[1\]: name 'a' repeats"):
        load_manifest(_write(tmp_path, data))


def test_run_exits_2_on_a_bad_manifest_before_any_host_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``run`` refuses a schema-1 manifest at load: exit 2, the message on stderr, no run dir."""
    data = _manifest(tmp_path)
    data["schema"] = 1
    manifest = _write(tmp_path, data)
    matrix = tmp_path / "m.toml"
    matrix.write_text(MATRIX)
    out = tmp_path / "run"
    code = main(["run", "--matrix", str(matrix), "--out", str(out), "--artifacts", str(manifest)])
    assert code == 2
    err = capsys.readouterr().err
    assert "manifest schema 1, this harness reads schema 2" in err
    assert not (out / "results.csv").exists()


def test_hosts_ask_the_format_and_never_name_one(tmp_path: Path) -> None:
    """can_load comes from the format's loaders: a host with no loader is refused in words that
    name the format and where it loads; no host module compares format names."""
    art = load_manifest(_write(tmp_path, _manifest(tmp_path)))["a"]
    assert make_host("native").can_load(art) is None
    reason = make_host("wasmtime").can_load(art)
    assert reason == (
        "wasmtime cannot load native artifacts (a native shared library); they load in native"
    )
    names = "|".join(all_formats())
    compare = re.compile(rf"""(==|!=)\s*["']({names})["']|\.format\s*(==|!=)""")
    for path in (HARNESS / "hosts").glob("*.py"):
        assert not compare.search(path.read_text()), f"{path} compares a format name"


def test_every_loader_names_a_runtime_some_host_has() -> None:
    """A format's loader for a runtime no host runs would never load anything: each runtime a
    format names is a host's, and each host's runtime is a known one."""
    from harness.hosts.registry import HOST_NAMES

    runtimes = {make_host(name).runtime for name in HOST_NAMES}
    assert runtimes == set(PY_RUNTIMES) | set(JS_RUNTIMES)
    for fmt in all_formats().values():
        assert set(fmt.loaders) <= runtimes, fmt.name
        for runtime, loader in fmt.loaders.items():
            if runtime in JS_RUNTIMES:
                assert (HARNESS / "js" / loader).is_file(), f"{fmt.name}: no {loader}"
            else:  # a Python engine class with the Instance loader's entry point
                assert callable(loader_class(loader).load), f"{fmt.name}: {loader}"
