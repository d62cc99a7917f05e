"""reference.generate: KV-cache and full-window paths agree, the window rule, sampling seeds."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from reference.defaults import DEFAULTS
from reference.generate import generate, window_start
from reference.model import GPT, init_params
from reference.presets import PRESETS

TINY = PRESETS["tiny"]  # block_size 16
# init_std 0.5 makes a random model's greedy output varied instead of one repeated token
LOUD = dataclasses.replace(DEFAULTS, init_std=0.5)


def loud_params(dtype: type[np.floating] = np.float32, seed: int = 0) -> dict[str, np.ndarray]:
    """Random tiny params large enough that greedy decoding does not collapse to one token."""
    return init_params(TINY, LOUD, seed=seed, dtype=dtype)


def test_window_rule_keeps_the_last_block_size_tokens() -> None:
    """start = max(0, n - block_size)."""
    assert [window_start(n, 16) for n in (1, 15, 16, 17, 40)] == [0, 0, 0, 1, 24]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("prompt_len", "n_new"), [(1, 10), (5, 40), (20, 12), (16, 3)])
def test_kv_cache_and_full_window_greedy_outputs_are_identical(
    dtype: type[np.floating], prompt_len: int, n_new: int
) -> None:
    """Greedy tokens match with and without the cache, also sliding past block_size=16."""
    params = loud_params(dtype)
    prompt = [int(t) for t in np.random.default_rng(prompt_len).integers(32, 127, prompt_len)]
    with_cache = generate(TINY, params, prompt, n_new, use_kv_cache=True)
    without = generate(TINY, params, prompt, n_new, use_kv_cache=False)
    assert with_cache == without
    assert len(with_cache) == n_new and all(0 <= t < 128 for t in with_cache)
    if n_new >= 10:
        assert len(set(with_cache)) > 2, "degenerate output would make the comparison vacuous"


def test_kv_cache_path_follows_a_variant_architecture() -> None:
    """A byte-level variant (vocab 256, MLP width 24, no projection biases, eps 1e-3): the cached
    path uses the config's biases and eps as the full forward does, so both give one sequence."""
    cfg = dataclasses.replace(TINY, name="variant", vocab_size=256, d_mlp=24,
                              biases=("qkv", "fc"), ln_eps=1e-3)  # fmt: skip
    params = init_params(cfg, LOUD, seed=4, dtype=np.float64)
    prompt = [104, 105, 33]
    with_cache = generate(cfg, params, prompt, 30, use_kv_cache=True)
    assert with_cache == generate(cfg, params, prompt, 30, use_kv_cache=False)
    assert len(set(with_cache)) > 2, "degenerate output would make the comparison vacuous"


def test_greedy_follows_the_documented_window_rule() -> None:
    """Greedy output equals a hand loop: argmax of GPT.forward(seq[-block_size:]) last logits."""
    params = loud_params(np.float64, seed=1)
    model = GPT(TINY, params)
    seq = [72, 105, 33]
    expected = []
    for _ in range(30):  # 33 tokens in all: the window slides 17 times
        logits, _ = model.forward(np.array([seq[-TINY.block_size :]]))
        seq.append(int(np.argmax(logits[0, -1])))
        expected.append(seq[-1])
    assert generate(TINY, params, [72, 105, 33], 30, use_kv_cache=True) == expected


def test_greedy_ties_go_to_the_lowest_token_id() -> None:
    """With wte all zero every logit is 0, so greedy must emit token 0 every time."""
    params = loud_params()
    params["wte"] = np.zeros_like(params["wte"])
    assert generate(TINY, params, [5], 4, use_kv_cache=True) == [0, 0, 0, 0]
    assert generate(TINY, params, [5], 4, use_kv_cache=False) == [0, 0, 0, 0]


def test_temperature_sampling_is_reproducible_per_seed() -> None:
    """Same seed, same tokens (either path); another seed gives another sequence."""
    params = loud_params()
    a = generate(TINY, params, [65], 30, True, temperature=1.0, seed=42)
    assert a == generate(TINY, params, [65], 30, True, temperature=1.0, seed=42)
    assert a == generate(TINY, params, [65], 30, False, temperature=1.0, seed=42)
    assert a != generate(TINY, params, [65], 30, True, temperature=1.0, seed=43)


def test_tiny_temperature_approaches_greedy() -> None:
    """At temperature 1e-3 sampling picks the argmax of these well-separated logits."""
    params = loud_params()
    greedy = generate(TINY, params, [65, 66], 20, True)
    assert generate(TINY, params, [65, 66], 20, True, temperature=1e-3, seed=1) == greedy


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prompt": []}, "prompt is empty"),
        ({"prompt": [1, 128]}, r"prompt holds ids \[128\] outside \[0, 128\)"),
        ({"n_new": -1}, "n_new must be >= 0"),
        ({"temperature": -0.5}, "temperature must be finite and >= 0"),
    ],
)
def test_bad_generate_arguments_are_named(kwargs: dict[str, object], message: str) -> None:
    """Empty or out-of-range prompts, negative n_new and temperature raise ValueError."""
    args: dict[str, object] = {"prompt": [1], "n_new": 2, "use_kv_cache": True}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        generate(TINY, loud_params(), **args)  # type: ignore[arg-type]
