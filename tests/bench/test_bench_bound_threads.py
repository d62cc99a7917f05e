"""The bench's thread axis for a library bound without tinygpt.h's ABI: a small C library
compiled here (zig cc; its own names thg_*, the weight passed first and stored [in, out], input
before output) whose binding has a ``[threads]`` table. ``threads = [1, 2]`` measures each op
point at each count through the binding's setter (``harness.kernel.set_threads``, by the
bundled library's ``bench.ThreadAxis``), with ``op:<op>:threads=2`` figures and
``threads:op:<op>@<x>=<n>`` speedup rows; the library records the count each call ran at, so
the test sees the 2-thread points ran at 2 and the cell ended at 1. A count the setter refuses,
and a binding without ``[threads]`` (lib2), give ``skipped`` rows saying why. No speed is
asserted.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.artifact import Artifact
from harness.bindings import load_binding
from harness.build import REPO_ROOT, TARGETS, run_tool, zig_command
from harness.build_lib2 import LIB2_BINDING, lib2_native_artifact, lib2_sources, native_flags
from harness.formats import digest, get_format
from harness.hosts.base import Instance
from harness.rundir.rows import Row
from tests.bench.test_bench_bound_ops import bench_rows, loaded

THG_C = r"""
#include <stddef.h>
#include <stdlib.h>
static int threads = 1, seen = 0;  /* the count in effect; the most any op call ran at */
void *thg_alloc(size_t n) { return calloc(n ? n : 1, 1); }
void thg_free(void *p) { free(p); }
int thg_set_threads(int n) { if (n >= 1 && n <= 2) threads = n; return threads; }
int thg_get_threads(void) { return threads; }
int thg_seen(void) { return seen; }
static void note(void) { if (threads > seen) seen = threads; }
void thg_gelu(const float *x, float *out, int n) {
    note();
    for (int i = 0; i < n; i++) out[i] = x[i] > 0 ? x[i] : 0;
}
/* out (N, OC) = x (N, C) @ W (C, OC): W stored [in, out], passed first; no bias */
void thg_matmul(const float *W, const float *x, float *out, int N, int C, int OC) {
    note();
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OC; o++) {
            float s = 0;
            for (int c = 0; c < C; c++) s += x[n * C + c] * W[c * OC + o];
            out[n * OC + o] = s;
        }
}
"""

THG_BINDING = """\
[binding]
name = "thg"

[memory]
alloc = "thg_alloc"
free = "thg_free"

[ops.gelu_forward]
export = "thg_gelu"
args = ["x", "out", "N"]

[ops.matmul_forward]
export = "thg_matmul"
args = ["W", "x", "out", "N", "C", "OC"]
layout = { W = "in_out" }

[threads]
set = "thg_set_threads"
max = 4  # more than thg_set_threads runs: a count of 3 is refused by the setter, not at load

[exports]
thg_get_threads = { params = [], result = "i32" }
thg_seen = { params = [], result = "i32" }
"""

SIZES = {"gelu_forward": [256, 1024], "matmul_forward": [16]}


@pytest.fixture(scope="module")
def thg(tmp_path_factory: pytest.TempPathFactory) -> Artifact:
    """The thg library compiled natively, as a manifest entry bound by its binding file."""
    return build_thg(tmp_path_factory.mktemp("thg"))


def build_thg(out: Path) -> Artifact:
    """Compile the thg library into ``out``; its manifest entry, bound by its binding file."""
    (out / "thg.c").write_text(THG_C)
    (out / "thg.binding.toml").write_text(THG_BINDING)
    so = out / "libthg.so"
    t = TARGETS["native"]
    run_tool([*zig_command(), "cc", f"--target={t.triple}", "-O1", "-shared", "-fPIC",
              str(out / "thg.c"), "-o", str(so)], "zig cc (thg)")  # fmt: skip
    files, sha256 = digest({get_format("native").roles[0]: so})
    binding = out / "thg.binding.toml"
    return Artifact(name="thg", format="native", path=so, sha256=sha256, files=files,
                    ptr_width=t.ptr_width, target=t.triple,
                    signatures=load_binding(binding).signatures_json(),
                    binding=binding)  # fmt: skip


@pytest.fixture
def thg_inst(thg: Artifact) -> Iterator[Instance]:
    """thg loaded by the native host."""
    with loaded(thg) as inst:
        yield inst


def _bench(inst: Instance, threads: list[int], ops: list[str]) -> list[Row]:
    return bench_rows(inst, {"curves": ["ops"], "ops": ops, "sizes": SIZES, "threads": threads})


def _medians(rows: list[Row], subject: str) -> list[Row]:
    return [r for r in rows if r.subject == subject and r.metric == "median_ns"]


def test_each_op_point_is_measured_at_each_count_through_the_binding(
    thg_inst: Instance,
) -> None:
    """At threads = [1, 2]: a 1- and a 2-thread median per size for both ops, through thg's
    exports; the library saw 2 threads in effect during the calls and 1 after the curve; a
    ``threads:`` speedup row at x = 1 and x = 2 per point."""
    assert thg_inst.call("thg_seen") == 0
    rows = _bench(thg_inst, [1, 2], ["gelu_forward", "matmul_forward"])
    assert not [r for r in rows if r.status in ("fail", "error", "skipped")], rows
    exports = {"gelu_forward": "thg_gelu(x, out, N)",
               "matmul_forward": "thg_matmul(W, x, out, N, C, OC) without b"}  # fmt: skip
    for op, export in exports.items():
        for subject in (f"op:{op}", f"op:{op}:threads=2"):
            medians = _medians(rows, subject)
            assert [r.x_value for r in medians] == SIZES[op], (subject, rows)
            assert all(r.value > 0 and export in r.detail for r in medians), medians
        x_name = "elements" if op == "gelu_forward" else "n"
        for n in SIZES[op]:
            speedups = [r for r in rows if r.subject == f"threads:op:{op}@{x_name}={n}"]
            assert sorted(r.x_value for r in speedups) == [1, 2], (op, n, rows)
            assert all(r.metric == "speedup" and r.x_name == "threads" for r in speedups)
    assert thg_inst.call("thg_seen") == 2  # the 2-thread points ran at 2
    assert thg_inst.call("thg_get_threads") == 1  # the axis put 1 back


def test_a_count_the_setter_refuses_is_a_skipped_row(thg_inst: Instance) -> None:
    """thg's binding says max = 4 but its setter runs at most 2: the 3-thread points are
    skipped rows naming the setter and the count it put in effect; the others are measured."""
    rows = _bench(thg_inst, [1, 3], ["gelu_forward"])
    skipped = [r for r in rows if r.subject == "op:gelu_forward:threads=3"]
    assert [r.x_value for r in skipped] == SIZES["gelu_forward"], rows
    for r in skipped:
        assert r.status == "skipped" and "thg_set_threads(3) put 1 in effect" in r.detail, r
    assert [r.x_value for r in _medians(rows, "op:gelu_forward")] == SIZES["gelu_forward"]


def test_without_a_threads_table_a_count_above_one_is_a_skipped_row(
    tmp_path: Path,
) -> None:
    """lib2's binding has no ``[threads]``: a matrix asking for 2 is refused at load; if a cell
    gets 2 anyway, its 2-thread points are skipped rows saying the binding has no [threads]
    table, and the 1-thread points are measured through lib2's export."""
    with loaded(lib2_native_artifact(tmp_path)) as inst:
        rows = _bench(inst, [1, 2], ["matmul_forward"])
        skipped = [r for r in rows if r.subject == "op:matmul_forward:threads=2"]
        assert [r.x_value for r in skipped] == SIZES["matmul_forward"], rows
        assert all(r.status == "skipped" and "no [threads] table" in r.detail for r in skipped)
        medians = _medians(rows, "op:matmul_forward")
        assert [r.x_value for r in medians] == SIZES["matmul_forward"], rows
        assert all("through the binding: matmul_forward(" in r.detail for r in medians)


