"""``tinygpt-harness record-convergence --project PATH``: record a profile's convergence band.

The corpus check of ``run --project`` judges the cell's training run against a loss band. This
command records that band FOR THE PROFILE: at its preset, its defaults oracle's hyperparameters
(:func:`harness.convergence_band.training_defaults`) and on its corpus
(:func:`harness.convergence_band.corpus_for_band`). The trainer is our reference
(``reference.train``, float32 numpy; the default) or, with ``--artifact NAME --host HOST``, the
project's own trainer: the artifact's model-level calls through its binding (a tinygpt.h kernel's
``tg_model_train_step``, or a bound library's ``train_step``, e.g. lib2) in that host.

The band is derived as the bundled one is (:mod:`harness.convergence`): the trainer runs at the
rate, at rate x sqrt(10) and at rate / sqrt(10); the hot run's final-window mean loss is the
lower edge, the cold run's the upper. A trainer whose loss is not monotonic in the rate over
the steps asked yields no band (exit 1, "choose more steps"). Written beside the profile
(``[convergence] band``, else ``convergence-band.json``) with its provenance: the command, the
harness's and the project's commits, the machine's fingerprint, the trainer (and the host's
version and the artifact's sha256), the preset's config, every hyperparameter and where it came
from, the corpus's source and sha256, the seed, the steps and the date.

Exit 0 written, 1 no band could be derived or the trainer failed, 2 bad profile or arguments.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from harness.artifact import Artifact, ManifestError, load_manifest
from harness.bindings.model_layout import layout_of, library_config
from harness.build import BUNDLED_MANIFEST
from harness.convergence import band_runs, bound_losses, kernel_losses
from harness.convergence_band import (
    ARTIFACT,
    FORMAT,
    REFERENCE,
    TRAINING_KEYS,
    VERSION,
    BandError,
    BandSet,
    corpus_for_band,
    corpus_tokens,
    defaults_sha256,
    load_bands,
    preset_config,
    text_sha256,
    training_defaults,
)
from harness.machine import fingerprint
from harness.profile import Profile, ProfileError, find_profile, load_profile
from harness.project.reference import config_json
from harness.rundir.meta import git_state
from reference.defaults import TrainingDefaults
from reference.presets import ModelConfig
from reference.train import train

DEFAULT_PRESET = "tiny"  # the bundled band's
DEFAULT_STEPS = 300  # the bundled band's: enough for the rates to order their losses
DEFAULT_WINDOW = 25


Trainer = Callable[[TrainingDefaults], list[float]]


class RecordError(Exception):
    """No band: the trainer failed, or its losses do not order with the rate. Exit 1."""


@dataclasses.dataclass(frozen=True)
class Request:
    """What to record: resolved from the command line and the profile's ``[convergence]``."""

    profile: Profile
    cfg: ModelConfig
    steps: int
    window: int
    seed: int
    defaults: TrainingDefaults
    defaults_source: dict[str, str]
    text: str
    corpus_source: str


def reference_trainer(req: Request) -> Trainer:
    """Our reference, float32 numpy, from its init on its batches."""
    tokens = corpus_tokens(req.text, req.cfg)
    return lambda d: train(req.cfg, tokens, req.steps, d, req.seed)


def record(
    req: Request, trainer: Trainer, trainer_info: dict[str, Any], command: str
) -> dict[str, Any]:
    """Run ``trainer`` at the rate and x/÷ sqrt(10); the band file's content."""
    lr = req.defaults.learning_rate
    try:
        runs = band_runs(
            lambda rate: trainer(dataclasses.replace(req.defaults, learning_rate=rate)),
            lr,
            req.window,
            f"{req.cfg.name}/{req.steps} steps",
        )
    except ValueError as e:
        raise RecordError(str(e)) from e
    finals = {k: v[2] for k, v in runs.items()}
    return {  # one entry of the band file's `bands` (write_band adds format and version)
        "schema": 1,  # harness.convergence.Band's fields, read by the same judge
        "command": command,
        "commit": git_state(Path(__file__).resolve().parents[1]).get("commit") or "unknown",
        "project_commit": git_state(req.profile.root),
        "machine": fingerprint(),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "profile": {"name": req.profile.name, "path": str(req.profile.path)},
        "trainer": trainer_info,
        "preset": req.cfg.name,
        "model": json.loads(config_json(req.cfg)),
        "steps": req.steps,
        "seed": req.seed,
        "window": req.window,
        "learning_rate": lr,
        "lower": finals["hot"],
        "upper": finals["cold"],
        "reference_final": finals["default"],
        "defaults_sha256": defaults_sha256(req.defaults),
        "defaults": {k: getattr(req.defaults, k) for k in TRAINING_KEYS},
        "defaults_source": req.defaults_source,
        "corpus_sha256": text_sha256(req.text),
        "corpus": {
            "source": req.corpus_source,
            "sha256": text_sha256(req.text),
            "bytes": len(req.text.encode("utf-8")),
        },
        "runs": {
            k: {"learning_rate": r, "final_mean": f, "losses": ls} for k, (r, ls, f) in runs.items()
        },
    }


