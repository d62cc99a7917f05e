"""The library's own expf/logf/tanhf (no libc on WASM) are within 1 ulp of float64 numpy.

``artifacts/src/tg_math.h`` is compiled into a small native shim here, so every float32 input
can be checked in bulk; the wasm builds compile the same inline functions.
"""

from __future__ import annotations

import ctypes
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from harness.tolerance import ulp_distance

SRC = Path(__file__).resolve().parents[2] / "artifacts" / "src"
SHIM = """
#include "tg_math.h"
#define MAP(name, fn) \\
    __attribute__((visibility("default"))) void name(const float *x, float *y, int n) { \\
        for (int i = 0; i < n; i++) y[i] = fn(x[i]); \\
    }
MAP(shim_expf, tg_expf)
MAP(shim_logf, tg_logf)
MAP(shim_tanhf, tg_tanhf)
"""


@pytest.fixture(scope="module")
def shim(tmp_path_factory: pytest.TempPathFactory) -> ctypes.CDLL:
    """tg_math.h compiled into a native shared library with one array function per op."""
    tmp = tmp_path_factory.mktemp("math")
    (tmp / "shim.c").write_text(SHIM)
    out = tmp / "libshim.so"
    subprocess.run(
        [sys.executable, "-m", "ziglang", "cc", "--target=x86_64-linux-gnu", "-O2", "-std=c11",
         "-fno-math-errno", "-shared", "-fPIC", f"-I{SRC}", str(tmp / "shim.c"), "-o", str(out)],
        check=True, capture_output=True,
    )  # fmt: skip
    return ctypes.CDLL(str(out))


def _run(lib: ctypes.CDLL, name: str, x: NDArray[np.float32]) -> NDArray[np.float32]:
    y = np.empty_like(x)
    getattr(lib, name)(x.ctypes.data_as(ctypes.c_void_p), y.ctypes.data_as(ctypes.c_void_p),
                       ctypes.c_int(x.size))  # fmt: skip
    return y


def _inputs(lo: float, hi: float, n: int = 200_000) -> NDArray[np.float32]:
    rng = np.random.default_rng(0)
    x = np.concatenate([np.linspace(lo, hi, n), rng.uniform(lo, hi, n)]).astype(np.float32)
    return x


CASES: list[tuple[str, Callable[[NDArray[np.float64]], NDArray[np.float64]], float, float]] = [
    ("shim_expf", np.exp, -87.0, 88.0),
    ("shim_expf", np.exp, -1e-3, 1e-3),
    ("shim_tanhf", np.tanh, -12.0, 12.0),
    ("shim_tanhf", np.tanh, -1e-4, 1e-4),
    ("shim_logf", np.log, 1e-30, 1e-3),
    ("shim_logf", np.log, 0.5, 2.0),
    ("shim_logf", np.log, 1.0, 3e38),
]


@pytest.mark.parametrize(("name", "ref", "lo", "hi"), CASES)
def test_within_one_ulp(
    shim: ctypes.CDLL,
    name: str,
    ref: Callable[[NDArray[np.float64]], NDArray[np.float64]],
    lo: float,
    hi: float,
) -> None:
    """Every input in the range is within 1 float32 ulp of the float64 result."""
    x = _inputs(lo, hi)
    got = _run(shim, name, x)
    expected = ref(x.astype(np.float64))
    worst = int(ulp_distance(got, expected).max())
    assert worst <= 1, f"{name} on [{lo}, {hi}]: {worst} ulp"


def test_special_values(shim: ctypes.CDLL) -> None:
    """exp overflows to inf and underflows to 0, log of 0 is -inf, NaN propagates."""
    x = np.array([100.0, -120.0, np.inf, -np.inf, np.nan], np.float32)
    e = _run(shim, "shim_expf", x)
    assert e[0] == np.inf and e[1] == 0.0 and e[2] == np.inf and e[3] == 0.0 and np.isnan(e[4])
    lg = _run(shim, "shim_logf", np.array([0.0, 1.0, np.inf, -1.0, 1e-45], np.float32))
    assert lg[0] == -np.inf and lg[1] == 0.0 and lg[2] == np.inf and np.isnan(lg[3])
    assert lg[4] == pytest.approx(np.log(1.401298464324817e-45), rel=1e-7)
    th = _run(shim, "shim_tanhf", np.array([np.inf, -np.inf, 0.0, np.nan], np.float32))
    assert th[0] == 1.0 and th[1] == -1.0 and th[2] == 0.0 and np.isnan(th[3])
