"""The single source of truth for default training hyperparameters.

Every other surface (each binary's embedded-defaults export, the README table, UI files that a
matrix lists) is checked against :data:`DEFAULTS` by the ``defaults`` check kind. Change a value
here and every surface that disagrees becomes a failing row.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TrainingDefaults:
    """Default hyperparameters for training the character-level GPT."""

    learning_rate: float = 3e-4  # peak AdamW learning rate (TinyGPT's browser drifted to 3e-3)
    beta1: float = 0.9  # AdamW first-moment decay
    beta2: float = 0.95  # AdamW second-moment decay (nanoGPT's value)
    eps: float = 1e-8  # AdamW denominator epsilon
    weight_decay: float = 0.1  # decoupled weight decay, applied to 2-D weight matrices only
    warmup_steps: int = 100  # linear warmup from 0 to learning_rate
    grad_clip: float = 1.0  # global L2 norm clip; 0 disables
    init_std: float = 0.02  # normal init std for weights (residual projections scaled, see model)
    dropout: float = 0.0  # kernels implement no dropout, so the reference must not either
    batch_size: int = 16  # sequences per step
    context_length: int = 64  # tokens per sequence during training
    seed: int = 1337  # numpy RNG seed for init, batching and sampling

    def as_dict(self) -> dict[str, Any]:
        """Return the defaults as a plain ``{name: value}`` dict, in field order."""
        return dataclasses.asdict(self)

    def canonical_json(self) -> str:
        """Return the defaults as compact, key-sorted JSON (what the binaries embed)."""
        return json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"))

    def sha256(self) -> str:
        """Return the sha256 of :meth:`canonical_json`; recorded in run metadata and sign-offs."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()


DEFAULTS = TrainingDefaults()
