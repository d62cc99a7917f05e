"""The overhead decomposition of a harness-driven train step, per host and preset (issue 13).

One train step driven from the harness costs one request across the bridge plus the step inside
the host. From the bench check's medians this splits it into:

- ``bridge``: the Python↔host round trip (``bridge:noop``), less the postMessage hop below;
- ``postMessage``: in Chromium every request crosses from the page to its worker and back
  (``host:postmessage``); the Node and Python hosts run the module on the thread that reads
  the pipe, so they pay none;
- ``JS→wasm call``: the in-host call of a no-op (``host:noop_call``);
- ``kernel``: the step's median (``train_step``) less that call.

The host costs are measured once per host and artifact (the bench's ``ops_once``), the step per
preset. Two costs are not per step and are reported beside the shares, not in them: the load
(``host:load``, once per session) and a pool wake + join (``host:wake_join``, once per parallel
region of a threaded step; a one-thread step, which the shares describe, pays none).
"""

from __future__ import annotations

import pandas as pd

from harness.report_data import curve, summary_value

COMPONENTS: tuple[str, ...] = ("bridge", "postMessage", "JS→wasm call", "kernel")
# hosts whose every request crosses a worker boundary by postMessage (the page -> its worker)
POSTMESSAGE_HOSTS = frozenset({"chromium"})
PAIR = ["host", "artifact"]


def _per_pair(rows: pd.DataFrame, subject: str, metric: str) -> pd.DataFrame:
    """``host, artifact, value`` of one host-cost figure (the first one of each pair)."""
    got = summary_value(rows, subject=subject, metric=metric)
    return got[[*PAIR, "value"]].drop_duplicates(subset=PAIR, keep="first")


def decomposition(rows: pd.DataFrame) -> pd.DataFrame:
    """Per host, artifact and preset (``x_value`` = parameters): each component's ns, its
    ``share:<component>`` of the whole, ``dominant`` (the largest component), and the pair's
    ``load_ns`` and ``wake_join_ns`` (NaN where not measured). Empty without train steps or
    the bridge and call figures."""
    step = curve(rows, "train_step", "median_ns")
    step = step[[*PAIR, "preset", "x_value", "value", "status"]].rename(columns={"value": "step"})
    costs = {
        "bridge_total": ("bridge:noop", "median_ns"),
        "call": ("host:noop_call", "median_ns"),
        "pm": ("host:postmessage", "median_ns"),
        "wake_join_ns": ("host:wake_join", "median_ns"),
        "load_ns": ("host:load", "load_ns"),
    }
    out = step
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
    out["kernel"] = (out["step"] - out["call"]).clip(lower=0.0)
    total = out[list(COMPONENTS)].sum(axis=1)
    for c in COMPONENTS:
        out[f"share:{c}"] = out[c] / total
    out["dominant"] = out[list(COMPONENTS)].idxmax(axis=1)
    return out.sort_values([*PAIR, "x_value"]).reset_index(drop=True)


def kernel_majority_preset(pts: pd.DataFrame) -> str:
    """The smallest preset of one pair's points at which the kernel is at least half the step
    driven from the harness, or "" if none is."""
    over = pts[pts["share:kernel"] >= 0.5].sort_values("x_value")
    return "" if over.empty else str(over["preset"].iloc[0])
