"""lib2's ops through the harness: its binding file, the native host, and the ops check.

The ops check reaches lib2 only through ``artifacts/lib2/lib2.binding.toml`` (no name of its
own): every bound op passes on every case, the ops lib2 lacks are skipped "not bound", and a
deliberately wrong binding fails with the mistake named.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.artifact import Artifact
from harness.bindings.canonical import OPS as CANONICAL
from harness.checks import memory64
from harness.checks import ops as ops_check
from harness.checks.base import CellContext
from harness.checks.ops import OPS, SPECS, Case, assert_op_parity, cases, op_parity, run
from harness.formats import file_sha256
from harness.hosts.base import Instance
from harness.hosts.native import NativeHost
from harness.kernel import Kernels, NotBound
from harness.parity import ParityError
from harness.tolerance import ELEMENTWISE_RULES
from reference import ops
from reference.presets import PRESETS

BINDING = Path(__file__).resolve().parents[2] / "artifacts" / "lib2" / "lib2.binding.toml"
SMALL = PRESETS["small"]
CASES = {c.name: c for c in cases(SMALL, seed=0)}
LIB2_OPS = ("matmul_forward", "matmul_backward", "layernorm_forward", "layernorm_backward",
            "attention_block_forward", "attention_block_backward", "adamw_update")  # fmt: skip
UNBOUND = sorted(set(OPS) - set(LIB2_OPS))


def _artifact(so: Path, binding: Path) -> Artifact:
    """lib2's native library as a manifest entry bound by ``binding``."""
    return Artifact(name="lib2-native", format="native", path=so, sha256=file_sha256(so),
                    ptr_width=64, target="native", binding=binding)  # fmt: skip


@pytest.fixture(scope="module")
def host() -> Iterator[NativeHost]:
    """One native host (a worker process) for the module."""
    h = NativeHost()
    yield h
    h.close()


@pytest.fixture(scope="module")
def lib2_instance(host: NativeHost, lib2_so: Path) -> Iterator[Instance]:
    """lib2 loaded by the native host under its own binding."""
    inst = host.load(_artifact(lib2_so, BINDING))
    yield inst
    inst.close()


def _wrong(tmp_path: Path, old: str, new: str) -> Path:
    """lib2's binding with one line changed, written beside the test."""
    text = BINDING.read_text(encoding="utf-8")
    assert old in text
    # its header is relative to the binding file: absolute in the copy
    header = BINDING.parent / "include" / "lib2.h"
    text = text.replace('header = "include/lib2.h"', f'header = "{header}"')
    path = tmp_path / "wrong.binding.toml"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


def _runs(op: str, c: Case) -> bool:
    """Whether the ops check runs ``op`` on case ``c`` (large: softmax ops; dense: element-wise)."""
    dense_ok = all((op, o) in ELEMENTWISE_RULES for o in SPECS[op].outputs)
    return (not c.logit or SPECS[op].softmax) and (not c.dense or dense_ok)


def _grid() -> list[tuple[str, str]]:
    return [(op, n) for op in LIB2_OPS for n, c in CASES.items() if _runs(op, c)]


def test_lib2_binds_exactly_the_ops_it_has(lib2_instance: Instance) -> None:
    """lib2's binding maps the seven ops lib2 exports, all canonical ones the check knows."""
    assert set(lib2_instance.artifact.bound().ops) == set(LIB2_OPS) <= set(CANONICAL)


@pytest.mark.parametrize(("op", "case"), _grid())
def test_lib2_bound_op_parity(lib2_instance: Instance, op: str, case: str) -> None:
    """Each op lib2 binds matches the float64 reference on each case through its binding."""
    failed = [r.message for r in op_parity(Kernels(lib2_instance), op, CASES[case]) if not r.ok]
    assert not failed, failed


@pytest.mark.parametrize("op", UNBOUND)
def test_lib2_unbound_op_raises_not_bound(lib2_instance: Instance, op: str) -> None:
    """An op lib2's binding lacks raises NotBound naming it and the binding."""
    with pytest.raises(NotBound, match=rf"{op} is not bound by the lib2 binding"):
        op_parity(Kernels(lib2_instance), op, CASES["odd"])


def test_lib2_matmul_with_a_bias_is_refused(lib2_instance: Instance) -> None:
    """A bias on lib2's bias-less matmul is a ValueError saying the export takes no b."""
    x, W, b = np.ones((2, 3), np.float32), np.ones((4, 3), np.float32), np.ones(4, np.float32)
    with pytest.raises(ValueError, match="takes no 'b'"):
        Kernels(lib2_instance).matmul_forward(x, W, b)


