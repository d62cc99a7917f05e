"""The project profile: ``harness.toml``, where a project names its own oracle.

A profile says, for the project under test, where its default hyperparameters are stated and
which statement is the oracle, which corpus its UI really trains on and what that corpus must
look like, and where its published performance claims live. It is found at the project's root
(``harness.toml``) or given by ``--project PATH``; without one, the bundled default profile
(:data:`DEFAULT_PROFILE`) describes this repository's own kernels, reference, defaults, corpus
and claims. Every error names ``file:line`` (line numbers from :mod:`harness.toml_lines`, as
matrices do) and exits 2. The schema, with examples: docs/profiles.md.

``[presets.NAME]`` tables declare the project's own model configs (``ModelConfig``: dims,
vocabulary, MLP width, biases, LayerNorm eps); ``run --project PATH`` lets a matrix name them.
An external reference and artifact lists are not profile keys yet (issue 11 part 3; artifacts
and their bindings live in the manifest): a profile naming ``reference`` or ``artifacts`` is
refused with that reason rather than silently ignored.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from harness.surfaces import FORMAT_OPTIONS, FORMATS
from harness.toml_lines import Path_, TomlLines
from reference.presets import ModelConfig

PROFILE_NAME = "harness.toml"
DEFAULT_PROFILE = Path(__file__).parent / "profiles" / "default.toml"
NOT_YET = {
    "reference": "an external reference is not a profile key yet (issue 11 part 3)",
    "artifacts": "artifacts and their bindings are manifest entries (docs/bindings.md)",
}
# a [presets.NAME] table's keys: ModelConfig's fields but its name; the dims are required
PRESET_FIELDS = tuple(f.name for f in fields(ModelConfig) if f.name != "name")
PRESET_REQUIRED = ("n_layer", "n_head", "n_embd", "block_size")


KeyModeName = Literal["compare", "not-applicable"]
SourceKind = Literal["default", "file", "textarea", "page"]
STRUCTURE_KEYS = (
    "min_lines",
    "max_lines",
    "min_paragraphs",
    "max_paragraphs",
    "min_speaker_cues",
    "min_headings",
    "max_median_line",
    "ascii",
)


class ProfileError(Exception):
    """A profile that cannot be used; the message starts with ``file:line:``. Exit code 2."""


@dataclass(frozen=True)
class Surface:
    """One file that states default hyperparameters (the oracle is one too)."""

    name: str
    path: Path  # absolute
    rel: str  # as the profile wrote it, for messages
    format: str
    line: int  # the profile line that names this surface
    keys: Mapping[str, str] = field(default_factory=dict)  # surface key -> oracle key
    ignore: frozenset[str] = frozenset()  # surface keys that are not hyperparameters
    covers: tuple[str, ...] | None = None  # oracle keys it states; None = every compare key
    digits: int | None = None  # significant digits the surface rounds to; None = exact
    prefix: str = ""  # only keys under this prefix, which is stripped ("TrainConfig.")
    format_options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class KeyMode:
    """How one oracle key is treated: compared, or not applicable to this project (and why)."""

    key: str
    mode: KeyModeName
    reason: str
    line: int


@dataclass(frozen=True)
class DefaultsProfile:
    """The ``[defaults]`` section: the oracle, each key's mode, the surfaces checked against it."""

    oracle: Surface | None  # None: reference/defaults.py's TrainingDefaults
    modes: tuple[KeyMode, ...]
    surfaces: tuple[Surface, ...]
    line: int


@dataclass(frozen=True)
class CorpusContract:
    """What the corpus must be: a byte range, a sha256 (or any), structure bounds."""

    builtin: bool  # True: the default corpus's identity (harness.checks.corpus.identity_findings)
    min_bytes: int = 0
    max_bytes: int | None = None
    sha256: str = "any"
    structure: Mapping[str, int | bool] = field(default_factory=dict)


