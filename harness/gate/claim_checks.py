"""Check claims against a run and against the text that publishes them."""

from __future__ import annotations

import dataclasses
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from harness.gate.claims import Claim, ClaimsFile, Published, Quantity, read_utf8
from harness.gate.errors import GateInputError
from harness.gate.measurements import timing_samples, x_label
from harness.rundir.reader import Run
from harness.rundir.rows import Row
from harness.rundir.verdict import completeness, finished_cells
from reference.defaults import DEFAULTS

FindingStatus = Literal[
    "pass", "fail", "stale", "refused", "uncovered", "not comparable", "rechecked", "not scanned"
]
# Findings that do not stop a sign-off: "not comparable" is listed, but a run of another machine
# or host version can neither confirm nor refute a band measured elsewhere; "rechecked" is a
# figure that missed its band in the run and was measured in it again (harness.gate.recheck);
# "not scanned" is a file the scan's globs match that is not text (an image): listed, not read.
PASSING: frozenset[str] = frozenset({"pass", "not comparable", "rechecked", "not scanned"})
REFERENCE_CELL = ("numpy", "reference")  # whose median is the numerator of every ``speedup``
MAX_PRESET_SPREAD = 0.20  # beyond this a single number misrepresents the quantity (9.7x lesson)
_SUPERSCRIPTS = "⁰¹²³⁴⁵⁶⁷⁸⁹"
# A number as published, read whole: "1,200" (thousands separated) is 1200, and an exponent is
# part of its number ("2.4e-07", "2.4E-7", "3×10⁻⁴", "3 x 10^-4"): read apart, a correct
# "2.4e-07" was the numbers 2.4 and 7 and failed its claim. A power of ten needs its exponent
# ("^-4" or superscript), so "3 x 10 presets" stays arithmetic. Shared with the uncovered-number
# scan (harness.gate.claim_scan), which must read the same number the text check reads.
NUMBER = (
    r"(?<![\w.,])(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"
    rf"(?:[eE][-+−]?\d+|\s?[×x·]\s?10(?:\^[-+−]?\d+|[⁻⁺]?[{_SUPERSCRIPTS}]+))?"
)
# A leading minus is the number's sign only where no word, digit or bracket precedes it: in
# "0.88-0.97" (a band) or "e-07" it is a dash, in " -1e-3" a sign.
_NUMBER = re.compile(rf"(?:(?<![\w.,)\]])[-−])?{NUMBER}")
_SCIENTIFIC = re.compile(r"([-+]?[\d.]+(?:e[-+]?\d+)?)(?:\s?[×x·]\s?10\^?([-+]?\d+))?")
# digits joined by commas, and the ones that are thousands groups (NUMBER reads only these)
_COMMA_RUN = re.compile(r"(?<![\w.,])\d+(?:,\d+)+(?:\.\d+)?(?:[eE][-+−]?\d+)?")
_THOUSANDS = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?(?:[eE][-+−]?\d+)?")
_PLAIN = str.maketrans(f"{_SUPERSCRIPTS}⁻⁺−E", "0123456789-+-e", ",")


def number_value(text: str) -> float:
    """The value of one published number (a match of ``NUMBER``, maybe signed): "1,200" is
    1200, "2.4e-07" and "2.4E-7" are 2.4e-7, "3×10⁻⁴" is 3e-4, "−1e-3" (a minus sign) is -1e-3."""
    plain = _SCIENTIFIC.fullmatch(text.translate(_PLAIN))
    if plain is None:  # a NUMBER match always has one of these forms
        raise ValueError(f"not a published number: {text!r}")
    mantissa, power = plain.groups()
    # "3e-4", not 3 * 10**-4: the exact decimal the text prints, as float("2.4e-07") is
    return float(mantissa if power is None else f"{mantissa}e{power}")


@dataclass(frozen=True)
class Finding:
    """The outcome of one check of one claim (or one uncovered number)."""

    claim: str
    status: FindingStatus
    message: str
    # the claim's point (its preset or x label; "" for a point claim) of a band finding, else None
    point: str | None = None


