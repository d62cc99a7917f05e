"""The ``bench`` check on the real native library: row conventions, derived figures, budget."""

from __future__ import annotations

import dataclasses
import math
import re
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.abi import MAX_THREADS
from harness.artifact import Artifact, load_manifest
from harness.build import DEFAULT_OUT, MANIFEST, build_all, manifest_is_fresh
from harness.checks import bench, bench_paired
from harness.checks.base import CellContext
from harness.checks.bench_hostcost import POOL_MIN_REGIONS
from harness.checks.bench_workloads import create_model
from harness.engines.ctypes_engine import CtypesInstance
from harness.matrix import MatrixError, Names, check_thread_counts, expand_cells, load_matrix
from harness.rundir.rows import Row
from harness.timing import Measurement, summarize
from reference.presets import get_preset, param_count

SMALL: dict[str, Any] = {
    "ops": ["matmul_forward", "gelu_forward"],
    "sizes": {"matmul_forward": [16, 32], "gelu_forward": [1024]},
    "contexts": [4],
    "new_tokens": 3,
    "min_samples": 4,
    "max_samples": 6,
    "bridge_roundtrips": 8,
    "budget_s": 30.0,
}


@pytest.fixture(scope="module")
def native() -> Iterator[Artifact]:
    """The native artifact: artifacts/build when fresh, else a fresh build in a tmp dir."""
    if manifest_is_fresh(DEFAULT_OUT):
        yield load_manifest(DEFAULT_OUT / MANIFEST)["native"]
    else:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            yield build_all(Path(tmp))["native"]


def _run(
    artifact: Artifact, options: dict[str, Any], host: str = "native", preset: str = "tiny"
) -> list[Row]:
    inst = CtypesInstance.load(artifact)
    try:
        ctx = CellContext(host, "test", artifact, get_preset(preset), inst, options)
        return list(bench.run(ctx))
    finally:
        inst.close()


@pytest.fixture(scope="module")
def rows(native: Artifact) -> list[Row]:
    """One tiny-preset bench cell, all curves, from a clean process cache."""
    bench.reset_process_caches()
    return _run(native, SMALL)


def _one(rows: list[Row], **where: Any) -> Row:
    hits = [r for r in rows if all(getattr(r, k) == v for k, v in where.items())]
    assert len(hits) == 1, (where, hits)
    return hits[0]


def test_raw_samples_and_summaries_follow_row_conventions(rows: list[Row]) -> None:
    """Each point has time_ns samples (iteration 0..n-1, unit ns) and -1 summaries."""
    point = [
        r
        for r in rows
        if r.host == "native" and r.subject == "op:matmul_forward" and r.x_value == 32
    ]
    samples = [r for r in point if r.metric == "time_ns"]
    assert [r.iteration for r in samples] == list(range(len(samples)))
    assert len(samples) >= SMALL["min_samples"]
    assert {r.unit for r in samples} == {"ns"} and all(r.value > 0 for r in samples)
    summaries = {r.metric for r in point if r.iteration == -1}
    assert {
        "median_ns",
        "iqr_ns",
        "ci_low_ns",
        "ci_high_ns",
        "cv",
        "outliers",
        "gflops",
    } <= summaries
    assert {r.x_name for r in point} == {"n"} and {r.check for r in point} == {"bench"}
    timed = [r for r in rows if r.check == "bench" and r.subject not in HOST_COSTS]
    assert {r.status for r in timed} <= {"measured", "noisy"}


HOST_COSTS = ("host:wake_join", "host:postmessage", "host:load")  # JS hosts only


def test_host_costs_are_skipped_in_the_native_host_naming_why(rows: list[Row]) -> None:
    """The wake/join, postMessage and load costs are JS-host probes: the native host's rows are
    `skipped`, each saying it was not measured and why (no JS workers, no load timed inside)."""
    got = {r.subject: r for r in rows if r.subject in HOST_COSTS}
    assert sorted(got) == sorted(HOST_COSTS)
    assert {r.status for r in got.values()} == {"skipped"}
    assert "has no JS workers: no atomics round trip" in got["host:wake_join"].detail
    assert "does not time its load inside the host" in got["host:load"].detail


