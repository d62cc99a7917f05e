"""Small fake hosts and a scriptable fake check, for testing the runner's own logic only.

The runner's job is bookkeeping (cells, verdicts, rows, reloads, exit codes); these fakes let a
test decide exactly what each host and check does. The end-to-end test uses the real hosts.

The fake check is registered under real check kinds by :func:`use_fake_checks`; what it does in
a cell comes from its ``[check.<kind>]`` options: the action under the cell id, else under the
preset, else under the host, else ``default`` (``pass`` if absent). Actions: pass, fail, measure,
raise, timeout, crash, interrupt, not-a-row, exit (``os._exit``), sleep (writes a marker file,
then sleeps).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from harness import checks
from harness.artifact import MANIFEST_SCHEMA, Artifact
from harness.checks.base import CellContext
from harness.hosts.base import (
    Host,
    HostCrashed,
    HostTimeout,
    HostUnavailable,
    Instance,
    Scalar,
    TimingResult,
)
from harness.rundir.rows import Row

HERE = Path(__file__).resolve().parent


@dataclass
class Log:
    """Everything the fake hosts did, in order, e.g. ``("load", "fa", "wasm32")``."""

    events: list[tuple[str, ...]] = field(default_factory=list)

    def count(self, *event: str) -> int:
        """How many times ``event`` happened."""
        return self.events.count(event)


class FakeInstance(Instance):
    """A loaded fake artifact with a bytearray memory."""

    def __init__(self, host: FakeHost, artifact: Artifact) -> None:
        self.host = host
        self.artifact = artifact
        self.memory = bytearray(1 << 12)

    def call(self, name: str, *args: Scalar) -> Scalar | None:
        """Only the ABI version export exists."""
        return 1 if name == "tg_abi_version" else None

    def write(self, ptr: int, data: bytes) -> None:
        """Copy into the bytearray."""
        self.memory[ptr : ptr + len(data)] = data

    def read(self, ptr: int, nbytes: int) -> bytes:
        """Copy out of the bytearray."""
        return bytes(self.memory[ptr : ptr + nbytes])

    def time_calls(
        self, name: str, args: tuple[Scalar, ...], inner_reps: int, samples: int, warmup: int
    ) -> TimingResult:
        """Constant fake timings."""
        return TimingResult((1.0,) * samples, inner_reps, 1.0, "fake")

    def bridge_roundtrip_ns(self, n: int) -> tuple[float, ...]:
        """Constant fake round trips."""
        return (1.0,) * n

    def close(self) -> None:
        """Record the close."""
        self.host.log.events.append(("close-instance", self.host.name, self.artifact.name))


class FakeHost(Host):
    """A host whose availability, refusals and load failures a test sets."""

    def __init__(
        self,
        name: str,
        log: Log,
        *,
        version: str = "v1.2.3",
        unavailable: bool = False,
        cannot_load: Mapping[str, str] | None = None,
        load_errors: Mapping[str, Exception] | None = None,
    ) -> None:
        self.name = name
        self.log = log
        self._version = version
        self.unavailable = unavailable
        self.cannot_load = dict(cannot_load or {})
        self.load_errors = dict(load_errors or {})
        log.events.append(("start", name))

    def version(self) -> str:
        """The set version, or HostUnavailable with a hint."""
        self.log.events.append(("version", self.name))
        if self.unavailable:
            raise HostUnavailable(f"{self.name} is not installed", f"apt install {self.name}")
        return self._version

    def can_load(self, artifact: Artifact) -> str | None:
        """The set refusal reason for this artifact, if any."""
        return self.cannot_load.get(artifact.name)

    def load_verified(self, artifact: Artifact) -> Instance:
        """Raise the set load error, else return a FakeInstance."""
        self.log.events.append(("load", self.name, artifact.name))
        if artifact.name in self.load_errors:
            raise self.load_errors[artifact.name]
        return FakeInstance(self, artifact)

    def start(self, artifacts: Sequence[Artifact], *, one_process: bool = False) -> None:
        """Record the start hook: which builds, in one process or apart."""
        names = ",".join(a.name for a in artifacts)
        self.log.events.append(("host-start", self.name, names, "one" if one_process else "apart"))

    def close(self) -> None:
        """Record the close."""
        self.log.events.append(("close", self.name))


def factories(log: Log, **hosts: dict[str, Any]) -> dict[str, Callable[[], Host]]:
    """Host factories for ``name=dict(FakeHost kwargs)``."""

    def make(name: str, kw: dict[str, Any]) -> Callable[[], Host]:
        return lambda: FakeHost(name, log, **kw)

    return {name: make(name, kw) for name, kw in hosts.items()}


def make_artifacts(
    directory: Path, names: tuple[str, ...] = ("wasm32", "native"), salt: str = ""
) -> Path:
    """Write tiny fake binaries and a manifest.json for them; return the manifest's path.

    ``salt`` changes the bytes (and so the sha256): another build of the same artifacts.
    """
    directory.mkdir(parents=True, exist_ok=True)
    entries = []
    for name in names:
        data = f"fake {name}{salt}".encode()
        (directory / f"{name}.bin").write_bytes(data)
        entries.append(
            {
                "name": name,
                "format": "native" if name == "native" else "wasm",
                "path": f"{name}.bin",
                "sha256": hashlib.sha256(data).hexdigest(),
                "ptr_width": 32 if name == "wasm32" else 64,
                "target": "fake",
            }
        )
    manifest = directory / "manifest.json"
    manifest.write_text(json.dumps({"schema": MANIFEST_SCHEMA, "artifacts": entries}))
    return manifest


# -- the fake check --------------------------------------------------------------------------


def _action(ctx: CellContext) -> str:
    cell = f"{ctx.host}/{ctx.artifact.name}/{ctx.preset.name}"
    for key in (cell, ctx.preset.name, ctx.host, "default"):
        if key in ctx.options:
            return str(ctx.options[key])
    return "pass"


def run(ctx: CellContext) -> Iterator[Row]:
    """Do what the options say for this cell (see the module docstring)."""
    kind = str(ctx.options.get("kind", "fake"))
    action = _action(ctx)
    if action == "measure":
        yield ctx.row(kind, "curve", "measured", metric="median_ns", value=5.0)
        return
    if action == "nothing":  # a check that silently stopped checking
        return
    yield ctx.row(kind, "first", "pass", detail="a row before the action")
    if action == "fail":
        yield ctx.row(kind, "second", "fail", detail=f"max_abs_err too big in {ctx.host}")
    elif action == "raise":
        raise RuntimeError("boom")
    elif action == "timeout":
        raise HostTimeout("call tg_noop took longer than 1 s")
    elif action == "crash":
        raise HostCrashed("worker died (signal 9)")
    elif action == "interrupt":
        raise KeyboardInterrupt
    elif action == "exit":
        os._exit(3)  # a hard crash: no finally blocks, no flush beyond what was committed
    elif action == "not-a-row":
        yield "a string"  # type: ignore[misc]
    elif action == "sleep":
        Path(str(ctx.options["marker"])).write_text("sleeping")
        time.sleep(60)


def run_with(args: argparse.Namespace, hosts: Mapping[str, Callable[[], Host]]) -> int:
    """``tinygpt-harness run`` with these host factories instead of the real registry."""
    from harness.runner import run_command

    return run_command(args, tuple(hosts), lambda matrix: hosts)


def use_fake_checks(monkeypatch: pytest.MonkeyPatch, *kinds: str) -> None:
    """Make check ``kinds`` run this module's fake check."""
    monkeypatch.syspath_prepend(str(HERE))
    for kind in kinds:
        monkeypatch.setitem(checks.REGISTRY, kind, "runner_fakes")


def run_args(matrix: Path, out: Path | None, manifest: Path, **kw: Any) -> argparse.Namespace:
    """The parsed arguments of ``run --matrix M --out O --artifacts A`` plus ``kw``."""
    defaults: dict[str, Any] = {
        "shard": "1/1", "checks": None, "fail_fast": False, "resume": None, "junit": None,
    }  # fmt: skip
    defaults.update(kw)
    return argparse.Namespace(matrix=matrix, out=out, artifacts=manifest, **defaults)


def subprocess_main() -> None:
    """Entry for crash tests: ``python runner_fakes.py MATRIX OUT MANIFEST`` with hosts fa, fb."""
    sys.path.insert(0, str(HERE))
    for kind in ("smoke", "ops"):
        checks.REGISTRY[kind] = "runner_fakes"
    matrix, out, manifest = map(Path, sys.argv[1:4])
    log = Log()
    code = run_with(run_args(matrix, out, manifest), factories(log, fa={}, fb={}))
    sys.exit(code)


if __name__ == "__main__":
    subprocess_main()
