"""The ``webgpu`` format (docs/webgpu.md): WGSL kernels + kernels.toml, run in Chromium's WebGPU.

Static tests (no browser): the build's entry, hashes per file and per set, kernels.toml
validated at manifest load with ``file:line`` (``run`` exits 2), hosts without a loader refused
by the format. Chromium tests (SwiftShader, ``--enable-unsafe-webgpu``): every bound op matches
the float64 reference under the WGSL tolerance policy; a matmul whose tile guard drops the last
partial row tile fails parity; a shader that does not compile, a dispatch over a device limit
and a browser without WebGPU end only their cells, with their causes.
"""

from __future__ import annotations

import argparse
import json
import shutil
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from harness.artifact import MANIFEST_SCHEMA, Artifact, ManifestError, load_manifest
from harness.build import REPO_ROOT, WEBGPU_DIR, webgpu_artifact
from harness.checks import ops as ops_check
from harness.formats import file_sha256, set_sha256
from harness.formats.webgpu import check_expression
from harness.hosts.base import Host, IncompatibleArtifact
from harness.hosts.chromium import WEBGPU_FLAGS, ChromiumHost
from harness.hosts.native import NativeHost
from harness.hosts.node import pinned_node
from harness.hosts.registry import HOST_NAMES, all_hosts
from harness.hosts.timeouts import Timeouts
from harness.hosts.wasmtime_host import WasmtimeHost
from harness.kernel import Kernels
from harness.profile import load_profile
from harness.rundir.reader import read_rows
from harness.rundir.rows import RESULTS_FILE
from harness.rundir.verdict import CellStatus, cell_verdicts
from harness.runner import configure, run_command
from reference.presets import PRESETS

# SwiftShader compiles every pipeline on the CPU at load (about 2-7 s on the 2-core VM)
TIMEOUTS = Timeouts(call_s=60.0, load_s=120.0, time_s=120.0, transfer_s=60.0, start_s=60.0)
SOURCE = REPO_ROOT / WEBGPU_DIR
GPU_OPS = (
    "layernorm_forward", "layernorm_backward", "matmul_forward", "matmul_backward",
    "attention_forward", "attention_backward", "gelu_forward", "gelu_backward",
    "crossentropy_forward", "crossentropy_backward", "adamw_update",
    "attention_flash_forward", "attention_flash_backward",
)  # fmt: skip


def _variant(tmp: Path, name: str, edits: Mapping[str, tuple[str, str]]) -> Artifact:
    """A copy of artifacts/webgpu with ``file -> (old, new)`` text replacements, built as
    artifact ``name`` under ``tmp`` (each replacement must apply exactly once)."""
    src = tmp / f"{name}-src"
    shutil.copytree(SOURCE, src)
    for file, (old, new) in edits.items():
        text = (src / file).read_text()
        assert text.count(old) == 1, f"{file}: {old!r} occurs {text.count(old)} times"
        (src / file).write_text(text.replace(old, new))
    return webgpu_artifact(tmp / "build", src, name)


def _manifest(tmp: Path, arts: list[Artifact]) -> Path:
    path = tmp / "build" / "manifest.json"
    entries = [a.to_json(path.parent) for a in arts]
    path.write_text(json.dumps({"schema": MANIFEST_SCHEMA, "artifacts": entries}))
    return path


def _run(
    tmp: Path, manifest: Path, artifacts: list[str], ops: list[str],
    factories: Callable[[object], Mapping[str, Callable[[], Host]]] | None = None,
) -> tuple[int, dict[str, tuple[CellStatus, str]]]:  # fmt: skip
    """``tinygpt-harness run`` of the ops check on chromium; (exit code, cell verdicts)."""
    names = ", ".join(f'"{a}"' for a in artifacts)
    matrix = tmp / "m.toml"
    matrix.write_text(
        f'name = "webgpu-bad-input"\nartifacts = [{names}]\npresets = ["tiny"]\n'
        f'checks = ["ops"]\ntimeout_s = 60\n[hosts]\nchromium = {{}}\n'
        f"[check.ops]\nops = {json.dumps(ops)}\n"
    )
    parser = argparse.ArgumentParser()
    configure(parser)
    out = tmp / "run"
    args = parser.parse_args(
        ["--matrix", str(matrix), "--out", str(out), "--artifacts", str(manifest)]
    )
    code = run_command(args, HOST_NAMES, factories or (lambda m: all_hosts(TIMEOUTS)))
    verdicts = cell_verdicts(read_rows(out / RESULTS_FILE)) if (out / RESULTS_FILE).exists() else {}
    return code, verdicts


