"""The report's WebGPU views: the WebGPU-over-WASM train-step speedup curve and the
cross-adapter equality table (issue 16; docs/webgpu.md).

The curve: per host, adapter and preset, the best WASM artifact's ``train_step`` median (bench
check, one thread, the same host) over the composed WebGPU step's (the bench's ``train_step``
of a webgpu artifact, :mod:`harness.checks.webgpu_curve`), for the same workload (``B=.. T=..``
in both details), with the bootstrap 95 % CI of that ratio from both figures' samples. A figure
measured on a CPU-emulated adapter (SwiftShader) says so in its row and series, and no row or
series mixes adapters: each adapter is its own, never compared with another's. The points are
:func:`webgpu_speedups`; the table is here, the plot (``plots/webgpu_speedup``) in
:func:`harness.report_plots.webgpu_speedup_figure`, which puts CPU-emulated adapters on a panel
of their own.
"""

from __future__ import annotations

import math
import re

import pandas as pd

from harness.checks.webgpu_curve import (
    ADAPTER,
    ADAPTER_SUFFIX,
    CPU_EMULATED,
    MARK,
    SUBJECT,
    VERSUS_SUBJECT,
)
from harness.checks.webgpu_step import XADAPTER
from harness.gate.measurements import TIME_METRIC
from harness.gate.stats import MIN_SAMPLES, compare_samples
from harness.report_data import summary_value
from harness.report_tables import Table, fmt_ns
from reference.presets import PRESETS

_SHAPE = re.compile(r"B=(\d+) T=(\d+)")


def _shape(detail: object) -> str:
    m = _SHAPE.search(str(detail))
    return m.group(0) if m else ""


# newer figures name the adapter ("adapter google/swiftshader (request default)"); older ones
# only the CPU-emulated one or the request
_ADAPTER = (
    re.compile(rf"\b{ADAPTER} (\S+/\S+) \(request"),
    re.compile(rf"{CPU_EMULATED} \(([^)]*)\)"),
    re.compile(r"adapter request (\S+)"),
)


def _adapter(detail: object) -> str:
    """The adapter a figure names (``vendor/architecture`` where it says, else its request)."""
    for pattern in _ADAPTER:
        m = pattern.search(str(detail))
        if m:
            return m.group(1)
    return "?"


def _order(preset: str) -> int:
    names = list(PRESETS)
    return names.index(preset) if preset in names else len(names)


def _samples(
    rows: pd.DataFrame, host: str, artifact: str, preset: str, subject: str
) -> list[float]:
    """The raw ``time_ns`` samples (iteration >= 0) of one bench figure, in the order taken."""
    m = rows[
        (rows["check"] == "bench") & (rows["host"] == host) & (rows["artifact"] == artifact)
        & (rows["preset"] == preset) & (rows["subject"] == subject)
        & (rows["metric"] == TIME_METRIC) & (rows["iteration"] >= 0)
    ]  # fmt: skip
    return [float(v) for v in m.sort_values("iteration")["value"]]


SPEEDUP_COLUMNS = (
    "host", "artifact", "subject", "adapter", "emulated", "preset", "x_value", "shape",
    "gpu_median", "gpu_n", "gpu_noisy", "wasm_artifact", "wasm_median", "wasm_n", "wasm_noisy",
    "speedup", "ci_low", "ci_high", "method",
)  # fmt: skip
APART = "timed apart"  # a point's method: two cells' medians (the fallback)
BESIDE = "side by side"  # a point's method: train_step:vs_wasm's alternating blocks
_BESIDE_ARTIFACT = re.compile(rf"{re.escape(MARK)} beside (\S+)")


