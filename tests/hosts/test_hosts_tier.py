"""The V8 hosts run their timed figures on TurboFan only: each Node and Chromium accepts
``--no-liftoff``, and V8's own tier predicates confirm the effect after a single call.

``--allow-natives-syntax`` is added in these tests only, to ask V8 (``%IsTurboFanFunction``,
``%IsLiftoffFunction``) which compiler produced an export's code.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from harness.artifact import Artifact
from harness.hosts.chromium import ChromiumHost
from harness.hosts.node import NodeHost, pinned_node, system_node
from harness.hosts.v8_tier import STEADY_V8_FLAGS, node_refusal

NATIVES = ("--allow-natives-syntax",)

# One call of tg_noop, then the tier of its code; printed as "liftoff" / "turbofan" / "other".
NODE_SCRIPT = """
const bytes = require('fs').readFileSync(process.argv[1]);
WebAssembly.instantiate(bytes, {}).then(({ instance }) => {
  const f = instance.exports.tg_noop;
  f();
  console.log(%IsTurboFanFunction(f) ? 'turbofan' : %IsLiftoffFunction(f) ? 'liftoff' : 'other');
});
"""

PAGE_SCRIPT = """async (url) => {
  const bytes = await (await fetch(url)).arrayBuffer();
  const { instance } = await WebAssembly.instantiate(bytes, {});
  const f = instance.exports.tg_noop;
  f();
  const tier = new Function('f', "return %IsTurboFanFunction(f) ? 'turbofan' : "
    + "%IsLiftoffFunction(f) ? 'liftoff' : 'other'");
  return tier(f);
}"""


def _node(name: str) -> NodeHost:
    host = system_node() if name == "node" else pinned_node(name)
    if host.executable is None or not host.executable.is_file():
        pytest.skip(f"{name} is not installed")
    return host


@pytest.mark.node
@pytest.mark.parametrize("name", ["node", "node22", "node24"])
def test_node_accepts_no_liftoff_and_it_pins_turbofan(
    name: str, artifacts: dict[str, Artifact]
) -> None:
    """Each Node runs `--no-liftoff -e 0`, and its workers get the flag; with it, an export is
    TurboFan code after its first call, and with default flags the same call leaves Liftoff code."""
    host = _node(name)
    exe = host.executable
    assert exe is not None
    assert node_refusal(exe, STEADY_V8_FLAGS) is None
    assert node_refusal(exe, ("--no-such-v8-flag-xyz",)) is not None  # the probe can fail
    assert host.engine_flags() == STEADY_V8_FLAGS and host.flag_warning == ""
    assert host.worker_argv()[1:-1] == list(STEADY_V8_FLAGS)
    wasm = str(Path(artifacts["wasm32"].path))

    def tier(flags: tuple[str, ...]) -> str:
        cmd = [str(exe), *NATIVES, *flags, "-e", NODE_SCRIPT, wasm]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True).stdout

    assert tier(STEADY_V8_FLAGS).strip() == "turbofan"
    assert tier(()).strip() == "liftoff"


def test_a_refused_flag_falls_back_with_a_warning(artifacts: dict[str, Artifact]) -> None:
    """A Node that refuses the wanted flag runs without it, and says so (the bench row's cause)."""
    host = _node("node")
    exe = host.executable
    assert exe is not None
    odd = NodeHost("node", exe, "-", v8_flags=("--no-such-v8-flag-xyz",))
    assert odd.engine_flags() == ()
    assert "--no-such-v8-flag-xyz" in odd.flag_warning
    assert odd.worker_argv()[1:] == [odd.worker_argv()[-1]]


@pytest.mark.chromium
@pytest.mark.parametrize(("flags", "expected"), [(STEADY_V8_FLAGS, "turbofan"), ((), "liftoff")])
def test_chromium_js_flags_pin_turbofan(
    flags: tuple[str, ...], expected: str, artifacts: dict[str, Artifact]
) -> None:
    """Chromium 156 passes `--js-flags=--no-liftoff` to V8: a page's export is TurboFan code after
    one call; under default flags it is Liftoff code."""
    host = ChromiumHost(v8_flags=(*flags, *NATIVES))
    try:
        context, page = host.open_page()
        url = host.server().register(Path(artifacts["wasm32"].path))
        assert page.evaluate(PAGE_SCRIPT, url) == expected
        context.close()
    finally:
        host.close()
