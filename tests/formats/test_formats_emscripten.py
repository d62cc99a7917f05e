"""The ``emscripten`` format: our kernels built by Debian's emcc, loaded through their OWN glue.

Real builds (``tinygpt-harness build``'s em-* artifacts, or a fresh build into a temp dir), real
Node and Chromium. Covers the Memory64 pointer kind (TinyGPT's bug, caught in the glue where it
lived), Node 20's refusal of Memory64 in V8's words, and bad glue ending only its cell.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from harness import build
from harness.artifact import MANIFEST_SCHEMA, Artifact, load_manifest
from harness.build import DEFAULT_OUT, EM_TARGETS, EMCC_INSTALL, MANIFEST, emcc_path
from harness.formats import digest, get_format
from harness.hosts import chromium
from harness.hosts.base import ABIError, HostError, HostTimeout, IncompatibleArtifact
from harness.hosts.chromium import ChromiumHost
from harness.hosts.node import NodeHost, pinned_node, system_node
from harness.hosts.pipe import artifact_entry
from harness.hosts.registry import HOST_NAMES, all_hosts
from harness.hosts.timeouts import Timeouts
from harness.kernel import Kernels
from harness.rundir.reader import read_rows
from harness.rundir.rows import RESULTS_FILE
from harness.rundir.verdict import cell_verdicts
from harness.runner import configure, run_command
from reference import ops

pytestmark = pytest.mark.skipif(
    emcc_path() is None, reason=f"emcc is not installed (install: {EMCC_INSTALL})"
)
FAST = Timeouts(call_s=30.0, load_s=6.0, time_s=60.0, transfer_s=30.0, start_s=60.0)


@pytest.fixture(scope="module")
def em(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Artifact]:
    """The em-* artifacts: artifacts/build's when fresh and present, else a build into tmp."""
    if build.manifest_is_fresh(DEFAULT_OUT):
        arts = load_manifest(DEFAULT_OUT / MANIFEST)
        if set(EM_TARGETS) <= set(arts):
            return {n: arts[n] for n in EM_TARGETS}
    return build.build_emscripten(tmp_path_factory.mktemp("em"))


def _variant(em: dict[str, Artifact], tmp: Path, name: str, glue_text: str) -> Artifact:
    """em-wasm32's files with the glue replaced by ``glue_text``, hashed as a real entry."""
    d = tmp / name
    d.mkdir()
    paths = em["em-wasm32"].paths()
    shutil.copy(paths["wasm"], d / paths["wasm"].name)
    glue = d / paths["glue"].name
    glue.write_text(glue_text)
    files, sha = digest({"glue": glue, "wasm": d / paths["wasm"].name})
    return dataclasses.replace(em["em-wasm32"], name=name, path=glue, sha256=sha, files=files)


def test_build_lists_glue_wasm_and_the_pthread_worker(em: dict[str, Artifact]) -> None:
    """Each build's file set fits the format; only the pthread build has a worker file; the
    Memory64 build is 64-bit and built with MEMORY64 + WASM_BIGINT."""
    for art in em.values():
        assert art.format == "emscripten"
        assert get_format("emscripten").check_roles([f.role for f in art.file_set()]) is None
        assert ("worker" in art.paths()) == (art.name == "em-wasm32-pthread")
        get_format("emscripten").static_check(art.paths(), art.ptr_width)
    assert em["em-wasm64"].ptr_width == 64
    assert {"-sMEMORY64=1", "-sWASM_BIGINT"} <= set(em["em-wasm64"].flags)
    assert "-sPTHREAD_POOL_SIZE=2" in em["em-wasm32-pthread"].flags


def test_static_check_refuses_a_module_of_the_wrong_width(em: dict[str, Artifact]) -> None:
    """The 32-bit glue's entry pointing at the Memory64 .wasm is refused before any engine."""
    files = {**em["em-wasm32"].paths(), "wasm": em["em-wasm64"].paths()["wasm"]}
    with pytest.raises(ABIError, match=r"tg_defaults_json expected .*'i32'.*found .*'i64'"):
        get_format("emscripten").static_check(files, 32)


def test_build_is_reproducible_and_embeds_no_path(tmp_path: Path) -> None:
    """Two builds into two directories give the same sha256s, and name neither directory."""
    first = build.build_emscripten(tmp_path / "a", ["em-wasm32", "em-wasm64"])
    second = build.build_emscripten(tmp_path / "b", ["em-wasm32", "em-wasm64"])
    for name, art in first.items():
        assert art.sha256 == second[name].sha256
        for f in art.file_set():
            data = f.path.read_bytes()
            for needle in (str(tmp_path), str(build.REPO_ROOT)):
                assert needle.encode() not in data, f"{f.path} embeds {needle}"


