"""Native kernel builds for the check tests: the real source, and the layernorm-backward bug.

Both are built once per session with harness.build into a temporary directory (about 2 s with
zig's cache warm) and loaded in-process with the ctypes engine.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness.artifact import Artifact
from harness.build import Variant, build_variant
from harness.engines.ctypes_engine import CtypesInstance
from harness.kernel import Kernels

BUNDLED_BINDING = Path(__file__).resolve().parents[2] / "harness" / "bindings" / "tinygpt.toml"
LNBACK_BUG = Variant("native-bug-lnback", "native", ("TG_BUG_LAYERNORM_BACKWARD",))
PLAIN = Variant("native-checks", "native", ())
# Fault builds of issue 15: each carries one weakness a check must catch (artifacts/src, #ifdef).
FAULTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("native-bug-kvpos", "native", ("TG_BUG_KV_POSITION",)),
        Variant("native-bug-temp", "native", ("TG_BUG_SAMPLER_TEMPERATURE",)),
        Variant("native-bug-topk", "native", ("TG_BUG_SAMPLER_TOPK",)),
        Variant("native-bug-decay", "native", ("TG_BUG_DECAY_ALL",)),
        # a constant of an element-wise op off by 1 part in 1e5
        Variant("native-bug-gelu-coef", "native", ("TG_BUG_GELU_COEF",)),
        Variant("native-bug-gelu-coef-bwd", "native", ("TG_BUG_GELU_COEF_BACKWARD",)),
        Variant("native-bug-gelu-scale", "native", ("TG_BUG_GELU_SCALE",)),
        Variant("native-bug-gelu-half", "native", ("TG_BUG_GELU_HALF",)),
        Variant("native-bug-one", "native", ("TG_BUG_ONE",)),
        # gelu_forward writing out[N], out[-1], or its read-only input (the bounds probe)
        Variant("native-bug-gelu-oob", "native", ("TG_BUG_GELU_OOB",)),
        Variant("native-bug-gelu-underrun", "native", ("TG_BUG_GELU_UNDERRUN",)),
        Variant("native-bug-gelu-input", "native", ("TG_BUG_GELU_INPUT_WRITE",)),
        # matmul_forward writing out[N * OC]: the smoke check's one op call
        Variant("native-bug-matmul-oob", "native", ("TG_BUG_MATMUL_OOB",)),
        # tg_model_generate terminating its token array one int past its end (model check)
        Variant("native-bug-gen-term", "native", ("TG_BUG_GENERATE_TERMINATOR",)),
        # the s43 fault hunt's escapes (artifacts/src, #ifdef; docs/findings.md)
        Variant("native-bug-ln-onepass", "native", ("TG_BUG_LN_ONEPASS",)),
        Variant("native-bug-dot-lane", "native", ("TG_BUG_DOT_LANE",)),
        Variant("native-bug-greedy-tie", "native", ("TG_BUG_GREEDY_TIE",)),
        Variant("native-bug-topk-tie", "native", ("TG_BUG_TOPK_TIE",)),
        Variant("native-bug-stale-n", "native", ("TG_BUG_STALE_N",)),
        Variant("native-bug-range-tail", "native", ("TG_BUG_RANGE_TAIL",)),
        Variant("native-bug-mv-not-zeroed", "native", ("TG_BUG_MV_NOT_ZEROED",)),
        # gelu_forward wrong at odd N only: a kernel bug no binding change explains
        Variant("native-bug-gelu-odd", "native", ("TG_BUG_GELU_ODD",)),
        # LayerNorm's built-in eps 1e-6, not tinygpt.h's 1e-5 (a binding's `fixed` eps)
        Variant("native-bug-ln-eps-1e6", "native", ("TG_BUG_LN_EPS_1E6",)),
        # the sampler's CDF summed in float, not tinygpt.h's double (the sample:cdf row)
        Variant("native-bug-float-cdf", "native", ("TG_BUG_SAMPLER_FLOAT_CDF",)),
        # the s47 fault hunt's escapes (artifacts/src, #ifdef; docs/findings.md)
        Variant("native-bug-gemm-nc-offset", "native", ("TG_BUG_GEMM_NC_OFFSET",)),
        Variant("native-bug-seed-signext", "native", ("TG_BUG_SEED_SIGNEXT",)),
        Variant("native-bug-topk-vm1", "native", ("TG_BUG_TOPK_VM1",)),
        Variant("native-bug-acts-cap-tokens", "native", ("TG_BUG_ACTS_CAP_TOKENS",)),
        Variant("native-bug-train-no-zero", "native", ("TG_BUG_TRAIN_NO_ZERO",)),
    )
}


@pytest.fixture
def binding_copy(tmp_path: Path) -> Callable[[Callable[[str], str]], Path]:
    """Write the bundled binding (harness/bindings/tinygpt.toml) with ``edit`` applied to its
    text beside the test, its header made absolute (it is relative to the binding file)."""

    written: list[Path] = []

    def write(edit: Callable[[str], str]) -> Path:
        text = BUNDLED_BINDING.read_text(encoding="utf-8")
        relative = 'header = "../../artifacts/include/tinygpt.h"'
        assert relative in text
        header = (BUNDLED_BINDING.parent / "../../artifacts/include/tinygpt.h").resolve()
        # a new name per copy: bindings are cached by path (load_binding_cached)
        path = tmp_path / f"edited{len(written)}.binding.toml"
        written.append(path)
        path.write_text(edit(text.replace(relative, f'header = "{header}"')), encoding="utf-8")
        return path

    return write


@pytest.fixture(scope="session")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One temporary build directory for the session."""
    return tmp_path_factory.mktemp("checks-build")


@pytest.fixture(scope="session")
def native_artifact(build_dir: Path) -> Artifact:
    """The kernel library built natively from artifacts/src, no defines."""
    return build_variant(build_dir, PLAIN)


@pytest.fixture(scope="session")
def lnback_artifact(build_dir: Path) -> Artifact:
    """The kernel library with -D TG_BUG_LAYERNORM_BACKWARD."""
    return build_variant(build_dir, LNBACK_BUG)


@pytest.fixture(scope="session")
def native(native_artifact: Artifact) -> Iterator[CtypesInstance]:
    """A loaded native instance shared by the session's tests."""
    inst = CtypesInstance.load(native_artifact)
    yield inst
    inst.close()


@pytest.fixture(scope="session")
def native_kernels(native: CtypesInstance) -> Kernels:
    """The kernel client over the native instance."""
    return Kernels(native)


@pytest.fixture(scope="session")
def lnback(lnback_artifact: Artifact) -> Iterator[CtypesInstance]:
    """A loaded instance of the layernorm-backward bug variant."""
    inst = CtypesInstance.load(lnback_artifact)
    yield inst
    inst.close()


@pytest.fixture(scope="session")
def fault(build_dir: Path) -> Iterator[Callable[[str], tuple[CtypesInstance, Artifact]]]:
    """Load a fault build of :data:`FAULTS` by name (built and loaded once per session)."""
    loaded: dict[str, tuple[CtypesInstance, Artifact]] = {}

    def get(name: str) -> tuple[CtypesInstance, Artifact]:
        if name not in loaded:
            art = build_variant(build_dir, FAULTS[name])
            loaded[name] = (CtypesInstance.load(art), art)
        return loaded[name]

    yield get
    for inst, _ in loaded.values():
        inst.close()
