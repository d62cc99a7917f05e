"""Surface extractors: each format yields the right keys, values, raw literals and lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.surfaces import SurfaceError, extract, parse_literal

FIX = Path(__file__).parent / "fixtures"
SURF = FIX / "surfaces"


def _table(path: Path, fmt: str, **opts: object) -> dict[str, tuple[object, str, int]]:
    return {e.key: (e.value, e.raw, e.line) for e in extract(path, fmt, opts)}


def test_parse_literal_forms() -> None:
    """JS/TOML/Python spellings of numbers, booleans and strings parse to Python values."""
    assert parse_literal("3e-3") == 0.003
    assert parse_literal("0.003") == 3e-3
    assert parse_literal("1_337") == 1337 and isinstance(parse_literal("16"), int)
    assert parse_literal("0x10") == 16
    assert parse_literal("true") is True and parse_literal("False") is False
    assert parse_literal("'adamw'") == "adamw"
    with pytest.raises(ValueError, match="not a number"):
        parse_literal("number")


def test_typescript_tinygpt_types_line_15() -> None:
    """TinyGPT's types.ts states learningRate: 3e-3 on line 15; interface fields are skipped."""
    t = _table(FIX / "tinygpt_bug" / "types.ts", "typescript")
    assert t["learningRate"] == (0.003, "3e-3", 15)
    assert t["gradClip"] == (1.0, "1.0", 20)
    assert len(t) == 6  # the interface's `learningRate: number;` lines are not values


def test_typescript_comments_quotes_consts_and_ternaries() -> None:
    """Comments don't count, quoted keys do, consts do, a ternary's `: 3` is not a property."""
    t = _table(SURF / "settings.js", "typescript")
    assert t["learningRate"] == (3e-4, "3e-4", 5)
    assert t["batchSize"] == (16, "16", 6) and t["seed"] == (1337, "1_337", 6)
    assert t["label"][0] == "http://example.com/a:b"
    assert t["useCache"] == (True, "true", 8)
    assert t["WARMUP_STEPS"] == (100, "100", 10)
    assert "left" not in t and "pick" not in t


def test_typescript_object_option_restricts_to_one_literal() -> None:
    """object = NAME reads only that object literal's properties."""
    t = _table(SURF / "settings.js", "typescript", object="SETTINGS")
    assert "WARMUP_STEPS" not in t and "learningRate" in t
    with pytest.raises(SurfaceError, match="no object literal named 'NOPE'"):
        extract(SURF / "settings.js", "typescript", {"object": "NOPE"})


def test_typescript_unbalanced_file_is_a_parse_error() -> None:
    """A TS file cut off mid-object is an error naming the file and the open brace's line."""
    with pytest.raises(SurfaceError, match=r"broken\.ts: '\{' opened on line 1 is never closed"):
        extract(SURF / "broken.ts", "typescript")


def test_html_tinygpt_astro_line_16() -> None:
    """TinyGPT's index.astro has <input id="lr" value="0.003"> on line 16."""
    t = _table(FIX / "tinygpt_bug" / "index.astro", "html")
    assert t["lr"] == (0.003, "0.003", 16)
    assert t["steps"] == (2000, "2000", 18)


def test_html_quotes_names_jsx_and_multiline_tags() -> None:
    """id or name is the key; single quotes and {expr} values; the line is the value's line."""
    t = _table(SURF / "form.html", "html")
    assert t["lr"] == (0.0003, "0.0003", 3)
    assert t["batch"] == (16, "16", 4)
    assert t["warmup"] == (100, "100", 8)
    assert set(t) == {"lr", "batch", "warmup"}


def test_json_dotted_keys_and_lines() -> None:
    """Nested JSON leaves are dotted, arrays indexed, null skipped, lines exact."""
    t = _table(SURF / "config.json", "json")
    assert t["training.learning_rate"] == (3e-4, "3e-4", 4)
    assert t["training.betas.1"] == (0.95, "0.95", 6)
    assert t["model"] == ("small", '"small"', 2)
    assert "training.notes" not in t


def test_json_parse_error_names_file_and_position() -> None:
    """Invalid JSON raises SurfaceError with the file and json's line/column message."""
    with pytest.raises(SurfaceError, match=r"broken\.json: invalid JSON: .*line 1 column"):
        extract(SURF / "broken.json", "json")


def test_toml_tables_inline_tables_and_comments() -> None:
    """TOML keys are dotted by table; a trailing comment is not part of the raw value."""
    t = _table(SURF / "config.toml", "toml")
    assert t["training.learning_rate"] == (3e-4, "3e-4", 5)
    assert t["training.batch_size"][2] == 6
    assert t["training.optimizer.beta2"][0] == 0.95 and t["training.optimizer.beta2"][2] == 7


def test_toml_parse_error(tmp_path: Path) -> None:
    """Invalid TOML raises SurfaceError with tomllib's message."""
    bad = tmp_path / "bad.toml"
    bad.write_text("a = = 1\n")
    with pytest.raises(SurfaceError, match=r"bad\.toml: invalid TOML"):
        extract(bad, "toml")


def test_python_constants_dicts_and_dataclass_fields() -> None:
    """Module constants, dict literals and class field defaults, never computed values."""
    t = _table(SURF / "constants.py", "python")
    assert t["LEARNING_RATE"] == (3e-4, "3e-4", 5)
    assert t["WARMUP"] == (-1, "-1", 6)
    assert t["CONFIG.seed"] == (1337, "1337", 9)
    assert t["Defaults.batch_size"] == (16, "16", 14)
    assert "DERIVED" not in t


def test_python_syntax_error(tmp_path: Path) -> None:
    """A Python surface that does not parse names the file and the line."""
    bad = tmp_path / "bad.py"
    bad.write_text("X = (\n")
    with pytest.raises(SurfaceError, match=r"bad\.py: invalid Python: .*line 1"):
        extract(bad, "python")


def test_markdown_table_under_heading() -> None:
    """The README table under 'Default hyperparameters' gives name/value rows with lines."""
    t = _table(SURF / "readme.md", "markdown")
    assert t == {
        "learning_rate": (3e-4, "3e-4", 9),
        "batch_size": (16, "16", 10),
        "seed": (1337, "1337", 11),
    }


def test_markdown_missing_heading_and_missing_file(tmp_path: Path) -> None:
    """No heading, or no file at all, is a SurfaceError naming the file."""
    with pytest.raises(SurfaceError, match="no heading 'Default hyperparameters'"):
        extract(SURF / "config.toml", "markdown")
    with pytest.raises(SurfaceError, match=r"nope\.md: file not found"):
        extract(tmp_path / "nope.md", "markdown")


def test_unknown_format_lists_known_ones() -> None:
    """A matrix naming an unknown format gets the list of known ones."""
    with pytest.raises(KeyError, match="typescript"):
        extract(SURF / "config.toml", "yaml")