@pytest.fixture(scope="module")
def node24() -> Iterator[NodeHost]:
    """Node 24 (it runs Memory64 and the glue)."""
    host = pinned_node("node24", FAST)
    yield host
    host.close()


def _matmul_matches(inst_kernels: Kernels) -> None:
    rng = np.random.default_rng(0)
    x, w, b = (rng.standard_normal(s).astype(np.float32) for s in ((2, 3, 8), (16, 8), (16,)))
    got = inst_kernels.matmul_forward(x, w, b)
    want = ops.matmul_forward(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.node
def test_memory64_glue_refuses_number_pointers_as_abi_error_and_bigints_pass(
    em: dict[str, Artifact], node24: NodeHost
) -> None:
    """TinyGPT's bug in the real glue: `_malloc` hands back a Number, and passing it on as a
    Number to a `_tg_*` wrapper of the MEMORY64 build is V8's TypeError, reported as ABIError.
    The pointer kind taken from the ABI (BigInt for `ptr` at width 64) passes parity."""
    shim = NodeHost("node24-shim", node24.executable, node24.install_hint, timeouts=FAST,
                    number_shim=True)  # fmt: skip
    try:
        inst = shim.load(em["em-wasm64"])
        ptr = inst.alloc(64)  # _malloc's glue converts; it returns a Number either way
        with pytest.raises(ABIError, match=rf"Cannot convert {ptr} to a BigInt"):
            inst.call("tg_free", ptr)
    finally:
        shim.close()
    _matmul_matches(Kernels(node24.load(em["em-wasm64"])))


@pytest.mark.chromium
def test_chromium_runs_each_build_through_its_glue(em: dict[str, Artifact]) -> None:
    """Chromium loads all three builds (the pthread one with its pool) and computes right; the
    Number shim on the Memory64 build is an ABIError there too."""
    host = ChromiumHost(timeouts=Timeouts(call_s=30.0, load_s=30.0, transfer_s=30.0))
    shim = ChromiumHost(timeouts=Timeouts(call_s=30.0, load_s=30.0), number_shim=True)
    try:
        for art in em.values():
            inst = host.load(art)
            _matmul_matches(Kernels(inst))
            if art.name == "em-wasm32-pthread":
                assert inst.load_info["pthread_workers"] >= 2
            inst.close()
        inst = shim.load(em["em-wasm64"])
        ptr = inst.alloc(64)
        with pytest.raises(ABIError, match=rf"Cannot convert {ptr} to a BigInt"):
            inst.call("tg_free", ptr)
    finally:
        shim.close()
        host.close()


@pytest.mark.node
def test_the_pthread_build_starts_its_pool_of_two_in_node(
    em: dict[str, Artifact], node24: NodeHost
) -> None:
    """The -pthread build's glue starts PTHREAD_POOL_SIZE=2 workers at load (its loader reports
    the pool), and its kernels compute right; the single-threaded build has none."""
    inst = node24.load(em["em-wasm32-pthread"])
    assert inst.load_info["pthread_workers"] >= 2
    _matmul_matches(Kernels(inst))
    assert node24.load(em["em-wasm32"]).load_info["pthread_workers"] == 0


@pytest.mark.node
def test_the_pthread_build_caps_threads_at_its_pool_without_hanging(
    em: dict[str, Artifact], node24: NodeHost
) -> None:
    """Asked for more threads than its pool of 2 workers, the -pthread build puts 3 in effect
    (the caller and 2 workers) instead of blocking on a worker that cannot start, and its
    matmul is right on 3 threads."""
    inst = node24.load(em["em-wasm32-pthread"])
    assert inst.call("tg_set_threads", 8) == 3
    assert inst.call("tg_get_threads") == 3
    _matmul_matches(Kernels(inst))
    assert inst.call("tg_set_threads", 1) == 1


@pytest.mark.node
def test_node20_refuses_the_memory64_build_in_v8s_words(em: dict[str, Artifact]) -> None:
    """The system Node (v20) cannot compile a Memory64 module: `incompatible`, with the
    CompileError the glue's abort() carried, not the abort's wrapping."""
    host = system_node(FAST)
    try:
        if not host.version().startswith("v20."):
            pytest.skip(f"the system Node is {host.version()}, not v20")
        with pytest.raises(IncompatibleArtifact) as info:
            host.load(em["em-wasm64"])
        message = str(info.value)
        assert message.startswith("CompileError: WebAssembly.instantiate(): invalid memory limits")
        assert "enable via --experimental-wasm-memory64" in message
        assert "Aborted(" not in message
    finally:
        host.close()


THROWING_GLUE = "throw new Error('this glue fails on purpose');\nexport default function f() {}\n"
HANGING_GLUE = "export default function factory() { return new Promise(() => {}); }\n"


@pytest.mark.node
def test_glue_that_throws_on_import_is_an_error_with_its_cause(
    em: dict[str, Artifact], tmp_path: Path, node24: NodeHost
) -> None:
    """A glue .js throwing at import is a HostError quoting it (not incompatible)."""
    bad = _variant(em, tmp_path, "em-throws", THROWING_GLUE)
    with pytest.raises(HostError, match=r"threw on import: Error: this glue fails on purpose"):
        node24.load(bad)


BIGINT_GLUE = (
    "export default function factory() {\n"
    "  return Promise.resolve().then(() => 1n + 1);  // the glue's own start-up code\n"
    "}\n"
)


@pytest.mark.node
def test_a_glue_whose_start_up_throws_is_the_glues_error_not_the_bindings(
    em: dict[str, Artifact], tmp_path: Path, node24: NodeHost
) -> None:
    """A factory whose own code throws a TypeError ("Cannot mix BigInt and other types", as
    emcc 3.1.6's Memory64 C++ runtime does) is a HostError naming the glue and saying no
    export was called: it was an ABIError, which blamed the binding's kinds."""
    bad = _variant(em, tmp_path, "em-bigint", BIGINT_GLUE)
    with pytest.raises(HostError) as info:
        node24.load(bad)
    assert not isinstance(info.value, ABIError)
    assert (
        "the emscripten glue of em-bigint threw while starting the module, before any "
        "export was called: TypeError: Cannot mix BigInt and other types" in str(info.value)
    )


@pytest.mark.node
def test_factory_that_never_resolves_times_out(
    em: dict[str, Artifact], tmp_path: Path, node24: NodeHost
) -> None:
    """A factory whose promise never settles is a HostTimeout within the load limit."""
    bad = _variant(em, tmp_path, "em-hangs", HANGING_GLUE)
    with pytest.raises(HostTimeout, match=r"emscripten factory of em-hangs did not settle"):
        node24.load(bad)


@pytest.mark.node
def test_bad_glue_ends_only_its_cell_and_the_run_goes_on(
    em: dict[str, Artifact], tmp_path: Path
) -> None:
    """Through ``run``: the throwing and the hanging glue are `error` cells with their causes,
    the good build in the same run passes."""
    good_glue = em["em-wasm32"].paths()["glue"].read_text()
    arts = [
        _variant(em, tmp_path, "em-good", good_glue),  # a copy: every path under tmp_path
        _variant(em, tmp_path, "em-throws", THROWING_GLUE),
        _variant(em, tmp_path, "em-hangs", HANGING_GLUE),
    ]
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"schema": MANIFEST_SCHEMA,
                                    "artifacts": [a.to_json(tmp_path) for a in arts]}))  # fmt: skip
    matrix = tmp_path / "m.toml"
    matrix.write_text(
        'name = "bad-glue"\nartifacts = ["em-good", "em-throws", "em-hangs"]\n'
        'presets = ["tiny"]\nchecks = ["smoke"]\ntimeout_s = 30\n[hosts]\nnode24 = {}\n'
    )
    parser = argparse.ArgumentParser()
    configure(parser)
    out = tmp_path / "run"
    args = parser.parse_args(["--matrix", str(matrix), "--out", str(out),
                              "--artifacts", str(manifest)])  # fmt: skip
    code = run_command(args, HOST_NAMES, lambda m: all_hosts(FAST))
    verdicts = cell_verdicts(read_rows(out / RESULTS_FILE))
    assert code == 1
    assert verdicts["node24/em-good/tiny"][0] == "pass"
    status, detail = verdicts["node24/em-throws/tiny"]
    assert status == "error" and "this glue fails on purpose" in detail
    status, detail = verdicts["node24/em-hangs/tiny"]
    assert status == "error" and "did not settle within" in detail


