"""The model check's rows against a project's reference dump say what judged them (trial s44).

Each test writes our reference's dump of tiny, makes one mistake a project's dump writer made
in the adoption trial (docs/reference-dump.md), and reads the rows: a self-inconsistent dump is
blamed first (D15), ``adamw:params`` names tensors (D2), every row names its oracle (D3),
degenerate greedy tokens are weak evidence (D7), a greedy array holding the prompt is named
(D10), a float32 dump leaves a trace (D12).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from harness.artifact import Artifact
from harness.checks import dump_selfcheck
from harness.checks.base import CellContext
from harness.checks.model import run
from harness.engines.ctypes_engine import CtypesInstance
from harness.rundir.rows import Row
from harness.rundir.verdict import decide
from reference.dump import ReferenceDump, load_dump, save, write_dump
from reference.model import DECAYED_PARAMS
from reference.presets import PARAM_NAMES, PRESETS

OPTIONS = {"batch": 2, "steps": 3, "gen_train_steps": 20}  # the dump is written to match
# rows that judge the kernel against itself, not against a reference
SELF_JUDGED = ("hash:", "determinism", "bounds")

pytestmark = pytest.mark.corpus


@pytest.fixture(scope="module")
def dump_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Our reference's dump of tiny, drawn as the check draws with OPTIONS."""
    path = tmp_path_factory.mktemp("s44dump") / "tiny.npz"
    write_dump(path, PRESETS["tiny"], batch=OPTIONS["batch"], steps=OPTIONS["steps"])
    return path


def _run(
    native: CtypesInstance, artifact: Artifact, dump: ReferenceDump, tmp_path: Path
) -> list[Row]:
    """The model check's rows with ``dump`` (saved and loaded, as a run does) as its oracle."""
    path = tmp_path / "mutated.npz"
    save(path, dump)
    ctx = CellContext("native", "ctypes", artifact, PRESETS["tiny"], native,
                      options=OPTIONS, reference=load_dump(path))  # fmt: skip
    return list(run(ctx))


def _detail(rows: list[Row], subject: str) -> str:
    return next(r.detail for r in rows if r.subject == subject and r.status != "measured")


def test_a_transposed_square_weight_blames_the_dump_first(
    native: CtypesInstance, native_artifact: Artifact, dump_path: Path, tmp_path: Path
) -> None:
    """A dump whose square attprojw is stored [in, out] (its logits computed from the right
    orientation) fails its own self-check: the dump:* rows come first, dump:logits is the
    cell's first cause and names the usual causes, and failing kernel rows point at it."""
    d = load_dump(dump_path)
    params = dict(d.params)
    params["attprojw"] = np.ascontiguousarray(params["attprojw"].transpose(0, 2, 1))
    rows = _run(native, native_artifact, dataclasses.replace(d, params=params), tmp_path)
    assert rows[0].subject == "dump:logits"
    verdict, cause = decide(rows)
    assert verdict == "fail" and cause.startswith("model:dump:logits: the dump's own arrays")
    assert "disagree with a float64 GPT-2" in cause and "[in, out]" in cause
    assert "exact-erf GELU" in cause and "LayerNorm eps" in cause
    assert f"; dump: reference dump {tmp_path / 'mutated.npz'}" in cause
    assert "dump:grad:attprojw" in {r.subject for r in rows if r.status == "fail"}
    kernel_fails = [r for r in rows if r.status == "fail" and not r.subject.startswith("dump:")]
    assert kernel_fails
    assert all("the dump itself fails its self-check (dump:logits" in r.detail
               for r in kernel_fails)  # fmt: skip


def test_the_self_check_runs_once_per_dump_file(dump_path: Path) -> None:
    """Two loads of one dump file (two cells of a matrix) share one self-check: the second
    call returns the first's result instead of running the GPT again."""
    first = dump_selfcheck.self_check(load_dump(dump_path))
    assert first.ok
    assert dump_selfcheck.self_check(load_dump(dump_path)) is first


def test_adamw_params_names_the_tensors_outside_the_decay_set(
    native: CtypesInstance, native_artifact: Artifact, dump_path: Path, tmp_path: Path
) -> None:
    """A reference that also decays biases and LayerNorm (decay_all): adamw:params names the
    worst element by tensor and index and says every failing element is outside the decay set;
    the dump's self-check still passes (its forward/backward are right)."""
    d = load_dump(dump_path)
    after = dict(d.adamw_params)
    for n in PARAM_NAMES:
        if n not in DECAYED_PARAMS:  # LayerNorm weights are 1: a visible decay
            after[n] = after[n] - 1e-3 * d.params[n].astype(np.float64)
    rows = _run(native, native_artifact, dataclasses.replace(d, adamw_params=after), tmp_path)
    detail = _detail(rows, "adamw:params")
    assert "values stage" in detail
    worst = detail.split("worst at ")[1].split(" (flat index")[0]
    assert worst.split("[")[0] in {"ln1w", "ln2w", "lnfw"} and worst.endswith("]"), detail
    assert "tensors tinygpt.h does not decay" in detail
    assert "does the reference decay biases/LayerNorm?" in detail
    assert all(r.status == "pass" for r in rows if r.subject.startswith("dump:"))


