"""The report's cross-host table: equal hashes say 'bitwise equal', unequal give the max diff."""

from __future__ import annotations

import dataclasses

import pandas as pd

from harness.report_tables import crosshost_summary
from harness.rundir.rows import Row


def _hash(host: str, output: str, sha: str) -> Row:
    return Row(host, "v", "wasm32", "ab" * 32, "tiny", "model", f"hash:{output}", "measured",
               metric="sha256", detail=f"sha256={sha * 64}")  # fmt: skip


def _print(host: str, output: str, value: float) -> Row:
    return Row(host, "v", "wasm32", "ab" * 32, "tiny", "model", f"hash:{output}", "measured",
               metric="fingerprint", value=value, iteration=0)  # fmt: skip


def _frame(rows: list[Row]) -> pd.DataFrame:
    return pd.DataFrame([dataclasses.asdict(r) for r in rows])


def test_equal_hashes_read_bitwise_equal() -> None:
    """Two hosts with the same logits hash: one row saying all outputs are bitwise equal."""
    table = crosshost_summary(
        _frame([_hash("node24", "logits", "a"), _hash("chromium", "logits", "a")])
    )
    assert table is not None
    assert table.body == (("wasm32 (abababab" + "ab)", "tiny", "chromium, node24",
                           "✅ all 1 outputs bitwise equal"),)  # fmt: skip


def test_different_hashes_give_the_max_difference() -> None:
    """Different trajectory hashes: the row names the output and the fingerprints' max diff."""
    rows = [
        _hash("node24", "trajectory", "a"), _print("node24", "trajectory", 1.0),
        _hash("wasmtime", "trajectory", "b"), _print("wasmtime", "trajectory", 1.25),
    ]  # fmt: skip
    table = crosshost_summary(_frame(rows))
    assert table is not None
    (artifact, preset, hosts, verdict) = table.body[0]
    assert (artifact, preset, hosts) == ("wasm32 (ababababab)", "tiny", "node24, wasmtime")
    assert verdict.startswith("≠ trajectory: max diff 0.25")


def test_no_model_rows_no_table() -> None:
    """A run without model hashes renders no cross-host table rather than an empty one."""
    assert crosshost_summary(_frame([Row("n", "v", "a", "s", "p", "ops", "x", "pass")])) is None