# ---- static: no browser ----------------------------------------------------------------------


def test_build_lists_the_manifest_and_every_shader_with_their_hashes(tmp_path: Path) -> None:
    """The build's entry: kernels.toml first, one wgsl:<file> role per shader, each file's sha256
    and the set's; it round-trips through manifest.json with its binding."""
    art = webgpu_artifact(tmp_path / "build")
    roles = [f.role for f in art.file_set()]
    shaders = sorted(p.name for p in SOURCE.glob("*.wgsl"))
    assert roles == ["manifest", *(f"wgsl:{s}" for s in shaders)]
    assert all(f.sha256 == file_sha256(f.path) for f in art.file_set())
    assert art.sha256 == set_sha256(art.file_set())
    loaded = load_manifest(_manifest(tmp_path, [art]))["webgpu"]
    assert loaded.sha256 == art.sha256 and loaded.binding is not None
    assert set(GPU_OPS) == set(loaded.bound().ops)


@pytest.mark.parametrize(
    ("file", "old", "new", "line", "words"),
    [
        ("kernels.toml", 'dispatch = ["cdiv(OC, 16)", "cdiv(N, 16)", "1"]',
         'dispatch = ["cdiv(OC, 16)", "cdiv(M, 16)", "1"]', 20, "unknown name 'M'"),
        ("kernels.toml", 'shader = "matmul_forward.wgsl"', 'shader = "matmul.wgsl"', 17,
         "'matmul.wgsl' is not a file of the artifact"),
        ("kernels.toml", "workgroup_size = [16, 16, 1]\ndispatch = [\"cdiv(OC",
         "workgroup_size = [8, 8, 1]\ndispatch = [\"cdiv(OC", 19, "declares matmul_forward"),
        ("kernels.toml", 'params = ["N", "C", "OC", "has_b"]', 'param = ["N"]', 15,
         "unknown key; allowed"),
        ("matmul_forward.wgsl", "var<storage, read> x: array<f32>",
         "var<storage, read_write> x: array<f32>", 14, "the layout gives binding 2 (x)"),
    ],
)  # fmt: skip
def test_a_bad_kernel_manifest_fails_the_manifest_load_at_its_line(
    tmp_path: Path, file: str, old: str, new: str, line: int, words: str
) -> None:
    """kernels.toml is validated when manifest.json loads: a bad expression, a missing shader,
    a workgroup size the entry point does not declare, an unknown key, a binding whose WGSL
    type is not the layout's: ManifestError at kernels.toml's line."""
    good = webgpu_artifact(tmp_path / "build")
    manifest = _manifest(tmp_path, [good])
    target = good.paths()["manifest" if file == "kernels.toml" else f"wgsl:{file}"]
    text = target.read_text()
    assert text.count(old) == 1
    target.write_text(text.replace(old, new))
    with pytest.raises(ManifestError) as err:
        load_manifest(manifest)
    assert f"kernels.toml:{line}: " in str(err.value) and words in str(err.value)


def test_run_exits_2_on_a_bad_kernel_manifest(tmp_path: Path) -> None:
    """Through ``run``: the bad manifest stops the run before any host starts (exit 2)."""
    good = webgpu_artifact(tmp_path / "build")
    manifest = _manifest(tmp_path, [good])
    kernels = good.paths()["manifest"]
    kernels.write_text(kernels.read_text().replace('result = "mean:losses"', 'result = "sum"'))
    code, verdicts = _run(tmp_path, manifest, ["webgpu"], ["gelu_forward"])
    assert code == 2 and verdicts == {}


