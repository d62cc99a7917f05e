"""``tinygpt-harness run`` of a matrix over the bundled WGSL kernels (``artifacts/webgpu``), built
under a test's tmp directory: the set-up the WebGPU step, curve and Node tests share."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from harness.artifact import MANIFEST_SCHEMA, Artifact
from harness.build import webgpu_artifact
from harness.hosts.registry import HOST_NAMES, all_hosts
from harness.hosts.timeouts import Timeouts
from harness.runner import configure, run_command


def run_bundled_kernels(
    tmp: Path,
    matrix_body: str,
    timeouts: Timeouts,
    src: Path | None = None,
    also: Sequence[Artifact] = (),
) -> tuple[int, Path]:
    """Build the bundled kernels (or the kernel directory ``src``, a variant of them) under
    ``tmp/build`` and run the matrix ``matrix_body`` (TOML without ``artifacts``: the built
    artifact is its one) into ``tmp/run``; ``also`` are more artifacts in the manifest (built
    under ``tmp/build`` by the caller), not in the matrix; (exit code, run directory)."""
    art = webgpu_artifact(tmp / "build") if src is None else webgpu_artifact(tmp / "build", src)
    manifest = tmp / "build" / "manifest.json"
    entries = [a.to_json(manifest.parent) for a in (art, *also)]
    manifest.write_text(json.dumps({"schema": MANIFEST_SCHEMA, "artifacts": entries}))
    matrix = tmp / "m.toml"
    matrix.write_text(f'artifacts = ["{art.name}"]\n{matrix_body}')
    parser = argparse.ArgumentParser()
    configure(parser)
    out = tmp / "run"
    args = parser.parse_args(
        ["--matrix", str(matrix), "--out", str(out), "--artifacts", str(manifest)]
    )
    return run_command(args, HOST_NAMES, lambda m: all_hosts(timeouts)), out
