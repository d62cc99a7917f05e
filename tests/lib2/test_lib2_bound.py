"""lib2 through the harness: its manifest entries, its binding's model tables, and the smoke,
model and bench checks that drive it only through its binding and a host's Instance.

The artifacts are artifacts/build's when that manifest is fresh (``tinygpt-harness build``
registers lib2), else lib2 alone built into a temporary directory.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from harness.artifact import Artifact, load_manifest
from harness.bindings import BindingError, load_binding
from harness.bindings.model_layout import UnsupportedConfig
from harness.build import (
    DEFAULT_OUT,
    MANIFEST,
    REPO_ROOT,
    emcc_path,
    manifest_is_fresh,
    write_manifest,
)
from harness.build_lib2 import EM_BUILDS, LIB2_BINDING, lib2_artifacts, lib2_names
from harness.checks import bench_paired, get_check
from harness.checks import defaults as defaults_check
from harness.checks.base import CellContext
from harness.cli import main as cli_main
from harness.hosts.base import ABIError, Instance
from harness.hosts.install import node_binary
from harness.hosts.native import NativeHost
from harness.hosts.node import NodeHost, pinned_node
from harness.hosts.registry import HOST_NAMES, all_hosts
from harness.hosts.timeouts import Timeouts
from harness.matrix import Names, expand_cells, load_matrix
from harness.rundir.reader import read_rows
from harness.rundir.rows import RESULTS_FILE, Row
from harness.rundir.verdict import cell_verdicts
from harness.runner import configure, run_command
from reference.presets import PRESETS, ModelConfig

FAST = Timeouts(call_s=30.0, load_s=10.0, time_s=60.0, transfer_s=30.0, start_s=60.0)
MODEL_OPTIONS = {"batch": 4, "steps": 10}
needs_emcc = pytest.mark.skipif(emcc_path() is None, reason="emcc is not installed")


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A manifest holding lib2's artifacts: artifacts/build's if fresh, else a lib2 build."""
    if manifest_is_fresh(DEFAULT_OUT):
        return DEFAULT_OUT / MANIFEST
    out = tmp_path_factory.mktemp("lib2-build")
    return write_manifest(out, list(lib2_artifacts(out, emcc_path() is not None).values()))


@pytest.fixture(scope="module")
def arts(manifest: Path) -> dict[str, Artifact]:
    """lib2's artifacts by name."""
    found = load_manifest(manifest)
    return {n: found[n] for n in lib2_names(emcc_path() is not None)}


@pytest.fixture
def native(arts: dict[str, Artifact]) -> Iterator[Instance]:
    """lib2-native loaded by the native host."""
    host = NativeHost()
    inst = host.load(arts["lib2-native"])
    try:
        yield inst
    finally:
        inst.close()
        host.close()


def _node24() -> NodeHost:
    if not node_binary("node24").is_file():
        pytest.skip("node24 is not installed (tinygpt-harness install-hosts)")
    return pinned_node("node24", FAST)


def _rows(
    check: str,
    inst: Instance,
    art: Artifact,
    preset: ModelConfig,
    options: Mapping[str, object] | None = None,
) -> list[Row]:
    """Run check ``check`` in one in-process cell."""
    if options is None:
        options = MODEL_OPTIONS if check == "model" else {}
    ctx = CellContext(host="native", host_version="", artifact=art, preset=preset,
                      instance=inst, options=options)  # fmt: skip
    return list(get_check(check)(ctx))


def _failing(rows: list[Row]) -> set[str]:
    return {r.subject for r in rows if r.status in ("fail", "error")}


# ---- the manifest -----------------------------------------------------------------------------


def test_build_registers_every_lib2_build_with_its_binding(arts: dict[str, Artifact]) -> None:
    """Each lib2 entry names lib2's binding and carries its signatures; the Memory64 build is
    64-bit; none has tinygpt.h's ABI."""
    for art in arts.values():
        assert art.binding == REPO_ROOT / LIB2_BINDING
        assert art.signatures == art.bound().signatures_json()
        assert art.bound().abi == "" and "tg_train_step" in art.exports()
    if "lib2-em-wasm64" in arts:
        assert arts["lib2-em-wasm64"].ptr_width == 64
        assert "-sMEMORY64=1" in arts["lib2-em-wasm64"].flags