@pytest.mark.parametrize(
    ("file", "old", "new", "where", "what"),
    [
        # the binding's gelu_forward calls layernorm's 8-argument export with 3 arguments
        ("webgpu.binding.toml", 'export = "tg_gelu_forward"', 'export = "tg_layernorm_forward"',
         "webgpu.binding.toml:38: export 'tg_layernorm_forward' of artifact wg-bad (",
         "takes 8 arguments"),
        # a scalar where kernels.toml has a buffer: the binding's order is not the manifest's
        ("webgpu.binding.toml", 'args = ["out", "x", "N"]', 'args = ["N", "x", "out"]',
         "webgpu.binding.toml:38: export 'tg_gelu_forward' of artifact wg-bad (",
         "argument 1 is a buffer ('out', "),
        # crossentropy's mean loss without `result`: the call would return nothing
        ("kernels.toml", 'result = "mean:losses"\n', "",
         "kernels.toml:98: ops.crossentropy_forward.result: ",
         "'void' (the default) returns nothing, but crossentropy_forward ("),
        # the shader reads the binding's f32 lr (written with setFloat32) as an integer
        ("adamw_update.wgsl", "lr: f32,", "lr: u32,",
         "webgpu.binding.toml:54: export 'tg_adamw_update' of artifact wg-bad (",
         "passes 'lr' (argument 6, kernels.toml's 'lr') as f32, which the loader writes into "
         "params[1] with setFloat32, but adamw_update.wgsl:4: struct Params's field 2, lr: u32, "
         "reads it as u32"),
        # and its i32 step count as an f32
        ("adamw_update.wgsl", "t: i32 }", "t: f32 }",
         "webgpu.binding.toml:54: export 'tg_adamw_update' of artifact wg-bad (",
         "passes 't' (argument 11, kernels.toml's 't') as i32, which the loader writes into "
         "params[6] with setInt32, but adamw_update.wgsl:4: struct Params's field 7, t: f32"),
    ],
    ids=["arity", "pointer-position", "result", "uniform-f32-as-int", "uniform-int-as-f32"],
)  # fmt: skip
def test_a_binding_kernels_toml_contradicts_exits_2_before_any_host(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], file: str, old: str, new: str,
    where: str, what: str,
) -> None:  # fmt: skip
    """kernels.toml declares every op's arguments and result: a binding call of another arity,
    with a pointer where the op has a scalar (or the reverse), a scalar whose kind the uniform's
    field reads as the other (f32 bits as an integer, or the reverse), or of an op returning f32
    that kernels.toml gives no ``result``, is refused at load, exit 2 at the binding's ``args`` line
    (at kernels.toml's op for its result), no cell run (docs/bindings.md "Errors"; was: a per-op
    ABIError, or a Python TypeError that ended the ops check)."""
    bad = _variant(tmp_path, "wg-bad", {file: (old, new)})
    code, verdicts = _run(tmp_path, _manifest(tmp_path, [bad]), ["wg-bad"], ["gelu_forward"])
    err = capsys.readouterr().err
    assert code == 2 and verdicts == {}
    assert where in err and what in err, err


def test_a_profile_may_list_the_manifest_after_the_shaders(tmp_path: Path) -> None:
    """A profile's ``files`` is a TOML table, whose key order means nothing: kernels.toml listed
    after its shaders loads, the entry found by its role and put first (was: exit 2, "format
    webgpu needs the 'manifest' role first"). Without a manifest role it is still refused."""
    shutil.copytree(SOURCE, tmp_path / "kernels")
    shaders = ", ".join(
        f'"wgsl:{p.name}" = "kernels/{p.name}"' for p in sorted(SOURCE.glob("*.wgsl"))
    )
    (tmp_path / "harness.toml").write_text(
        '[project]\nname = "p"\n[artifacts.gpu]\nformat = "webgpu"\n'
        f'files = {{ {shaders}, manifest = "kernels/kernels.toml" }}\n'
        'binding = "kernels/webgpu.binding.toml"\n'
    )
    art = load_profile(tmp_path / "harness.toml").artifacts["gpu"].build()
    assert art.file_set()[0].role == "manifest" and art.path.name == "kernels.toml"
    assert art.fmt.check_roles(["wgsl:a.wgsl"]) is not None


