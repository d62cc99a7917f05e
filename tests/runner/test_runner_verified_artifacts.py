"""A binary that no longer matches its manifest never runs: its cell is ``error`` naming both
hashes, on every host kind; the unmodified build passes and run.json records the hash loaded.

Uses artifacts/build when its manifest is fresh, else builds into a temporary directory.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tomllib
from pathlib import Path

import pytest

from harness.build import DEFAULT_OUT, MANIFEST, build_all, manifest_is_fresh
from harness.cli import main
from harness.rundir.meta import RUN_FILE
from harness.rundir.reader import read_rows
from harness.rundir.rows import RESULTS_FILE

MATRIX = """\
name = "verified"
artifacts = ["{artifact}"]
presets = ["tiny"]
checks = ["smoke"]
timeout_s = 120
[hosts]
{host} = {{}}
"""

HOSTS = [
    ("native", "native"),
    ("wasmtime", "wasm32"),
    pytest.param("node", "wasm32", marks=pytest.mark.node),
    pytest.param("node24", "wasm32", marks=pytest.mark.node),
    pytest.param("chromium", "wasm32", marks=pytest.mark.chromium),
]


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh build: the repo's if current, else a new one."""
    if manifest_is_fresh(DEFAULT_OUT):
        return DEFAULT_OUT
    out = tmp_path_factory.mktemp("build")
    build_all(out)
    return out


def _run(tmp_path: Path, build: Path, host: str, artifact: str, tag: str) -> Path:
    matrix = tmp_path / f"{tag}.toml"
    matrix.write_text(MATRIX.format(host=host, artifact=artifact))
    out = tmp_path / f"run-{tag}"
    main(["run", "--matrix", str(matrix), "--out", str(out), "--artifacts", str(build / MANIFEST)])
    return out


@pytest.mark.slow
@pytest.mark.parametrize(("host", "artifact"), HOSTS)
def test_modified_artifact_is_an_error_naming_both_hashes(
    tmp_path: Path, build_dir: Path, host: str, artifact: str
) -> None:
    """Copy the build, append a byte to the artifact after the manifest was written: the cell
    is ``error`` with the manifest's and the file's sha256; the untouched copy passes and
    run.json's artifacts section records the hash each host loaded."""
    entries = json.loads((build_dir / MANIFEST).read_text())["artifacts"]
    entry = next(e for e in entries if e["name"] == artifact)
    for tag in ("good", "bad"):
        (tmp_path / tag).mkdir()
        shutil.copy(build_dir / MANIFEST, tmp_path / tag / MANIFEST)
        target = tmp_path / tag / entry["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(build_dir / entry["path"], target)
        # the manifest names its entries' binding files relative to itself; a copy of the
        # manifest needs them where it says (an unreadable binding is a bad manifest: exit 2)
        for binding in {e["binding"] for e in entries if "binding" in e}:
            copied = (tmp_path / tag / binding).resolve()
            copied.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(build_dir / binding, copied)
            # and the C header the binding names, relative to itself (native arities)
            header = tomllib.loads(copied.read_text())["binding"].get("header")
            if header:
                (copied.parent / header).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy((build_dir / binding).parent / header, copied.parent / header)
    bad_file = tmp_path / "bad" / entry["path"]
    bad_file.write_bytes(bad_file.read_bytes() + b"\0")
    actual = hashlib.sha256(bad_file.read_bytes()).hexdigest()

    bad = _run(tmp_path, tmp_path / "bad", host, artifact, "bad")
    verdicts = [r for r in read_rows(bad / RESULTS_FILE) if r.subject == "verdict"]
    assert [r.status for r in verdicts] == ["error"]
    assert entry["sha256"] in verdicts[0].detail and actual in verdicts[0].detail
    assert "ArtifactHashMismatch" in verdicts[0].detail
    bad_meta = json.loads((bad / RUN_FILE).read_text())
    assert "loaded_sha256" not in bad_meta["artifacts"][artifact]

    good = _run(tmp_path, tmp_path / "good", host, artifact, "good")
    verdicts = [r for r in read_rows(good / RESULTS_FILE) if r.subject == "verdict"]
    assert [r.status for r in verdicts] == ["pass"], verdicts[0].detail
    meta = json.loads((good / RUN_FILE).read_text())
    assert meta["artifacts"][artifact]["loaded_sha256"] == {host: entry["sha256"]}