def test_lib2_matrix_lists_every_loadable_cell() -> None:
    """matrices/lib2.toml validates with the real checks; native runs only lib2-native, every
    other host the three emscripten builds (Node 20 x Memory64 kept: its refusal is a finding),
    each on tiny and small with smoke, ops, model, defaults and bench, and the corpus contract
    at tiny (where its band is recorded)."""
    names = Names(hosts=HOST_NAMES, artifacts=lib2_names(emscripten=True))
    cells = {c.id: c for c in expand_cells(load_matrix(REPO_ROOT / "matrices/lib2.toml", names))}
    wasm_hosts = ("node", "node22", "node24", "chromium")
    want = {f"native/lib2-native/{p}" for p in ("tiny", "small")} | {
        f"{h}/{a}/{p}" for h in wasm_hosts for a in EM_BUILDS for p in ("tiny", "small")
    }
    assert set(cells) == want and "node/lib2-em-wasm64/tiny" in cells
    for c in cells.values():
        corpus = ("corpus",) if c.preset == "tiny" else ()
        assert c.checks == ("smoke", "ops", "model", "defaults", *corpus, "bench"), c.id


# ---- the model tables -------------------------------------------------------------------------


def _edited(tmp_path: Path, old: str, new: str) -> Path:
    """lib2's binding with one edit, written to tmp_path."""
    text = (REPO_ROOT / LIB2_BINDING).read_text()
    assert old in text, old
    header = (REPO_ROOT / LIB2_BINDING).parent / "include" / "lib2.h"  # relative to the file
    text = text.replace('header = "include/lib2.h"', f'header = "{header}"')
    path = tmp_path / "lib2.binding.toml"
    path.write_text(text.replace(old, new, 1))
    return path


def _line_of(path: Path, needle: str) -> int:
    return next(i for i, t in enumerate(path.read_text().splitlines(), 1) if needle in t)


@pytest.mark.parametrize(
    ("old", "new", "needle", "message"),
    [
        ('order = "layer_major"', 'order = "layer_major"\nstride = 2', "stride",
         r"model\.params\.stride: unknown key"),
        ('{ name = "W1", shape = ["C", "F"]', '{ name = "W1", shape = ["F", "C"]', '{ name = "W1"',
         r"W1 \(F, C\) with layout in_out is not a fcw"),
        ('ref = "qkvw", part = "k"', 'ref = "qkvw"', '{ name = "Wk"', r"'qkvw' is fused"),
        ('ref = "qkvb", part = "v"', 'ref = "qkvb", part = "q"', '{ name = "bv"',
         r"'qkvb' part q is covered twice"),
        ('"Wo", "W1", "W2"]', '"Wo", "W1", "W3"]', "decayed =",
         r"'W3' is not a tensor of \[model\.params\]"),
        ("header_bytes = 32", "header_bytes = 30", "header_bytes",
         r"must be >= 0 and a multiple of 4"),
        ("beta2 = 0.95", "beta2 = 1.5", "beta2 = ", r"model\.defaults\.beta2: must be in"),
        ('"wpe", "Wq", "Wk", "Wv"', '"wpe", "Wq", "Wk"', "decayed =",
         r"decays only some parts of qkvw"),
    ],
)  # fmt: skip
def test_bad_model_tables_are_binding_errors_at_their_line(
    tmp_path: Path, old: str, new: str, needle: str, message: str
) -> None:
    """An unknown key, a shape or part that does not fit the reference tensor, a tensor covered
    twice, an unknown decayed tensor, a bad header size or beta: BindingError at file:line."""
    path = _edited(tmp_path, old, new)
    with pytest.raises(BindingError, match=message) as info:
        load_binding(path)
    assert str(info.value).startswith(f"{path}:{_line_of(path, needle)}:")


# ---- the checks in process (native host) ----------------------------------------------------


