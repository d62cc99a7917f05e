"""The reference dump (docs/reference-dump.md): write, load, and precise errors on bad files."""

from __future__ import annotations

import json
import re
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
        np.savez(f, **data)
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
        (lambda z: z.update({"logits": z["logits"][:, :, :-1]}),
         r"logits has shape \(2, 16, 127\), expected \(2, 16, 128\)"),
        (lambda z: z.update({"version": np.array(2)}), "version 2.*reads version 1"),
        (lambda z: z.update({"format": np.array("llm.c")}), "format is 'llm.c'"),
        (lambda z: z.update({"param.wte": z["param.wte"].astype(np.float64)}),
         "param.wte has dtype float64, expected float32"),
        (lambda z: z.update({"tokens.y": z["tokens.y"] + 200}), r"tokens.y holds ids outside"),
        (lambda z: z.update({"grad.fcw": z["grad.fcw"] * np.nan}), "grad.fcw holds NaN"),
        (lambda z: z.update({"trajectory.loss": z["trajectory.loss"][:2]}),
         r"disagree in length .*: trajectory.x 3, .* trajectory.loss 2"),
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
    """A text file is "not an .npz (zip) file" with its first bytes and how to write one (not
    numpy's advice to unpickle it); a missing file is "no such reference dump"."""
    junk = tmp_path / "junk.npz"
    junk.write_text("hello, not a zip")
    with pytest.raises(DumpError) as err:
        load_dump(junk)
    assert str(err.value) == (
        f"{junk}: not an .npz (zip) file: its first bytes are b'hello, n'; "
        "write the dump with np.savez(out, **arrays)"
    )
    with pytest.raises(DumpError, match="no such reference dump"):
        load_dump(tmp_path / "absent.npz")


def _cut(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _flip(data: bytes) -> bytes:
    b = bytearray(data)
    b[len(b) // 3] ^= 0xFF  # inside the first member's data: its CRC no longer matches
    return bytes(b)


def _central(data: bytes, offset: int, value: int) -> bytes:
    """``data`` with one byte of the first member's central directory entry set to ``value``
    (offset 8: the flags' low byte, whose bit 0 says "encrypted"; 10: the compression method)."""
    b = bytearray(data)
    b[data.index(b"PK\x01\x02") + offset] = value
    return bytes(b)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda data: b"", r": is empty \(0 bytes\)"),
        (_cut, r": is not a complete \.npz \(zip\) file: truncated write\?"),
        (_flip, r": member [\w.]+\.npy fails its CRC: the file is corrupt"),
        # zipfile raises NotImplementedError and RuntimeError for these, not BadZipFile
        (lambda data: _central(data, 10, 99), r": member [\w.]+\.npy cannot be read: .*corrupt"),
        (lambda data: _central(data, 8, 1), r": member [\w.]+\.npy cannot be read: .*corrupt"),
    ],
)
def test_an_empty_truncated_or_corrupt_file_is_a_dump_error(
    written: tuple[Path, ReferenceDump],
    tmp_path: Path,
    damage: Callable[[bytes], bytes],
    message: str,
) -> None:
    """An empty file, a zip cut in half and a flipped byte are DumpErrors saying so (a run
    exits 2 on them), not numpy/zipfile tracebacks."""
    bad = tmp_path / "bad.npz"
    bad.write_bytes(damage(written[0].read_bytes()))
    with pytest.raises(DumpError, match=f"^{re.escape(str(bad))}{message}"):
        load_dump(bad)


def test_a_directory_is_named_as_one(tmp_path: Path) -> None:
    """A dump path that is a directory says so."""
    (tmp_path / "d.npz").mkdir()
    with pytest.raises(DumpError, match=r"d\.npz: is a directory, not a reference dump"):
        load_dump(tmp_path / "d.npz")


