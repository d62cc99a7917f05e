"""Artifact formats (``harness.formats``) and the versioned manifest that names them.

A bad manifest stops ``run`` at load with exit 2 and a message naming the file, the entry and the
key; hosts take whether they can load an artifact from its format, never from a name they know.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from harness.artifact import MANIFEST_SCHEMA, ManifestError, load_manifest
from harness.bindings import BindingError, bundled
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
from harness.hosts.base import ArtifactHashMismatch, verify_artifact
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


def _apply(entry: dict[str, Any], change: dict[str, Any], gone: object) -> None:
    """Set each key of ``change`` in ``entry``; the value ``gone`` deletes the key instead."""
    for key, value in change.items():
        if value is gone:
            del entry[key]
        else:
            entry[key] = value


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
    ("artifacts an object", '{"schema": 2, "artifacts": {"a": {}}}',
     r"key 'artifacts' must be a list of artifact entries"),
    ("entry not an object", '{"schema": 2, "artifacts": [3]}',
     r"artifacts\[0\]: expected an object, got a number \(3\)"),
    ("unknown format", {"format": "elf"}, r"\(a\): key 'format': unknown artifact format"),
    ("missing key", {"target": None}, r"artifacts\[0\] \(a\): missing key 'target'"),
    ("mistyped key", {"target": 3},
     r"artifacts\[0\] \(a\): key 'target': expected a string, got a number \(3\)"),
    ("bad width", {"ptr_width": 16}, r"key 'ptr_width': must be 32 or 64, got 16"),
    ("bad role", {"files": [{"role": "wasm", "path": "a.so", "sha256": "0" * 64}]},
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
        _apply(data["artifacts"][0], change, gone=None)
    path = _write(tmp_path, data)
    with pytest.raises(ManifestError, match=message) as info:
        load_manifest(path)
    assert str(path) in str(info.value)


_GONE = object()  # MALFORMED's marker for "delete this key" (None is JSON null there)
_FILE = {"role": "so", "path": "a.so", "sha256": "0" * 64}

# (id, entry keys to set, the key the message must name, what it must say of it): every way a
# hand-written entry's values can have the wrong shape, each a ManifestError naming the key
# (was: null or a number in `files`, `features`, `flags`, `signatures` a TypeError traceback,
# exit 1; a string in `features`/`flags` split into characters; `toolchain` anything at all)
MALFORMED: list[tuple[str, dict[str, Any], str, str]] = [
    ("name missing", {"name": _GONE}, "name", "missing"),
    ("name a number", {"name": 7}, "name", r"expected a string, got a number \(7\)"),
    ("format null", {"format": None}, "format", "expected a string, got null"),
    ("path a list", {"path": ["a.so"]}, "path", "expected a string, got a list"),
    ("path with a NUL", {"path": "a\0.so", "files": _GONE}, "path", "not a usable path"),
    ("sha256 null", {"sha256": None}, "sha256", "expected a string, got null"),
    ("sha256 not hex", {"sha256": "abc"}, "sha256", "expected 64 lowercase hex digits"),
    ("sha256 uppercase", {"sha256": "A" * 64}, "sha256", "expected 64 lowercase hex digits"),
    ("ptr_width a string", {"ptr_width": "64"}, "ptr_width", "expected an integer, got a string"),
    ("ptr_width a bool", {"ptr_width": True}, "ptr_width", "expected an integer, got a boolean"),
    ("target null", {"target": None}, "target", "expected a string, got null"),
    ("files null", {"files": None}, "files", r"expected a list of .*, got null"),
    ("files a role table", {"files": {"so": "a.so"}}, "files", r"expected a list .*an object"),
    ("files a number", {"files": 1}, "files", r"expected a list .*, got a number"),
    ("files a string", {"files": "a.so"}, "files", r"expected a list .*, got a string"),
    ("files entry a string", {"files": ["a.so"]}, "files[0]", r"expected a .* object, got a str"),
    ("files entry a list", {"files": [["so", "a.so"]]}, "files[0]", "got a list"),
    ("files entry null", {"files": [None]}, "files[0]", "got null"),
    ("files entry role missing", {"files": [{"path": "a.so", "sha256": "0" * 64}]},
     "files[0].role", "missing"),
    ("files entry role a number", {"files": [{**_FILE, "role": 1}]}, "files[0].role", "a number"),
    ("files entry path null", {"files": [{**_FILE, "path": None}]}, "files[0].path", "got null"),
    ("files entry sha256 short", {"files": [{**_FILE, "sha256": "0"}]}, "files[0].sha256",
     "expected 64 lowercase hex digits"),
    ("files entry path a table", {"files": [{**_FILE, "path": {"so": "a.so"}}]},
     "files[0].path", "got an object"),
    ("binding null", {"binding": None}, "binding", "expected a string, got null"),
    ("binding a number", {"binding": 42}, "binding", "got a number"),
    ("binding a directory", {"binding": "."}, "binding", "cannot read the binding file"),
    ("features a string", {"features": "simd128"}, "features", "expected a list of strings"),
    ("features null", {"features": None}, "features", "got null"),
    ("features item a number", {"features": ["simd128", 1]}, "features[1]", "a number"),
    ("flags an object", {"flags": {"-O2": True}}, "flags", "got an object"),
    ("flags item null", {"flags": [None]}, "flags[0]", "got null"),
    ("toolchain a number", {"toolchain": 3}, "toolchain", "expected a string"),
    ("toolchain null", {"toolchain": None}, "toolchain", "got null"),
    ("signatures a list", {"signatures": []}, "signatures", "expected an object"),
    ("signatures null", {"signatures": None}, "signatures", "got null"),
    ("signature a string", {"signatures": {"tg_abi_version": "i32"}},
     "signatures.tg_abi_version", "got a string"),
    ("signature params a string", {"signatures": {"f": {"params": "i32", "result": "i32"}}},
     "signatures.f.params", "expected a list of argument kinds"),
    ("signature param void", {"signatures": {"f": {"params": ["void"], "result": "i32"}}},
     "signatures.f.params[0]", "expected one of"),
    ("signature result unknown", {"signatures": {"f": {"params": [], "result": "float"}}},
     "signatures.f.result", "expected one of .*, got a string"),
    ("signature result missing", {"signatures": {"f": {"params": []}}},
     "signatures.f.result", "got null"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("what", "change", "key", "says"), MALFORMED, ids=[m[0] for m in MALFORMED]
)
def test_every_malformed_value_is_a_manifest_error_naming_file_entry_and_key(
    tmp_path: Path, what: str, change: dict[str, Any], key: str, says: str
) -> None:
    """A value of the wrong shape anywhere in an entry is a ManifestError naming the manifest,
    the entry (index and name) and the key, never a Python TypeError, never silently taken."""
    data = _manifest(tmp_path)
    entry = data["artifacts"][0]
    _apply(entry, change, gone=_GONE)
    path = _write(tmp_path, data)
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    message = str(info.value)
    assert message.startswith(f"{path}: artifacts[0] ({entry.get('name', '?')}): "), message
    at = f"missing key '{key}'" if says == "missing" else f"key '{key}': "
    assert at in message and (says == "missing" or re.search(says, message)), message


def test_a_malformed_manifest_is_exit_2_at_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``run`` with a ``"files": null`` entry exits 2 with the file, entry and key on stderr
    (was: exit 1, ``TypeError: 'NoneType' object is not iterable``)."""
    manifest = _write(tmp_path, _manifest(tmp_path, files=None))
    matrix = tmp_path / "m.toml"
    matrix.write_text(MATRIX)
    out = tmp_path / "run"
    code = main(["run", "--matrix", str(matrix), "--out", str(out), "--artifacts", str(manifest)])
    assert code == 2
    assert f"{manifest}: artifacts[0] (a): key 'files': expected a list" in capsys.readouterr().err
    assert not (out / "results.csv").exists()


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


