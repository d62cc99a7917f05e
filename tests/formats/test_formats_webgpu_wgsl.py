"""kernels.toml's load-time WGSL checks (docs/webgpu.md "Checks at load"), without a browser.

The validator reads each pass's shader as its live code: comments (``//`` lines, ``/* */``
blocks, which nest) are not the shader's, a declaration's ``@group``/``@binding`` come in either
order, and an entry point declared twice is left to the compiler rather than one of its sizes
picked. A wrong verdict here is a valid shader refused with exit 2, or a wrong one let through.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.formats.webgpu import (
    WebGpuManifestError,
    load_gpu_manifest,
    module_consts,
    strip_comments,
)

KERNELS = """\
[webgpu]
name = "mini"

[ops.gelu_forward]
export = "gf_gelu"
args = ["x", "out", "N"]
buffers = { x = "N", out = "N" }
layout = ["x:read-only-storage", "out:storage", "params:uniform"]
params = ["N"]
[[ops.gelu_forward.passes]]
shader = "gelu.wgsl"
entry = "main"
workgroup_size = [128, 1, 1]
dispatch = ["cdiv(N, 128)", "1", "1"]
"""
DECLS = """\
struct Dims { count: u32 }
@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@group(0) @binding(2) var<uniform> dims: Dims;
"""
ENTRY = """\
@compute @workgroup_size(128, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  if (gid.x < dims.count) { dst[gid.x] = src[gid.x]; }
}
"""


def _load(tmp: Path, shader: str, kernels: str = KERNELS) -> None:
    """Validate ``kernels`` against one shader file ``gelu.wgsl`` of text ``shader``."""
    (tmp / "kernels.toml").write_text(kernels)
    (tmp / "gelu.wgsl").write_text(shader)
    load_gpu_manifest(tmp / "kernels.toml", {"gelu.wgsl": tmp / "gelu.wgsl"})


@pytest.mark.parametrize(
    "shader",
    [
        # an old declaration, of another type than the layout's, in a block comment
        DECLS + "/* old:\n@group(0) @binding(1) var<storage, read> olddst: array<f32>;\n*/\n"
        + ENTRY,
        # a planned entry of another size after the live one, in a block comment
        DECLS + ENTRY + "/* planned:\n@compute @workgroup_size(256, 1, 1)\nfn main() {}\n*/\n",
        # the same as a line comment
        DECLS + ENTRY + "// TODO: @compute @workgroup_size(256, 1, 1) fn main on real GPUs\n",
        # nested blocks: the inner */ does not end the outer comment
        DECLS + ENTRY + "/* a /* b */ @compute @workgroup_size(64) fn main() {} */\n",
        # a // inside a block does not hide the block's end
        DECLS + "/* x // y */ " + ENTRY,
        # the declarations' attributes the other way round
        DECLS.replace("@group(0) @binding(", "@binding(").replace(") var", ") @group(0) var")
        + ENTRY,
    ],
    ids=["block-old-decl", "block-entry-after", "line-entry-after", "nested", "slashes-in-block",
         "binding-then-group"],
)  # fmt: skip
def test_a_valid_shader_with_comments_or_either_attribute_order_loads(
    tmp_path: Path, shader: str
) -> None:
    """What a comment holds is not the shader's: a commented-out old declaration or entry point
    (before or after the live one, in any comment form) is not checked against kernels.toml."""
    _load(tmp_path, shader)


def test_a_binding_then_group_declaration_is_checked_against_the_layout(tmp_path: Path) -> None:
    """``@binding(1) @group(0)`` is a declaration like the other order: of the wrong type, it
    is refused at the layout entry's line (it used to go unchecked)."""
    decls = DECLS.replace(
        "@group(0) @binding(1) var<storage, read_write>", "@binding(1) @group(0) var<storage, read>"
    )
    with pytest.raises(WebGpuManifestError) as err:
        _load(tmp_path, decls + ENTRY)
    assert "declares @binding(1) dst as var<storage, read>" in str(err.value)


def test_the_live_entry_is_checked_not_a_commented_one(tmp_path: Path) -> None:
    """With the live entry's size wrong, the error names the live size, whatever a comment
    before or after it says."""
    live = ENTRY.replace("(128, 1, 1)", "(64, 1, 1)")
    shader = DECLS + "// @compute @workgroup_size(128, 1, 1) fn main\n" + live
    shader += "/* @compute @workgroup_size(128, 1, 1) fn main */\n"
    with pytest.raises(WebGpuManifestError) as err:
        _load(tmp_path, shader)
    assert "kernels.toml:13: " in str(err.value)
    assert "declares main @workgroup_size(64, 1, 1)" in str(err.value)


