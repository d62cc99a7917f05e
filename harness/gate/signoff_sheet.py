"""The sign-off sheet: every claim's outcome plus the run's full provenance (Markdown + HTML)."""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

from harness.gate.claim_checks import PASSING, Finding
from harness.rundir.meta import RunMeta

_ICON = {"pass": "✅", "fail": "❌", "stale": "❌", "refused": "⛔", "uncovered": "❓",
         "not comparable": "⚠️", "rechecked": "🔁", "not scanned": "⏭️"}  # fmt: skip
SIGNED_OFF = "SIGNED OFF"  # the sheet's title says "NOT SIGNED OFF" otherwise (read by the report)


def provenance(meta: RunMeta) -> list[tuple[str, str]]:
    """(label, value) pairs: commit, machine, hosts, artifacts, defaults, corpus, matrix."""
    m = meta.machine
    machine = (
        f"{meta.fingerprint_id} ({m.get('cpu_model', '?')}, {m.get('cpu_count', '?')} cpus, "
        f"{m.get('memory_gib', '?')} GiB, {m.get('os', '?')} {m.get('arch', '')})"
    )
    pairs = [
        ("run", str(meta.path.parent)),
        ("commit", meta.commit + (" (dirty)" if meta.dirty else "")),
        ("machine", machine),
        ("measured", f"{meta.start} .. {meta.end}"),
    ]
    pairs += [(f"host {name}", version) for name, version in sorted(meta.host_versions.items())]
    pairs += [(f"artifact {name}", sha) for name, sha in sorted(meta.artifacts.items())]
    pairs += [
        ("defaults sha256", meta.defaults_sha256 or "not recorded"),
        ("corpus sha256", meta.corpus_sha256 or "not recorded"),
        ("matrix", f"{meta.matrix.get('path', '?')} (name {meta.matrix_name}, "
                   f"sha256 {meta.matrix.get('sha256', '?')})"),
    ]  # fmt: skip
    return pairs


def passed(findings: Sequence[Finding]) -> bool:
    """True when every finding passed, was not comparable, or is a file not scanned (listed,
    never a failure)."""
    return all(f.status in PASSING for f in findings)


def verdict_line(findings: Sequence[Finding]) -> str:
    """One line: signed off or not, with the failing, not-comparable, rechecked and not-scanned
    counts."""
    bad = sum(f.status not in PASSING for f in findings)
    elsewhere = sum(f.status == "not comparable" for f in findings)
    again = sum(f.status == "rechecked" for f in findings)
    unread = sum(f.status == "not scanned" for f in findings)
    notes = (
        [f"{elsewhere} findings not comparable: other machine or host version"] * bool(elsewhere)
        + [f"{again} rechecked: out of band in the run, in band when measured again"] * bool(again)
        + [f"{unread} scanned files not text, not read"] * bool(unread)
    )
    note = f" ({'; '.join(notes)})" if notes else ""
    if bad:
        return f"NOT {SIGNED_OFF.lower()}: {bad} failing findings{note}"
    return f"{SIGNED_OFF.lower()}{note}"


def markdown(findings: Sequence[Finding], meta: RunMeta, claims_path: Path) -> str:
    """The sheet as Markdown."""
    verdict = f"✅ {SIGNED_OFF}" if passed(findings) else f"❌ NOT {SIGNED_OFF}"
    lines = [f"# Release sign-off: {verdict}", "", verdict_line(findings), "",
             f"Claims: `{claims_path}`", "", "## Claims", ""]  # fmt: skip
    lines += ["| | claim | outcome |", "|---|---|---|"]
    for f in findings:
        msg = f.message.replace("|", "\\|")
        lines.append(f"| {_ICON[f.status]} {f.status} | {f.claim or '-'} | {msg} |")
    lines += ["", "## Provenance", "", "| | |", "|---|---|"]
    lines += [f"| {k} | `{v}` |" for k, v in provenance(meta)]
    return "\n".join(lines) + "\n"


def html_page(findings: Sequence[Finding], meta: RunMeta, claims_path: Path) -> str:
    """The sheet as a standalone HTML page."""
    verdict = SIGNED_OFF if passed(findings) else f"NOT {SIGNED_OFF}"
    rows = "".join(
        f"<tr class='{f.status.replace(' ', '-')}'><td>{_ICON[f.status]} {f.status}</td>"
        f"<td>{html.escape(f.claim or '-')}</td><td>{html.escape(f.message)}</td></tr>"
        for f in findings
    )
    prov = "".join(
        f"<tr><th>{html.escape(k)}</th><td><code>{html.escape(v)}</code></td></tr>"
        for k, v in provenance(meta)
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Release sign-off</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}"
        ".pass{background:#eefbea}.not-comparable{background:#fff6d6}.fail,.stale,.refused,.uncovered{background:#fdecec}</style>"
        f"</head><body><h1>Release sign-off: {verdict}</h1>"
        f"<p>{html.escape(verdict_line(findings))}</p>"
        f"<p>Claims: <code>{html.escape(str(claims_path))}</code></p>"
        f"<h2>Claims</h2><table><tr><th>outcome</th><th>claim</th><th>detail</th></tr>{rows}"
        f"</table><h2>Provenance</h2><table>{prov}</table></body></html>\n"
    )
