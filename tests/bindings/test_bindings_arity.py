"""A native library's export arities, which its ELF symbol table cannot show, checked at load.

A fixture library (``fx_gelu`` of 4 arguments, ``fx_gelu3`` of 3, a variadic ``fx_sum``) is
built by the build's zig cc with and without ``-g``; a binding binds one of them as the canonical
``gelu_forward`` (3 arguments). The arity comes from the ``.so``'s DWARF (pyelftools) and/or a C
header the binding names (``zig cc -E`` + pycparser); a wrong one is exit 2 at the binding's
``args`` line; with neither source, the run says so in one line and records it in run.json.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from harness.artifact import MANIFEST_SCHEMA, Artifact
from harness.bindings import BindingError
from harness.bindings.verify import check_artifact
from harness.build import Variant, build_variant, run_tool, zig_command
from harness.build_lib2 import lib2_native_artifact
from harness.cli import main
from harness.formats import digest
from harness.formats.native_arity import dwarf_prototypes, header_prototypes
from harness.rundir.meta import RUN_FILE

# The library: fx_gelu takes a 4th argument (a scale) the canonical gelu_forward does not have;
# fx_gelu3 is the same with 3, the arity the canonical op gives.
SOURCE = """\
#include "fx.h"
void fx_gelu(float *out, const float *x, int n, float scale) {
    for (int i = 0; i < n; i++) out[i] = x[i] * scale;
}
void fx_gelu3(float *out, const float *x, int n) {
    for (int i = 0; i < n; i++) out[i] = x[i];
}
int fx_sum(int n, ...) { return n; }
"""
HEADER = """\
#ifndef FX_H
#define FX_H
#if defined(__GNUC__)
#define FX_API __attribute__((visibility("default")))
#else
#define FX_API
#endif
FX_API void fx_gelu(float *out, const float *x, int n, float scale);
FX_API void fx_gelu3(float *out, const float *x, int n);
FX_API int fx_sum(int n, ...);
#endif
"""


def _binding(tmp: Path, export: str, header: str | None = None) -> Path:
    """A binding of ``export`` as gelu_forward (out, x, N), naming ``header`` if given."""
    path = tmp / f"fx-{export}-{header or 'none'}.binding.toml"
    head = f'header = "{header}"\n' if header else ""
    path.write_text(f'[binding]\nname = "fx"\n{head}\n[ops.gelu_forward]\n'
                    f'export = "{export}"\nargs = ["out", "x", "N"]\n')  # fmt: skip
    return path


@pytest.fixture(scope="module")
def fixture_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture's source and header, and its .so built with -g (fx-g.so) and without
    (fx-g0.so)."""
    d = tmp_path_factory.mktemp("arity")
    (d / "fx.c").write_text(SOURCE)
    (d / "fx.h").write_text(HEADER)
    for name, flag in (("fx-g.so", "-g"), ("fx-g0.so", "-g0")):
        run_tool([*zig_command(), "cc", "-shared", "-O2", flag, f"-I{d}", str(d / "fx.c"),
                  "-o", str(d / name)], f"zig cc {name}")  # fmt: skip
    return d


def _artifact(so: Path, binding: Path, name: str = "fx") -> Artifact:
    files, sha = digest({"so": so})
    return Artifact(name=name, format="native", path=so, sha256=sha, ptr_width=64,
                    target="x86_64-linux-gnu", files=files, binding=binding)  # fmt: skip


def _run(
    fixture_dir: Path, tmp_path: Path, art: Artifact, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, Path]:
    """``tinygpt-harness run`` of ``art`` (smoke, tiny, native host): (exit code, stderr, --out)."""
    manifest = tmp_path / "manifest.json"
    # entries are relative to the manifest's directory; these are absolute (the fixture's)
    entry = art.to_json(fixture_dir)
    entry.update(path=str(art.path), files=[{**f, "path": str(art.path)} for f in entry["files"]],
                 binding=str(art.binding))  # fmt: skip
    manifest.write_text(json.dumps({"schema": MANIFEST_SCHEMA, "artifacts": [entry]}))
    matrix = tmp_path / "m.toml"
    matrix.write_text(f'name = "fx"\nartifacts = ["{art.name}"]\npresets = ["tiny"]\n'
                      'checks = ["smoke"]\ntimeout_s = 60\n[hosts]\nnative = {}\n')  # fmt: skip
    out = tmp_path / "run"
    capsys.readouterr()
    code = main(["run", "--matrix", str(matrix), "--out", str(out), "--artifacts", str(manifest)])
    return code, capsys.readouterr().err, out


def test_dwarf_gives_each_external_function_and_a_build_without_g_none(fixture_dir: Path) -> None:
    """pyelftools reads the -g build's subprograms (variadic marked, the file:line of each);
    the -g0 build has no .debug_info: None, not a guess."""
    protos = dwarf_prototypes(fixture_dir / "fx-g.so")
    assert protos is not None
    assert (protos["fx_gelu"].arity, protos["fx_gelu3"].arity) == (4, 3)
    assert protos["fx_sum"].arity == 1 and protos["fx_sum"].variadic
    assert re.fullmatch(r".*fx\.c:2", protos["fx_gelu"].where)
    assert dwarf_prototypes(fixture_dir / "fx-g0.so") is None


