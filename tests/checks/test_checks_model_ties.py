"""Model-check escapes, now caught: exact ties and a stale loss count (the s43 fault hunt); a
sampler CDF summed in float32, a sign-extended seed, top_k = V - 1 kept whole, activations reused
by token count, and a train step that does not zero its gradients (s47).

Native, preset tiny, through :func:`harness.checks.model.run`; the fault builds are
``tests/checks/conftest.py``'s ``FAULTS``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pytest

from harness.artifact import Artifact
from harness.checks.base import CellContext
from harness.checks.generation import (
    cdf_logits,
    cdf_window,
    edge_ks,
    edge_window,
    seed_for,
    tie_logits,
    tie_params,
)
from harness.checks.model import _other_batch, run
from harness.engines.ctypes_engine import CtypesInstance
from harness.hosts.base import HostError
from harness.kernel import KernelModel
from harness.rundir.rows import Row
from reference.defaults import DEFAULTS
from reference.model import flatten_params, init_params
from reference.presets import PARAM_NAMES, PRESETS
from reference.sampler import SamplerRNG, first_uniforms, pick

Fault = Callable[[str], tuple[CtypesInstance, Artifact]]
TIES = ("sample:ties:T=0,k=0", "sample:ties:T=1,k=5")
CDF = "sample:cdf:T=1,k=0"
V = PRESETS["tiny"].vocab_size
EDGES = tuple(f"sample:topk_edge:T=1,k={k}" for k in edge_ks(V))
DESIGNED = (CDF, *EDGES)
GRADS = tuple(f"grad:{n}" for n in PARAM_NAMES)


def _rows(instance: CtypesInstance, artifact: Artifact) -> list[Row]:
    ctx = CellContext("native", "ctypes", artifact, PRESETS["tiny"], instance,
                      options={"steps": 2, "batch": 2})  # fmt: skip
    return list(run(ctx))


def _failed(rows: list[Row]) -> dict[str, str]:
    return {r.subject: r.detail for r in rows if r.status == "fail"}


@pytest.fixture(scope="module")
def clean(native: CtypesInstance, native_artifact: Artifact) -> list[Row]:
    """The model check's rows of the clean build."""
    return _rows(native, native_artifact)


@pytest.mark.corpus
def test_clean_build_passes_the_tie_and_gradient_rows(clean: list[Row]) -> None:
    """The clean build passes both tie rows (16 draws each), the designed-draw rows (8 each),
    ``train_step:zero_grad`` and every grad row, the latter on a model that first ran a forward
    at more tokens in half-length rows."""
    status = {r.subject: r.status for r in clean if r.status != "measured"}
    rows = (*TIES, *DESIGNED, "train_step:zero_grad", *GRADS)
    assert {s: status[s] for s in rows} == dict.fromkeys(rows, "pass")
    draws = {r.subject: r.value for r in clean if r.subject in (*TIES, *DESIGNED)}
    assert draws == {**dict.fromkeys(TIES, 16.0), **dict.fromkeys(DESIGNED, 8.0)}
    assert not _failed(clean)


def test_cdf_seed_puts_u_where_float32_and_float64_sums_draw_apart() -> None:
    """The CDF row's design holds at both vocabularies: the float64 sampler draws a token in the
    middle of 1..V-1, while the same CDF summed in float32 (weights below 2^-24 absorbed after
    token 0's 1) draws 0; ``first_uniforms`` agrees with the exact stream."""
    for vocab in (128, 256):
        cfg = dataclasses.replace(PRESETS["tiny"], vocab_size=vocab)
        seed, u = seed_for(*cdf_window(vocab))
        assert seed >= 2**31  # where a sign-extended uint32 seed draws another stream
        assert SamplerRNG(seed).uniform() == u == first_uniforms(np.array([seed], np.uint64))[0]
        logits = cdf_logits(cfg)
        assert vocab / 4 < pick(logits, 1.0, 0, u) < 3 * vocab / 4
        weights = np.exp(logits.astype(np.float64))
        total = np.float32(0.0)
        for w in weights:  # the float32 sum, in index order
            total = np.float32(total + np.float32(w))
        assert total == np.float32(1.0)  # so u * total < 1 = the running sum after token 0


