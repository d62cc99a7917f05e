"""Matrix files: which hosts, artifacts, presets and checks a run covers.

A matrix is a TOML file (format in ``docs/matrices.md``) validated on load into frozen
dataclasses. Every problem is a :class:`MatrixError` whose message starts ``FILE:LINE:``, the line
of the offending key or value, so a typo in CI config points at itself.

Cells are ``host x artifact x preset``; each cell runs a tuple of checks. ``[[exclude]]`` rules
remove cells (or, with ``check``, single checks of cells); ``[[include]]`` rules then add cells or
checks back, so an include always wins over an exclude.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.checks import REGISTRY, CheckUnavailableError, OptionsValidator, get_options_validator
from harness.toml_lines import Path_, TomlLines, TomlValidator, read_toml, type_name
from reference.presets import PRESETS

DEFAULT_TIMEOUT_S = 60.0
RULE_FIELDS = ("host", "artifact", "preset", "check")
TOP_LEVEL_KEYS = (
    "name", "description", "hosts", "artifacts", "presets", "checks", "timeout_s",
    "exclude", "include", "check", "thresholds",
)  # fmt: skip
HOST_KEYS = ("version", "optional")
# The hostless host: its cell loads no artifact and starts nothing; it runs the project
# profile's text-only checks (harness/project/command.py), once per run, not per artifact or
# preset, so its artifact and preset are NO_NAME. Globs never match it: a rule names it.
HOSTLESS = "none"
NO_NAME = "-"
# The checks a hostless cell runs (the `check defaults|corpus|claims` command's); `claims`
# exists only there (on a host, claims are judged against a run by `signoff`).
TEXT_ONLY_CHECKS = ("defaults", "corpus", "claims")
HOSTLESS_ONLY_CHECKS = ("claims",)


class MatrixError(Exception):
    """A matrix file is invalid; the message is ``FILE:LINE: what is wrong``."""


@dataclass(frozen=True)
class Names:
    """The names a matrix may use: registered hosts, manifest artifacts, presets, check kinds."""

    hosts: tuple[str, ...]
    artifacts: tuple[str, ...]
    presets: tuple[str, ...] = tuple(PRESETS)
    checks: tuple[str, ...] = (*REGISTRY, *HOSTLESS_ONLY_CHECKS)

    def of(self, kind: str) -> tuple[str, ...]:
        """Return the known names of ``kind`` (one of :data:`RULE_FIELDS`); the hosts include
        the hostless :data:`HOSTLESS`."""
        return {
            "host": (*self.hosts, HOSTLESS) if HOSTLESS not in self.hosts else self.hosts,
            "artifact": self.artifacts,
            "preset": self.presets,
            "check": self.checks,
        }[kind]


@dataclass(frozen=True)
class HostSpec:
    """One host of the matrix; ``version`` pins it by dotted prefix (``22``, ``22.23.3``)."""

    name: str
    version: str | None = None
    # A host is required by default: not installed is an `error` (CI must not go green without
    # it). `optional = true` makes its cells `skipped` instead.
    optional: bool = False

    def accepts(self, version: str) -> bool:
        """True if ``version`` (e.g. ``v22.23.3``) satisfies the pin (always true without one)."""
        if self.version is None:
            return True
        want = self.version.lstrip("v").split(".")
        have = re.split(r"[.\s+-]", version.strip().lstrip("v"))
        return have[: len(want)] == want


@dataclass(frozen=True)
class Rule:
    """An exclude or include rule: glob patterns per field; None means "any" (exclude) or
    "the matrix's own list" (include)."""

    host: tuple[str, ...] | None = None
    artifact: tuple[str, ...] | None = None
    preset: tuple[str, ...] | None = None
    check: tuple[str, ...] | None = None
    reason: str = ""
    line: int = 0

    def patterns(self, kind: str) -> tuple[str, ...] | None:
        """Return the patterns of field ``kind``."""
        value: tuple[str, ...] | None = getattr(self, kind)
        return value

    def matches(self, kind: str, name: str) -> bool:
        """True if field ``kind`` is unset or one of its patterns matches ``name``.

        The hostless host is matched by its own name only: ``host = "*"`` means every host
        that loads artifacts, not also the cell that loads none.
        """
        pats = self.patterns(kind)
        if pats is not None and kind == "host" and name == HOSTLESS:
            return HOSTLESS in pats
        return pats is None or any(fnmatch.fnmatchcase(name, p) for p in pats)


@dataclass(frozen=True)
class Matrix:
    """A validated matrix file."""

    path: Path
    name: str
    sha256: str  # of the file's bytes
    hosts: tuple[HostSpec, ...]
    artifacts: tuple[str, ...]
    presets: tuple[str, ...]
    checks: tuple[str, ...]
    names: Names
    description: str = ""
    timeout_s: float = DEFAULT_TIMEOUT_S  # per call; hosts that support it get this
    exclude: tuple[Rule, ...] = ()
    include: tuple[Rule, ...] = ()
    check_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    thresholds: Mapping[str, Any] = field(default_factory=dict)  # for the compare gate
    content: Mapping[str, Any] = field(default_factory=dict)  # the parsed TOML, for run.json
    # The file's key lines, kept for errors found after load (check_thread_counts).
    lines: TomlLines = field(default_factory=lambda: TomlLines(""), compare=False, repr=False)

    def host(self, name: str) -> HostSpec:
        """Return the spec of host ``name`` (an unpinned spec for hosts added by ``include``)."""
        for spec in self.hosts:
            if spec.name == name:
                return spec
        return HostSpec(name)

    def options(self, check: str) -> Mapping[str, Any]:
        """Return the ``[check.<check>]`` table (empty if the matrix has none)."""
        return self.check_options.get(check, {})


@dataclass(frozen=True)
class Cell:
    """One host x artifact x preset combination and the checks it runs."""

    host: str
    artifact: str
    preset: str
    checks: tuple[str, ...]

    @property
    def hostless(self) -> bool:
        """The host ``none`` cell: text-only checks of the project profile, no artifact."""
        return self.host == HOSTLESS

    @property
    def id(self) -> str:
        """``host/artifact/preset``, the same as :attr:`harness.rundir.rows.Row.cell`."""
        return f"{self.host}/{self.artifact}/{self.preset}"


# -- loading -------------------------------------------------------------------------------


def load_matrix(
    path: Path,
    names: Names,
    options_validator: Callable[[str], OptionsValidator | None] = get_options_validator,
) -> Matrix:
    """Read and validate the matrix at ``path`` against the known ``names``.

    ``options_validator(kind)`` returns the check's ``validate_options`` (or None); it is called
    for every ``[check.<kind>]`` table. Raises MatrixError with ``FILE:LINE:``.
    """
    data, text = read_toml(path, MatrixError, "matrix")
    v = _Validator(path, TomlLines(text), names)
    # read_toml decodes the bytes as they are, so this is the sha256 of the file.
    matrix = v.matrix(data, hashlib.sha256(text.encode("utf-8")).hexdigest(), options_validator)
    expand_cells(matrix)  # a check on the wrong side of host `none` is a config error: now
    return matrix


def _path_of(dotted: str) -> Path_:
    """``surfaces[1].format`` -> ``("surfaces", 1, "format")``."""
    out: list[str | int] = []
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", dotted):
        out.append(int(part[1:-1]) if part.startswith("[") else part)
    return tuple(out)


class _Validator(TomlValidator):
    """Checks the parsed TOML piece by piece; every error carries the offending line.

    The matrix's messages predate the shared validator's ``dotted.key: what`` and are kept as
    users and docs know them: ``timeout_s must be ...``, ``unknown key 'hots'; allowed: ...``.
    """

    error_class = MatrixError
    document = "(matrix)"

    def __init__(self, path: Path, lines: TomlLines, names: Names) -> None:
        super().__init__(path, lines)
        self.names = names

    def type_error(self, where: Path_, value: object, what: str) -> Exception:
        """``dotted.key must be <what>, got <type> <value>``."""
        return self.at(
            where, f"{self.dotted(where)} must be {what}, got {type_name(value)} {value!r}"
        )

    def unknown_key_error(self, where: Path_, allowed: tuple[str, ...]) -> Exception:
        """``unknown key 'dotted.key'; allowed: ...``."""
        return self.at(where, f"unknown key {self.dotted(where)!r}; allowed: {', '.join(allowed)}")

    def names_list(
        self, key: str, data: Mapping[str, Any], kind: str, required: bool = True
    ) -> tuple[str, ...]:
        if key not in data and not required:
            return ()
        if key not in data:
            raise self.at((), f"missing required key {key!r}")
        value = self.typed((key,), data[key], list, "an array of strings")
        if not value:
            raise self.at((key,), f"{key} must not be empty")
        known = self.names.of(kind)
        for i, name in enumerate(value):
            self.typed((key, i), name, str, "a string")
            if name not in known:
                raise self.at((key, i), f"unknown {kind} {name!r}; known: {', '.join(known)}")
            if name in value[:i]:
                raise self.at((key, i), f"{kind} {name!r} is listed twice")
        return tuple(value)

    def matrix(
        self,
        data: dict[str, Any],
        sha256: str,
        options_validator: Callable[[str], OptionsValidator | None],
    ) -> Matrix:
        self.table((), data, TOP_LEVEL_KEYS)
        if "name" not in data:
            raise self.at((), "missing required key 'name'")
        self.typed(("name",), data["name"], str, "a string")
        description = self.typed(("description",), data.get("description", ""), str, "a string")
        timeout = data.get("timeout_s", DEFAULT_TIMEOUT_S)
        self.typed(("timeout_s",), timeout, (int, float), "a number of seconds")
        if timeout <= 0:
            raise self.at(("timeout_s",), f"timeout_s must be > 0, got {timeout}")
        thresholds = self.thresholds(data)
        hosts = self.hosts(data)
        # a matrix of host `none` alone loads no artifact and trains no preset
        needed = any(h.name != HOSTLESS for h in hosts)
        return Matrix(
            path=self.path,
            name=data["name"],
            description=description,
            sha256=sha256,
            hosts=hosts,
            artifacts=self.names_list("artifacts", data, "artifact", needed),
            presets=self.names_list("presets", data, "preset", needed),
            checks=self.names_list("checks", data, "check"),
            names=self.names,
            timeout_s=float(timeout),
            exclude=self.rules("exclude", data),
            include=self.rules("include", data),
            check_options=self.check_options(data, options_validator),
            thresholds=thresholds,
            content=data,
            lines=self.lines,
        )

    def thresholds(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """The [thresholds] table, vetted now by the gate's own parser rather than at compare."""
        from harness.gate.errors import GateInputError
        from harness.gate.thresholds import thresholds_from_table

        table = self.typed(("thresholds",), data.get("thresholds", {}), dict, "a table")
        try:
            thresholds_from_table(table, self.path)
        except GateInputError as exc:
            where = _path_of(exc.field) if exc.field else ("thresholds",)
            raise self.at(where, str(exc).removeprefix(f"{self.path}: ")) from None
        return dict(table)

    def hosts(self, data: Mapping[str, Any]) -> tuple[HostSpec, ...]:
        if "hosts" not in data:
            raise self.at((), "missing required table [hosts]")
        table = self.typed(("hosts",), data["hosts"], dict, "a table of host = { version = ... }")
        if not table:
            raise self.at(("hosts",), "[hosts] must name at least one host")
        specs = []
        for name, spec in table.items():
            if name not in self.names.of("host"):
                hint = ""
                if name in TOP_LEVEL_KEYS:  # TOML puts every key after [hosts] inside it
                    hint = f" ({name!r} is a top-level key: move it above the first [table])"
                raise self.at(
                    ("hosts", name),
                    f"unknown host {name!r}; known: {', '.join(self.names.of('host'))}{hint}",
                )
            self.typed(("hosts", name), spec, dict, "a table, e.g. {} or { version = ... }")
            self.table(("hosts", name), spec, HOST_KEYS)
            version = spec.get("version")
            if version is not None:
                self.typed(("hosts", name, "version"), version, str, "a string")
            optional = spec.get("optional", False)
            self.typed(("hosts", name, "optional"), optional, bool, "true or false")
            if name == HOSTLESS and spec:
                raise self.at(("hosts", name), "host 'none' has no version and is always there: "
                              "write none = {}")  # fmt: skip
            specs.append(HostSpec(name, version, optional))
        return tuple(specs)

    def rules(self, key: str, data: Mapping[str, Any]) -> tuple[Rule, ...]:
        value = self.typed((key,), data.get(key, []), list, f"an array of tables ([[{key}]])")
        rules = []
        for i, rule in enumerate(value):
            where: Path_ = (key, i)
            self.table(where, rule, (*RULE_FIELDS, "reason"))
            if not any(f in rule for f in RULE_FIELDS):
                raise self.at(where, f"a [[{key}]] rule needs one of: {', '.join(RULE_FIELDS)}")
            reason = self.typed((*where, "reason"), rule.get("reason", ""), str, "a string")
            fields = {f: self.patterns((*where, f), rule[f], f) for f in RULE_FIELDS if f in rule}
            rules.append(Rule(**fields, reason=reason, line=self.line(where)))
        return tuple(rules)

    def patterns(self, where: Path_, value: object, kind: str) -> tuple[str, ...]:
        items = [value] if isinstance(value, str) else value
        self.typed(where, items, list, "a string or an array of strings")
        assert isinstance(items, list)
        known = self.names.of(kind)
        for i, pat in enumerate(items):
            at = where if isinstance(value, str) else (*where, i)
            self.typed(at, pat, str, "a string")
            # A pattern that matches nothing known is a typo, not an intention.
            if not any(fnmatch.fnmatchcase(n, pat) for n in known):
                raise self.at(at, f"{kind} {pat!r} matches no known {kind}: {', '.join(known)}")
        return tuple(items)

    def check_options(
        self,
        data: Mapping[str, Any],
        options_validator: Callable[[str], OptionsValidator | None],
    ) -> dict[str, Mapping[str, Any]]:
        table = self.typed(
            ("check",), data.get("check", {}), dict, "a table of [check.<kind>] tables"
        )
        out: dict[str, Mapping[str, Any]] = {}
        for kind, options in table.items():
            where: Path_ = ("check", kind)
            if kind not in self.names.checks:
                raise self.at(
                    where, f"unknown check {kind!r}; known: {', '.join(self.names.checks)}"
                )
            self.typed(where, options, dict, "a table of options")
            try:
                validate = options_validator(kind)
                if validate is not None:
                    validate(options)
            except CheckUnavailableError as exc:
                raise self.at(where, str(exc)) from None
            except ValueError as exc:
                said = str(exc)  # most validators name their table themselves: say it once
                head = "" if said.startswith(f"[check.{kind}]") else f"[check.{kind}]: "
                raise self.at(self.option_path(where, options, said), head + said) from None
            out[kind] = options
        return out

    @staticmethod
    def option_path(where: Path_, options: Mapping[str, Any], message: str) -> Path_:
        """Point at the option a validator's message names, else at the table.

        A dotted path such as ``check.defaults.surfaces[1].format`` is followed exactly; else
        the first option key the message names as a whole word is used.
        """
        m = re.search(rf"check\.{re.escape(str(where[-1]))}\.([\w.\[\]-]+)", message)
        if m:
            return (*where, *_path_of(m.group(1).rstrip(".")))
        for key in options:
            if re.search(rf"(?<![\w-]){re.escape(key)}(?![\w-])", message):
                return (*where, key)
        return where


