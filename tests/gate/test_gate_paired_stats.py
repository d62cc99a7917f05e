"""The paired verdict: exact signed-rank statistics over blocks; replaying bench workloads."""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.artifact import Artifact
from harness.checks.bench import BenchOptions
from harness.checks.bench_replay import Prepared, Replay, replay_for
from harness.checks.bench_workloads import Workload
from harness.gate.calibrate import load_instance
from harness.gate.paired import (
    PairedPolicy,
    PairedSamples,
    joined,
    measure_cell,
    measure_paired,
    release_placed,
)
from harness.gate.paired_stats import (
    MIN_BLOCKS,
    block_log_ratios,
    compare_paired,
    hodges_lehmann,
    signed_rank_null,
)
from harness.gate.stats import Decision
from harness.hosts.base import (
    HostError,
    Instance,
    InstanceView,
    Scalar,
    TimedCall,
    TimingResult,
    Trap,
)
from reference.presets import get_preset
from tests.runner.runner_fakes import FakeHost, FakeInstance, Log


def _blocks(shifts: list[float], pairs: int = 6, noise: float = 0.003, seed: int = 0) -> tuple[
    list[list[float]], list[list[float]]
]:  # fmt: skip
    """BASE at 1000 ns and CAND at 1000*(1+shift) per block, with small per-sample noise."""
    rng = np.random.default_rng(seed)
    base = [list(1000 * (1 + noise * rng.standard_normal(pairs))) for _ in shifts]
    cand = [list(1000 * (1 + s) * (1 + noise * rng.standard_normal(pairs))) for s in shifts]
    return base, cand


