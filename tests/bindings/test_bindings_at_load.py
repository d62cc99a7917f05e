"""A binding that does not fit its module stops ``run`` at load: exit 2, the binding's
``file:line`` and the cause on stderr, no run directory, no host started.

Real modules: copies of the built artifacts (``artifacts/build`` when fresh, else a build into a
temporary directory) and lib2 built natively, each given a small bad binding in a temporary
manifest. A missing or edited file stays what it was before this check: its cell's ``error``.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import pytest

from harness.artifact import MANIFEST_SCHEMA, Artifact, load_manifest
from harness.bindings import BUNDLED, BindingError, load_binding
from harness.bindings.verify import check_artifact
from harness.build import (
    DEFAULT_OUT,
    EMCC_INSTALL,
    MANIFEST,
    build_all,
    emcc_path,
    manifest_is_fresh,
)
from harness.build_lib2 import build_lib2_emscripten, build_lib2_native
from harness.cli import main
from harness.formats import FileDigest, digest
from harness.rundir.reader import read_rows
from harness.rundir.rows import RESULTS_FILE
from harness.rundir.verdict import cell_verdicts

LIB2_BINDING = Path(__file__).resolve().parents[2] / "artifacts" / "lib2" / "lib2.binding.toml"
needs_emcc = pytest.mark.skipif(emcc_path() is None, reason=f"install: {EMCC_INSTALL}")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Artifact]:
    """The bundled library's artifacts (with the em-* ones when emcc is installed)."""
    if manifest_is_fresh(DEFAULT_OUT):
        return load_manifest(DEFAULT_OUT / MANIFEST)
    return build_all(tmp_path_factory.mktemp("build"), emscripten=emcc_path() is not None)


@pytest.fixture(scope="module")
def lib2_em(tmp_path_factory: pytest.TempPathFactory) -> Artifact:
    """lib2 built by emcc as wasm32, as a manifest entry bound by lib2's binding file."""
    name = "lib2-em-wasm32"
    files, sha = digest(build_lib2_emscripten(tmp_path_factory.mktemp("lib2em"), [name])[name])
    return Artifact(name="lib2-em-wasm32", format="emscripten", path=files[0].path, sha256=sha,
                    ptr_width=32, target="wasm32-unknown-emscripten", files=files,
                    binding=LIB2_BINDING)  # fmt: skip


@pytest.fixture(scope="module")
def lib2_native(tmp_path_factory: pytest.TempPathFactory) -> Artifact:
    """lib2 built natively (zig cc), as a manifest entry bound by lib2's binding file."""
    so = build_lib2_native(tmp_path_factory.mktemp("lib2"))
    files, sha = digest({"so": so})
    return Artifact(name="lib2-native", format="native", path=so, sha256=sha, ptr_width=64,
                    target="x86_64-linux-gnu", files=files, binding=LIB2_BINDING)  # fmt: skip


def _copy(art: Artifact, root: Path, binding: Path | None) -> Artifact:
    """``art``'s files copied under ``root/<name>/`` (same hashes), bound by ``binding``."""
    d = root / art.name
    d.mkdir(parents=True, exist_ok=True)
    files = tuple(
        FileDigest(f.role, Path(shutil.copy(f.path, d / f.path.name)), f.sha256)
        for f in art.file_set()
    )
    return dataclasses.replace(art, path=files[0].path, files=files, binding=binding)


def _bind(tmp: Path, text: str, name: str = "bad.binding.toml") -> Path:
    path = tmp / name
    path.write_text(text)
    return path


def _edit(source: Path, old: str, new: str) -> str:
    """``source``'s text with ``old`` (which must occur once) replaced by ``new``, its
    ``header`` made absolute (a relative one is relative to the binding file, not the copy)."""
    text = source.read_text()
    assert text.count(old) == 1, old
    return _absolute_header(source, text.replace(old, new))


def _absolute_header(source: Path, text: str) -> str:
    return re.sub(r'^header = "([^"]+)"',
                  lambda m: f'header = "{(source.parent / m.group(1)).resolve()}"', text,
                  flags=re.M)  # fmt: skip


def _line(path: Path, needle: str) -> int:
    """The 1-based line of ``path`` holding ``needle``."""
    return next(i for i, s in enumerate(path.read_text().splitlines(), 1) if needle in s)


