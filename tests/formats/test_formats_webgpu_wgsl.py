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
    the limit (was: a per-op "Offset is outside the bounds of the DataView" trap); 64 load
    (with a uniform struct of 64 fields: the struct is checked against params too)."""
    many = "params = [" + ", ".join(['"N"'] * 65) + "]"
    with pytest.raises(WebGpuManifestError) as err:
        _load(tmp_path, DECLS + ENTRY, KERNELS.replace('params = ["N"]', many))
    assert (
        "kernels.toml:9: ops.gelu_forward.params: 65 fields: the loader's uniform buffer is 256"
        in str(err.value)
    )
    fields = ", ".join(["count: u32"] + [f"f{i}: u32" for i in range(1, 64)])
    decls = DECLS.replace("struct Dims { count: u32 }", f"struct Dims {{ {fields} }}")
    _load(tmp_path, decls + ENTRY, KERNELS.replace('params = ["N"]', many.replace('"N", ', "", 1)))


GROUP1 = "@group(1) @binding(0) var<storage, read> extra: array<f32>;\n"


@pytest.mark.parametrize(
    "decl",
    [
        GROUP1,
        "@binding(0) @group(1) var<storage, read> extra: array<f32>;\n",
        "@group( 1 )@binding( 0 )\n  var<storage, read>extra: array<f32>;\n",
        "@group(G) @binding(0) var<storage, read> extra: array<f32>;\nconst G = 1u;\n",
    ],
    ids=["group-then-binding", "binding-then-group", "whitespace", "named-const"],
)
def test_a_declaration_at_another_group_is_refused_at_load(tmp_path: Path, decl: str) -> None:
    """The loader binds group 0 only: a resource at ``@group(1)`` (either attribute order, any
    spacing, a ``const`` group) is refused at the pass's ``shader`` line naming the shader's line
    and the variable (was: loaded, then every cell's pipeline creation failed in the browser)."""
    with pytest.raises(WebGpuManifestError) as err:
        _load(tmp_path, DECLS + decl + ENTRY)
    message = str(err.value)
    assert "kernels.toml:11: ops.gelu_forward.passes[0].shader: gelu.wgsl:5: " in message
    assert "extra is declared at @group(1)" in message
    assert "the loader binds only @group(0)" in message


def test_a_commented_out_declaration_at_another_group_loads(tmp_path: Path) -> None:
    """A ``@group(1)`` declaration in a comment (line or nested block) is not the shader's."""
    _load(tmp_path, DECLS + "// " + GROUP1 + "/* /* */ " + GROUP1 + "*/\n" + ENTRY)


def test_a_group_it_cannot_resolve_is_refused_naming_the_limit(tmp_path: Path) -> None:
    """A ``@group`` or ``@binding`` argument that is no literal or module ``const`` of one (an
    expression, nothing): refused at the shader's line, saying so, not a traceback."""
    decl = "@group(0 + 1) @binding(0) var<storage, read> extra: array<f32>;\n"
    with pytest.raises(WebGpuManifestError, match=r"gelu\.wgsl:5: extra's @group\(0 \+ 1\): "):
        _load(tmp_path, DECLS + decl + ENTRY)
    empty = "@group(0) @binding() var<storage, read> extra: array<f32>;\n"
    with pytest.raises(WebGpuManifestError, match=r"gelu\.wgsl:5: extra's @binding\(\): '' is not"):
        _load(tmp_path, DECLS + empty + ENTRY)


# kernels.toml with an optional buffer, so its has_* flag is a param (always an integer)
KERNELS_FLAG = KERNELS.replace('buffers = { x = "N", out = "N" }',
                               'buffers = { x = "N", out = "N" }\noptional = ["x"]').replace(
    'params = ["N"]', 'params = ["N", "has_x"]'
)  # fmt: skip


@pytest.mark.parametrize(
    "struct",
    [
        # names are the shader's own (only position and type are read), a trailing comma
        "struct Dims { n: u32, flag: u32, }",
        # members on their lines, with attributes that move nothing, comments between
        "struct Dims {\n  @align(4) count: u32, // N\n  /* has_x */ @size(4) has_x: i32\n}",
        # a dim's scalar kind is the binding's (i32 or f32): any 4-byte scalar is taken
        "struct Dims { count: f32, has_x: u32 }",
        # through an alias of a scalar, and of the struct
        "alias Flag = u32;\nstruct D { count: u32, has_x: Flag }\nalias Dims = D;",
        # an @align on the first field moves nothing
        "struct Dims { @align(16) count: u32, has_x: u32 }",
        "struct Dims { count: u32, has_x: u32, _pad0: u32, _pad: vec2<u32> }",
        # padding with an attribute the check does not parse: its name is all it reads
        "struct Dims { count: u32, has_x: u32, @size(max(4, 12)) _pad: u32 }",
        # a prefix of the params: this pass reads N only (another pass may read more)
        "struct Dims { count: u32 }",
        # vectors of 4-byte scalars, long form and predeclared alias, at their slots' bytes
        "struct Dims { v: vec2<u32> }",
        "struct Dims { v: vec4u }",
    ],
    ids=["other-names", "attributes-lines", "f32-dim", "aliases", "align-first", "padding",
         "padding-nested-attribute", "prefix", "vec2", "vec4u"],
)  # fmt: skip
def test_a_uniform_struct_matching_params_by_position_and_type_loads(
    tmp_path: Path, struct: str
) -> None:
    """The struct's fields are params' by position and 4-byte type (scalars, or vectors of them
    at their slots' bytes); names may differ; a pass may read only the first params; fields past
    the params that the entry never reads pad it (any type)."""
    _load(tmp_path, DECLS.replace("struct Dims { count: u32 }", struct) + ENTRY, KERNELS_FLAG)


@pytest.mark.parametrize(
    ("struct", "expected"),
    [
        (
            "struct Dims { v: vec2f }",
            "'has_x' is written as an integer (0 or 1), but gelu.wgsl:1: struct Dims's field 1, "
            "v: vec2f (.y), reads it as f32: split the vector, declare it u32",
        ),
        (
            "struct Dims {\n  count: u32,\n  has_x: f32,\n}",
            "kernels.toml:10: ops.gelu_forward.params[1]: 'has_x' is written as an integer (0 or "
            "1), but gelu.wgsl:3: struct Dims's field 2, has_x: f32, reads it as f32",
        ),
        (
            "struct Dims {\n  count: u32,\n  has_x: vec2<u32>,\n}",
            "gelu.wgsl:3: struct Dims's field 2, has_x, is at byte 8 (its alignment, an @align "
            "or @size on it or a field before it), the loader writes params[1] at byte 4",
        ),
        ("struct Dims { count: f16, has_x: u32 }", "field 1, count: f16, is not a 4-byte scalar"),
        (
            "struct Dims { count: array<u32, 2> }",
            "field 1, count: array<u32, 2>, is not a 4-byte scalar",
        ),
        (
            "struct In { a: u32 }\nstruct Dims { count: In, has_x: u32 }",
            "gelu.wgsl:2: struct Dims's field 1, count: In, is not a 4-byte scalar",
        ),
        (
            "struct Dims { count: u32, @align(8) has_x: u32 }",
            "gelu.wgsl:1: struct Dims's field 2, has_x, is at byte 8 (its alignment, an @align "
            "or @size on it or a field before it), the loader writes params[1] at byte 4",
        ),
        (
            "struct Dims { @size(8) count: u32, has_x: u32 }",
            "struct Dims's field 2, has_x, is at byte 8",
        ),
        (
            "struct Dims { @align(A) count: u32, has_x: u32 }",
            "gelu.wgsl:1: struct Dims's field 1, count's @align(A): 'A' is not an integer literal",
        ),
    ],
    ids=["f32-flag-in-a-vector", "f32-flag", "vec2", "f16", "array", "nested",
         "align", "size", "unresolved-align"],
)  # fmt: skip
def test_a_uniform_struct_contradicting_params_is_refused_at_load(
    tmp_path: Path, struct: str, expected: str
) -> None:
    """A field count other than params', a has_* flag read as a float, a field of another size
    (vec2, f16, array, nested struct) or moved by @align/@size: refused with the shader's line
    (was: loaded, then every call read its uniform's fields from the wrong bytes or types)."""
    shader = DECLS.replace("struct Dims { count: u32 }", struct) + ENTRY
    with pytest.raises(WebGpuManifestError) as err:
        _load(tmp_path, shader, KERNELS_FLAG)
    assert expected in str(err.value)


def test_a_uniform_of_no_struct_of_the_shader_is_refused(tmp_path: Path) -> None:
    """The uniform's type names no struct of the shader (a struct only in a comment is not one),
    or is an array: refused naming the declaration's line and what the check reads."""
    gone = DECLS.replace("struct Dims { count: u32 }", "// struct Dims { count: u32 }")
    with pytest.raises(WebGpuManifestError) as err:
        _load(tmp_path, gone + ENTRY)
    assert "kernels.toml:9: ops.gelu_forward.params: gelu.wgsl:4: @binding(2) dims" in str(
        err.value
    )
    assert "type Dims is no struct of gelu.wgsl" in str(err.value)
    array = DECLS.replace("var<uniform> dims: Dims;", "var<uniform> dims: array<vec4u, 1>;")
    with pytest.raises(WebGpuManifestError, match=r"type array<vec4u, 1> is no struct of gelu"):
        _load(tmp_path, array + ENTRY)


def test_a_bare_scalar_uniform_is_one_field(tmp_path: Path) -> None:
    """``var<uniform> dims: u32;`` reads bytes 0-3, params[0]: with one param or two it loads
    (it reads the first); with none, the entry reading it reads 0, and is refused."""
    scalar = DECLS.replace("var<uniform> dims: Dims;", "var<uniform> dims: u32;")
    _load(tmp_path, scalar + ENTRY.replace("dims.count", "dims"))
    _load(tmp_path, scalar + ENTRY.replace("dims.count", "dims"), KERNELS_FLAG)
    none = KERNELS.replace('params = ["N"]', "params = []")
    with pytest.raises(WebGpuManifestError, match=r"0 params \(none\), but gelu\.wgsl:7: the "
                       r"entry reads dims \(gelu\.wgsl:4\), which no param fills"):  # fmt: skip
        _load(tmp_path, scalar + ENTRY.replace("dims.count", "dims"), none)


def test_padding_the_entry_reads_is_refused_and_another_entrys_read_is_not(
    tmp_path: Path,
) -> None:
    """A field past the params reads 0: refused at the line of the entry that reads it. One
    file may serve two ops, each entry reading its own fields, or its own uniform at one
    binding: the other entry's read (or a helper function's) is not this pass's, and loads."""
    decls = DECLS.replace("struct Dims { count: u32 }", "struct Dims { count: u32, s: f32 }")
    reads = ENTRY.replace("dst[gid.x] = src[gid.x];", "dst[gid.x] = src[gid.x] * dims.s;")
    read = r"1 param \(N\), but gelu\.wgsl:7: the entry reads dims\.s \(gelu\.wgsl:1\), which"
    with pytest.raises(WebGpuManifestError, match=read):
        _load(tmp_path, decls + reads)
    other = reads.replace("fn main(", "fn scale(") + ENTRY
    _load(tmp_path, decls + other + "fn helper() -> f32 { return dims.s; }\n")
    # and each entry its own uniform at one binding (an array this check would refuse)
    second = "struct O { a: array<f32, 3> }\n@group(0) @binding(2) var<uniform> o: O;\n"
    _load(tmp_path, DECLS + second + ENTRY.replace("fn main(", "fn other(").replace("dims.count",
          "u32(o.a[0])") + ENTRY)  # fmt: skip


def test_attribute_arguments_take_a_trailing_comma_and_blanks(tmp_path: Path) -> None:
    """``@binding(2,)`` is WGSL (one trailing comma), as is ``@group (0)``: checked as any
    other declaration, so the latter at group 1 is refused."""
    _load(tmp_path, DECLS.replace("@group(0) @binding(2)", "@group(0,) @binding(2,)") + ENTRY)
    with pytest.raises(WebGpuManifestError, match=r"extra is declared at @group\(1\)"):
        _load(tmp_path, DECLS + "@group (1) @binding (0) var<storage> extra: array<f32>;\n" + ENTRY)


def test_a_texture_where_the_layout_has_a_buffer_is_named_a_handle(tmp_path: Path) -> None:
    """A declaration with no address space (a texture, a sampler) at a layout's binding is
    refused naming it a handle (was: ``as var<None>``)."""
    tex = DECLS.replace("var<uniform> dims: Dims;", "var dims: texture_2d<f32>;")
    said = r"@binding\(2\) dims as a handle \(texture or sampler\), the layout gives binding 2"
    with pytest.raises(WebGpuManifestError, match=said):
        _load(tmp_path, tex + ENTRY)


def test_forward_and_backward_in_one_file_each_check_their_own_bindings(tmp_path: Path) -> None:
    """A file serving two ops of different layouts: a declaration past this op's layout, or of
    another type than its layout's, that this pass's entry does not name is the other op's
    (loads); one it names is refused, as before."""
    back = (
        "@group(0) @binding(3) var<storage, read> dout: array<f32>;\n"
        "@compute @workgroup_size(128, 1, 1)\n"
        "fn back(@builtin(global_invocation_id) gid: vec3<u32>) { dst[gid.x] = dout[gid.x]; }\n"
    )
    _load(tmp_path, DECLS + ENTRY + back)
    with pytest.raises(WebGpuManifestError, match=r"declares @binding\(3\) dout, past the layout"):
        _load(tmp_path, DECLS + ENTRY.replace("src[gid.x]", "dout[gid.x]") + back)


def test_vector_components_past_the_params_are_padding(tmp_path: Path) -> None:
    """``vec4u`` holding one param: ``.x`` is N, ``.y`` (or ``[1]``) reads 0 and is refused at
    the entry's line; a whole-vector read is not judged."""
    decls = DECLS.replace("struct Dims { count: u32 }", "struct Dims { v: vec4u }")
    _load(tmp_path, decls + ENTRY.replace("dims.count", "dims.v.x"))
    for read in ("dims.v.y", "dims.v[1]", "dims.v.xy.y"):
        with pytest.raises(WebGpuManifestError, match=r"gelu\.wgsl:7: the entry reads dims\.v"):
            _load(tmp_path, decls + ENTRY.replace("dims.count", read))
    bare = DECLS.replace("var<uniform> dims: Dims;", "var<uniform> dims: vec2<u32>;")
    with pytest.raises(WebGpuManifestError, match=r"the entry reads dims\.g \(gelu\.wgsl:4\)"):
        _load(tmp_path, bare + ENTRY.replace("dims.count", "dims.g"))


def test_a_member_named_like_the_uniform_is_not_a_read_of_it(tmp_path: Path) -> None:
    """A bare uniform ``n`` with no params reads 0 when the entry names ``n``; ``o.n``, a
    member of something else, is not a read of it."""
    decls = DECLS.replace("var<uniform> dims: Dims;", "var<uniform> n: u32;")
    none = KERNELS.replace('params = ["N"]', "params = []")
    other = "struct O { n: u32 }\nconst o = O(4u);\n"
    _load(tmp_path, decls + other + ENTRY.replace("dims.count", "o.n"), none)
    with pytest.raises(WebGpuManifestError, match=r"the entry reads n \(gelu\.wgsl:4\)"):
        _load(tmp_path, decls + ENTRY.replace("dims.count", "n"), none)


def test_an_entry_with_a_blank_before_its_workgroup_size_is_found(tmp_path: Path) -> None:
    """``@workgroup_size (128)`` is WGSL: the entry is found and its size checked."""
    _load(tmp_path, DECLS + ENTRY.replace("@workgroup_size(128, 1, 1)", "@workgroup_size (128)"))
