"""``nox -s bench``: check the bundled kernels against their speed targets and write the result.

Targets (see ``docs/timing.md``):

1. the native ``tg_matmul_forward`` at 512³ reaches at least 50% of numpy's one-thread BLAS sgemm;
2. the wasm32 build under Node 24 reaches at least 40% of the native build at the same size;
3. the kernel thread pool's speedup at 512³, 2 threads over 1 (``tg_set_threads``), side by
   side in one instance: native at least 1.7x; the emscripten ``-pthread`` build through its
   own glue at least 1.5x under Node 24 and in Chromium. Node 22 and the system Node (20) are
   measured beside them, for information (docs/threads.md, "The target and its measurement").

Every figure is timed inside the host. The absolute figures go through the timing protocol
(:func:`harness.timing.measure`); a thread speedup is the median of per-pair ratios of
alternating 1-thread and 2-thread blocks with a bootstrap CI over pairs
(:func:`harness.checks.bench_paired.thread_speedup`), judged on its CI: met when the CI's low
end reaches the threshold, missed when its high end is below it, inconclusive otherwise.
The result goes to ``docs/bench-targets.md`` together with the command that produced it. A
missed target is written as **missed** and exits 1; the threshold is never lowered. A figure
that could not be measured (Node 24 not installed) exits 2 and says how to install it.

Run: ``python -m harness.bench_targets [--out docs/bench-targets.md] [--node24 PATH]
[--threads-only] [--pairs N]``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shlex
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.artifact import Artifact, load_manifest
from harness.build import DEFAULT_OUT, MANIFEST, build_all, emcc_path, manifest_is_fresh
from harness.checks.bench_paired import MIN_PAIRS, Interleaved, PairedPlan, thread_speedup
from harness.checks.bench_workloads import matmul_forward
from harness.hosts.base import Host, HostError, Instance
from harness.hosts.native import NativeHost
from harness.hosts.node import NodeHost, pinned_node
from harness.hosts.registry import make_host
from harness.machine import cpu_shares, cpu_times, fingerprint
from harness.roofline import matmul_flops, sgemm_measurements
from harness.rundir.meta import git_state
from harness.timing import Measurement, PairedRatio, TimingPolicy, measure

# issue 13's targets on this 2-core machine: 2 threads at least 1.7x one thread natively, and
# 1.5x for the emscripten -pthread build in Node and in Chromium
THREADS_SPEEDUP = 1.7
THREADS_SPEEDUP_JS = 1.5
THREADS = 2
THREAD_ARTIFACT_JS = "em-wasm32-pthread"  # the one -pthread build; its glue starts the pool


@dataclass(frozen=True)
class ThreadCase:
    """One thread-speedup target: a host, an artifact and the speedup it must reach."""

    host: str  # a registry name (harness.hosts.registry.HOST_NAMES)
    artifact: str
    threshold: float
    required: bool  # decides the exit code; False: measured beside the targets, for information


THREAD_CASES: tuple[ThreadCase, ...] = (
    ThreadCase("native", "native", THREADS_SPEEDUP, True),
    ThreadCase("node24", THREAD_ARTIFACT_JS, THREADS_SPEEDUP_JS, True),
    ThreadCase("chromium", THREAD_ARTIFACT_JS, THREADS_SPEEDUP_JS, True),
    ThreadCase("node22", THREAD_ARTIFACT_JS, THREADS_SPEEDUP_JS, False),
    ThreadCase("node", THREAD_ARTIFACT_JS, THREADS_SPEEDUP_JS, False),  # the system Node (20)
)
POLICY = TimingPolicy(min_samples=15, max_samples=40, warmup=3, budget_s=30.0)
# Blocks of ~75 ms (about 15 native 512^3 calls, 4 of wasm): long enough to hold several
# calls, short against the VM's speed regimes of hundreds of ms. 20 pairs take ~3-8 s a case.
THREAD_PLAN = PairedPlan(pairs=20, block_ms=75.0, seconds=30.0)
REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Figure:
    """One measured throughput, or why it is missing."""

    label: str
    gflops: float | None
    measurement: Measurement | None
    missing: str = ""  # why there is no figure (host not installed, load failed)

    def bounds(self) -> tuple[float, float]:
        """GFLOP/s at the CI's ends (slowest, fastest)."""
        assert self.gflops is not None and self.measurement is not None
        s = self.measurement.summary
        flops = self.gflops * s.median
        return flops / s.ci_high, flops / s.ci_low

    def text(self) -> str:
        """GFLOP/s with its CI, or the reason it is missing."""
        m = self.measurement
        if self.gflops is None or m is None:
            return f"not measured: {self.missing}"
        s = m.summary
        low, high = self.bounds()
        ci = f"[{low:.1f}, {high:.1f}]"
        noisy = f" NOISY cv={s.cv:.3f}" if m.noisy else ""
        return f"{self.gflops:.1f} GFLOP/s (95% CI {ci}, n={s.n}){noisy}"


