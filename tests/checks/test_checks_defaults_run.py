"""The defaults check through a loaded binary, and the whole run exiting 1 on the TinyGPT bugs."""

from __future__ import annotations

import csv
import tomllib
from pathlib import Path

import pytest

from harness.artifact import Artifact
from harness.build import write_manifest
from harness.checks.base import CellContext
from harness.checks.defaults import check_binary, run
from harness.cli import main
from harness.engines.ctypes_engine import CtypesInstance
from harness.hosts.base import Instance, Scalar, TimingResult
from reference.presets import PRESETS

BUG = Path(__file__).parent / "fixtures" / "tinygpt_bug"


def _ctx(instance: Instance, artifact: Artifact, **options: object) -> CellContext:
    return CellContext("native", "ctypes", artifact, PRESETS["tiny"], instance, options=options,
                       matrix_path=BUG / "surfaces.toml")  # fmt: skip


def test_binary_export_matches_the_reference(
    native: CtypesInstance, native_artifact: Artifact
) -> None:
    """tg_defaults_json, read through the host, states all 12 reference defaults exactly."""
    found = check_binary(_ctx(native, native_artifact))
    assert len(found) == 12 and {f.status for f in found} == {"pass"}
    assert all(f.location.startswith("tg_defaults_json") for f in found)


class _ManglingInstance(Instance):
    """A host that returns the binary's string cut short (what a broken bridge would do)."""

    def __init__(self, inner: CtypesInstance) -> None:
        self.inner = inner
        self.artifact = inner.artifact

    def call(self, name: str, *args: Scalar) -> Scalar | None:
        return self.inner.call(name, *args)

    def write(self, ptr: int, data: bytes) -> None:
        self.inner.write(ptr, data)

    def read(self, ptr: int, nbytes: int) -> bytes:
        data = self.inner.read(ptr, nbytes)
        return data[:20] + b"\0" + data[21:]

    def time_calls(self, name: str, args: tuple[Scalar, ...], inner_reps: int, samples: int,
                   warmup: int) -> TimingResult:  # fmt: skip
        raise NotImplementedError

    def bridge_roundtrip_ns(self, n: int) -> tuple[float, ...]:
        raise NotImplementedError

    def close(self) -> None:
        pass


def test_a_host_that_mangles_the_export_is_an_error_row(
    native: CtypesInstance, native_artifact: Artifact
) -> None:
    """Invalid JSON from tg_defaults_json is one error row naming the export and the parser."""
    (f,) = check_binary(_ctx(_ManglingInstance(native), native_artifact))
    assert f.status == "error" and "tg_defaults_json" in f.location and "invalid JSON" in f.note


def test_run_on_tinygpt_fixtures_fails_at_both_lines(
    native: CtypesInstance, native_artifact: Artifact
) -> None:
    """Through run(ctx): the binary and README pass, types.ts:15 and index.astro:16 fail."""
    options = tomllib.loads((BUG / "surfaces.toml").read_text())
    rows = list(
        run(_ctx(native, native_artifact, readme=str(Path("README.md").resolve()), **options))
    )
    failed = [r.detail for r in rows if r.status == "fail"]
    assert len(failed) == 2
    assert "types.ts:15" in failed[0] and "expected 0.0003, found 3e-3" in failed[0]
    assert "index.astro:16" in failed[1] and "expected 0.0003, found 0.003" in failed[1]
    assert all(r.status == "pass" for r in rows if r.subject.startswith(("binary:", "readme:")))


@pytest.mark.corpus
def test_whole_run_exits_1_on_tinygpt_bug_and_lnback_variant(
    tmp_path: Path, native_artifact: Artifact, lnback_artifact: Artifact
) -> None:
    """`run` exits 1; rows name types.ts:15, index.astro:16 and layernorm_backward."""
    manifest = write_manifest(native_artifact.path.parents[1], [native_artifact, lnback_artifact])
    matrix = tmp_path / "bug.toml"
    surfaces = (
        (BUG / "surfaces.toml").read_text().replace("[[surfaces]]", "[[check.defaults.surfaces]]")
    )
    surfaces = surfaces.replace('path = "types.ts"', f'path = "{BUG / "types.ts"}"')
    surfaces = surfaces.replace('path = "index.astro"', f'path = "{BUG / "index.astro"}"')
    matrix.write_text(
        'name = "bug"\nartifacts = ["native-checks", "native-bug-lnback"]\npresets = ["tiny"]\n'
        'checks = ["ops", "defaults"]\n\n[hosts]\nnative = {}\n\n[check.ops]\nseed = 0\n\n'
        f'[check.defaults]\nreadme = "{Path("README.md").resolve()}"\n\n{surfaces}'
    )
    out = tmp_path / "run"
    code = main(["run", "--matrix", str(matrix), "--out", str(out), "--artifacts", str(manifest)])
    assert code == 1
    with (out / "results.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    fails = {(r["artifact"], r["check"], r["subject"]) for r in rows if r["status"] == "fail"}
    assert ("native-bug-lnback", "ops", "layernorm_backward.dinp") in fails
    assert not any(a == "native-checks" and c == "ops" for a, c, _ in fails)
    details = " ".join(r["detail"] for r in rows if r["status"] == "fail")
    assert "types.ts:15" in details and "index.astro:16" in details
    verdicts = {r["artifact"]: r["status"] for r in rows if r["subject"] == "verdict"}
    assert verdicts == {"native-checks": "fail", "native-bug-lnback": "fail"}
