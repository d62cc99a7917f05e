"""run.json's ``references`` table, read one way by --resume, compare and report
(harness.rundir.oracles)."""

from __future__ import annotations

from harness.rundir.oracles import ModelOracle, changed_oracles, model_oracles, recorded_oracles

A, B = "a" * 64, "b" * 64


def test_a_moved_dump_judges_as_before_and_a_rewritten_one_does_not() -> None:
    """The same file content at another path is the same oracle; another content at the same
    path, or a dump against the harness's reference, is a change."""
    was = {"tiny": ModelOracle("d/tiny.npz", A), "small": ModelOracle("s.npz", A),
           "big": ModelOracle()}  # fmt: skip
    now = {"tiny": ModelOracle("moved/tiny.npz", A), "small": ModelOracle("s.npz", B),
           "big": ModelOracle("b.npz", A), "only-now": ModelOracle("x.npz", B)}  # fmt: skip
    assert [p for p, _, _ in changed_oracles(was, now)] == ["big", "small"]


def test_a_run_json_without_a_table_or_with_junk_reads_as_the_harness_reference() -> None:
    """No ``references``, a table that is not one, and entries that are not tables record no
    dump; a preset the table does not list had the harness's numpy reference."""
    assert recorded_oracles({}) == {} and recorded_oracles({"references": [1, 2]}) == {}
    meta = {"references": {"tiny": {"source": "t.npz", "sha256": A}, "bad": "x"}}
    assert recorded_oracles(meta) == {"tiny": ModelOracle("t.npz", A)}
    assert model_oracles(meta, ["small", "tiny"]) == {
        "small": ModelOracle(), "tiny": ModelOracle("t.npz", A)}  # fmt: skip
