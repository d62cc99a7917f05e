"""Check kind ``defaults``: every surface states the reference's default hyperparameters.

The single source is :data:`reference.defaults.DEFAULTS`. Surfaces, each compared key by key:

- ``binary``: the artifact's ``tg_defaults_json`` export, read THROUGH the cell's host
  (``instance.call`` + ``read_cstring``), so a host that mangles the string is a finding too;
- ``binding`` instead, for a library bound by model calls without tinygpt.h's ABI (lib2): such a
  binary reports nothing, so the constants built into it are those its binding's
  ``[model.defaults]`` declares (AdamW's betas, eps, weight decay, and the tensors it decays),
  each compared with the reference at its ``file:line``. The model check's ``adamw:*`` rows hold
  the binary to that declaration (a build with another eps or decay fails them), so the two
  checks together hold the binary to the reference;
- ``readme``: the Markdown table under "Default hyperparameters" in README.md (the checkout's,
  for a matrix inside it; a matrix elsewhere names its README with ``readme = "<path>"``, or
  gets one ``skipped`` row saying none was compared);
- every ``[[check.defaults.surfaces]]`` entry of the matrix: a file read by the extractor of its
  ``format`` (typescript, html, json, toml, python, markdown).

Drift is reported in both directions: a surface key the reference does not know (``unknown``)
and a reference key a surface lacks (``missing``). A surface that exposes only some keys says so
with ``covers = [...]``; keys it does not cover are listed in one ``skipped`` row, never silently
dropped. Keys it states but that are not hyperparameters (a UI's ``steps``) go in ``ignore``.
Numbers compare exactly unless the surface declares ``digits = N`` (significant digits shown).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from harness.bindings import Binding
from harness.checks.base import CellContext
from harness.hosts.base import HostError
from harness.rundir.rows import Row
from harness.surfaces import (
    FORMAT_OPTIONS,
    FORMATS,
    Statement,
    SurfaceEntry,
    SurfaceError,
    Unreadable,
    Value,
    statements,
)
from harness.surfaces.base import EMPTY_COVERS
from harness.surfaces.json_surface import extract_text
from harness.surfaces.markdown import DEFAULT_HEADING
from reference.defaults import DEFAULTS, TrainingDefaults
from reference.model import DECAYED_PARAMS

CHECK = "defaults"
EXPORT = "tg_defaults_json"
BINDING_KEYS = ("beta1", "beta2", "eps", "weight_decay")  # what [model.defaults] declares

FindingKind = Literal["ok", "mismatch", "unknown", "missing", "uncovered", "error"]


@dataclass(frozen=True)
class SurfaceSpec:
    """One surface a matrix lists under ``[[check.defaults.surfaces]]``."""

    name: str
    path: str
    format: str
    keys: Mapping[str, str] = field(default_factory=dict)  # surface key -> reference key
    ignore: frozenset[str] = frozenset()  # surface keys that are not hyperparameters
    covers: tuple[str, ...] | None = None  # reference keys it must state; None = all
    digits: int | None = None  # significant digits the surface rounds to; None = exact
    format_options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Finding:
    """One comparison outcome: a key that matched, differed, drifted, or a surface that broke."""

    kind: FindingKind
    surface: str
    location: str  # "path:line", "path", or "tg_defaults_json via <host>"
    key: str  # the reference key (or the surface's own key when unknown to the reference)
    expected: str = ""
    found: str = ""
    note: str = ""

    @property
    def status(self) -> Literal["pass", "fail", "error", "skipped"]:
        """The row status this finding gives."""
        if self.kind == "ok":
            return "pass"
        if self.kind == "error":
            return "error"
        if self.kind == "uncovered":
            return "skipped"
        return "fail"

    def message(self) -> str:
        """One readable line: surface, file:line, key, expected, found."""
        if self.kind == "error":
            return f"{self.surface}: {self.location}: {self.note}"
        if self.kind == "unknown":
            return (
                f"{self.surface}: {self.location}: key {self.key!r} = {self.found} is not a "
                f"reference default ({self.note})"
            )
        if self.kind == "missing":
            return (
                f"{self.surface}: {self.location}: reference key {self.key!r} "
                f"(expected {self.expected}) is missing ({self.note})"
            )
        if self.kind == "uncovered":
            return f"{self.surface}: {self.location}: {self.note}"
        verdict = "matches" if self.kind == "ok" else "MISMATCH"
        return (
            f"{self.surface}: {self.location}: {verdict} {self.key}: expected {self.expected}, "
            f"found {self.found} ({self.note})"
        )


# ---- options ---------------------------------------------------------------------------------

_SURFACE_FIELDS = {"name", "path", "format", "keys", "ignore", "covers", "digits"}
_TOP_FIELDS = {"binary", "readme", "readme_heading", "surfaces"}


def _str_list(where: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{where} must be a list of strings, got {value!r}")
    return tuple(value)


def parse_surface(raw: Mapping[str, Any], index: int) -> SurfaceSpec:
    """Validate one ``[[check.defaults.surfaces]]`` table; raise ValueError naming the field."""
    where = f"check.defaults.surfaces[{index}]"
    fmt = raw.get("format")
    if fmt not in FORMATS:
        raise ValueError(f"{where}.format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    allowed = _SURFACE_FIELDS | FORMAT_OPTIONS.get(str(fmt), frozenset())
    extra = sorted(set(raw) - allowed)
    if extra:
        raise ValueError(f"{where}: unknown field(s) {extra}; allowed: {sorted(allowed)}")
    for req in ("name", "path"):
        if not isinstance(raw.get(req), str) or not raw[req]:
            raise ValueError(f"{where}.{req} must be a non-empty string")
    known = set(DEFAULTS.as_dict())
    keys = raw.get("keys", {})
    if not isinstance(keys, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in keys.items()
    ):
        raise ValueError(f"{where}.keys must map surface keys to reference key names")
    bad = sorted(v for v in keys.values() if v not in known)
    if bad:
        raise ValueError(
            f"{where}.keys maps to unknown reference key(s) {bad}; known: {sorted(known)}"
        )
    covers: tuple[str, ...] | None = None
    if "covers" in raw and raw["covers"] != "all":
        covers = _str_list(f"{where}.covers", raw["covers"])
        if not covers:
            raise ValueError(f"{where}.covers: {EMPTY_COVERS}")
        unknown = sorted(set(covers) - known)
        if unknown:
            raise ValueError(f"{where}.covers names unknown reference key(s) {unknown}")
    digits = raw.get("digits")
    if digits is not None and (
        isinstance(digits, bool) or not isinstance(digits, int) or digits < 1
    ):
        raise ValueError(
            f"{where}.digits must be a positive int (significant digits), got {digits!r}"
        )
    return SurfaceSpec(
        name=raw["name"],
        path=raw["path"],
        format=str(fmt),
        keys=dict(keys),
        ignore=frozenset(_str_list(f"{where}.ignore", raw.get("ignore", []))),
        covers=covers,
        digits=digits,
        format_options={k: raw[k] for k in FORMAT_OPTIONS.get(str(fmt), ()) if k in raw},
    )


def validate_options(options: Mapping[str, Any]) -> None:
    """Raise ValueError naming the bad field of a ``[check.defaults]`` table."""
    extra = sorted(set(options) - _TOP_FIELDS)
    if extra:
        raise ValueError(
            f"check.defaults: unknown option(s) {extra}; allowed: {sorted(_TOP_FIELDS)}"
        )
    if not isinstance(options.get("binary", True), bool):
        raise ValueError("check.defaults.binary must be true or false")
    for opt in ("readme", "readme_heading"):
        if not isinstance(options.get(opt, ""), str):
            raise ValueError(f"check.defaults.{opt} must be a string")
    surfaces = options.get("surfaces", [])
    if not isinstance(surfaces, list):
        raise ValueError(
            "check.defaults.surfaces must be an array of tables ([[check.defaults.surfaces]])"
        )
    specs = [parse_surface(s, i) for i, s in enumerate(surfaces)]
    names = [s.name for s in specs]
    reserved = {"binary", "binding", "readme"}
    dupes = sorted({n for n in names if names.count(n) > 1} | (reserved & set(names)))
    if dupes:
        raise ValueError(f"check.defaults.surfaces: duplicate or reserved surface name(s) {dupes}")


# ---- comparison ------------------------------------------------------------------------------


def _round_sig(x: float, digits: int) -> float:
    return float(f"{x:.{digits}g}")


def values_match(expected: Value, found: Value, digits: int | None = None) -> bool:
    """Return whether ``found`` states ``expected``: exact, or to ``digits`` significant digits.

    Booleans and strings must be equal and of the same kind; 16 and 16.0 are the same number.
    """
    if isinstance(expected, bool) or isinstance(found, bool):
        return type(expected) is type(found) and expected == found
    if isinstance(expected, str) or isinstance(found, str):
        return expected == found
    e, f = float(expected), float(found)
    if not (math.isfinite(e) and math.isfinite(f)):
        return e == f
    if digits is None:
        return e == f
    return _round_sig(e, digits) == _round_sig(f, digits)


def compare_entries(
    surface: str,
    where: str,
    entries: Sequence[SurfaceEntry],
    *,
    keys: Mapping[str, str] | None = None,
    ignore: frozenset[str] = frozenset(),
    covers: Sequence[str] | None = None,
    digits: int | None = None,
    reference: TrainingDefaults | Mapping[str, Value] = DEFAULTS,
) -> list[Finding]:
    """Compare a surface's entries with ``reference``; ``where`` is the file (or export) name.

    ``reference`` is TrainingDefaults or any oracle's ``{key: value}`` (a project profile's).
    Every stated key is compared (a key stated twice is compared twice, at both lines).
    """
    expected_all = dict(
        reference.as_dict() if isinstance(reference, TrainingDefaults) else reference
    )
    keymap = keys or {}
    findings: list[Finding] = []
    seen: set[str] = set()
    how = "exact" if digits is None else f"to {digits} significant digits"
    for e in entries:
        if e.key in ignore:
            continue
        ref_key = keymap.get(e.key, e.key)
        loc = f"{where}:{e.line}"
        if ref_key not in expected_all:
            note = "map it in `keys` or list it in `ignore`"
            findings.append(Finding("unknown", surface, loc, e.key, found=e.raw, note=note))
            continue
        seen.add(ref_key)
        exp = expected_all[ref_key]
        label = ref_key if ref_key == e.key else f"{ref_key} (as {e.key!r})"
        kind: FindingKind = "ok" if values_match(exp, e.value, digits) else "mismatch"
        findings.append(Finding(kind, surface, loc, label, repr(exp), e.raw, how))
    required = list(expected_all) if covers is None else list(covers)
    for ref_key in required:
        if ref_key not in seen:
            note = "the surface must state every key it covers"
            exp_s = repr(expected_all[ref_key])
            findings.append(Finding("missing", surface, where, ref_key, expected=exp_s, note=note))
    if covers is not None:
        rest = [k for k in expected_all if k not in covers]
        if rest:
            note = (
                f"declared partial (covers {len(covers)} of {len(expected_all)}); not covered: "
                + ", ".join(rest)
            )
            findings.append(Finding("uncovered", surface, where, "(not covered)", note=note))
    return findings


def _resolve(path: str, base: Path) -> Path:
    p = Path(path)
    return p if p.is_absolute() else base / p


def check_file(
    spec: SurfaceSpec, base: Path, reference: TrainingDefaults = DEFAULTS
) -> list[Finding]:
    """Extract and compare one file surface; a missing or unparsable file is one error finding."""
    path = _resolve(spec.path, base)
    try:
        found = statements(path, spec.format, spec.format_options)
    except SurfaceError as exc:
        return [
            Finding(
                "error", spec.name, exc.path, "(file)", note=f"{spec.format} parser: {exc.reason}"
            )
        ]
    code = _code_in_effect(spec, found, reference)
    entries = [s for s in found if isinstance(s, SurfaceEntry) and s.key not in code]
    compared = compare_entries(
        spec.name,
        str(spec.path),
        entries,
        keys=spec.keys,
        ignore=spec.ignore,
        covers=spec.covers,
        digits=spec.digits,
        reference=reference,
    )
    # a key stated as code is stated: its error row replaces the "missing" row
    stated = {spec.keys.get(key, key) for key in code}
    kept = [f for f in compared if not (f.kind == "missing" and f.key in stated)]
    return [_code_finding(spec, key, s) for key, s in code.items()] + kept


def _code_in_effect(
    spec: SurfaceSpec, found: Sequence[Statement], reference: TrainingDefaults
) -> dict[str, Unreadable]:
    """The surface keys whose last statement (the one in effect, as in JS and Python) is code,
    not a literal, among those the check would compare: a reference key the surface covers.
    Comparing an earlier literal of such a key, or calling it missing, would misreport it."""
    last: dict[str, Statement] = {}
    for s in found:
        last[s.key] = s  # file order: a later statement replaces an earlier one
    known = reference.as_dict()
    out: dict[str, Unreadable] = {}
    for key, s in last.items():
        ref_key = spec.keys.get(key, key)
        covered = spec.covers is None or ref_key in spec.covers
        if isinstance(s, Unreadable) and key not in spec.ignore and ref_key in known and covered:
            out[key] = s
    return out


def _code_finding(spec: SurfaceSpec, key: str, s: Unreadable) -> Finding:
    """One error finding: ``key`` is stated as code at ``s.line``, which the check cannot read."""
    ref_key = spec.keys.get(key, key)
    label = ref_key if ref_key == key else f"{ref_key} (as {key!r})"
    note = (
        f"{label} is written as `{s.raw}`, not a literal; the check reads literal values only, so "
        "it cannot compare the value in effect: write it as a literal, or leave the key out of "
        "`covers`"
    )
    return Finding("error", spec.name, f"{spec.path}:{s.line}", label, note=note)


def check_binary(ctx: CellContext, reference: TrainingDefaults = DEFAULTS) -> list[Finding]:
    """Read ``tg_defaults_json`` through the cell's host and compare it key by key."""
    where = f"{EXPORT} ({ctx.artifact.name} via {ctx.host})"
    try:
        ptr = ctx.instance.call(EXPORT)
        if not ptr:
            return [
                Finding(
                    "error", "binary", where, EXPORT, note=f"{EXPORT}() returned a null pointer"
                )
            ]
        text = ctx.instance.read_cstring(int(ptr))
    except (HostError, UnicodeDecodeError) as exc:
        return [Finding("error", "binary", where, EXPORT, note=f"{type(exc).__name__}: {exc}")]
    try:
        entries = extract_text(text, where)
    except SurfaceError as exc:
        return [
            Finding("error", "binary", where, EXPORT, note=f"{exc.reason}; text: {text[:200]!r}")
        ]
    if any("." in e.key for e in entries):
        note = f"expected a flat JSON object of numbers, got {text[:200]!r}"
        return [Finding("error", "binary", where, EXPORT, note=note)]
    return compare_entries("binary", EXPORT, entries, reference=reference)


