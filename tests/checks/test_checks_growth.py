"""The ``growth`` check: a threaded build's memory grows mid-session and parity still holds.

Options and the pool count are unit-tested; the check itself runs through ``run`` on the real
emscripten -pthread build in Node 24 and Chromium, beside a copy whose glue keeps a stale view
of memory, which must end its cell in the host's words while the run goes on.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import shutil
from pathlib import Path

import pytest

from harness import build
from harness.abi import MAX_THREADS
from harness.artifact import MANIFEST_SCHEMA, Artifact, load_manifest
from harness.build import DEFAULT_OUT, EMCC_INSTALL, MANIFEST, Variant, build_variant, emcc_path
from harness.checks import growth as growth_check
from harness.checks.base import CellContext
from harness.checks.growth import DEFAULT_GROW_MIB, NATIVE_THREADS, pool_threads, validate_options
from harness.engines.ctypes_engine import CtypesInstance
from harness.formats import digest
from harness.hosts.registry import HOST_NAMES, all_hosts
from harness.hosts.timeouts import Timeouts
from harness.rundir.reader import read_rows
from harness.rundir.rows import RESULTS_FILE
from harness.rundir.verdict import cell_verdicts
from harness.runner import configure, run_command
from reference.presets import PRESETS

PTHREAD = "em-wasm32-pthread"
EM_INITIAL_MEMORY = 16 << 20  # emscripten's default INITIAL_MEMORY: the build sets none


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"grow": 1}, r"unknown option\(s\) \['grow'\]"),
        ({"grow_mib": 0}, r"'grow_mib' must be an integer >= 1, got 0"),
        ({"grow_mib": True}, r"'grow_mib' must be an integer >= 1, got True"),
        ({"seed": -1}, r"'seed' must be an integer >= 0, got -1"),
    ],
)
def test_bad_options_are_refused_naming_them(options: dict[str, object], message: str) -> None:
    """Each bad ``[check.growth]`` option is a ValueError that names it (the matrix load turns
    it into FILE:LINE and exit 2)."""
    with pytest.raises(ValueError, match=message):
        validate_options(options)


def _artifact(flags: tuple[str, ...]) -> Artifact:
    return Artifact(name="a", format="wasm", path=Path("/x"), sha256="0", ptr_width=32,
                    target="t", flags=flags)  # fmt: skip


def test_pool_threads_reads_the_pool_size_from_the_build_flags() -> None:
    """``-sPTHREAD_POOL_SIZE=2`` means the caller plus 2 workers; no such flag means one thread
    per core; a pool past the library's own is capped at TG_MAX_THREADS."""
    assert pool_threads(_artifact(("-pthread", "-sPTHREAD_POOL_SIZE=2"))) == 3
    assert pool_threads(_artifact(("-O2",))) == NATIVE_THREADS
    assert pool_threads(_artifact((f"-sPTHREAD_POOL_SIZE={MAX_THREADS + 4}",))) == MAX_THREADS


SERIAL_POOL = Variant("native-bug-serial-pool", "native", ("TG_BUG_SERIAL_POOL",))


@pytest.mark.skipif(NATIVE_THREADS < 2, reason="one core: the native pool has no worker")
@pytest.mark.parametrize("serial", [False, True], ids=["pool", "serial-pool-fault"])
def test_growth_needs_the_pool_at_work(
    native_artifact: Artifact, build_dir: Path, serial: bool
) -> None:
    """Natively, with one thread per core: the real pool runs both matmuls as parallel regions
    and every row passes; the TG_BUG_SERIAL_POOL build gives the same bytes but runs no region,
    and both matmul rows fail saying so (growth with no worker at work tests nothing)."""
    art = build_variant(build_dir, SERIAL_POOL) if serial else native_artifact
    inst = CtypesInstance.load(art)
    try:
        ctx = CellContext("native", "ctypes", art, PRESETS["tiny"], inst, options={"grow_mib": 1})
        rows = {r.subject: r for r in growth_check.run(ctx)}
    finally:
        inst.close()
    assert rows["growth:grow"].status == "pass"
    for subject in ("growth:before", "growth:after"):
        row = rows[subject]
        assert f"tg_set_threads({NATIVE_THREADS}) put {NATIVE_THREADS} in effect" in row.detail
        if serial:
            assert row.status == "fail"
            assert "no parallel region ran on a pool worker" in row.detail
        else:
            assert row.status == "pass"
            assert re.search(r"; [1-9]\d* parallel region\(s\) ran on the pool", row.detail)
    assert "bytes equal to growth:before" in rows["growth:after"].detail


@pytest.fixture(scope="module")
def pthread_build(tmp_path_factory: pytest.TempPathFactory) -> Artifact:
    """The em-wasm32-pthread artifact: artifacts/build's when fresh, else built into tmp."""
    if emcc_path() is None:
        pytest.skip(f"emcc is not installed (install: {EMCC_INSTALL})")
    if build.manifest_is_fresh(DEFAULT_OUT):
        arts = load_manifest(DEFAULT_OUT / MANIFEST)
        if PTHREAD in arts:
            return arts[PTHREAD]
    return build.build_emscripten(tmp_path_factory.mktemp("em"), [PTHREAD])[PTHREAD]


