"""Bad claims files: every error names ``file:line`` (harness/gate/claims.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.gate.claims import load_claims
from harness.gate.errors import GateInputError

CLAIM = (
    'schema_version = 2\n[[claim]]\nid = "tps"\nhost = "node24"\nartifact = "wasm32"\n'
    'preset = "tiny"\nsubject = "generate"\nmetric = "tok_per_s"\nvalue = 1200\n'
    'tolerance = 0.2\ntolerance_reason = "test"\nmachine_independent = true\n'
    'published = { file = "README.md", marker = "claim:tps" }\n'
)


def test_a_toml_syntax_error_names_its_line(tmp_path: Path) -> None:
    """A syntax error on line 14 reads ``claims.toml:14: not valid TOML (...)``, like every
    other error of the claims file."""
    path = tmp_path / "claims.toml"
    path.write_text(CLAIM + 'what = "a" "b"\n')
    with pytest.raises(GateInputError, match=r"claims\.toml:14: not valid TOML \(") as err:
        load_claims(path)
    assert "line 14" in str(err.value)  # tomllib's own position (with its column) is kept


def test_a_syntax_error_at_the_end_names_the_last_line(tmp_path: Path) -> None:
    """An unterminated table at the end of the file: tomllib says "at end of document"."""
    path = tmp_path / "claims.toml"
    path.write_text(CLAIM + "[scan")
    with pytest.raises(GateInputError, match=r"claims\.toml:14: not valid TOML"):
        load_claims(path)


def test_a_claims_file_that_is_not_utf8_names_line_and_offset(tmp_path: Path) -> None:
    """A Latin-1 byte in the claims file: its line and byte offset, not a codec message."""
    path = tmp_path / "claims.toml"
    path.write_bytes(CLAIM.replace('"test"', '"t\xe9st"').encode("latin-1"))
    with pytest.raises(GateInputError, match=r"claims\.toml:11: .*not UTF-8.*0xe9 at offset"):
        load_claims(path)


def test_a_quoted_schema_version_is_a_type_error_at_its_line(tmp_path: Path) -> None:
    """``schema_version = "2"`` read "unknown version '2' (expected 2)", a seeming contradiction:
    it is the type that is wrong, and the message says so at the line."""
    path = tmp_path / "claims.toml"
    path.write_text("\n" + CLAIM.replace("schema_version = 2", 'schema_version = "2"'))
    with pytest.raises(GateInputError) as err:
        load_claims(path)
    message = str(err.value)
    assert f"{path}:2: field 'schema_version': must be an integer, got a string '2'" in message
    assert "unknown version" not in message
