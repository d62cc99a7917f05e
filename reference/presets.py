"""Model presets: exact dimensions and parameter counts.

Token ids are byte values: ``vocab_size`` is 128 (7-bit ASCII, our presets) or 256 (any byte, as
byte-level projects do). The LM head is tied to the token embedding ``wte`` (as in GPT-2 and
llm.c), so it adds no parameters. Beyond the GPT-2 defaults a config may set what real small
character- and byte-level GPTs vary: the MLP width (``d_mlp``, default 4C), which Linears carry a
bias (``biases``), and the LayerNorm epsilon (``ln_eps``); the parameter count follows all of
them.

Parameters are stored per kind and stacked over layers, in the llm.c order given by
:func:`param_shapes`. That order is also the flat layout the C ABI uses (see
``artifacts/include/tinygpt.h``), so one flat float32 buffer moves identical weights between the
reference and every binary.
"""

from __future__ import annotations

from dataclasses import dataclass

from reference.ops import LAYERNORM_EPS

VOCAB_SIZE = 128
MAX_VOCAB = 256  # token ids are byte values: 128 for 7-bit ASCII, 256 for any byte
# The Linears of a block, by the prefix of their parameter names: a config lists those that
# carry a bias (GPT-2: all four).
LINEARS: tuple[str, ...] = ("qkv", "attproj", "fc", "fcproj")


@dataclass(frozen=True)
class ModelConfig:
    """Dimensions of one GPT model."""

    name: str
    n_layer: int  # transformer blocks
    n_head: int  # attention heads per block
    n_embd: int  # channels C; must be divisible by n_head
    block_size: int  # maximum sequence length (rows of wpe): the context length
    vocab_size: int = VOCAB_SIZE
    d_mlp: int = 0  # the MLP's hidden width; 0 means GPT-2's 4 * n_embd
    biases: tuple[str, ...] = LINEARS  # the Linears (of LINEARS) that carry a bias
    ln_eps: float = LAYERNORM_EPS  # every LayerNorm's epsilon

    @property
    def head_size(self) -> int:
        """Channels per attention head."""
        return self.n_embd // self.n_head

    @property
    def mlp_width(self) -> int:
        """The MLP's hidden width (``d_mlp``, or 4 * n_embd when unset)."""
        return self.d_mlp or 4 * self.n_embd

    @property
    def is_gpt2(self) -> bool:
        """True when only the dimensions differ from GPT-2's architecture (4C MLP, every bias,
        LayerNorm eps 1e-5): the architecture tinygpt.h's model implements."""
        return (
            self.mlp_width == 4 * self.n_embd
            and set(self.biases) == set(LINEARS)
            and self.ln_eps == LAYERNORM_EPS
        )

    def __post_init__(self) -> None:
        where = f"preset {self.name!r}"
        for key in ("n_layer", "n_head", "n_embd", "block_size", "vocab_size"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{where}: {key} must be a positive integer, got {value!r}")
        if self.n_embd % self.n_head != 0:
            raise ValueError(
                f"{where}: n_embd={self.n_embd} is not divisible by n_head={self.n_head}"
            )
        if self.vocab_size > MAX_VOCAB:
            raise ValueError(
                f"{where}: vocab_size={self.vocab_size}; token ids are bytes, so the vocabulary "
                f"is at most {MAX_VOCAB} (128: ASCII, 256: bytes)"
            )
        if isinstance(self.d_mlp, bool) or not isinstance(self.d_mlp, int) or self.d_mlp < 0:
            raise ValueError(f"{where}: d_mlp must be a positive integer (or 0 for 4C)")
        unknown = [b for b in self.biases if b not in LINEARS]
        if unknown or len(set(self.biases)) != len(self.biases):
            raise ValueError(
                f"{where}: biases {list(self.biases)} must be distinct names of {list(LINEARS)}"
            )
        if not (isinstance(self.ln_eps, float) and 0.0 < self.ln_eps < 1.0):
            raise ValueError(f"{where}: ln_eps must be a float in (0, 1), got {self.ln_eps!r}")

    def has_bias(self, linear: str) -> bool:
        """Whether the Linear ``linear`` (one of LINEARS) carries a bias."""
        return linear in self.biases


PARAM_NAMES: tuple[str, ...] = (
    "wte", "wpe", "ln1w", "ln1b", "qkvw", "qkvb", "attprojw", "attprojb",
    "ln2w", "ln2b", "fcw", "fcb", "fcprojw", "fcprojb", "lnfw", "lnfb",
)  # fmt: skip


def param_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Return ``{name: shape}`` for every parameter tensor of ``cfg``, in the flat ABI order
    (``PARAM_NAMES``, less the biases ``cfg`` leaves out)."""
    V, T, C, L, F = cfg.vocab_size, cfg.block_size, cfg.n_embd, cfg.n_layer, cfg.mlp_width
    shapes = {
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
        "fcw": (L, F, C),
        "fcb": (L, F),
        "fcprojw": (L, C, F),
        "fcprojb": (L, C),
        "lnfw": (C,),
        "lnfb": (C,),
    }
    dropped = {f"{linear}b" for linear in LINEARS if not cfg.has_bias(linear)}
    return {name: shape for name, shape in shapes.items() if name not in dropped}


def param_names(cfg: ModelConfig) -> tuple[str, ...]:
    """The names of ``cfg``'s parameter tensors in flat order (PARAM_NAMES less dropped biases)."""
    return tuple(param_shapes(cfg))


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