def quantity_table(rows: Iterable[Row]) -> dict[Quantity, float]:
    """Every summary value of a run by quantity (``median_ns`` derived from raw samples too)."""
    rows = tuple(rows)
    values: dict[Quantity, list[float]] = defaultdict(list)
    for r in rows:
        if r.iteration < 0 and math.isfinite(r.value) and r.metric:
            q = Quantity(r.host, r.artifact, r.preset, r.check, r.subject, r.metric,
                         x_label(r.x_value))  # fmt: skip
            values[q].append(r.value)
    for key, samples in timing_samples(rows).items():
        host, artifact, preset = key.cell.split("/")
        q = Quantity(host, artifact, preset, key.check, key.subject, "median_ns", key.x)
        values.setdefault(q, [float(np.median(samples))])
    # Merged shards can repeat a cell; their median is the value of record.
    return {q: float(np.median(v)) for q, v in values.items()}


def resolve(table: Mapping[Quantity, object], q: Quantity) -> Quantity | None:
    """The key of ``q`` in ``table``; a quantity without ``x`` also matches its cell's one x row.

    A preset curve (``over = "preset"``) names no x, but the bench rows of a per-preset curve
    carry the preset's parameter count as their x: the one such row in the cell is the value.
    Two or more candidates are ambiguous and count as not measured.
    """
    if q in table:
        return q
    if q.x:
        return None
    found = [k for k in table if dataclasses.replace(k, x="") == q]
    return found[0] if len(found) == 1 else None


def lookup(table: Mapping[Quantity, float], q: Quantity) -> float | None:
    """``q``'s value (see :func:`resolve`), or None when the run did not measure it."""
    key = resolve(table, q)
    return None if key is None else table[key]


Interval = tuple[float, float, float]  # (value, CI low, CI high)


# CI bound metrics and the metric they bound: a timing's bootstrap CI of its median, and the
# side-by-side speedup's bootstrap CI over block pairs (harness/checks/bench_paired.py).
_CI_BOUNDS: dict[str, tuple[str, str]] = {
    "ci_low_ns": ("median_ns", "low"),
    "ci_high_ns": ("median_ns", "high"),
    "speedup_ci_low": ("speedup", "low"),
    "speedup_ci_high": ("speedup", "high"),
}


def ci_table(rows: Iterable[Row]) -> dict[Quantity, tuple[float, float]]:
    """The recorded CI of every quantity that has both bounds: a ``median_ns``'s
    ``ci_low_ns``/``ci_high_ns``, a side-by-side ``speedup``'s ``speedup_ci_low``/``_high``."""
    bounds: dict[Quantity, dict[str, float]] = defaultdict(dict)
    for r in rows:
        if r.iteration < 0 and r.metric in _CI_BOUNDS and math.isfinite(r.value):
            metric, end = _CI_BOUNDS[r.metric]
            q = Quantity(r.host, r.artifact, r.preset, r.check, r.subject, metric,
                         x_label(r.x_value))  # fmt: skip
            bounds[q][end] = r.value
    return {q: (b["low"], b["high"]) for q, b in bounds.items() if "low" in b and "high" in b}


def _ratio(num: Interval, den: Interval) -> Interval:
    """A ratio's interval: the extreme corners of the two intervals (both positive)."""
    return num[0] / den[0], num[1] / den[2], num[2] / den[1]


def figure(
    table: Mapping[Quantity, float], cis: Mapping[Quantity, tuple[float, float]], q: Quantity
) -> Interval | None:
    """``q``'s value with its CI from the run; a figure without a recorded CI is its point.

    A side-by-side ``speedup`` (``train_step:paired``) carries its own CI over block pairs. A
    ``speedup`` without one (timed apart: the ``train_step`` subject, and runs before the
    side-by-side figure) is numpy's median over the kernel's: its CI is numpy's CI over the
    kernel's (:func:`_ratio`), both read from the same run.
    """
    key = resolve(table, q)
    if key is None:
        return None
    value = table[key]
    if key.metric == "speedup" and key not in cis:
        kernel = dataclasses.replace(key, metric="median_ns")
        numpy = dataclasses.replace(kernel, host=REFERENCE_CELL[0], artifact=REFERENCE_CELL[1])
        if kernel in cis and numpy in cis and kernel in table and numpy in table:
            lo, hi = _ratio((table[numpy], *cis[numpy]), (table[kernel], *cis[kernel]))[1:]
            return value, min(lo, value), max(hi, value)
        return value, value, value
    low, high = cis.get(key, (value, value))
    return value, min(low, value), max(high, value)


