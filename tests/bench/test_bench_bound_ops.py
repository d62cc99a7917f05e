"""The bench's ops curve of a library bound without tinygpt.h's ABI: lib2 (artifacts/lib2) binds
matmul and LayerNorm under its own argument orders (weight [in, out], no bias, overwritten
gradients, eps passed), and each is timed through its binding's export, where every row was a
``skipped`` one ("not bound as tinygpt.h binds it"); an op it does not bind stays skipped,
naming why. No speed is asserted: only that the figures were measured, and through what.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from harness.artifact import Artifact
from harness.bindings import bundled, load_binding_cached
from harness.build import REPO_ROOT
from harness.build_lib2 import LIB2_BINDING, lib2_native_artifact
from harness.checks import get_check
from harness.checks.base import CellContext
from harness.checks.bench_bound import through_binding, timed_ops, unmapped
from harness.checks.bench_workloads import OPS, Workload
from harness.hosts.base import Instance
from harness.hosts.native import NativeHost
from harness.rundir.rows import Row
from reference.presets import PRESETS

TIMED = ("matmul_forward", "matmul_backward", "layernorm_forward")
FAST = {"min_samples": 3, "max_samples": 3, "warmup": 1, "budget_s": 20.0, "reference": False}


@pytest.fixture(scope="module")
def lib2_art(tmp_path_factory: pytest.TempPathFactory) -> Artifact:
    """lib2 built natively (zig cc) into a temporary directory, bound by its binding."""
    return lib2_native_artifact(tmp_path_factory.mktemp("lib2-bench"))


@contextmanager
def loaded(art: Artifact) -> Iterator[Instance]:
    """``art`` loaded by the native host, closed afterwards."""
    host = NativeHost()
    inst = host.load(art)
    try:
        yield inst
    finally:
        inst.close()
        host.close()


@pytest.fixture
def lib2_inst(lib2_art: Artifact) -> Iterator[Instance]:
    """lib2's native build loaded by the native host."""
    with loaded(lib2_art) as inst:
        yield inst


def bench_rows(inst: Instance, options: dict[str, object]) -> list[Row]:
    """The bench check's rows of one in-process cell (tiny) of ``inst``, short timings."""
    ctx = CellContext(host="native", host_version="", artifact=inst.artifact,
                      preset=PRESETS["tiny"], instance=inst,
                      options={**FAST, **options})  # fmt: skip
    return list(get_check("bench")(ctx))


def test_lib2_ops_map_by_canonical_name() -> None:
    """lib2's matmul_forward takes (x, W, out, N, C, OC) without the bias, its LayerNorm takes
    eps (tinygpt.h builds 1e-5 in): the workload's values land in lib2's order; the fused-qkv
    attention, GELU and residual are not bound, which the reason says."""
    lib2 = load_binding_cached(REPO_ROOT / LIB2_BINDING)
    assert timed_ops(lib2, tuple(OPS)) == TIMED
    for op in set(OPS) - set(TIMED):
        assert unmapped(lib2, op) == f"{op}: not bound by {lib2.path}"
    ptrs = {"out": 1, "x": 2, "W": 3, "b": 4}
    wl = Workload("tg_matmul_forward", (1, 2, 3, 4, 5, 6, 7), 1.0, "flops", "N=C=OC=5", (1, 2))
    assert bundled().ops["matmul_forward"].args == ("out", "x", "W", "b", "N", "C", "OC")
    got = through_binding(lib2, "matmul_forward", wl)
    assert got.export == "matmul_forward" and got.buffers == wl.buffers
    assert got.args == (ptrs["x"], ptrs["W"], ptrs["out"], 5, 6, 7)
    assert "matmul_forward(x, W, out, N, C, OC) without b" in got.shape
    ln = Workload("tg_layernorm_forward", tuple(range(1, 9)), 1.0, "bytes", "N=7 C=8", ())
    got = through_binding(lib2, "layernorm_forward", ln)
    # tinygpt.h: (out, mean, rstd, x, w, b, N, C); lib2: (x, w, b, out, mean, rstd, N, C, eps)
    assert got.args[:8] == (4, 5, 6, 1, 2, 3, 7, 8) and got.args[8] == pytest.approx(1e-5)
    # the bundled library's own calls are left as they are
    same = through_binding(bundled(), "matmul_forward", wl)
    assert same is wl


def test_lib2_ops_curve_is_timed_through_its_exports(
    lib2_inst: Instance, lib2_art: Artifact
) -> None:
    """Every op lib2 binds that the bench has a workload for gets a measured median at each
    size, its detail naming lib2's export; the others are skipped rows saying not bound."""
    ops = [*TIMED, "gelu_forward", "attention_forward"]
    sizes = {"matmul_forward": [16, 32], "matmul_backward": [16], "layernorm_forward": [16]}
    rows = bench_rows(lib2_inst, {"curves": ["ops"], "ops": ops, "sizes": sizes})
    for op in TIMED:
        medians = [r for r in rows if r.subject == f"op:{op}" and r.metric == "median_ns"]
        assert [r.x_value for r in medians] == sizes[op], (op, rows)
        for r in medians:
            assert r.status in ("measured", "noisy") and r.value > 0, r
            assert f"through the binding: {op}(" in r.detail, r.detail
    for op in ("gelu_forward", "attention_forward"):
        (skip,) = [r for r in rows if r.subject == f"op:{op}"]
        assert skip.status == "skipped" and "not bound by" in skip.detail, skip
    assert not [r for r in rows if r.subject == "ops"]  # the curve ran
    assert not [r for r in rows if r.status in ("fail", "error")]


def test_a_binding_with_no_op_to_time_skips_the_curve_naming_why(
    lib2_inst: Instance, lib2_art: Artifact
) -> None:
    """With only ops lib2 does not bind, the ops curve is one skipped row naming each."""
    rows = bench_rows(lib2_inst, {"curves": ["ops"], "ops": ["gelu_forward"]})
    (skip,) = rows
    assert (skip.subject, skip.status) == ("ops", "skipped")
    assert "gelu_forward: not bound by" in skip.detail


def test_a_fixed_dim_is_dropped_where_it_fits_and_refused_where_not(tmp_path: Path) -> None:
    """A binding that fixes a dim (GELU's N built in): the workload's value is not passed where
    it equals the fixed one, and a point whose value differs is refused naming both (the
    workload's buffers would not fit the call)."""
    from harness.bindings import load_binding

    path = tmp_path / "fixed.binding.toml"
    path.write_text('[binding]\nname = "fixed"\n[ops.gelu_forward]\nexport = "g"\n'
                    'args = ["x", "out"]\nfixed = { N = 64 }\n')  # fmt: skip
    fixed = load_binding(path)
    assert unmapped(fixed, "gelu_forward") == ""
    wl = Workload("tg_gelu_forward", (1, 2, 64), 1.0, "bytes", "N=64", ())
    assert through_binding(fixed, "gelu_forward", wl).args == (2, 1)
    wrong = Workload("tg_gelu_forward", (1, 2, 128), 1.0, "bytes", "N=128", ())
    with pytest.raises(ValueError, match=r"g fixes N = 64, .* has N = 128"):
        through_binding(fixed, "gelu_forward", wrong)