def presets_to_record(profile: Profile, given: Sequence[str] | None, every: bool) -> list[str]:
    """The presets to record: ``--preset`` (repeatable); with ``--all-presets`` the profile's
    ``[convergence] presets`` and every ``[presets.NAME]``; else ``[convergence] presets``,
    else tiny. ProfileError for an unknown name."""
    conv = profile.convergence
    listed = list(conv.presets) if conv is not None else []
    if every:
        names = list(dict.fromkeys([*listed, *profile.presets]))
        if not names:
            raise ProfileError(
                f"{profile.where(1)}: --all-presets: the profile has neither [convergence] "
                "presets nor [presets.NAME] tables; name one with --preset"
            )
    else:
        names = list(dict.fromkeys(given)) if given else listed or [DEFAULT_PRESET]
    for name in names:
        preset_config(profile, name)  # ProfileError: unknown, naming both lists
    return names


def request(
    profile: Profile, preset: str, steps: int | None, seed: int | None, window: int
) -> Request:
    """The recording of ``preset`` the command line and the profile ask for; ProfileError if
    it cannot be."""
    conv = profile.convergence
    cfg = preset_config(profile, preset)
    n = steps or (conv.steps if conv is not None else None) or DEFAULT_STEPS
    if window > n:
        raise ProfileError(f"{profile.where(1)}: --window {window} is more than {n} steps")
    defaults, where = training_defaults(profile)
    text, source = corpus_for_band(profile)
    return Request(
        profile,
        cfg,
        n,
        window,
        defaults.seed if seed is None else seed,
        defaults,
        where,
        text,
        source,
    )


def artifact_trainer(
    req: Request, artifact: Artifact, host_name: str
) -> tuple[Trainer, dict[str, Any], Callable[[], None]]:
    """The artifact's own trainer in ``host_name``: the trainer, its provenance, and a closer."""
    from harness.hosts.registry import make_host

    host = make_host(host_name)
    reason = host.can_load(artifact)
    if reason is not None:
        host.close()
        raise RecordError(f"host {host_name} cannot load {artifact.name}: {reason}")
    version = host.version()
    instance = host.load(artifact)
    tokens = corpus_tokens(req.text, req.cfg)
    binding = artifact.bound()

    def run(d: TrainingDefaults) -> list[float]:
        if binding.abi:
            return kernel_losses(instance, req.cfg, tokens, req.steps, d, req.seed)
        return bound_losses(instance, binding, req.cfg, tokens, req.steps, d, req.seed)

    def close() -> None:
        instance.close()
        host.close()

    note = ""
    if not binding.abi:  # e.g. a byte-level library runs a 7-bit preset at its vocabulary
        note = library_config(req.cfg, layout_of(binding).params)[1]
    info = {
        "kind": ARTIFACT,
        "artifact": artifact.name,
        "artifact_sha256": artifact.sha256,
        "host": host_name,
        "host_version": version,
        "calls": "tinygpt.h tg_model_train_step"
        if binding.abi
        else f"{binding.name} binding's model calls ({binding.path})",
    }
    if note:
        info["model_note"] = note
    return run, info, close


# ---- command line -----------------------------------------------------------------------------


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the command's arguments."""
    parser.add_argument(
        "--project",
        type=Path,
        required=True,
        help="the project's directory (holding harness.toml) or a profile file",
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--preset",
        action="append",
        help="a preset to record a band for, ours or the profile's own; repeatable (default: "
        f"the profile's [convergence] presets, else {DEFAULT_PRESET})",
    )
    which.add_argument(
        "--all-presets",
        action="store_true",
        help="record every preset of the profile: [convergence] presets and [presets.NAME]",
    )
    parser.add_argument("--steps", type=int, help=f"train steps (default {DEFAULT_STEPS})")
    parser.add_argument(
        "--window",
        type=int,
        default=DEFAULT_WINDOW,
        help="final steps averaged (default %(default)s)",
    )
    parser.add_argument("--seed", type=int, help="init and batch seed (default: the defaults')")
    parser.add_argument("--artifact", help="train with this artifact's own trainer (needs --host)")
    parser.add_argument("--host", help="the host that loads --artifact")
    parser.add_argument(
        "--artifacts",
        type=Path,
        default=BUNDLED_MANIFEST,
        help="artifact manifest.json (default %(default)s)",
    )
    parser.add_argument("--out", type=Path, help="write here instead of the profile's band file")


