"""lib2's model handle (native, ctypes): what the harness's model-level check will compare.

Parameter count against a formula, loss at init near ln 256, loss and training trajectory against
the float64 reference model trained from lib2's exported weights (lib2.h's batching RNG replayed
in Python), generation against the reference sampler, determinism and state round trips.
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Iterator

import numpy as np
import pytest

from harness.bindings import load_binding_cached
from harness.bindings.model_layout import ModelDims, layout_of
from harness.build import REPO_ROOT
from harness.build_lib2 import LIB2_BINDING
from harness.tolerance import model_tolerance
from reference.model import GPT
from reference.presets import param_count
from reference.sampler import SamplerRNG, reachable_tokens
from reference.train import AdamWState, adamw_step, eval_loss
from tests.lib2.lib2_native import VOCAB, Model, num_params, parse_state, split, to_reference

DIMS = ModelDims(VOCAB, ctx=16, n_layer=2, n_head=2, d_model=16, d_mlp=64)
SEED = 1234
DATA_STREAM = 0xDA7A5EED  # lib2.h: the batch stream is rng(seed ^ 0xDA7A5EED)
# a corpus with structure (so training moves the loss) and every byte value present
CORPUS = (b"the quick brown fox jumps over the lazy dog. " * 40) + bytes(range(256))
TRAIN_FRAC = 0.9
# lib2.h: floor(train_frac * n) with the float32 argument widened to double
N_TRAIN = math.floor(float(np.float32(TRAIN_FRAC)) * len(CORPUS))
LAYOUT = layout_of(load_binding_cached(REPO_ROOT / LIB2_BINDING))
assert LAYOUT.defaults is not None
LR, CLIP = 3e-3, 1.0  # tg_train_step's arguments
LIB2_ADAMW = LAYOUT.defaults.training(grad_clip=CLIP, learning_rate=LR)
"""lib2's AdamW literals (lib2_model.c), which the binary does not report: its binding's
``[model.defaults]``, which the trajectory test proves against the library."""


@pytest.fixture
def model(lib2: ctypes.CDLL) -> Iterator[Model]:
    """A fresh lib2 model of DIMS with the corpus set."""
    m = Model(lib2, DIMS, SEED)
    m.set_data(CORPUS, TRAIN_FRAC)
    try:
        yield m
    finally:
        m.close()


def _reference(m: Model) -> GPT:
    """The float64 reference model holding lib2's current weights."""
    cfg = DIMS.reference_config("lib2")
    return GPT(cfg, to_reference(DIMS, m.state().params, np.float64))


@pytest.mark.parametrize(
    "dims",
    [
        DIMS,
        ModelDims(VOCAB, 8, 1, 1, 8, 32),
        ModelDims(VOCAB, 32, 3, 4, 32, 128),
        ModelDims(VOCAB, 5, 2, 3, 12, 20),
    ],
    ids=str,
)
def test_num_params_matches_the_formula(lib2: ctypes.CDLL, dims: ModelDims) -> None:
    """tg_model_num_params is lib2.h's formula and the reference's count at the same dims (d_mlp
    4C or not)."""
    m = Model(lib2, dims, 1)
    try:
        assert m.num_params() == num_params(dims)
        assert m.state().params.size == num_params(dims)
        assert m.num_params() == param_count(dims.reference_config("lib2"))
    finally:
        m.close()


@pytest.mark.parametrize(
    "args",
    [
        (128, 16, 1, 2, 16, 64),
        (256, 16, 1, 3, 16, 64),
        (256, 0, 1, 2, 16, 64),
        (256, 16, 0, 2, 16, 64),
        (256, 16, 1, 2, 16, 0),
    ],
)
def test_create_refuses_bad_configs(lib2: ctypes.CDLL, args: tuple[int, ...]) -> None:
    """A vocabulary other than 256, heads not dividing d_model, or a zero dim give NULL."""
    assert not lib2.tg_model_create(*args, 1)