POOL_COSTS = ("pool:wake_join:threads=2", "pool:wake_join_asleep:threads=2")


def test_the_native_pool_wake_join_is_timed_inside_the_library(rows: list[Row]) -> None:
    """On a one-thread axis the overhead curve still probes the native pool at 2 threads: each
    pool figure is a measured per-region time from tg_pool_probe_ns (one sample per call, its
    regions calibrated by the timing protocol, never fewer than POOL_MIN_REGIONS back to back),
    never a skipped row, and its detail says which case it is."""
    for subject in POOL_COSTS:
        median = _one(rows, subject=subject, metric="median_ns")
        assert median.status in {"measured", "noisy"} and median.value > 0
        samples = [r for r in rows if r.subject == subject and r.metric == "time_ns"]
        assert len(samples) >= SMALL["min_samples"] and all(r.value > 0 for r in samples)
        assert median.detail.startswith("2 threads:")
    back_to_back = _one(rows, subject=POOL_COSTS[0], metric="median_ns").detail
    regions = re.search(r"inner_reps=(\d+)", back_to_back)
    assert regions is not None and int(regions[1]) >= POOL_MIN_REGIONS, back_to_back
    assert "spinning" in _one(rows, subject=POOL_COSTS[0], metric="median_ns").detail
    assert "asleep" in _one(rows, subject=POOL_COSTS[1], metric="median_ns").detail


def test_median_and_ci_come_from_the_raw_samples(rows: list[Row]) -> None:
    """The median row is the median of the recorded samples; the CI brackets it."""
    point = [r for r in rows if r.host == "native" and r.subject == "op:gelu_forward"]
    samples = [r.value for r in point if r.metric == "time_ns"]
    s = summarize(samples)
    assert _one(point, metric="median_ns").value == pytest.approx(s.median)
    assert (
        _one(point, metric="ci_low_ns").value <= s.median <= _one(point, metric="ci_high_ns").value
    )


def test_gflops_and_roofline_fraction_are_derived_from_the_median(rows: list[Row]) -> None:
    """gflops = (2n^3 + n^2) / median_ns; roofline_fraction = gflops / sgemm gflops at n."""
    point = [
        r
        for r in rows
        if r.host == "native" and r.subject == "op:matmul_forward" and r.x_value == 32
    ]
    median = _one(point, metric="median_ns").value
    gflops = _one(point, metric="gflops").value
    assert gflops == pytest.approx((2 * 32**3 + 32**2) / median)
    roof = _one(rows, host="numpy", subject="roofline:sgemm", metric="gflops", x_value=32.0).value
    assert _one(point, metric="roofline_fraction").value == pytest.approx(gflops / roof)


def test_speedup_is_reference_over_kernel(rows: list[Row]) -> None:
    """train_step speedup = numpy median / kernel median; x is the preset's parameter count."""
    params = float(param_count(get_preset("tiny")))
    kernel = _one(rows, host="native", subject="train_step", metric="median_ns")
    ref = _one(rows, host="numpy", artifact="reference", subject="train_step", metric="median_ns")
    speedup = _one(rows, host="native", subject="train_step", metric="speedup")
    assert speedup.value == pytest.approx(ref.value / kernel.value)
    assert (speedup.x_name, speedup.x_value) == ("params", params)


def test_side_by_side_speedup_is_the_median_of_its_recorded_pair_ratios(rows: list[Row]) -> None:
    """``train_step:paired``: one ``pair_ratio`` row per block pair (iteration 0..n-1), at least
    MIN_PAIRS of them; its ``speedup`` is their median and its bootstrap CI brackets it; the
    pooled absolute figures of the same seconds are recorded beside it."""
    point = [r for r in rows if r.host == "native" and r.subject == bench_paired.SUBJECT]
    ratios = [r for r in point if r.metric == "pair_ratio"]
    assert [r.iteration for r in ratios] == list(range(len(ratios)))
    assert len(ratios) >= bench_paired.MIN_PAIRS
    speedup = _one(point, metric="speedup")
    assert speedup.value == pytest.approx(statistics.median(r.value for r in ratios))
    low, high = _one(point, metric="speedup_ci_low"), _one(point, metric="speedup_ci_high")
    assert low.value <= speedup.value <= high.value
    assert _one(point, metric="kernel_median_ns").value > 0
    assert _one(point, metric="numpy_median_ns").value > 0
    assert (speedup.x_name, speedup.x_value) == ("params", float(param_count(get_preset("tiny"))))
    assert "block pairs" in speedup.detail and speedup.status in ("measured", "noisy")


