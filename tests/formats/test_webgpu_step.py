"""The WebGPU train step composed of the WGSL ops (issue 16), in Chromium on SwiftShader.

Through ``tinygpt-harness run``'s model check: the step from the reference's init matches the
float64 reference (logits, loss, every gradient, the losses and every tensor after k steps)
under the WGSL-inflated model bounds, twice bitwise alike. A layout fault of the step's own
(wte uploaded transposed, as a head reading it as (C, V) would want) fails the round trip of
the tensor it names, and the logits.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from harness.build import REPO_ROOT, WEBGPU_DIR
from harness.checks.webgpu_model import max_ulp_difference
from harness.hosts import chromium as chromium_module
from harness.hosts.timeouts import Timeouts
from harness.rundir.reader import read_rows
from harness.rundir.rows import RESULTS_FILE, Row
from harness.tolerance import adam_direction_max, wgsl_step_factor
from tests.formats.bundled_run import run_bundled_kernels

TIMEOUTS = Timeouts(call_s=120.0, load_s=120.0, time_s=120.0, transfer_s=60.0, start_s=60.0)


def _model_rows(
    tmp: Path, attention: str | None = None, src: Path | None = None
) -> tuple[int, list[Row]]:
    """``run`` of the model check on chromium/webgpu/tiny (the bundled kernels, or ``src``,
    built under ``tmp``) with 3 trajectory steps of batch 2, the step's attention ``attention``
    (None: the option's default)."""
    option = "" if attention is None else f'attention = "{attention}"\n'
    code, out = run_bundled_kernels(
        tmp,
        'name = "webgpu-step"\npresets = ["tiny"]\nchecks = ["model"]\ntimeout_s = 120\n'
        f"[hosts]\nchromium = {{}}\n[check.model]\nsteps = 3\nbatch = 2\n{option}",
        TIMEOUTS,
        src,
    )
    return code, list(read_rows(out / RESULTS_FILE))


# A causal-mask fault of the flash backward's dq pass: each query row skips its own key (the
# diagonal), so dq loses the term i == j. The naive kernels are untouched.
DQ_SKIPS_DIAGONAL = (
    "let last = min(k0 + KTILE, t + 1u);",
    "let last = min(k0 + KTILE, t);",
)


def _by_subject(rows: list[Row]) -> dict[str, list[Row]]:
    out: dict[str, list[Row]] = {}
    for r in rows:
        if r.check == "model":
            out.setdefault(r.subject, []).append(r)
    return out


@pytest.mark.chromium
def test_the_step_matches_the_reference_from_its_init(tmp_path: Path) -> None:
    """Every judged row passes: round trip, logits, loss, each gradient, the 3-step trajectory,
    each tensor after it, determinism; and the logits sit well inside their bound."""
    code, rows = _model_rows(tmp_path)
    subjects = _by_subject(rows)
    judged = {
        s: [r for r in rs if r.status in ("pass", "fail", "error")] for s, rs in subjects.items()
    }
    failing = {s: rs[0].detail for s, rs in judged.items() if any(r.status != "pass" for r in rs)}
    assert failing == {}, failing
    for name in ("wte", "qkvw", "fcprojb", "lnfw"):
        assert f"grad:{name}" in judged and f"state:{name}" in judged
        assert judged[f"roundtrip:{name}"][0].status == "pass"
    assert judged["determinism"][0].status == "pass"
    # the cross-adapter table: every request SwiftShader answers, pairs bitwise equal, and the
    # one-adapter summary row says so
    table = subjects["xadapter:table"][0]
    assert table.value == 1.0 and table.detail.startswith("one adapter: google/swiftshader")
    pairs = [s for s in subjects if s.startswith("xadapter:") and "~" in s]
    assert "xadapter:default~fallback" in pairs
    assert all(subjects[p][0].status == "pass" and subjects[p][0].value == 0.0 for p in pairs)
    assert [r.value for r in subjects["trajectory"] if r.metric == "loss"] != []
    assert subjects["attention"][0].detail.startswith("the step's attention: flash (")
    # the optimizer on the step's own gradients: every tensor, element by element, and the
    # full-rate probe from off-init biases and LayerNorm with AdamW's moments read back
    for n in ("wte", "ln1w", "qkvb", "lnfb"):
        assert {f"update:{n}", f"adamw:{n}", f"adamw:m:{n}", f"adamw:v:{n}"} <= set(judged)
    assert code == 0


@pytest.mark.chromium
def test_a_decay_mask_that_decays_layernorm_weights_fails_their_update_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The step's own copy of the decay mask (webgpu_step.mjs DECAYED) also naming the
    LayerNorm weights and two biases: over 3 warmup steps it moves ln1w, ln2w and lnfw by
    ``lr wd |p|``, which the reference-trajectory ``state:`` rows allow (their bound lets a
    near-zero gradient flip) but the ``update:`` rows, replayed on the step's own gradients,
    fail. The biases start at 0 there, so decaying them moves nothing; the ``adamw:`` probe
    (biases and LayerNorm off their init, full rate) fails all five tensors, the biases too."""
    js = tmp_path / "js"
    shutil.copytree(chromium_module.JS_DIR, js)
    step = js / "webgpu_step.mjs"
    text = step.read_text()
    old = "const DECAYED = new Set(['wte', 'wpe', 'qkvw', 'attprojw', 'fcw', 'fcprojw']);"
    assert text.count(old) == 1
    step.write_text(text.replace(old, old.replace("]", ", 'ln1w', 'ln2w', 'lnfw', 'qkvb', 'fcb']")))
    monkeypatch.setattr(chromium_module, "JS_DIR", js)
    code, rows = _model_rows(tmp_path)
    judged = {s: rs for s, rs in _by_subject(rows).items() if rs[0].status in ("pass", "fail")}
    failing = sorted(s for s, rs in judged.items() if any(r.status == "fail" for r in rs))
    assert failing == ["adamw:fcb", "adamw:ln1w", "adamw:ln2w", "adamw:lnfw", "adamw:qkvb",
                       "update:ln1w", "update:ln2w", "update:lnfw"], failing  # fmt: skip
    assert code == 1


@pytest.mark.chromium
def test_an_update_that_stores_the_bias_corrected_moment_fails_the_moment_rows(
    tmp_path: Path,
) -> None:
    """adamw_update.wgsl writing back ``m / (1 - beta1^t)`` instead of ``m`` (the step's update
    itself is right at t = 1, wrong from t = 2): the ``adamw:m:`` rows, AdamW's first moments
    read back from the GPU against the float64 replay, fail for every tensor and the second
    moments' rows pass, so the fault is named where it is."""
    src = tmp_path / "kernels"
    shutil.copytree(REPO_ROOT / WEBGPU_DIR, src)
    shader = src / "adamw_update.wgsl"
    text = shader.read_text()
    assert text.count("m[i] = mi;") == 1
    shader.write_text(text.replace("m[i] = mi;", "m[i] = mi / (1.0 - b1t);"))
    code, rows = _model_rows(tmp_path, None, src)
    judged = {s: rs for s, rs in _by_subject(rows).items() if rs[0].status in ("pass", "fail")}
    failing = {s for s, rs in judged.items() if any(r.status == "fail" for r in rs)}
    moments_m = {s for s in judged if s.startswith("adamw:m:")}
    assert len(moments_m) == 16 and moments_m <= failing, sorted(failing)
    assert not any(s.startswith("adamw:v:") for s in failing), sorted(failing)
    assert code == 1


def _without_flash(text: str) -> str:
    """A kernels.toml or binding without its ``attention_flash`` tables."""
    out, skip = [], False
    for line in text.splitlines(keepends=True):
        if line.startswith("["):
            skip = "attention_flash" in line
        if not skip:
            out.append(line)
    return "".join(out)


@pytest.mark.chromium
def test_an_artifact_without_flash_kernels_names_them_and_runs_naive(tmp_path: Path) -> None:
    """Kernels without the flash ops: the default (flash) step's cell is an error naming the
    missing op and the option that composes the naive kernels; with that option it passes."""
    src = tmp_path / "kernels"
    shutil.copytree(REPO_ROOT / WEBGPU_DIR, src)
    for name in ("kernels.toml", "webgpu.binding.toml"):
        text = (src / name).read_text()
        stripped = _without_flash(text)
        assert "[ops.attention_flash" in text and "[ops.attention_flash" not in stripped
        (src / name).write_text(stripped)

    code, rows = _model_rows(tmp_path / "flash", None, src)
    errors = [r for r in rows if r.status == "error"]
    assert errors and "no op tg_attention_flash_forward" in errors[0].detail, errors
    assert 'attention = "naive"' in errors[0].detail
    assert code == 1

    code, rows = _model_rows(tmp_path / "naive", "naive", src)
    assert [r for r in rows if r.status in ("fail", "error")] == []
    assert code == 0


@pytest.mark.chromium
def test_the_step_runs_the_attention_kernels_it_is_given(tmp_path: Path) -> None:
    """A flash backward whose dq skips the diagonal key fails the default (flash) step's
    gradients, loss trajectory aside; the same artifact's step with ``attention = "naive"``
    passes every row: the option selects the kernels the step dispatches."""
    src = tmp_path / "kernels"
    shutil.copytree(REPO_ROOT / WEBGPU_DIR, src)
    shader = src / "attention_flash_backward.wgsl"
    text = shader.read_text()
    assert text.count(DQ_SKIPS_DIAGONAL[0]) == 1
    shader.write_text(text.replace(*DQ_SKIPS_DIAGONAL))

    code, rows = _model_rows(tmp_path / "flash", None, src)
    judged = {s: rs for s, rs in _by_subject(rows).items() if rs[0].status in ("pass", "fail")}
    failing = sorted(s for s, rs in judged.items() if any(r.status == "fail" for r in rs))
    assert "grad:qkvw" in failing, failing
    # the forward is untouched: the fault shows only where dq flows
    assert judged["logits"][0].status == "pass" and judged["loss"][0].status == "pass"
    assert not any(s.startswith("roundtrip:") for s in failing)
    assert code == 1

    code, rows = _model_rows(tmp_path / "naive", "naive", src)
    subjects = _by_subject(rows)
    failing = sorted(s for s, rs in subjects.items() if any(r.status != "pass" and
                     r.status != "measured" for r in rs))  # fmt: skip
    assert failing == [], failing
    assert subjects["attention"][0].detail.startswith("the step's attention: naive (")
    assert code == 0


@pytest.mark.chromium
def test_a_transposed_wte_upload_fails_naming_the_tensor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The step's own layout fault: wte stored (C, V) on the GPU. Its round trip fails naming
    wte (and only wte), and the logits fail their bound."""
    js = tmp_path / "js"
    shutil.copytree(chromium_module.JS_DIR, js)
    step = js / "webgpu_step.mjs"
    text = step.read_text()
    slice_ = "heap.slice(ptr + 4 * q.off, ptr + 4 * (q.off + q.n))"
    old = f"this.ctx.device.queue.writeBuffer(q.p, 0, {slice_});"
    assert text.count(old) == 1
    fault = (
        f"let data = new Float32Array({slice_}.buffer);\n"
        "if (q.name === 'wte') {\n"
        "  const tr = new Float32Array(q.n); const C = this.d.C, V = this.d.V;\n"
        "  for (let v = 0; v < V; v++)\n"
        "    for (let c = 0; c < C; c++) tr[c * V + v] = data[v * C + c];\n"
        "  data = tr;\n"
        "}\n"
        "this.ctx.device.queue.writeBuffer(q.p, 0, data);"
    )
    step.write_text(text.replace(old, fault))
    monkeypatch.setattr(chromium_module, "JS_DIR", js)
    _, rows = _model_rows(tmp_path)
    judged = {s: rs[0] for s, rs in _by_subject(rows).items() if rs[0].status in ("pass", "fail")}
    bad_roundtrips = sorted(
        s for s, r in judged.items() if s.startswith("roundtrip:") and r.status == "fail"
    )
    assert bad_roundtrips == ["roundtrip:wte"]
    assert "wte: read back differs from what was uploaded" in judged["roundtrip:wte"].detail
    assert judged["logits"].status == "fail"
    assert "logits" in judged["logits"].detail


def test_the_wgsl_factor_and_the_adam_bound_follow_their_derivations() -> None:
    """wgsl_step_factor takes the largest per-op inflation (sqrt's 9u at small arguments,
    exp's 6+4|x| beyond); adam_direction_max is 1 at one step and grows with bias-corrected
    history (b1^2 / b2 < 1 keeps it finite)."""
    assert wgsl_step_factor(0.0, 0.0)[0] == 12.0  # tanh: 2 x (6 + 0)
    assert wgsl_step_factor(5.0, 0.0)[0] == 26.0  # exp: 6 + 4 x 5
    assert "exp (6+4*5)u" in wgsl_step_factor(5.0, 0.0)[1]
    assert adam_direction_max(1, 0.9, 0.95) == pytest.approx(1.0)
    values = [adam_direction_max(k, 0.9, 0.95) for k in (1, 2, 10, 100)]
    assert values == sorted(values) and values[-1] < 3.0
    assert np.isfinite(values[-1])


def test_max_ulp_difference_counts_float32_steps_across_zero() -> None:
    """0 for equal bits (and +0 vs -0), 1 between neighbours, 2 across zero between the two
    smallest subnormals of opposite sign, the largest over the array."""
    one = np.float32(1.0)
    nxt = np.nextafter(one, np.float32(2.0))
    tiny = np.float32(np.finfo(np.float32).smallest_subnormal)
    a = np.array([one, 0.0, tiny], dtype=np.float32)
    assert max_ulp_difference(a, a.copy()) == 0
    assert max_ulp_difference(np.array([0.0], np.float32), np.array([-0.0], np.float32)) == 0
    assert max_ulp_difference(np.array([one], np.float32), np.array([nxt], np.float32)) == 1
    assert max_ulp_difference(np.array([tiny], np.float32), np.array([-tiny], np.float32)) == 2
    b = np.array([nxt, 0.0, -tiny], dtype=np.float32)
    assert max_ulp_difference(a, b) == 2


FIXTURE = Path(__file__).parent / "fixtures" / "webgpu_step_run"


def test_the_report_draws_the_webgpu_over_wasm_curve_and_the_adapter_table(
    tmp_path: Path,
) -> None:
    """A recorded run (tests/formats/fixtures/webgpu_step_run: the bench's train_step of webgpu
    and wasm32 in Chromium at tiny and small, SwiftShader, plus the model check's xadapter rows
    at tiny) rendered: the speedup row per adapter and preset says CPU-emulated and divides
    wasm32's median by the step's; the cross-adapter table has the one-adapter row. (The
    curve's CI and plot: tests/formats/test_webgpu_curve.py.)"""
    from harness.cli import main
    from harness.report_data import load_run_dir
    from harness.report_webgpu import adapter_equality_table, webgpu_speedup_table

    run = load_run_dir(FIXTURE)
    table = webgpu_speedup_table(run.rows)
    assert table is not None and table.header[:3] == (
        "host · artifact · adapter",
        "preset",
        "speedup",
    )
    assert [row[1] for row in table.body] == ["tiny", "small"]
    medians = {
        (r.artifact, r.preset): r.value
        for r in read_rows(FIXTURE / RESULTS_FILE)
        if r.check == "bench" and r.subject == "train_step" and r.metric == "median_ns"
        and r.iteration == -1
    }  # fmt: skip
    for row in table.body:
        assert row[0] == "chromium · webgpu · google/swiftshader (CPU-emulated)"
        ratio = medians[("wasm32", row[1])] / medians[("webgpu", row[1])]
        assert row[2] == f"{ratio:.3g}×", (row[2], ratio)
    xa = adapter_equality_table(run.rows)
    assert xa is not None
    last = xa.body[-1]
    assert last[1] == "table" and last[4].startswith("one adapter: google/swiftshader")
    out = tmp_path / "report"
    assert main(["report", str(FIXTURE), "--out", str(out)]) == 0
    page = (out / "index.html").read_text()
    assert "WebGPU train step over the best WASM artifact" in page
    assert "WebGPU cross-adapter equality" in page