def test_model_check_passes_on_lib2_native(native: Instance, arts: dict[str, Artifact]) -> None:
    """Every verdict row of the bound model check passes at tiny, and each comparison the
    issue names is there."""
    rows = _rows("model", native, arts["lib2-native"], PRESETS["tiny"])
    assert not _failing(rows), [r.detail for r in rows if r.status in ("fail", "error")]
    subjects = {r.subject for r in rows if r.status == "pass"}
    assert {"num_params", "state:format", "loss:init", "loss:eval", "loss:spread", "trajectory",
            "generate:greedy", "generate:sampled", "determinism",
            "state:round_trip"} <= subjects  # fmt: skip


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        # a transposed Wq: invisible at init (uniform attention), caught from the spread weights
        ('ref = "qkvw", part = "q", layout = "in_out"', 'ref = "qkvw", part = "q"',
         {"loss:spread", "trajectory"}),
        ("beta1 = 0.9", "beta1 = 0.5", {"trajectory"}),  # wrong defaults: the trajectory
    ],
)  # fmt: skip
def test_model_check_fails_on_a_wrong_binding(
    tmp_path: Path, arts: dict[str, Artifact], old: str, new: str, expected: set[str]
) -> None:
    """The check can fail: a binding with a transposed weight or another AdamW beta1 than
    lib2's makes the comparisons it affects fail."""
    art = dataclasses.replace(arts["lib2-native"], binding=_edited(tmp_path, old, new))
    host = NativeHost()
    try:
        failing = _failing(_rows("model", host.load(art), art, PRESETS["tiny"]))
    finally:
        host.close()
    assert expected <= failing


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"biases": ("qkv", "fc")}, r"biases on \['fc', 'qkv'\]; the library's model .* on "
         r"\['attproj', 'fc', 'fcproj', 'qkv'\]"),
        ({"ln_eps": 1e-6}, r"LayerNorm eps 1e-06; the library's model has 1e-05 built in"),
    ],
)  # fmt: skip
def test_a_preset_the_library_cannot_express_is_incompatible(
    native: Instance, arts: dict[str, Artifact], change: dict[str, object], words: str
) -> None:
    """lib2's model has every bias and LayerNorm eps 1e-5: a preset with fewer biases or another
    eps is UnsupportedConfig (the runner's `preset` row), in words naming both sides."""
    preset = dataclasses.replace(PRESETS["tiny"], name="other", **change)  # type: ignore[arg-type]
    for check in ("model", "smoke", "bench"):
        with pytest.raises(UnsupportedConfig, match=words):
            _rows(check, native, arts["lib2-native"], preset)


def test_the_runner_writes_an_unsupported_preset_as_incompatible(
    tmp_path: Path, manifest: Path
) -> None:
    """Through ``run --project``: lib2 at a project preset with another LayerNorm eps gives each
    check one ``incompatible`` row in the library's words (smoke's allocator rows still pass),
    and the run exits 0."""
    project = tmp_path / "harness.toml"
    project.write_text('[project]\nname = "p"\n[presets.eps6]\nn_layer = 1\nn_head = 2\n'
                       'n_embd = 16\nblock_size = 16\nln_eps = 1e-6\n')  # fmt: skip
    matrix = tmp_path / "m.toml"
    matrix.write_text('name = "m"\nartifacts = ["lib2-native"]\npresets = ["eps6"]\n'
                      'checks = ["smoke", "model"]\n[hosts]\nnative = {}\n')  # fmt: skip
    out = tmp_path / "run"
    assert cli_main(["run", "--matrix", str(matrix), "--out", str(out), "--artifacts",
                     str(manifest), "--project", str(project)]) == 0  # fmt: skip
    rows = [r for r in read_rows(out / RESULTS_FILE) if r.check in ("smoke", "model")]
    refused = {(r.check, r.subject) for r in rows if r.status == "incompatible"}
    assert refused == {("smoke", "preset"), ("model", "preset")}
    assert all("LayerNorm eps 1e-06" in r.detail for r in rows if r.status == "incompatible")
    assert {r.status for r in rows} <= {"pass", "incompatible"}  # smoke's allocator rows pass