THREADED_CHECKS = ("bench", "determinism")  # the check kinds with a ``threads`` axis


def check_thread_counts(
    matrix: Matrix, cells: Collection[Cell], limits: Mapping[str, tuple[int, str]]
) -> None:
    """Refuse a ``threads`` axis (``[check.bench]``, ``[check.determinism]``) above the
    thread limit of an artifact the check would run on.

    ``limits`` maps artifact names to :meth:`~harness.artifact.Artifact.thread_capacity` (the
    limit and what sets it: an emscripten pthread build's pool + 1, the binding's ``[threads]
    max``, tinygpt.h's pool; 1 for a binding without ``[threads]``, whose count the harness
    cannot set). Only the artifacts know, so this runs once the manifest is read. Raises
    MatrixError with ``FILE:LINE:`` of the ``threads`` key.
    """
    for kind in THREADED_CHECKS:
        threads = matrix.options(kind).get("threads")
        if not threads:
            continue
        top = max(threads)
        over = sorted({c.artifact for c in cells if kind in c.checks
                       and limits.get(c.artifact, (top, ""))[0] < top})  # fmt: skip
        if over:
            line = matrix.lines.line_of(("check", kind, "threads"))
            said: dict[tuple[int, str], list[str]] = {}  # one reason said once, for all it caps
            for a in over:
                said.setdefault(limits[a], []).append(a)
            why = "; ".join(
                f"{', '.join(names)} run{'s' if len(names) == 1 else ''} at most {cap} ({reason})"
                for (cap, reason), names in said.items()
            )
            raise MatrixError(
                f"{matrix.path}:{line}: [check.{kind}] threads: {top} is above the threads "
                f"of an artifact the check runs on: {why}. Lower the count, or leave the "
                "artifact out of the check ([[exclude]])"
            )


