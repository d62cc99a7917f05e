"""harness.matrix: loading, validation errors with FILE:LINE, cell expansion and sharding."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from harness.build import EM_TARGETS, TARGETS
from harness.matrix import (
    Cell,
    HostSpec,
    Matrix,
    MatrixError,
    Names,
    check_thread_counts,
    expand_cells,
    load_matrix,
    parse_shard,
    shard,
)
from harness.toml_lines import TomlLines

NAMES = Names(
    hosts=("native", "wasmtime", "node", "node22", "node24", "chromium"),
    artifacts=("wasm32", "wasm64", "native"),
)

LISTS = """\
name = "t"
artifacts = ["wasm32", "wasm64", "native"]
presets = ["tiny", "small"]
checks = ["smoke", "ops"]
"""

HOSTS = """\
[hosts]
native = {}
node22 = { version = "22.23.3" }
wasmtime = {}
"""

GOOD = LISTS + HOSTS


def no_validator(kind: str) -> None:
    """Options are not vetted in these tests (check modules are someone else's)."""
    return None


def write(tmp_path: Path, text: str) -> Path:
    """Write ``text`` (dedented) to a matrix file."""
    path = tmp_path / "m.toml"
    path.write_text(textwrap.dedent(text))
    return path


def load(tmp_path: Path, text: str) -> Matrix:
    """Load ``text`` as a matrix."""
    return load_matrix(write(tmp_path, text), NAMES, no_validator)


def error_of(tmp_path: Path, text: str) -> tuple[int, str]:
    """Return (line, message) of the MatrixError that loading ``text`` raises."""
    path = write(tmp_path, text)
    with pytest.raises(MatrixError) as info:
        load_matrix(path, NAMES, no_validator)
    m = re.fullmatch(rf"{re.escape(str(path))}:(\d+): (.*)", str(info.value), re.S)
    assert m, f"message does not start with FILE:LINE: {info.value}"
    return int(m.group(1)), m.group(2)


def test_good_matrix_loads_into_frozen_fields(tmp_path: Path) -> None:
    """A valid file gives hosts with pins, lists, default timeout and its own sha256."""
    m = load(tmp_path, GOOD)
    assert m.name == "t"
    assert m.hosts == (HostSpec("native"), HostSpec("node22", "22.23.3"), HostSpec("wasmtime"))
    assert m.artifacts == ("wasm32", "wasm64", "native")
    assert m.presets == ("tiny", "small")
    assert m.timeout_s == 60.0
    import hashlib

    assert m.sha256 == hashlib.sha256((tmp_path / "m.toml").read_bytes()).hexdigest()
    with pytest.raises(AttributeError):
        m.name = "other"  # type: ignore[misc]


def test_unknown_top_level_key_points_at_its_line(tmp_path: Path) -> None:
    """A misspelt key is named, with the allowed keys, at its own line."""
    line, msg = error_of(tmp_path, LISTS + "\n# comment\nchecsk = []\n" + HOSTS)
    assert line == 7
    assert "unknown key 'checsk'" in msg and "allowed:" in msg


def test_unknown_host_points_at_its_line(tmp_path: Path) -> None:
    """An unregistered host name is reported on the line that declares it."""
    text = GOOD.replace("wasmtime = {}", "wasmtime = {}\nnodex = {}")
    line, msg = error_of(tmp_path, text)
    assert line == 9
    assert "unknown host 'nodex'" in msg and "node22" in msg


def test_unknown_artifact_in_a_multiline_array_points_at_the_element(tmp_path: Path) -> None:
    """The line is that of the bad element, not of the key that opens the array."""
    text = 'name = "t"\nartifacts = [\n  "wasm32",\n  "wasm65",\n]\npresets = ["tiny"]\n'
    line, msg = error_of(tmp_path, text + 'checks = ["smoke"]\n' + HOSTS)
    assert line == 4
    assert "unknown artifact 'wasm65'" in msg


def test_bad_type_names_the_key_and_the_type(tmp_path: Path) -> None:
    """A string where a number belongs is reported with both types at its line."""
    line, msg = error_of(tmp_path, LISTS + 'timeout_s = "60"\n' + HOSTS)
    assert line == 5
    assert msg == "timeout_s must be a number of seconds, got a string '60'"


def test_boolean_is_not_a_number(tmp_path: Path) -> None:
    """TOML true is a Python int subclass, but not a timeout."""
    line, msg = error_of(tmp_path, LISTS + "timeout_s = true\n" + HOSTS)
    assert (line, msg) == (5, "timeout_s must be a number of seconds, got a boolean True")


def test_bad_type_inside_an_inline_table(tmp_path: Path) -> None:
    """A pinned version given as a number is reported at the host's line."""
    line, msg = error_of(tmp_path, GOOD.replace('"22.23.3"', "22"))
    assert line == 7
    assert msg == "hosts.node22.version must be a string, got an integer 22"


def test_hosts_are_required_unless_marked_optional(tmp_path: Path) -> None:
    """``optional = true`` marks a host optional; every other host is required."""
    m = load(
        tmp_path,
        GOOD.replace('{ version = "22.23.3" }', '{ version = "22.23.3", optional = true }'),
    )
    assert m.host("node22").optional is True
    assert all(not m.host(h.name).optional for h in m.hosts if h.name != "node22")


def test_optional_must_be_a_boolean(tmp_path: Path) -> None:
    """``optional = "yes"`` is reported at the host's line with both types."""
    line, msg = error_of(tmp_path, GOOD.replace('{ version = "22.23.3" }', '{ optional = "yes" }'))
    assert line == 7
    assert msg == "hosts.node22.optional must be true or false, got a string 'yes'"


def test_toml_syntax_error_has_file_and_line(tmp_path: Path) -> None:
    """tomllib's own message is kept, prefixed with FILE:LINE."""
    line, msg = error_of(tmp_path, GOOD + 'node = { version = "20"\nchromium = {}\n')
    assert line == 9
    assert "at line 9" in msg


def test_syntax_error_at_end_of_document_uses_last_line(tmp_path: Path) -> None:
    """A duplicate key reported 'at end of document' still gets a line number."""
    line, msg = error_of(tmp_path, "name = 'a'\nname = 'b'\n")
    assert line == 2
    assert "Cannot overwrite" in msg


def test_unreadable_matrix_is_an_error_at_line_1(tmp_path: Path) -> None:
    """A missing file is a MatrixError at FILE:1 naming the cause (the shared read_toml)."""
    path = tmp_path / "absent.toml"
    with pytest.raises(MatrixError, match=rf"^{re.escape(str(path))}:1: cannot read the matrix"):
        load_matrix(path, NAMES, no_validator)


def test_crlf_file_hashes_its_bytes_and_points_at_its_lines(tmp_path: Path) -> None:
    """A CRLF matrix's sha256 is of its bytes as written (no newline translation), and an
    error in it still points at the right line."""
    import hashlib

    path = tmp_path / "m.toml"
    path.write_bytes(GOOD.replace("\n", "\r\n").encode())
    m = load_matrix(path, NAMES, no_validator)
    assert m.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    path.write_bytes((LISTS + 'timeout_s = "60"\n' + HOSTS).replace("\n", "\r\n").encode())
    with pytest.raises(MatrixError, match=rf"^{re.escape(str(path))}:5: timeout_s must be"):
        load_matrix(path, NAMES, no_validator)


def test_thread_count_error_uses_the_lines_read_at_load(tmp_path: Path) -> None:
    """check_thread_counts (after load) points at ``threads`` with the lines read at load: the
    file is not read again, so a file changed or removed since load cannot move the line."""
    text = GOOD.replace('checks = ["smoke", "ops"]', 'checks = ["bench"]')
    path = write(tmp_path, text + "[check.bench]\ncurves = ['ops']\nthreads = [1, 4]\n")
    m = load_matrix(path, NAMES, no_validator)
    path.unlink()
    with pytest.raises(
        MatrixError, match=rf"^{re.escape(str(path))}:11: \[check.bench\] threads: 4"
    ):
        check_thread_counts(m, expand_cells(m), {"wasm32": (3, "its pool")})
    check_thread_counts(m, expand_cells(m), {"wasm32": (4, "its pool")})  # within every limit


def test_a_thread_limit_shared_by_artifacts_is_said_once(tmp_path: Path) -> None:
    """Artifacts capped for the same reason are named together with it, once; another reason
    follows (the refusal of four builds of one project was one reason said four times)."""
    text = GOOD.replace('checks = ["smoke", "ops"]', 'checks = ["determinism"]')
    m = load_matrix(write(tmp_path, text + "[check.determinism]\nthreads = [1, 2]\n"), NAMES,
                    no_validator)  # fmt: skip
    limits = {"wasm32": (1, "no [threads]"), "wasm64": (1, "no [threads]"), "native": (16, "x")}
    with pytest.raises(MatrixError) as info:
        check_thread_counts(m, expand_cells(m), limits)
    said = str(info.value)
    assert "wasm32, wasm64 run at most 1 (no [threads])" in said and said.count("no [threads]") == 1
    assert "native" not in said


def test_missing_required_key(tmp_path: Path) -> None:
    """Leaving out presets is an error naming it."""
    _, msg = error_of(tmp_path, 'name = "t"\nartifacts = ["native"]\nchecks = ["smoke"]\n' + HOSTS)
    assert msg == "missing required key 'presets'"


def test_unknown_preset_and_check(tmp_path: Path) -> None:
    """Presets and checks are validated against reference.presets and the check registry."""
    _, msg = error_of(tmp_path, GOOD.replace('"small"', '"smol"'))
    assert "unknown preset 'smol'" in msg
    line, msg = error_of(tmp_path, GOOD.replace('"ops"', '"opz"'))
    assert line == 4 and "unknown check 'opz'" in msg


def test_exclude_rule_unknown_field_and_pattern(tmp_path: Path) -> None:
    """Rule keys and patterns are vetted; a pattern that matches nothing is a typo."""
    line, msg = error_of(tmp_path, GOOD + "[[exclude]]\nhots = 'native'\n")
    assert line == 10 and "unknown key 'exclude[0].hots'" in msg
    text = GOOD + "[[exclude]]\nhost = 'native'\n[[exclude]]\nhost = ['node*', 'chrome']\n"
    line, msg = error_of(tmp_path, text)
    assert line == 12 and "host 'chrome' matches no known host" in msg


def test_check_options_validator_error_points_at_the_option(tmp_path: Path) -> None:
    """A check's validate_options ValueError naming 'key' is reported at that key's line."""

    def validator(kind: str) -> Any:
        def validate(options: Mapping[str, Any]) -> None:
            if options.get("repeats", 1) < 1:
                raise ValueError("'repeats' must be >= 1")

        return validate if kind == "ops" else None

    path = write(tmp_path, GOOD + "[check.ops]\nshapes = 3\nrepeats = 0\n")
    with pytest.raises(MatrixError, match=rf"^{re.escape(str(path))}:11: \[check.ops\]: 'repeats'"):
        load_matrix(path, NAMES, validator)


def test_unknown_check_options_table(tmp_path: Path) -> None:
    """[check.<kind>] must name a registered check."""
    line, msg = error_of(tmp_path, GOOD + "\n[check.benchh]\nx = 1\n")
    assert line == 10 and "unknown check 'benchh'" in msg


def test_options_and_thresholds_pass_through(tmp_path: Path) -> None:
    """Check option tables (nested too) and thresholds reach the Matrix unchanged."""
    text = GOOD + (
        "[check.defaults.surfaces.webapp]\nformat = 'json'\npath = 'ui/defaults.json'\n"
        "[thresholds]\nmin_effect = 0.05\n"
    )
    m = load(tmp_path, text)
    assert m.options("defaults") == {
        "surfaces": {"webapp": {"format": "json", "path": "ui/defaults.json"}}
    }
    assert m.options("bench") == {}
    assert m.thresholds == {"min_effect": 0.05}


def test_thresholds_are_vetted_by_the_gate_parser_at_their_line(tmp_path: Path) -> None:
    """A bad [thresholds] value fails at load (not at compare), at its line."""
    line, msg = error_of(tmp_path, GOOD + "[thresholds]\nalpha = 0.01\nmin_effect = 'x'\n")
    assert line == 11
    assert msg.startswith("field 'thresholds.min_effect'")


def test_validator_message_with_a_dotted_path_points_at_that_element(tmp_path: Path) -> None:
    """'check.defaults.surfaces[1].format ...' points at the second surface's format line."""

    def validator(kind: str) -> Any:
        def validate(options: Mapping[str, Any]) -> None:
            raise ValueError("check.defaults.surfaces[1].format must be one of json, toml")

        return validate

    text = GOOD + textwrap.dedent(
        """\
        [[check.defaults.surfaces]]
        name = "a"
        format = "json"
        [[check.defaults.surfaces]]
        name = "b"
        format = "yaml"
        """
    )
    path = write(tmp_path, text)
    with pytest.raises(MatrixError, match=rf"^{re.escape(str(path))}:14: "):
        load_matrix(path, NAMES, validator)


def test_toml_lines_records_keys_elements_and_array_tables() -> None:
    """The line locator finds dotted keys, inline-table keys, elements and [[tables]]."""
    text = textwrap.dedent(
        """\
        a.b = 1  # comment with = and [
        c = { d = "x", e = [1,
           2] }
        s = '''multi
        line'''
        [[r]]
        k = "v"
        [[r]]
        k = "w"
        [t."q.k"]
        z = true
        """
    )
    lines = TomlLines(text)
    assert lines.line_of(("a", "b")) == 1
    assert lines.line_of(("c", "d")) == 2
    assert lines.line_of(("c", "e", 1)) == 3
    assert lines.line_of(("r", 1, "k")) == 9
    assert lines.line_of(("t", "q.k", "z")) == 11
    assert lines.line_of(("t", "q.k", "missing")) == 10


# -- cells -----------------------------------------------------------------------------------


def ids(cells: list[Cell]) -> list[str]:
    """The cell ids."""
    return [c.id for c in cells]


def test_product_of_hosts_artifacts_presets_sorted_by_id(tmp_path: Path) -> None:
    """Without rules, cells are the full product, sorted by id, each with all checks."""
    cells = expand_cells(load(tmp_path, GOOD))
    assert len(cells) == 3 * 3 * 2
    assert ids(cells) == sorted(ids(cells))
    assert all(c.checks == ("smoke", "ops") for c in cells)


def test_exclude_removes_cells_and_single_checks(tmp_path: Path) -> None:
    """A rule without check drops cells; with check it drops only that check."""
    text = GOOD + textwrap.dedent(
        """\
        [[exclude]]
        host = "native"
        artifact = ["wasm*"]
        reason = "native runs only the native library"
        [[exclude]]
        host = "node22"
        check = "ops"
        preset = "small"
        """
    )
    cells = {c.id: c for c in expand_cells(load(tmp_path, text))}
    assert "native/wasm32/tiny" not in cells and "native/wasm64/small" not in cells
    assert cells["native/native/tiny"].checks == ("smoke", "ops")
    assert cells["node22/wasm64/small"].checks == ("smoke",)
    assert cells["node22/wasm64/tiny"].checks == ("smoke", "ops")
    assert len(cells) == 18 - 4


def test_include_adds_back_and_adds_extra_cells(tmp_path: Path) -> None:
    """Includes win over excludes and may add presets/checks outside the matrix's lists."""
    text = GOOD + textwrap.dedent(
        """\
        [[exclude]]
        host = "native"
        [[include]]
        host = "native"
        artifact = "native"
        [[include]]
        host = "wasmtime"
        artifact = "wasm64"
        preset = "xl"
        check = "model"
        """
    )
    cells = {c.id: c for c in expand_cells(load(tmp_path, text))}
    assert {k for k in cells if k.startswith("native/")} == {
        "native/native/tiny",
        "native/native/small",
    }
    assert cells["wasmtime/wasm64/xl"].checks == ("model",)


def test_only_checks_replaces_the_list_and_filters_includes(tmp_path: Path) -> None:
    """run --checks X runs only X, also in included cells; cells left with nothing vanish."""
    text = GOOD + "[[include]]\nhost = 'wasmtime'\npreset = 'xl'\ncheck = 'model'\n"
    cells = expand_cells(load(tmp_path, text), only_checks=("smoke",))
    assert all(c.checks == ("smoke",) for c in cells)
    assert not any(c.preset == "xl" for c in cells)


def test_shards_are_disjoint_cover_everything_and_are_deterministic(tmp_path: Path) -> None:
    """Union of shards 1..N is all cells, shards are disjoint, and the split is reproducible."""
    cells = expand_cells(load(tmp_path, GOOD))
    for n in (1, 2, 3, 5, 40):
        parts = [ids(shard(cells, k, n)) for k in range(1, n + 1)]
        flat = [c for p in parts for c in p]
        assert sorted(flat) == sorted(ids(cells))
        assert len(flat) == len(set(flat))
        assert parts == [ids(shard(list(reversed(cells)), k, n)) for k in range(1, n + 1)]
        assert max(map(len, parts)) - min(map(len, parts)) <= 1


@pytest.mark.parametrize("text", ["0/2", "3/2", "1", "a/b", "1/0"])
def test_bad_shard_spec_is_refused(text: str) -> None:
    """--shard must be K/N with 1 <= K <= N."""
    with pytest.raises(ValueError, match="shard"):
        parse_shard(text)


def test_host_pin_is_a_dotted_prefix() -> None:
    """A pin matches the version's leading components, with or without a leading v."""
    assert HostSpec("node22", "22").accepts("v22.23.3")
    assert HostSpec("node22", "22.23.3").accepts("v22.23.3")
    assert not HostSpec("node22", "22.2").accepts("v22.23.3")
    assert not HostSpec("node22", "22.23.3").accepts("v22.23.4")
    assert HostSpec("node").accepts("anything")


def test_top_level_key_after_hosts_gets_a_hint(tmp_path: Path) -> None:
    """TOML files 'checks = ...' written after [hosts] under hosts; the error says so."""
    line, msg = error_of(tmp_path, 'name = "t"\n[hosts]\nnative = {}\nchecks = ["smoke"]\n')
    assert line == 4
    assert "'checks' is a top-level key: move it above the first [table]" in msg


# -- the shipped matrices -------------------------------------------------------------------

MATRICES = Path(__file__).resolve().parents[2] / "matrices"


@pytest.mark.parametrize("name", ["ci", "default", "release"])
def test_shipped_matrices_validate_with_the_real_checks(name: str) -> None:
    """matrices/*.toml load against the real host registry and check option validators."""
    from harness.hosts.registry import HOST_NAMES

    names = Names(hosts=HOST_NAMES, artifacts=(*TARGETS, *EM_TARGETS))
    m = load_matrix(MATRICES / f"{name}.toml", names)
    assert m.name == name
    assert {h.name for h in m.hosts} == set(HOST_NAMES)
    cells = {c.id: c for c in expand_cells(m)}
    assert "node/wasm64/tiny" in cells  # Node 20's Memory64 refusal stays a visible finding
    assert not any(c.startswith("native/wasm") for c in cells)
    assert not any(c.endswith(("/native/tiny", "/native/small")) and not c.startswith("native/")
                   for c in cells)  # fmt: skip
    # The corpus contract runs once in every host x artifact pair (issue: every check kind in
    # every compatible cell), at the preset its convergence band was recorded for.
    pairs = {(c.host, c.artifact) for c in cells.values()}
    with_corpus = [(c.host, c.artifact) for c in cells.values() if "corpus" in c.checks]
    assert sorted(with_corpus) == sorted(pairs)
    assert {c.preset for c in cells.values() if "corpus" in c.checks} == {"tiny"}
    if name == "default":  # the bundled library's emscripten builds, on two hosts each
        for art in ("em-wasm32", "em-wasm64"):
            for host in ("node24", "chromium"):
                assert {"ops", "model"} <= set(cells[f"{host}/{art}/tiny"].checks)


def test_ci_matrix_covers_every_compatible_pair_on_tiny_and_small() -> None:
    """ci.toml: 12 host x artifact pairs x 2 presets, every check kind somewhere."""
    from harness.checks import REGISTRY
    from harness.hosts.registry import HOST_NAMES

    names = Names(hosts=HOST_NAMES, artifacts=("wasm32", "wasm64", "native", "native-x86-64"))
    cells = expand_cells(load_matrix(MATRICES / "ci.toml", names))
    assert len(cells) == 24
    assert {c.preset for c in cells} == {"tiny", "small"}
    assert {k for c in cells for k in c.checks} == set(REGISTRY)
    # memory64 (docs/memory64.md): once per host x 64-bit artifact, at tiny, last in its cell
    with_m64 = sorted(c.id for c in cells if "memory64" in c.checks)
    assert all(c.endswith("/tiny") and "/wasm32/" not in c for c in with_m64)
    assert len(with_m64) == 7  # 5 wasm hosts x wasm64 + native x 2 native builds
    # last, so no check runs in the grown memory; the native cell's growth check may follow it
    # (a native memory64 check allocates no ballast)
    assert all(
        c.checks[-1] == "memory64" or (c.host == "native" and list(c.checks[-2:]) ==
                                       ["memory64", "growth"])
        for c in cells if "memory64" in c.checks
    )  # fmt: skip


def test_memory64_matrix_is_opt_in() -> None:
    """matrices/memory64.toml runs only memory64, on wasm64 and em-wasm64 in every JS host and
    wasmtime; the default matrix never runs it."""
    from harness.hosts.registry import HOST_NAMES

    names = Names(hosts=HOST_NAMES, artifacts=(*TARGETS, *EM_TARGETS))
    cells = {c.id: c for c in expand_cells(load_matrix(MATRICES / "memory64.toml", names))}
    assert {k for c in cells.values() for k in c.checks} == {"memory64"}
    for host in ("wasmtime", "node", "node22", "node24", "chromium"):
        assert f"{host}/wasm64/tiny" in cells
    assert "node24/em-wasm64/tiny" in cells and "wasmtime/em-wasm64/tiny" not in cells
    default = expand_cells(load_matrix(MATRICES / "default.toml", names))
    assert not any("memory64" in c.checks for c in default)


def test_claims_matrix_is_the_default_matrix_on_the_claim_cells() -> None:
    """matrices/claims.toml (the recording runs) measures every claimed cell of docs/claims.toml,
    in the cells the main job has, with the main job's bench options and host pins."""
    from harness.gate.claims import load_claims
    from harness.hosts.registry import HOST_NAMES

    names = Names(hosts=HOST_NAMES, artifacts=(*TARGETS, *EM_TARGETS))
    claims = load_matrix(MATRICES / "claims.toml", names)
    default = load_matrix(MATRICES / "default.toml", names)
    assert claims.options("bench") == default.options("bench")
    pins = {h.name: h for h in default.hosts}
    assert all(h == pins[h.name] for h in claims.hosts)
    cells = {c.id: c for c in expand_cells(claims)}
    main = {c.id: c for c in expand_cells(default)}
    claimed = {
        c.quantity_at(key).cell
        for c in load_claims(MATRICES.parent / "docs" / "claims.toml").claims
        if c.base.check == "bench" for key in c.points
    }  # fmt: skip
    assert claimed == set(cells)
    assert all("bench" in main[cell].checks for cell in claimed)