def check_binding(binding: Binding, reference: TrainingDefaults = DEFAULTS) -> list[Finding]:
    """Compare a model-level library's declared defaults (``[model.defaults]``) with ``reference``.

    The library takes lr and grad_clip per call (the harness passes the reference's), so the
    binding covers AdamW's constants only; ``decayed`` is compared as the set of reference
    tensors that take weight decay, over the tensors the library's ``[model.params]`` maps.
    """
    where = str(binding.path)
    layout = binding.layout
    if (layout is None or layout.defaults is None) and not binding.model:
        return _ops_only(binding, reference)
    if layout is None or layout.defaults is None:
        note = (
            f"the library exports no {EXPORT} (its binding declares no tinygpt.h ABI) and its "
            "binding has no [model.defaults]: nothing states the AdamW constants built into it"
        )
        return [Finding("missing", "binding", where, "[model.defaults]", note=note)]
    d = layout.defaults
    entries = [
        SurfaceEntry(key, getattr(d, key), repr(getattr(d, key)), binding.lines.line_of(
            ("model", "defaults", key)))
        for key in BINDING_KEYS
    ]  # fmt: skip
    out = compare_entries("binding", where, entries, covers=BINDING_KEYS, reference=reference)
    if layout.params is not None:
        expected = sorted(DECAYED_PARAMS & layout.params.refs())
        found = sorted(layout.reference_decayed())
        loc = binding.where(("model", "defaults", "decayed"))
        kind: FindingKind = "ok" if expected == found else "mismatch"
        note = "the reference tensors that take weight decay (reference.model.DECAYED_PARAMS)"
        out.append(Finding(kind, "binding", loc, "decayed", str(expected), str(found), note))
    return out


