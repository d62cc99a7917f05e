"""The defaults check through a loaded binary, and the whole run exiting 1 on the TinyGPT bugs."""

from __future__ import annotations

import csv
import tomllib
from pathlib import Path

import pytest

from harness.artifact import Artifact
from harness.build import write_manifest
from harness.checks.base import CellContext
from harness.checks.defaults import Finding, check_binary, findings, run
from harness.cli import main
from harness.engines.ctypes_engine import CtypesInstance
from harness.hosts.base import Instance, InstanceView
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


class _ManglingInstance(InstanceView):
    """A host that returns the binary's string cut short (what a broken bridge would do)."""

    def read(self, ptr: int, nbytes: int) -> bytes:
        data = self.inner.read(ptr, nbytes)
        return data[:20] + b"\0" + data[21:]


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


def test_a_matrix_outside_the_checkout_is_not_judged_by_the_harness_readme(
    native: CtypesInstance, native_artifact: Artifact, tmp_path: Path
) -> None:
    """A project's matrix (outside the checkout) with no ``readme`` gets one skipped row naming
    the option, not the harness's README; ``readme = "<path>"`` compares the project's table."""
    matrix = tmp_path / "matrix.toml"

    def readme_rows(**options: object) -> list[Finding]:
        ctx = CellContext("native", "ctypes", native_artifact, PRESETS["tiny"], native,
                          options={"binary": False, **options}, matrix_path=matrix,
                          repo_root=Path.cwd())  # fmt: skip
        return [f for f in findings(ctx) if f.surface == "readme"]

    (row,) = readme_rows()
    assert row.status == "skipped" and 'readme = "<path>"' in row.note
    assert readme_rows(readme="") == []
    table = Path("README.md").read_text(encoding="utf-8")
    (tmp_path / "README.md").write_text(table.replace("`3e-4`", "`3e-3`"), encoding="utf-8")
    (bad,) = [f for f in readme_rows(readme="README.md") if f.status == "fail"]
    assert bad.key == "learning_rate" and bad.location.startswith(str(tmp_path / "README.md"))
