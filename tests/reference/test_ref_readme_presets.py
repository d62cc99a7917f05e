"""The README's presets table states exactly the presets in reference/presets.py."""

from __future__ import annotations

import re
from pathlib import Path

from reference.presets import PRESETS, param_count

README = Path(__file__).resolve().parents[2] / "README.md"


def _presets_table() -> dict[str, list[str]]:
    lines = README.read_text(encoding="utf-8").splitlines()
    start = lines.index("## Model presets")
    rows: dict[str, list[str]] = {}
    for line in lines[start:]:
        m = re.match(r"^\| `(\w+)` \|(.*)\|$", line)
        if m:
            rows[m.group(1)] = [c.strip() for c in m.group(2).split("|")]
        elif rows and not line.startswith("|"):
            break
    return rows


def test_readme_presets_table_matches_the_code() -> None:
    """Every preset's layers, heads, width, head size, block, vocab and parameter count agree."""
    table = _presets_table()
    assert list(table) == list(PRESETS)
    for name, cfg in PRESETS.items():
        expected = [cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.head_size, cfg.block_size,
                    cfg.vocab_size, f"{param_count(cfg):,}"]  # fmt: skip
        assert table[name] == [str(v) for v in expected], name


def test_medium_and_huge_have_the_sizes_the_project_names() -> None:
    """medium is about 0.8M parameters and huge about 9.6M (within 5 %)."""
    assert abs(param_count(PRESETS["medium"]) / 0.8e6 - 1) < 0.05
    assert abs(param_count(PRESETS["huge"]) / 9.6e6 - 1) < 0.05