def test_expressions_take_dims_operators_and_three_functions_only() -> None:
    """The dispatch/size expression language: what it accepts and what it names as wrong."""
    dims = frozenset({"N", "C"})
    assert check_expression("cdiv(N*C, 64) + max(N, 1) - min(C, 2) // 2", dims) is None
    assert "unknown name 'X'" in str(check_expression("N*X", dims))
    assert "only cdiv, max, min" in str(check_expression("pow(N, 2)", dims))
    assert "not allowed" in str(check_expression("N ** 2", dims))
    assert "does not parse" in str(check_expression("N +", dims))


def test_hosts_without_a_webgpu_loader_refuse_it_through_the_format(tmp_path: Path) -> None:
    """native and wasmtime have no loader for the format: the format's refusal names where it
    does load (no host compares format names). Node has one (npm webgpu: its cells are
    test_formats_webgpu_node.py's)."""
    art = webgpu_artifact(tmp_path / "build")
    assert pinned_node("node24").can_load(art) is None
    hosts: list[Host] = [NativeHost(), WasmtimeHost()]
    for host in hosts:
        refusal = host.can_load(art)
        assert refusal is not None
        assert f"{host.name} cannot load webgpu artifacts" in refusal
        assert refusal.endswith("they load in chromium, node")


# ---- Chromium (SwiftShader) ------------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium() -> Iterator[ChromiumHost]:
    """One browser launched with --enable-unsafe-webgpu for the module's tests."""
    host = ChromiumHost(timeouts=TIMEOUTS)
    yield host
    host.close()


@pytest.fixture(scope="module")
def webgpu(tmp_path_factory: pytest.TempPathFactory) -> Artifact:
    """The bundled kernels, built into a temporary directory."""
    return webgpu_artifact(tmp_path_factory.mktemp("webgpu"))


@pytest.mark.chromium
def test_every_bound_op_matches_the_reference_on_swiftshader(
    chromium: ChromiumHost, webgpu: Artifact
) -> None:
    """Every op of the binding, on every shape case, within the WGSL tolerance policy; the
    adapter the load reports is SwiftShader's, a fallback adapter, and the launch flag is
    recorded among the host's flags."""
    assert set(WEBGPU_FLAGS) <= set(chromium.engine_flags())
    inst = chromium.load(webgpu)
    try:
        adapter = inst.load_info["webgpu"]
        assert adapter["vendor"] == "google" and adapter["architecture"] == "swiftshader"
        assert adapter["is_fallback_adapter"] is True
        kernels = Kernels(inst)
        for op in GPU_OPS:
            for case in ops_check.cases(PRESETS["tiny"], seed=0):
                if ops_check.library_case(kernels, op, case) is None:
                    continue  # ln_eps exercises an eps argument; this binding fixes eps
                failed = [r.message for r in ops_check.op_parity(kernels, op, case) if not r.ok]
                assert not failed, f"{op} {case.describe()}: {failed}"
    finally:
        inst.close()


# The fault: the store guard of the tiled matmul keeps only whole row tiles, so when N is not a
# multiple of the tile (16) the last partial tile's rows are never written.
SKIP_LAST_ROW_TILE = {
    "matmul_forward.wgsl": ("if (n < p.N && o < p.OC) {", "if (n < (p.N / TS) * TS && o < p.OC) {")
}