def test_a_7_bit_preset_runs_at_the_library_vocabulary(
    native: Instance, arts: dict[str, Artifact]
) -> None:
    """tiny's vocabulary is 128, lib2's 256: the model is made at 256, and the count row says so;
    a 256-byte preset of the same dims gives the same count without the note."""
    rows = _rows("model", native, arts["lib2-native"], PRESETS["tiny"])
    (count,) = [r for r in rows if r.subject == "num_params"]
    assert count.status == "pass" and "at the library's vocab 256" in count.detail
    byte = dataclasses.replace(PRESETS["tiny"], name="tiny256", vocab_size=256)
    rows = _rows("model", native, arts["lib2-native"], byte)
    (same,) = [r for r in rows if r.subject == "num_params"]
    assert same.value == count.value and "library's vocab" not in same.detail


def test_smoke_and_bench_run_through_the_binding(
    native: Instance, arts: dict[str, Artifact]
) -> None:
    """Smoke: the allocator round trip, the matmul row (lib2's matmul, no bias) and one bound
    train step pass. Bench: the bound train step is timed, the overhead curve and the ops lib2
    lacks skipped, and its
    side-by-side speedup over the numpy reference is taken at the library's shapes (vocab 256,
    the whole context) from paired blocks."""
    smoke = {r.subject: r for r in _rows("smoke", native, arts["lib2-native"], PRESETS["tiny"])}
    assert smoke["alloc:round_trip"].status == "pass"
    assert smoke["model:train_step"].status == "pass"
    assert smoke["op:matmul_forward"].status == "pass"  # lib2's matmul, through the binding
    bench = _rows("bench", native, arts["lib2-native"], PRESETS["tiny"])
    timed = [r for r in bench if r.subject == "train_step" and r.metric == "median_ns"]
    assert len(timed) == 1 and timed[0].value > 0 and "tg_train_step" in timed[0].detail
    # the ops curve times lib2's ops through its binding (harness/checks/bench_bound.py); the
    # ones lib2 lacks and the overhead curve are skipped rows
    assert {r.subject for r in bench if r.status == "skipped"} >= {"overhead", "op:gelu_forward"}
    paired = [r for r in bench if r.subject == bench_paired.SUBJECT]
    ratios = [r.value for r in paired if r.metric == "pair_ratio"]
    (speedup,) = [r for r in paired if r.metric == "speedup"]
    assert len(ratios) >= bench_paired.MIN_PAIRS
    assert speedup.value == pytest.approx(statistics.median(ratios))
    assert f"T={PRESETS['tiny'].block_size} reference at vocab 256" in speedup.detail
    assert not [r for r in bench if r.subject == "train_step" and r.metric == "speedup"]


def test_bench_takes_the_cold_first_train_step_through_the_binding(
    manifest: Path, tmp_path: Path
) -> None:
    """Through the runner, whose host has a cold instance: the bound train step's first call in
    a fresh process is ``train_step:cold`` (one sample, no CI), beside the steady curve, and the
    report's cold/steady table pairs the two."""
    from harness.checks.bench import COLD_SUBJECT
    from harness.report_data import cold_ratios, load_run_dir

    matrix = tmp_path / "m.toml"
    matrix.write_text('name = "m"\nartifacts = ["lib2-native"]\npresets = ["tiny"]\n'
                      'checks = ["bench"]\n[hosts]\nnative = {}\n[check.bench]\n'
                      'curves = ["train_step"]\nmin_samples = 5\nmax_samples = 5\n'
                      'budget_s = 3.0\npaired = false\n')  # fmt: skip
    parser = argparse.ArgumentParser()
    configure(parser)
    out = tmp_path / "run"
    args = parser.parse_args(["--matrix", str(matrix), "--out", str(out), "--artifacts",
                              str(manifest)])  # fmt: skip
    assert run_command(args, HOST_NAMES, lambda m: all_hosts(FAST)) == 0
    rows = read_rows(out / RESULTS_FILE)
    (cold,) = [r for r in rows if r.subject == COLD_SUBJECT]
    assert cold.metric == "cold_ns" and cold.value > 0, cold
    assert "first tg_train_step call, through the binding, after instantiation" in cold.detail
    pts = cold_ratios(load_run_dir(out).rows)
    assert list(pts["artifact"]) == ["lib2-native"] and float(pts["ratio"].iloc[0]) > 0


