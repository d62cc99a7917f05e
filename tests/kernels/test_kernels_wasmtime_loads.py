"""Each wasmtime load of a build runs its own copy of the compiled code, compiled only once.

The paired gate loads each build once per block so that what one load happens to get, its
code's placement among them, is averaged over the blocks (docs/gate.md, ``--paired``). Instances
of one ``wasmtime.Module`` share its code at one address, so the engine keeps the compiled code
and gives every load a module of its own, deserialized into memory of its own.
"""

from __future__ import annotations

import numpy as np

from harness.artifact import Artifact
from harness.engines.wasmtime_engine import WasmtimeInstance


def _executable_mappings() -> set[str]:
    """The address ranges of this process's executable mappings (Linux /proc/self/maps)."""
    with open("/proc/self/maps", encoding="ascii") as maps:
        return {f[0] for f in (line.split() for line in maps) if f[1][2] == "x"}


def test_each_load_maps_its_own_code_and_computes_the_same(built: dict[str, Artifact]) -> None:
    """Two loads after the first add two executable mappings (a shared module adds none), and
    all three give bitwise the same gelu."""
    first = WasmtimeInstance.load(built["wasm32"])  # compiles, unless a test before us did
    before = _executable_mappings()
    more = [WasmtimeInstance.load(built["wasm32"]) for _ in range(2)]
    assert len(_executable_mappings() - before) >= 2
    x = np.linspace(-4, 4, 256, dtype=np.float32)
    outs = []
    for inst in (first, *more):
        inp, out = inst.alloc(x.nbytes), inst.alloc(x.nbytes)
        inst.write(inp, x.tobytes())
        inst.call("tg_gelu_forward", out, inp, x.size)
        outs.append(inst.read(out, x.nbytes))
        inst.close()
    assert outs[0] == outs[1] == outs[2]
