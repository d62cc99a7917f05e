"""docs/bindings.md's tables of canonical ops and model calls are canonical.py's, row for row.

The doc cannot drift: each row is rendered here from ``harness.bindings.canonical`` (the name,
every argument in order with its kind and default role, what the export returns) and the doc's
rows between the ``canonical-*`` markers must be exactly these. Running this file as a script
prints the rows to paste after a change to canonical.py.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from harness.bindings.canonical import MODEL_CALLS, OPS, Arg, CanonicalOp

DOC = Path(__file__).resolve().parents[2] / "docs" / "bindings.md"


def _arg(name: str, arg: Arg) -> str:
    marks = [m for m, on in (("weight", arg.weight), ("optional", arg.optional)) if on]
    return f"`{name}` {arg.kind} {arg.role}" + "".join(f" *{m}*" for m in marks)


def rows(table: Mapping[str, CanonicalOp]) -> list[str]:
    """One markdown table row per op: ``| `name` | args | result |``."""
    return [
        f"| `{op.name}` | {', '.join(_arg(n, a) for n, a in op.args.items())} | {op.result} |"
        for op in table.values()
    ]


def _doc_rows(marker: str) -> list[str]:
    text = DOC.read_text(encoding="utf-8")
    m = re.search(rf"<!-- {marker}:begin -->\n(.*?)<!-- {marker}:end -->", text, re.DOTALL)
    assert m, f"{DOC} lacks the {marker} markers"
    return [line for line in m.group(1).splitlines() if line.startswith("| `")]


def test_doc_lists_exactly_the_canonical_ops() -> None:
    """Every op of canonical.OPS, in order, with its arguments' kinds and roles; no other."""
    assert _doc_rows("canonical-ops") == rows(OPS)


def test_doc_lists_exactly_the_model_calls() -> None:
    """Every call of canonical.MODEL_CALLS, in order, with its arguments; no other."""
    assert _doc_rows("canonical-model-calls") == rows(MODEL_CALLS)


if __name__ == "__main__":
    print("\n".join(rows(OPS)), "\n")
    print("\n".join(rows(MODEL_CALLS)))