def test_lib2_check_rows_pass_and_skip_unbound(lib2_instance: Instance) -> None:
    """The ops check over lib2: every bound output passes, every unbound op is one skipped row."""
    ctx = CellContext("native", "ctypes", lib2_instance.artifact, PRESETS["tiny"], lib2_instance)
    rows = list(run(ctx))
    skipped = {r.subject: r.detail for r in rows if r.status == "skipped"}
    assert sorted(skipped) == UNBOUND
    assert all("not bound" in d for d in skipped.values())
    bad = [(r.subject, r.detail) for r in rows if r.status not in ("pass", "skipped")]
    assert not bad, bad[:3]
    assert {r.subject.split(".")[0] for r in rows if r.status == "pass"} == set(LIB2_OPS)


def test_wrong_weight_layout_is_named(host: NativeHost, lib2_so: Path, tmp_path: Path) -> None:
    """A binding declaring matmul's W out_in (lib2 stores [in, out]) fails naming the layout."""
    wrong = _wrong(tmp_path, 'args = ["x", "W", "out", "N", "C", "OC"]\nlayout = { W = "in_out" }',
                   'args = ["x", "W", "out", "N", "C", "OC"]')  # fmt: skip
    inst = host.load(_artifact(lib2_so, wrong))
    call = inst.artifact.bound().ops["matmul_forward"]
    try:
        with pytest.raises(ParityError) as info:
            assert_op_parity(Kernels(inst), "matmul_forward", CASES["odd"])
    finally:
        inst.close()
    # both sides named, with where each is written: the binding's line, the library's file
    assert (
        "matmul_forward.out fails parity; with W's layout in_out it passes: the binding "
        f"(wrong.binding.toml:{call.line}) declares W = out_in, {call.export} as the library "
        f"declares it ({lib2_so.name}) reads W transposed; either may be the one at fault"
        in str(info.value)
    )


def test_swapped_args_are_named(host: NativeHost, lib2_so: Path, tmp_path: Path) -> None:
    """A binding listing LayerNorm's w and b in the wrong order fails naming the swap (rows)."""
    wrong = _wrong(tmp_path, 'args = ["x", "w", "b", "out",', 'args = ["x", "b", "w", "out",')
    inst = host.load(_artifact(lib2_so, wrong))
    call = inst.artifact.bound().ops["layernorm_forward"]
    try:
        ctx = CellContext("native", "ctypes", inst.artifact, PRESETS["tiny"], inst,
                          options={"ops": ["layernorm_forward"]})  # fmt: skip
        rows = list(run(ctx))
    finally:
        inst.close()
    failed = {r.subject: r.detail for r in rows if r.status == "fail"}
    assert "layernorm_forward.out" in failed
    # the binding is the one at fault here, but the library's own order is an equal suspect as
    # far as the diagnosis can tell: both are named, with where each is written
    assert failed["layernorm_forward.out"].startswith(
        "layernorm_forward.out fails parity; with args 'b' and 'w' swapped it passes: the binding "
        f"(wrong.binding.toml:{call.line}) and {call.export} as the library declares it "
        f"({lib2_so.name}) list them in different orders; either may be the one at fault."
    )