# -- cells ---------------------------------------------------------------------------------


def _cell_key(host: str, artifact: str, preset: str) -> tuple[str, str, str]:
    """The host ``none`` cell is one per run: its artifact and preset are :data:`NO_NAME`."""
    return (host, NO_NAME, NO_NAME) if host == HOSTLESS else (host, artifact, preset)


def expand_cells(matrix: Matrix, only_checks: Collection[str] | None = None) -> list[Cell]:
    """Return the matrix's cells sorted by id: the product minus excludes plus includes.

    ``only_checks`` (from ``run --checks``) replaces the matrix's check list; include rules still
    add cells, but only with checks in ``only_checks``. Host ``none`` gives one cell
    (``none/-/-``), whatever the artifacts and presets. Raises MatrixError (``FILE:LINE:``) when
    a host ``none`` cell would run a check that needs a host, or a host cell a text-only one.
    """
    base_checks = tuple(only_checks) if only_checks is not None else matrix.checks
    checks: dict[tuple[str, str, str], list[str]] = {}
    added_by: dict[tuple[str, str, str], int] = {}  # an include rule's line, for errors
    for spec in matrix.hosts:
        for a in matrix.artifacts or (NO_NAME,):
            for p in matrix.presets or (NO_NAME,):
                checks[_cell_key(spec.name, a, p)] = list(base_checks)
    for rule in matrix.exclude:
        for (h, a, p), selected in checks.items():
            if (
                rule.matches("host", h)
                and rule.matches("artifact", a)
                and rule.matches("preset", p)
            ):
                selected[:] = [c for c in selected if not rule.matches("check", c)]
    defaults = {
        "host": tuple(s.name for s in matrix.hosts),
        "artifact": matrix.artifacts,
        "preset": matrix.presets,
        "check": base_checks,
    }
    for rule in matrix.include:
        picked = {
            kind: defaults[kind]
            if rule.patterns(kind) is None
            else tuple(n for n in matrix.names.of(kind) if rule.matches(kind, n))
            for kind in RULE_FIELDS
        }
        add = [c for c in picked["check"] if only_checks is None or c in only_checks]
        for h in picked["host"]:
            for a in picked["artifact"] or (NO_NAME,):
                for p in picked["preset"] or (NO_NAME,):
                    key = _cell_key(h, a, p)
                    selected = checks.setdefault(key, [])
                    if any(c not in selected for c in add):
                        added_by.setdefault(key, rule.line)
                    selected.extend(c for c in add if c not in selected)
    order = {c: i for i, c in enumerate((*base_checks, *matrix.names.checks))}
    cells = [
        Cell(h, a, p, tuple(sorted(selected, key=order.__getitem__)))
        for (h, a, p), selected in checks.items()
        if selected
    ]
    for cell in cells:
        _check_sides(matrix, cell, added_by.get((cell.host, cell.artifact, cell.preset)))
    return sorted(cells, key=lambda c: c.id)