def test_signed_rank_null_matches_enumeration() -> None:
    """The exact null CDF of W+ equals a brute-force count over all 2^n sign patterns."""
    n = 7
    sums = [sum(r for r, s in zip(range(1, n + 1), signs, strict=True) if s)
            for signs in itertools.product((0, 1), repeat=n)]  # fmt: skip
    expected = np.cumsum(np.bincount(sums, minlength=n * (n + 1) // 2 + 1)) / 2**n
    assert np.allclose(signed_rank_null(n), expected)


def test_hodges_lehmann_ci_uses_the_tabled_critical_value() -> None:
    """n = 10 at 95 %: the CI is the 9th smallest and 9th largest Walsh average (table: T = 8)."""
    x = [0.3, -1.2, 2.5, 0.9, 1.1, -0.4, 3.3, 0.2, 1.8, 0.7]
    i, j = np.triu_indices(len(x))
    walsh = np.sort((np.array(x)[i] + np.array(x)[j]) / 2)
    centre, low, high = hodges_lehmann(x, 0.95)
    assert centre == pytest.approx(float(np.median(walsh)))
    assert (low, high) == (walsh[8], walsh[-9])


def test_too_few_values_give_an_infinite_ci() -> None:
    """With 5 values no two-sided 95 % signed-rank interval exists: the CI is unbounded."""
    _, low, high = hodges_lehmann([1.0, 2.0, 3.0, 4.0, 5.0], 0.95)
    assert low == -math.inf and high == math.inf


def test_a_consistent_shift_is_slower() -> None:
    """Every block 5 % slower: p is the exact minimum 2/2^10 and the verdict is slower."""
    base, cand = _blocks([0.05] * 10)
    c = compare_paired(base, cand, Decision(min_effect=0.03))
    assert c.verdict == "slower" and c.method == "paired"
    assert c.p_value == pytest.approx(2 / 2**10)
    assert 1.045 < c.ratio < 1.055 and c.ci_low > 1.03
    assert (c.n_base, c.n_cand) == (60, 60)


def test_no_change_is_same() -> None:
    """Blocks centred on 1 with 0.3 % noise: the CI sits inside the 3 % band, so same."""
    base, cand = _blocks([0.0] * 10)
    assert compare_paired(base, cand, Decision(min_effect=0.03)).verdict == "same"


def test_placement_spread_makes_unknown_not_slower() -> None:
    """Blocks that move +-15 % from placement to placement cannot convict a 5 % mean shift.

    A test over pairs would see 60 tight pairs and call it slower; the block is the unit.
    """
    rng = np.random.default_rng(3)
    shifts = list(0.05 + 0.15 * rng.standard_normal(10))
    base, cand = _blocks(shifts)
    assert compare_paired(base, cand, Decision(min_effect=0.03)).verdict == "unknown"


def test_a_preempted_sample_does_not_move_its_block() -> None:
    """One sample 10x slower in one block leaves that block's median log ratio near 0."""
    base, cand = _blocks([0.0] * 10)
    cand[3][2] *= 10
    assert abs(block_log_ratios(base, cand)[3]) < 0.01
    assert compare_paired(base, cand).verdict == "same"


def test_too_few_blocks_or_identical_timings() -> None:
    """Fewer than MIN_BLOCKS blocks is unknown; identical timings are same with p = 1."""
    base, cand = _blocks([0.2] * (MIN_BLOCKS - 1))
    assert compare_paired(base, cand).verdict == "unknown"
    same = [[1000.0] * 6 for _ in range(10)]
    c = compare_paired(same, same)
    assert (c.verdict, c.p_value, c.ratio) == ("same", 1.0, 1.0)


SUBJECTS = [
    ("op:matmul_forward", "32"), ("op:matmul_backward", "32"), ("op:gelu_forward", "1024"),
    ("op:residual_forward", "1024"), ("op:layernorm_forward", "16"),
    ("op:attention_forward", "16"), ("host:noop_call", ""), ("bridge:noop", ""),
    ("train_step", "1234"), ("generate:kv", "8"), ("generate:nokv", "8"), ("ttft:kv", "8"),
    ("ttft:nokv", "8"), ("pool:wake_join:threads=2", ""), ("pool:wake_join_asleep:threads=2", ""),
    ("train_step:threads=2", "5616"),
]  # fmt: skip


@pytest.mark.slow
def test_every_bench_measurement_replays_and_times(tmp_path: Path) -> None:
    """Each subject the bench check times has a recipe that places, times and frees its work,
    and leaves the thread count as it found it."""
    instance = load_instance("native", tmp_path / "build")
    try:
        opts, cfg = BenchOptions(new_tokens=3), get_preset("tiny")
        for subject, x in SUBJECTS:
            replay = replay_for(subject, x, cfg, opts)
            assert not isinstance(replay, str), (subject, replay)
            prepared = replay(instance)
            result = prepared.sampler(instance)(2, 2, 0)
            assert len(result.sample_ns) == 2 and min(result.sample_ns) > 0, subject
            prepared.release(instance)
            assert instance.call("tg_get_threads") == 1, subject  # a pool probe puts it back
        assert isinstance(replay_for("op:nope", "4", cfg, opts), str)
        assert "no replay recipe" in str(replay_for("roofline:sgemm", "32", cfg, opts))
    finally:
        instance.close()


class _Counting(InstanceView):
    """A real instance that counts tg_alloc/tg_free and can fail its n-th timing request."""

    def __init__(self, inner: Instance, fail_at: int = 0) -> None:
        super().__init__(inner)
        self.fail_at, self.live, self.timings = fail_at, 0, 0

    def call(self, name: str, *args: Scalar) -> Scalar | None:
        self.live += {"tg_alloc": 1, "tg_free": -1}.get(name, 0)
        return self.inner.call(name, *args)

    def time_calls(
        self, name: str, args: tuple[Scalar, ...], inner_reps: int, samples: int, warmup: int
    ) -> TimingResult:
        self.timings += 1
        if self.timings == self.fail_at:
            raise Trap("injected trap")
        return self.inner.time_calls(name, args, inner_reps, samples, warmup)


@pytest.mark.slow
def test_measure_paired_takes_blocks_of_pairs(tmp_path: Path) -> None:
    """blocks x pairs samples per side with one inner_reps, blocks taking turns over the loads;
    every buffer is freed, also when a timing request traps half-way (the trap propagates)."""
    instance = load_instance("native", tmp_path / "build")
    try:
        replay = replay_for("op:gelu_forward", "1024", get_preset("tiny"), BenchOptions())
        assert not isinstance(replay, str)
        policy = PairedPolicy(blocks=3, pairs_per_block=4, min_sample_ms=0.05)
        base, cand, other = _Counting(instance), _Counting(instance), _Counting(instance)
        samples = measure_paired([base, other], [cand, cand], replay, replay, policy)
        assert [len(b) for b in samples.base_ns] == [4, 4, 4]
        assert [len(b) for b in samples.cand_ns] == [4, 4, 4]
        assert samples.inner_reps >= 1 and samples.wall_s > 0
        assert base.live == 0 and cand.live == 0 and other.live == 0
        assert other.timings == 4 and cand.timings == 12  # block 1 of 3 ran in the second load
        failing = _Counting(instance, fail_at=3)
        with pytest.raises(Trap, match="injected"):
            measure_paired([base], [failing], replay, replay, policy)
        assert base.live == 0 and failing.live == 0
        with pytest.raises(ValueError, match="1 BASE and 2 CAND"):
            measure_paired([base], [cand, cand], replay, replay, policy)
    finally:
        instance.close()


class _Scaled(FakeInstance):
    """A fake instance whose samples take ``1 us * args[0]`` per call."""

    def time_calls(
        self, name: str, args: tuple[Scalar, ...], inner_reps: int, samples: int, warmup: int
    ) -> TimingResult:
        """``args[0]`` microseconds per call, every sample."""
        return TimingResult((1000.0 * float(args[0]),) * samples, inner_reps, 1.0, "scripted")


def _scaled(scale: float) -> Replay:
    return lambda instance: Prepared(Workload("tg_noop", (scale,), 0.0, "none", "", ()))


def test_measure_cell_rechecks_what_is_not_same_on_fresh_loads_only() -> None:
    """A slower verdict gets a second round on new loads (24 blocks in all), and so does a
    faster one; a same one keeps its first round's 12 blocks; every loaded instance is closed."""
    log = Log()
    host = FakeHost("fake", log)
    art = Artifact("fake", "native", Path("fake"), "f" * 64, 64, "x")

    def load() -> tuple[list[Instance], list[Instance]]:
        log.events.append(("round",))
        batch: list[Instance] = [_Scaled(host, art) for _ in range(4)]
        return batch[:2], batch[2:]

    policy = PairedPolicy(blocks=12, pairs_per_block=2, loads=2, rounds=2, min_sample_ms=0.001)
    work = [("slow", _scaled(1.0), _scaled(1.05), Decision()),
            ("fast", _scaled(1.0), _scaled(0.95), Decision()),
            ("flat", _scaled(1.0), _scaled(1.0), Decision())]  # fmt: skip
    out = measure_cell(load, work, policy)
    (slow, slow_samples), (flat, flat_samples) = out["slow"], out["flat"]
    assert slow.verdict == "slower" and len(slow_samples.base_ns) == 24
    assert slow.ratio == pytest.approx(1.05)
    assert out["fast"][0].verdict == "faster" and len(out["fast"][1].base_ns) == 24
    assert flat.verdict == "same" and len(flat_samples.base_ns) == 12
    assert log.count("round") == 2 and log.count("close-instance", "fake", "fake") == 8


class _Clock:
    """A stand-in for the ``time`` module in harness.gate.paired: ``now`` moves when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def perf_counter(self) -> float:
        """The fake time."""
        return self.now


def _budget_cell(
    monkeypatch: pytest.MonkeyPatch, advance_at_close: float, started_ago: float, rounds: int = 2
) -> dict[str, tuple[str, str, int]]:
    """measure_cell on a 5 % slower, a 5 % faster and an identical measurement under a 10 s
    budget, with the fake clock moving ``advance_at_close`` s at each instance close; (verdict,
    note, blocks)."""
    import harness.gate.paired as paired

    clock = _Clock()
    monkeypatch.setattr(paired, "time", clock)
    host = FakeHost("fake", Log())
    art = Artifact("fake", "native", Path("fake"), "f" * 64, 64, "x")

    class Closing(_Scaled):
        def close(self) -> None:
            clock.now += advance_at_close
            super().close()

    def load() -> tuple[list[Instance], list[Instance]]:
        return [Closing(host, art)], [Closing(host, art)]

    policy = PairedPolicy(blocks=12, pairs_per_block=2, loads=1, rounds=rounds,
                          min_sample_ms=0.001, budget_s=10.0)  # fmt: skip
    work = [("slow", _scaled(1.0), _scaled(1.05), Decision()),
            ("fast", _scaled(1.0), _scaled(0.95), Decision()),
            ("flat", _scaled(1.0), _scaled(1.0), Decision())]  # fmt: skip
    out = measure_cell(load, work, policy, started=clock.now - started_ago)
    return {k: (c.verdict, c.note, len(s.base_ns)) for k, (c, s) in out.items()}


def test_budget_spent_before_the_recheck_makes_slower_unknown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A `slower` whose recheck round the budget no longer allows is `unknown`, saying why; a
    `same` decided in time stays `same`. With time left, the recheck runs and `slower` stands."""
    spent = _budget_cell(monkeypatch, advance_at_close=6.0, started_ago=0.0)
    assert spent["slow"][0] == "unknown" and "budget of 10 s" in spent["slow"][1]
    assert spent["slow"][2] == 12  # round 1's blocks only
    assert spent["fast"][0] == "unknown" and spent["fast"][2] == 12  # the same for `faster`
    assert spent["flat"] == ("same", "", 12)
    in_time = _budget_cell(monkeypatch, advance_at_close=0.0, started_ago=0.0)
    assert in_time["slow"] == ("slower", "", 24) and in_time["fast"] == ("faster", "", 24)


def test_a_change_a_recheck_has_seen_stands_when_the_budget_ends_later_rounds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Up to 3 rounds, the budget allowing 2 (closing a round's two instances takes 4 s of the
    10, and that much is kept for the next close): `slower` and `faster`, seen by round 1 and
    again on round 2's fresh loads, stand on their 24 blocks rather than turning `unknown` for
    the third round they did not get."""
    out = _budget_cell(monkeypatch, advance_at_close=2.0, started_ago=0.0, rounds=3)
    assert out["slow"] == ("slower", "", 24) and out["fast"] == ("faster", "", 24)
    assert out["flat"] == ("same", "", 12)
    unlimited = _budget_cell(monkeypatch, advance_at_close=0.0, started_ago=0.0, rounds=3)
    assert unlimited["slow"] == ("slower", "", 24)  # confirmed by round 2: no third round


def test_budget_spent_before_measuring_leaves_every_measurement_unknown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A cell whose budget is gone before it measures anything (host start and loads took it)
    decides nothing: every measurement is `unknown`, none `slower`."""
    out = _budget_cell(monkeypatch, advance_at_close=0.0, started_ago=11.0)
    for verdict, note, blocks in out.values():
        assert verdict == "unknown" and "before it was measured" in note and blocks == 0


def _ticking(clock: _Clock) -> type[_Scaled]:
    """A fake instance class whose every sample moves ``clock`` by 0.25 s."""

    class Ticking(_Scaled):
        def time_calls(
            self, name: str, args: tuple[Scalar, ...], inner_reps: int, samples: int, warmup: int
        ) -> TimingResult:
            clock.now += 0.25 * samples
            return super().time_calls(name, args, inner_reps, samples, warmup)

    return Ticking


def test_no_block_or_measurement_starts_that_would_end_past_the_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Blocks of 1 s (the first 1.25 s, with its calibration) under a 10.5 s budget: the first
    measurement stops after 10 blocks, at 10.25 s, and the second is not started (`unknown`).
    Checking only that a block starts in time ran an 11th block to 11.25 s, and a second
    measurement's first block past it too."""
    import harness.gate.paired as paired

    clock = _Clock()
    monkeypatch.setattr(paired, "time", clock)
    host = FakeHost("fake", Log())
    art = Artifact("fake", "native", Path("fake"), "f" * 64, 64, "x")

    Ticking = _ticking(clock)

    def load() -> tuple[list[Instance], list[Instance]]:
        return [Ticking(host, art)], [Ticking(host, art)]

    policy = PairedPolicy(blocks=20, pairs_per_block=2, loads=1, rounds=1, min_sample_ms=0.001,
                          budget_s=10.5, reserve=0.0)  # fmt: skip
    work = [("first", _scaled(1.0), _scaled(1.0), Decision()),
            ("second", _scaled(1.0), _scaled(1.0), Decision())]  # fmt: skip
    start = clock.now
    out = measure_cell(load, work, policy, started=start)
    assert len(out["first"][1].base_ns) == 10
    second, samples = out["second"]
    assert second.verdict == "unknown" and "before it was measured" in second.note
    assert samples.base_ns == ()
    assert clock.now - start == pytest.approx(10.25)


def test_a_block_stretched_past_the_deadline_is_dropped_at_its_next_pair(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Blocks of 1 s (the first 1.25 s, with its calibration) under a 10.5 s budget, the 5th
    block's second sample held up 6 s (a competing process): the block is dropped after that
    pair, at 10.75 s, instead of being finished at 11.25 s; the measurement keeps its 4 whole
    blocks."""
    import harness.gate.paired as paired

    clock = _Clock()
    monkeypatch.setattr(paired, "time", clock)
    host = FakeHost("fake", Log())
    art = Artifact("fake", "native", Path("fake"), "f" * 64, 64, "x")
    samples_taken = [0]

    class Stalled(_Scaled):
        def time_calls(
            self, name: str, args: tuple[Scalar, ...], inner_reps: int, samples: int, warmup: int
        ) -> TimingResult:
            samples_taken[0] += 1
            clock.now += 0.25 * samples
            if samples_taken[0] == 1 + 4 * 4 + 2:  # the calibration's sample, 4 blocks of 4
                clock.now += 6.0
            return super().time_calls(name, args, inner_reps, samples, warmup)

    def load() -> tuple[list[Instance], list[Instance]]:
        return [Stalled(host, art)], [Stalled(host, art)]

    policy = PairedPolicy(blocks=20, pairs_per_block=2, loads=1, rounds=1, min_sample_ms=0.001,
                          budget_s=10.5, reserve=0.0)  # fmt: skip
    start = clock.now
    out = measure_cell(load, [("only", _scaled(1.0), _scaled(1.0), Decision())], policy, start)
    assert len(out["only"][1].base_ns) == 4
    assert clock.now - start == pytest.approx(1.25 + 3 * 1.0 + 0.5 + 6.0)


def test_the_reserve_keeps_room_for_the_teardown(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of 1 s under a 10.5 s budget whose two instances take 0.2 s each to close: with
    the default 5 % reserve (0.525 s) the last block ends by 9.25 s and the cell, closed, at
    9.65 s; with no reserve the 10th block ends at 10.25 s and the teardown ends the cell past
    its budget, at 10.65 s."""
    import harness.gate.paired as paired

    def cell(reserve: float) -> float:
        clock = _Clock()
        monkeypatch.setattr(paired, "time", clock)
        host = FakeHost("fake", Log())
        art = Artifact("fake", "native", Path("fake"), "f" * 64, 64, "x")

        class Slow(_ticking(clock)):  # type: ignore[misc]
            def close(self) -> None:
                clock.now += 0.2
                super().close()

        policy = PairedPolicy(blocks=20, pairs_per_block=2, loads=1, rounds=1,
                              min_sample_ms=0.001, budget_s=10.5, reserve=reserve)  # fmt: skip
        start = clock.now
        measure_cell(lambda: ([Slow(host, art)], [Slow(host, art)]),
                     [("only", _scaled(1.0), _scaled(1.0), Decision())], policy, start)  # fmt: skip
        return clock.now - start

    assert cell(PairedPolicy.reserve) == pytest.approx(9.65)
    assert cell(0.0) == pytest.approx(10.65)


def _two_measurements(budget_s: float) -> tuple[PairedPolicy, list[Any]]:
    """Two identical measurements of 4 blocks of 2 pairs, one round, no reserve, under
    ``budget_s``: the budget tests' cell."""
    policy = PairedPolicy(blocks=4, pairs_per_block=2, loads=1, rounds=1, min_sample_ms=0.001,
                          budget_s=budget_s, reserve=0.0)  # fmt: skip
    return policy, [(name, _scaled(1.0), _scaled(1.0), Decision()) for name in ("first", "second")]


def test_workloads_are_freed_one_request_per_instance_and_a_dead_one_is_skipped() -> None:
    """release_placed frees each instance's workloads, newest first, in one free_all; an
    instance whose free_all fails (it died) is skipped and the others are still freed."""
    host = FakeHost("fake", Log())
    art = Artifact("fake", "native", Path("fake"), "f" * 64, 64, "x")
    freed: list[tuple[str, list[int]]] = []

    class Freeing(_Scaled):
        def __init__(self, name: str) -> None:
            super().__init__(host, art)
            self.name = name

        def free_all(self, ptrs: Sequence[int]) -> None:
            if self.name == "dead":
                raise HostError("the worker is gone")
            freed.append((self.name, list(ptrs)))

    def made(*buffers: int) -> Prepared:
        return Prepared(Workload("tg_noop", (), 0.0, "none", "", buffers))

    a, b, dead = Freeing("a"), Freeing("b"), Freeing("dead")
    placed = [(a, made(1, 2)), (b, made(3)), (a, made(4)), (dead, made(5)), (b, made(6, 7))]
    assert release_placed(placed) >= 0.0
    assert freed == [("b", [6, 7, 3]), ("a", [4, 1, 2])]


def test_the_blocks_keep_time_for_freeing_their_workloads_before_the_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Blocks of 1 s (the first of each measurement 1.25 s, with its calibration) under a 10 s
    budget, freeing an instance's workloads taking 0.5 s: the first measurement (4 blocks) ends,
    freed, at 5.25 s; the second, knowing that, keeps 1 s for its two instances and stops after
    3 blocks, so the cell ends at 9.5 s. Working to the deadline itself, a 4th block ended at
    9.5 s and the frees after it at 10.5 s, past the budget."""
    import harness.gate.paired as paired

    clock = _Clock()
    monkeypatch.setattr(paired, "time", clock)
    host = FakeHost("fake", Log())
    art = Artifact("fake", "native", Path("fake"), "f" * 64, 64, "x")

    class Freeing(_ticking(clock)):  # type: ignore[misc]
        def free_all(self, ptrs: Sequence[int]) -> None:
            clock.now += 0.5

    policy, work = _two_measurements(budget_s=10.0)
    start = clock.now
    out = measure_cell(lambda: ([Freeing(host, art)], [Freeing(host, art)]), work, policy, start)
    assert len(out["first"][1].base_ns) == 4 and out["first"][1].release_s == pytest.approx(0.5)
    assert len(out["second"][1].base_ns) == 3
    assert clock.now - start == pytest.approx(9.5)


def test_a_measurement_starts_only_if_its_first_block_fits_and_that_block_obeys_the_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Blocks of 1 s, a measurement's first 1.25 s (its calibration): under a 5.4 s budget the
    first measurement ends at 4.25 s, where a mean block (1.06 s) would still fit but a first
    block would not, so the second is not started (`unknown`); before, it started and ended at
    5.5 s. A first block the deadline cuts is dropped at its next pair, as later blocks are."""
    import harness.gate.paired as paired

    clock = _Clock()
    monkeypatch.setattr(paired, "time", clock)
    host = FakeHost("fake", Log())
    art = Artifact("fake", "native", Path("fake"), "f" * 64, 64, "x")
    Ticking = _ticking(clock)
    policy, work = _two_measurements(budget_s=5.4)
    start = clock.now
    out = measure_cell(lambda: ([Ticking(host, art)], [Ticking(host, art)]), work, policy, start)
    assert len(out["first"][1].base_ns) == 4
    assert out["first"][1].first_block_s == pytest.approx(1.25)
    assert out["second"][0].verdict == "unknown"
    assert "before it was measured" in out["second"][0].note
    assert clock.now - start == pytest.approx(4.25)
    begun = clock.now
    cut = measure_paired([Ticking(host, art)], [Ticking(host, art)], _scaled(1.0), _scaled(1.0),
                         policy, deadline=begun + 0.5)  # fmt: skip
    assert cut.base_ns == () and clock.now - begun == pytest.approx(0.75)


class _Clocked(_Scaled):
    """A fake instance whose samples carry a CPU clock: the wall time is 3x the CPU time (a
    competing process held the core two thirds of the time)."""

    def time_calls(
        self, name: str, args: tuple[Scalar, ...], inner_reps: int, samples: int, warmup: int
    ) -> TimingResult:
        """``args[0]`` us per call of CPU, three times that of wall clock."""
        cpu = (1000.0 * float(args[0]),) * samples
        wall = tuple(3 * x for x in cpu)
        return TimingResult(wall, inner_reps, 1.0, "scripted", cpu, "cpu-clock")


def test_the_paired_gate_decides_on_the_cpu_clock_where_every_sample_has_it() -> None:
    """Both sides with CPU samples: the verdict's samples are the CPU ones (the wall ones kept
    beside them); `clock="wall"`, or one side without a CPU clock, decides on the wall clock."""
    host = FakeHost("fake", Log())
    art = Artifact("fake", "native", Path("fake"), "f" * 64, 64, "x")
    policy = PairedPolicy(blocks=6, pairs_per_block=2, loads=1, min_sample_ms=0.001)
    replay = _scaled(1.0)

    def run(base: Instance, cand: Instance, p: PairedPolicy = policy) -> PairedSamples:
        return measure_paired([base], [cand], replay, replay, p)

    both = run(_Clocked(host, art), _Clocked(host, art))
    assert both.clock == "cpu-clock" and both.base_ns[0][0] == pytest.approx(1000.0)
    assert both.base_wall_ns[0][0] == pytest.approx(3000.0)
    assert both.on_wall_clock().base_ns == both.base_wall_ns
    wall = run(_Clocked(host, art), _Clocked(host, art), dataclasses.replace(policy, clock="wall"))
    assert wall.clock == "wall" and wall.base_ns[0][0] == pytest.approx(3000.0)
    mixed = run(_Clocked(host, art), _Scaled(host, art))
    assert mixed.clock == "wall" and mixed.base_ns[0][0] == pytest.approx(3000.0)
    assert mixed.cand_ns[0][0] == pytest.approx(1000.0)  # _Scaled's wall clock: 1 us per call
    rejoined = joined(both, mixed)
    assert rejoined.clock == "wall" and len(rejoined.base_ns) == 12
    assert rejoined.base_ns[0][0] == pytest.approx(3000.0)


def test_a_pool_workload_is_timed_on_the_wall_clock() -> None:
    """A workload that runs the library's thread pool (Prepared.threads_after set) is decided on
    the wall clock even when the samples carry a CPU clock: the pool's threads work off it."""
    host = FakeHost("fake", Log())
    art = Artifact("fake", "native", Path("fake"), "f" * 64, 64, "x")

    def pooled(instance: Instance) -> Prepared:
        return Prepared(Workload("tg_noop", (1.0,), 0.0, "none", "", ()), threads_after=1)

    class Threads(_Clocked):
        def call(self, name: str, *args: Scalar) -> Scalar | None:
            return 0

    policy = PairedPolicy(blocks=6, pairs_per_block=2, loads=1, min_sample_ms=0.001)
    out = measure_paired([Threads(host, art)], [Threads(host, art)], pooled, pooled, policy)
    assert out.clock == "wall"


def test_a_js_host_cost_probe_is_replayed_through_time_probe() -> None:
    """``host:wake_join`` and ``host:postmessage`` pair like kernels: their replay samples the
    host's own probe (Instance.time_probe) of that kind. Kept recorded, two runs of one build
    failed ci.toml's gate on them (host:wake_join 4.9 against 29.2 us, unpaired)."""
    host = FakeHost("fake", Log())
    art = Artifact("fake", "native", Path("fake"), "f" * 64, 64, "x")
    asked: list[tuple[str, int, int, int]] = []

    class Probing(FakeInstance):
        def time_probe(self, kind: str, inner_reps: int, samples: int, warmup: int) -> TimingResult:
            asked.append((kind, inner_reps, samples, warmup))
            return TimingResult((5000.0,) * samples, inner_reps, 1.0, "scripted")

    for subject, kind in (("host:wake_join", "atomics"), ("host:postmessage", "postmessage")):
        replay = replay_for(subject, "nan", get_preset("tiny"), BenchOptions())
        assert not isinstance(replay, str), replay
        instance = Probing(host, art)
        result = replay(instance).sampler(instance)(7, 2, 1)
        assert result.sample_ns == (5000.0, 5000.0) and asked[-1] == (kind, 7, 2, 1)


class _Logged(_Scaled):
    """A fake instance that logs each sample's side (``who``) and warmup in a shared list."""

    def __init__(self, host: FakeHost, art: Artifact, who: str, log: list[tuple[str, int]]):
        super().__init__(host, art)
        self.who, self.log = who, log

    def time_calls(
        self, name: str, args: tuple[Scalar, ...], inner_reps: int, samples: int, warmup: int
    ) -> TimingResult:
        """Log, then ``args[0]`` us per call."""
        self.log.append((self.who, warmup))
        return super().time_calls(name, args, inner_reps, samples, warmup)


class _Together(_Logged):
    """A fake instance that can time a pair of itself and ``other`` in one request (as both
    builds in one Chromium worker can), logging the samples it takes in their order."""

    requests = 0

    def time_pairs(
        self,
        other: Instance,
        mine: TimedCall,
        theirs: TimedCall,
        other_first: Sequence[bool],
        inner_reps: int,
        warmup: int,
        stop_after_s: float | None = None,
    ) -> tuple[TimingResult, TimingResult] | None:
        """Every pair, or one if ``stop_after_s`` is spent; None for an instance of another kind."""
        if not isinstance(other, _Together):
            return None
        type(self).requests += 1
        pairs = self.pairs_run(len(other_first), stop_after_s)
        for k, theirs_first in enumerate(other_first[:pairs]):
            warm = warmup if k == 0 else 0
            sides = [(other.who, warm), (self.who, warm)]
            self.log.extend(sides if theirs_first else sides[::-1])

        def result(call: TimedCall) -> TimingResult:
            return TimingResult((1000.0 * float(call.args[0]),) * pairs, inner_reps, 1.0, "x")

        return result(mine), result(theirs)

    def pairs_run(self, asked: int, stop_after_s: float | None) -> int:
        """How many of the ``asked`` pairs run: all of them here."""
        return asked


def test_a_block_is_timed_in_one_request_where_the_host_can_in_the_same_order() -> None:
    """Instances that time pairs in one request get one request per block, holding that
    block's pairs in the order (and with the warmup) that a request per sample takes them, and
    the same samples; a bridge round trip (no loop inside the host) is still timed per sample."""
    host = FakeHost("fake", Log())
    art = Artifact("fake", "native", Path("fake"), "f" * 64, 64, "x")
    policy = PairedPolicy(blocks=6, pairs_per_block=5, loads=1, min_sample_ms=0.001, warmup=2)
    apart: list[tuple[str, int]] = []
    together: list[tuple[str, int]] = []
    slower = _scaled(1.05)
    one = measure_paired([_Logged(host, art, "B", apart)], [_Logged(host, art, "C", apart)],
                         _scaled(1.0), slower, policy)  # fmt: skip
    _Together.requests = 0
    pair = _Together(host, art, "B", together), _Together(host, art, "C", together)
    both = measure_paired([pair[0]], [pair[1]], _scaled(1.0), slower, policy)
    assert _Together.requests == 6
    assert together == apart and len(apart) == 1 + 6 * 10  # the calibration's sample, 6 blocks
    assert both.base_ns == one.base_ns and both.cand_ns == one.cand_ns
    assert both.cand_ns[0][0] == pytest.approx(1050.0)
    bridge = replay_for("bridge:noop", "", get_preset("tiny"), BenchOptions())
    assert not isinstance(bridge, str) and bridge(_Scaled(host, art)).timed_call() is None


def test_a_block_timed_in_one_request_that_stops_early_is_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A one-request block stretched past the deadline (its pairs held up by a competing
    process) comes back with fewer pairs than asked, its host starting no pair once the time
    left was spent: the block is dropped at 5 s instead of running to 9 s, and the measurement
    keeps its 3 whole blocks, as when each sample is its own request."""
    import harness.gate.paired as paired

    clock = _Clock()
    monkeypatch.setattr(paired, "time", clock)
    host = FakeHost("fake", Log())
    art = Artifact("fake", "native", Path("fake"), "f" * 64, 64, "x")
    blocks = [0]

    class Late(_Together):
        def pairs_run(self, asked: int, stop_after_s: float | None) -> int:
            """Pairs of 1/3 s (2 s in the 4th block), none started past ``stop_after_s``."""
            blocks[0] += 1
            pair_s = 2.0 if blocks[0] == 4 else 1 / 3
            began, done = clock.now, 0
            while done < asked:
                clock.now += pair_s
                done += 1
                if stop_after_s is not None and clock.now - began > stop_after_s:
                    break
            return done

    policy = PairedPolicy(blocks=20, pairs_per_block=3, loads=1, min_sample_ms=0.001)
    start = clock.now
    samples = measure_paired([Late(host, art, "B", [])], [Late(host, art, "C", [])],
                             _scaled(1.0), _scaled(1.0), policy, deadline=start + 4.5)  # fmt: skip
    assert [len(b) for b in samples.base_ns] == [3, 3, 3]
    assert clock.now - start == pytest.approx(3.0 + 2.0)
