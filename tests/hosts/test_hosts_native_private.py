"""The ctypes engine gives every load its own copy of the library, or refuses the load."""

from __future__ import annotations

import ctypes

import pytest

import harness.engines.ctypes_engine as ctypes_engine
from harness.abi import ABI_VERSION
from harness.artifact import Artifact
from harness.build import Variant, build_variant
from harness.engines.ctypes_engine import CtypesInstance
from harness.hosts.base import HostError


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Artifact:
    """The plain native library, built from artifacts/src."""
    return build_variant(
        tmp_path_factory.mktemp("private"), Variant("native-private", "native", ())
    )


def _separate(artifact: Artifact) -> None:
    a, b = CtypesInstance.load(artifact), CtypesInstance.load(artifact)
    try:
        assert a.call("tg_set_threads", 2) == 2
        assert b.call("tg_get_threads") == 1  # its own pool setting: its own copy of the statics
    finally:
        a.call("tg_set_threads", 1)  # joins the worker before the copy is unmapped
        a.close()
        b.close()


def test_two_loads_of_one_library_keep_separate_state(artifact: Artifact) -> None:
    """Two instances of one .so do not share the library's globals (its thread-pool size)."""
    a, b = CtypesInstance.load(artifact), CtypesInstance.load(artifact)
    try:
        assert a.call("tg_set_threads", 2) == 2
        assert b.call("tg_get_threads") == 1  # its own copy of the statics
    finally:
        a.call("tg_set_threads", 1)  # joins the worker before the copy is unmapped
        a.close()
        b.close()


def test_a_load_that_returns_a_held_library_is_refused(
    artifact: Artifact, monkeypatch: pytest.MonkeyPatch
) -> None:
    """dlopen handing back a live instance's library (a reused file id) is an error, not a share."""
    first = CtypesInstance.load(artifact)
    try:
        assert first._lib is not None
        # dlopen of the first copy's (unlinked) name: glibc matches the name and hands back the
        # loaded library with one more reference, as it would for a reused name or file id
        seen = first._lib._name
        monkeypatch.setattr(ctypes_engine, "_dlopen_private",
                            lambda art: ctypes.CDLL(seen, mode=ctypes.RTLD_LOCAL))  # fmt: skip
        with pytest.raises(HostError, match="already holds"):
            CtypesInstance.load(artifact)
        assert first.call("tg_abi_version") == ABI_VERSION  # the held instance is untouched
    finally:
        first.close()