def _check_sides(matrix: Matrix, cell: Cell, include_line: int | None) -> None:
    """Host ``none`` runs text-only checks only; ``claims`` runs on host ``none`` only."""
    if cell.hostless:
        wrong = [c for c in cell.checks if c not in TEXT_ONLY_CHECKS]
        where: Path_ = ("hosts", HOSTLESS)
        why = (
            f"host 'none' loads no artifact: it runs only the text-only checks "
            f"({', '.join(TEXT_ONLY_CHECKS)}), not {', '.join(wrong)}; exclude them for it: "
            f'[[exclude]] host = "none", check = {list(wrong)!r}'
        )
    else:
        wrong = [c for c in cell.checks if c in HOSTLESS_ONLY_CHECKS]
        where = ("checks", matrix.checks.index(wrong[0])) if wrong and wrong[0] in matrix.checks \
            else ("checks",)  # fmt: skip
        why = (
            f"check {', '.join(wrong)} is text-only and runs on host 'none' only (cell "
            f'{cell.id}); exclude it for the other hosts: [[exclude]] host = "*", check = '
            f"{list(wrong)!r}"
        )
    if not wrong:
        return
    line = include_line if include_line else matrix.lines.line_of(where)
    raise MatrixError(f"{matrix.path}:{line}: {why}")


def parse_shard(text: str) -> tuple[int, int]:
    """Parse ``K/N`` (1 <= K <= N) into ``(K, N)``; raises ValueError naming the problem."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m:
        raise ValueError(f"--shard must look like K/N (e.g. 2/4), got {text!r}")
    k, n = int(m.group(1)), int(m.group(2))
    if not 1 <= k <= n:
        raise ValueError(f"--shard {text}: K must be between 1 and N")
    return k, n


def shard(cells: Iterable[Cell], index: int, count: int) -> list[Cell]:
    """Return shard ``index`` of ``count`` (1-based): every count-th cell of the id-sorted list."""
    ordered = sorted(cells, key=lambda c: c.id)
    return ordered[index - 1 :: count]
