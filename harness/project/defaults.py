"""``check defaults``: every surface of a profile states the profile's oracle.

The oracle is reference/defaults.py's TrainingDefaults (``oracle = "builtin"``) or one of the
project's own files read by a surface extractor (a Python dataclass or argparse, a JSON or TOML
config, ...). Keys are matched by name after one normalisation shared by the oracle and every
surface: the surface's ``prefix`` is stripped; then an explicit ``keys`` rename applies (the
surface's, else the oracle's: the project's own names), else the key in snake_case
(``learningRate`` -> ``learning_rate``) with ``betas.0``/``betas.1`` read as ``beta1``/``beta2``.

Each oracle key is ``compare`` (the default) or ``not-applicable`` with a reason; a
not-applicable key is one ``skipped`` row that quotes the reason, so none passes silently. The
comparison itself (exact, or to ``digits``; unknown keys fail) is
:func:`harness.checks.defaults.compare_entries`.

A key stated more than once takes its last statement, as Python and JS do (a class field
annotated twice, a dict or object literal key written twice, JSON's last duplicate). The oracle's
value of a key is that last one; if an earlier statement gives it another value, the oracle is
ambiguous and its ``oracle:<key>`` row fails, naming both lines. A surface's literal statements
are each compared (a stale earlier copy is drift too).

Bad input is a :class:`ProfileError` (exit 2) naming the profile's ``file:line``: a mode for a key
the oracle does not state, a surface (the oracle included) with no extractable value for a
compare key it covers, or a key whose last statement is code, not a literal
(``lr: 10 * 3e-4``), where the check would otherwise compare a value the code does not use
(it names the ``file:line`` of that statement).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from harness.checks.defaults import Finding, compare_entries, values_match
from harness.profile import DefaultsProfile, Profile, ProfileError, Surface
from harness.project.outcome import Outcome
from harness.surfaces import SurfaceEntry, SurfaceError, Value, statements
from harness.surfaces.base import Statement, Unreadable
from reference.defaults import DEFAULTS

CHECK = "defaults"
_ALIASES = {"betas.0": "beta1", "betas.1": "beta2"}  # AdamW's (beta1, beta2) tuple


def canonical(key: str) -> str:
    """The oracle-side name of a surface key: snake_case, ``betas.0`` -> ``beta1``."""
    snake = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", key).lower()
    return _ALIASES.get(snake, snake)


def statements_of(surface: Surface, profile: Profile) -> list[Statement]:
    """The surface's statements under its prefix (stripped), in file order: its literal entries
    and, for the formats that report them, keys stated as code. A missing/broken file is exit 2."""
    try:
        found = statements(surface.path, surface.format, surface.format_options)
    except SurfaceError as exc:
        raise ProfileError(
            f"{profile.where(surface.line)}: {surface.name}: {surface.rel}: {exc.reason}"
        ) from None
    return [
        replace(s, key=s.key[len(surface.prefix) :])
        for s in found
        if not surface.prefix or s.key.startswith(surface.prefix)
    ]


def entries_of(surface: Surface, profile: Profile) -> list[SurfaceEntry]:
    """The surface's literal entries under its prefix (stripped); a missing/broken file is
    exit 2."""
    return [s for s in statements_of(surface, profile) if isinstance(s, SurfaceEntry)]


def key_map(
    surface: Surface, entries: Sequence[Statement], vocabulary: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Surface key -> oracle key, for every entry: the surface's own rename, else the oracle's
    (``vocabulary``: its ``keys``, the project's names, e.g. ``lr``), else :func:`canonical`."""
    shared = vocabulary or {}
    return {e.key: surface.keys.get(e.key, shared.get(e.key, canonical(e.key))) for e in entries}


def ignored(key: str, ignore: frozenset[str]) -> bool:
    """Whether a surface key is ignored: named in ``ignore``, or under a named table
    (``_notes`` ignores ``_notes.initial_loss``)."""
    return key in ignore or any(key.startswith(f"{i}.") for i in ignore)


@dataclass(frozen=True)
class OracleValue:
    """One oracle key: the value in effect (its last statement), where, and any earlier
    statements of it with another value (``(raw, file:line)``), which make the oracle
    ambiguous."""

    value: Value
    where: str
    conflicts: tuple[tuple[str, str], ...] = ()


def oracle_values(profile: Profile, section: DefaultsProfile) -> dict[str, tuple[Value, str]]:
    """The oracle: ``{key: (value, where)}``; ``where`` is ``file:line`` or TrainingDefaults.
    A key stated twice has its last value, the one the runtime uses (:func:`read_oracle`)."""
    return {k: (o.value, o.where) for k, o in read_oracle(profile, section).items()}