def measure_interval(
    claim: Claim,
    key: str,
    table: Mapping[Quantity, float],
    cis: Mapping[Quantity, tuple[float, float]] | None = None,
    num_q: Quantity | None = None,
) -> Interval | str:
    """The claim's figure at ``key`` with its CI, or why the run cannot measure it."""
    cis = cis or {}
    num_q = num_q or claim.quantity_at(key)
    num = figure(table, cis, num_q)
    if num is None:
        return f"not measured in the run: {num_q.label()}"
    if not claim.relative_to:
        return num
    den_q = _replace_q(num_q, claim.relative_to)
    den = figure(table, cis, den_q)
    if den is None or den[1] <= 0:
        return f"not measured in the run: {den_q.label()}"
    return _ratio(num, den)


def _replace_q(q: Quantity, fields: Mapping[str, str]) -> Quantity:
    return dataclasses.replace(q, **fields)


def measure(claim: Claim, key: str, table: Mapping[Quantity, float]) -> float | str:
    """The claim's quantity at ``key`` in the run, or why it cannot be measured."""
    got = measure_interval(claim, key, table)
    return got if isinstance(got, str) else got[0]


def check_cells(claims: ClaimsFile, cells: Set[str], planned: Set[str] = frozenset()) -> list[str]:
    """Refuse a claim naming a cell the run neither measured nor planned (a typo, or the wrong
    run), at the claims file's line; return the claimed cells the run planned but has no rows
    of (a run cut short: each is a ``fail`` finding of its claim, not a claims-file error).

    A claim that cites an external measurement file names cells of that file, not of the run.
    """
    short: dict[str, None] = {}
    for index, claim in enumerate(claims.claims):
        if claim.measurements:
            continue
        for key in claim.points:
            for q in (claim.quantity_at(key), claim.denominator_at(key)):
                if q is None or q.cell in cells:
                    continue
                if q.cell in planned:
                    short[q.cell] = None
                    continue
                field = "preset" if claim.over == "preset" else "host/artifact/preset"
                known = ", ".join(sorted(cells))
                raise GateInputError(
                    claims.where(_cell_key(claim, index, key, q, cells)),
                    f"claim[{claim.id}].{field}",
                    f"unknown cell {q.cell!r}: not in the run (cells: {known})",
                )
    return list(short)


def _cell_key(
    claim: Claim, index: int, point: str, q: Quantity, cells: Set[str]
) -> tuple[str | int, ...]:
    """The claims file key that names ``q``'s cell wrongly: the first of host, artifact, preset
    the run does not have in that position (a ``relative_to`` override when it gives it)."""
    parts = [c.split("/") for c in cells]
    fields = ("host", "artifact", "preset")
    wrong = next(
        (f for n, f in enumerate(fields)
         if [getattr(q, g) for g in fields[: n + 1]] not in [p[: n + 1] for p in parts]),
        "preset",
    )  # fmt: skip
    if q != claim.quantity_at(point) and wrong in claim.relative_to:
        return ("claim", index, "relative_to", wrong)
    if wrong == "preset" and claim.over == "preset":
        return ("claim", index, "points", point)
    return ("claim", index, wrong)


def run_incomplete(run: Run) -> str:
    """Why ``run`` is not finished and how to finish it (:func:`completeness`, the one owner of
    that question, as for compare and the report), or "" when it is complete."""
    state = completeness(run.meta.raw, finished_cells(run.rows))
    if state.complete:
        return ""
    matrix = str(run.meta.matrix.get("path", "MATRIX"))
    why, finish = "; ".join(state.reasons()), state.how_to_finish(run.directory, matrix)
    return f"{run.directory} is an incomplete run ({why}): {finish}"


def planned_cells(run: Run) -> set[str]:
    """The cells run.json says the run was to measure (empty when it does not list them)."""
    planned = run.meta.raw.get("cells")
    return {str(c) for c in planned} if isinstance(planned, list) else set()


def comparability(claim: Claim, run: RunFacts) -> str:
    """Why the run cannot confirm or refute ``claim``'s band ("" when it can)."""
    if claim.machine_independent or claim.provenance is None:
        return ""
    prov = claim.provenance
    hosts = {claim.base.host, claim.relative_to.get("host", claim.base.host)}
    if claim.base.metric == "speedup":
        hosts.add(REFERENCE_CELL[0])
    why = []
    cells = {claim.quantity_at(k).cell for k in claim.points}
    machines = sorted({run.fingerprints.get(c, run.fingerprint) for c in cells})
    if machines != [prov.fingerprint]:
        why.append(f"machine {'/'.join(machines)}, the band's is {prov.fingerprint}")
    for host in sorted(hosts):
        version = run.host_versions.get(host)
        if version is not None and not prov.host_matches(host, version):
            why.append(f"{host} {version}, the band's is {prov.hosts[host]}")
    return "; ".join(why)