def test_time_given_back_to_the_budget_extends_its_deadline() -> None:
    """``Budget.exempt`` moves the deadline: a figure bounded on its own (the side-by-side
    speedup) does not spend the seconds the curves after it were given."""
    budget = bench.Budget(1.0)
    budget.exempt(1000.0)
    assert budget.left() > 500.0 and budget.seconds == 1.0


def test_a_spent_deadline_still_grants_a_started_figure_its_extension() -> None:
    """The deadline decides which points start; a started figure's extension share is the
    same before and after it (cut by the deadline, a noisy figure stayed at its minimum
    samples however little more time it needed)."""
    budget = bench.Budget(10.0)
    before = budget.for_measurement()
    budget.deadline -= 20.0
    assert budget.left() < 0
    assert budget.for_measurement() == before == pytest.approx(bench.EXTENSION_SHARE * 10.0)


def test_a_short_budget_still_admits_the_side_by_side_figure(native: Artifact) -> None:
    """With a cell budget of 50 ms (spent by the numpy reference's child start alone), the
    side-by-side speedup is still measured: it is admitted with the 1-thread figure the claims
    cite, at its minimum pairs when its own seconds are spent too."""
    bench.reset_process_caches()
    opts = {**SMALL, "curves": ["train_step"], "budget_s": 0.05, "paired_s": 1e-6}
    got = _run(native, opts)
    ratios = [r for r in got if r.subject == bench_paired.SUBJECT and r.metric == "pair_ratio"]
    assert len(ratios) == bench_paired.MIN_PAIRS


def test_paired_false_leaves_out_the_side_by_side_figure(native: Artifact) -> None:
    """``paired = false`` measures the train step and the timed-apart speedup only."""
    bench.reset_process_caches()
    got = _run(native, {**SMALL, "curves": ["train_step"], "paired": False})
    assert not [r for r in got if r.subject == bench_paired.SUBJECT]
    assert _one(got, host="native", subject="train_step", metric="speedup").value > 0


def test_generation_rows_kv_on_and_off(rows: list[Row]) -> None:
    """tokens/s and time-to-first-token exist for both KV settings at each context."""
    for tag in ("kv", "nokv"):
        tps = _one(rows, subject=f"generate:{tag}", metric="tokens_per_s", x_value=4.0)
        full = _one(rows, subject=f"generate:{tag}", metric="median_ns", x_value=4.0).value
        first = _one(rows, subject=f"ttft:{tag}", metric="median_ns", x_value=4.0).value
        ttft = _one(rows, subject=f"ttft:{tag}", metric="ttft_ns", x_value=4.0).value
        assert ttft == first
        if tps.status == "measured":
            assert tps.value == pytest.approx(2 * 1e9 / (full - first))
        else:  # the difference of two medians can vanish in noise: then it is flagged
            assert tps.status == "noisy"


def test_generation_figures_are_interleaved_and_say_so(rows: list[Row]) -> None:
    """Each generation figure took its min_samples in repetitions bursts (capped at
    min_samples: 4 here), interleaved with the others, and its detail says how many."""
    for subject in ("generate:kv", "generate:nokv", "ttft:kv", "ttft:nokv"):
        median = _one(rows, subject=subject, metric="median_ns", x_value=4.0)
        assert "interleaved in 4 rounds" in median.detail
        n = len([r for r in rows if r.subject == subject and r.metric == "time_ns"])
        assert SMALL["min_samples"] <= n <= SMALL["max_samples"]