def read_oracle(profile: Profile, section: DefaultsProfile) -> dict[str, OracleValue]:
    """The oracle's keys with their values in effect. Its ``ignore`` keys are left out.

    A key stated more than once takes its last statement, as Python and JS do; earlier
    statements with another value are kept as ``conflicts`` (the check fails them). A key stated
    only as code has no extractable value; one whose last statement is code while an earlier
    one is a literal is a ProfileError at that statement, so the stale literal is never used.
    ProfileError (at the oracle's line) when the oracle states nothing: a stub, or a file whose
    values the format cannot read."""
    if section.oracle is None:
        where = "reference/defaults.py TrainingDefaults"
        return {k: OracleValue(v, where) for k, v in DEFAULTS.as_dict().items()}
    oracle = section.oracle
    found = [s for s in statements_of(oracle, profile) if not ignored(s.key, oracle.ignore)]
    if not any(isinstance(s, SurfaceEntry) for s in found):
        raise ProfileError(
            f"{profile.where(oracle.line)}: defaults.oracle: {oracle.rel} states no value the "
            f"{oracle.format} extractor can read"
            + (f" (under prefix {oracle.prefix!r})" if oracle.prefix else "")
            + (" once `ignore` is applied" if oracle.ignore else "")
            + "; name the file that holds the project's defaults"
        )
    names = key_map(oracle, found)
    grouped: dict[str, list[Statement]] = {}
    for s in found:  # file order, so a key's last statement is the one in effect
        grouped.setdefault(names[s.key], []).append(s)
    out: dict[str, OracleValue] = {}
    for key, group in grouped.items():
        last = group[-1]
        literals = [s for s in group if isinstance(s, SurfaceEntry)]
        if isinstance(last, Unreadable):
            if literals:
                stale = literals[-1]
                raise ProfileError(
                    f"{profile.where(oracle.line)}: defaults.oracle: {oracle.rel}:{last.line}: "
                    f"{key} is last stated as `{last.raw}`, not a literal; the runtime uses this "
                    f"last statement, not the {stale.raw} at {oracle.rel}:{stale.line}, and the "
                    "check reads literal values only: write the value as a literal"
                )
            continue  # stated only as code: no extractable value
        conflicts = tuple(
            (s.raw, f"{oracle.rel}:{s.line}")
            for s in literals[:-1]
            if not values_match(last.value, s.value)
        )
        out[key] = OracleValue(last.value, f"{oracle.rel}:{last.line}", conflicts)
    return out


def _oracle_row(key: str, o: OracleValue) -> Outcome:
    """The ``oracle:<key>`` row: a pass stating the value, or a failure when the oracle states
    the key again with another value (which one the project means is for it to say)."""
    if not o.conflicts:
        return Outcome(CHECK, f"oracle:{key}", "pass", f"oracle {o.where}: {key} = {o.value!r}")
    also = "; ".join(f"{raw} at {where}" for raw, where in o.conflicts)
    return Outcome(
        CHECK,
        f"oracle:{key}",
        "fail",
        f"oracle {o.where}: {key} = {o.value!r} (its last statement, the one the runtime uses) "
        f"is also stated as {also}: an oracle stating a key with two values is ambiguous; "
        "delete the stale statement",
    )


# What a format's extractor cannot read as a value, said when a covered key has none: the key
# may well be in the file, written in one of these ways.
_NOT_READ = {
    "typescript": "a shorthand property (`{ lr }`) or a `const` whose value is code states no "
    "value; write the literal in the property",
    "python": "a value computed by code or read from elsewhere (an import, `os.environ`) states "
    "no value; write the literal",
}


def _require(profile: Profile, surface: Surface, stated: set[str], required: Sequence[str]) -> None:
    missing = [k for k in required if k not in stated]
    if missing:
        hint = _NOT_READ.get(surface.format)
        raise ProfileError(
            f"{profile.where(surface.line)}: {surface.name}: {surface.rel} has no extractable "
            f"value for compare key(s) {', '.join(missing)} (it states: "
            f"{', '.join(sorted(stated)) or 'nothing'}); map the surface's key in `keys`, narrow "
            "`covers`, or mark the key not-applicable with a reason"
            + (f" ({surface.format}: {hint})" if hint else "")
        )