@pytest.mark.corpus
def test_float_cdf_fails_the_cdf_row_only(fault: Fault) -> None:
    """TG_BUG_SAMPLER_FLOAT_CDF (the draw's running sum in float): every trained-state
    ``sample:T=..`` row passes (its boundaries move by ~1e-7), and ``sample:cdf:T=1,k=0`` fails
    naming the draw, the token the float64 CDF gives and the float32 absorption."""
    failed = _failed(_rows(*fault("native-bug-float-cdf")))
    assert set(failed) == {CDF}, failed
    detail = failed[CDF]
    seed, u = seed_for(*cdf_window(V))
    assert f"drew 0, the sampler (seed {seed}, T=1, top_k=0, u={u!r}) draws " in detail
    assert "absorbs every weight below 2^-24" in detail


def test_tie_params_give_exact_ties_on_the_clean_build(native: CtypesInstance) -> None:
    """The tie weights' logits are the designed ones bit for bit (1 at eight indices, the last
    V - 1, else 0) at every step of both paths, so the tie rule is exact there."""
    cfg = PRESETS["tiny"]
    model = KernelModel.create(native, cfg, tie_params(cfg))
    try:
        for kv in (True, False):
            _, logits = model.generate_logged([5, 6], 4, kv)
            assert (logits == tie_logits(cfg)).all()
    finally:
        model.free()


@pytest.mark.corpus
def test_greedy_tie_bug_fails_the_greedy_tie_row(fault: Fault) -> None:
    """TG_BUG_GREEDY_TIE (last index wins a tie): ``sample:ties:T=0,k=0`` fails naming the tie
    and the lowest index; nothing else fails (trained logits never tie)."""
    failed = _failed(_rows(*fault("native-bug-greedy-tie")))
    assert set(failed) == {"sample:ties:T=0,k=0"}, failed
    detail = failed["sample:ties:T=0,k=0"]
    assert "drew 127 from 8 exactly tied logits" in detail
    assert "greedy picks the lowest tied index" in detail and "draws 2" in detail


@pytest.mark.corpus
def test_topk_tie_bug_fails_the_topk_tie_row(fault: Fault) -> None:
    """TG_BUG_TOPK_TIE (ties kept by descending index): ``sample:ties:T=1,k=5`` fails naming the
    kept set [2, 9, 17, 33, 64], and so do the top-k edge rows that drop tied tokens (k = 1
    and V - 1, on logits all 0); nothing else fails."""
    failed = _failed(_rows(*fault("native-bug-topk-tie")))
    edges = {f"sample:topk_edge:T=1,k={k}" for k in (1, V - 1)}
    assert set(failed) == {"sample:ties:T=1,k=5", *edges}, failed
    assert "top-k keeps the lowest tied indices [2, 9, 17, 33, 64]" in failed["sample:ties:T=1,k=5"]


@pytest.mark.corpus
def test_stale_loss_count_fails_every_gradient_row(fault: Fault) -> None:
    """TG_BUG_STALE_N (the loss mean over the activations' capacity): after the (B + 1,
    block_size) forward every grad row fails, scaled by B*T / ((B + 1) * block_size); logits,
    loss and the tie rows pass."""
    rows = _rows(*fault("native-bug-stale-n"))
    failed = _failed(rows)
    assert set(GRADS) <= set(failed), sorted(failed)
    status = {r.subject: r.status for r in rows if r.status != "measured"}
    assert status["logits"] == status["loss"] == "pass"
    assert all(status[s] == "pass" for s in TIES)


def test_a_nan_loss_from_the_model_state_names_the_state(native: CtypesInstance) -> None:
    """A NaN train-step loss from valid arguments (a non-finite parameter, as AdamW moments left
    unzeroed leave them) says the state, not 'rejected its arguments', and counts the values."""
    cfg = PRESETS["tiny"]
    flat = flatten_params(cfg, init_params(cfg, DEFAULTS, seed=3, dtype=np.float32))
    flat = flat.astype(np.float32)
    flat[7] = np.nan
    x = np.zeros((1, 4), np.int32)
    model = KernelModel.create(native, cfg, flat)
    try:
        with pytest.raises(HostError) as err:
            model.train_step(x, x, 1e-3, DEFAULTS, 1)
    finally:
        model.free()
    message = str(err.value)
    assert "or the loss is NaN from the model's state" in message
    assert "parameters are not finite" in message and "rejected its arguments (" not in message


