"""The cross-host table: for one artifact, are a check's outputs bitwise equal on every host?

The ``model`` check hashes each output kind it computes (``hash:logits``, ``hash:grads``,
``hash:adamw``, ``hash:trajectory``, ``hash:generate_kv``, ``hash:generate_nokv``; the sha256 is
in the row's detail as ``sha256=<hex>``) and records a fingerprint of each: a few sampled output
values (rows with ``metric="fingerprint"``, ``iteration`` = sample index). Rows of the same
artifact sha256 and preset are compared across hosts: equal hashes mean bitwise-equal outputs;
otherwise the table gives the max absolute difference between hosts over the fingerprint values
(a lower bound on the max elementwise difference, exact for the loss and trajectory, whose
fingerprints are the values themselves).
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from harness.rundir.rows import Row

_SHA = re.compile(r"sha256=([0-9a-f]{64})")


@dataclass(frozen=True)
class CrossHostEntry:
    """One output of one artifact build across the hosts that ran it."""

    artifact: str
    artifact_sha256: str
    preset: str
    output: str  # e.g. "logits", "trajectory"
    hosts: tuple[str, ...]
    bitwise_equal: bool
    distinct_hashes: int
    max_diff: float  # 0.0 when bitwise equal; nan when no fingerprint was recorded
    detail: str


def crosshost_table(rows: Iterable[Row], check: str = "model") -> list[CrossHostEntry]:
    """Build the cross-host table from a run's rows (any order, any mix of checks)."""
    hashes: dict[tuple[str, str, str, str], dict[str, str]] = defaultdict(dict)
    prints: dict[tuple[str, str, str, str], dict[str, dict[int, float]]] = defaultdict(
        lambda: defaultdict(dict)
    )
    names: dict[str, str] = {}
    for r in rows:
        if r.check != check or not r.subject.startswith("hash:"):
            continue
        key = (r.artifact_sha256, r.preset, r.subject.removeprefix("hash:"), r.artifact)
        names[r.artifact_sha256] = r.artifact
        if r.metric == "fingerprint":
            prints[key][r.host][r.iteration] = r.value
            continue
        m = _SHA.search(r.detail)
        if m:
            hashes[key][r.host] = m.group(1)
    table = []
    for key in sorted(hashes):
        sha, preset, output, artifact = key
        by_host = hashes[key]
        hosts = tuple(sorted(by_host))
        distinct = len(set(by_host.values()))
        if distinct <= 1:
            diff, detail = 0.0, f"bitwise equal on {len(hosts)} host(s)"
        else:
            diff = _max_diff(prints.get(key, {}), hosts)
            groups = _groups(by_host)
            detail = f"{distinct} distinct results: " + "; ".join(groups)
        table.append(
            CrossHostEntry(
                artifact, sha, preset, output, hosts, distinct <= 1, distinct, diff, detail
            )
        )
    return table


def _groups(by_host: dict[str, str]) -> list[str]:
    inverse: dict[str, list[str]] = defaultdict(list)
    for host, digest in sorted(by_host.items()):
        inverse[digest].append(host)
    return [f"{'+'.join(h)} sha256 {d[:12]}" for d, h in inverse.items()]


def _max_diff(prints: dict[str, dict[int, float]], hosts: Sequence[str]) -> float:
    diff = math.nan
    for i, a in enumerate(hosts):
        for b in hosts[i + 1 :]:
            pa, pb = prints.get(a, {}), prints.get(b, {})
            for k in set(pa) & set(pb):
                d = abs(pa[k] - pb[k])
                diff = d if math.isnan(diff) else max(diff, d)
    return diff


def to_markdown(table: Sequence[CrossHostEntry]) -> str:
    """Render the table as Markdown (summary.md / the report)."""
    lines = [
        "| artifact | preset | output | hosts | bitwise equal | max diff | detail |",
        "|---|---|---|---|---|---|---|",
    ]
    for e in table:
        diff = "" if e.bitwise_equal else f"{e.max_diff:.3g}"
        lines.append(
            f"| {e.artifact} ({e.artifact_sha256[:12]}) | {e.preset} | {e.output} | "
            f"{', '.join(e.hosts)} | {'yes' if e.bitwise_equal else 'NO'} | {diff} | {e.detail} |"
        )
    return "\n".join(lines) + "\n"
