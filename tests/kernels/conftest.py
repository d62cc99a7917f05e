"""Fixtures of the kernel-library tests: one build per session, one instance per artifact."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.artifact import Artifact, load_manifest
from harness.build import DEFAULT_OUT, MANIFEST, build_all, manifest_is_fresh
from harness.engines import load_in_process
from harness.hosts.base import Instance

BUNDLED = ("native", "wasm32", "wasm64")


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Artifact]:
    """The bundled artifacts: ``artifacts/build`` when its manifest is fresh, else a tmp build."""
    if manifest_is_fresh(DEFAULT_OUT):
        return load_manifest(DEFAULT_OUT / MANIFEST)
    return build_all(Path(tmp_path_factory.mktemp("build")))


@pytest.fixture(scope="module", params=BUNDLED)
def instance(request: pytest.FixtureRequest, built: dict[str, Artifact]) -> Iterator[Instance]:
    """A loaded instance of each bundled artifact (native via ctypes, wasm via wasmtime)."""
    inst = load_in_process(built[request.param])
    try:
        yield inst
    finally:
        inst.close()


@pytest.fixture
def fresh_instance(
    request: pytest.FixtureRequest, built: dict[str, Artifact]
) -> Iterator[Instance]:
    """A newly loaded instance (clean allocator state) of the artifact named by the param."""
    inst = load_in_process(built[request.param])
    try:
        yield inst
    finally:
        inst.close()