def test_every_reference_judged_row_names_its_oracle(
    native: CtypesInstance, native_artifact: Artifact, dump_path: Path, tmp_path: Path
) -> None:
    """In a cell with a dump, every row judged by a reference names which: the dump, or the
    harness's numpy reference with the dump's training config (the per-tensor AdamW rows)."""
    rows = _run(native, native_artifact, load_dump(dump_path), tmp_path)
    for r in rows:
        if r.status != "measured" and not r.subject.startswith(SELF_JUDGED):
            assert "; oracle: " in r.detail, r
    ours = "; oracle: harness numpy reference (preset tiny, the dump's training config"
    assert ours in _detail(rows, "adamw:ln1w")
    assert "; oracle: harness numpy reference" in _detail(rows, "generate:kv:slide")
    assert "oracle arrays float32" not in _detail(rows, "logits")  # a float64 dump


def test_degenerate_greedy_tokens_are_weak_evidence(
    native: CtypesInstance, native_artifact: Artifact, dump_path: Path, tmp_path: Path
) -> None:
    """At random init the dump's greedy tokens are one token repeated: generate:kv and
    generate:nokv pass (the tokens match) but say they cannot tell window rules apart."""
    d = load_dump(dump_path)
    assert len(set(d.greedy.tolist())) == 1  # the premise: tiny's init is degenerate
    rows = _run(native, native_artifact, d, tmp_path)
    for subject in ("generate:kv", "generate:nokv"):
        row = next(r for r in rows if r.subject == subject)
        assert row.status == "pass"
        assert "weak evidence" in row.detail and "cannot tell window rules apart" in row.detail


def test_greedy_holding_the_prompt_is_named(
    native: CtypesInstance, native_artifact: Artifact, dump_path: Path, tmp_path: Path
) -> None:
    """A dump whose generate.greedy starts with generate.prompt fails generate:kv with a hint
    that the prompt must not be included."""
    d = load_dump(dump_path)
    greedy = np.concatenate([d.prompt, d.greedy]).astype(np.int32)
    rows = _run(native, native_artifact, dataclasses.replace(d, greedy=greedy), tmp_path)
    row = next(r for r in rows if r.subject == "generate:kv")
    assert row.status == "fail"
    assert "generate.greedy starts with generate.prompt" in row.detail
    assert "without the prompt" in row.detail


@pytest.mark.parametrize(("past", "hinted"), [(1, True), (0, False)])
def test_a_greedy_difference_where_the_window_slides_hints_at_the_window(
    native: CtypesInstance,
    native_artifact: Artifact,
    dump_path: Path,
    tmp_path: Path,
    past: int,
    hinted: bool,
) -> None:
    """A greedy sequence that first differs at the first token predicted from more than
    block_size tokens (a window rule of the first block_size) names the window rule; one
    that differs a token earlier does not."""
    d = load_dump(dump_path)
    i = PRESETS["tiny"].block_size + past - len(d.prompt)  # context len(prompt) + i
    greedy = d.greedy.copy()
    greedy[i:] = (greedy[i:] + 1) % PRESETS["tiny"].vocab_size
    rows = _run(native, native_artifact, dataclasses.replace(d, greedy=greedy), tmp_path)
    row = next(r for r in rows if r.subject == "generate:kv")
    assert row.status == "fail" and row.detail.startswith(f"greedy token {i} of ")
    assert ("(idx[:, -block_size:])?" in row.detail) is hinted, row.detail


def test_a_float32_dump_says_so_in_its_rows(
    native: CtypesInstance, native_artifact: Artifact, dump_path: Path, tmp_path: Path
) -> None:
    """A dump whose computed arrays were written as float32 (widened on load) leaves a trace:
    the rows it judges say which of its arrays are float32."""
    d = load_dump(dump_path)
    grads = {n: v.astype(np.float32) for n, v in d.grads.items()}
    narrow = dataclasses.replace(d, logits=d.logits.astype(np.float32), grads=grads,
                                 traj_loss=d.traj_loss.astype(np.float32))  # fmt: skip
    rows = _run(native, native_artifact, narrow, tmp_path)
    for subject in ("logits", "grad:wte", "trajectory", "dump:logits"):
        assert "oracle arrays float32 (logits, grad.*, trajectory.loss" in _detail(rows, subject)
    assert "adamw.param" not in _detail(rows, "logits").split("oracle arrays float32")[1]


def test_a_partly_float32_dump_names_its_float32_arrays(dump_path: Path) -> None:
    """A dump with only some gradients float32 names those, not the whole group; a float64
    dump names none."""
    d = load_dump(dump_path)
    assert dump_selfcheck.float32_arrays(d) == []
    grads = dict(d.grads)
    grads["qkvw"] = grads["qkvw"].astype(np.float32).astype(np.float64)
    mixed = dataclasses.replace(d, grads=grads, loss=float(np.float32(d.loss)))
    assert dump_selfcheck.float32_arrays(mixed) == ["loss", "grad.qkvw"]