# lib2's model API (a train step through its binding) with a thread setter beside it: lib2's
# kernels are serial, so the setter only records the counts put in effect; what is tested is the
# bench's axis over a bound library's train step, not a speedup.
SHIM_C = r"""
#define API __attribute__((visibility("default")))  /* lib2's flags hide what is not marked */
static int threads = 1, most = 1;
API int shim_set_threads(int n) {
    if (n >= 1 && n <= 2) threads = n;
    if (threads > most) most = threads;
    return threads;
}
API int shim_get_threads(void) { return threads; }
API int shim_most(void) { return most; }
"""

SHIM_TABLES = """
[threads]
set = "shim_set_threads"
max = 2

[exports]
shim_get_threads = { params = [], result = "i32" }
shim_most = { params = [], result = "i32" }
"""


@pytest.fixture(scope="module")
def lib2_threads(tmp_path_factory: pytest.TempPathFactory) -> Artifact:
    """lib2's sources and the setter shim compiled into one native library, bound by lib2's
    binding (its header line dropped: the shim's exports are not in lib2.h) plus ``[threads]``."""
    out = tmp_path_factory.mktemp("lib2thr")
    (out / "shim.c").write_text(SHIM_C)
    lines = (REPO_ROOT / LIB2_BINDING).read_text().splitlines()
    text = "\n".join(line for line in lines if not line.startswith("header ="))
    binding = out / "lib2thr.binding.toml"
    binding.write_text(text + "\n" + SHIM_TABLES)
    so = out / "liblib2thr.so"
    sources = [str(REPO_ROOT / p) for p in lib2_sources()]
    run_tool([*zig_command(), "cc", *native_flags(), *sources, str(out / "shim.c"), "-lm",
              "-o", str(so)], "zig cc (lib2 + thread shim)")  # fmt: skip
    files, sha256 = digest({get_format("native").roles[0]: so})
    t = TARGETS["native"]
    return Artifact(name="lib2thr", format="native", path=so, sha256=sha256, files=files,
                    ptr_width=t.ptr_width, target=t.triple,
                    signatures=load_binding(binding).signatures_json(),
                    binding=binding)  # fmt: skip


def test_a_bound_train_step_is_measured_at_each_count_and_side_by_side(
    lib2_threads: Artifact,
) -> None:
    """At threads = [1, 2], a bound library's train step (lib2's ``tg_train_step``, through its
    binding) has a 1- and a 2-thread median, and a ``threads:train_step`` speedup at x = 2 with
    its side-by-side CI; the setter saw 2 and the cell ends at 1. Before, the train step was
    timed at 1 thread only, whatever the axis said."""
    with loaded(lib2_threads) as inst:
        rows = bench_rows(inst, {"curves": ["train_step"], "threads": [1, 2], "pairs": 3,
                                 "block_ms": 5.0, "paired_s": 10.0})  # fmt: skip
        assert inst.call("shim_most") == 2
        assert inst.call("shim_get_threads") == 1
    assert not [r for r in rows if r.status in ("fail", "error", "skipped")], rows
    for subject in ("train_step", "train_step:threads=2"):
        medians = _medians(rows, subject)
        assert len(medians) == 1 and medians[0].value > 0, (subject, rows)
        assert "tg_train_step through the binding" in medians[0].detail
    speedup = {(r.metric, r.x_value) for r in rows if r.subject == "threads:train_step"}
    assert {("speedup", 1), ("speedup", 2), ("speedup_ci_low", 2)} <= speedup, rows
