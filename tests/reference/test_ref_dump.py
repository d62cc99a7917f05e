"""The reference dump (docs/reference-dump.md): write, load, and precise errors on bad files."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from reference.dump import (
    FORMAT,
    VERSION,
    DumpError,
    ReferenceDump,
    arrays,
    load_dump,
    main,
    write_dump,
)
from reference.presets import PRESETS, ModelConfig, param_names, param_shapes

# A synthetic token stream: the dump's shape and round trip do not need the real corpus.
TOKENS = np.random.default_rng(0).integers(32, 127, size=4096).astype(np.int32)


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ReferenceDump]:
    """The tiny preset's dump (batch 2, 3 steps, 2 AdamW steps) and what write_dump returned."""
    path = tmp_path_factory.mktemp("dump") / "tiny.npz"
    d = write_dump(path, PRESETS["tiny"], batch=2, steps=3, adamw_steps=2, tokens=TOKENS)
    return path, d


def _rewrite(src: Path, dst: Path, edit: Callable[[dict[str, NDArray[Any]]], None]) -> Path:
    with np.load(src) as z:
        data = {k: z[k] for k in z.files}
    edit(data)
    with dst.open("wb") as f:
        np.savez(f, **data)  # type: ignore[arg-type]
    return dst


def test_round_trip_gives_back_every_array(written: tuple[Path, ReferenceDump]) -> None:
    """load_dump returns the config, defaults and every array write_dump computed, bit for bit."""
    path, d = written
    back = load_dump(path)
    assert back.cfg == d.cfg and back.defaults == d.defaults
    assert arrays(back).keys() == arrays(d).keys()
    for key, a in arrays(d).items():
        if key != "config":  # it names the writer, which load_dump replaces with the file
            np.testing.assert_array_equal(arrays(back)[key], a, err_msg=key)
    assert str(path) in back.source


def test_file_layout_is_the_documented_one(written: tuple[Path, ReferenceDump]) -> None:
    """The npz holds format/version/config scalars and per-parameter arrays by param_names."""
    path = written[0]
    with np.load(path) as z:
        assert str(z["format"]) == FORMAT and int(z["version"]) == VERSION
        config = json.loads(str(z["config"]))
        cfg = PRESETS["tiny"]
        assert config["model"]["n_embd"] == cfg.n_embd and config["training"]["beta2"] == 0.95
        for name, shape in param_shapes(cfg).items():
            assert z[f"param.{name}"].dtype == np.float32 and z[f"param.{name}"].shape == shape
            for group in ("grad", "adamw.param", "adamw.m", "adamw.v"):
                assert z[f"{group}.{name}"].shape == shape
        assert z["tokens.x"].shape == (2, 16) and z["trajectory.x"].shape == (3, 2, 16)
        assert z["logits"].shape == (2, 16, cfg.vocab_size) and z["logits"].dtype == np.float64
        assert z["adamw.lr"].shape == (2,) and z["generate.greedy"].shape == (24,)


def test_a_dump_without_biases_has_no_bias_arrays(tmp_path: Path) -> None:
    """A config that drops a Linear's bias writes no array for it, and loads back."""
    cfg = ModelConfig("nobias", n_layer=1, n_head=2, n_embd=8, block_size=8, biases=("qkv",))
    path = tmp_path / "nb.npz"
    write_dump(path, cfg, batch=1, steps=1, tokens=TOKENS)
    back = load_dump(path)
    assert tuple(back.params) == param_names(cfg) and "fcb" not in back.grads


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda z: z.pop("grad.qkvw"), "missing array 'grad.qkvw'"),
        (lambda z: z.update({"logits": z["logits"][:, :-1]}),
         r"logits has shape \(2, 15, 128\), expected \(2, 16, 128\)"),
        (lambda z: z.update({"version": np.array(2)}), "version 2.*reads version 1"),
        (lambda z: z.update({"format": np.array("llm.c")}), "format is 'llm.c'"),
        (lambda z: z.update({"param.wte": z["param.wte"].astype(np.float64)}),
         "param.wte has dtype float64, expected float32"),
        (lambda z: z.update({"tokens.y": z["tokens.y"] + 200}), r"tokens.y holds ids outside"),
        (lambda z: z.update({"grad.fcw": z["grad.fcw"] * np.nan}), "grad.fcw holds NaN"),
        (lambda z: z.update({"trajectory.loss": z["trajectory.loss"][:2]}),
         r"trajectory.loss has shape \(2,\), expected \(3,\)"),
        (lambda z: z.update({"extra": np.zeros(1)}), r"unexpected array\(s\) \['extra'\]"),
        (lambda z: z.update({"generate.greedy": z["generate.greedy"][:0]}),
         "generate.greedy is empty"),
        (lambda z: z.update({"config": np.array(json.dumps({"model": {"name": "x"}}))}),
         r"config.model: missing \['n_layer', 'n_head', 'n_embd', 'block_size'\]"),
        (lambda z: z.update({"config": np.array(str(z["config"]).replace('"beta1"', '"b1"'))}),
         r"config.training: missing \['beta1'\], unknown \['b1'\]"),
    ],
)  # fmt: skip
def test_bad_dumps_name_the_array(
    written: tuple[Path, ReferenceDump],
    tmp_path: Path,
    edit: Callable[[dict[str, NDArray[Any]]], None],
    message: str,
) -> None:
    """Each defect is a DumpError naming the file and the array (or key) at fault."""
    bad = _rewrite(written[0], tmp_path / "bad.npz", edit)
    with pytest.raises(DumpError, match=message) as err:
        load_dump(bad)
    assert str(err.value).startswith(f"{bad}: ")


def test_not_an_npz_is_a_dump_error(tmp_path: Path) -> None:
    """A file that is not a zip, and a missing file, are DumpErrors, not numpy tracebacks."""
    junk = tmp_path / "junk.npz"
    junk.write_text("hello")
    with pytest.raises(DumpError, match="not a reference dump"):
        load_dump(junk)
    with pytest.raises(DumpError, match="no such reference dump"):
        load_dump(tmp_path / "absent.npz")


@pytest.mark.corpus
def test_cli_writes_a_loadable_dump(tmp_path: Path) -> None:
    """``python -m reference.dump --preset tiny --out F`` writes F as named (no suffix added)."""
    out = tmp_path / "sub" / "tiny.dump"
    assert main(["--preset", "tiny", "--out", str(out), "--steps", "2", "--batch", "1"]) == 0
    d = load_dump(out)
    assert d.cfg == PRESETS["tiny"] and d.traj_loss.shape == (2,) and d.x.shape == (1, 16)


def test_cli_refuses_an_unknown_preset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown preset exits 2 naming the known ones, and writes nothing."""
    assert main(["--preset", "nope", "--out", str(tmp_path / "x.npz")]) == 2
    assert "unknown preset 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "x.npz").exists()