def _pthread_variant(em: dict[str, Artifact], tmp: Path, name: str, worker: str) -> Artifact:
    """em-wasm32-pthread's files copied under ``tmp/name``, its worker file ``worker``:
    "missing" (listed in the manifest, deleted), "unlisted" (copied, not in the manifest) or
    "renamed" (listed under another name than the one the glue spawns)."""
    d = tmp / name
    d.mkdir()
    paths = em["em-wasm32-pthread"].paths()
    glue, wasm = (Path(shutil.copy(paths[r], d / paths[r].name)) for r in ("glue", "wasm"))
    copy = d / ("other.worker.js" if worker == "renamed" else paths["worker"].name)
    shutil.copy(paths["worker"], copy)
    roles = {"glue": glue, "wasm": wasm} if worker == "unlisted" else {
        "glue": glue, "wasm": wasm, "worker": copy}  # fmt: skip
    files, sha = digest(roles)
    if worker == "missing":
        copy.unlink()
    return dataclasses.replace(em["em-wasm32-pthread"], name=name, path=glue, sha256=sha,
                               files=files)  # fmt: skip


@pytest.mark.node
def test_pthread_build_without_its_worker_ends_only_its_cell(
    em: dict[str, Artifact], tmp_path: Path
) -> None:
    """Through ``run``: a -pthread build whose worker .js is missing (listed and deleted, not
    listed, or listed under a name the glue does not spawn) is an `error` cell with its cause;
    the good build beside it passes and the run ends 1, not 2."""
    arts = [_pthread_variant(em, tmp_path, "em-pool-good", "present"),
            *(_pthread_variant(em, tmp_path, f"em-pool-{w}", w)
              for w in ("missing", "unlisted", "renamed"))]  # fmt: skip
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"schema": MANIFEST_SCHEMA,
                                    "artifacts": [a.to_json(tmp_path) for a in arts]}))  # fmt: skip
    names = ", ".join(f'"{a.name}"' for a in arts)
    matrix = tmp_path / "m.toml"
    matrix.write_text(f'name = "no-worker"\nartifacts = [{names}]\npresets = ["tiny"]\n'
                      'checks = ["smoke"]\ntimeout_s = 30\n[hosts]\nnode24 = {}\n')  # fmt: skip
    parser = argparse.ArgumentParser()
    configure(parser)
    out = tmp_path / "run"
    args = parser.parse_args(["--matrix", str(matrix), "--out", str(out),
                              "--artifacts", str(manifest)])  # fmt: skip
    code = run_command(args, HOST_NAMES, lambda m: all_hosts(FAST))
    verdicts = cell_verdicts(read_rows(out / RESULTS_FILE))
    assert code == 1
    assert verdicts["node24/em-pool-good/tiny"][0] == "pass"
    causes = {
        "missing": "em-pool-missing: no worker file at",
        "unlisted": "imports its memory (a -pthread build) but the artifact lists no pthread "
        "worker .js file",
        # the glue spawns the name it was built with, which is not in the set
        "renamed": "the glue asks for tinygpt.worker.js, which is not a file of the artifact "
        "(tinygpt.mjs, tinygpt.wasm, other.worker.js)",
    }
    for worker, cause in causes.items():
        status, detail = verdicts[f"node24/em-pool-{worker}/tiny"]
        assert status == "error" and cause in detail, (worker, detail)