def _beside(
    rows: pd.DataFrame, host: str, artifact: str, preset: str, subject: str
) -> dict[str, object] | None:
    """The side-by-side figure of the GPU figure ``subject`` (its ``train_step:vs_wasm``
    twin, :func:`harness.checks.webgpu_curve.side_by_side`), as point fields; None if none."""
    twin = subject.replace(SUBJECT, VERSUS_SUBJECT, 1)
    got = summary_value(rows, host=host, artifact=artifact, preset=preset, subject=twin)
    values = {str(r["metric"]): float(r["value"]) for _, r in got.iterrows()}
    if "speedup" not in values or got.empty:
        return None
    detail = str(got["detail"].iloc[0])
    m = _BESIDE_ARTIFACT.search(detail)
    pairs = rows[(rows["check"] == "bench") & (rows["host"] == host)
                 & (rows["artifact"] == artifact) & (rows["preset"] == preset)
                 & (rows["subject"] == twin) & (rows["metric"] == "pair_ratio")]  # fmt: skip
    return {
        "wasm_artifact": m.group(1) if m else "?",
        "wasm_median": values.get("wasm_median_ns", math.nan),
        "gpu_median": values.get("webgpu_median_ns", math.nan),
        "wasm_n": len(pairs), "gpu_n": len(pairs),
        "wasm_noisy": bool((got["status"] == "noisy").any()),
        "speedup": values["speedup"],
        "ci_low": values.get("speedup_ci_low", math.nan),
        "ci_high": values.get("speedup_ci_high", math.nan),
        "method": f"{BESIDE} ({len(pairs)} block pairs)",
    }  # fmt: skip


def webgpu_speedups(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (host, WebGPU artifact, adapter, preset): the WebGPU-over-WASM speedup.

    ``speedup`` = the fastest non-WebGPU artifact's ``train_step`` median (same host, preset and
    ``B=.. T=..``) / the composed step's median; ``ci_low``/``ci_high`` its bootstrap 95 % CI
    from both figures' samples (:func:`harness.gate.stats.compare_samples` with WebGPU as the
    base, so its ratio is WASM over WebGPU), NaN when either side has fewer than
    ``MIN_SAMPLES`` samples (a run before the step kept them: its median only). ``wasm_median``
    is NaN when no WASM artifact timed that shape on that host. Columns: ``SPEEDUP_COLUMNS``.
    """
    timed = summary_value(rows, metric="median_ns")
    timed = timed[timed["subject"].str.startswith(SUBJECT)]
    is_gpu = timed["detail"].astype(str).str.contains(MARK, regex=False)
    gpu = timed[is_gpu]
    gpu_artifacts = set(gpu["artifact"])
    out: list[dict[str, object]] = []
    for _, r in gpu.iterrows():
        host, artifact, preset, subject = (
            str(r[k]) for k in ("host", "artifact", "preset", "subject")
        )
        detail = str(r["detail"])
        shape = _shape(detail)
        point: dict[str, object] = {
            "host": host, "artifact": artifact, "subject": subject,
            "adapter": subject.partition(ADAPTER_SUFFIX)[2] or _adapter(detail),
            "emulated": CPU_EMULATED in detail, "preset": preset,
            "x_value": float(r["x_value"]), "shape": shape, "gpu_median": float(r["value"]),
            "gpu_noisy": r["status"] == "noisy", "wasm_artifact": "", "wasm_median": math.nan,
            "wasm_n": 0, "wasm_noisy": False, "speedup": math.nan, "ci_low": math.nan,
            "ci_high": math.nan, "method": APART,
        }  # fmt: skip
        beside = _beside(rows, host, artifact, preset, subject)
        if beside is not None:  # the same seconds on both sides: preferred to two cells'
            point.update(beside)
            out.append(point)
            continue
        gpu_samples = _samples(rows, host, artifact, preset, subject)
        point["gpu_n"] = len(gpu_samples)
        wasm = summary_value(rows, host=host, preset=preset, subject=SUBJECT, metric="median_ns")
        wasm = wasm[~wasm["artifact"].isin(gpu_artifacts)]
        wasm = wasm[[_shape(d) == shape for d in wasm["detail"]]]
        if not wasm.empty:
            best = wasm.sort_values("value").iloc[0]
            wasm_samples = _samples(rows, host, str(best["artifact"]), preset, SUBJECT)
            point.update(
                wasm_artifact=str(best["artifact"]), wasm_median=float(best["value"]),
                wasm_n=len(wasm_samples), wasm_noisy=best["status"] == "noisy",
                speedup=float(best["value"]) / float(r["value"]),
            )  # fmt: skip
            # base = WebGPU, cand = WASM: compare_samples' ratio cand/base is the speedup; with
            # fewer than MIN_SAMPLES a side its CI is NaN, which stays NaN here: no CI is made up
            c = compare_samples(gpu_samples, wasm_samples)
            point.update(ci_low=c.ci_low, ci_high=c.ci_high)
        out.append(point)
    frame = pd.DataFrame(out, columns=list(SPEEDUP_COLUMNS))
    if frame.empty:
        return frame
    frame["order"] = [_order(str(p)) for p in frame["preset"]]
    frame = frame.sort_values(["emulated", "host", "artifact", "adapter", "order"])
    return frame.drop(columns="order").reset_index(drop=True)


def series_label(host: str, artifact: str, adapter: str, emulated: bool) -> str:
    """A WebGPU series' name: host, artifact and adapter, and CPU-emulated where it is."""
    return f"{host} · {artifact} · {adapter}" + (f" ({CPU_EMULATED})" if emulated else "")


