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
``[reference]`` names the model check's oracle when it is not our numpy GPT: a command that
writes a reference dump (docs/reference-dump.md) and/or the dump's path. ``[artifacts.NAME]``
names the project's own binaries by their files, format and binding (no manifest to write, no
hashes to compute); ``run --project PATH`` hashes and adds them to the run's artifacts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from harness.artifact import Artifact, ManifestError, Origin, from_files
from harness.formats import FormatError, all_formats, get_format
from harness.surfaces import FORMAT_OPTIONS, FORMATS
from harness.surfaces.base import EMPTY_COVERS
from harness.toml_lines import Path_, TomlLines, TomlValidator, read_toml
from reference.presets import PRESETS, ModelConfig

PROFILE_NAME = "harness.toml"
DEFAULT_PROFILE = Path(__file__).parent / "profiles" / "default.toml"
ARTIFACT_KEYS = ("format", "files", "path", "binding", "ptr_width", "sha256", "target",
                 "toolchain", "flags")  # fmt: skip
# a [presets.NAME] table's keys: ModelConfig's fields but its name; the dims are required
PRESET_FIELDS = tuple(f.name for f in fields(ModelConfig) if f.name != "name")
PRESET_REQUIRED = ("n_layer", "n_head", "n_embd", "block_size")


# The placeholders a [reference] command may use, filled per preset (harness/project/reference.py)
REFERENCE_PLACEHOLDERS = ("out", "preset", "config", "python")

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
class ReferenceProfile:
    """The ``[reference]`` section: how the model check's oracle dump of a preset is made.

    ``command`` (argv, run in the project root) writes the dump to ``{out}``; ``dump`` is its
    path (``{preset}`` filled), read as is when there is no command. With both, the command's
    ``{out}`` is the dump path.
    """

    command: tuple[str, ...] | None
    dump: str | None  # as written, relative to the root, may hold {preset}
    timeout_s: float
    line: int


@dataclass(frozen=True)
class ConvergenceProfile:
    """The ``[convergence]`` section: where the project's convergence band is kept, and what
    ``record-convergence`` records it for (harness/convergence_band.py, docs/profiles.md).

    The band file need not exist when the profile loads (``record-convergence`` writes it); a
    run that judges convergence needs it, and a missing or malformed one is then an error at
    this section's ``band`` line.
    """

    band: Path  # absolute
    rel: str  # as written (or the default name), for messages
    named: bool  # the profile names the file (else: the default name beside the profile)
    line: int  # the line of `band` (or of [convergence]) for messages
    # the presets record-convergence records (`preset = "x"` or `presets = [...]`; default:
    # tiny) and a `run --project` requires a band for (each preset has its own band)
    presets: tuple[str, ...] = ()
    steps: int | None = None  # ... over this many steps (default: the bundled band's, 300)
    corpus: Path | None = None  # the text it trains on (default: see corpus_for_band)
    corpus_rel: str = ""


@dataclass(frozen=True)
class ProfileArtifact:
    """One ``[artifacts.NAME]`` table: a project's own binary, named by its files (no manifest).

    :meth:`build` hashes the files and reads what they declare (:func:`harness.artifact.
    from_files`) when a run needs it, not when the profile loads (text-only checks never do).
    """

    name: str
    format: str
    files: Mapping[str, Path]  # role -> absolute path, as the format names its roles
    binding: Path | None
    ptr_width: int | None  # None: read from the files
    sha256: str | None  # a pin of the set's hash; None: whatever the files hash to now
    target: str
    toolchain: str
    flags: tuple[str, ...]
    where: str  # ``file:line`` of the table

    def build(self) -> Artifact:
        """The artifact, hashed now; ProfileError at the table's ``file:line`` if the files do
        not make one (a pin they miss, a width they cannot tell, a binding that does not load)."""
        try:
            return from_files(
                self.name, self.format, self.files, binding=self.binding,
                ptr_width=self.ptr_width, sha256=self.sha256, target=self.target,
                toolchain=self.toolchain, flags=self.flags,
                origin=Origin("profile", self.where),
            )  # fmt: skip
        except ManifestError as exc:
            raise ProfileError(f"{self.where}: artifacts.{self.name}: {exc}") from None