def test_an_entry_declared_twice_is_left_to_the_compiler(tmp_path: Path) -> None:
    """Two live ``fn main`` do not compile (the cell's error, in the compiler's words); the
    validator does not pick one of their sizes to refuse the manifest by."""
    _load(tmp_path, DECLS + ENTRY + ENTRY.replace("(128, 1, 1)", "(256, 1, 1)"))


def test_strip_comments_keeps_lines_and_code() -> None:
    """Comments become blanks, line breaks stay (line numbers hold), code is untouched."""
    text = "a /* b\n/* c */ d\n*/ e // f\ng"
    out = strip_comments(text)
    assert out.split("\n")[0].rstrip() == "a" and out.count("\n") == text.count("\n")
    assert out.split("\n")[2].strip() == "e" and out.split("\n")[3] == "g"
    assert strip_comments("x /* never closed\ny") == "x                \n "


@pytest.mark.parametrize(
    "decl",
    ["const WG: u32 = 128u;", "const WG = 128;", "const WG = 0x80u;", "const WG: i32 = 128i;"],
)
def test_a_workgroup_size_naming_a_module_const_resolves(tmp_path: Path, decl: str) -> None:
    """Valid WGSL ``@workgroup_size(WG, 1, 1)`` with a module-scope ``const WG`` of an integer
    literal is checked by its value (was: refused, "not integer literals")."""
    _load(tmp_path, DECLS + decl + "\n" + ENTRY.replace("(128, 1, 1)", "(WG, 1, 1)"))
    wrong = ENTRY.replace("(128, 1, 1)", "(WG, 1, 1)")
    with pytest.raises(WebGpuManifestError, match=r"declares main @workgroup_size\(64, 1, 1\)"):
        _load(tmp_path, DECLS + "const WG = 64u;\n" + wrong)


def test_a_workgroup_size_it_cannot_resolve_is_refused_naming_the_limit(tmp_path: Path) -> None:
    """An ``override``, a const expression or a function-scope const: still refused at the
    workgroup_size line, saying what the check resolves (a documented limitation)."""
    for decl in ("override WG: u32 = 128u;", "const WG = 64u * 2u;", "fn f() { const WG = 128u; }"):
        with pytest.raises(WebGpuManifestError) as err:
            _load(tmp_path, DECLS + decl + "\n" + ENTRY.replace("(128, 1, 1)", "(WG, 1, 1)"))
        assert "kernels.toml:13: " in str(err.value)
        assert "'WG' is not an integer literal or a module-scope `const` of one" in str(err.value)
    assert module_consts("const A = 1u; const A = 2u; const B = 3;") == {"A": None, "B": 3}


def test_a_declaration_of_the_wrong_type_is_refused_at_its_layout_entry(tmp_path: Path) -> None:
    """The layout says each binding's type: a shader declaring another is refused at the
    layout entry's line, not the pass's ``shader`` line (binding 1 here: line 8's array)."""
    kernels = KERNELS.replace(
        'layout = ["x:read-only-storage", "out:storage", "params:uniform"]',
        'layout = [\n  "x:read-only-storage",\n  "out:read-only-storage",\n  "params:uniform",\n]',
    )
    with pytest.raises(WebGpuManifestError) as err:
        _load(tmp_path, DECLS + ENTRY, kernels)
    assert "kernels.toml:10: ops.gelu_forward.layout[1]: gelu.wgsl declares @binding(1) dst" in str(
        err.value
    )


def test_more_params_than_the_uniform_holds_are_refused_at_load(tmp_path: Path) -> None:
    """The loader's uniform buffer is 256 bytes: 65 params are refused at the params line with
    the limit (was: a per-op "Offset is outside the bounds of the DataView" trap); 64 load."""
    many = "params = [" + ", ".join(['"N"'] * 65) + "]"
    with pytest.raises(WebGpuManifestError) as err:
        _load(tmp_path, DECLS + ENTRY, KERNELS.replace('params = ["N"]', many))
    assert (
        "kernels.toml:9: ops.gelu_forward.params: 65 fields: the loader's uniform buffer is 256"
        in str(err.value)
    )
    _load(tmp_path, DECLS + ENTRY, KERNELS.replace('params = ["N"]', many.replace('"N", ', "", 1)))
