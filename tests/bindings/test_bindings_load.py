"""``load_binding``: every way a binding file can be wrong is a BindingError at its own line.

Each case is a small binding file with one fault; the error must start with ``file:line`` of
the faulty key (the line the case marks with ``# <-``) and say what is wrong.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.bindings import BUNDLED, BindingError, bundled, load_binding

LIB2 = Path(__file__).resolve().parents[2] / "artifacts" / "lib2" / "lib2.binding.toml"
HEAD = '[binding]\nname = "t"\n'
GELU = '[ops.gelu_forward]\nexport = "gelu"\nargs = ["out", "x", "N"]\n'

# (case id, file text with the faulty line marked `# <-`, a regex the message must match)
# fmt: off
CASES = [
    ("bad TOML", HEAD + "[ops.gelu_forward  # <-\n", r"Expected '\]'"),
    ("unknown top-level key", HEAD + GELU + "[kernels]  # <-\nx = 1\n", r"kernels: unknown key"),
    ("no [binding]", GELU, r"\(binding\): missing \[binding\] table"),
    ("unknown [binding] key", HEAD + 'version = 2  # <-\n' + GELU,
     r"binding.version: unknown key"),
    ("no name", '[binding]  # <-\ndescription = "d"\n' + GELU,
     r"binding: missing key 'name'"),
    ("name not a string", '[binding]\nname = 3  # <-\n' + GELU,
     r"must be a string, got an integer"),
    ("unknown ABI", HEAD + 'abi = "other.h"  # <-\n' + GELU,
     r"unknown ABI 'other.h'; known: tinygpt.h"),
    ("unknown op", HEAD + '[ops.matmul_fwd]  # <-\nexport = "mm"\nargs = []\n',
     r"ops.matmul_fwd: unknown key; allowed: embedding_forward, "),
    ("unknown op key", HEAD + GELU + 'transpose = true  # <-\n',
     r"ops.gelu_forward.transpose: unknown key; allowed: export, args, roles, fixed, layout, "
     r"size_t"),
    ("missing export", HEAD + '[ops.gelu_forward]  # <-\nargs = ["out", "x", "N"]\n',
     r"missing key 'export'"),
    ("export not an identifier", HEAD + '[ops.gelu_forward]\nexport = "gelu-fwd"  # <-\n'
     'args = ["out", "x", "N"]\n', r"'gelu-fwd' is not a C or JS identifier"),
    ("missing args", HEAD + '[ops.gelu_forward]  # <-\nexport = "gelu"\n',
     r"missing key 'args' \(the export's arguments in order, from: out, x, N\)"),
    ("args not an array", HEAD + '[ops.gelu_forward]\nexport = "gelu"\nargs = "out"  # <-\n',
     r"must be an array of argument names, got a string"),
    ("unknown argument", HEAD + '[ops.gelu_forward]\nexport = "gelu"\nargs = [\n"out",\n'
     '"y",  # <-\n"N"]\n', r"gelu_forward has no argument 'y'; its arguments: out, x, N"),
    ("argument not a string", HEAD + '[ops.gelu_forward]\nexport = "gelu"\nargs = [\n"out",\n'
     '3,  # <-\n"N"]\n', r"must be an argument name, got an integer 3"),
    ("duplicate argument", HEAD + '[ops.gelu_forward]\nexport = "gelu"\nargs = [\n"out",\n'
     '"x",\n"x",  # <-\n"N"]\n', r"argument 'x' is listed twice"),
    ("argument missing", HEAD + '[ops.gelu_forward]\nexport = "gelu"\nargs = ["out", "x"]  # <-\n',
     r"gelu_forward needs argument\(s\) N"),
    ("fixed on a buffer", HEAD + '[ops.gelu_forward]\nexport = "gelu"\nargs = ["out", "N"]\n'
     'fixed = { x = 1.0 }  # <-\n', r"only scalars can be fixed; 'x' is an input buffer"),
    ("fixed not a number", HEAD + '[ops.layernorm_forward]\nexport = "ln"\n'
     'args = ["out", "mean", "rstd", "x", "w", "b", "N", "C"]\nfixed = { eps = "1e-5" }  # <-\n',
     r"must be a number, got a string"),
    ("fixed not finite", HEAD + '[ops.layernorm_forward]\nexport = "ln"\n'
     'args = ["out", "mean", "rstd", "x", "w", "b", "N", "C"]\nfixed = { eps = inf }  # <-\n',
     r"must be finite, got inf"),
    ("argument and fixed", HEAD + '[ops.layernorm_forward]\nexport = "ln"\n'
     'args = ["out", "mean", "rstd", "x", "w", "b", "N", "C", "eps"]\n'
     'fixed = { eps = 1e-5 }  # <-\n', r"'eps' is both an argument and fixed"),
    ("role of an argument not listed", HEAD + GELU + 'roles = { dx = "output" }  # <-\n',
     r"roles.dx: unknown key; allowed: out, x, N"),
    ("role on a dim", HEAD + GELU + 'roles = { N = "input" }  # <-\n',
     r"'N' is a dim; only buffers take another role"),
    ("role switch not allowed", HEAD + GELU + 'roles = { x = "output" }  # <-\n',
     r"'x' is an input; it may only switch between output and accumulator"),
    ("role not a string", HEAD + GELU + 'roles = { out = 1 }  # <-\n',
     r"must be a role, got an integer 1"),
    ("unknown role", HEAD + GELU + 'roles = { out = "written" }  # <-\n',
     r"unknown role 'written'; a buffer's roles: input, inout, output, accumulator, scratch"),
    ("size_t not an array", HEAD + GELU + 'size_t = "N"  # <-\n',
     r"must be an array of dims, got a string"),
    ("size_t on a non-dim", HEAD + GELU + 'size_t = ["x"]  # <-\n',
     r"'x' is not a dim argument of this binding's args"),
    ("layout on a non-weight", HEAD + '[ops.matmul_forward]\nexport = "mm"\n'
     'args = ["out", "x", "W", "b", "N", "C", "OC"]\nlayout = { x = "in_out" }  # <-\n',
     r"layout.x: unknown key; allowed: W"),
    ("unknown layout", HEAD + '[ops.matmul_forward]\nexport = "mm"\n'
     'args = ["out", "x", "W", "b", "N", "C", "OC"]\nlayout = { W = "transposed" }  # <-\n',
     r"must be one of out_in, in_out, got 'transposed'"),
    ("memory without free", HEAD + '[memory]  # <-\nalloc = "my_alloc"\n' + GELU,
     r"memory: missing key 'free'"),
    ("memory unit", HEAD + '[memory]\nalloc = "a"\nfree = "f"\nalloc_unit = 3  # <-\n' + GELU,
     r"must be 1, 2, 4 or 8 bytes, got 3"),
    ("memory unit type", HEAD + '[memory]\nalloc = "a"\nfree = "f"\nalloc_unit = "4"  # <-\n'
     + GELU, r"must be an integer, got a string"),
    ("memory arg kind", HEAD + '[memory]\nalloc = "a"\nfree = "f"\nalloc_arg = "f32"  # <-\n'
     + GELU, r"must be 'ptr' \(size_t\) or 'i32' \(int\), got 'f32'"),
    ("unknown model call", HEAD + '[model.train]  # <-\nexport = "t"\nargs = []\n',
     r"model.train: unknown key; allowed: create, free, "),
    ("model calls without create", HEAD + '[model.free]  # <-\nexport = "mf"\nargs = ["model"]\n'
     '[model.eval]\nexport = "me"\nargs = ["model", "split", "batch", "n_batches"]\n',
     r"model.free: model calls need a 'create' call"),
    ("binds nothing", HEAD + 'description = "nothing bound"\n',
     r"\(binding\): binds nothing: no \[ops.\*\] and no \[model\] calls"),
    ("[exports] not a table", 'exports = 3  # <-\n' + HEAD + GELU,
     r"exports: must be a table, got an integer"),
    ("[exports] bad name", HEAD + GELU + '[exports]\n"no-op" = {}  # <-\n',
     r"'no-op' is not a C or JS identifier"),
    ("[exports] unknown kind", HEAD + GELU + '[exports]\nnoop = { params = ["i64"] }  # <-\n',
     r"unknown kind 'i64'"),
    ("[exports] unknown result", HEAD + GELU + '[exports]\nnoop = { result = "u8" }  # <-\n',
     r"unknown kind 'u8'"),
    ("[exports] unknown key", HEAD + GELU + '[exports]\nnoop = { args = [] }  # <-\n',
     r"exports.noop.args: unknown key; allowed: params, result"),
    ("[threads] without set", HEAD + GELU + '[threads]  # <-\nmax = 4\n',
     r"threads: missing key 'set'"),
    ("[threads] without max", HEAD + GELU + '[threads]  # <-\nset = "st"\n',
     r"threads: missing key 'max'"),
    ("[threads] max 0", HEAD + GELU + '[threads]\nset = "st"\nmax = 0  # <-\n',
     r"threads.max: must be at least 1 \(the caller\), got 0"),
    ("[threads] bad export", HEAD + GELU + '[threads]\nset = "set-n"  # <-\nmax = 2\n',
     r"'set-n' is not a C or JS identifier"),
    ("[threads] unknown key", HEAD + GELU + '[threads]\nset = "st"\nmax = 2\npool = 3  # <-\n',
     r"threads.pool: unknown key; allowed: set, max, regions"),
    ("[threads] with the ABI", HEAD + 'abi = "tinygpt.h"\n' + GELU + '[threads]  # <-\nset = "st"\n'
     'max = 2\n', r"the tinygpt.h ABI sets threads itself \(tg_set_threads\); drop it"),
]
# fmt: on


@pytest.mark.parametrize(("text", "pattern"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_binding_is_refused_at_its_line(tmp_path: Path, text: str, pattern: str) -> None:
    """The error starts with ``file:line`` of the marked line (line 1 when the fault is the
    whole file) and says what is wrong."""
    path = tmp_path / "bad.binding.toml"
    path.write_text(text)
    marked = [i for i, line in enumerate(text.splitlines(), 1) if line.endswith("# <-")]
    line = marked[0] if marked else 1
    with pytest.raises(BindingError) as info:
        load_binding(path)
    message = str(info.value)
    where = re.match(rf"{re.escape(str(path))}:(\d+): ", message)
    assert where, message
    assert int(where.group(1)) == line, message
    assert re.search(pattern, message), message


def test_missing_binding_file_names_its_path(tmp_path: Path) -> None:
    """A binding file that is not there is a BindingError naming the path, not an OSError."""
    with pytest.raises(BindingError, match=r"nope.toml:1: cannot read the binding file"):
        load_binding(tmp_path / "nope.toml")


def test_the_shipped_bindings_load() -> None:
    """The bundled binding and lib2's load; lib2's output/accumulator switch and layouts hold."""
    assert bundled().path == BUNDLED and bundled().abi == "tinygpt.h"
    lib2 = load_binding(LIB2)
    mm = lib2.ops["matmul_backward"]
    assert mm.roles["dx"] == "output" and mm.roles["dW"] == "output"
    assert mm.weight_layout("W") == "in_out"
    assert lib2.memory is not None and lib2.memory.alloc_unit == 4
    assert set(lib2.model) >= {"create", "train_step", "generate"}


def test_a_threads_table_names_the_setter_its_limit_and_its_exports(tmp_path: Path) -> None:
    """``[threads]`` gives the setter, the limit and the regions counter, whose signatures
    (int(int), int(void)) join the exports a host wraps and checks; a binding without it has no
    thread control, and tinygpt.h's ABI has tg_set_threads built in."""
    path = tmp_path / "t.binding.toml"
    path.write_text(HEAD + GELU + '[threads]\nset = "thg_set"\nmax = 4\nregions = "thg_reg"\n')
    b = load_binding(path)
    assert b.threads is not None and (b.threads.set, b.threads.max) == ("thg_set", 4)
    sigs = b.signatures()
    assert (sigs["thg_set"].params, sigs["thg_set"].result) == (("i32",), "i32")
    assert (sigs["thg_reg"].params, sigs["thg_reg"].result) == ((), "i32")
    assert b.export_line("thg_reg") == f"{path}:9"  # the regions key
    path.write_text(HEAD + GELU)
    assert load_binding(path).threads is None
    ours = bundled().threads
    assert ours is not None and ours.set == "tg_set_threads"