DEFAULT_BAND_NAME = "convergence-band.json"  # beside the profile, when [convergence] names none


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
    reference: ReferenceProfile | None = None  # None: our numpy reference is the oracle
    # where the convergence band is; a profile without [convergence] has the default name
    convergence: ConvergenceProfile | None = None
    # [artifacts.NAME]: the project's own binaries, which `run --project` adds to the manifest's
    artifacts: Mapping[str, ProfileArtifact] = field(default_factory=dict)

    def where(self, line: int) -> str:
        """``file:line`` of the profile, for messages."""
        return f"{self.path}:{line}"

    @property
    def is_default(self) -> bool:
        """True for the bundled profile of this repository."""
        return self.path.resolve() == DEFAULT_PROFILE.resolve()


def with_artifacts(
    profile: Profile, manifest: Mapping[str, Artifact], source: Path
) -> dict[str, Artifact]:
    """``manifest``'s artifacts (read from ``source``) joined by the profile's own
    ``[artifacts.NAME]``, hashed now: the artifacts ``run --project`` and the gate's
    ``--artifacts PROFILE`` see. ProfileError at the table's ``file:line`` for an artifact that
    does not build, or a name the manifest also has (one name, two binaries, would let a run
    measure one and a rerun the other)."""
    own = {name: spec.build() for name, spec in profile.artifacts.items()}
    taken = sorted(set(own) & set(manifest))
    if taken:
        raise ProfileError(
            f"{profile.artifacts[taken[0]].where}: artifact name {taken[0]!r} is also in the "
            f"manifest {source}; give the project's artifacts their own names"
        )
    return {**manifest, **own}


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
    data, text = read_toml(path, ProfileError, "profile")
    return _Validator(path, TomlLines(text)).profile(data, text)


