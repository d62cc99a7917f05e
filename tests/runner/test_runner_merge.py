"""harness.merge: shards combine into one run; mismatched shards are refused with exit 2."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from harness.merge import MergeError, execute, merge_runs
from harness.rundir.meta import RUN_FILE, write_run_json
from harness.rundir.reader import read_rows
from harness.rundir.rows import RESULTS_FILE
from tests.runner.runner_fakes import (
    Log,
    factories,
    make_artifacts,
    run_args,
    run_with,
    use_fake_checks,
)

MATRIX = """\
name = "fake"
artifacts = ["wasm32", "native"]
presets = ["tiny", "small"]
checks = ["smoke"]
[hosts]
fa = {}
fb = {}
[check.smoke]
kind = "smoke"
"fb/native/tiny" = "fail"
"""


@pytest.fixture
def shards(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Three shard run directories of one fake matrix."""
    use_fake_checks(monkeypatch, "smoke")
    manifest = make_artifacts(tmp_path / "build")
    m = tmp_path / "m.toml"
    m.write_text(MATRIX)
    dirs = []
    for k in (1, 2, 3):
        out = tmp_path / f"shard{k}"
        run_with(run_args(m, out, manifest, shard=f"{k}/3"), factories(Log(), fa={}, fb={}))
        dirs.append(out)
    return dirs


def edit(run_dir: Path, **changes: object) -> None:
    """Rewrite fields of a run's run.json (dotted keys as a__b)."""
    meta = json.loads((run_dir / RUN_FILE).read_text())
    for key, value in changes.items():
        *outer, last = key.split("__")
        target = meta
        for k in outer:
            target = target[k]
        target[last] = value
    write_run_json(run_dir, meta)


def test_merge_concatenates_rows_and_unions_metadata(tmp_path: Path, shards: list[Path]) -> None:
    """Merged rows equal the shards' rows; verdicts are recounted; shards are recorded."""
    out = tmp_path / "merged"
    merged = merge_runs(list(reversed(shards)), out)
    rows = list(read_rows(out / RESULTS_FILE))
    expected = [r for d in shards for r in read_rows(d / RESULTS_FILE)]
    assert rows == expected  # shard order, whatever order they were given in
    assert merged["verdicts"]["pass"] == 7 and merged["verdicts"]["fail"] == 1
    assert merged["exit_code"] == 1
    assert merged["status"] == "complete"
    assert merged["shard"] == {"merged": [1, 2, 3], "count": 3, "missing": []}
    assert [s["shard"]["index"] for s in merged["shards"]] == [1, 2, 3]
    assert len(merged["cells"]) == 8
    assert json.loads((out / RUN_FILE).read_text()) == merged


def test_different_machines_are_allowed_and_recorded(tmp_path: Path, shards: list[Path]) -> None:
    """A shard from another machine merges; both fingerprints are kept."""
    edit(shards[1], machine__fingerprint_id="0123456789ab")
    merged = merge_runs(shards, tmp_path / "merged")
    assert "0123456789ab" in merged["machines"] and len(merged["machines"]) == 2
    assert merged["shards"][1]["machine"] == "0123456789ab"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"matrix__sha256": "f" * 64}, "different matrices"),
        ({"git__commit": "deadbeef"}, "different git commits"),
        ({"defaults_sha256": "0" * 64}, "different training defaults"),
        ({"shard__count": 4}, "different shard counts"),
    ],
)
def test_mismatched_shards_are_refused(
    tmp_path: Path, shards: list[Path], change: dict[str, object], message: str
) -> None:
    """Different matrix, commit, defaults or shard count: MergeError naming the field."""
    edit(shards[2], **change)
    with pytest.raises(MergeError, match=message):
        merge_runs(shards, tmp_path / "merged")
    assert not (tmp_path / "merged").exists()


def test_the_same_shard_twice_is_refused(tmp_path: Path, shards: list[Path]) -> None:
    """Giving one shard twice would double its rows."""
    with pytest.raises(MergeError, match="shard 1/3 given twice"):
        merge_runs([shards[0], shards[0]], tmp_path / "merged")


def test_missing_shard_merges_as_partial(tmp_path: Path, shards: list[Path]) -> None:
    """Two of three shards merge, marked partial with the missing index."""
    merged = merge_runs(shards[:2], tmp_path / "merged")
    assert merged["status"] == "partial" and merged["shard"]["missing"] == [3]


def test_execute_exit_codes(
    tmp_path: Path, shards: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """The command exits 0 on success and 2 with a clear message on a mismatch or non-run dir."""
    ok = argparse.Namespace(dirs=shards, out=tmp_path / "m1")
    assert execute(ok) == 0
    edit(shards[0], git__commit="abc")
    assert execute(argparse.Namespace(dirs=shards, out=tmp_path / "m2")) == 2
    assert "different git commits" in capsys.readouterr().err
    assert execute(argparse.Namespace(dirs=[tmp_path], out=tmp_path / "m3")) == 2
    assert "is this a run directory" in capsys.readouterr().err