def _run(
    tmp: Path, arts: list[Artifact], host: str, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, Path]:
    """``tinygpt-harness run`` of ``arts`` on ``host`` (smoke, tiny) from a tmp manifest;
    returns (exit code, stderr, the --out directory)."""
    manifest = tmp / "manifest.json"
    manifest.write_text(json.dumps({"schema": MANIFEST_SCHEMA,
                                    "artifacts": [a.to_json(tmp) for a in arts]}))  # fmt: skip
    matrix = tmp / "m.toml"
    names = ", ".join(f'"{a.name}"' for a in arts)
    matrix.write_text(f'name = "bind"\nartifacts = [{names}]\npresets = ["tiny"]\n'
                      f'checks = ["smoke"]\ntimeout_s = 60\n[hosts]\n{host} = {{}}\n')  # fmt: skip
    out = tmp / "run"
    capsys.readouterr()
    code = main(["run", "--matrix", str(matrix), "--out", str(out), "--artifacts", str(manifest)])
    return code, capsys.readouterr().err, out


def _assert_refused(code: int, err: str, out: Path, binding: Path, line: int, cause: str) -> None:
    """Exit 2, one stderr message at ``binding:line`` matching ``cause``, nothing run."""
    assert code == 2, err
    assert f"{binding}:{line}: " in err, err
    assert re.search(cause, err), err
    assert not out.exists(), "the run started"


# -- a missing export --------------------------------------------------------------------