def _ops_only(binding: Binding, reference: TrainingDefaults) -> list[Finding]:
    """A library bound by ops alone (no model calls) trains through the harness's own calls:
    its ``adamw_update`` takes the constants as arguments, which the harness passes from the
    reference. Only a constant its binding fixes (``fixed``: built into the export) is the
    library's own, and is compared; with none, nothing is built in, which is said, not failed."""
    call = binding.ops.get("adamw_update")
    built_in = {k: v for k, v in (call.fixed if call is not None else {}).items()
                if k in BINDING_KEYS}  # fmt: skip
    if call is None or not built_in:
        note = (
            "the library has no model calls and builds in no AdamW constant (its adamw_update, "
            "if bound, takes them as arguments, passed from the reference): nothing to compare"
        )
        return [Finding("uncovered", "binding", str(binding.path), "[model.defaults]", note=note)]
    entries = [SurfaceEntry(k, v, repr(v), call.line) for k, v in built_in.items()]
    return compare_entries(
        "binding", str(binding.path), entries, covers=tuple(built_in), reference=reference
    )


def check_readme(path: Path, heading: str, reference: TrainingDefaults = DEFAULTS) -> list[Finding]:
    """Compare the README's defaults table (every key required)."""
    spec = SurfaceSpec("readme", str(path), "markdown", format_options={"heading": heading})
    return check_file(spec, Path("."), reference)


