"""Paired, interleaved timing of two builds in one host: the measurement behind ``--paired``.

Two runs measured minutes apart differ by more than their samples show: on a shared VM a
kernel's time drifts by 0.5-2 % (std) between two back-to-back runs (docs/gate.md,
``drift_probe``), so a gate comparing recorded runs either misses 5 % regressions or raises
false alarms. Timing BASE and CAND *side by side* cancels that drift: both builds are loaded in
one host, the same workload is placed in each, and samples alternate ``B C`` or ``C B`` in a
random order, so each pair sees the same machine. (Google Benchmark's random interleaving and
Chromium Pinpoint's paired A/B jobs answer the same problem.)

The samples come in *blocks*. Each block places fresh buffers in both instances (earlier blocks'
buffers stay allocated until the end, so the allocator cannot hand the same pages back) and
times ``pairs_per_block`` pairs. A memory-bound kernel's speed depends on the physical pages
behind its buffers (for ``residual_forward`` natively, CAND/BASE moves by 10 % std from one
placement to the next: docs/gate.md, "Calibration"), so the block is the
independent unit of the statistics (``harness.gate.paired_stats``), and more blocks average over
more placements.

Every sample is one ``time_calls`` request of ``inner_reps`` calls: the loop runs inside the host
(never across the bridge), both builds with the same ``inner_reps``, calibrated once on BASE so
a sample lasts at least ``min_sample_ms``. Where the host can time both builds in one request
(:meth:`Instance.time_pairs`: every host, with both builds in one worker), a block's pairs are
that one request instead, in the same order. The one exception is ``bridge:noop``, which *is* the
bridge: its sample is the mean of ``inner_reps`` no-op round trips timed in Python.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar, get_args

import numpy as np

from harness.artifact import Artifact
from harness.checks.bench_replay import Prepared, Replay
from harness.gate.paired_stats import compare_paired
from harness.gate.stats import Comparison, Decision
from harness.hosts.base import Host, HostError, Instance, TimingResult, close_all
from harness.timing import TimingPolicy, calibrate

K = TypeVar("K", bound=Hashable)
# Verdicts measured again on fresh loads: a change until one recheck has seen it, `unknown` while
# rounds and budget last. `faster` too: a true 2 % slowdown was ruled `faster` in 4 of 240
# calibration trials under load when only `slower` was rechecked (docs/gate.md, "Under load
# with the CPU clock ...").
RECHECKED = ("unknown", "slower", "faster")
CONFIRMED = ("slower", "faster")  # a change stands once a recheck round has seen it too
# Closing a round's instances takes longer from one round to the next under load (24 native
# instances: 0.07-0.10 s per round at four busy processes, s33), so the next close is given
# this much more than the longest one so far.
CLOSE_MARGIN = 1.5


Workers = Literal["one", "per-build"]  # PairedPolicy.workers: where the two builds run
WORKERS: tuple[str, ...] = get_args(Workers)


@dataclass(frozen=True)
class PairedPolicy:
    """How much a paired measurement samples (defaults: docs/gate.md, "Calibration")."""

    blocks: int = 12  # independent placements; >= 6 for an exact p below 0.01 to exist
    # 30 pairs of 0.25 ms samples (min_sample_ms), not 5 of 1 ms: with a block in one request
    # (Instance.time_pairs) a pair costs only its samples, and on s36's VM a 1 ms matmul sample
    # moved by ~10 % from one to the next with nothing else running, so the block's median
    # needs many pairs. At 2 busy processes, 20 trials each (docs/gate.md, s36): power for a 2 %
    # slowdown native 70 -> 100 %, wasmtime 40 -> 85 %, Node 24 55 -> 95 %; 15 pairs of 0.5 ms
    # gave 95 / 75 / 100 %.
    pairs_per_block: int = 30
    loads: int = 12  # instances loaded per build: one per block, each block its own load pair
    # Rounds in all: what is still `unknown` is measured again on fresh loads while rounds last.
    # With a budget, the budget ends them first; 4 rather than 2 lets a one-measurement cell spend
    # what its budget leaves: 80 % power for a 2 % slowdown under wasmtime at 4 busy processes,
    # 60 % with 2 rounds, no A/A false alarm in either (70 % in the table's own run: 20 trials
    # move that much; docs/gate.md, s33).
    rounds: int = 4
    # Each sample loops the kernel at least this long (and at least 100 clock resolutions:
    # harness.timing.TimingPolicy.resolution_factor, so 0.5 ms on Chromium's 5 us clock).
    min_sample_ms: float = 0.25
    warmup: int = 1  # untimed loops before each block's first sample, on each side
    seed: int = 1  # the interleaving order
    # Seconds a cell may spend measuring (None: no limit), counted from the cell's start (the
    # caller's: its first load, the host being started before it). When they are spent, no
    # block, measurement or round starts; a measurement left undecided is `unknown`, and a
    # `slower` its recheck round could not confirm is `unknown` too: a cell that cannot be
    # decided in its budget is never `slower` (issue 15: load must not make the gate lie).
    budget_s: float | None = None
    # "cpu": decide on the samples' CPU-clock times where the host has a CPU clock and every
    # sample of the measurement, on both sides, stayed on the timing thread (TimingResult.cpu_ns),
    # else on the wall clock; "wall": always the wall clock. The CPU clock does not count the
    # time a competing process held the core, which on a loaded machine is most of the noise
    # (docs/gate.md, `--paired`: the `--clock cpu` item).
    clock: Literal["cpu", "wall"] = "cpu"
    # The share of budget_s no load, block or measurement may start into: it is kept for closing
    # the instances (the teardown, which no earlier block predicts; CLOSE_MARGIN times the
    # longest teardown so far is kept instead when that is longer) and for a block that a
    # competing process makes longer than any before it. Without it the slowest cells of a 2 s
    # budget ended 2-26 ms past it (docs/gate.md, "Under load on a VM with no other user").
    reserve: float = 0.05
    # "one": BASE's and CAND's builds load into one worker process on hosts that run workers
    # (native, wasmtime, Node); "per-build": each build keeps its own worker for the whole cell,
    # as the matrix runner's cells do. A worker process is one draw of whatever a loaded machine
    # gives a process, kept for every block and round of the cell; with one per build that draw
    # differs between the two sides and never averages out. Measured side by side at 2 and 4
    # busy processes, 20 trials per host and level (docs/gate.md, "One worker for both builds"):
    # a true 2 % slowdown's A/B ratios spread p5-p95 over 0.55-1.58 with a worker per build, and
    # 25 of 120 trials ruled it `faster`; in one worker 1.010-1.040, none of 180 `faster`.
    # In one worker a block's pairs are also timed in one request (Instance.time_pairs: the
    # PAIRS op; docs/gate.md, s35 and s36). On Chromium "one" is one worker of its page (else a
    # worker per load).
    workers: Workers = "one"

    def __post_init__(self) -> None:
        if min(self.blocks, self.pairs_per_block, self.loads, self.rounds) < 1:
            raise ValueError(
                f"PairedPolicy needs blocks, pairs_per_block, loads, rounds >= 1: {self}"
            )
        if self.min_sample_ms <= 0 or self.warmup < 0:
            raise ValueError(f"PairedPolicy needs min_sample_ms > 0 and warmup >= 0: {self}")
        if self.budget_s is not None and self.budget_s <= 0:
            raise ValueError(f"PairedPolicy needs budget_s > 0 (or None): {self}")
        if not 0 <= self.reserve < 1:
            raise ValueError(f"PairedPolicy needs 0 <= reserve < 1: {self}")
        if self.clock not in ("cpu", "wall"):
            raise ValueError(f"PairedPolicy clock is 'cpu' or 'wall', not {self.clock!r}")
        if self.workers not in WORKERS:
            raise ValueError(f"PairedPolicy workers is 'one' or 'per-build', not {self.workers!r}")


DEFAULT_POLICY = PairedPolicy()


Blocks = tuple[tuple[float, ...], ...]


@dataclass(frozen=True)
class PairedSamples:
    """Per-block sample times (mean ns per call) of BASE and CAND, pair by pair, on ``clock``
    (the one the verdict is decided on), and the same samples on the wall clock."""

    base_ns: Blocks
    cand_ns: Blocks
    inner_reps: int
    wall_s: float  # time spent measuring, placement and calibration included
    clock: str = "wall"  # "wall", or the host's CPU clock (e.g. "thread_time_ns")
    base_wall_ns: Blocks = ()  # the wall-clock samples (base_ns itself when clock is "wall")
    cand_wall_ns: Blocks = ()
    # Seconds that freeing one instance's workloads took at the end (the longest): the next
    # measurement keeps that much time per instance it places in, before its deadline.
    release_s: float = 0.0
    first_block_s: float = 0.0  # the first block's seconds, its placement and calibration in

    def on_wall_clock(self) -> PairedSamples:
        """These samples as read on the wall clock."""
        if self.clock == "wall":
            return self
        return dataclasses.replace(
            self, base_ns=self.base_wall_ns, cand_ns=self.cand_wall_ns, clock="wall",
            base_wall_ns=(), cand_wall_ns=(),
        )  # fmt: skip


Sample = tuple[float, float | None, str]


def _rows(result: TimingResult) -> list[Sample]:
    """Each sample of ``result``: its wall-clock mean, its CPU-clock mean (None without one)
    and that clock."""
    cpu = result.cpu_ns if result.cpu_ns and result.cpu_clock else ()
    return [(wall, cpu[k] if cpu else None, result.cpu_clock)
            for k, wall in enumerate(result.sample_ns)]  # fmt: skip


def _sample(instance: Instance, prepared: Prepared, reps: int, warmup: int) -> Sample:
    """One sample, timed in a request of its own."""
    return _rows(prepared.sampler(instance)(reps, 1, warmup))[0]


def _sample_together(
    base: Instance,
    cand: Instance,
    pb: Prepared,
    pc: Prepared,
    base_first: Sequence[bool],
    reps: int,
    stop: float | None,
    policy: PairedPolicy,
) -> tuple[list[Sample], list[Sample]] | None:
    """A block's pairs timed in one request where the host can (both builds in one of its
    workers: :meth:`Instance.time_pairs`), as :func:`_sample` gives them; None where it
    cannot. In Chromium, a sample that waited for a request of its own read 500-1365 us for a
    matmul whose back-to-back samples read 480-530 (s35, docs/gate.md)."""
    mine, theirs = pb.timed_call(), pc.timed_call()
    if mine is None or theirs is None:
        return None
    left = None if stop is None else stop - time.perf_counter()
    if left is not None and left < 0:
        return [], []
    other_first = [not first for first in base_first]
    timed = base.time_pairs(cand, mine, theirs, other_first, reps, policy.warmup, left)
    if timed is None:
        return None
    return _rows(timed[0]), _rows(timed[1])


def release_placed(placed: Sequence[tuple[Instance, Prepared]]) -> float:
    """Free every workload of ``placed``, newest first, in one request per instance where they
    are plain buffers (:meth:`Instance.free_all`); return the longest one instance took, in
    seconds. An instance that fails (it died) is skipped: it has nothing left to free, and the
    others still do. One request per workload is 24 in a Chromium measurement, ~12 ms each
    beside 4 busy processes on s35's VM; in one request per instance, 0.06-0.11 s for all of
    them (s37, docs/gate.md)."""
    mine: dict[int, tuple[Instance, list[Prepared]]] = {}
    for inst, one in reversed(placed):
        mine.setdefault(id(inst), (inst, []))[1].append(one)
    longest = 0.0
    for inst, workloads in mine.values():
        start = time.perf_counter()
        try:
            plain = [p for p in workloads if p.only_buffers()]
            inst.free_all([ptr for p in plain for ptr in p.workload.buffers])
            for p in workloads:
                if not p.only_buffers():
                    p.release(inst)
        except HostError:
            continue
        longest = max(longest, time.perf_counter() - start)
    return longest


def measure_paired(
    bases: Sequence[Instance],
    cands: Sequence[Instance],
    base_replay: Replay,
    cand_replay: Replay,
    policy: PairedPolicy = DEFAULT_POLICY,
    deadline: float | None = None,
    release_s: float = 0.0,
) -> PairedSamples:
    """Time ``base_replay`` in BASE's instances and ``cand_replay`` in CAND's, in blocks.

    ``deadline`` (``time.perf_counter()`` seconds): start no block that would end after it, as
    the longest block so far predicts (the first block, with nothing to predict from, starts
    and is dropped like any other if the deadline cuts it); the samples then hold the blocks
    measured, and too few of them decide nothing. Checking only that a block *starts*
    before the deadline let the last one end past it: the slowest cells of a 2 s budget ended at
    2.02-2.07 s (docs/gate.md, "Under load on a VM with no other user"). A block still running
    at the deadline (a competing process stretched it beyond every block before it: a cell
    ended at 2.008 s at four busy processes, s33) is dropped unfinished at its next pair, so
    the samples hold whole blocks only. The workloads are freed after the last block, so the
    deadline the blocks work to keeps ``release_s`` (what freeing one instance's workloads took
    in an earlier measurement) for each instance they were placed in.

    Block ``b`` uses ``bases[b % k]`` and ``cands[b % k]``: with k separately loaded instances
    per build (``PairedPolicy.loads``), what one load happens to get (a JIT's code placement,
    a linear memory's pages) is averaged over k loads instead of deciding the verdict.
    Raises what the hosts raise (HostError and its kinds); every buffer placed is freed, also on
    failure, as far as the instances still live.
    """
    if not bases or len(bases) != len(cands):
        raise ValueError(f"measure_paired: {len(bases)} BASE and {len(cands)} CAND instances")
    rng = np.random.default_rng(policy.seed)
    start = time.perf_counter()
    placed: list[tuple[Instance, Prepared]] = []
    base_blocks: list[tuple[float, ...]] = []
    cand_blocks: list[tuple[float, ...]] = []
    base_cpu: list[tuple[float, ...]] = []
    cand_cpu: list[tuple[float, ...]] = []
    cpu_clocks: set[str | None] = set()  # one CPU clock for every sample, or the wall clock
    reps = 0
    longest = 0.0  # seconds of the longest block so far (the first one holds the calibration)
    first_block = 0.0
    try:
        for block in range(policy.blocks):
            base, cand = bases[block % len(bases)], cands[block % len(cands)]
            # the blocks' deadline: what freeing their workloads will take is kept before it
            used = {id(i) for i, _ in placed} | {id(base), id(cand)}
            end = None if deadline is None else deadline - release_s * len(used)
            if block and end is not None and time.perf_counter() + longest > end:
                break
            block_start = time.perf_counter()
            # Alternate which build places its buffers first: allocation order is not a factor.
            sides = [("base", base, base_replay), ("cand", cand, cand_replay)]
            mine: dict[str, Prepared] = {}
            for role, inst, replay in sides if block % 2 == 0 else sides[::-1]:
                mine[role] = replay(inst)
                placed.append((inst, mine[role]))
            pb, pc = mine["base"], mine["cand"]
            if reps == 0:
                timing = TimingPolicy(min_sample_ns=policy.min_sample_ms * 1e6,
                                      warmup=policy.warmup)  # fmt: skip
                reps, _, _ = calibrate(pb.sampler(base), timing)
            base_first = [rng.random() < 0.5 for _ in range(policy.pairs_per_block)]
            # the first block too: a measurement started near the deadline ran its first block
            # (calibration and all: 0.35 s for host:noop_call in Chromium) to 4.95 s of 5 (s37)
            stop = end
            together = _sample_together(base, cand, pb, pc, base_first, reps, stop, policy)
            xs: list[Sample]
            ys: list[Sample]
            if together is not None:
                xs, ys = together
            else:
                xs, ys = [], []
                for pair, first in enumerate(base_first):
                    if stop is not None and time.perf_counter() > stop:
                        break  # stretched past what the longest block predicted
                    warm = policy.warmup if pair == 0 else 0
                    if first:
                        xs.append(_sample(base, pb, reps, warm))
                        ys.append(_sample(cand, pc, reps, warm))
                    else:
                        ys.append(_sample(cand, pc, reps, warm))
                        xs.append(_sample(base, pb, reps, warm))
            if len(xs) < policy.pairs_per_block:
                break  # dropped unfinished: the samples hold whole blocks only
            # a pool's threads work off this thread's clock (Prepared.threads_after): wall only
            on_pool = pb.threads_after is not None or pc.threads_after is not None
            for x in (*xs, *ys):
                cpu_clocks.add(x[2] if x[1] is not None and not on_pool else None)
            base_blocks.append(tuple(x[0] for x in xs))
            cand_blocks.append(tuple(y[0] for y in ys))
            base_cpu.append(tuple(x[1] or 0.0 for x in xs))
            cand_cpu.append(tuple(y[1] or 0.0 for y in ys))
            longest = max(longest, time.perf_counter() - block_start)
            first_block = first_block or longest
    finally:
        freed = release_placed(placed)
    wall = PairedSamples(
        tuple(base_blocks), tuple(cand_blocks), reps, time.perf_counter() - start,
        release_s=freed, first_block_s=first_block,
    )  # fmt: skip
    (cpu_clock,) = cpu_clocks if len(cpu_clocks) == 1 else (None,)
    if policy.clock == "wall" or not cpu_clock:
        return wall
    return dataclasses.replace(
        wall, base_ns=tuple(base_cpu), cand_ns=tuple(cand_cpu), clock=cpu_clock,
        base_wall_ns=wall.base_ns, cand_wall_ns=wall.cand_ns,
    )  # fmt: skip


def joined(first: PairedSamples, more: PairedSamples) -> PairedSamples:
    """Both measurements' blocks as one (each block keeps its own pairs), on the clock both
    were decided on, or on the wall clock if they were not the same."""
    if first.clock != more.clock and first.base_ns and more.base_ns:
        first, more = first.on_wall_clock(), more.on_wall_clock()
    clock = first.clock if first.base_ns else more.clock
    cpu = clock != "wall"
    return PairedSamples(
        first.base_ns + more.base_ns,
        first.cand_ns + more.cand_ns,
        max(first.inner_reps, more.inner_reps),
        first.wall_s + more.wall_s,
        clock,
        first.base_wall_ns + more.base_wall_ns if cpu else (),
        first.cand_wall_ns + more.cand_wall_ns if cpu else (),
        max(first.release_s, more.release_s),
        max(first.first_block_s, more.first_block_s),
    )


Loader = Callable[[], tuple[list[Instance], list[Instance]]]
"""Loads ``PairedPolicy.loads`` fresh instances of BASE's build and of CAND's build."""


def balanced_loader(host: Host, base: Artifact, cand: Artifact, loads: int) -> Loader:
    """Load both builds ``loads`` times in ``host``, in the order B C, C B, B C, ...

    Where a load lands can depend on how many came before it (address space, allocator
    state), so neither build may always load first: each pair swaps the order.
    """

    def load() -> tuple[list[Instance], list[Instance]]:
        bases: list[Instance] = []
        cands: list[Instance] = []
        try:
            for k in range(loads):
                for art in (base, cand) if k % 2 == 0 else (cand, base):
                    (bases if art is base else cands).append(host.load(art))
        except BaseException:
            close_all((*bases, *cands))
            raise
        return bases, cands

    return load


def _over_budget(comparison: Comparison, why: str) -> Comparison:
    """``comparison`` turned ``unknown`` because the budget ran out (``why``)."""
    return dataclasses.replace(comparison, verdict="unknown", note=why)


def measure_cell(
    load: Loader,
    work: Sequence[tuple[K, Replay, Replay, Decision]],
    policy: PairedPolicy = DEFAULT_POLICY,
    started: float | None = None,
) -> dict[K, tuple[Comparison, PairedSamples]]:
    """Decide every measurement of one cell, in rounds of fresh loads.

    Round 1 loads the builds and measures everything; each later round loads them afresh and
    measures again what is open (``unknown``) and a change (``slower``, ``faster``) that no
    recheck round has seen yet, adding its blocks to the earlier ones and deciding on all of
    them. A regression shows in every round's blocks and stays ``slower``; a disturbance of the
    machine that lasted one round (a neighbour's burst that happened to favour one side) is
    diluted by the next round's blocks instead of failing CI, or of calling a regression
    ``faster``. Instances are closed at the end of their round.

    With ``policy.budget_s``, the cell's budget counts from ``started`` (``perf_counter``
    seconds; the call's own start if None): what it leaves undecided is ``unknown`` with a note,
    and so is a ``slower`` or ``faster`` that no recheck round has seen yet when the budget ends
    it; once one has, the change stands. More ``rounds`` then spend what the budget leaves on
    what is still open.
    A measurement or round starts only while one block (the cell's longest mean block so far)
    still fits before the deadline, and :func:`measure_paired` stops its blocks the same way;
    the deadline keeps ``policy.reserve`` of the budget (or ``CLOSE_MARGIN`` times the longest
    teardown so far, if longer) for closing the instances. So the cell ends within its budget
    but for its first loads and first block, the pair a stretched block is dropped after, and a
    teardown longer than its reserve.
    """
    begin = time.perf_counter() if started is None else started
    end = None if policy.budget_s is None else begin + policy.budget_s
    reserve = 0.0 if policy.budget_s is None else policy.reserve * policy.budget_s
    block_s = 0.0  # the cell's longest mean block so far: a measurement must fit one block
    close_s = 0.0  # the longest that closing a round's instances took
    release_s = 0.0  # the longest that freeing one instance's workloads took
    first_s = 0.0  # the longest first block of a measurement (placement and calibration in it)

    def work_deadline() -> float | None:
        """When no more work may start: the budget's end less what closing will need."""
        return None if end is None else end - max(reserve, CLOSE_MARGIN * close_s)

    def spent(also: float = 0.0) -> bool:
        """Past the deadline, once ``also`` seconds and one block are added to now."""
        deadline = work_deadline()
        return deadline is not None and time.perf_counter() + also + block_s > deadline

    results: dict[K, tuple[Comparison, PairedSamples]] = {}
    measured: dict[K, int] = {}  # rounds that measured each key
    pending = list(work)
    load_s = 0.0  # what the last round's loads took: a later round must fit them and a block

    def settled(key: K) -> bool:
        """Decided so that the budget running out changes nothing: a change seen by a recheck
        round as well (its verdict stands on all the blocks), or a note saying it is unknown."""
        comparison = results[key][0]
        return bool(comparison.note) or (
            comparison.verdict in CONFIRMED and measured.get(key, 0) >= 2
        )

    def unchecked(key: K) -> None:
        """``key``'s verdict, measured but not settled, made unknown: no time to recheck it."""
        if not settled(key):
            comparison, samples = results[key]
            why = f"budget of {policy.budget_s:g} s spent before its recheck"
            results[key] = (_over_budget(comparison, why), samples)

    for round_no in range(policy.rounds):
        if round_no and spent(load_s):
            for key, *_ in pending:  # an earlier round measured them; no time to check again
                unchecked(key)
            break
        loading = time.perf_counter()
        bases, cands = load()
        load_s = time.perf_counter() - loading
        try:
            this_round = dataclasses.replace(policy, seed=policy.seed + 7919 * round_no)
            for key, base_replay, cand_replay, decision in pending:
                # a measurement's first block places and calibrates: it must fit, not the mean
                no_room = spent(max(0.0, first_s - block_s))
                if no_room and key not in results:
                    empty = PairedSamples((), (), 0, 0.0)
                    comparison = compare_paired((), (), decision)
                    why = f"budget of {policy.budget_s:g} s spent before it was measured"
                    results[key] = (_over_budget(comparison, why), empty)
                    continue
                if no_room:  # measured in an earlier round and pending: not rechecked now
                    unchecked(key)
                    continue
                samples = measure_paired(
                    bases, cands, base_replay, cand_replay, this_round, work_deadline(),
                    release_s,
                )  # fmt: skip
                release_s = max(release_s, samples.release_s)
                first_s = max(first_s, samples.first_block_s)
                if samples.base_ns:
                    block_s = max(block_s, samples.wall_s / len(samples.base_ns))
                if key in results:
                    samples = joined(results[key][1], samples)
                comparison = compare_paired(samples.base_ns, samples.cand_ns, decision)
                results[key] = (comparison, samples)
                measured[key] = measured.get(key, 0) + 1
        finally:
            closing = time.perf_counter()
            close_all((*bases, *cands))
            close_s = max(close_s, time.perf_counter() - closing)
        # measured again: what is open (unknown), or a change no recheck has seen yet
        pending = [w for w in pending
                   if results[w[0]][0].verdict in RECHECKED and not settled(w[0])]  # fmt: skip
        if not pending:
            break
    return results