@pytest.mark.chromium
def test_bad_input_ends_only_its_cell_in_chromium(em: dict[str, Artifact], tmp_path: Path) -> None:
    """Chromium too: a glue that throws on import, a factory that never settles and a -pthread
    build whose worker is missing or misnamed are `error` cells with their causes; the good
    build in the same run passes and the run ends 1."""
    good_glue = em["em-wasm32"].paths()["glue"].read_text()
    arts = [
        _variant(em, tmp_path, "em-good", good_glue),
        _variant(em, tmp_path, "em-throws", THROWING_GLUE),
        _variant(em, tmp_path, "em-hangs", HANGING_GLUE),
        *(_pthread_variant(em, tmp_path, f"em-pool-{w}", w) for w in ("missing", "renamed")),
    ]
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"schema": MANIFEST_SCHEMA,
                                    "artifacts": [a.to_json(tmp_path) for a in arts]}))  # fmt: skip
    names = ", ".join(f'"{a.name}"' for a in arts)
    matrix = tmp_path / "m.toml"
    matrix.write_text(f'name = "bad-input"\nartifacts = [{names}]\npresets = ["tiny"]\n'
                      'checks = ["smoke"]\ntimeout_s = 30\n[hosts]\nchromium = {}\n')  # fmt: skip
    parser = argparse.ArgumentParser()
    configure(parser)
    out = tmp_path / "run"
    args = parser.parse_args(["--matrix", str(matrix), "--out", str(out),
                              "--artifacts", str(manifest)])  # fmt: skip
    code = run_command(args, HOST_NAMES, lambda m: all_hosts(FAST))
    verdicts = cell_verdicts(read_rows(out / RESULTS_FILE))
    assert code == 1
    assert verdicts["chromium/em-good/tiny"][0] == "pass"
    causes = {
        "em-throws": "threw on import: Error: this glue fails on purpose",
        "em-hangs": "did not settle within",
        "em-pool-missing": "em-pool-missing: no worker file at",
        "em-pool-renamed": "the glue asks for tinygpt.worker.js, which is not a file of the "
        "artifact",
    }
    for name, cause in causes.items():
        status, detail = verdicts[f"chromium/{name}/tiny"]
        assert status == "error" and cause in detail, (name, detail)