@pytest.mark.corpus
def test_unzeroed_moments_do_not_pass_the_model_check(fault: Fault) -> None:
    """TG_BUG_MV_NOT_ZEROED: what the moments hold depends on the allocator's history, so the
    model check either fails optimizer rows (``adamw:*``) or stops on a NaN train step whose
    error names the model's state, never the arguments alone."""
    try:
        failed = _failed(_rows(*fault("native-bug-mv-not-zeroed")))
    except HostError as exc:
        assert "from the model's state" in str(exc)
        return
    assert any(s.startswith("adamw:") for s in failed), sorted(failed)


def test_topk_edge_seed_draws_v_minus_1_whole_and_v_minus_2_at_k_v_minus_1() -> None:
    """On logits all 0 with the edge rows' seed, keeping all V tokens draws V - 1 and keeping
    the first V - 1 draws V - 2, so a kernel that keeps all at top_k = V - 1 fails."""
    seed, u = seed_for(*edge_window(V))
    flat = np.zeros(V, np.float32)
    assert seed >= 2**31
    assert pick(flat, 1.0, 0, u) == pick(flat, 1.0, V, u) == V - 1
    assert pick(flat, 1.0, V - 1, u) == V - 2 and pick(flat, 1.0, 1, u) == 0


@pytest.mark.corpus
def test_sign_extended_seed_fails_every_designed_row(fault: Fault) -> None:
    """TG_BUG_SEED_SIGNEXT (the uint32 seed cast through int32): the designed rows' seeds are
    2^31 or more, so their streams differ and every designed row whose draw depends on u fails
    (top_k = 1 always draws 0); the trained-state sample rows, at the cell's seed 0, pass."""
    failed = _failed(_rows(*fault("native-bug-seed-signext")))
    assert set(failed) == set(DESIGNED) - {"sample:topk_edge:T=1,k=1"}, failed


@pytest.mark.corpus
def test_topk_v_minus_1_kept_whole_fails_its_edge_row(fault: Fault) -> None:
    """TG_BUG_TOPK_VM1 (top_k = V - 1 taken as keep-all): ``sample:topk_edge:T=1,k=V-1`` fails,
    drawing V - 1 where the sampler draws V - 2; nothing else fails."""
    failed = _failed(_rows(*fault("native-bug-topk-vm1")))
    subject = f"sample:topk_edge:T=1,k={V - 1}"
    assert set(failed) == {subject}, failed
    assert f"drew {V - 1}, the sampler" in failed[subject]
    assert f"draws {V - 2}: every logit is 0, so top_k={V - 1} keeps the first" in failed[subject]


@pytest.mark.corpus
def test_activations_reused_by_token_count_fail_the_gradient_rows(fault: Fault) -> None:
    """TG_BUG_ACTS_CAP_TOKENS (activations reused while B * T fits, though attention's hold
    B * NH * T * T): after the warm-up forward at more tokens in half-length rows, the graded
    backward runs on too-small attention buffers and gradient rows fail."""
    failed = _failed(_rows(*fault("native-bug-acts-cap-tokens")))
    assert any(s.startswith("grad:") for s in failed), sorted(failed)


@pytest.mark.corpus
def test_train_step_without_zero_grad_fails_its_row(fault: Fault) -> None:
    """TG_BUG_TRAIN_NO_ZERO (train_step accumulates onto the last step's gradients): the
    ``train_step:zero_grad`` row fails, naming the tensors; grads (from backward after
    zero_grad) pass, and the 10-step trajectory at warmup rates is no evidence either way."""
    failed = _failed(_rows(*fault("native-bug-train-no-zero")))
    assert "train_step:zero_grad" in failed, sorted(failed)
    assert "16 of 16 tensors differ" in failed["train_step:zero_grad"]
    assert not any(s.startswith("grad:") for s in failed), sorted(failed)


def test_zero_grad_row_steps_first_on_a_batch_other_than_the_graded_one() -> None:
    """The zero_grad row's first step takes the first trajectory batch whose tokens differ from
    the parity batch's, else (y, x): on the same batch a clipped gradient plus itself clips back
    to itself, and a train step that does not zero its gradients would pass."""
    x, y = np.arange(8).reshape(2, 4), np.arange(1, 9).reshape(2, 4)
    other = (x + 10, y + 10)
    assert _other_batch(x, y, [(x, y), other])[0] is other[0]
    picked = _other_batch(x, y, [(x.copy(), y)])
    assert picked[0] is y and picked[1] is x