def test_init_is_the_documented_layout_and_distribution(model: Model) -> None:
    """LayerNorm gammas are 1, biases 0, weights ~ N(0, 0.02) (projections / sqrt(2L))."""
    t = split(DIMS, model.state().params)
    assert np.all(t[("lnf_g", None)] == 1.0) and np.all(t[("lnf_b", None)] == 0.0)
    for layer in range(DIMS.n_layer):
        assert np.all(t[("ln1_g", layer)] == 1.0) and np.all(t[("bq", layer)] == 0.0)
        assert np.all(t[("b1", layer)] == 0.0) and np.all(t[("b2", layer)] == 0.0)
    wte = t[("wte", None)]
    # 4096 draws: the sample std is within 5% of 0.02 with overwhelming probability
    assert abs(float(wte.std()) - 0.02) < 0.001 and abs(float(wte.mean())) < 0.001
    w2 = np.concatenate([t[("W2", i)].ravel() for i in range(DIMS.n_layer)])
    assert abs(float(w2.std()) - 0.02 / math.sqrt(2 * DIMS.n_layer)) < 0.0006


def test_first_uniform_of_the_init_stream_is_the_reference_sampler_rng(model: Model) -> None:
    """wte[0,0] is the first Box-Muller normal of rng(seed): lib2.h's RNG is SamplerRNG."""
    rng = SamplerRNG(SEED)
    u1, u2 = rng.uniform(), rng.uniform()
    z = math.sqrt(-2.0 * math.log(1.0 - u1)) * math.cos(2 * math.pi * u2)
    assert model.state().params[0] == np.float32(0.02 * z)


def test_loss_at_init_is_ln_vocab_and_matches_the_reference(model: Model) -> None:
    """tg_eval at init is near ln 256 and equals the reference's eval loss on the same weights.

    Near: logits are lnf(x) . wte rows with |wte| ~ 0.02 sqrt(C), so the loss exceeds ln 256 by
    about half their variance (~0.003 here); 0.05 is far above that and far below a broken head.
    """
    for which, tokens in ((0, CORPUS[:N_TRAIN]), (1, CORPUS[N_TRAIN:])):
        found = model.eval(which, batch=4, n_batches=3)
        assert abs(found - math.log(VOCAB)) < 0.05
        ref = eval_loss(_reference(model), np.frombuffer(tokens, np.uint8).astype(np.int64),
                        context_length=DIMS.ctx, batch_size=4, max_batches=3)  # fmt: skip
        tol = model_tolerance("loss", n_layer=DIMS.n_layer, n_embd=DIMS.d_model,
                              seq_len=DIMS.ctx, batch=12).tolerance  # fmt: skip
        assert abs(found - ref) <= tol.atol + tol.rtol * abs(ref), (which, found, ref)


def _batches(n_train: int, batch: int, steps: int, seed: int) -> Iterator[tuple[int, ...]]:
    """The window starts of lib2's tg_train_step calls, replayed from lib2.h's recipe."""
    rng = SamplerRNG(seed ^ DATA_STREAM)
    for _ in range(steps):
        yield tuple(int(rng.uniform() * float(n_train - DIMS.ctx)) for _ in range(batch))