# ---- the defaults and corpus contracts ---------------------------------------------------------


def test_the_defaults_check_holds_the_bindings_declared_constants_to_the_reference(
    native: Instance, arts: dict[str, Artifact]
) -> None:
    """lib2 reports no defaults: the constants built into it are its binding's [model.defaults],
    each compared with the reference at its file:line, and its decayed tensors as the reference's
    set. No ``binary`` row: the library has no tg_defaults_json."""
    rows = _rows("defaults", native, arts["lib2-native"], PRESETS["tiny"])
    assert not _failing(rows), [r.detail for r in rows if r.status in ("fail", "error")]
    binding = {r.subject: r for r in rows if r.subject.startswith("binding:")}
    for key in ("beta1", "beta2", "eps", "weight_decay", "decayed"):
        assert binding[f"binding:{key}"].status == "pass"
    line = _line_of(REPO_ROOT / LIB2_BINDING, "weight_decay = ")
    detail = binding["binding:weight_decay"].detail
    assert f"lib2.binding.toml:{line}: matches weight_decay" in detail
    assert "learning_rate" in binding["binding:(not covered)"].detail
    assert not [r for r in rows if r.subject.startswith("binary:")]


@pytest.mark.parametrize(
    ("old", "new", "subject", "words"),
    [
        ("weight_decay = 0.1", "weight_decay = 0.01", "binding:weight_decay",
         "MISMATCH weight_decay: expected 0.1, found 0.01"),
        ('"Wo", "W1", ', '"Wo", ', "binding:decayed", "MISMATCH decayed"),  # fcw undecayed
        ("[model.defaults]", "[model.defaults_gone]", "binding:[model.defaults]",
         "has no [model.defaults]"),
    ],
)  # fmt: skip
def test_the_defaults_check_fails_a_binding_that_declares_other_constants(
    tmp_path: Path,
    arts: dict[str, Artifact],
    old: str,
    new: str,
    subject: str,
    words: str,
) -> None:
    """Another weight decay, a W matrix left out of ``decayed``, or no [model.defaults] at all
    (nothing states the library's constants) each fail the row that names it."""
    path = _edited(tmp_path, old, new)
    if new == "[model.defaults_gone]":  # drop the whole table, not just rename it
        text = path.read_text()
        start = text.index(new)
        end = text.find("\n[", start + 1)
        path.write_text(text[:start] + (text[end:] if end >= 0 else ""))
    art = dataclasses.replace(arts["lib2-native"], binding=path)
    host = NativeHost()
    try:
        rows = _rows("defaults", host.load(art), art, PRESETS["tiny"])
    finally:
        host.close()
    assert _failing(rows) == {subject}, [r.detail for r in rows if r.status == "fail"]
    (row,) = [r for r in rows if r.subject == subject]
    assert row.status == "fail" and words in row.detail, row.detail


@pytest.mark.parametrize(("lr", "status"), [(None, "pass"), (3e-3, "fail")])
def test_the_corpus_check_trains_a_bound_library_into_the_band(
    native: Instance, arts: dict[str, Artifact], lr: float | None, status: str
) -> None:
    """The convergence band judges lib2 trained through its binding (its own init and batches)
    at the default rate, and fails it at TinyGPT's 10x-hot 3e-3 (below the band). No
    step-by-step trajectory: the recorded reference run is not its twin."""
    options = {} if lr is None else {"learning_rate": lr}
    rows = _rows("corpus", native, arts["lib2-native"], PRESETS["tiny"], options)
    by = {r.subject: r for r in rows if r.status != "measured"}
    assert by["convergence"].status == status, by["convergence"].detail
    assert "at the library's vocab 256" in by["convergence"].detail
    if lr is not None:
        assert "BELOW the band" in by["convergence"].detail
    assert by["convergence:trajectory"].status == "skipped"
    assert "not its twin" in by["convergence:trajectory"].detail


