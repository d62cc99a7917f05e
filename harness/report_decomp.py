"""The overhead decomposition of a harness-driven train step, per host, preset and thread count
(issue 13).

One train step driven from the harness costs one request across the bridge plus the step inside
the host. From the bench check's medians this splits it into:

- ``bridge``: the Python↔host round trip (``bridge:noop``), less the postMessage hop below;
- ``postMessage``: in Chromium every request crosses from the page to its worker and back
  (``host:postmessage``); the Node and Python hosts run the module on the thread that reads
  the pipe, so they pay none;
- ``JS→wasm call``: the in-host call of a no-op (``host:noop_call``);
- ``wake+join``: the pool's wake + join per parallel region (``host:wake_join``) times the
  regions the step really ran at its thread count (the train step's ``regions`` row, counted by
  the library's ``tg_parallel_regions``). A step with no region pays none, whatever the host;
  a step with regions on a host whose wake + join is not measured (native, wasmtime: no JS
  workers) has an unknown cost, NaN here, left inside ``kernel`` in the shares and said so;
- ``kernel``: the step's median (``train_step``, or ``train_step:threads=<n>``) less the call
  and the wake + join.

The host costs are measured once per host and artifact (the bench's ``ops_once``), the step and
its regions per preset and thread count. The load (``host:load``) is paid once per session and
is reported beside the shares, not in them. A run from before the region count (no ``regions``
row) leaves ``regions`` NaN and the wake + join out of the shares: unknown, not assumed.
"""

from __future__ import annotations

import re

import pandas as pd

from harness.checks.bench import THREADS_SUFFIX
from harness.report_data import summary_value
from harness.rundir.rows import REFERENCE_HOST

COMPONENTS: tuple[str, ...] = ("bridge", "postMessage", "JS→wasm call", "wake+join", "kernel")
# hosts whose every request crosses a worker boundary by postMessage (the page -> its worker)
POSTMESSAGE_HOSTS = frozenset({"chromium"})
PAIR = ["host", "artifact"]
STEP = ["host", "artifact", "preset", "x_value", "threads"]
# the train step's subject at any thread count (harness/checks/bench.py _thread_subject)
_STEP_SUBJECT = rf"train_step(?:{re.escape(THREADS_SUFFIX)}(\d+))?"


def _per_pair(rows: pd.DataFrame, subject: str, metric: str) -> pd.DataFrame:
    """``host, artifact, value`` of one host-cost figure (the first one of each pair)."""
    got = summary_value(rows, subject=subject, metric=metric)
    return got[[*PAIR, "value"]].drop_duplicates(subset=PAIR, keep="first")


def _steps(rows: pd.DataFrame, metric: str, column: str) -> pd.DataFrame:
    """``metric`` of every train-step point, with its thread count (``threads``)."""
    got = rows[(rows["check"] == "bench") & (rows["iteration"] == -1) & (rows["metric"] == metric)]
    got = got[got["subject"].astype(str).str.fullmatch(_STEP_SUBJECT)]
    n = got["subject"].astype(str).str.extract(_STEP_SUBJECT, expand=False)
    got = got.assign(threads=n.fillna("1").astype(int))
    keep = [*STEP, "value"] + (["status"] if metric == "median_ns" else [])
    out = got[keep].drop_duplicates(subset=STEP, keep="first")
    return out.rename(columns={"value": column})


def decomposition(rows: pd.DataFrame) -> pd.DataFrame:
    """Per host, artifact, preset (``x_value`` = parameters) and ``threads``: each component's
    ns, its ``share:<component>`` of the whole, ``dominant`` (the largest component),
    ``regions`` (per step), and the pair's ``load_ns`` and ``wake_join_ns`` (NaN where not
    measured). Empty without train steps or the bridge and call figures."""
    out = _steps(rows, "median_ns", "step")
    out = out[out["host"] != REFERENCE_HOST]  # numpy's step has no host costs
    out = out.merge(_steps(rows, "regions", "regions"), on=STEP, how="left")
    costs = {
        "bridge_total": ("bridge:noop", "median_ns"),
        "call": ("host:noop_call", "median_ns"),
        "pm": ("host:postmessage", "median_ns"),
        "wake_join_ns": ("host:wake_join", "median_ns"),
        "load_ns": ("host:load", "load_ns"),
    }
    for column, (subject, metric) in costs.items():
        part = _per_pair(rows, subject, metric).rename(columns={"value": column})
        out = out.merge(part, on=PAIR, how="left")
    out = out.dropna(subset=["step", "bridge_total", "call"])
    if out.empty:
        return out
    pm = out["pm"].where(out["host"].isin(POSTMESSAGE_HOSTS), 0.0).fillna(0.0)
    out["postMessage"] = pm
    out["bridge"] = (out["bridge_total"] - pm).clip(lower=0.0)
    out["JS→wasm call"] = out["call"]
    # zero regions cost nothing even where the per-region cost is unmeasured; NaN stays unknown
    wake = (out["regions"] * out["wake_join_ns"]).where(out["regions"] != 0, 0.0)
    out["wake+join"] = wake
    out["kernel"] = (out["step"] - out["call"] - wake.fillna(0.0)).clip(lower=0.0)
    parts = out[list(COMPONENTS)].fillna(0.0)  # an unknown wake + join stays in the kernel
    total = parts.sum(axis=1)
    for c in COMPONENTS:
        out[f"share:{c}"] = parts[c] / total
    out["dominant"] = parts.idxmax(axis=1)
    return out.sort_values([*PAIR, "threads", "x_value"]).reset_index(drop=True)


def wake_join_note(pts: pd.DataFrame) -> str:
    """What one panel's points (one host, artifact and thread count) say of the pool's wake +
    join: the regions per step at each preset, and their cost or why it is unknown."""
    regions = pts.sort_values("x_value")
    if regions["regions"].isna().all():
        return "regions/step not counted (a run from before tg_parallel_regions)"
    if (regions["regions"].fillna(0) == 0).all():
        return "0 regions/step: no wake+join"
    counts = ", ".join(
        f"{p} {'?' if pd.isna(r) else int(r)}"
        for p, r in zip(regions["preset"], regions["regions"], strict=True)
    )
    per = float(regions["wake_join_ns"].iloc[0])
    if pd.isna(per):
        return f"regions/step {counts}; wake+join not measured (in kernel)"
    return f"regions/step {counts}, × {host_cost(per)} wake+join"


def host_cost(ns: float) -> str:
    """A host cost in µs, or in ms from a millisecond up (a load)."""
    if pd.isna(ns):
        return "not measured"
    return f"{ns / 1e6:,.1f} ms" if ns >= 1e6 else f"{ns / 1e3:,.1f} µs"


def kernel_majority_preset(pts: pd.DataFrame) -> str:
    """The smallest preset of one pair's points at which the kernel is at least half the step
    driven from the harness, or "" if none is."""
    over = pts[pts["share:kernel"] >= 0.5].sort_values("x_value")
    return "" if over.empty else str(over["preset"].iloc[0])