def test_spent_budget_skips_generation_points_for_both_kv_settings(native: Artifact) -> None:
    """Generation points the budget cannot admit are skipped rows, both KV settings each."""
    opts = {**SMALL, "budget_s": 1e-9, "curves": ["generate"], "contexts": [4, 8]}
    own = [r for r in _run(native, opts, host="native-gen-budget") if r.host == "native-gen-budget"]
    assert {(r.subject, r.x_value, r.status) for r in own} == {
        (f"generate:{tag}", float(c), "skipped") for tag in ("kv", "nokv") for c in (4, 8)
    }


def test_overhead_fractions_per_work_size(rows: list[Row]) -> None:
    """overhead:call and overhead:bridge give o / (o + t) for each matmul size."""
    call = _one(rows, subject="host:noop_call", metric="median_ns").value
    for n in (16, 32):
        flops = 2.0 * n**3 + n * n
        t = _one(rows, subject="op:matmul_forward", metric="median_ns", x_value=float(n)).value
        frac = _one(rows, subject="overhead:call", metric="overhead_fraction", x_value=flops)
        assert frac.x_name == "flops"
        assert frac.value == pytest.approx(call / (call + t))
    assert _one(rows, subject="bridge:noop", metric="median_ns").value > 0


def test_reference_and_ops_measured_once_per_process(native: Artifact, rows: list[Row]) -> None:
    """A second cell of the same host x artifact reuses the numpy figures and skips ops."""
    again = _run(native, SMALL)
    assert not [r for r in again if r.host == "numpy"]
    assert not [r for r in again if r.subject.startswith(("op:", "overhead:", "bridge:", "host:"))]
    assert [r for r in again if r.metric == "speedup"]


def test_spent_budget_gives_skipped_rows_not_silence(native: Artifact) -> None:
    """Points that would start after the cell's budget are skipped rows naming the budget."""
    opts = {**SMALL, "budget_s": 1e-9, "curves": ["ops", "train_step"]}
    rows = _run(native, opts, host="native-budget")
    own = [r for r in rows if r.host == "native-budget"]
    assert own and {r.status for r in own} == {"skipped"}
    assert all("budget of 1e-09 s per cell spent" in r.detail for r in own)
    assert {(r.subject, r.x_value) for r in own if r.subject == "op:matmul_forward"} == {
        ("op:matmul_forward", 16.0),
        ("op:matmul_forward", 32.0),
    }