def test_diagnosis_draws_inputs_and_the_reference_once(
    host: NativeHost, lib2_so: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every guess of the diagnosis is compared against the one prepared case: the inputs and
    the float64 reference are computed once, however many guesses run."""
    prepared: list[str] = []
    compared: list[str] = []
    real_prepare, real_parity = ops_check.prepare, ops_check.kernel_parity

    def counting_prepare(kernels: Kernels, op: str, case: Case, seed: int = 0) -> Any:
        prepared.append(op)
        return real_prepare(kernels, op, case, seed)

    def counting_parity(kernels: Kernels, p: Any) -> Any:
        compared.append(p.op)
        return real_parity(kernels, p)

    monkeypatch.setattr(ops_check, "prepare", counting_prepare)
    monkeypatch.setattr(ops_check, "kernel_parity", counting_parity)
    wrong = _wrong(tmp_path, 'args = ["x", "w", "b", "out",', 'args = ["x", "b", "w", "out",')
    inst = host.load(_artifact(lib2_so, wrong))
    try:
        with pytest.raises(ParityError, match="with args 'b' and 'w' swapped it passes"):
            assert_op_parity(Kernels(inst), "layernorm_forward", CASES["odd"])
    finally:
        inst.close()
    assert prepared == ["layernorm_forward"]
    assert len(compared) >= 3  # the failing call and at least two guesses (layouts first)


def test_memory64_check_names_the_swap_as_the_ops_check_does(
    host: NativeHost, lib2_so: Path, tmp_path: Path
) -> None:
    """The memory64 check folds the ops check's cases (run_cases): the swapped LayerNorm
    binding's op row fails with the diagnosis, an op lib2 lacks is skipped, a good op passes."""
    wrong = _wrong(tmp_path, 'args = ["x", "w", "b", "out",', 'args = ["x", "b", "w", "out",')
    inst = host.load(_artifact(lib2_so, wrong))
    try:
        ops = ["layernorm_forward", "crossentropy_forward", "matmul_forward"]
        ctx = CellContext("native", "ctypes", inst.artifact, PRESETS["tiny"], inst,
                          options={"ops": ops})  # fmt: skip
        rows = {r.subject: r for r in memory64.run(ctx)}
    finally:
        inst.close()
    assert [s for s in rows if s.startswith("op:")] == [f"op:{op}" for op in ops]
    assert rows["op:layernorm_forward"].status == "fail"
    assert "with args 'b' and 'w' swapped it passes" in rows["op:layernorm_forward"].detail
    assert rows["op:crossentropy_forward"].status == "skipped"
    assert rows["op:matmul_forward"].status == "pass"


def test_unexplained_failure_keeps_the_plain_cause(
    host: NativeHost, lib2_so: Path, tmp_path: Path
) -> None:
    """dgamma declared overwritten (lib2 adds into it): the NaN sentinel stays, no hypothesis
    explains it, and the cause is the plain parity text."""
    wrong = _wrong(
        tmp_path,
        'roles = { dx = "output" }\n\n[ops.attention_block_forward]',
        'roles = { dx = "output", dw = "output" }\n\n[ops.attention_block_forward]',
    )
    inst = host.load(_artifact(lib2_so, wrong))
    try:
        ctx = CellContext("native", "ctypes", inst.artifact, PRESETS["tiny"], inst,
                          options={"ops": ["layernorm_backward"]})  # fmt: skip
        rows = {r.subject: r for r in run(ctx)}
    finally:
        inst.close()
    assert rows["layernorm_backward.dbias"].status == "pass"
    detail = rows["layernorm_backward.dweight"].detail
    assert rows["layernorm_backward.dweight"].status == "fail"
    assert "fails parity;" not in detail and "non-finite" in detail


def test_lib2_layernorm_takes_eps_as_an_argument(lib2_instance: Instance) -> None:
    """lib2's binding passes eps through: eps=0.5 gives the reference's eps=0.5 result."""
    x = np.random.default_rng(4).standard_normal((5, 8)).astype(np.float32)
    w, b = np.ones(8, np.float32), np.zeros(8, np.float32)
    out = Kernels(lib2_instance).layernorm_forward(x, w, b, eps=0.5)[0]
    expected = ops.layernorm_forward(x.astype(np.float64), w.astype(np.float64),
                                     b.astype(np.float64), 0.5)[0]  # fmt: skip
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_a_guess_that_crashes_the_host_keeps_the_failure(
    host: NativeHost, lib2_so: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When a diagnosis guess crashes the host, the op's fail rows are still written (with the
    crash as the cause) before the crash ends the check; it never hides the verdict."""
    from harness.checks import ops as ops_check
    from harness.hosts.base import HostCrashed

    wrong = _wrong(tmp_path, 'args = ["x", "W", "out", "N", "C", "OC"]\nlayout = { W = "in_out" }',
                   'args = ["x", "W", "out", "N", "C", "OC"]')  # fmt: skip
    inst = host.load(_artifact(lib2_so, wrong))

    def crash(self: Kernels, override: object) -> Kernels:
        raise HostCrashed("worker died (a guessed dim read past a buffer)")

    monkeypatch.setattr(Kernels, "overridden", crash)
    got: list[tuple[str, str, object]] = []
    try:
        with pytest.raises(HostCrashed):
            for item in ops_check.run_cases(Kernels(inst), ["matmul_forward"],
                                             [CASES["odd"], CASES["random"]], 0):  # fmt: skip
                got.append(item)
    finally:
        inst.close()
    ((op, output, agg),) = got
    assert (op, output) == ("matmul_forward", "out")
    assert isinstance(agg, ops_check.Worst) and "crashed the host" in agg.failure
