"""The wrong-binding diagnosis's wording: a guess that passes shows the binding and the library
disagree, not which is wrong, so each cause names both sides and where each is written."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest

from harness.artifact import Artifact
from harness.bindings import bundled
from harness.checks.ops import assert_op_parity, cases
from harness.checks.ops_diagnosis import Parties, hypotheses
from harness.formats import FileDigest
from harness.kernel import Kernels, Override
from harness.parity import ParityError
from reference.presets import PRESETS

ODD = next(c for c in cases(PRESETS["small"], seed=0) if c.name == "odd")
BOTH = "either may be the one at fault"


def _kernels(artifact: Artifact) -> Kernels:
    """A stand-in for Kernels with only what Parties.of reads: the instance's artifact."""
    return cast(Kernels, SimpleNamespace(instance=SimpleNamespace(artifact=artifact)))


def test_off_by_one_names_the_binding_and_the_library(native_kernels: Kernels) -> None:
    """N passed one short: the cause names the binding's line and the library's file, and says
    either may be wrong (was: "the binding's N is off by one from what the library expects",
    also said of a webgpu kernels.toml that sized `out` as N - 1, with the binding right)."""
    call = native_kernels.bound("gelu_forward")
    short = native_kernels.overridden(Override(call, {"N": -1}))
    library = native_kernels.instance.artifact.path.name
    with pytest.raises(ParityError) as info:
        assert_op_parity(short, "gelu_forward", ODD)
    n = ODD.dims["N"] * ODD.dims["C"]  # gelu's N counts every element of (N, C)
    assert (
        f"gelu_forward.out fails parity; with N passed as N+1 ({n + 1} for {n}) it passes: the N "
        f"that the binding (tinygpt.toml:{call.line}) passes is off by one from what "
        f"{call.export} as the library declares it ({library}) expects (its N, or a buffer "
        f"sized from it); {BOTH}"
    ) in str(info.value)


def test_a_webgpu_artifact_names_its_kernels_toml_as_the_library_side(tmp_path: Path) -> None:
    """For webgpu the library's declaration of an export is its kernels.toml (the format's
    ``exports_role``), not a shader: the swap and off-by-one causes name that file."""
    files = (
        FileDigest("manifest", tmp_path / "kernels.toml", "0" * 64),
        FileDigest("wgsl:gf_gelu.wgsl", tmp_path / "gf_gelu.wgsl", "1" * 64),
    )
    art = Artifact(name="gpu", format="webgpu", path=files[0].path, sha256="2" * 64,
                   ptr_width=32, target="webgpu", files=files)  # fmt: skip
    call = bundled().ops["gelu_forward"]
    parties = Parties.of(_kernels(art), call)
    assert parties == Parties(
        f"the binding (tinygpt.toml:{call.line})",
        f"{call.export} as the library declares it (kernels.toml)",
    )
    causes = {h.guess: h.cause for h in hypotheses(call, {"out": 8.0, "x": 8.0, "N": 2.0}, parties)}
    swap = next(c for g, c in causes.items() if g.startswith("args "))
    assert swap.endswith(
        f"swapped it passes: the binding (tinygpt.toml:{call.line}) and {call.export} as the "
        f"library declares it (kernels.toml) list them in different orders; {BOTH}"
    )
    assert all(BOTH in c and "kernels.toml" in c for c in causes.values()), causes


def test_without_an_artifact_both_sides_are_still_named() -> None:
    """hypotheses() with no Parties (a caller with no artifact) names both sides unplaced."""
    call = bundled().ops["matmul_forward"]
    sizes = {"x": 24.0, "W": 24.0, "b": 4.0, "out": 8.0, "N": 2.0, "C": 3.0, "OC": 4.0}
    for h in hypotheses(call, sizes):
        assert "the binding" in h.cause and f"{call.export} as the library declares it" in h.cause
        assert h.cause.endswith(BOTH) and "the binding likely" not in h.cause