@pytest.mark.chromium
def test_a_tile_boundary_that_skips_the_last_rows_fails_parity(
    chromium: ChromiumHost, tmp_path: Path
) -> None:
    """The faulty matmul passes where N is a multiple of the tile (the preset's N = 64) and
    fails parity wherever it is not (N = 7, 13): its unwritten rows keep the NaN sentinel."""
    bad = _variant(tmp_path, "webgpu-skip-row-tile", SKIP_LAST_ROW_TILE)
    inst = chromium.load(bad)
    try:
        kernels = Kernels(inst)
        by_name = {c.name: c for c in ops_check.cases(PRESETS["tiny"], seed=0)}
        assert by_name["preset"].dims["N"] % 16 == 0
        assert all(r.ok for r in ops_check.op_parity(kernels, "matmul_forward", by_name["preset"]))
        for name in ("odd", "simd_tail"):
            assert by_name[name].dims["N"] % 16 != 0
            results = ops_check.op_parity(kernels, "matmul_forward", by_name[name])
            assert any(not r.ok and r.stage == "nonfinite" for r in results), results
    finally:
        inst.close()


# f32 + u32: WGSL has no implicit conversion between them
BROKEN_SHADER = {"gelu_forward.wgsl": ("y[i] = 0.5 * v * (1.0 + t);", "y[i] = 0.5 * v + i;")}
HUGE_DISPATCH = {
    "kernels.toml": (
        'workgroup_size = [64, 1, 1]\ndispatch = ["cdiv(N, 64)", "1", "1"]\n\n[ops.gelu_backward]',
        'workgroup_size = [1, 1, 1]\ndispatch = ["N", "1", "1"]\n\n[ops.gelu_backward]',
    ),
    "gelu_forward.wgsl": ("@workgroup_size(64, 1, 1)", "@workgroup_size(1, 1, 1)"),
}


@pytest.mark.chromium
def test_a_shader_error_and_a_dispatch_over_a_limit_end_only_their_cells(tmp_path: Path) -> None:
    """Through ``run``: a shader that does not compile is an `error` cell quoting the compiler
    with file:line:column; one workgroup per element of the 65,536-element case exceeds
    maxComputeWorkgroupsPerDimension (65535), an `error` naming the limit; the good artifact
    in the same run passes."""
    arts = [
        webgpu_artifact(tmp_path / "build"),
        _variant(tmp_path, "webgpu-broken", BROKEN_SHADER),
        _variant(tmp_path, "webgpu-huge", HUGE_DISPATCH),
    ]
    code, verdicts = _run(tmp_path, _manifest(tmp_path, arts), [a.name for a in arts],
                          ["gelu_forward"])  # fmt: skip
    assert code == 1
    assert verdicts["chromium/webgpu/tiny"][0] == "pass"
    status, detail = verdicts["chromium/webgpu-broken/tiny"]
    assert status == "error" and "WGSL compilation failed: gelu_forward.wgsl:19:" in detail
    status, detail = verdicts["chromium/webgpu-huge/tiny"]
    assert status == "error"
    assert "65536 workgroups along x" in detail
    assert "device limit maxComputeWorkgroupsPerDimension (65535)" in detail


@pytest.mark.chromium
def test_chromium_without_webgpu_is_incompatible_with_the_reason(tmp_path: Path) -> None:
    """Without --enable-unsafe-webgpu the adapter is null: the load is IncompatibleArtifact,
    and through ``run`` the cell is `incompatible` with that reason."""
    art = webgpu_artifact(tmp_path / "build")
    host = ChromiumHost(timeouts=TIMEOUTS, webgpu=False)
    try:
        assert not set(WEBGPU_FLAGS) & set(host.engine_flags())
        with pytest.raises(IncompatibleArtifact, match=r"requestAdapter\(\) returned null"):
            host.load(art)
    finally:
        host.close()

    def without_webgpu(_matrix: object) -> Mapping[str, Callable[[], Host]]:
        return {**all_hosts(TIMEOUTS), "chromium": lambda: ChromiumHost(timeouts=TIMEOUTS,
                                                                       webgpu=False)}  # fmt: skip

    code, verdicts = _run(tmp_path, _manifest(tmp_path, [art]), ["webgpu"], ["gelu_forward"],
                          without_webgpu)  # fmt: skip
    status, detail = verdicts["chromium/webgpu/tiny"]
    assert status == "incompatible" and "returned null" in detail, detail
    assert code in (0, 1)  # an incompatible cell is no failure of the run