@dataclass(frozen=True)
class Target:
    """``numerator`` reaches at least ``threshold`` of ``denominator``."""

    name: str
    numerator: Figure
    denominator: Figure
    threshold: float

    @property
    def ratio(self) -> float | None:
        """The measured share, or None when either figure is missing."""
        if self.numerator.gflops is None or self.denominator.gflops is None:
            return None
        return self.numerator.gflops / self.denominator.gflops

    @property
    def status(self) -> str:
        """``met``, ``missed``, ``inconclusive (noisy)`` or ``not measured``.

        A noisy figure still decides when even its CI's most favourable end cannot change the
        outcome; otherwise the result is inconclusive rather than a guess.
        """
        ratio = self.ratio
        if ratio is None:
            return "not measured"
        figures = (self.numerator.measurement, self.denominator.measurement)
        if not any(m is not None and m.noisy for m in figures):
            return "met" if ratio >= self.threshold else "missed"
        (num_lo, num_hi), (den_lo, den_hi) = self.numerator.bounds(), self.denominator.bounds()
        if num_hi / den_lo < self.threshold:
            return "missed"
        if num_lo / den_hi >= self.threshold:
            return "met"
        return "inconclusive (noisy)"


@dataclass(frozen=True)
class ThreadTarget:
    """A thread speedup measured side by side, or why it could not be."""

    case: ThreadCase
    n: int  # the matmul's size
    ratio: PairedRatio | None
    blocks: Interleaved | None
    missing: str = ""  # why there is no figure (host absent, load failed, no thread path)
    machine: str = ""  # the machine's busy / idle / steal shares while it was measured

    @property
    def name(self) -> str:
        """The target as the page states it."""
        c = self.case
        return (
            f"{c.host} · {c.artifact} matmul {self.n}³ on {THREADS} threads ≥ "
            f"{c.threshold:g}x 1 thread" + ("" if c.required else " (information)")
        )

    @property
    def status(self) -> str:
        """``met`` (the CI's low end reaches the threshold), ``missed`` (its high end is below
        it), ``inconclusive (CI straddles)`` or ``not measured``. The threshold is the case's,
        never moved; a wide CI is inconclusive rather than a guess."""
        r = self.ratio
        if r is None:
            return "not measured"
        if r.ci_low >= self.case.threshold:
            return "met"
        if r.ci_high < self.case.threshold:
            return "missed"
        return "inconclusive (CI straddles)"

    def text(self) -> str:
        """The figure with its CI and the absolute speeds of the same seconds, or the reason."""
        r, b = self.ratio, self.blocks
        if r is None or b is None:
            return f"not measured: {self.missing}"
        flops = matmul_flops(self.n, self.n, self.n)
        return (
            f"{r.value:.2f}x (95% CI [{r.ci_low:.2f}, {r.ci_high:.2f}], {len(r.ratios)} pairs "
            f"of {b.num_per_block}+{b.den_per_block} calls); 1 thread "
            f"{flops / r.num_median:.1f}, {THREADS} threads {flops / r.den_median:.1f} GFLOP/s; "
            f"{self.machine}"
        )


