"""The sign-off sheet: every claim's outcome plus the run's full provenance (Markdown + HTML)."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Sequence
from pathlib import Path

from harness.gate.claim_checks import PASSING, Finding
from harness.rundir.meta import RUN_FILE, RunMeta, flat_meta

_ICON = {"pass": "✅", "fail": "❌", "stale": "❌", "refused": "⛔", "uncovered": "❓",
         "not comparable": "⚠️", "rechecked": "🔁", "not scanned": "⏭️"}  # fmt: skip
SIGNED_OFF = "SIGNED OFF"  # the sheet's title says "NOT SIGNED OFF" otherwise (read by the report)
# The provenance rows that say whose sheet it is, read back by the report: "measured" (start ..
# end) is the run's identity through a copy or a move, "run" names its directory for the reader.
SHEET_MD, SHEET_HTML = "signoff.md", "signoff.html"  # the files --out DIR holds
RUN_ROW = "run"
MEASURED_ROW = "measured"
_PROVENANCE_LINE = re.compile(r"^\| (?P<label>[^|]+?) \| `(?P<value>.*)` \|$")


def provenance(meta: RunMeta) -> list[tuple[str, str]]:
    """(label, value) pairs: commit, machine, hosts, artifacts, defaults, corpus, matrix."""
    m = meta.machine
    machine = (
        f"{meta.fingerprint_id} ({m.get('cpu_model', '?')}, {m.get('cpu_count', '?')} cpus, "
        f"{m.get('memory_gib', '?')} GiB, {m.get('os', '?')} {m.get('arch', '')})"
    )
    pairs = [
        (RUN_ROW, str(meta.path.parent)),
        ("commit", meta.commit + (" (dirty)" if meta.dirty else "")),
        *([("project", meta.project.describe())] if meta.project is not None else []),
        ("machine", machine),
        (MEASURED_ROW, measured_span(meta.start, meta.end)),
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


def measured_span(start: str, end: str) -> str:
    """When a run was measured, as the sheet writes it (``start .. end``)."""
    return f"{start} .. {end}"


def sheet_provenance(text: str) -> dict[str, str]:
    """A Markdown sheet's provenance rows read back (label -> value); {} for another text."""
    found = (_PROVENANCE_LINE.match(line) for line in text.splitlines())
    return {m["label"]: m["value"] for m in found if m}


def other_run(sheet: Path, run_dir: Path) -> str:
    """Why ``sheet`` (a ``signoff.md``) signs off another run than ``run_dir``, or "" when it
    is that run's, or either does not say (no run.json to read, a sheet without provenance).

    A run is known by when it was measured, not by its path: the main job signs off
    ``reports/latest/run`` by a path relative to its cwd, and a copied run is the same run.
    """
    try:
        data = json.loads((run_dir / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""  # the report names an unreadable run.json itself
    if not isinstance(data, dict):
        return ""
    flat = flat_meta(data)
    want = measured_span(flat["start"], flat["end"])
    rows = sheet_provenance(sheet.read_text(encoding="utf-8", errors="replace"))
    got = rows.get(MEASURED_ROW)
    if got is None or got == want:
        return ""
    return (
        f"the sheet signs off run {rows.get(RUN_ROW, '?')} (measured {got}), not {run_dir} "
        f"(measured {want})"
    )


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