def _ci_text(p: pd.Series) -> str:
    if math.isfinite(float(p["ci_low"])):
        return f"[{float(p['ci_low']):.3g}, {float(p['ci_high']):.3g}]"
    if not math.isfinite(float(p["wasm_median"])):
        return "unknown: no WASM figure"
    return (
        f"unknown: {int(p['gpu_n'])} WebGPU and {int(p['wasm_n'])} WASM samples "
        f"(at least {MIN_SAMPLES} a side)"
    )


def webgpu_speedup_table(rows: pd.DataFrame) -> Table | None:
    """WebGPU train step over the best WASM artifact's, per (host, adapter) and preset, with
    the speedup's bootstrap 95 % CI (:func:`webgpu_speedups`)."""
    pts = webgpu_speedups(rows)
    if pts.empty:
        return None
    body = []
    for _, p in pts.iterrows():
        label = series_label(
            str(p["host"]), str(p["artifact"]), str(p["adapter"]), bool(p["emulated"])
        )
        gpu = f"{fmt_ns(float(p['gpu_median']))} (n={int(p['gpu_n'])})"
        method = str(p["method"])
        if not math.isfinite(float(p["wasm_median"])):
            body.append((label, str(p["preset"]), "—", _ci_text(p), f"none at {p['shape']}",
                         gpu, method))  # fmt: skip
            continue
        wasm = f"{fmt_ns(float(p['wasm_median']))} {p['wasm_artifact']} (n={int(p['wasm_n'])})"
        body.append(
            (label, str(p["preset"]), f"{float(p['speedup']):.3g}×", _ci_text(p), wasm, gpu,
             method)
        )  # fmt: skip
    return Table(
        "WebGPU train step over the best WASM artifact (same host)",
        (
            "host · artifact · adapter",
            "preset",
            "speedup",
            "95 % CI",
            "WASM median",
            "WebGPU median",
            "timed",
        ),
        tuple(body),
        f"{BESIDE}: the WASM artifact named in [check.bench] versus, loaded in the same host "
        "beside the step, timed in alternating blocks; speedup = the median of the per-pair "
        "ratios (WASM block median / WebGPU block median), 95 % CI a bootstrap over pairs, "
        "n = pairs. "
        f"{APART} (no versus): the fastest WASM artifact's train_step median (bench, 1 "
        "thread) / the composed WebGPU step's (the bench's train_step of the webgpu "
        "artifact), same host, preset and B, T; 95 % CI: bootstrap of that ratio of medians "
        "from both figures' samples (unknown with fewer than 3 a side). The "
        "WebGPU clock is timestamp-query where the adapter offers it, else submit to "
        f"onSubmittedWorkDone (each row's detail). {CPU_EMULATED}: SwiftShader, a CPU running "
        "the shaders; never compare it with a GPU's row.",
    )


def adapter_equality_table(rows: pd.DataFrame) -> Table | None:
    """The model check's cross-adapter equality rows: per cell, each pair of adapter
    requests bitwise equal or their max ULP difference, and how many adapters there were."""
    x = rows[(rows["check"] == "model") & rows["subject"].str.startswith(XADAPTER)]
    if x.empty:
        return None
    body = []
    for _, r in x.iterrows():
        what = str(r["subject"]).removeprefix(XADAPTER)
        ulp = "" if pd.isna(r["value"]) or r["metric"] != "max_ulp" else f"{float(r['value']):.0f}"
        cell = f"{r['host']}/{r['artifact']}/{r['preset']}"
        body.append((cell, what, str(r["status"]), ulp, str(r["detail"])))
    return Table(
        "WebGPU cross-adapter equality (the composed train step)",
        ("cell", "request / pair", "status", "max ULP", "detail"),
        tuple(body),
        "The same step (weights, batches, rates) on the device of every adapter request the "
        "page can satisfy (default, low-power, high-performance, forceFallbackAdapter); pairs "
        "compared over logits, gradients, trajectory and state. One adapter: the table says so.",
    )
