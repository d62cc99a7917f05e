"""A project's convergence band: the file ``record-convergence`` writes beside a profile.

The bundled band (:data:`harness.convergence.REFERENCE_FILE`) judges our kernels at our
defaults on our corpus. A project trains on its own corpus, at its own hyperparameters and
presets, so its band is recorded for its profile (:mod:`harness.record_convergence`) and kept
beside it, with the provenance that says what it is a band OF: the trainer (our reference, or
the project's own through an artifact's model-level binding), the preset's whole config, the
hyperparameters and where each came from, the corpus's sha256, the seed and steps, the command,
the commits, the machine and the date.

This module owns that file: :func:`load_band` reads and validates it (a :class:`BandError`
names ``file:line``), :func:`band_for_run` refuses a band recorded for another preset, corpus
or defaults than the profile's now, and :func:`band_rows` is the ``corpus`` check's
convergence part in a ``run --project`` cell. The judgement itself (the band's edges, the
trajectory rule) is :mod:`harness.convergence`'s, the same as for the bundled band.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from harness.checks.base import CellContext
from harness.convergence import (
    BOUND_NOT_A_TWIN,
    Band,
    bound_losses,
    final_mean,
    judge,
    judge_trajectory,
    kernel_losses,
)
from harness.profile import Profile, ProfileError
from harness.rundir.rows import Row
from harness.surfaces import SurfaceError
from reference.corpus import CorpusUnavailable, load_corpus
from reference.defaults import DEFAULTS, TrainingDefaults
from reference.presets import PRESETS, ModelConfig
from reference.tokenizer import encode
from reference.train import train_context_length

FORMAT = "tinygpt-harness.convergence-band"
VERSION = 2  # 2: `bands`, one per preset and trainer; 1: one band at the top level
READS = (1, 2)
CHECK = "corpus"
REFERENCE = "reference"  # trainer kind: reference.train (float32 numpy)
ARTIFACT = "artifact"  # trainer kind: an artifact's model-level calls, in a host

# The TrainingDefaults fields a profile's defaults oracle may set for training (the rest, e.g.
# dropout, do not change what the trainers compute)
TRAINING_KEYS = (
    "learning_rate",
    "beta1",
    "beta2",
    "eps",
    "weight_decay",
    "warmup_steps",
    "grad_clip",
    "init_std",
    "batch_size",
    "context_length",
    "seed",
)
_INT_KEYS = {f.name for f in dataclasses.fields(TrainingDefaults) if f.type in (int, "int")}


class BandError(Exception):
    """A band file that cannot be used; the message starts with ``file:line:``."""


@dataclass(frozen=True)
class ProjectBand:
    """A loaded project band: the judged numbers and what they were recorded for."""

    path: Path
    band: Band  # edges, window, steps, seed, preset name, provenance strings
    model: ModelConfig  # the preset's whole config, as recorded
    defaults: TrainingDefaults  # the hyperparameters both recording and checking train with
    corpus_source: str  # where the recorded corpus was read, as recorded
    trainer: Mapping[str, Any]  # {"kind": "reference"} or {"kind": "artifact", ...}
    losses: tuple[float, ...]  # the recorded run at the default rate, every step
    corpus_text: str = dataclasses.field(default="", repr=False)  # filled by band_for_run

    @property
    def by_reference(self) -> bool:
        """Recorded with our reference trainer (its init and batches are the kernel check's)."""
        return self.trainer.get("kind") == REFERENCE

    @property
    def trainer_label(self) -> str:
        """``reference``, or ``ARTIFACT@HOST`` for an artifact's own trainer."""
        if self.by_reference:
            return REFERENCE
        return f"{self.trainer.get('artifact')}@{self.trainer.get('host')}"

    @property
    def key(self) -> str:
        """``preset/trainer``: what a band file holds one band of."""
        return f"{self.band.preset}/{self.trainer_label}"

    def describe(self) -> str:
        """The band's origin, for a row's detail (``Band.describe`` gives its edges)."""
        who = "the reference"
        if not self.by_reference:
            who = f"artifact {self.trainer.get('artifact')} in host {self.trainer.get('host')}"
        return f"the project's band {self.key}, recorded by {who}: {self.path}"


@dataclass(frozen=True)
class BandSet:
    """A band file's bands, one per preset and trainer (version 2; version 1 held one)."""

    path: Path
    bands: tuple[ProjectBand, ...]
    version: int  # as stored
    record: str = ""  # the command that records a missing one (filled by bands_for_run)

    def keys(self) -> str:
        """Every band's key, for messages."""
        return ", ".join(b.key for b in self.bands)

    def of(self, preset: str) -> list[ProjectBand]:
        """The bands recorded at ``preset``, in the file's order."""
        return [b for b in self.bands if b.band.preset == preset]

    def for_cell(self, preset: str, artifact: str, host: str) -> ProjectBand | None:
        """The band that judges a cell: of its preset, recorded by the cell's own artifact in
        its host, else by that artifact in another host, else by the reference, else the
        preset's first. None: the preset has no band."""
        bands = self.of(preset)
        own = [b for b in bands if b.trainer.get("artifact") == artifact]
        for pick in (
            [b for b in own if b.trainer.get("host") == host],
            own,
            [b for b in bands if b.by_reference],
            bands,
        ):
            if pick:
                return pick[0]
        return None


# ---- the profile's side: its corpus and its hyperparameters ----------------------------------


def corpus_for_band(profile: Profile) -> tuple[str, str]:
    """``(text, source)``: the corpus a profile's band is recorded on and checked with.

    ``[convergence] corpus`` if named; else the profile's first ``file`` or ``default`` corpus
    source (a textarea or a page is what the UI shows, not a file a trainer reads); else this
    repository's default corpus.
    """
    conv = profile.convergence
    path: Path | None = None
    source, line = "the default corpus (reference/corpus.py)", 1
    if conv is not None and conv.corpus is not None:
        path, source, line = conv.corpus, conv.corpus_rel, conv.line
    elif profile.corpus is not None:
        for s in profile.corpus.sources:
            if s.kind == "file" and s.path is not None:
                path, source, line = s.path, s.rel, s.line
                break
            if s.kind == "default":
                break
    try:
        return load_corpus(path), source
    except CorpusUnavailable as exc:
        # a file source may be absent when the profile loads (a download not fetched yet:
        # harness.profile); a run or a recording that trains on it cannot start without it
        raise ProfileError(f"{profile.where(line)}: {exc}") from None


def corpus_tokens(text: str, cfg: ModelConfig) -> NDArray[np.int32]:
    """Token ids of ``text`` for ``cfg``: bytes for a 256-id vocabulary, 7-bit ASCII otherwise."""
    if cfg.vocab_size >= 256:
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int32)
    return encode(text)