@dataclass(frozen=True)
class RunFacts:
    """What a claim's comparability depends on: the run's machine(s) and host versions."""

    fingerprint: str
    fingerprints: Mapping[str, str]  # cell -> machine, for merged shards of several machines
    host_versions: Mapping[str, str]


def host_versions(rows: Iterable[Row], recorded: Mapping[str, str]) -> dict[str, str]:
    """Each host's version: run.json's record, else the first row's (numpy has no record)."""
    out: dict[str, str] = {}
    for r in rows:
        if r.host_version:
            out.setdefault(r.host, r.host_version)
    return {**out, **recorded}


def check_values(
    claim: Claim,
    table: Mapping[Quantity, float],
    cis: Mapping[Quantity, tuple[float, float]] | None = None,
    run: RunFacts | None = None,
    source: str = "the run measures",
) -> list[Finding]:
    """Each published band against the run's CI: stale only when the two do not overlap.

    ``source`` names where the measured value comes from (a measurement file, not a run).
    """
    out = []
    elsewhere = comparability(claim, run) if run is not None else ""
    for key, published in claim.points.items():
        where = f" at {claim.over}={key}" if claim.over else ""
        got = measure_interval(claim, key, table, cis)
        if isinstance(got, str):
            out.append(Finding(claim.id, "fail", f"{claim.id}{where}: {got}"))
            continue
        value, low, high = got
        band_low, band_high = claim.bands[key]
        change = value / published - 1.0
        said = (
            f"{claim.id}{where}: published {published:g} (band {band_low:.3g}-{band_high:.3g}), "
            f"{source} {value:.4g} (CI {low:.3g}-{high:.3g}, {change:+.1%})"
        )
        if elsewhere:
            out.append(
                Finding(claim.id, "not comparable", f"{said}; not comparable: {elsewhere}", key)
            )
        elif high < band_low or low > band_high:
            out.append(
                Finding(claim.id, "stale", f"{said}: the CI and the band do not overlap", key)
            )
        else:
            out.append(Finding(claim.id, "pass", said, key))
    return out


def _at_preset(claim: Claim, preset: str, table: Mapping[Quantity, float]) -> float | None:
    """The claim's subject at ``preset``: at the claim's x if that preset has it, else at the
    one x of the preset (a train-step curve's x is the preset's parameter count)."""
    q = dataclasses.replace(claim.base, preset=preset)
    for candidate in (q, dataclasses.replace(q, x="")):
        if resolve(table, candidate) is None:
            continue
        got = measure_interval(claim, "", table, None, candidate)
        return None if isinstance(got, str) else got[0]
    return None


def check_single_point(claim: Claim, table: Mapping[Quantity, float]) -> list[Finding]:
    """Refuse a point claim whose quantity varies by more than 20 % across the run's presets.

    The same subject is compared at every preset whatever the claim's ``x``: an ``x`` that only
    one preset has (a train step's parameter count) must not hide the others.
    """
    if claim.is_curve:
        return []
    base = claim.base
    presets = sorted(
        {q.preset for q in table if q.cell.rsplit("/", 1)[0] == f"{base.host}/{base.artifact}"}
    )
    by_preset: dict[str, float] = {}
    for preset in presets:
        got = _at_preset(claim, preset, table)
        if got is not None:
            by_preset[preset] = got
    if len(by_preset) < 2:
        return []
    low, high = min(by_preset.values()), max(by_preset.values())
    spread = high / low - 1.0 if low > 0 else math.inf
    if spread <= MAX_PRESET_SPREAD:
        return []
    listing = ", ".join(f"{p} {v:.3g}" for p, v in by_preset.items())
    return [Finding(claim.id, "refused", (
        f"{claim.id}: a single point ({base.preset}) of a quantity that varies by {spread:.0%} "
        f"across presets ({listing}); publish it as a curve (over = \"preset\")"
    ))]  # fmt: skip


