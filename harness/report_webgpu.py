"""The report's WebGPU views: the WebGPU-over-WASM train-step speedup curve and the
cross-adapter equality table (issue 16; docs/webgpu.md).

The curve: per host, adapter and preset, the best WASM artifact's ``train_step`` median (bench
check, one thread, the same host) over the composed WebGPU step's (the bench's ``train_step``
of a webgpu artifact, :mod:`harness.checks.webgpu_curve`), for the same workload (``B=.. T=..``
in both details). A figure measured on a
CPU-emulated adapter (SwiftShader) says so in its cell and its row, and no row mixes adapters:
each adapter is its own row, never compared with another's.
"""

from __future__ import annotations

import re

import pandas as pd

from harness.checks.webgpu_curve import ADAPTER_SUFFIX, CPU_EMULATED, MARK, SUBJECT
from harness.checks.webgpu_step import XADAPTER
from harness.report_data import summary_value
from harness.report_tables import Table, fmt_ns
from reference.presets import PRESETS

_SHAPE = re.compile(r"B=(\d+) T=(\d+)")


def _shape(detail: object) -> str:
    m = _SHAPE.search(str(detail))
    return m.group(0) if m else ""


_ADAPTER = re.compile(r"CPU-emulated \(([^)]*)\)|adapter request (\S+)")


def _adapter(detail: object) -> str:
    """The adapter a figure names (``vendor/architecture`` when CPU-emulated, else its
    request)."""
    m = _ADAPTER.search(str(detail))
    return (m.group(1) or m.group(2)) if m else "?"


def _order(preset: str) -> int:
    names = list(PRESETS)
    return names.index(preset) if preset in names else len(names)


def webgpu_speedup_table(rows: pd.DataFrame) -> Table | None:
    """WebGPU train step over the best WASM artifact's, per (host, adapter) and preset."""
    timed = summary_value(rows, metric="median_ns")
    timed = timed[timed["subject"].str.startswith(SUBJECT)]
    is_gpu = timed["detail"].astype(str).str.contains(MARK, regex=False)
    gpu = timed[is_gpu]
    if gpu.empty:
        return None
    presets = sorted(gpu["preset"].unique(), key=_order)
    gpu_artifacts = set(gpu["artifact"])
    body = []
    for (host, artifact, subject), g in gpu.groupby(["host", "artifact", "subject"], sort=True):
        adapters = {_adapter(d) for d in g["detail"]}
        adapter = str(subject).partition(ADAPTER_SUFFIX)[2] or ", ".join(sorted(adapters))
        emulated = any(CPU_EMULATED in str(d) for d in g["detail"])
        label = f"{host} · {artifact} · {adapter}" + (f" ({CPU_EMULATED})" if emulated else "")
        row = [label]
        for p in presets:
            hit = g[g["preset"] == p]
            if hit.empty:
                row.append("—")
                continue
            r = hit.iloc[0]
            gpu_ns, shape = float(r["value"]), _shape(r["detail"])
            wasm = summary_value(rows, host=str(host), preset=str(p), subject=SUBJECT,
                                 metric="median_ns")  # fmt: skip
            wasm = wasm[~wasm["artifact"].isin(gpu_artifacts)]
            wasm = wasm[[_shape(d) == shape for d in wasm["detail"]]]
            if wasm.empty:
                row.append(f"{fmt_ns(gpu_ns)}; no WASM train_step at {shape}")
                continue
            best = wasm.sort_values("value").iloc[0]
            speedup = float(best["value"]) / gpu_ns
            row.append(
                f"{speedup:.3g}× ({fmt_ns(float(best['value']))} {best['artifact']} / "
                f"{fmt_ns(gpu_ns)})"
            )
        body.append(tuple(row))
    return Table(
        "WebGPU train step over the best WASM artifact (same host)",
        ("host · artifact · adapter", *presets),
        tuple(body),
        "speedup = the fastest WASM artifact's train_step median (bench, 1 thread) / the "
        "composed WebGPU step's (the bench's train_step of the webgpu artifact), same host, "
        "preset and B, T. The "
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