def test_the_pthread_build_is_the_growth_build(pthread_build: Artifact) -> None:
    """The growth check's subject: the -pthread build grows its memory (emcc's
    ALLOW_MEMORY_GROWTH=1, the last such flag winning) and has a pool of 2 workers."""
    growth = [f for f in pthread_build.flags if f.startswith("-sALLOW_MEMORY_GROWTH=")]
    assert growth[-1] == "-sALLOW_MEMORY_GROWTH=1"
    assert pool_threads(pthread_build) == 3


# The end of the real glue's text: its factory, the module's default export.
GLUE_EXPORT = "export default Module;"
# What replaces it: the real factory behind one that pins Module.HEAPU8 to the view it had at
# load, i.e. what a glue that never refreshes its views after a growth hands a host. It is
# appended to the real glue's own text, so the stale glue is ONE file: the Chromium page serves
# every file of an artifact under its own URL (/artifact/<hash>.mjs), where a wrapper importing
# the real glue from beside it ('./real-tinygpt.mjs') would not find it. The pool's workers
# import this same file (mainScriptUrlOrBlob) and get the same wrapper.
STALE_EXPORT = """const realFactory = Module;
export default async function factory(settings) {
  const M = await realFactory(settings);
  const first = M.HEAPU8;
  Object.defineProperty(M, 'HEAPU8', { get: () => first, set: () => {} });
  return M;
}
"""


def stale_glue(real: str) -> str:
    """``real`` (an -sEXPORT_ES6 glue's text) with its factory wrapped by :data:`STALE_EXPORT`."""
    body = real.rstrip()
    assert body.endswith(GLUE_EXPORT), f"the glue does not end with {GLUE_EXPORT!r}"
    return body[: -len(GLUE_EXPORT)] + STALE_EXPORT


def _copy(art: Artifact, tmp: Path, name: str, stale: bool = False) -> Artifact:
    """``art``'s files under ``tmp/name``; with ``stale``, its glue made :func:`stale_glue`."""
    d = tmp / name
    d.mkdir()
    paths = art.paths()
    glue, wasm, worker = (Path(shutil.copy(paths[r], d / paths[r].name))
                          for r in ("glue", "wasm", "worker"))  # fmt: skip
    if stale:
        glue.write_text(stale_glue(glue.read_text()))
    files, sha = digest({"glue": glue, "wasm": wasm, "worker": worker})
    return dataclasses.replace(art, name=name, path=glue, sha256=sha, files=files)


@pytest.mark.node
@pytest.mark.chromium
def test_growth_passes_on_the_pthread_build_and_a_stale_view_fails_in_the_hosts_words(
    pthread_build: Artifact, tmp_path: Path
) -> None:
    """Through ``run`` in Node 24 and Chromium: the -pthread build on 3 threads grows past its
    16 MiB initial memory and every growth row passes, both matmuls split on the pool and the
    one after bytes-equal to the one before; in both hosts the stale-view copy is an `error`
    cell naming the old memory size, and the run goes on (exit 1, not a hang)."""
    arts = [_copy(pthread_build, tmp_path, PTHREAD),
            _copy(pthread_build, tmp_path, "em-stale-view", stale=True)]  # fmt: skip
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"schema": MANIFEST_SCHEMA,
                                    "artifacts": [a.to_json(tmp_path) for a in arts]}))  # fmt: skip
    matrix = tmp_path / "m.toml"
    matrix.write_text(f'name = "growth"\nartifacts = ["{PTHREAD}", "em-stale-view"]\n'
                      'presets = ["tiny"]\nchecks = ["growth"]\ntimeout_s = 60\n'
                      "[hosts]\nnode24 = {}\nchromium = {}\n")  # fmt: skip
    parser = argparse.ArgumentParser()
    configure(parser)
    out = tmp_path / "run"
    args = parser.parse_args(["--matrix", str(matrix), "--out", str(out),
                              "--artifacts", str(manifest)])  # fmt: skip
    fast = Timeouts(call_s=60.0, load_s=60.0, time_s=60.0, transfer_s=60.0, start_s=60.0)
    code = run_command(args, HOST_NAMES, lambda m: all_hosts(fast))
    rows = read_rows(out / RESULTS_FILE)
    verdicts = cell_verdicts(rows)
    assert code == 1
    for host in ("node24", "chromium"):
        assert verdicts[f"{host}/{PTHREAD}/tiny"][0] == "pass"
        growth = {r.subject: r for r in rows if r.cell == f"{host}/{PTHREAD}/tiny"
                  and r.check == "growth"}  # fmt: skip
        assert [r.status for r in growth.values()] == ["pass"] * 3
        for matmul in ("growth:before", "growth:after"):
            assert "tg_set_threads(3) put 3 in effect" in growth[matmul].detail
            assert re.search(r"; [1-9]\d* parallel region\(s\) ran on the pool",
                             growth[matmul].detail)  # fmt: skip
        assert growth["growth:grow"].value > EM_INITIAL_MEMORY  # it grew
        assert f"{DEFAULT_GROW_MIB} MiB at" in growth["growth:grow"].detail
        assert "bytes equal to growth:before" in growth["growth:after"].detail
        status, detail = verdicts[f"{host}/em-stale-view/tiny"]
        assert status == "error", (host, detail)
        assert f"is outside memory ({EM_INITIAL_MEMORY} bytes)" in detail, (host, detail)