def published_region(
    claim: Claim, root: Path, claims_path: Path, pub: Published | None = None
) -> tuple[str, int, list[str]] | str:
    """``(file label, first line number, lines)`` that publish the claim at ``pub`` (default
    its first location), or why it is stale."""
    pub = claim.published if pub is None else pub
    path = root / pub.file
    if not path.is_file():
        raise GateInputError(
            claims_path, f"claim[{claim.id}].published.file", f"{path} does not exist"
        )
    lines = read_utf8(path, f"published file of claim[{claim.id}]").splitlines()
    if pub.line:
        if pub.line > len(lines):
            return f"{pub.file} has {len(lines)} lines, the claim points at line {pub.line}"
        return pub.file, pub.line, [lines[pub.line - 1]]
    for i, line in enumerate(lines):
        if pub.marker in line:
            end = i + 1
            while end < len(lines) and lines[end].strip():
                end += 1  # the marker's paragraph or table: up to the next blank line
            return pub.file, i + 1, lines[i:end]
    return f"marker {pub.marker!r} is not in {pub.file}"


def check_text(claim: Claim, root: Path, claims_path: Path) -> list[Finding]:
    """The published text must still carry every claimed value, at each of its locations."""
    out: list[Finding] = []
    for pub in claim.published.locations():
        out += _check_region(claim, published_region(claim, root, claims_path, pub))
    return out


def _check_region(claim: Claim, region: tuple[str, int, list[str]] | str) -> list[Finding]:
    if isinstance(region, str):
        return [Finding(claim.id, "fail", f"{claim.id}: {region}")]
    label, first, lines = region
    read = list(dict.fromkeys(n for line in lines for n in _NUMBER.findall(line)))
    numbers = {number_value(n) for n in read}
    wanted = list(claim.points.values())
    if claim.provenance is not None and claim.provenance.band_basis == "runs":
        # A measured band is published with its value ("0.93× (0.88–0.97)"), so it is checked too.
        wanted += [end for band in claim.bands.values() for end in band]
    missing = [v for v in wanted if not any(math.isclose(v, n) for n in numbers)]
    if missing:
        span = f"{label}:{first}" + (f"-{first + len(lines) - 1}" if len(lines) > 1 else "")
        # The numbers as written, not their values: "2,4e-07" is read as 2 and 07, and
        # "2, 7" would hide which characters were taken for which number.
        commas = [c for line in lines for c in _COMMA_RUN.findall(line)
                  if not _THOUSANDS.fullmatch(c)]  # fmt: skip
        hint = "".join(f"; {c!r} is not one number: a comma separates thousands (1,200), "
                       "a decimal needs a point" for c in dict.fromkeys(commas))  # fmt: skip
        return [Finding(claim.id, "fail", (
            f"{claim.id}: {span} no longer carries the claimed "
            f"{', '.join(f'{v:g}' for v in missing)} (numbers there, as read: "
            f"{', '.join(read) or 'none'}){hint}"
        ))]  # fmt: skip
    return []


def covered_spans(claims: ClaimsFile, root: Path) -> dict[str, list[tuple[int, int]]]:
    """For each published file, the 1-based line spans that claims cover."""
    spans: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for claim in claims.claims:
        for pub in claim.published.locations():
            region = published_region(claim, root, claims.path, pub)
            if not isinstance(region, str):
                label, first, lines = region
                spans[str(Path(label))].append((first, first + len(lines) - 1))
    return spans


def check_run(run: Run) -> list[Finding]:
    """The run must be of committed trees (the harness's and, for ``run --project``, the
    project's: its binaries and claims are its commit's), measured with this code's training
    defaults."""
    out = []
    project = run.meta.project
    if run.meta.dirty:
        whose = "the harness's" if project is not None else "a"
        out.append(Finding("(run)", "fail", (
            f"{run.meta.path}: measured from {whose} dirty checkout of {run.meta.commit[:12]}; "
            "a sign-off needs numbers of a committed tree"
        )))  # fmt: skip
    if project is not None and project.dirty:
        out.append(Finding("(run)", "fail", (
            f"{run.meta.path}: measured the project {project.describe()}, a dirty checkout: "
            "its binaries or claims may be uncommitted; a sign-off needs numbers of a "
            "committed tree"
        )))  # fmt: skip
    recorded = run.meta.defaults_sha256
    if recorded == DEFAULTS.sha256():
        return out
    return [*out, Finding("(run)", "fail", (
        f"{run.meta.path}: measured with defaults sha256 {recorded or 'not recorded'}, "
        f"this code's defaults are {DEFAULTS.sha256()}: re-measure before signing off"
    ))]  # fmt: skip