# ---- hosts: the runner, and Memory64's BigInt pointers ---------------------------------------


@pytest.mark.node
@pytest.mark.chromium
@pytest.mark.slow
@needs_emcc
def test_the_shipped_lib2_matrix_passes_on_every_host_that_loads_it(
    manifest: Path, tmp_path: Path
) -> None:
    """``run --matrix matrices/lib2.toml`` (smoke, ops, model, defaults, corpus; bench is a
    curve, not a verdict): every cell passes (ops lib2 does not export are skipped "not bound")
    except the system Node 20 on the Memory64 build, which is incompatible in V8's own words."""
    _node24().close()  # skips when Node 24 is not installed
    parser = argparse.ArgumentParser()
    configure(parser)
    out = tmp_path / "run"
    args = parser.parse_args(["--matrix", str(REPO_ROOT / "matrices/lib2.toml"), "--out",
                              str(out), "--artifacts", str(manifest),
                              "--checks", "smoke,ops,model,defaults,corpus"])  # fmt: skip
    code = run_command(args, HOST_NAMES, lambda m: all_hosts(FAST))
    rows = read_rows(out / RESULTS_FILE)
    model = [r for r in rows if r.check == "model"]
    # the one row skipped by design: lib2's key bias has an exact gradient of 0, so its float32
    # params updates are rounding that Adam scales up (docs/checks.md, per-tensor AdamW); its m
    # and v rows are still judged
    unjudged = {(r.cell, r.subject) for r in model if r.status == "skipped"}
    assert all(subject == "adamw:bk.params" for _, subject in unjudged), sorted(unjudged)
    assert model and all(r.status in ("pass", "measured", "skipped") for r in model), [
        (r.cell, r.subject, r.detail) for r in model if r.status not in ("pass", "measured")
    ]
    contracts = [r for r in rows if r.check in ("defaults", "corpus")]
    assert {r.subject for r in contracts if r.status == "pass"} >= {
        "binding:weight_decay", "binding:decayed", "identity:sha256", "convergence"
    }  # fmt: skip
    assert not [r for r in contracts if r.status in ("fail", "error")], [
        (r.cell, r.subject, r.detail) for r in contracts if r.status in ("fail", "error")
    ]
    verdicts = cell_verdicts(rows)
    assert len(verdicts) == 26, sorted(verdicts)
    refused = {c: v for c, v in verdicts.items() if v[0] != "pass"}
    assert set(refused) == {"node/lib2-em-wasm64/tiny", "node/lib2-em-wasm64/small"}, refused
    for status, cause in refused.values():
        assert status == "incompatible" and "invalid memory limits flags" in cause, cause
    assert code == 0


@pytest.mark.node
@needs_emcc
def test_memory64_lib2_refuses_number_pointers_as_abi_error_and_bigints_pass(
    arts: dict[str, Artifact],
) -> None:
    """TinyGPT's bug on lib2's MEMORY64 glue: ``_tg_malloc`` returns a BigInt, and a host that
    passes a pointer on as a Number gets V8's TypeError, reported as ABIError quoting it. The
    binding's kinds (BigInt for ``ptr`` at width 64) make the same calls work."""
    node24 = _node24()
    shim = NodeHost("node24-shim", node24.executable, node24.install_hint, timeouts=FAST,
                    number_shim=True)  # fmt: skip
    try:
        inst = shim.load(arts["lib2-em-wasm64"])
        ptr = inst.alloc(64)
        with pytest.raises(ABIError, match=rf"^Cannot convert {ptr} to a BigInt$"):
            inst.free(ptr)
        inst = node24.load(arts["lib2-em-wasm64"])
        rows = _rows("smoke", inst, arts["lib2-em-wasm64"], PRESETS["tiny"])
        assert {r.subject for r in rows if r.status == "pass"} == {
            "alloc:round_trip", "op:matmul_forward", "model:train_step", "bounds"
        }  # fmt: skip
    finally:
        shim.close()
        node24.close()