@pytest.mark.chromium
def test_bench_times_the_gpu_ops_with_the_method_and_the_cpu_emulation_recorded(
    tmp_path: Path,
) -> None:
    """Through ``run``: the bench's ops curve times the WGSL matmul inside the page (the GPU's
    timestamp-query clock on SwiftShader, which has it), each row saying the method and that
    the adapter is CPU-emulated; an op the kernels lack is a skipped point; the train-step
    curve is the composed WebGPU step's time, with the same method and label."""
    art = webgpu_artifact(tmp_path / "build")
    matrix = tmp_path / "m.toml"
    matrix.write_text(
        'name = "webgpu-bench"\nartifacts = ["webgpu"]\npresets = ["tiny"]\n'
        'checks = ["bench"]\ntimeout_s = 60\n[hosts]\nchromium = {}\n[check.bench]\n'
        'curves = ["ops", "train_step"]\nops = ["matmul_forward", "residual_forward"]\n'
        "sizes = { matmul_forward = [16, 32] }\nmin_samples = 3\nmax_samples = 3\n"
        "warmup = 1\nbudget_s = 60.0\nreference = false\n"
    )
    parser = argparse.ArgumentParser()
    configure(parser)
    out = tmp_path / "run"
    manifest = _manifest(tmp_path, [art])
    args = parser.parse_args(
        ["--matrix", str(matrix), "--out", str(out), "--artifacts", str(manifest)]
    )
    assert run_command(args, HOST_NAMES, lambda m: all_hosts(TIMEOUTS)) == 0
    rows = [r for r in read_rows(out / RESULTS_FILE) if r.check == "bench"]
    medians = [r for r in rows if r.subject == "op:matmul_forward" and r.metric == "median_ns"]
    assert sorted(r.x_value for r in medians) == [16.0, 32.0]
    for r in medians:
        assert r.value > 0 and r.status in ("measured", "noisy")
        assert "clock=webgpu timestamp-query" in r.detail
        assert "CPU-emulated (swiftshader adapter)" in r.detail
    skipped = {r.subject: r.detail for r in rows if r.status == "skipped"}
    assert "not bound" in skipped["op:residual_forward"]
    (step,) = [r for r in rows if r.subject == "train_step" and r.metric == "median_ns"]
    assert step.value > 0 and "composed WebGPU step" in step.detail
    assert "timestamp-query" in step.detail and "CPU-emulated (google/swiftshader)" in step.detail


def test_the_webgpu_matrix_is_opt_in_and_names_its_cells() -> None:
    """matrices/webgpu.toml validates with the real checks: the webgpu artifact on chromium at
    tiny and small, wasm32 beside it there, node24's one refusal cell; neither default.toml nor
    ci.toml names the artifact (the main job is over its time budget)."""
    from harness.matrix import Names, expand_cells, load_matrix

    names = Names(hosts=HOST_NAMES, artifacts=("webgpu", "wasm32", "wasm64", "native",
                                               "native-x86-64", "em-wasm32", "em-wasm64",
                                               "em-wasm32-pthread"))  # fmt: skip
    cells = {c.id for c in expand_cells(load_matrix(REPO_ROOT / "matrices/webgpu.toml", names))}
    assert cells == {
        "chromium/webgpu/tiny", "chromium/webgpu/small", "chromium/wasm32/tiny",
        "chromium/wasm32/small", "node24/webgpu/tiny",
    }  # fmt: skip
    for shipped in ("default", "ci"):
        assert "webgpu" not in (REPO_ROOT / f"matrices/{shipped}.toml").read_text()