def test_a_config_other_than_the_expected_preset_is_blamed_before_the_arrays(
    written: tuple[Path, ReferenceDump], tmp_path: Path
) -> None:
    """Only config.model.n_embd is wrong: the config is named (``n_embd 32 (preset: 16)``),
    not param.wte, whose shape follows from the preset and is right."""
    config = json.loads(str(np.load(written[0])["config"]))
    config["model"]["n_embd"] = 32
    bad = _rewrite(written[0], tmp_path / "bad.npz",
                   lambda z: z.update({"config": np.array(json.dumps(config))}))  # fmt: skip
    with pytest.raises(DumpError) as err:
        load_dump(bad, expect=PRESETS["tiny"])
    assert str(err.value) == f"{bad}: is not preset 'tiny''s model: n_embd 32 (preset: 16)"


def test_trajectory_arrays_of_different_lengths_are_all_named(
    written: tuple[Path, ReferenceDump], tmp_path: Path
) -> None:
    """trajectory.lr cut to 2 of 3 entries: the message gives every trajectory array's length
    instead of blaming the (right) trajectory.x."""
    bad = _rewrite(written[0], tmp_path / "bad.npz",
                   lambda z: z.update({"trajectory.lr": z["trajectory.lr"][:2]}))  # fmt: skip
    with pytest.raises(DumpError) as err:
        load_dump(bad)
    assert str(err.value) == (
        f"{bad}: the trajectory arrays disagree in length (one entry per step): "
        "trajectory.x 3, trajectory.y 3, trajectory.lr 2, trajectory.loss 3"
    )


@pytest.mark.parametrize("key", ["tokens.x", "logits"])
def test_token_and_logit_arrays_of_different_t_are_all_named(
    written: tuple[Path, ReferenceDump], tmp_path: Path, key: str
) -> None:
    """tokens.x (or logits) cut by one position: the message gives the shapes of tokens.x,
    tokens.y and logits instead of blaming the two that agree with each other."""
    bad = _rewrite(written[0], tmp_path / "bad.npz",
                   lambda z: z.update({key: z[key][:, :-1]}))  # fmt: skip
    with pytest.raises(DumpError) as err:
        load_dump(bad)
    x, logits = ((2, 15), (2, 16, 128)) if key == "tokens.x" else ((2, 16), (2, 15, 128))
    assert str(err.value) == (
        f"{bad}: tokens.x, tokens.y and logits disagree in (B, T), sequences by positions: "
        f"tokens.x {x}, tokens.y (2, 16), logits {logits}"
    )


@pytest.mark.parametrize(
    ("version", "found"), [(np.array("1"), "str '1'"), (np.array(1.0), "float 1.0")]
)
def test_a_version_that_is_not_an_integer_says_so(
    written: tuple[Path, ReferenceDump], tmp_path: Path, version: NDArray[Any], found: str
) -> None:
    """version "1" or 1.0 is "version must be the integer 1 (found str '1')", not the
    contradictory "version '1'; this harness reads version 1"."""
    bad = _rewrite(written[0], tmp_path / "bad.npz", lambda z: z.update({"version": version}))
    with pytest.raises(DumpError) as err:
        load_dump(bad)
    assert str(err.value) == f"{bad}: version must be the integer 1 (found {found})"


def test_config_errors_print_only_the_lists_that_hold_something(
    written: tuple[Path, ReferenceDump], tmp_path: Path
) -> None:
    """An unknown training key alone is "unknown ['lr_decay']", without "missing []"."""
    config = json.loads(str(np.load(written[0])["config"]))
    config["training"]["lr_decay"] = 1.0
    bad = _rewrite(written[0], tmp_path / "bad.npz",
                   lambda z: z.update({"config": np.array(json.dumps(config))}))  # fmt: skip
    with pytest.raises(DumpError) as err:
        load_dump(bad)
    assert f"{bad}: config.training: unknown ['lr_decay'] (required: " in str(err.value)
    assert "missing" not in str(err.value)


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