def measure_thread_target(host: Host, artifact: Artifact, case: ThreadCase, n: int,
                          plan: PairedPlan) -> ThreadTarget:  # fmt: skip
    """The side-by-side 2-over-1-thread speedup of ``tg_matmul_forward`` at n³ in one instance
    of ``artifact`` in ``host``; a host or artifact that cannot run gives the reason."""
    try:
        instance: Instance = host.load(artifact)
    except HostError as exc:
        return ThreadTarget(case, n, None, None, f"{type(exc).__name__}: {exc}")
    try:
        got = instance.call("tg_set_threads", THREADS)
        if got != THREADS:
            return ThreadTarget(case, n, None, None, f"tg_set_threads({THREADS}) put {got}")
        instance.call("tg_set_threads", 1)
        wl = matmul_forward(instance, n)
        load, before = os.getloadavg()[0], cpu_times()
        blocks, ratio = thread_speedup(instance, wl.export, wl.args, THREADS, plan, POLICY)
        machine = f"load {load:.2f} before, {cpu_shares(before, cpu_times())}"
        wl.release(instance)
    except HostError as exc:
        return ThreadTarget(case, n, None, None, f"{type(exc).__name__}: {exc}")
    finally:
        instance.close()
    return ThreadTarget(case, n, ratio, blocks, machine=machine)


def measure_thread_targets(
    arts: dict[str, Artifact], n: int, node24: Path | None, plan: PairedPlan
) -> tuple[list[ThreadTarget], dict[str, str]]:
    """Every :data:`THREAD_CASES` target, each host started, used and closed in turn, and the
    versions of the hosts that ran."""
    out: list[ThreadTarget] = []
    versions: dict[str, str] = {}
    for case in THREAD_CASES:
        if case.artifact not in arts:
            out.append(ThreadTarget(case, n, None, None, f"no {case.artifact} in the manifest "
                                    "(emscripten not installed when it was built?)"))  # fmt: skip
            continue
        host: Host | str = node24_host(node24) if case.host == "node24" else make_host(case.host)
        if isinstance(host, str):
            out.append(ThreadTarget(case, n, None, None, host))
            continue
        try:
            try:
                versions[case.host] = host.version()
            except HostError as exc:
                out.append(ThreadTarget(case, n, None, None, f"{type(exc).__name__}: {exc}"))
                continue
            out.append(measure_thread_target(host, arts[case.artifact], case, n, plan))
        finally:
            host.close()
    return out, versions


def time_matmul(host: Host, artifact: Artifact, n: int, label: str, threads: int = 1) -> Figure:
    """Median GFLOP/s of ``tg_matmul_forward`` at n³ in ``host`` on ``threads`` kernel threads,
    timed inside the host."""
    try:
        instance: Instance = host.load(artifact)
    except HostError as exc:
        return Figure(label, None, None, f"{type(exc).__name__}: {exc}")
    try:
        got = instance.call("tg_set_threads", threads)
        if got != threads:
            return Figure(label, None, None, f"tg_set_threads({threads}) put {got} in effect")
        wl = matmul_forward(instance, n)

        def sample(reps: int, samples: int, warmup: int) -> object:
            return instance.time_calls(wl.export, wl.args, reps, samples, warmup)

        m = measure(sample, POLICY)  # type: ignore[arg-type]
        wl.release(instance)
    finally:
        instance.close()
    return Figure(label, matmul_flops(n, n, n) / m.summary.median, m)


def node24_host(explicit: Path | None) -> NodeHost | str:
    """The Node 24 host (``--node24`` or the project's install), or why it is unavailable."""
    host = NodeHost("node24", explicit, "--node24 PATH") if explicit else pinned_node("node24")
    try:
        host.version()
    except HostError as exc:
        return str(exc)
    return host