def test_memory64_on_lib2_skips_what_is_not_bound(
    native: Instance, arts: dict[str, Artifact]
) -> None:
    """The memory64 check on a library bound without tinygpt.h: its bound ops pass, the ops it
    lacks and the tinygpt.h train step are skipped "not bound", and nothing is an error."""
    rows = _rows("memory64", native, arts["lib2-native"], PRESETS["tiny"])
    assert not _failing(rows), [(r.subject, r.detail) for r in rows if r.status != "pass"]
    status = {r.subject: r.status for r in rows}
    assert status["op:matmul_forward"] == "pass" and status["op:crossentropy_forward"] == "skipped"
    assert status["train_step"] == "skipped"


def test_a_binding_without_a_needed_model_call_is_skipped_by_name(
    tmp_path: Path, arts: dict[str, Artifact]
) -> None:
    """A library binding no generate call: the model check is one ``skipped`` row naming the
    missing call, not an error from the first comparison that needs it."""
    old = ('[model.generate]\nexport = "tg_generate"\nargs = ["model", "prompt", "len", "out", '
           '"max_new", "temperature", "top_k", "seed"]\n')  # fmt: skip
    art = dataclasses.replace(arts["lib2-native"], binding=_edited(tmp_path, old, ""))
    host = NativeHost()
    try:
        rows = _rows("model", host.load(art), art, PRESETS["tiny"])
    finally:
        host.close()
    assert [(r.subject, r.status) for r in rows] == [("model", "skipped")]
    assert "generate" in rows[0].detail


def _ops_only_binding(tmp_path: Path, fixed: str = "") -> Path:
    """lib2's binding without its [model.*] tables: a library bound by its ops alone; with
    ``fixed``, its adamw_update takes eps built in instead of as an argument."""
    text = _edited(tmp_path, "[model.create]", "[model.create]").read_text()
    ops_only = text[: text.index("[model.create]")]
    if fixed:
        ops_only = ops_only.replace('"beta2", "eps", "weight_decay"', '"beta2", "weight_decay"')
        ops_only += fixed + "\n"
    path = tmp_path / "ops_only.binding.toml"
    path.write_text(ops_only)
    return path


def test_a_library_bound_by_ops_alone_has_no_model_defaults_to_declare(
    tmp_path: Path, arts: dict[str, Artifact]
) -> None:
    """lib2 bound by its ops only trains through the harness's calls, whose AdamW constants come
    from the reference: a missing [model.defaults] is a listed skip, not the failure it was
    ("reference key '[model.defaults]' (expected ) is missing"), and nothing else fails."""
    art = dataclasses.replace(arts["lib2-native"], binding=_ops_only_binding(tmp_path))
    host = NativeHost()
    try:
        rows = _rows("defaults", host.load(art), art, PRESETS["tiny"])
    finally:
        host.close()
    binding = [r for r in rows if r.subject.startswith("binding:")]
    assert [(r.subject, r.status) for r in binding] == [("binding:[model.defaults]", "skipped")]
    assert "builds in no AdamW constant" in binding[0].detail
    assert not _failing(rows)


@pytest.mark.parametrize(
    ("eps", "kind", "words"),
    [("1e-8", "ok", "matches eps"), ("1e-6", "mismatch", "MISMATCH eps: expected 1e-08")],
)
def test_a_constant_an_ops_only_binding_fixes_is_compared(
    tmp_path: Path, eps: str, kind: str, words: str
) -> None:
    """A constant built into the library's adamw export (the binding's ``fixed``) is the
    library's own: it is compared with the reference at the binding's line."""
    path = _ops_only_binding(tmp_path, f"fixed = {{ eps = {eps} }}")
    found = defaults_check.check_binding(load_binding(path))
    (finding,) = [f for f in found if f.key == "eps"]
    assert {f.kind for f in found if f is not finding} == {"uncovered"}  # the other keys
    assert finding.kind == kind and words in finding.message()
    assert f"{path}:{_line_of(path, '[ops.adamw_update]')}" in finding.location