@dataclass(frozen=True)
class CorpusSource:
    """Where the corpus the UI trains on is read: a file, a textarea, the served page."""

    kind: SourceKind
    line: int
    path: Path | None = None  # file / textarea; the site directory for a page
    rel: str = ""
    element: str = ""  # textarea: its id; page: a CSS selector
    page: str = "index.html"  # page: the path inside the site
    timeout_s: float = 15.0
    base: str = "/"  # page: the site's public path ("/repo/" for a GitHub Pages build)
    filled_at_runtime: bool = False  # textarea: empty in the source, a page script fills it


@dataclass(frozen=True)
class CorpusProfile:
    """The ``[corpus]`` section."""

    contract: CorpusContract
    sources: tuple[CorpusSource, ...]
    line: int


@dataclass(frozen=True)
class ClaimsProfile:
    """The ``[claims]`` section: the claims file; published files are relative to the root."""

    file: Path
    line: int


@dataclass(frozen=True)
class Profile:
    """A loaded, validated project profile."""

    path: Path
    root: Path
    name: str
    defaults: DefaultsProfile | None
    corpus: CorpusProfile | None
    claims: ClaimsProfile | None
    text: str = field(repr=False, default="")
    presets: Mapping[str, ModelConfig] = field(default_factory=dict)  # [presets.NAME]

    def where(self, line: int) -> str:
        """``file:line`` of the profile, for messages."""
        return f"{self.path}:{line}"

    @property
    def is_default(self) -> bool:
        """True for the bundled profile of this repository."""
        return self.path.resolve() == DEFAULT_PROFILE.resolve()


def find_profile(project: Path | None) -> Path:
    """The profile file for ``--project PATH`` (a directory or a file), or the default one.

    No ``--project``: ``./harness.toml`` if it exists, else the bundled default profile.
    """
    if project is None:
        here = Path.cwd() / PROFILE_NAME
        return here if here.is_file() else DEFAULT_PROFILE
    if project.is_dir():
        candidate = project / PROFILE_NAME
        if not candidate.is_file():
            raise ProfileError(f"{candidate}:1: no {PROFILE_NAME} in the project directory")
        return candidate
    if not project.exists():
        raise ProfileError(f"{project}:1: no such profile file or project directory")
    return project