def check(profile: Profile) -> list[Outcome]:
    """Every outcome of the defaults check of ``profile`` (empty when it has no [defaults])."""
    section = profile.defaults
    if section is None:
        return []
    oracle = read_oracle(profile, section)
    modes = {m.key: m for m in section.modes}
    for m in section.modes:
        if m.key not in oracle:
            source = "TrainingDefaults" if section.oracle is None else section.oracle.rel
            raise ProfileError(
                f"{profile.where(m.line)}: defaults.keys.{m.key}: the oracle ({source}) has no "
                f"extractable value for {m.key!r}; it states: {', '.join(oracle)}"
            )
    na = {k for k, m in modes.items() if m.mode == "not-applicable"}
    compare: dict[str, Value] = {k: o.value for k, o in oracle.items() if k not in na}
    out = [_oracle_row(k, o) for k, o in oracle.items() if k not in na]
    out += [
        Outcome(CHECK, f"not-applicable:{k}", "skipped",
                f"{profile.where(modes[k].line)}: {k} is not applicable: {modes[k].reason}")
        for k in oracle if k in na
    ]  # fmt: skip
    vocabulary = section.oracle.keys if section.oracle is not None else {}
    for surface in section.surfaces:
        out += check_surface(profile, surface, compare, na, vocabulary)
    return out


def check_surface(
    profile: Profile,
    surface: Surface,
    compare: Mapping[str, Value],
    na: set[str],
    vocabulary: Mapping[str, str] | None = None,
) -> list[Outcome]:
    """Compare one surface with the oracle's compare keys (exit 2 if a covered key is absent, or
    if a compare key's last statement is code, not a literal)."""
    found = statements_of(surface, profile)
    names = key_map(surface, found, vocabulary)
    ignore = {s.key for s in found if ignored(s.key, surface.ignore)}
    ignore |= {k for k, n in names.items() if n in na}
    if surface.covers is not None:
        unknown = [k for k in surface.covers if k not in compare and k not in na]
        if unknown:
            raise ProfileError(
                f"{profile.where(surface.line)}: {surface.name}: covers names {unknown}, which "
                f"the oracle does not state (it states: {', '.join(compare)})"
            )
    covers = [k for k in (surface.covers or list(compare)) if k not in na]
    found = [s for s in found if s.key not in ignore]
    _require_literal(profile, surface, found, names, compare, covers)
    stated = {names[s.key] for s in found if isinstance(s, SurfaceEntry)}
    _require(profile, surface, stated, covers)
    # A key the oracle does not know is reported however it is written (code included); a
    # compare key's statements that are code and not its last are dead, replaced by a literal.
    entries = [
        s if isinstance(s, SurfaceEntry) else SurfaceEntry(s.key, s.raw, s.raw, s.line)
        for s in found
        if isinstance(s, SurfaceEntry) or names[s.key] not in compare
    ]
    findings = compare_entries(
        surface.name,
        surface.rel,
        entries,
        keys=names,
        covers=covers,
        digits=surface.digits,
        reference=compare,
    )
    return [_outcome(f) for f in findings]


def _require_literal(
    profile: Profile,
    surface: Surface,
    found: Sequence[Statement],
    names: Mapping[str, str],
    compare: Mapping[str, Value],
    covers: Sequence[str],
) -> None:
    """Exit 2 at the ``file:line`` of a compare key whose last statement is code: the value in
    effect cannot be read, so comparing an earlier literal (or skipping a covered key) would
    hide a drift. A key written only as code that the surface does not cover is not stated."""
    last: dict[str, Statement] = {}
    for s in found:
        last[s.key] = s  # file order: the last statement of a key is the one in effect
    literal = {s.key: s for s in found if isinstance(s, SurfaceEntry)}
    for key, s in last.items():
        name = names[key]
        if not isinstance(s, Unreadable) or name not in compare:
            continue
        if name not in covers and key not in literal:
            continue
        label = name if name == key else f"{name} (as {key!r})"
        replaced = (
            f" (it replaces the {literal[key].raw} at line {literal[key].line})"
            if key in literal
            else ""
        )
        raise ProfileError(
            f"{profile.where(surface.line)}: {surface.name}: {surface.rel}:{s.line}: {label} is "
            f"written as `{s.raw}`, not a literal{replaced}; the check reads literal values "
            f"only, so it cannot compare it with the oracle's {compare[name]!r}: write the value "
            "as a literal (a narrower `covers` or a not-applicable mode would hide a drift here)"
        )


def _outcome(f: Finding) -> Outcome:
    return Outcome(CHECK, f"{f.surface}:{f.key}", f.status, f.message())
