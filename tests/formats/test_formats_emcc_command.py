"""``tinygpt-harness emcc``: a project's own Memory64 build with Debian's emcc, as documented
(docs/bindings.md, "Adding your own emscripten build")."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.artifact import from_files
from harness.build import EMCC_INSTALL, emcc_path
from harness.cli import main

needs_emcc = pytest.mark.skipif(emcc_path() is None, reason=f"install: {EMCC_INSTALL}")

SOURCE = """#include <stddef.h>
void my_scale(float *out, const float *x, int n) { for (int i = 0; i < n; i++) out[i] = 2 * x[i]; }
"""


@needs_emcc
def test_the_documented_memory64_line_builds_a_memory64_module(tmp_path: Path) -> None:
    """The docs' Memory64 line, through the command, exits 0 and writes glue + a .wasm whose
    memory is 64-bit (read from the module, as a profile's artifact reads it)."""
    src = tmp_path / "scale.c"
    src.write_text(SOURCE)
    glue = tmp_path / "em64" / "scale.mjs"
    glue.parent.mkdir()
    code = main(["emcc", "-O2", "-sMODULARIZE", "-sEXPORT_ES6", "-sMEMORY64=1", "-sWASM_BIGINT",
                 "-sALLOW_MEMORY_GROWTH=0", "-sINITIAL_MEMORY=1073741824", "-fno-builtin",
                 "-sEXPORTED_FUNCTIONS=_malloc,_free,_my_scale",
                 "-sEXPORTED_RUNTIME_METHODS=HEAPU8", str(src), "-o", str(glue)])  # fmt: skip
    assert code == 0
    wasm = glue.with_suffix(".wasm")
    art = from_files("scale-em64", "emscripten", {"glue": glue, "wasm": wasm})
    assert art.ptr_width == 64


@needs_emcc
def test_emcc_failure_is_its_own_exit_code(tmp_path: Path) -> None:
    """A source that does not compile: emcc's own non-zero exit code comes back."""
    src = tmp_path / "bad.c"
    src.write_text("this is not C\n")
    assert main(["emcc", str(src), "-o", str(tmp_path / "bad.mjs")]) not in (0, None)


def test_a_failed_memory64_pthread_build_says_what_it_met() -> None:
    """-pthread with -sMEMORY64 (in any spelling but =0) gets the hint that Debian's 3.1.6
    cannot build its own libc-mt for wasm64; either flag alone, or MEMORY64=0, gets none."""
    from harness.emcc import hint

    assert "fails building its own libc-mt" in hint(["-pthread", "-sMEMORY64=1", "x.c"])
    assert hint(["-sUSE_PTHREADS=1", "-sMEMORY64"]) != ""
    for argv in (["-pthread"], ["-sMEMORY64=1"], ["-pthread", "-sMEMORY64=0"]):
        assert hint(argv) == ""
