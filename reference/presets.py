"""Model presets: exact dimensions and parameter counts.

The tokenizer is a fixed 7-bit ASCII character tokenizer (token id == byte value), so
``vocab_size`` is 128 for every preset and the parameter counts below are exact. The LM head is
tied to the token embedding ``wte`` (as in GPT-2 and llm.c), so it adds no parameters.

Parameters are stored per kind and stacked over layers, in the llm.c order given by
:func:`param_shapes`. That order is also the flat layout the C ABI uses (see
``artifacts/include/tinygpt.h``), so one flat float32 buffer moves identical weights between the
reference and every binary.
"""

from __future__ import annotations

from dataclasses import dataclass

VOCAB_SIZE = 128


@dataclass(frozen=True)
class ModelConfig:
    """Dimensions of one GPT model."""

    name: str
    n_layer: int  # transformer blocks
    n_head: int  # attention heads per block
    n_embd: int  # channels C; must be divisible by n_head
    block_size: int  # maximum sequence length (rows of wpe)
    vocab_size: int = VOCAB_SIZE

    @property
    def head_size(self) -> int:
        """Channels per attention head."""
        return self.n_embd // self.n_head

    def __post_init__(self) -> None:
        if self.n_embd % self.n_head != 0:
            raise ValueError(
                f"preset {self.name!r}: n_embd={self.n_embd} is not divisible by "
                f"n_head={self.n_head}"
            )


PARAM_NAMES: tuple[str, ...] = (
    "wte", "wpe", "ln1w", "ln1b", "qkvw", "qkvb", "attprojw", "attprojb",
    "ln2w", "ln2b", "fcw", "fcb", "fcprojw", "fcprojb", "lnfw", "lnfb",
)  # fmt: skip


def param_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Return ``{name: shape}`` for every parameter tensor, in the flat ABI order."""
    V, T, C, L = cfg.vocab_size, cfg.block_size, cfg.n_embd, cfg.n_layer
    return {
        "wte": (V, C),  # token embedding, also the tied LM head
        "wpe": (T, C),  # position embedding
        "ln1w": (L, C),
        "ln1b": (L, C),
        "qkvw": (L, 3 * C, C),  # linear weights are (out, in), as in PyTorch
        "qkvb": (L, 3 * C),
        "attprojw": (L, C, C),
        "attprojb": (L, C),
        "ln2w": (L, C),
        "ln2b": (L, C),
        "fcw": (L, 4 * C, C),
        "fcb": (L, 4 * C),
        "fcprojw": (L, C, 4 * C),
        "fcprojb": (L, C),
        "lnfw": (C,),
        "lnfb": (C,),
    }


def param_count(cfg: ModelConfig) -> int:
    """Return the exact number of parameters of ``cfg``."""
    total = 0
    for shape in param_shapes(cfg).values():
        n = 1
        for d in shape:
            n *= d
        total += n
    return total


PRESETS: dict[str, ModelConfig] = {
    p.name: p
    for p in (
        ModelConfig("tiny", n_layer=1, n_head=2, n_embd=16, block_size=16),
        ModelConfig("small", n_layer=2, n_head=4, n_embd=64, block_size=64),
        ModelConfig("medium", n_layer=4, n_head=4, n_embd=128, block_size=128),
        ModelConfig("large", n_layer=6, n_head=6, n_embd=192, block_size=128),
        ModelConfig("xl", n_layer=8, n_head=8, n_embd=256, block_size=256),
        ModelConfig("huge", n_layer=12, n_head=8, n_embd=256, block_size=256),
    )
}


def get_preset(name: str) -> ModelConfig:
    """Return the preset called ``name``, or raise ``KeyError`` listing the known names."""
    try:
        return PRESETS[name]
    except KeyError:
        raise KeyError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}") from None