def training_defaults(profile: Profile) -> tuple[TrainingDefaults, dict[str, str]]:
    """The hyperparameters a profile trains with, and where each came from.

    The profile's defaults oracle (``[defaults.oracle]``) for every :data:`TRAINING_KEYS` key
    it states as a number; ``TrainingDefaults`` for the rest (and for the builtin oracle).
    Raises ProfileError (the oracle's own file:line errors) when the oracle does not parse.
    """
    from harness.project.defaults import oracle_values  # the one oracle reader

    builtin = "reference/defaults.py TrainingDefaults"
    where = dict.fromkeys(TRAINING_KEYS, builtin)
    if profile.defaults is None or profile.defaults.oracle is None:
        return DEFAULTS, where
    try:
        oracle = oracle_values(profile, profile.defaults)
    except SurfaceError as exc:  # the oracle file does not parse
        raise ProfileError(
            f"{profile.where(profile.defaults.line)}: defaults.oracle: {exc}"
        ) from None
    changes: dict[str, Any] = {}
    for key in TRAINING_KEYS:
        if key not in oracle:
            continue
        value, at = oracle[key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue  # not a number: the defaults check says so, training cannot use it
        changes[key] = int(value) if key in _INT_KEYS else float(value)
        where[key] = at
    return dataclasses.replace(DEFAULTS, **changes), where


def defaults_sha256(d: TrainingDefaults) -> str:
    """The sha256 of the training keys of ``d`` (dropout is not one: no trainer has it)."""
    blob = json.dumps({k: getattr(d, k) for k in TRAINING_KEYS}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def text_sha256(text: str) -> str:
    """The corpus's sha256, as the corpus check measures it (its UTF-8 bytes)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def preset_config(profile: Profile, name: str) -> ModelConfig:
    """Preset ``name``: the profile's own, else ours; ProfileError naming both lists."""
    presets = {**PRESETS, **profile.presets}
    if name not in presets:
        raise ProfileError(
            f"{profile.where(1)}: unknown preset {name!r}; known: {', '.join(presets)}"
        )
    return presets[name]


# ---- the file ---------------------------------------------------------------------------------


def _line_of(text: str, key: str, start: int = 0, end: int | None = None) -> int:
    """The line of ``"key":`` in ``text[start:end]`` (one band's span), else of ``start``."""
    m = re.compile(rf'"{re.escape(key)}"\s*:').search(
        text, start, len(text) if end is None else end
    )
    return text.count("\n", 0, m.start() if m else start) + 1


def _spans(text: str, at: int) -> list[tuple[int, int]]:
    """The ``(start, end)`` offsets of each element of the JSON array at ``text[at]``."""
    decoder = json.JSONDecoder()
    spans: list[tuple[int, int]] = []
    i = at + 1
    while True:
        while text[i] in " \t\r\n,":
            i += 1
        if text[i] == "]":
            return spans
        _obj, end = decoder.raw_decode(text, i)
        spans.append((i, end))
        i = end


def load_bands(path: Path) -> BandSet:
    """Read and validate a band file, version 1 (one band) or 2 (``bands``, one per preset
    and trainer); BandError with ``file:line`` on anything wrong."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BandError(f"{path}:1: no band file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BandError(f"{path}:1: cannot read the band file: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BandError(f"{path}:{exc.lineno}: not JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise BandError(f"{path}:1: a band file is a JSON object")
    if data.get("format") != FORMAT:
        raise BandError(
            f"{path}:{_line_of(text, 'format')}: format: must be {FORMAT!r}, got "
            f"{data.get('format')!r} (the bundled band harness/convergence_reference.json is "
            "not a project band)"
        )
    version = data.get("version")
    if version not in READS:
        raise BandError(
            f"{path}:{_line_of(text, 'version')}: version: {version!r}; this harness reads "
            f"versions {', '.join(map(str, READS))}"
        )
    if version == 1:  # one band, its fields at the top level (record-convergence before 2)
        return BandSet(path, (_band(path, text, data, 0, len(text)),), version)
    entries = data.get("bands")
    line = _line_of(text, "bands")
    if not isinstance(entries, list) or not entries:
        raise BandError(f"{path}:{line}: bands: a non-empty array of bands (version 2)")
    m = re.compile(r'"bands"\s*:\s*\[').search(text)
    assert m is not None  # `bands` parsed as a list
    bands: list[ProjectBand] = []
    for entry, (start, end) in zip(entries, _spans(text, m.end() - 1), strict=True):
        where = text.count("\n", 0, start) + 1
        if not isinstance(entry, dict):
            raise BandError(f"{path}:{where}: bands: each band is a JSON object")
        band = _band(path, text, entry, start, end)
        twin = next((b for b in bands if b.key == band.key), None)
        if twin is not None:
            raise BandError(f"{path}:{where}: bands: a second band for {band.key} (one per "
                            "preset and trainer; re-recording replaces it)")  # fmt: skip
        bands.append(band)
    return BandSet(path, tuple(bands), version)


def load_band(path: Path) -> ProjectBand:
    """The one band of a band file (BandError naming its file:line if it holds several)."""
    found = load_bands(path)
    if len(found.bands) != 1:
        raise BandError(f"{path}:1: holds {len(found.bands)} bands ({found.keys()}), not one")
    return found.bands[0]


def _band(path: Path, text: str, data: dict[str, Any], start: int, end: int) -> ProjectBand:
    """One band: the object ``data``, written at ``text[start:end]``."""

    def bad(key: str, what: str) -> BandError:
        return BandError(f"{path}:{_line_of(text, key, start, end)}: {key}: {what}")

    for key in ("lower", "upper", "reference_final", "learning_rate"):
        v = data.get(key)
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise bad(key, f"must be a finite number, got {v!r}")
    for key in ("steps", "seed", "window"):
        v = data.get(key)
        if isinstance(v, bool) or not isinstance(v, int) or (key != "seed" and v < 1):
            raise bad(key, f"must be a positive integer, got {v!r}")
    if not data["lower"] < data["reference_final"] < data["upper"]:
        raise bad(
            "lower",
            f"the band must hold its own run: lower {data['lower']} < "
            f"reference_final {data['reference_final']} < upper {data['upper']}",
        )
    if data["window"] > data["steps"]:
        raise bad("window", f"{data['window']} final steps of {data['steps']}")
    trainer = data.get("trainer")
    if not isinstance(trainer, dict) or trainer.get("kind") not in (REFERENCE, ARTIFACT):
        raise bad("trainer", f'{{"kind": "{REFERENCE}"}} or {{"kind": "{ARTIFACT}", ...}}')
    who = "reference"
    if trainer["kind"] == ARTIFACT:
        who = f"{trainer.get('artifact')} ({trainer.get('host')})"
    names = [f.name for f in dataclasses.fields(Band) if f.name != "trainer"]
    try:
        band = Band(**{k: data[k] for k in names}, trainer=who)
    except KeyError as exc:
        raise BandError(
            f"{path}:{text.count(chr(10), 0, start) + 1}: missing field {exc}"
        ) from None
    try:
        raw_model = dict(data["model"])
        raw_model["biases"] = tuple(raw_model.get("biases", ()))  # a JSON list
        model = ModelConfig(**raw_model)
    except (KeyError, TypeError, ValueError) as exc:
        raise bad("model", f"not a preset config: {exc}") from None
    if model.name != band.preset:
        raise bad("model", f"config of {model.name!r}, but preset is {band.preset!r}")
    raw_defaults = data.get("defaults")
    if not isinstance(raw_defaults, dict) or set(raw_defaults) - set(TRAINING_KEYS):
        raise bad("defaults", f"a table of {', '.join(TRAINING_KEYS)}")
    try:
        defaults = dataclasses.replace(DEFAULTS, **raw_defaults)
    except TypeError as exc:
        raise bad("defaults", str(exc)) from None
    if defaults_sha256(defaults) != band.defaults_sha256:
        raise bad("defaults_sha256", "does not match the file's own defaults (edited by hand?)")
    try:
        losses = tuple(float(v) for v in data["runs"]["default"]["losses"])
    except (KeyError, TypeError, ValueError) as exc:
        raise bad("runs", f"no recorded losses at the default rate: {exc!r}") from None
    if len(losses) != band.steps:
        raise bad("runs", f"{len(losses)} recorded losses for {band.steps} steps")
    for key in ("machine", "command", "commit", "date"):
        if not data.get(key):
            raise bad(key, "missing provenance")
    corpus = data.get("corpus")
    source = corpus.get("source") if isinstance(corpus, dict) else None
    if not isinstance(source, str):
        raise bad("corpus", 'a table {"source": ..., "sha256": ..., "bytes": ...}')
    return ProjectBand(path, band, model, defaults, source, trainer, losses)


def bands_for_run(profile: Profile, preset: str | None) -> BandSet | None:
    """The bands a ``run --project`` run's corpus cells judge, refused when one was recorded for
    another corpus, hyperparameters or preset config than the profile's now.

    None when the profile neither names a band file nor has one by the default name beside it
    (the bundled band then judges, as without ``--project``). ProfileError, at the profile's
    ``[convergence]`` line, for a named file that is missing, a malformed one, a preset the
    run requires without a band (the matrix's ``[check.corpus] preset``, given as ``preset``,
    else each of the profile's ``[convergence] presets``), and a stale band.
    """
    conv = profile.convergence
    if conv is None or (not conv.named and not conv.band.exists()):
        return None
    at = f"{profile.where(conv.line)}: convergence.band ({conv.rel})"
    record = f"tinygpt-harness record-convergence --project {profile.path}"
    try:
        found = load_bands(conv.band)
    except BandError as exc:
        raise ProfileError(f"{at}: {exc}; record it: {record}") from None
    for want in (preset,) if preset is not None else conv.presets:
        if not found.of(want):
            raise ProfileError(
                f"{at}: no band for preset {want!r} (recorded for preset "
                f"{', '.join(repr(b.band.preset) for b in found.bands)}, not {want!r}: "
                f"{found.keys()}); record it: {record} --preset {want}"
            )
    text, source = corpus_for_band(profile)
    sha = text_sha256(text)
    defaults, _where = training_defaults(profile)
    for pb in found.bands:
        if pb.band.preset in {**PRESETS, **profile.presets}:
            cfg = preset_config(profile, pb.band.preset)
            if dataclasses.replace(cfg, name=pb.model.name) != pb.model:
                raise ProfileError(
                    f"{at}: preset {cfg.name!r} changed since the band was recorded "
                    f"({pb.model} then, {cfg} now); re-record it: {pb.band.command}"
                )
        if sha != pb.band.corpus_sha256:
            raise ProfileError(
                f"{at}: {pb.key} recorded on another corpus (sha256 "
                f"{pb.band.corpus_sha256[:12]} from {pb.corpus_source}); the profile's is "
                f"{sha[:12]} ({source}); re-record it: {pb.band.command}"
            )
        if defaults_sha256(defaults) != pb.band.defaults_sha256:
            diff = [
                f"{k} {getattr(pb.defaults, k)!r} then, {getattr(defaults, k)!r} now"
                for k in TRAINING_KEYS
                if getattr(pb.defaults, k) != getattr(defaults, k)
            ]
            raise ProfileError(
                f"{at}: {pb.key} recorded at other hyperparameters than the profile's "
                f"defaults oracle states now ({'; '.join(diff)}); re-record it: "
                f"{pb.band.command}"
            )
    bands = tuple(dataclasses.replace(pb, corpus_text=text) for pb in found.bands)
    return dataclasses.replace(found, bands=bands, record=record)


# ---- the check ---------------------------------------------------------------------------------


def band_rows(ctx: CellContext, bands: BandSet) -> Iterator[Row]:
    """The corpus check's convergence rows against a project's band (``run --project``).

    The band is the one of the cell's preset (or of ``[check.corpus] preset``), recorded by the
    cell's own artifact if there is one (:meth:`BandSet.for_cell`); a preset without a band is
    a ``skipped`` row saying so and how to record it (not a pass). The cell's artifact trains
    as the band was recorded (its preset, hyperparameters, seed, steps, on its corpus): a
    tinygpt.h kernel from the reference's init on the reference's batches, a library bound by
    model calls through them. The final-window mean loss must land in the band;
    ``convergence:trajectory`` compares every step with the recorded run only when that run is
    this one's twin (recorded by the reference, checked on a tinygpt.h kernel: same init, same
    batches).
    """
    opts = ctx.options
    preset = str(opts.get("preset", ctx.preset.name))
    pb = bands.for_cell(preset, ctx.artifact.name, ctx.host)
    if pb is None:
        yield ctx.row(
            CHECK,
            "convergence",
            "skipped",
            detail=f"no convergence band for preset {preset!r} in {bands.path} (it holds "
            f"{bands.keys()}): not judged; record it: {bands.record} --preset {preset}",
        )
        return
    band = pb.band
    if "steps" in opts and opts["steps"] != band.steps:
        yield ctx.row(
            CHECK,
            "convergence",
            "error",
            detail=f"check.corpus.steps={opts['steps']!r} but the project's band {pb.key} in "
            f"{pb.path} was recorded at {band.steps!r}; re-record it",
        )
        return
    defaults = pb.defaults
    lr_overridden = "learning_rate" in opts  # only to demonstrate the gate (a 10x-hot rate)
    if lr_overridden:
        defaults = dataclasses.replace(defaults, learning_rate=float(opts["learning_rate"]))
    tokens = corpus_tokens(pb.corpus_text, pb.model)
    bound = ctx.artifact.bound()
    if bound.abi:
        losses = kernel_losses(ctx.instance, pb.model, tokens, band.steps, defaults, band.seed)
    else:
        losses = bound_losses(
            ctx.instance, bound, pb.model, tokens, band.steps, defaults, band.seed
        )
    yield _trajectory_row(ctx, pb, losses, bound.abi is not None, lr_overridden)
    v = judge(losses, band, defaults)
    yield ctx.row(
        CHECK,
        "convergence",
        "pass" if v.ok else "fail",
        metric="final_loss",
        value=v.final,
        detail=f"{v.detail}; {pb.describe()}",
    )
    for t in range(band.window, band.steps + 1, band.window):
        yield ctx.row(
            CHECK,
            "convergence",
            "measured",
            metric="loss",
            value=final_mean(losses[:t], band.window),
            x_name="step",
            x_value=float(t),
            detail=f"mean of steps {t - band.window + 1}-{t}",
        )


def _trajectory_row(
    ctx: CellContext, pb: ProjectBand, losses: Sequence[float], abi: bool, lr_overridden: bool
) -> Row:
    subject = "convergence:trajectory"
    why = ""
    if lr_overridden:
        why = "learning_rate is overridden: the recorded run is at the profile's rate"
    elif not pb.by_reference:
        why = (
            f"the band was recorded by {pb.trainer.get('artifact')}'s own trainer (its init "
            "and batches): the band judges this run, no recorded run is its step-by-step twin"
        )
    elif not abi:
        why = BOUND_NOT_A_TWIN
    if why:
        return ctx.row(CHECK, subject, "skipped", detail=why)
    T = train_context_length(pb.model, pb.defaults)
    v = judge_trajectory(losses, pb.losses, pb.model, pb.defaults.batch_size, T)
    return ctx.row(
        CHECK,
        subject,
        "pass" if v.ok else "fail",
        metric="worst_ratio",
        value=v.final,
        detail=f"{v.detail}; recorded run in {pb.path}",
    )
