"""The overhead decomposition of a harness-driven train step, per host, preset and thread count
(issue 13).

One train step driven from the harness costs one request across the bridge plus the step inside
the host. From the bench check's medians this splits it into:

- ``bridge``: the Python↔host round trip (``bridge:noop``), less the postMessage hop below;
- ``postMessage``: in Chromium every request crosses from the page to its worker and back
  (``host:postmessage``); the Node and Python hosts run the module on the thread that reads
  the pipe, so they pay none;
- ``JS→wasm call``: the in-host call of a no-op (``host:noop_call``);
- ``wake+join``: the pool's wake + join per parallel region times the regions the step really
  ran at its thread count (the train step's ``regions`` row, counted by the library's
  ``tg_parallel_regions``). The per-region cost is the artifact's own pool timed by the library
  at that count with its workers spinning (``pool:wake_join:threads=<n>``, ``tg_pool_probe_ns``:
  a step's regions run back to back), else, in a JS host, one Atomics round trip with a sleeping
  helper (``host:wake_join``); ``wake_join_from`` says which. A step with no region pays none,
  whatever the host; a step with regions and neither figure (a run from before ABI 5 on native)
  has an unknown cost, NaN here, left inside ``kernel`` in the shares and said so;
- ``kernel``: the step's median (``train_step``, or ``train_step:threads=<n>``) less the call
  and the wake + join.

The host costs are measured once per host and artifact (the bench's ``ops_once``), the step and
its regions per preset and thread count. The load (``host:load``) is paid once per session and
is reported beside the shares, not in them. A run from before the region count (no ``regions``
row) leaves ``regions`` NaN and the wake + join out of the shares: unknown, not assumed.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from harness.checks.bench import THREADS_SUFFIX
from harness.checks.bench_hostcost import POOL_PROBES
from harness.report_data import summary_value
from harness.rundir.rows import REFERENCE_HOST

COMPONENTS: tuple[str, ...] = ("bridge", "postMessage", "JS→wasm call", "wake+join", "kernel")
# hosts whose every request crosses a worker boundary by postMessage (the page -> its worker)
POSTMESSAGE_HOSTS = frozenset({"chromium"})
PAIR = ["host", "artifact"]
STEP = ["host", "artifact", "preset", "x_value", "threads"]
# the train step's subject at any thread count (harness/checks/bench.py thread_subject)
_STEP_SUBJECT = rf"train_step(?:{re.escape(THREADS_SUFFIX)}(\d+))?"
POOL_SOURCE = "the pool, timed in the library"
ATOMICS_SOURCE = "one Atomics round trip"


def _per_pair(rows: pd.DataFrame, subject: str, metric: str) -> pd.DataFrame:
    """``host, artifact, value`` of one host-cost figure (the first one of each pair)."""
    got = summary_value(rows, subject=subject, metric=metric)
    return got[[*PAIR, "value"]].drop_duplicates(subset=PAIR, keep="first")


def _by_threads(rows: pd.DataFrame, pattern: str, metric: str) -> pd.DataFrame:
    """The bench summaries of ``metric`` whose subject matches ``pattern``, with ``threads``:
    the pattern's group (the ``:threads=<n>`` count), 1 where the subject has none."""
    got = summary_value(rows, metric=metric)
    got = got[got["subject"].astype(str).str.fullmatch(pattern)]
    n = got["subject"].astype(str).str.extract(pattern, expand=False)
    return got.assign(threads=n.fillna("1").astype(int))


def _steps(rows: pd.DataFrame, metric: str, column: str) -> pd.DataFrame:
    """``metric`` of every train-step point, with its thread count (``threads``)."""
    got = _by_threads(rows, _STEP_SUBJECT, metric)
    keep = [*STEP, "value"] + (["status"] if metric == "median_ns" else [])
    out = got[keep].drop_duplicates(subset=STEP, keep="first")
    return out.rename(columns={"value": column})


def _pool_costs(rows: pd.DataFrame, subject: str, column: str) -> pd.DataFrame:
    """``host, artifact, threads, <column>``: one of the library pool's per-region costs
    (``<subject>:threads=<n>``) at each thread count it was probed at."""
    pattern = rf"{re.escape(subject)}{re.escape(THREADS_SUFFIX)}(\d+)"
    got = _by_threads(rows, pattern, "median_ns")[[*PAIR, "threads", "value"]]
    got = got.drop_duplicates(subset=[*PAIR, "threads"], keep="first")
    return got.rename(columns={"value": column})


def decomposition(rows: pd.DataFrame) -> pd.DataFrame:
    """Per host, artifact, preset (``x_value`` = parameters) and ``threads``: each component's
    ns, its ``share:<component>`` of the whole, ``dominant`` (the largest component),
    ``regions`` (per step), the pair's ``load_ns``, and ``wake_join_ns`` per region with
    ``wake_join_from`` (NaN and "" where not measured), and ``pool_asleep_ns``, the pool's
    region with its workers asleep (not in the shares: a step's regions run back to back).
    Empty without train steps or the bridge and call figures."""
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
    (spinning, _, _), (asleep, _, _) = POOL_PROBES
    for subject, column in ((spinning, "pool_ns"), (asleep, "pool_asleep_ns")):
        out = out.merge(_pool_costs(rows, subject, column), on=[*PAIR, "threads"], how="left")
    out = out.dropna(subset=["step", "bridge_total", "call"])
    if out.empty:
        return out
    pool = out["pool_ns"].notna()
    measured = [pool, out["wake_join_ns"].notna()]
    out["wake_join_from"] = np.select(measured, [POOL_SOURCE, ATOMICS_SOURCE], default="")
    out["wake_join_ns"] = out["pool_ns"].where(pool, out["wake_join_ns"])
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
    source = str(regions["wake_join_from"].iloc[0])
    asleep = float(regions["pool_asleep_ns"].iloc[0])
    if not pd.isna(asleep):  # what the same region costs the first kernel after a pause
        source += f"; {host_cost(asleep)} with the workers asleep"
    return f"regions/step {counts}, × {host_cost(per)} wake+join ({source})"


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