def test_training_trajectory_matches_the_reference_from_exported_weights(model: Model) -> None:
    """N steps of tg_train_step against the float64 reference trained from lib2's init.

    The reference gets lib2's exported weights, the batches replayed from lib2.h's RNG, the
    same lr and clip, and lib2's AdamW literals. Every step's loss must agree under the
    ``trajectory`` rule; the step counter and the batch stream's state in the export must be
    exactly what the replay reached.
    """
    steps, batch = 8, 4
    data = np.frombuffer(CORPUS, np.uint8).astype(np.int64)
    ref = _reference(model)
    state = AdamWState.zeros_like(ref.params)
    ref_losses: list[float] = []
    for t, starts in enumerate(_batches(N_TRAIN, batch, steps, SEED), 1):
        offs = np.asarray(starts)[:, None] + np.arange(DIMS.ctx)[None, :]
        _, loss = ref.forward(data[offs], data[offs + 1])
        assert loss is not None
        ref.params, state, _ = adamw_step(ref.params, ref.backward(), state, t, LIB2_ADAMW,
                                          lr=LR, decayed=LAYOUT.reference_decayed())  # fmt: skip
        ref_losses.append(loss)
    found = [model.train_step(batch, LR, CLIP) for _ in range(steps)]
    rule = model_tolerance("trajectory", n_layer=DIMS.n_layer, n_embd=DIMS.d_model,
                           seq_len=DIMS.ctx, batch=batch, steps=steps).tolerance  # fmt: skip
    for i, (f, r) in enumerate(zip(found, ref_losses, strict=True)):
        assert abs(f - r) <= rule.atol + rule.rtol * abs(r), (i, found, ref_losses, rule.reason)
    assert ref_losses[-1] < ref_losses[0] - 0.1, "the trajectory must actually move"
    st = model.state()
    replay = SamplerRNG(SEED ^ DATA_STREAM)
    for _ in range(steps * batch):
        replay.uniform()
    assert (st.step, st.rng) == (steps, replay.state)


def test_trajectory_comparison_fails_with_a_wrong_batch_stream(model: Model) -> None:
    """The trajectory check can fail: batches from another seed give losses out of tolerance."""
    data = np.frombuffer(CORPUS, np.uint8).astype(np.int64)
    ref = _reference(model)
    (starts,) = _batches(N_TRAIN, 4, 1, SEED + 1)
    offs = np.asarray(starts)[:, None] + np.arange(DIMS.ctx)[None, :]
    ref_loss = ref.forward(data[offs], data[offs + 1])[1]
    assert ref_loss is not None
    rule = model_tolerance("trajectory", n_layer=DIMS.n_layer, n_embd=DIMS.d_model,
                           seq_len=DIMS.ctx, batch=4, steps=1).tolerance  # fmt: skip
    found = model.train_step(4, 3e-3, 1.0)
    assert abs(found - ref_loss) > rule.atol + rule.rtol * abs(ref_loss)


@pytest.mark.parametrize(("temperature", "top_k"), [(0.0, 0), (1.0, 0), (0.8, 5)])
def test_generation_matches_the_reference_sampler(
    model: Model, temperature: float, top_k: int
) -> None:
    """Each generated byte is one the reference sampler can draw from the reference logits.

    The reference replays lib2's own sequence window by window (last ctx bytes) with the same
    uniform stream rng(seed); where logits within the logits tolerance could flip the draw, any
    token of reachable_tokens is accepted (docs/checks.md, sampling parity).
    """
    for _ in range(20):  # trained a little, so logits are not all alike
        model.train_step(4, 3e-3, 1.0)
    prompt, seed, n = b"the quick", 77, 24
    out = model.generate(prompt, n, temperature, top_k, seed)
    ref = _reference(model)
    rng = SamplerRNG(seed)
    seq = list(prompt)
    rule = model_tolerance("logits", n_layer=DIMS.n_layer, n_embd=DIMS.d_model,
                           seq_len=DIMS.ctx, batch=1).tolerance  # fmt: skip
    for s, tok in enumerate(out):
        window = np.asarray(seq[-DIMS.ctx :], np.int64)[None, :]
        logits = ref.forward(window)[0][0, -1]
        u = None if temperature == 0.0 else rng.uniform()
        eps = rule.atol + rule.rtol * float(np.abs(logits).max())
        assert tok in reachable_tokens(logits, temperature, top_k, u, eps), (s, tok)
        seq.append(tok)