_NO_README = (
    "no README compared: the matrix lies outside the harness checkout, and the default README is "
    "the harness's own; set readme = \"<path>\" (relative to the matrix) to compare a README's "
    'defaults table, or readme = "" to say there is none'
)


def _in_checkout(ctx: CellContext) -> bool:
    """Whether the cell's matrix is one of this checkout's (or there is no matrix file)."""
    if ctx.matrix_path is None:
        return True
    return ctx.matrix_path.resolve().is_relative_to(ctx.repo_root.resolve())


def findings(ctx: CellContext, reference: TrainingDefaults = DEFAULTS) -> list[Finding]:
    """Return every finding of the ``defaults`` check in ``ctx``."""
    opts = ctx.options
    validate_options(opts)
    base = ctx.matrix_path.parent if ctx.matrix_path is not None else ctx.repo_root
    out: list[Finding] = []
    if opts.get("binary", True):
        bound = ctx.artifact.bound()
        out.extend(check_binary(ctx, reference) if bound.abi else check_binding(bound, reference))
    readme = opts.get("readme", None)
    if readme is None and not _in_checkout(ctx):
        # The default README is this harness's: a project's matrix (outside the checkout) would
        # have its verdict hang on a file the project does not own. Said in a row, not dropped.
        where = str(ctx.matrix_path)
        out.append(Finding("uncovered", "readme", where, "(not compared)", note=_NO_README))
    elif readme != "":
        readme_path = ctx.repo_root / "README.md" if readme is None else _resolve(readme, base)
        out.extend(
            check_readme(readme_path, opts.get("readme_heading", DEFAULT_HEADING), reference)
        )
    for i, raw in enumerate(opts.get("surfaces", [])):
        out.extend(check_file(parse_surface(raw, i), base, reference))
    return out


def run(ctx: CellContext) -> Iterator[Row]:
    """Yield one row per compared key, drifted key, uncovered set, or broken surface."""
    for f in findings(ctx):
        value = math.nan
        with contextlib.suppress(ValueError):  # a string or boolean value has no number
            value = float(f.found) if f.found else math.nan
        yield ctx.row(
            CHECK,
            f"{f.surface}:{f.key}",
            f.status,
            metric="value" if f.kind in ("ok", "mismatch") else "",
            value=value,
            detail=f.message(),
        )