def test_a_file_changed_since_its_manifest_entry_names_the_manifest(tmp_path: Path) -> None:
    """The hash mismatch says which manifest the expected hash is from (the file path), as a
    profile artifact's says which table (tests/project/test_project_artifacts.py)."""
    path = _write(tmp_path, _manifest(tmp_path))
    art = load_manifest(path)["a"]
    (tmp_path / "a.so").write_bytes(b"rebuilt")
    with pytest.raises(ArtifactHashMismatch) as caught:
        verify_artifact(art)
    assert (
        f"but the manifest says {art.sha256} (its manifest entry ({path})); rebuild it and its "
        "manifest entry" in str(caught.value)
    )


def test_an_entry_without_a_binding_says_the_bundled_one_was_assumed(tmp_path: Path) -> None:
    """An entry naming no binding is bound by the bundled one: an export it lacks is an error at
    harness/bindings/tinygpt.toml, which adds that the entry names none and where one goes. An
    artifact declared nowhere (built in code) gets the bundled binding unchanged."""
    path = _write(tmp_path, _manifest(tmp_path))
    art = load_manifest(path)["a"]
    with pytest.raises(BindingError) as caught:
        art.bound().check_exports({}, 64, "artifact a (a.so)")
    message = str(caught.value)
    assert message.startswith(f"{bundled().path}:")
    assert message.endswith(
        "; artifact a names no binding, so the bundled library's (tinygpt.h's exports) was "
        f'assumed: name the project\'s own binding file with `"binding": "..."` in its manifest '
        f"entry ({path}) (docs/bindings.md)"
    )
    assert art.bound() == bundled()  # the same binding in every other respect
    assert replace(art, origin=None).bound() is bundled()


def _two_files(tmp_path: Path, path: str) -> dict[str, Any]:
    """A valid emscripten entry (glue is its entry role) whose ``files`` list the wasm first."""
    (tmp_path / "k.js").write_text("// glue")
    (tmp_path / "k.wasm").write_bytes(b"\0asm")
    each, sha = digest({"wasm": tmp_path / "k.wasm", "glue": tmp_path / "k.js"})
    files = [{"role": f.role, "path": f.path.name, "sha256": f.sha256} for f in each]
    return _manifest(tmp_path, format="emscripten", path=path, sha256=sha, files=files,
                     ptr_width=32, target="wasm32-emscripten")  # fmt: skip


def test_a_hand_written_manifest_may_list_its_files_in_any_order(tmp_path: Path) -> None:
    """The entry file need not be listed first: the entry keeps the format's role order."""
    art = load_manifest(_write(tmp_path, _two_files(tmp_path, "k.js")))["a"]
    assert [f.role for f in art.file_set()] == ["glue", "wasm"]
    assert art.path == (tmp_path / "k.js").resolve()


def test_a_path_that_is_not_the_entry_role_names_the_entry_file(tmp_path: Path) -> None:
    """``path`` naming the wasm of an emscripten entry is refused, naming the glue and its role."""
    with pytest.raises(ManifestError, match=r"key 'path': .*k\.wasm is not the entry file, "
                       r".*k\.js \(role 'glue', the emscripten format's entry role\)"):  # fmt: skip
        load_manifest(_write(tmp_path, _two_files(tmp_path, "k.wasm")))