def test_same_seed_same_bytes(lib2: ctypes.CDLL) -> None:
    """Two models of one seed export identical states before and after training, and generate
    identical bytes; another seed gives other weights."""
    a, b, c = (Model(lib2, DIMS, s) for s in (SEED, SEED, SEED + 1))
    try:
        assert a.export_state() == b.export_state() != c.export_state()
        for m in (a, b):
            m.set_data(CORPUS, TRAIN_FRAC)
        la = [a.train_step(4, 3e-3, 1.0) for _ in range(3)]
        lb = [b.train_step(4, 3e-3, 1.0) for _ in range(3)]
        assert la == lb and a.export_state() == b.export_state()
        assert a.generate(b"the", 16, 1.0, 0, 5) == b.generate(b"the", 16, 1.0, 0, 5)
    finally:
        for m in (a, b, c):
            m.close()


def test_export_import_round_trip(lib2: ctypes.CDLL, model: Model) -> None:
    """A state imported into a model of another seed continues bit-identically: weights, AdamW
    moments, step and batch stream all travel. A state of another config is refused (-1) and
    leaves the model unchanged."""
    for _ in range(2):
        model.train_step(4, 3e-3, 1.0)
    blob = model.export_state()
    other = Model(lib2, DIMS, SEED + 99)
    other.set_data(CORPUS, TRAIN_FRAC)
    try:
        assert other.import_state(blob) == 0 and other.export_state() == blob
        st = parse_state(blob, num_params(DIMS))
        assert st.step == 2 and np.any(st.m != 0) and np.all(st.v >= 0)
        assert [model.train_step(4, 3e-3, 1.0) for _ in range(2)] == [
            other.train_step(4, 3e-3, 1.0) for _ in range(2)
        ]
        assert model.export_state() == other.export_state()
    finally:
        other.close()
    small = Model(lib2, ModelDims(VOCAB, 8, 1, 1, 8, 32), 1)
    try:
        before = small.export_state()
        assert small.import_state(blob) == -1 and small.export_state() == before
    finally:
        small.close()


def test_bad_calls_return_errors_not_crashes(lib2: ctypes.CDLL, model: Model) -> None:
    """No data, a corpus shorter than ctx, a bad split or sampler argument: -1, not a crash."""
    fresh = Model(lib2, DIMS, 1)
    try:
        assert fresh.train_step(4, 1e-3, 1.0) == -1.0 and fresh.eval(0, 4, 1) == -1.0
        fresh.set_data(b"short", 0.9)
        assert fresh.train_step(4, 1e-3, 1.0) == -1.0
    finally:
        fresh.close()
    assert model.eval(2, 4, 1) == -1.0 and model.train_step(0, 1e-3, 1.0) == -1.0
    out = np.zeros(4, np.uint8)
    p = np.frombuffer(b"ab", np.uint8).copy()
    for temperature, top_k in ((-1.0, 0), (1.0, -1)):
        assert lib2.tg_generate(model.handle, p.ctypes.data, 2, out.ctypes.data, 4, temperature,
                                top_k, 1) == -1  # fmt: skip
    assert lib2.tg_generate(model.handle, p.ctypes.data, 0, out.ctypes.data, 4, 0.0, 0, 1) == -1


def test_train_split_widens_the_float32_fraction(lib2: ctypes.CDLL) -> None:
    """n_train = floor(double(0.9f) * 20) = 17, not Python's floor(0.9 * 20) = 18: with ctx 17
    the train split holds no full window and tg_train_step refuses; at ctx 16 it trains."""
    assert math.floor(0.9 * 20) == 18 and math.floor(float(np.float32(0.9)) * 20) == 17
    for ctx, ok in ((17, False), (16, True)):
        m = Model(lib2, ModelDims(VOCAB, ctx, 1, 1, 8, 32), 1)
        try:
            m.set_data(bytes(range(20)), 0.9)
            assert (m.train_step(1, 1e-3, 1.0) != -1.0) == ok
        finally:
            m.close()
