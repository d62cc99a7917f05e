"""A profile's ``[reference]``: make and load the model check's oracle dump of each preset.

Runs before any host starts (from ``run --project``'s plan), so a command that fails, a dump
that does not follow docs/reference-dump.md, a dump of another architecture than the preset,
or one whose own arrays do not follow from its own parameters (its self-check,
:mod:`harness.checks.dump_selfcheck`) is a bad configuration:
:class:`~harness.profile.ProfileError` at the profile's ``[reference]`` line, exit 2, never a
cell that fails for the oracle's fault.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import select
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from harness.checks import dump_selfcheck
from harness.profile import Profile, ProfileError, ReferenceProfile
from reference.dump import DumpError, ReferenceDump, file_sha256, load_dump
from reference.presets import ModelConfig

DUMP_DIR = "reference"  # under the run directory: where a command without `dump` writes
SCRATCH_DIR = ".resume"  # beside a kept dump: where a --resume's command writes its new one
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


def wait_exited(proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    """Wait until ``proc`` exits, without reaping it; TimeoutExpired after ``timeout_s``.

    Unreaped (a zombie), the leader keeps its pid, and with it the process group id, from
    reuse: :func:`_kill_group` then kills the command's own group. Reaped first, as
    ``Popen.wait`` does, a new process could take the pid as its group id before the kill.
    """
    fd = os.pidfd_open(proc.pid)  # readable once the process has exited (Linux >= 5.3)
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        if not poller.poll(max(0, math.ceil(timeout_s * 1000))):
            raise subprocess.TimeoutExpired(proc.args, timeout_s)
    finally:
        os.close(fd)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Kill the command's whole process group (its children too), then reap the leader, which
    must not have been reaped before (:func:`wait_exited`)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):  # already gone
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _run_command(profile: Profile, ref: ReferenceProfile, cfg: ModelConfig, out: Path) -> None:
    where = profile.where(ref.line)
    argv = command_argv(ref, cfg, out)
    said = f"{shlex.join(argv)}\n(run in {profile.root})"  # pasteable into a shell, and where
    out.parent.mkdir(parents=True, exist_ok=True)
    # stderr goes to a file, not a pipe: waiting on a pipe waits for every process holding it,
    # so a writer that exits 0 but leaves a background child (a logger, a compile worker) was
    # waited on until timeout_s and then called slow. The direct child's exit is what counts.
    with tempfile.TemporaryFile(mode="w+t", errors="replace") as errors:
        try:
            # A session of its own: a timeout or the run's Ctrl-C/SIGTERM kills the command's
            # whole group (a shell script's `sleep &`, a data loader's workers), not the
            # direct child only.
            proc = subprocess.Popen(
                argv,
                cwd=profile.root,
                stdout=subprocess.DEVNULL,
                stderr=errors,
                start_new_session=True,
            )
        except FileNotFoundError:
            raise ProfileError(
                f"{where}: reference.command: program {argv[0]!r} not found"
            ) from None
        except OSError as exc:  # not executable, say
            raise ProfileError(f"{where}: reference.command: cannot run {argv[0]!r}: "
                               f"{exc.strerror}") from None  # fmt: skip
        try:
            wait_exited(proc, ref.timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise ProfileError(f"{where}: reference.command for preset {cfg.name!r} ran over "
                               f"{ref.timeout_s:g} s (killed with its process group): "
                               f"{said}") from None  # fmt: skip
        except BaseException:  # the run's Ctrl-C/SIGTERM (KeyboardInterrupt): stop it too
            _kill_group(proc)
            raise
        # what the command left running in its group is stray once it has exited: killed, so
        # no writer's child outlives the run (one that left the group by setsid cannot be seen)
        _kill_group(proc)
        errors.seek(0)
        stderr = errors.read()
    if proc.returncode != 0:
        tail = "\n".join(stderr.strip().splitlines()[-STDERR_TAIL:])
        raise ProfileError(f"{where}: reference.command for preset {cfg.name!r} exited "
                           f"{proc.returncode}: {said}\n{tail}")  # fmt: skip
    if not out.is_file():
        raise ProfileError(f"{where}: reference.command for preset {cfg.name!r} exited 0 but "
                           f"wrote no dump at {out}")  # fmt: skip


def _rerun_command(
    profile: Profile, ref: ReferenceProfile, cfg: ModelConfig, path: Path, was: str | None
) -> None:
    """A --resume's run of the command: into a scratch file beside ``path``, which replaces
    ``path`` only when it is the dump the run was judged by (sha256 ``was``); otherwise a
    ProfileError, and ``path`` (the run's kept dump) is left as it was."""
    scratch_dir = path.parent / SCRATCH_DIR
    scratch = scratch_dir / path.name  # the same file name: only the directory differs
    try:
        _run_command(profile, ref, cfg, scratch)
        now = file_sha256(scratch)
        if now != was:
            # A bad file (a truncated write) differs too, but "the writer changed" would send
            # the user after the wrong cause, and the scratch file is removed below.
            try:
                load_dump(scratch, expect=cfg)
            except DumpError as exc:
                raise ProfileError(
                    f"{profile.where(ref.line)}: --resume refused: the reference command's new "
                    f"dump of preset {cfg.name!r} is bad: {exc}; the run's dump {path} is left "
                    "as it was"
                ) from None
            before = was or "none recorded"
            raise ProfileError(
                f"{profile.where(ref.line)}: --resume refused: the reference command now writes "
                f"a different dump of preset {cfg.name!r} (sha256 {now}, was {before}): the "
                f"writer changed or is not deterministic; the run's dump {path} is left as it "
                "was (a new run with --out judges by the new one)"
            )
        os.replace(scratch, path)
    finally:
        shutil.rmtree(scratch_dir, ignore_errors=True)


def reference_dumps(
    profile: Profile,
    presets: Iterable[ModelConfig],
    run_dir: Path,
    kept: Mapping[str, str] | None = None,
) -> Mapping[str, ReferenceDump]:
    """The oracle dump of each of ``presets`` (by name), made by the profile's command if it
    has one, loaded and validated; ``{}`` when the profile names no reference.

    ``kept`` (a --resume): the sha256 of each preset's dump the run was judged by. The command
    then writes to a scratch file, and a dump other than the kept one is a ProfileError that
    leaves the kept file untouched.
    """
    ref = profile.reference
    if ref is None:
        return {}
    where = profile.where(ref.line)
    out: dict[str, ReferenceDump] = {}
    for cfg in presets:
        path = dump_path(profile, ref, cfg.name, run_dir)
        if ref.command is not None and kept is not None:
            _rerun_command(profile, ref, cfg, path, kept.get(cfg.name))
        elif ref.command is not None:
            _run_command(profile, ref, cfg, path)
        try:
            dump = load_dump(path, expect=cfg)
        except DumpError as exc:
            raise ProfileError(f"{where}: reference dump of preset {cfg.name!r}: {exc}") from None
        # A dump whose own logits do not follow from its own param.* (a square weight stored
        # [in, out]) is the oracle's fault: refused here, exit 2, rather than ~20 failing rows
        # of every cell, each reading as the kernel's (trial s44, D15; cached per file).
        checked = dump_selfcheck.self_check(dump)
        if not checked.ok:
            raise ProfileError(f"{where}: reference dump of preset {cfg.name!r} ({path}): "
                               f"{dump_selfcheck.refusal(checked)}")  # fmt: skip
        out[cfg.name] = dump
    return out
