"""A profile's ``[reference]``: make and load the model check's oracle dump of each preset.

Runs before any host starts (from ``run --project``'s plan), so a command that fails, a dump
that does not follow docs/reference-dump.md, or a dump of another architecture than the preset
is a bad configuration: :class:`~harness.profile.ProfileError` at the profile's ``[reference]``
line, exit 2, never a cell that fails for the oracle's fault.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

from harness.profile import Profile, ProfileError, ReferenceProfile
from reference.dump import DumpError, ReferenceDump, load_dump
from reference.presets import ModelConfig

DUMP_DIR = "reference"  # under the run directory: where a command without `dump` writes
STDERR_TAIL = 12  # lines of a failed command's stderr quoted in the error


def config_json(cfg: ModelConfig) -> str:
    """``cfg`` as the JSON object a dump's ``config.model`` holds (the ``{config}`` value)."""
    model = dataclasses.asdict(cfg)
    model["biases"] = list(cfg.biases)
    return json.dumps(model, sort_keys=True)


def dump_path(profile: Profile, ref: ReferenceProfile, preset: str, run_dir: Path) -> Path:
    """Where ``preset``'s dump is: ``dump`` (``{preset}`` filled, relative to the root), else a
    file in the run directory that the command writes."""
    if ref.dump is None:
        return (run_dir / DUMP_DIR / f"{preset}.npz").resolve()
    p = Path(ref.dump.replace("{preset}", preset))
    return p if p.is_absolute() else profile.root / p


def command_argv(ref: ReferenceProfile, cfg: ModelConfig, out: Path) -> list[str]:
    """The command with its placeholders filled for one preset."""
    assert ref.command is not None
    values = {"out": str(out), "preset": cfg.name, "config": config_json(cfg),
              "python": sys.executable}  # fmt: skip
    argv = []
    for arg in ref.command:
        for name, value in values.items():
            arg = arg.replace(f"{{{name}}}", value)
        argv.append(arg)
    return argv


def _run_command(profile: Profile, ref: ReferenceProfile, cfg: ModelConfig, out: Path) -> None:
    where = profile.where(ref.line)
    argv = command_argv(ref, cfg, out)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(argv, cwd=profile.root, capture_output=True, text=True,
                              timeout=ref.timeout_s, check=False)  # fmt: skip
    except FileNotFoundError:
        raise ProfileError(f"{where}: reference.command: program {argv[0]!r} not found") from None
    except subprocess.TimeoutExpired:
        raise ProfileError(
            f"{where}: reference.command for preset {cfg.name!r} ran over {ref.timeout_s:g} s"
        ) from None
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-STDERR_TAIL:])
        raise ProfileError(f"{where}: reference.command for preset {cfg.name!r} exited "
                           f"{done.returncode}: {' '.join(argv)}\n{tail}")  # fmt: skip
    if not out.is_file():
        raise ProfileError(f"{where}: reference.command for preset {cfg.name!r} exited 0 but "
                           f"wrote no dump at {out}")  # fmt: skip


def _differences(found: ModelConfig, expected: ModelConfig) -> list[str]:
    return [
        f"{f.name} {getattr(found, f.name)!r} (preset: {getattr(expected, f.name)!r})"
        for f in dataclasses.fields(ModelConfig)
        if f.name != "name" and getattr(found, f.name) != getattr(expected, f.name)
    ]


def reference_dumps(
    profile: Profile, presets: Iterable[ModelConfig], run_dir: Path
) -> Mapping[str, ReferenceDump]:
    """The oracle dump of each of ``presets`` (by name), made by the profile's command if it
    has one, loaded and validated; ``{}`` when the profile names no reference."""
    ref = profile.reference
    if ref is None:
        return {}
    where = profile.where(ref.line)
    out: dict[str, ReferenceDump] = {}
    for cfg in presets:
        path = dump_path(profile, ref, cfg.name, run_dir)
        if ref.command is not None:
            _run_command(profile, ref, cfg, path)
        try:
            dump = load_dump(path)
        except DumpError as exc:
            raise ProfileError(f"{where}: reference dump of preset {cfg.name!r}: {exc}") from None
        diff = _differences(dump.cfg, cfg)
        if diff:
            raise ProfileError(f"{where}: reference dump {path} is not preset {cfg.name!r}'s "
                               f"model: {'; '.join(diff)}")  # fmt: skip
        out[cfg.name] = dump
    return out