def test_the_header_is_parsed_by_a_c_parser(fixture_dir: Path) -> None:
    """The header's prototypes through zig cc -E and pycparser: arity, variadic, file:line."""
    protos = header_prototypes(fixture_dir / "fx.h")
    assert {n: (p.arity, p.variadic) for n, p in protos.items()} == {
        "fx_gelu": (4, False), "fx_gelu3": (3, False), "fx_sum": (1, True)}  # fmt: skip
    assert protos["fx_gelu3"].where == f"{fixture_dir / 'fx.h'}:9"


def test_a_wrong_arity_is_a_binding_error_at_the_args_line_from_dwarf(fixture_dir: Path) -> None:
    """With DWARF: a binding giving fx_gelu 3 arguments is refused at its `args` line, naming
    where the function is declared; fx_gelu3 fits."""
    bad = _binding(fixture_dir, "fx_gelu")
    with pytest.raises(BindingError) as err:
        check_artifact(_artifact(fixture_dir / "fx-g.so", bad))
    assert re.fullmatch(
        rf"{re.escape(str(bad))}:6: export 'fx_gelu' takes 4 arguments in artifact fx "
        r"\(.*fx-g\.so\) \(DWARF: declared at .*fx\.c:2\), the binding gives it 3 "
        r"\(ptr ptr i32\)", str(err.value))  # fmt: skip
    ok = check_artifact(_artifact(fixture_dir / "fx-g.so", _binding(fixture_dir, "fx_gelu3")))
    assert ok == "arity checked from DWARF (1 of 1 exports)"


def test_a_wrong_arity_is_a_binding_error_from_the_header(fixture_dir: Path) -> None:
    """Without DWARF, the header the binding names catches the same binding."""
    bad = _binding(fixture_dir, "fx_gelu", "fx.h")
    with pytest.raises(BindingError, match=r":7: export 'fx_gelu' takes 4 arguments .*\(header: "
                       r"declared at .*fx\.h:8\), the binding gives it 3"):  # fmt: skip
        check_artifact(_artifact(fixture_dir / "fx-g0.so", bad))
    ok = _binding(fixture_dir, "fx_gelu3", "fx.h")
    assert check_artifact(_artifact(fixture_dir / "fx-g.so", ok)) == (
        "arity checked from DWARF and header fx.h (1 of 1 exports)")  # fmt: skip


def test_run_with_a_wrong_arity_exits_2_before_any_host_starts(
    fixture_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Through ``tinygpt-harness run``: exit 2, the binding's file:line on stderr, no run
    directory (as a wasm type-section mismatch)."""
    bad = _binding(fixture_dir, "fx_gelu", "fx.h")
    code, err, out = _run(fixture_dir, tmp_path, _artifact(fixture_dir / "fx-g.so", bad), capsys)
    assert code == 2, err
    assert f"{bad}:7: export 'fx_gelu' takes 4 arguments" in err
    assert not out.exists()


def test_an_unparsable_header_is_a_binding_error_at_its_line(fixture_dir: Path) -> None:
    """A header pycparser cannot read stops the load at the binding's `header` line."""
    (fixture_dir / "broken.h").write_text("void fx_gelu3(float *out, const float *x, int n\n")
    bad = _binding(fixture_dir, "fx_gelu3", "broken.h")
    with pytest.raises(BindingError, match=r":3: pycparser cannot parse .*broken\.h"):
        check_artifact(_artifact(fixture_dir / "fx-g0.so", bad))


def test_without_dwarf_or_header_the_run_says_so_and_records_it(
    fixture_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Neither source: the load prints one line and run.json's artifact entry records it; the
    run goes on (its cells run: exit 0 or 1, never 2)."""
    art = _artifact(fixture_dir / "fx-g0.so", _binding(fixture_dir, "fx_gelu3"))
    assert check_artifact(art) == "arity unchecked: no DWARF, no header"
    code, err, out = _run(fixture_dir, tmp_path, art, capsys)
    assert code in (0, 1), err
    lines = [ln for ln in err.splitlines() if "arity" in ln]
    assert lines == ["tinygpt-harness run: fx: arity unchecked: no DWARF, no header"]
    meta = json.loads((out / RUN_FILE).read_text())
    assert meta["artifacts"]["fx"]["arity"] == "arity unchecked: no DWARF, no header"


def test_the_shipped_native_builds_are_checked_from_their_headers(tmp_path: Path) -> None:
    """The bundled library and lib2, built natively, have every bound export's arity checked
    against tinygpt.h and lib2.h (their bindings name them)."""
    bundled = build_variant(tmp_path, Variant("native-arity", "native", ()))
    assert re.fullmatch(r"arity checked from header tinygpt\.h \((\d+) of \1 exports\)",
                        check_artifact(bundled))  # fmt: skip
    assert check_artifact(lib2_native_artifact(tmp_path)) == (
        "arity checked from header lib2.h (19 of 19 exports)")  # fmt: skip