def test_lib2_binding_naming_a_missing_export_is_exit_2_before_the_native_host_starts(
    lib2_native: Artifact, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """lib2's binding with `matmul_forwardx`: its line, the name, the library, the near miss
    (the .so's ELF dynamic symbols hold no types: existence is what a native module shows)."""
    bad = _bind(tmp_path, _edit(LIB2_BINDING, 'export = "matmul_forward"',
                                'export = "matmul_forwardx"'))  # fmt: skip
    code, err, out = _run(tmp_path, [_copy(lib2_native, tmp_path, bad)], "native", capsys)
    _assert_refused(code, err, out, bad, _line(bad, "matmul_forwardx"),
                    r"export 'matmul_forwardx' is not in artifact lib2-native \(.*liblib2\.so\) "
                    r"\(did you mean matmul_forward[,?]")  # fmt: skip


@needs_emcc
def test_missing_export_in_an_emscripten_module_is_exit_2(
    built: dict[str, Artifact], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The bundled binding naming `tg_matmul_forwardx` against em-wasm32's .wasm."""
    bad = _bind(tmp_path, _edit(BUNDLED, '"tg_matmul_forward"', '"tg_matmul_forwardx"'))
    code, err, out = _run(tmp_path, [_copy(built["em-wasm32"], tmp_path, bad)], "node24", capsys)
    _assert_refused(code, err, out, bad, _line(bad, "tg_matmul_forwardx"),
                    r"export 'tg_matmul_forwardx' is not in artifact em-wasm32 \(.*em-wasm32/"
                    r"tinygpt\.wasm\) \(did you mean tg_matmul_forward[,?]")  # fmt: skip


# -- a wrong arity (the wasm type section) -------------------------------------------------

ONE_TOO_MANY = ('args = ["out", "mean", "rstd", "x", "w", "b", "N", "C"]\n'
                'fixed = { eps = 1e-5 }', 'args = ["out", "mean", "rstd", "x", "w", "b", "N", '
                '"C", "eps"]')  # fmt: skip


@pytest.mark.parametrize("name", ["wasm32", "wasm64", pytest.param("em-wasm32", marks=needs_emcc),
                                  pytest.param("em-wasm64", marks=needs_emcc)])  # fmt: skip
def test_an_export_given_one_argument_too_many_is_exit_2_with_both_types(
    name: str, built: dict[str, Artifact], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """LayerNorm bound with `eps` as a ninth argument where tinygpt.h builds it in: the wasm
    type section has 8 parameters; the message gives both, at the module's pointer width."""
    bad = _bind(tmp_path, _edit(BUNDLED, *ONE_TOO_MANY))
    host = "wasmtime" if built[name].format == "wasm" else "node24"
    code, err, out = _run(tmp_path, [_copy(built[name], tmp_path, bad)], host, capsys)
    p = "i64" if built[name].ptr_width == 64 else "i32"
    _assert_refused(code, err, out, bad, _line(bad, '"C", "eps"]'),
                    rf"export 'tg_layernorm_forward' takes 8 arguments in artifact {name} "
                    rf"\(.*\) \(wasm type \(({p}, ){{6}}i32, i32\) -> \(\)\), the binding gives "
                    r"it 9 \(ptr ptr ptr ptr ptr ptr i32 i32 f32\)")  # fmt: skip


@needs_emcc
def test_lib2_matmul_given_a_bias_it_lacks_is_exit_2(
    lib2_em: Artifact, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """lib2's matmul has no bias; a binding that passes the canonical `b` gives it 7 arguments
    where its emscripten build's type section has 6 (lib2's own binding fits the build)."""
    check_artifact(lib2_em)
    bad = _bind(tmp_path, _edit(LIB2_BINDING, 'args = ["x", "W", "out", "N", "C", "OC"]',
                                'args = ["x", "W", "b", "out", "N", "C", "OC"]'))  # fmt: skip
    code, err, out = _run(tmp_path, [_copy(lib2_em, tmp_path, bad)], "node24", capsys)
    _assert_refused(code, err, out, bad, _line(bad, '"W", "b", "out"'),
                    r"export 'matmul_forward' takes 6 arguments in artifact lib2-em-wasm32 "
                    r"\(.*lib2\.wasm\) \(wasm type \(i32, i32, i32, i32, i32, i32\) -> \(\)\), "
                    r"the binding gives it 7 \(ptr ptr ptr ptr i32 i32 i32\)")  # fmt: skip


@pytest.mark.parametrize("name", ["wasm64", pytest.param("em-wasm64", marks=needs_emcc)])
def test_an_export_given_the_wrong_kinds_is_exit_2(
    name: str, built: dict[str, Artifact], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The right count, a wrong kind: GELU's `N` declared a size_t is a pointer-width integer,
    i64 on a Memory64 build whose export takes an i32 there."""
    bad = _bind(tmp_path, _edit(BUNDLED, 'args = ["out", "x", "N"]\n',
                                'args = ["out", "x", "N"]\nsize_t = ["N"]\n'))  # fmt: skip
    host = "wasmtime" if built[name].format == "wasm" else "node24"
    code, err, out = _run(tmp_path, [_copy(built[name], tmp_path, bad)], host, capsys)
    _assert_refused(code, err, out, bad, _line(bad, 'args = ["out", "x", "N"]'),
                    rf"export 'tg_gelu_forward' has wasm type \(i64, i64, i32\) -> \(\) in "
                    rf"artifact {name} .*, the binding's kinds \(ptr ptr ptr -> void\) at "
                    r"64-bit pointers are \(i64, i64, i64\) -> \(\)")  # fmt: skip


# -- an unknown op, an unknown key: load_binding's own errors, through the manifest ----------


@pytest.mark.parametrize(
    ("old", "new", "needle", "cause"),
    [
        (
            "[ops.matmul_forward]",
            "[ops.matmul_fwd]",
            "[ops.matmul_fwd]",
            r"ops.matmul_fwd: unknown key; allowed: embedding_forward, ",
        ),
        (
            "[ops.gelu_forward]\n",
            "[ops.gelu_forward]\ntranspose = true\n",
            "transpose",
            r"ops.gelu_forward.transpose: unknown key; allowed: export, args, roles, fixed, ",
        ),
    ],
    ids=["unknown op", "unknown key"],
)
def test_unknown_op_or_key_is_exit_2_at_its_line(
    old: str, new: str, needle: str, cause: str,
    built: dict[str, Artifact], tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """`[ops.matmul_fwd]` and a key no op has: exit 2 from the manifest's load, naming the
    manifest entry and the binding's file:line."""
    bad = _bind(tmp_path, _edit(BUNDLED, old, new))
    code, err, out = _run(tmp_path, [_copy(built["wasm32"], tmp_path, bad)], "wasmtime", capsys)
    _assert_refused(code, err, out, bad, _line(bad, needle), cause)
    assert "artifacts[0] (wasm32): key 'binding': " in err


# -- what stays a cell's error ------------------------------------------------------------


def test_missing_or_edited_files_with_a_bad_binding_stay_cell_errors(
    built: dict[str, Artifact], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A binding that names a missing export is not checked against a file that is not the
    manifest's: a deleted .so and an edited .wasm are their cells' `error`, the run goes on
    (exit 1), as without the check."""
    bad = _bind(tmp_path, _edit(BUNDLED, '"tg_matmul_forward"', '"tg_matmul_forwardx"'))
    gone = _copy(built["native"], tmp_path, bad)
    gone.path.unlink()
    edited = _copy(built["wasm32"], tmp_path, bad)
    edited.path.write_bytes(edited.path.read_bytes() + b"\0")
    for art, host, cause in ((gone, "native", "no so file at"),
                             (edited, "wasmtime", "but the manifest says")):  # fmt: skip
        code, err, out = _run(tmp_path / art.name, [art], host, capsys)
        assert code == 1, err
        status, detail = cell_verdicts(read_rows(out / RESULTS_FILE))[f"{host}/{art.name}/tiny"]
        assert status == "error" and cause in detail


def test_a_corrupt_module_is_not_a_binding_error(
    built: dict[str, Artifact], tmp_path: Path
) -> None:
    """Bytes that hash as the manifest says but are no module or library (a hand-made entry)
    are left to the cell's load: the check at load says nothing."""
    bad = load_binding(_bind(tmp_path, _edit(BUNDLED, '"tg_matmul_forward"',
                                              '"tg_matmul_forwardx"')))  # fmt: skip
    for name in ("wasm32", "native"):
        junk = tmp_path / f"junk-{name}"
        junk.write_bytes(b"\x7fELF not really" if name == "native" else b"\0asm\x01junk")
        files, sha = digest({built[name].fmt.roles[0]: junk})
        art = dataclasses.replace(built[name], path=junk, files=files, sha256=sha,
                                  binding=bad.path)  # fmt: skip
        check_artifact(art)  # no BindingError


def test_every_built_artifact_fits_its_binding(built: dict[str, Artifact], tmp_path: Path) -> None:
    """The bundled binding fits every artifact the build makes, and the check bites on each:
    an export renamed in the binding is refused."""
    renamed = _bind(tmp_path, _edit(BUNDLED, '"tg_gelu_backward"', '"tg_gelu_backwards"'))
    for art in built.values():
        check_artifact(art)
        if art.binding is not None:  # another library's build: its own binding fits it
            continue
        with pytest.raises(BindingError, match=r"export 'tg_gelu_backwards' is not in artifact"):
            check_artifact(dataclasses.replace(art, binding=renamed))


def test_lib2_fits_its_binding_and_a_renamed_export_is_refused(
    lib2_native: Artifact, tmp_path: Path
) -> None:
    """lib2's own binding fits its native build; the allocator renamed is refused at the
    `alloc` line of [memory]."""
    check_artifact(lib2_native)
    bad = _bind(tmp_path, _edit(LIB2_BINDING, 'alloc = "tg_malloc"', 'alloc = "l2_malloc"'))
    line = _line(bad, 'alloc = "l2_malloc"')
    with pytest.raises(BindingError, match=rf"^{re.escape(str(bad))}:{line}: export 'l2_malloc'"):
        check_artifact(dataclasses.replace(lib2_native, binding=bad))


# -- an entry whose width or target its module contradicts -----------------------------------


@pytest.mark.parametrize(
    ("name", "change", "cause"),
    [
        ("wasm32", {"ptr_width": 64}, r"ptr_width = 64, but .*wasm32.*linear memory is 32-bit"),
        (
            "wasm64",
            {"ptr_width": 32},
            r"ptr_width = 32, but .*linear memory is 64-bit \(Memory64\)",
        ),
        (
            "wasm32",
            {"target": "wasm64-freestanding", "features": ("memory64",)},
            r"target 'wasm64-freestanding' and features list 'memory64', but .*32-bit: the "
            r"entry names a 32-bit build where it claims a 64-bit one",
        ),
        ("native", {"ptr_width": 32}, r"ptr_width = 32, but .*is an ELF64 library"),
    ],
)
def test_an_entry_its_module_contradicts_is_exit_2_naming_the_entry_not_the_binding(
    name: str,
    change: dict[str, object],
    cause: str,
    built: dict[str, Artifact],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A manifest entry that names the wasm32 module as the Memory64 build (the "Node passes
    XL" mistake: it ran the 32-bit binary), or declares the other pointer width: exit 2 at load
    naming the manifest and the entry, before the binding's export check would blame the
    (correct) binding for every pointer argument; nothing runs."""
    art = dataclasses.replace(_copy(built[name], tmp_path, None), **change)  # type: ignore[arg-type]
    code, err, out = _run(tmp_path, [art], "wasmtime" if name != "native" else "native", capsys)
    assert code == 2, err
    assert f"manifest.json: artifact {name!r}: " in err, err
    assert re.search(cause, err) and "binding" not in err, err
    assert not out.exists(), "the run started"


@needs_emcc
def test_an_emscripten_module_without_its_allocator_is_exit_2(
    built: dict[str, Artifact], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """em-wasm32's glue with a .wasm that exports every bound export but not ``malloc``/
    ``free`` (the freestanding build's module): the format's allocator is missing, the same
    build mistake as a missing bound export, so exit 2 at load naming both, not a cell error."""
    em = _copy(built["em-wasm32"], tmp_path, None)
    paths = em.paths()
    shutil.copy(built["wasm32"].path, paths["wasm"])
    files, sha = digest(paths)
    art = dataclasses.replace(em, files=files, sha256=sha, path=files[0].path)
    code, err, out = _run(tmp_path, [art], "node24", capsys)
    assert code == 2, err
    assert "the emscripten format's allocator ('malloc', 'free')" in err, err
    assert not out.exists(), "the run started"