def test_a_slow_model_creation_does_not_starve_the_admitted_train_step(
    native: Artifact, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The train step the budget admitted is measured even if making its model spends the rest.

    A huge preset's model took Chromium the rest of a 10 s budget to make, and its train_step
    (which the README's claims cite) came out skipped; the budget is checked before the model.
    """

    def slow(instance: Any, cfg: Any) -> Any:
        model = create_model(instance, cfg)
        time.sleep(0.3)  # longer than the whole budget below
        return model

    monkeypatch.setattr("harness.checks.bench.create_model", slow)
    opts = {**SMALL, "budget_s": 0.2, "curves": ["train_step"], "reference": False}
    rows = _run(native, opts, host="native-slow-model")
    step = [r for r in rows if r.subject == "train_step" and r.host == "native-slow-model"]
    assert {r.status for r in step} <= {"measured", "noisy"} and step, step


def test_noisy_measurement_rows_carry_status_and_cv() -> None:
    """A measurement whose CI exceeds +-10% yields noisy rows with the CV in the detail."""
    spread = (1000.0, 1600.0, 700.0, 1300.0, 900.0, 1500.0, 800.0, 1200.0)
    s = summarize(spread)
    m = Measurement(spread, 1, "perf_counter_ns", 50.0, s, s.is_noisy(0.10), 0.1)
    rows = bench.measurement_rows(bench.Stamp("h", "v", "a", "sha", "tiny"), "train_step", m)
    assert m.noisy and {r.status for r in rows} == {"noisy"}
    median = _one(rows, metric="median_ns")
    assert f"cv={s.cv:.3f}" in median.detail and "NOISY" in median.detail


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"speed": 1}, r"unknown option\(s\) \['speed'\]"),
        ({"curves": ["ops", "warp"]}, "unknown curve 'warp'"),
        ({"ops": ["softmax"]}, "unknown op 'softmax'"),
        ({"sizes": {"matmul_forward": [0]}}, "sizes.matmul_forward: expected a list of positive"),
        ({"min_samples": "ten"}, "min_samples: expected an integer"),
        ({"budget_s": -1}, "budget_s: expected a positive number"),
        ({"min_sample_ms": 0}, "min_sample_ms: expected a positive number"),
        ({"min_samples": 10, "max_samples": 5}, "max_samples=5 is below min_samples=10"),
        ({"new_tokens": 1}, "new_tokens: need >= 2"),
        ({"threads": [1, -2]}, "threads: expected a list of positive integers"),
        ({"threads": [0]}, "threads: expected a list of positive integers"),
        ({"threads": [1, 2, 1]}, r"threads: \[1, 2, 1\] repeats a count"),
        ({"threads": [2, 4]}, r"threads: \[2, 4\] lacks 1"),
        ({"threads": []}, r"threads: \[\] lacks 1"),
        ({"pairs": 2}, "pairs: need >= 3 block pairs"),
        ({"block_ms": 0}, "block_ms: expected a positive number"),
        ({"paired": "yes"}, "paired: expected true/false"),
        ({"repetitions": 0}, "repetitions=0 must be between 1 and min_samples"),
    ],
)
def test_validate_options_names_the_bad_key(options: dict[str, Any], message: str) -> None:
    """Bad [check.bench] tables are refused with the key and the expectation in the message."""
    with pytest.raises(ValueError, match=message):
        bench.validate_options(options)


def test_default_options_are_valid_and_fit_presets() -> None:
    """The defaults validate, and default contexts leave room for the new tokens."""
    bench.validate_options({})
    assert bench.default_contexts(get_preset("tiny"), 8) == (8,)
    assert bench.default_contexts(get_preset("small"), 8) == (8, 16, 32, 56)
    assert all(math.isfinite(c) for c in bench.default_contexts(get_preset("huge"), 8))


def test_min_sample_ms_sets_the_timing_policy_sample_length() -> None:
    """``min_sample_ms`` reaches the timing policy as the shortest sample, in ns."""
    assert bench.parse_options({"min_sample_ms": 1}).policy(1.0).min_sample_ns == 1e6
    assert bench.parse_options({}).policy(1.0).min_sample_ns == 200_000


def test_coarse_first_orders_ends_then_midpoints() -> None:
    """Generation contexts are visited ends first, so a budget cut leaves a coarse curve."""
    assert bench.coarse_first((8, 16, 32, 64, 128)) == [8, 128, 32, 16, 64]
    assert bench.coarse_first((16, 8)) == [8, 16]
    assert sorted(bench.coarse_first((8, 16, 32, 56))) == [8, 16, 32, 56]


def test_a_thread_count_below_one_is_refused_at_matrix_load_with_its_line(
    tmp_path: Path,
) -> None:
    """``threads = [1, 0]`` stops the matrix at load, FILE:LINE first. (A count above an
    artifact's pool is refused once the manifest is read: a project's library has its own.)"""
    path = tmp_path / "m.toml"
    path.write_text(
        'name = "t"\nartifacts = ["native"]\npresets = ["tiny"]\nchecks = ["bench"]\n'
        '[hosts]\nnative = {}\n[check.bench]\ncurves = ["ops"]\n'
        "threads = [1, 0]\n"
    )
    said = r"\[check.bench\] threads: expected a list of positive integers"  # said once
    with pytest.raises(MatrixError, match=rf"^{path}:9: {said}"):
        load_matrix(path, Names(hosts=("native",), artifacts=("native",)))


def test_thread_count_above_an_artifacts_pthread_pool_is_refused_with_its_line(
    tmp_path: Path, native: Artifact
) -> None:
    """Once the manifest is read: ``threads`` above an emscripten build's pool + the caller (2
    workers: 3) is refused at ``threads``'s line, naming the artifact and what caps it; the
    native build (the library's pool of 16) and a matrix that does not bench the pthread build
    are let through; above 16 the native build is refused too, naming TG_MAX_THREADS."""
    pthread = dataclasses.replace(native, name="em-pool", flags=("-sPTHREAD_POOL_SIZE=2",))
    assert (pthread.thread_limit(), native.thread_limit()) == (3, MAX_THREADS)
    limits = {"native": native.thread_capacity(), "em-pool": pthread.thread_capacity()}
    names = Names(hosts=("native", "node24"), artifacts=("native", "em-pool"))
    path = tmp_path / "m.toml"
    text = ('name = "t"\nartifacts = ["native", "em-pool"]\npresets = ["tiny"]\n'
            'checks = ["bench"]\n[hosts]\nnode24 = {}\n[check.bench]\ncurves = ["ops"]\n'
            "threads = [1, 4]\n")  # fmt: skip
    path.write_text(text)
    matrix = load_matrix(path, names)
    with pytest.raises(MatrixError, match=rf"^{path}:9: \[check.bench\] threads: 4 is above .*"
                       r": em-pool runs at most 3 \(-sPTHREAD_POOL_SIZE=2 workers \+ the "
                       r"caller\)\. Lower"):  # fmt: skip
        check_thread_counts(matrix, expand_cells(matrix), limits)
    path.write_text(text.replace("[1, 4]", f"[1, {MAX_THREADS + 1}]"))
    with pytest.raises(MatrixError, match=r"native runs at most 16 \(TG_MAX_THREADS of tinygpt"):
        check_thread_counts(load_matrix(path, names), expand_cells(matrix), limits)
    path.write_text(text.replace('checks = ["bench"]', 'checks = ["smoke"]'))
    matrix = load_matrix(path, names)
    check_thread_counts(matrix, expand_cells(matrix), limits)  # no bench cell: nothing to cap
    path.write_text(text.replace("[1, 4]", "[1, 3]"))
    matrix = load_matrix(path, names)
    check_thread_counts(matrix, expand_cells(matrix), limits)


def test_threads_axis_measures_each_count_and_the_speedup(native: Artifact) -> None:
    """threads = [1, 2]: each op point and the train step are measured at both counts, the
    2-thread rows carry their own subject; the ops' threads:* rows hold 1-thread / n-thread
    medians and the train step's the side-by-side ratio inside its CI (checked against the
    medians and the CI, never against a speed); each train step's ``regions`` row
    counts its parallel regions: none on 1 thread, some on 2 (the small preset's matmuls are
    split); the instance is back at 1 thread."""
    opts = {**SMALL, "curves": ["ops", "train_step"], "threads": [1, 2], "reference": False,
            "sizes": {"matmul_forward": [256], "gelu_forward": [1024]}}  # fmt: skip
    inst = CtypesInstance.load(native)
    try:
        ctx = CellContext("native-threads", "test", native, get_preset("small"), inst, opts)
        rows = list(bench.run(ctx))
        assert inst.call("tg_get_threads") == 1
    finally:
        inst.close()
    medians = {(r.subject, r.x_value): r.value for r in rows if r.metric == "median_ns"}
    one = medians[("op:matmul_forward", 256.0)]
    two = medians[("op:matmul_forward:threads=2", 256.0)]
    sp = _one(rows, subject="threads:op:matmul_forward@n=256", x_value=2.0)
    assert sp.metric == "speedup" and sp.value == pytest.approx(one / two)
    assert _one(rows, subject="threads:op:matmul_forward@n=256", x_value=1.0).value == 1.0
    params = float(param_count(get_preset("small")))
    assert ("train_step", params) in medians and ("train_step:threads=2", params) in medians
    # the train step's speedup is side by side: its CI rows bracket it, and the detail says so
    step = _one(rows, subject="threads:train_step", x_value=2.0, metric="speedup")
    low = _one(rows, subject="threads:train_step", x_value=2.0, metric="speedup_ci_low")
    high = _one(rows, subject="threads:train_step", x_value=2.0, metric="speedup_ci_high")
    assert low.value <= step.value <= high.value and step.value > 0
    assert "side by side" in step.detail and "1- and 2-thread blocks" in step.detail
    assert _one(rows, subject="threads:train_step", x_value=1.0).value == 1.0
    regions = {r.subject: r for r in rows if r.metric == "regions"}
    assert regions.keys() == {"train_step", "train_step:threads=2"}
    assert regions["train_step"].value == 0 and regions["train_step:threads=2"].value > 0
    assert regions["train_step:threads=2"].x_value == params
    assert "on 2 thread(s)" in regions["train_step:threads=2"].detail


def test_threads_axis_on_a_build_without_threads_is_a_skipped_row(tmp_path: Path) -> None:
    """On a freestanding wasm build tg_set_threads(2) puts 1 in effect: the 2-thread point and
    the pool probes are skipped rows that say so, and the 1-thread point is still measured."""
    from harness.engines import load_in_process

    if manifest_is_fresh(DEFAULT_OUT):
        wasm = load_manifest(DEFAULT_OUT / MANIFEST)["wasm32"]
    else:
        wasm = build_all(tmp_path)["wasm32"]
    opts = {**SMALL, "curves": ["ops", "overhead"], "threads": [1, 2], "reference": False,
            "ops": ["gelu_forward"], "sizes": {"gelu_forward": [1024]}}  # fmt: skip
    inst = load_in_process(wasm)
    try:
        ctx = CellContext("wasmtime-threads", "test", wasm, get_preset("tiny"), inst, opts)
        rows = list(bench.run(ctx))
    finally:
        inst.close()
    skipped = _one(rows, subject="op:gelu_forward:threads=2")
    assert skipped.status == "skipped" and "put 1 in effect" in skipped.detail
    for subject in ("pool:wake_join:threads=2", "pool:wake_join_asleep:threads=2"):
        pool = _one(rows, subject=subject)  # no pool to time: a skipped row naming why
        assert pool.status == "skipped" and "put 1 in effect" in pool.detail
    assert _one(rows, subject="op:gelu_forward", metric="median_ns").status != "skipped"


def test_the_once_per_host_curves_do_not_starve_the_first_cells_train_step(
    native: Artifact, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ops curve, measured once per host x artifact, spends more than the cell's whole
    budget; its time goes back to the cell, so the first cell's train step (which the claims
    cite) is still measured, not skipped (native/native/huge lost it so in a main job)."""
    bench.reset_process_caches()

    def slow_ops(*_args: object) -> Iterator[Row]:
        time.sleep(0.3)
        yield from ()

    monkeypatch.setattr(bench, "_ops_curve", slow_ops)
    opts = {**SMALL, "budget_s": 0.2, "curves": ["ops", "train_step"], "ops_once": True}
    own = [r for r in _run(native, opts, host="native-once") if r.host == "native-once"]
    step = _one(own, subject="train_step", metric="median_ns")
    assert step.status in ("measured", "noisy") and step.value > 0


def test_a_binding_without_threads_says_an_export_it_lists_has_no_meaning(
    tmp_path: Path, native: Artifact
) -> None:
    """A project's binding listing its tg_set_threads under [exports] and no [threads] table
    runs 1 thread, and the reason says the [exports] entry gives the call no meaning (a user
    listed it there and expected the thread axis to use it)."""
    binding = tmp_path / "b.binding.toml"
    binding.write_text(
        '[binding]\nname = "t"\n[ops.gelu_forward]\nexport = "tg_gelu_forward"\n'
        'args = ["out", "x", "N"]\n[exports]\n'
        'tg_set_threads = { params = ["i32"], result = "i32" }\n'
    )
    cap, why = dataclasses.replace(native, binding=binding).thread_capacity()
    assert cap == 1 and "has no [threads] table" in why
    assert "[exports] lists tg_set_threads: an [exports] entry gives a call no meaning" in why