def execute(args: argparse.Namespace) -> int:
    """Record and write the band; 0 written, 1 no band, 2 bad profile or arguments."""
    if (args.artifact is None) != (args.host is None):
        print("record-convergence: --artifact and --host go together", file=sys.stderr)
        return 2
    if (args.steps is not None and args.steps < 1) or args.window < 1:
        print("record-convergence: --steps and --window must be >= 1", file=sys.stderr)
        return 2
    try:
        profile = load_profile(find_profile(args.project))
        reqs = [
            request(profile, name, args.steps, args.seed, args.window)
            for name in presets_to_record(profile, args.preset, args.all_presets)
        ]
    except ProfileError as exc:
        print(f"record-convergence: {exc}", file=sys.stderr)
        return 2
    assert profile.convergence is not None  # the loader always fills it
    out: Path = args.out or profile.convergence.band
    if out.exists():  # the file's other bands are kept: it must be one the harness can read
        try:
            load_bands(out)
        except BandError as exc:
            print(f"record-convergence: {exc} (fix or remove it; re-recording keeps the file's "
                  "other bands)", file=sys.stderr)  # fmt: skip
            return 2
    artifact: Artifact | None = None
    if args.artifact in profile.artifacts:  # the project's own binary, hashed now
        try:
            artifact = profile.artifacts[args.artifact].build()
        except ProfileError as exc:
            print(f"record-convergence: {exc}", file=sys.stderr)
            return 2
    elif args.artifact is not None:
        try:
            artifacts = load_manifest(args.artifacts)
        except (FileNotFoundError, ManifestError) as exc:
            print(f"record-convergence: {args.artifacts}: {exc}", file=sys.stderr)
            return 2
        if args.artifact not in artifacts:
            print(
                f"record-convergence: no artifact {args.artifact!r} in {args.artifacts} or the "
                f"profile's [artifacts]; known: {', '.join([*artifacts, *profile.artifacts])}",
                file=sys.stderr,
            )
            return 2
        artifact = artifacts[args.artifact]
    failed = 0
    for req in reqs:
        code = _record_one(req, artifact, args, out)
        if code == 2:
            return 2
        failed += code
    return 1 if failed else 0


def _record_one(
    req: Request, artifact: Artifact | None, args: argparse.Namespace, out: Path
) -> int:
    """Record ``req``'s band and write it into ``out`` beside the file's other bands; 0 written,
    1 no band, 2 bad arguments (an unknown host)."""
    command = _command(args, req.cfg.name)
    close: Callable[[], None] = lambda: None  # noqa: E731
    try:
        if artifact is None:
            trainer, info = reference_trainer(req), {"kind": REFERENCE, "calls": "reference.train"}
        else:
            trainer, info, close = artifact_trainer(req, artifact, args.host)
        data = record(req, trainer, info, command)
    except ValueError as exc:  # an unknown host name
        print(f"record-convergence: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # the trainer failed (a host error, a preset it cannot express)
        print(f"record-convergence: no band at {req.cfg.name}: {type(exc).__name__}: {exc}",
              file=sys.stderr)  # fmt: skip
        return 1
    finally:
        close()
    key = write_band(out, data)
    print(
        f"wrote {key} to {out}: band [{data['lower']:.4f}, {data['upper']:.4f}] at "
        f"{req.cfg.name}, {req.steps} steps, lr {req.defaults.learning_rate:g}; {info['kind']} "
        f"final {data['reference_final']:.4f}"
    )
    return 0


def _command(args: argparse.Namespace, preset: str) -> str:
    """The command line that re-records this band, of ``preset`` (from the parsed arguments:
    the same whether it ran from a shell, ``python -m`` or a test)."""
    argv = ["tinygpt-harness", "record-convergence", "--project", str(args.project)]
    argv += ["--preset", preset]
    for flag in ("steps", "seed", "artifact", "host"):
        if getattr(args, flag) is not None:
            argv += [f"--{flag}", str(getattr(args, flag))]
    if args.window != DEFAULT_WINDOW:
        argv += ["--window", str(args.window)]
    if args.artifact is not None and args.artifacts != BUNDLED_MANIFEST:
        argv += ["--artifacts", str(args.artifacts)]
    return shlex.join(argv)


def write_band(path: Path, entry: dict[str, Any]) -> str:
    """Write ``entry`` into the band file at ``path`` (version 2), replacing the band of the
    same preset and trainer in its place and keeping the others (a version 1 file's one band
    included), each read back through the loader first (a file it writes must load). Returns
    the band's key."""
    tmp = path.with_name(f".{path.name}.tmp")

    def dump(entries: list[dict[str, Any]]) -> BandSet:
        data = {"format": FORMAT, "version": VERSION, "bands": entries}
        tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        return load_bands(tmp)

    key = dump([entry]).bands[0].key
    entries = [entry]
    if path.exists():
        old = load_bands(path)  # the caller checked it loads
        raw = json.loads(path.read_text(encoding="utf-8"))
        kept = raw["bands"] if old.version == 2 else [
            {k: v for k, v in raw.items() if k not in ("format", "version")}
        ]  # fmt: skip
        keys = [b.key for b in old.bands]
        entries = [entry if k == key else e for e, k in zip(kept, keys, strict=True)]
        if key not in keys:
            entries.append(entry)
    dump(entries)
    tmp.replace(path)
    return key


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m harness.record_convergence``."""
    p = argparse.ArgumentParser(prog="tinygpt-harness record-convergence", description=__doc__)
    configure(p)
    return execute(p.parse_args(argv))
