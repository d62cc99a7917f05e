"""Per-tensor AdamW through lib2's model calls (harness/checks/bound_optimizer.py).

lib2 built natively with one optimizer fault each (``L2_BUG_*`` in ``lib2_model.c``): eps x100,
decay off, decay on every tensor. Each must fail the model check's ``adamw:<tensor>.params`` rows
with the cause named; the clean build must pass every row within half its bound. The model check
runs whole, in-process, on the native host (as ``tests/lib2/test_lib2_bound.py`` runs it).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from harness.artifact import Artifact
from harness.bindings import load_binding_cached
from harness.bindings.model_layout import ModelDims, layout_of
from harness.build import REPO_ROOT
from harness.build_lib2 import LIB2_BINDING, lib2_native_artifact
from harness.checks import get_check
from harness.checks.base import CellContext
from harness.hosts.native import NativeHost
from harness.rundir.rows import Row
from reference.presets import PRESETS

OPTIONS = {"batch": 4, "steps": 10}  # the model check's other rows at their test size
BUILDS = {
    "clean": (),
    "eps": ("L2_BUG_ADAM_EPS",),
    "decay-off": ("L2_BUG_DECAY_OFF",),
    "decay-all": ("L2_BUG_DECAY_ALL",),
}


@pytest.fixture(scope="module")
def model_rows(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[[str], list[Row]]]:
    """The model check's rows on a lib2 build of :data:`BUILDS` at tiny (built and run once)."""
    out = tmp_path_factory.mktemp("lib2-faults")
    done: dict[str, list[Row]] = {}

    def get(build: str) -> list[Row]:
        if build not in done:
            name = "lib2-" + build
            art: Artifact = lib2_native_artifact(out, BUILDS[build], name)
            host = NativeHost()
            inst = host.load(art)
            try:
                ctx = CellContext(
                    host="native", host_version="", artifact=art, preset=PRESETS["tiny"],
                    instance=inst, options=OPTIONS,
                )  # fmt: skip
                done[build] = list(get_check("model")(ctx))
            finally:
                inst.close()
                host.close()
        return done[build]

    yield get


def _adamw(rows: list[Row]) -> dict[str, Row]:
    return {r.subject: r for r in rows if r.subject.startswith("adamw:")}


def test_clean_lib2_passes_every_tensor_within_half_its_bound(
    model_rows: Callable[[str], list[Row]],
) -> None:
    """Every tensor's params, m and v of the clean build pass at <= 0.5x the float32 bound; the
    key bias's params alone are skipped (its exact gradient is 0), its m and v judged."""
    rows = _adamw(model_rows("clean"))
    layout = layout_of(load_binding_cached(REPO_ROOT / LIB2_BINDING))
    assert layout.params is not None
    names = {t.name for t in (*layout.params.before, *layout.params.layer, *layout.params.after)}
    assert set(rows) == {f"adamw:{n}.{s}" for n in names for s in ("params", "m", "v")}
    skipped = {s for s, r in rows.items() if r.status == "skipped"}
    assert skipped == {"adamw:bk.params"}
    assert "exact gradient is within rounding" in rows["adamw:bk.params"].detail
    judged = [r for r in rows.values() if r.status != "skipped"]
    assert all(r.status == "pass" for r in judged), [r.detail for r in judged if r.status != "pass"]
    worst = max(judged, key=lambda r: r.value)
    assert worst.value <= 0.5, worst.detail


@pytest.mark.parametrize(
    ("build", "tensors", "cause"),
    [
        # eps 1e-6: every update shrinks where sqrt(v) is near it (wte's rare-byte rows most)
        ("eps", ["wte", "W1", "W2"], r"likely AdamW eps 1e-06, not the binding's 1e-08"),
        ("decay-off", ["wte", "Wq", "W1"],
         r"likely decay missing: the library does not decay {t}, which the binding decays by "
         r"weight_decay 0\.1"),
        ("decay-all", ["ln1_g", "ln1_b", "bq", "b1", "lnf_g"],
         r"likely decay on a no-decay tensor: the library decays {t}, which the binding's "
         r"\[model.defaults\] decayed does not list"),
    ],
)  # fmt: skip
def test_an_optimizer_fault_fails_its_tensors_with_the_cause(
    model_rows: Callable[[str], list[Row]], build: str, tensors: list[str], cause: str
) -> None:
    """lib2 with eps x100, without weight decay, or decaying biases and LayerNorm fails the
    tensors it changes, each naming the mismatch whose replay explains it."""
    rows = _adamw(model_rows(build))
    for t in tensors:
        r = rows[f"adamw:{t}.params"]
        assert r.status == "fail" and r.value > 1.0, r.detail
        assert re.search(cause.format(t=t), r.detail), r.detail
    failing = [r for r in rows.values() if r.status == "fail"]
    # every failing row is explained by the one mismatch (none says "no single mismatch")
    assert failing and not any("no single mismatch" in r.detail for r in failing)


def test_the_loss_trajectory_alone_misses_these_faults(
    model_rows: Callable[[str], list[Row]],
) -> None:
    """Why the per-tensor rows exist: the 10-step loss trajectory passes on every fault build
    (if this ever fails, the trajectory has become sharp enough to catch them too)."""
    for build in ("eps", "decay-off", "decay-all"):
        traj = [r for r in model_rows(build) if r.subject == "trajectory" and r.metric]
        assert traj and all(r.status in ("pass", "measured") for r in traj), build


def test_from_reference_inverts_to_reference() -> None:
    """[model.params]'s map back from reference tensors gives the flat buffer it came from."""
    layout = layout_of(load_binding_cached(REPO_ROOT / LIB2_BINDING)).params
    assert layout is not None
    dims = ModelDims(256, ctx=5, n_layer=2, n_head=1, d_model=3, d_mlp=7)
    cfg = dims.reference_config("lib2")
    flat = np.random.default_rng(0).standard_normal(layout.count(dims))
    back = layout.from_reference(cfg, layout.to_reference(cfg, flat, np.float64), np.float64)
    np.testing.assert_array_equal(back, flat)


def test_fault_builds_do_not_replace_the_clean_one(tmp_path: Path) -> None:
    """A fault build goes to its own directory and records its -D in the artifact's flags."""
    art = lib2_native_artifact(tmp_path, ("L2_BUG_ADAM_EPS",), "lib2-eps")
    assert art.path == tmp_path.resolve() / "lib2-eps" / "liblib2.so"
    assert "-DL2_BUG_ADAM_EPS" in art.flags
    assert not (tmp_path / "lib2-native").exists()
