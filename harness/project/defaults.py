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

Bad input is a :class:`ProfileError` (exit 2) naming the profile's ``file:line``: a mode for a key
the oracle does not state, or a surface (the oracle included) with no extractable value for a
compare key it covers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from harness.checks.defaults import Finding, compare_entries
from harness.profile import DefaultsProfile, Profile, ProfileError, Surface
from harness.project.outcome import Outcome
from harness.surfaces import SurfaceEntry, SurfaceError, Value, extract
from reference.defaults import DEFAULTS

CHECK = "defaults"
_ALIASES = {"betas.0": "beta1", "betas.1": "beta2"}  # AdamW's (beta1, beta2) tuple


def canonical(key: str) -> str:
    """The oracle-side name of a surface key: snake_case, ``betas.0`` -> ``beta1``."""
    snake = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", key).lower()
    return _ALIASES.get(snake, snake)


def entries_of(surface: Surface, profile: Profile) -> list[SurfaceEntry]:
    """The surface's entries under its prefix (stripped); a missing/broken file is exit 2."""
    try:
        found = extract(surface.path, surface.format, surface.format_options)
    except SurfaceError as exc:
        raise ProfileError(
            f"{profile.where(surface.line)}: {surface.name}: {surface.rel}: {exc.reason}"
        ) from None
    out = []
    for e in found:
        if surface.prefix and not e.key.startswith(surface.prefix):
            continue
        out.append(SurfaceEntry(e.key[len(surface.prefix) :], e.value, e.raw, e.line))
    return out


def key_map(
    surface: Surface, entries: Sequence[SurfaceEntry], vocabulary: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Surface key -> oracle key, for every entry: the surface's own rename, else the oracle's
    (``vocabulary``: its ``keys``, the project's names, e.g. ``lr``), else :func:`canonical`."""
    shared = vocabulary or {}
    return {e.key: surface.keys.get(e.key, shared.get(e.key, canonical(e.key))) for e in entries}


def ignored(key: str, ignore: frozenset[str]) -> bool:
    """Whether a surface key is ignored: named in ``ignore``, or under a named table
    (``_notes`` ignores ``_notes.initial_loss``)."""
    return key in ignore or any(key.startswith(f"{i}.") for i in ignore)


def oracle_values(profile: Profile, section: DefaultsProfile) -> dict[str, tuple[Value, str]]:
    """The oracle: ``{key: (value, where)}``; ``where`` is ``file:line`` or TrainingDefaults.
    Its ``ignore`` keys are left out. ProfileError (at the oracle's line) when the oracle
    states nothing: a stub, or a file whose values the format cannot read."""
    if section.oracle is None:
        return {
            k: (v, "reference/defaults.py TrainingDefaults") for k, v in DEFAULTS.as_dict().items()
        }
    oracle = section.oracle
    entries = [e for e in entries_of(oracle, profile) if not ignored(e.key, oracle.ignore)]
    if not entries:
        raise ProfileError(
            f"{profile.where(oracle.line)}: defaults.oracle: {oracle.rel} states no value the "
            f"{oracle.format} extractor can read"
            + (f" (under prefix {oracle.prefix!r})" if oracle.prefix else "")
            + (" once `ignore` is applied" if oracle.ignore else "")
            + "; name the file that holds the project's defaults"
        )
    names = key_map(oracle, entries)
    out: dict[str, tuple[Value, str]] = {}
    for e in entries:
        out.setdefault(names[e.key], (e.value, f"{oracle.rel}:{e.line}"))
    return out


def _require(profile: Profile, surface: Surface, stated: set[str], required: Sequence[str]) -> None:
    missing = [k for k in required if k not in stated]
    if missing:
        raise ProfileError(
            f"{profile.where(surface.line)}: {surface.name}: {surface.rel} has no extractable "
            f"value for compare key(s) {', '.join(missing)} (it states: "
            f"{', '.join(sorted(stated)) or 'nothing'}); map the surface's key in `keys`, narrow "
            "`covers`, or mark the key not-applicable with a reason"
        )


def check(profile: Profile) -> list[Outcome]:
    """Every outcome of the defaults check of ``profile`` (empty when it has no [defaults])."""
    section = profile.defaults
    if section is None:
        return []
    oracle = oracle_values(profile, section)
    modes = {m.key: m for m in section.modes}
    for m in section.modes:
        if m.key not in oracle:
            source = "TrainingDefaults" if section.oracle is None else section.oracle.rel
            raise ProfileError(
                f"{profile.where(m.line)}: defaults.keys.{m.key}: the oracle ({source}) has no "
                f"extractable value for {m.key!r}; it states: {', '.join(oracle)}"
            )
    na = {k for k, m in modes.items() if m.mode == "not-applicable"}
    compare: dict[str, Value] = {k: v for k, (v, _w) in oracle.items() if k not in na}
    out = [
        Outcome(CHECK, f"oracle:{k}", "pass", f"oracle {w}: {k} = {v!r}")
        for k, (v, w) in oracle.items()
        if k not in na
    ]
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
    """Compare one surface with the oracle's compare keys (exit 2 if a covered key is absent)."""
    entries = entries_of(surface, profile)
    names = key_map(surface, entries, vocabulary)
    ignore = {e.key for e in entries if ignored(e.key, surface.ignore)}
    ignore |= {k for k, n in names.items() if n in na}
    if surface.covers is not None:
        unknown = [k for k in surface.covers if k not in compare and k not in na]
        if unknown:
            raise ProfileError(
                f"{profile.where(surface.line)}: {surface.name}: covers names {unknown}, which "
                f"the oracle does not state (it states: {', '.join(compare)})"
            )
    covers = [k for k in (surface.covers or list(compare)) if k not in na]
    stated = {names[e.key] for e in entries if e.key not in ignore}
    _require(profile, surface, stated, covers)
    findings = compare_entries(
        surface.name,
        surface.rel,
        [e for e in entries if e.key not in ignore],
        keys=names,
        covers=covers,
        digits=surface.digits,
        reference=compare,
    )
    return [_outcome(f) for f in findings]


def _outcome(f: Finding) -> Outcome:
    return Outcome(CHECK, f"{f.surface}:{f.key}", f.status, f.message())