def load_average() -> str:
    """The 1/5/15-minute load averages, e.g. ``0.52/0.80/1.10``."""
    return "/".join(f"{v:.2f}" for v in os.getloadavg())


def measure_targets(
    manifest: Path,
    n: int,
    node24: Path | None,
    plan: PairedPlan = THREAD_PLAN,
    threads_only: bool = False,
) -> tuple[list[Target], list[ThreadTarget], dict[str, str]]:
    """Measure the figures and return the targets, the thread targets and the hosts' versions
    (and, under ``load``, the load averages before and after). The thread targets go first:
    they need both cores, so they are the most sensitive to whatever else starts later."""
    load_before = load_average()
    arts = load_manifest(manifest)
    thread_targets, versions = measure_thread_targets(arts, n, node24, plan)
    if threads_only:
        versions["load"] = f"{load_before} before, {load_average()} after"
        return [], thread_targets, versions
    roof = sgemm_measurements([n], POLICY)[n]
    numpy_fig = Figure(
        "numpy sgemm, 1 BLAS thread", matmul_flops(n, n, n) / roof.summary.median, roof
    )
    native_host = NativeHost()
    versions["native"] = native_host.version()
    try:
        native = time_matmul(native_host, arts["native"], n, "native tg_matmul_forward")
        portable = time_matmul(
            native_host, arts["native-x86-64"], n, "native-x86-64 tg_matmul_forward"
        )
    finally:
        native_host.close()
    node = node24_host(node24)
    if isinstance(node, str):
        wasm = Figure("wasm32 under node24", None, None, node)
    else:
        versions["node24"] = node.version()
        try:
            wasm = time_matmul(node, arts["wasm32"], n, "wasm32 tg_matmul_forward under node24")
        finally:
            node.close()
    versions["load"] = f"{load_before} before, {load_average()} after"
    targets = [
        Target(f"native matmul {n}³ ≥ 50% of numpy 1-thread BLAS", native, numpy_fig, 0.50),
        # The same target for the portable SSE2-only build: the price of running everywhere.
        Target(
            f"native-x86-64 (portable) matmul {n}³ ≥ 50% of numpy 1-thread BLAS",
            portable,
            numpy_fig,
            0.50,
        ),
        Target(f"wasm32 matmul {n}³ under Node 24 ≥ 40% of native", wasm, native, 0.40),
    ]
    return targets, thread_targets, versions


def render(
    targets: Sequence[Target],
    command: str,
    versions: dict[str, str],
    artifacts: dict[str, Artifact],
    thread_targets: Sequence[ThreadTarget] = (),
) -> str:
    """The Markdown written to docs/bench-targets.md."""
    git = git_state(REPO_ROOT)
    machine = fingerprint()
    lines = [
        "# Bundled-kernel speed targets",
        "",
        "Written by `nox -s bench`; do not edit by hand. Regenerate with:",
        "",
        f"    {command}",
        "",
        f"- date: {datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds')}",
        f"- commit: `{git['commit']}`{' (dirty)' if git['dirty'] else ''}",
        f"- machine: {machine['cpu_model']}, {machine['usable_cores']} usable cores, "
        f"id {machine['fingerprint_id']}",
        f"- hosts: {', '.join(f'{k} {v}' for k, v in versions.items() if k != 'load')}",
        f"- load average (1/5/15 min, {machine['usable_cores']} cores): "
        f"{versions.get('load', 'not recorded')}",
        f"- artifacts: {', '.join(f'{a.name} {a.sha256[:12]}' for a in artifacts.values())}",
        f"- protocol: timed inside the host, {POLICY.min_samples}-{POLICY.max_samples} samples, "
        "median with bootstrap 95% CI (docs/timing.md)",
    ]
    if targets:
        lines += [
            "",
            "| target | measured | of | ratio | threshold | status |",
            "|---|---|---|---|---|---|",
        ]
    for t in targets:
        ratio = _share(t.ratio, t.threshold, 1)
        status = _status(t.status)
        lines.append(
            f"| {t.name} | {t.numerator.label}: {t.numerator.text()} | "
            f"{t.denominator.label}: {t.denominator.text()} | {ratio} | "
            f"{_share(t.threshold, t.threshold, 0)} | {status} |"
        )
    if thread_targets:
        lines += [
            "",
            f"Thread speedups, side by side: in one instance, blocks of ~{THREAD_PLAN.block_ms:g} "
            f"ms on 1 and on {THREADS} threads alternate (order flipped every pair); the figure "
            "is the median of the per-pair ratios, its 95% CI a bootstrap over pairs, and the "
            "target is judged on the CI. The machine's shares are from /proc/stat over the "
            "figure (busy counts every process, this one included).",
            "",
            "| target | measured | threshold | status |",
            "|---|---|---|---|",
        ]
    for tt in thread_targets:
        lines.append(f"| {tt.name} | {tt.text()} | {tt.case.threshold:g}x | {_status(tt.status)} |")
    lines += [
        "",
        "A missed target stays missed here: the figure is reported, the threshold is not lowered.",
        "",
    ]
    return "\n".join(lines)