def load_profile(path: Path) -> Profile:
    """Read and validate the profile at ``path``; raise ProfileError with ``file:line``."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProfileError(f"{path}:1: cannot read profile: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ProfileError(f"{path}:1: not UTF-8 text ({exc.reason})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"at line (\d+)", str(exc))
        raise ProfileError(f"{path}:{m.group(1) if m else 1}: {exc}") from None
    return _Validator(path, TomlLines(text)).profile(data, text)


def _type_name(v: object) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a float", str: "a string"}
    return names.get(type(v), "an array" if isinstance(v, list) else "a table")


class _Validator:
    """Checks the parsed TOML piece by piece; every error carries the offending line."""

    def __init__(self, path: Path, lines: TomlLines) -> None:
        self.path = path
        self.lines = lines
        self.root = path.parent

    def line(self, where: Path_) -> int:
        return self.lines.line_of(where)

    def error(self, where: Path_, what: str) -> ProfileError:
        return ProfileError(f"{self.path}:{self.line(where)}: {self.dotted(where)}: {what}")

    @staticmethod
    def dotted(where: Path_) -> str:
        out = ""
        for p in where:
            out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else p)
        return out or "(profile)"

    def typed(self, where: Path_, value: object, kind: type | tuple[type, ...], what: str) -> Any:
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            raise self.error(where, f"must be {what}, got {_type_name(value)} {value!r}")
        return value

    def table(self, where: Path_, value: object, allowed: Iterable[str]) -> Mapping[str, Any]:
        self.typed(where, value, dict, "a table")
        assert isinstance(value, dict)
        allowed = tuple(allowed)
        for key in value:
            if key not in allowed:
                raise self.error((*where, key), f"unknown key; allowed: {', '.join(allowed)}")
        return value

    def strings(self, where: Path_, value: object) -> tuple[str, ...]:
        self.typed(where, value, list, "an array of strings")
        assert isinstance(value, list)
        for i, v in enumerate(value):
            self.typed((*where, i), v, str, "a string")
        return tuple(value)

    def file(self, where: Path_, value: object, *, directory: bool = False) -> tuple[Path, str]:
        rel = self.typed(where, value, str, "a path (relative to the project root)")
        p = Path(rel)
        p = p if p.is_absolute() else self.root / p
        ok = p.is_dir() if directory else p.is_file()
        if not ok:
            kind = "directory" if directory else "file"
            raise self.error(where, f"{kind} {rel!r} not found (looked at {p})")
        return p, rel

    # -- sections ----------------------------------------------------------------------------

    def profile(self, data: Mapping[str, Any], text: str) -> Profile:
        for key, why in NOT_YET.items():
            if key in data:
                raise self.error((key,), f"not supported yet: {why}")
        self.table((), data, ("project", "defaults", "corpus", "claims", "presets"))
        project = self.table(("project",), data.get("project", {}), ("name", "root"))
        name = self.typed(("project", "name"), project.get("name", self.path.parent.name), str,
                          "a string")  # fmt: skip
        if "root" in project:
            self.root, _rel = self.file(("project", "root"), project["root"], directory=True)
        self.root = self.root.resolve()
        defaults = self.defaults(data["defaults"]) if "defaults" in data else None
        corpus = self.corpus(data["corpus"]) if "corpus" in data else None
        claims = None
        if "claims" in data:
            t = self.table(("claims",), data["claims"], ("file",))
            if "file" not in t:
                raise self.error(("claims",), "missing key 'file' (the claims TOML)")
            claims = ClaimsProfile(
                self.file(("claims", "file"), t["file"])[0], self.line(("claims",))
            )
        presets = self.presets(data["presets"]) if "presets" in data else {}
        return Profile(self.path, self.root, name, defaults, corpus, claims, text, presets)

    def presets(self, raw: object) -> dict[str, ModelConfig]:
        """``[presets.NAME]``: each table's keys are ModelConfig's fields; its own checks
        (divisibility, vocabulary, biases, eps) become errors at the table's line."""
        out: dict[str, ModelConfig] = {}
        self.typed(("presets",), raw, dict, "a table of [presets.NAME] tables")
        assert isinstance(raw, dict)
        for name, t in raw.items():
            where: Path_ = ("presets", name)
            t = self.table(where, t, PRESET_FIELDS)
            missing = [k for k in PRESET_REQUIRED if k not in t]
            if missing:
                raise self.error(where, f"missing key(s) {', '.join(missing)}")
            kwargs: dict[str, Any] = {}
            for key, value in t.items():
                if key == "biases":
                    kwargs[key] = self.strings((*where, key), value)
                elif key == "ln_eps":
                    kwargs[key] = float(self.typed((*where, key), value, (float, int), "a number"))
                else:
                    kwargs[key] = self.typed((*where, key), value, int, "an integer")
            try:
                out[name] = ModelConfig(name, **kwargs)
            except ValueError as exc:
                raise self.error(where, str(exc)) from None
        return out

    def surface(self, where: Path_, raw: object, *, oracle: bool = False) -> Surface:
        fields = {"path", "format", "keys", "ignore", "prefix"}
        if not oracle:
            fields |= {"name", "covers", "digits"}
        fmt = raw.get("format") if isinstance(raw, dict) else None
        if fmt not in FORMATS:
            self.typed(where, raw, dict, "a table")
            raise self.error(
                (*where, "format"), f"must be one of {', '.join(FORMATS)}, got {fmt!r}"
            )
        allowed = sorted(fields | FORMAT_OPTIONS.get(str(fmt), frozenset()))
        t = self.table(where, raw, allowed)
        if "path" not in t:
            raise self.error(where, "missing key 'path'")
        path, rel = self.file((*where, "path"), t["path"])
        name = "oracle" if oracle else t.get("name", "")
        if not oracle:
            self.typed((*where, "name"), name, str, "a non-empty string")
            if not name or name == "oracle":
                raise self.error((*where, "name"), "must be a non-empty name other than 'oracle'")
        keys = self.typed((*where, "keys"), t.get("keys", {}), dict, "a table of key renames")
        for k, v in keys.items():
            self.typed((*where, "keys", k), v, str, "an oracle key name")
        covers = None
        if t.get("covers", "all") != "all":
            covers = self.strings((*where, "covers"), t["covers"])
        digits = t.get("digits")
        if digits is not None and (self.typed((*where, "digits"), digits, int, "an int") < 1):
            raise self.error((*where, "digits"), "must be a positive number of significant digits")
        if fmt == "c":
            self.strings((*where, "calls"), t.get("calls", []))
        return Surface(
            name=str(name),
            path=path,
            rel=rel,
            format=str(fmt),
            line=self.line(where),
            keys=dict(keys),
            ignore=frozenset(self.strings((*where, "ignore"), t.get("ignore", []))),
            covers=covers,
            digits=digits,
            prefix=self.typed((*where, "prefix"), t.get("prefix", ""), str, "a string"),
            format_options={k: t[k] for k in FORMAT_OPTIONS.get(str(fmt), ()) if k in t},
        )

    def defaults(self, raw: object) -> DefaultsProfile:
        t = self.table(("defaults",), raw, ("oracle", "keys", "surfaces"))
        oracle_raw = t.get("oracle", "builtin")
        oracle = None
        if oracle_raw != "builtin":
            if not isinstance(oracle_raw, dict):
                why = 'must be "builtin" (TrainingDefaults) or a surface table'
                raise self.error(("defaults", "oracle"), why)
            oracle = self.surface(("defaults", "oracle"), oracle_raw, oracle=True)
        keys = self.typed(("defaults", "keys"), t.get("keys", {}), dict, "a table")
        modes = []
        for key, spec in keys.items():
            where: Path_ = ("defaults", "keys", key)
            if spec == "compare":
                modes.append(KeyMode(key, "compare", "", self.line(where)))
                continue
            m = self.table(where, spec, ("mode", "reason"))
            if m.get("mode") == "compare":
                modes.append(KeyMode(key, "compare", "", self.line(where)))
                continue
            if m.get("mode") != "not-applicable":
                raise self.error(where, '"compare" or { mode = "not-applicable", reason = "..." }')
            reason = m.get("reason")
            if not isinstance(reason, str) or not reason.strip():
                raise self.error(where, "a not-applicable key needs a reason")
            modes.append(KeyMode(key, "not-applicable", reason, self.line(where)))
        raw_surfaces = self.typed(("defaults", "surfaces"), t.get("surfaces", []), list,
                                  "an array of tables ([[defaults.surfaces]])")  # fmt: skip
        surfaces = tuple(self.surface(("defaults", "surfaces", i), s)
                         for i, s in enumerate(raw_surfaces))  # fmt: skip
        names = [s.name for s in surfaces]
        for i, n in enumerate(names):
            if n in names[:i]:
                raise self.error(("defaults", "surfaces", i, "name"), f"duplicate name {n!r}")
        return DefaultsProfile(oracle, tuple(modes), surfaces, self.line(("defaults",)))

    def corpus(self, raw: object) -> CorpusProfile:
        t = self.table(("corpus",), raw, ("contract", "bytes", "sha256", "structure", "source"))
        if t.get("contract", "profile") not in ("builtin", "profile"):
            raise self.error(("corpus", "contract"), '"builtin" (the default corpus) or absent')
        builtin = t.get("contract") == "builtin"
        if builtin:
            extra = sorted(set(t) & {"bytes", "sha256", "structure"})
            if extra:
                raise self.error(("corpus", extra[0]), 'not with contract = "builtin"')
            contract = CorpusContract(builtin=True)
        else:
            contract = self.contract(t)
        raw_sources = t.get("source")
        if raw_sources is None:
            raise self.error(("corpus",), "missing [[corpus.source]]: where the corpus is read")
        self.typed(("corpus", "source"), raw_sources, list, "an array of tables")
        sources = tuple(self.source(("corpus", "source", i), s) for i, s in enumerate(raw_sources))
        if not sources:
            raise self.error(("corpus", "source"), "name at least one source")
        runtime = [s for s in sources if s.filled_at_runtime]
        if runtime and not any(s.kind == "page" for s in sources):
            why = "a textarea filled at runtime needs a page source that checks it"
            raise self.error(("corpus", "source"), why)
        return CorpusProfile(contract, sources, self.line(("corpus",)))

    def contract(self, t: Mapping[str, Any]) -> CorpusContract:
        if "bytes" not in t:
            raise self.error(("corpus",), "missing key 'bytes' = [min, max] (the byte range)")
        rng = self.typed(("corpus", "bytes"), t["bytes"], list, "[min, max]")
        if len(rng) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in rng):
            raise self.error(("corpus", "bytes"), f"must be [min, max] integers, got {rng!r}")
        if not 0 <= rng[0] <= rng[1]:
            raise self.error(("corpus", "bytes"), f"needs 0 <= min <= max, got {rng!r}")
        if "sha256" not in t:  # typed() would call the absent value "a table None"
            raise self.error(("corpus",), "missing key 'sha256' (a hex sha256, or \"any\")")
        sha = self.typed(("corpus", "sha256"), t["sha256"], str, 'a hex sha256 or "any"')
        if sha != "any" and not re.fullmatch(r"[0-9a-f]{64}", sha):
            raise self.error(
                ("corpus", "sha256"), f'must be 64 lowercase hex digits or "any", got {sha!r}'
            )
        st = self.table(("corpus", "structure"), t.get("structure", {}), STRUCTURE_KEYS)
        for k, v in st.items():
            if k == "ascii":
                self.typed(("corpus", "structure", k), v, bool, "true or false")
            elif self.typed(("corpus", "structure", k), v, int, "an integer") < 0:
                raise self.error(("corpus", "structure", k), "must be >= 0")
        return CorpusContract(False, rng[0], rng[1], sha, dict(st))

    def source(self, where: Path_, raw: object) -> CorpusSource:
        kind = raw.get("kind") if isinstance(raw, dict) else None
        allowed: dict[str, tuple[str, ...]] = {
            "default": ("kind",),
            "file": ("kind", "path"),
            "textarea": ("kind", "path", "id", "filled_at_runtime"),
            "page": ("kind", "site", "page", "selector", "timeout_s", "base"),
        }
        if kind not in allowed:
            self.typed(where, raw, dict, "a table")
            raise self.error((*where, "kind"), f"must be one of {', '.join(allowed)}, got {kind!r}")
        t = self.table(where, raw, allowed[str(kind)])
        line = self.line(where)
        for req in allowed[str(kind)][1:]:
            if req in ("page", "timeout_s", "filled_at_runtime", "base"):
                continue
            if req not in t:
                raise self.error(where, f"a {kind} source needs {req!r}")
        if kind == "default":
            return CorpusSource("default", line)
        if kind == "page":
            site, rel = self.file((*where, "site"), t["site"], directory=True)
            page = self.typed((*where, "page"), t.get("page", "index.html"), str, "a path")
            sel = self.typed((*where, "selector"), t["selector"], str, "a CSS selector")
            timeout = self.typed((*where, "timeout_s"), t.get("timeout_s", 15.0), (int, float),
                                 "seconds")  # fmt: skip
            if timeout <= 0:
                raise self.error((*where, "timeout_s"), "must be > 0")
            base = self.typed((*where, "base"), t.get("base", "/"), str, 'a path such as "/repo/"')
            return CorpusSource("page", line, site, rel, sel, page, float(timeout), base)
        path, rel = self.file((*where, "path"), t["path"])
        if kind == "file":
            return CorpusSource("file", line, path, rel)
        element = self.typed((*where, "id"), t["id"], str, "the textarea's id")
        runtime = self.typed((*where, "filled_at_runtime"), t.get("filled_at_runtime", False),
                             bool, "true or false")  # fmt: skip
        return CorpusSource("textarea", line, path, rel, element, filled_at_runtime=runtime)