@pytest.mark.chromium
def test_a_page_without_coop_coep_makes_the_pthread_build_incompatible(
    em: dict[str, Artifact], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page served without COOP/COEP has no SharedArrayBuffer: the -pthread build is
    `incompatible` with that reason (its glue never runs, so nothing waits on its pool), and the
    single-threaded build still loads and computes right in the same host. The page worker's
    loader says the same if the host's check is bypassed (the glue alone would say only
    "SharedArrayBuffer is not defined", an `error`)."""
    host = ChromiumHost(timeouts=FAST, isolated=False)
    try:
        with pytest.raises(IncompatibleArtifact) as info:
            host.load(em["em-wasm32-pthread"])
        message = str(info.value)
        assert "is a -pthread build, and the page is not crossOriginIsolated" in message
        assert "SharedArrayBuffer is undefined" in message
        assert host.page_info["crossOriginIsolated"] is False
        _matmul_matches(Kernels(host.load(em["em-wasm32"])))
        # the host sees no pthread feature, the loader in the page's worker still does
        pthread = em["em-wasm32-pthread"]
        hidden = dataclasses.replace(pthread, features=("simd128",))
        monkeypatch.setattr(chromium, "artifact_entry", lambda a, r: {
            **artifact_entry(a, r), "features": list(pthread.features)})  # fmt: skip
        with pytest.raises(IncompatibleArtifact, match=r"no SharedArrayBuffer \(crossOriginIs"):
            host.load(hidden)
    finally:
        host.close()


# A glue around the real one: once tg_set_threads has started the pool's threads, it terminates
# their workers, as a crashed or killed pthread worker would be gone.
KILLING_GLUE = """import real from './real-tinygpt.mjs';
export default async function factory(settings) {
  const Module = await real(settings);
  const set = Module._tg_set_threads;
  Module._tg_set_threads = (...a) => {
    const r = set(...a);
    for (const w of Module.PThread.runningWorkers) w.terminate();
    return r;
  };
  return Module;
}
"""


@pytest.mark.node
def test_a_dead_pthread_worker_is_a_timeout_and_the_host_goes_on(
    em: dict[str, Artifact], tmp_path: Path
) -> None:
    """A kernel split onto a pthread worker that has died never returns: the call is a
    HostTimeout within its limit (a cell `error`), never a hang, and the same host then loads
    and runs the intact build."""
    paths = em["em-wasm32-pthread"].paths()
    d = tmp_path / "em-pool-dies"
    d.mkdir()
    wasm, worker = (Path(shutil.copy(paths[r], d / paths[r].name)) for r in ("wasm", "worker"))
    shutil.copy(paths["glue"], d / "real-tinygpt.mjs")
    glue = d / paths["glue"].name
    glue.write_text(KILLING_GLUE)
    files, sha = digest({"glue": glue, "wasm": wasm, "worker": worker})
    dies = dataclasses.replace(em["em-wasm32-pthread"], name="em-pool-dies", path=glue,
                               sha256=sha, files=files)  # fmt: skip
    host = pinned_node("node24", dataclasses.replace(FAST, call_s=5.0))
    try:
        inst = host.load(dies)
        assert inst.call("tg_set_threads", 2) == 2
        rng = np.random.default_rng(0)  # 2*256*256*128 flops: above TG_PAR_MIN_WORK, so split
        x, w, b = (rng.standard_normal(s).astype(np.float32) for s in ((4, 64, 128), (256, 128),
                                                                         (256,)))  # fmt: skip
        # Kernels frees its buffers on the way out, which names the lost instance and the timeout
        with pytest.raises(HostError, match="call tg_matmul_forward did not return within 5 s"):
            Kernels(inst).matmul_forward(x, w, b)
        _matmul_matches(Kernels(host.load(em["em-wasm32-pthread"])))
    finally:
        host.close()