def _status(status: str) -> str:
    return {"met": "✅ met", "missed": "❌ **missed**"}.get(status, f"⚠️ {status}")


def _share(value: float | None, threshold: float, digits: int) -> str:
    """A ratio as a percentage, or as e.g. ``1.85x`` for a speedup target (threshold above 1)."""
    if value is None:
        return "—"
    if threshold > 1:
        return f"{value:.{digits + 1}f}x"
    return f"{100 * value:.{digits}f}%"


def exit_code(targets: Sequence[Target], thread_targets: Sequence[ThreadTarget] = ()) -> int:
    """0 all met, 1 any missed or inconclusive, 2 any not measured (and none missed). Thread
    cases measured for information only do not count."""
    statuses = {t.status for t in targets}
    statuses |= {t.status for t in thread_targets if t.case.required}
    if statuses & {"missed", "inconclusive (noisy)", "inconclusive (CI straddles)"}:
        return 1
    return 2 if "not measured" in statuses else 0


def main(argv: Sequence[str] | None = None, log: Callable[[str], object] = print) -> int:
    """Build if needed, measure, write the Markdown, print it; return the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m harness.bench_targets", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--build-dir", type=Path, default=DEFAULT_OUT, help="artifacts/build")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "bench-targets.md")
    parser.add_argument("--node24", type=Path, default=None, help="a Node 24 binary to use")
    parser.add_argument("--size", type=int, default=512, help="matmul n (targets are at 512)")
    parser.add_argument(
        "--threads-only", action="store_true", help="measure only the thread speedups"
    )
    parser.add_argument(
        "--pairs", type=int, default=THREAD_PLAN.pairs, help="block pairs per thread speedup"
    )
    args = parser.parse_args(argv)
    if args.pairs < MIN_PAIRS:
        parser.error(f"--pairs {args.pairs}: at least {MIN_PAIRS} pairs give a CI")
    plan = PairedPlan(args.pairs, THREAD_PLAN.block_ms, THREAD_PLAN.seconds)
    if not manifest_is_fresh(args.build_dir):
        log(f"bench: building artifacts into {args.build_dir}")
        build_all(args.build_dir, emscripten=emcc_path() is not None, lib2=True)
    manifest = args.build_dir / MANIFEST
    targets, thread_targets, versions = measure_targets(
        manifest, args.size, args.node24, plan, args.threads_only
    )
    given = list(sys.argv[1:] if argv is None else argv)
    command = " ".join(["python -m harness.bench_targets", *map(shlex.quote, given)])
    text = render(targets, command, versions, load_manifest(manifest), thread_targets)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    log(text)
    log(f"bench: wrote {args.out}")
    return exit_code(targets, thread_targets)


if __name__ == "__main__":
    sys.exit(main())