class _Validator(TomlValidator):
    """Checks the parsed TOML piece by piece; every error carries the offending line."""

    error_class = ProfileError
    document = "(profile)"

    def __init__(self, path: Path, lines: TomlLines) -> None:
        super().__init__(path, lines)
        self.root = path.parent

    def file(
        self, where: Path_, value: object, *, directory: bool = False, exists: bool = True
    ) -> tuple[Path, str]:
        rel = self.typed(where, value, str, "a path (relative to the project root)")
        p = Path(rel)
        p = p if p.is_absolute() else self.root / p
        ok = p.is_dir() if directory else p.is_file()
        if not ok and exists:
            kind = "directory" if directory else "file"
            if p.exists():  # there, but the other kind: "not found" would send the user looking
                found = "a directory" if p.is_dir() else "not a directory"
                raise self.error(where, f"{kind} {rel!r} is {found} ({p})")
            raise self.error(where, f"{kind} {rel!r} not found (looked at {p})")
        return p, rel

    # -- sections ----------------------------------------------------------------------------

    def profile(self, data: Mapping[str, Any], text: str) -> Profile:
        self.table((), data, ("project", "defaults", "corpus", "claims", "presets", "reference",
                              "convergence", "artifacts"))  # fmt: skip
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
        reference = self.reference(data["reference"]) if "reference" in data else None
        convergence = self.convergence(data.get("convergence", {}), "convergence" in data)
        for i, preset in enumerate(convergence.presets):
            if preset in {**PRESETS, **presets}:
                continue
            where: Path_ = ("convergence", "preset")
            if "presets" in data.get("convergence", {}):
                where = ("convergence", "presets", i)
            known = ", ".join([*PRESETS, *presets])
            raise self.error(where, f"unknown preset {preset!r}; known: {known}")
        artifacts = self.artifacts(data["artifacts"]) if "artifacts" in data else {}
        return Profile(self.path, self.root, name, defaults, corpus, claims, text, presets,
                       reference, convergence, artifacts)  # fmt: skip

    def artifacts(self, raw: object) -> dict[str, ProfileArtifact]:
        """``[artifacts.NAME]``: a format, its files by role (``path`` for a one-file format),
        and optionally a binding, a pointer width, a sha256 pin and descriptive strings."""
        out: dict[str, ProfileArtifact] = {}
        self.typed(("artifacts",), raw, dict, "a table of [artifacts.NAME] tables")
        assert isinstance(raw, dict)
        for name, t in raw.items():
            where: Path_ = ("artifacts", name)
            t = self.table(where, t, ARTIFACT_KEYS)
            if "format" not in t:
                raise self.error(where, "missing key 'format' (one of: " + ", ".join(
                    all_formats()) + ")")  # fmt: skip
            fmt_name = self.typed((*where, "format"), t["format"], str, "a format name")
            try:
                fmt = get_format(fmt_name)
            except FormatError as exc:
                raise self.error((*where, "format"), str(exc)) from None
            files: dict[str, Path] = {}
            if ("files" in t) == ("path" in t):
                roles_named = ", ".join(fmt.roles)
                raise self.error(where, "give `files` (role = path) or, for a one-file format, "
                                 f"`path`; format {fmt.name}'s roles: {roles_named}")  # fmt: skip
            if "path" in t:
                files[fmt.roles[0]] = self.file((*where, "path"), t["path"])[0]
            else:
                roles = self.typed((*where, "files"), t["files"], dict, "a table role = path")
                for role, rel in roles.items():
                    files[role] = self.file((*where, "files", role), rel)[0]
            problem = fmt.check_roles(list(files))
            if problem:
                raise self.error((*where, "files" if "files" in t else "path"), problem)
            binding = self.file((*where, "binding"), t["binding"])[0] if "binding" in t else None
            width = None
            if "ptr_width" in t:
                width = self.typed((*where, "ptr_width"), t["ptr_width"], int, "32 or 64")
                if width not in (32, 64):
                    raise self.error((*where, "ptr_width"), f"must be 32 or 64, got {width}")
            pin = None
            if "sha256" in t:
                pin = self.typed((*where, "sha256"), t["sha256"], str, "a sha256 (64 hex digits)")
                if not re.fullmatch(r"[0-9a-f]{64}", pin):
                    raise self.error((*where, "sha256"), f"not a sha256 (64 hex digits): {pin!r}")
            strings = {
                k: self.typed((*where, k), t[k], str, "a string") if k in t else ""
                for k in ("target", "toolchain")
            }
            flags = self.strings((*where, "flags"), t["flags"]) if "flags" in t else ()
            out[name] = ProfileArtifact(
                name, fmt.name, files, binding, width, pin, strings["target"],
                strings["toolchain"], flags, f"{self.path}:{self.line(where)}",
            )  # fmt: skip
        return out

    def convergence(self, raw: object, present: bool) -> ConvergenceProfile:
        """``[convergence]``: ``band`` (a path beside the profile), ``preset``, ``steps``,
        ``corpus``; absent: the default band name beside the profile."""
        t = self.table(("convergence",), raw, ("band", "preset", "presets", "steps", "corpus"))
        line = self.line(("convergence",)) if present else 1
        rel = DEFAULT_BAND_NAME
        if "band" in t:
            rel = self.typed(("convergence", "band"), t["band"], str, "a path (beside the profile)")
            line = self.line(("convergence", "band"))
        band = Path(rel) if Path(rel).is_absolute() else self.path.parent / rel
        presets: tuple[str, ...] = ()
        if "preset" in t and "presets" in t:
            raise self.error(("convergence", "presets"), "give preset or presets, not both")
        if "preset" in t:
            presets = (self.typed(("convergence", "preset"), t["preset"], str, "a preset name"),)
        if "presets" in t:
            presets = self.strings(("convergence", "presets"), t["presets"])
            if not presets:
                raise self.error(("convergence", "presets"), "must name at least one preset")
            for i, name in enumerate(presets):
                if name in presets[:i]:
                    raise self.error(("convergence", "presets", i), f"{name!r} is listed twice")
        steps = None
        if "steps" in t:
            steps = self.typed(("convergence", "steps"), t["steps"], int, "an integer")
            if steps < 1:
                raise self.error(("convergence", "steps"), "must be >= 1")
        corpus, corpus_rel = None, ""
        if "corpus" in t:
            corpus, corpus_rel = self.file(("convergence", "corpus"), t["corpus"])
        return ConvergenceProfile(band.resolve(), rel, "band" in t, line, presets, steps, corpus,
                                  corpus_rel)  # fmt: skip

    def reference(self, raw: object) -> ReferenceProfile:
        """``[reference]``: ``command`` (argv with placeholders) and/or ``dump`` (a path)."""
        t = self.table(("reference",), raw, ("command", "dump", "timeout_s"))
        if "command" not in t and "dump" not in t:
            raise self.error(("reference",), "needs 'command' (writes the dump) and/or 'dump'")
        command = None
        if "command" in t:
            command = self.strings(("reference", "command"), t["command"])
            if not command:
                raise self.error(("reference", "command"), "must name a program (argv)")
            for i, arg in enumerate(command):
                for name in re.findall(r"\{([^{}]*)\}", arg):
                    if name not in REFERENCE_PLACEHOLDERS:
                        known = ", ".join(f"{{{p}}}" for p in REFERENCE_PLACEHOLDERS)
                        why = f"unknown placeholder {{{name}}}; known: {known}"
                        raise self.error(("reference", "command", i), why)
            if "dump" not in t and not any("{out}" in a for a in command):
                why = "without 'dump', the command must write to {out}"
                raise self.error(("reference", "command"), why)
        dump = None
        if "dump" in t:
            dump = self.typed(("reference", "dump"), t["dump"], str, "a path (may hold {preset})")
            bad = [n for n in re.findall(r"\{([^{}]*)\}", dump) if n != "preset"]
            if bad:
                raise self.error(("reference", "dump"), f"unknown placeholder {{{bad[0]}}}; "
                                 "a dump path may hold {preset}")  # fmt: skip
            if command is None and "{preset}" not in dump:
                self.file(("reference", "dump"), dump)  # read as is: it must exist now
        timeout = self.typed(("reference", "timeout_s"), t.get("timeout_s", 600), (int, float),
                             "seconds")  # fmt: skip
        if timeout <= 0:
            raise self.error(("reference", "timeout_s"), "must be > 0")
        return ReferenceProfile(command, dump, float(timeout), self.line(("reference",)))

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
            if not covers:
                raise self.error(
                    (*where, "covers"),
                    EMPTY_COVERS,
                )
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
            # a built site is a build's output: its absence is the source's error when it is
            # read (check corpus), not a bad profile that would stop every other check
            site, rel = self.file((*where, "site"), t["site"], directory=True, exists=False)
            page = self.typed((*where, "page"), t.get("page", "index.html"), str, "a path")
            sel = self.typed((*where, "selector"), t["selector"], str, "a CSS selector")
            timeout = self.typed((*where, "timeout_s"), t.get("timeout_s", 15.0), (int, float),
                                 "seconds")  # fmt: skip
            if timeout <= 0:
                raise self.error((*where, "timeout_s"), "must be > 0")
            base = self.typed((*where, "base"), t.get("base", "/"), str, 'a path such as "/repo/"')
            return CorpusSource("page", line, site, rel, sel, page, float(timeout), base)
        if kind == "file":
            # a corpus file is often a download the repository ignores (tiny Shakespeare): its
            # absence is the source's error when check corpus reads it, not a bad profile that
            # would stop check defaults and check claims too
            path, rel = self.file((*where, "path"), t["path"], exists=False)
            return CorpusSource("file", line, path, rel)
        path, rel = self.file((*where, "path"), t["path"])
        element = self.typed((*where, "id"), t["id"], str, "the textarea's id")
        runtime = self.typed((*where, "filled_at_runtime"), t.get("filled_at_runtime", False),
                             bool, "true or false")  # fmt: skip
        return CorpusSource("textarea", line, path, rel, element, filled_at_runtime=runtime)
