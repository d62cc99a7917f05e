"""The defaults check on file surfaces: TinyGPT's drift, drift in both directions, bad files."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from harness.checks.defaults import (
    SurfaceSpec,
    check_file,
    check_readme,
    compare_entries,
    parse_surface,
    validate_options,
    values_match,
)
from harness.surfaces import SurfaceEntry

FIX = Path(__file__).parent / "fixtures"
BUG = FIX / "tinygpt_bug"


def _bug_specs() -> list[SurfaceSpec]:
    raw: dict[str, Any] = tomllib.loads((BUG / "surfaces.toml").read_text())
    return [parse_surface(s, i) for i, s in enumerate(raw["surfaces"])]


def test_tinygpt_fixtures_fail_at_both_lines() -> None:
    """types.ts:15 and index.astro:16 both state 3e-3 where the reference says 3e-4."""
    failed = [f for spec in _bug_specs() for f in check_file(spec, BUG) if f.status == "fail"]
    assert [(f.surface, f.location, f.expected, f.found) for f in failed] == [
        ("ui-types", "types.ts:15", "0.0003", "3e-3"),
        ("ui-form", "index.astro:16", "0.0003", "0.003"),
    ]
    msg = failed[0].message()
    assert "types.ts:15" in msg and "learning_rate (as 'learningRate')" in msg
    assert "expected 0.0003, found 3e-3" in msg


def test_tinygpt_fixtures_pass_the_keys_they_state_correctly() -> None:
    """Every other key of types.ts matches; the form's partial coverage is one skipped row."""
    types_spec, form_spec = _bug_specs()
    ok = [f for f in check_file(types_spec, BUG) if f.status == "pass"]
    assert len(ok) == 5
    skipped = [f for f in check_file(form_spec, BUG) if f.status == "skipped"]
    assert len(skipped) == 1 and "covers 1 of 12" in skipped[0].note


def test_fixed_values_pass(tmp_path: Path) -> None:
    """With 3e-4 in both files, the same surfaces have no failure (the check can pass)."""
    for name in ("types.ts", "index.astro"):
        text = (BUG / name).read_text().replace("3e-3", "3e-4").replace('"0.003"', '"0.0003"')
        (tmp_path / name).write_text(text)
    assert all(f.status != "fail" for s in _bug_specs() for f in check_file(s, tmp_path))


def test_a_key_whose_value_in_effect_is_code_is_an_error_at_its_line(tmp_path: Path) -> None:
    """``learningRate: 10 * 3e-4`` after a literal 3e-4 is the value in effect: one error row at
    its line naming the code, never a pass on the stale literal nor a "missing" row; a key
    written as code that the surface does not cover is left alone."""
    ts = tmp_path / "config.ts"
    ts.write_text(
        "export const base = { learningRate: 3e-4, batchSize: 2 * 8 };\n"
        "export const cfg = { ...base, learningRate: 10 * 3e-4 };\n"
    )
    spec = SurfaceSpec("ui", "config.ts", "typescript", keys={"learningRate": "learning_rate",
                       "batchSize": "batch_size"}, covers=("learning_rate",))  # fmt: skip
    found = check_file(spec, tmp_path)
    assert [f.status for f in found] == ["error", "skipped"]
    assert found[0].location == "config.ts:2" and "`10 * 3e-4`" in found[0].note
    ts.write_text(ts.read_text().replace("10 * 3e-4", "3e-4"))
    assert [f.status for f in check_file(spec, tmp_path)] == ["pass", "pass", "skipped"]


def test_drift_both_directions() -> None:
    """A surface key the reference lacks and a reference key the surface lacks both fail."""
    entries = [
        SurfaceEntry("learning_rate", 3e-4, "3e-4", 3),
        SurfaceEntry("momentum", 0.9, "0.9", 4),
    ]
    found = compare_entries("ui", "ui.json", entries, covers=["learning_rate", "seed"])
    by_kind = {f.kind: f for f in found}
    assert by_kind["unknown"].key == "momentum" and by_kind["unknown"].location == "ui.json:4"
    assert "not a reference default" in by_kind["unknown"].message()
    assert by_kind["missing"].key == "seed" and "missing" in by_kind["missing"].message()
    assert by_kind["ok"].key == "learning_rate"


def test_full_coverage_requires_every_reference_key() -> None:
    """Without `covers`, a surface must state all 12 reference keys."""
    found = compare_entries("cfg", "cfg.json", [SurfaceEntry("seed", 1337, "1337", 1)])
    assert sum(f.kind == "missing" for f in found) == 11


def test_ignore_skips_non_hyperparameters() -> None:
    """A key listed in `ignore` is neither compared nor reported as unknown."""
    steps = [SurfaceEntry("steps", 2000, "2000", 1)]
    found = compare_entries("ui", "f", steps, ignore=frozenset({"steps"}), covers=["seed"])
    assert [f.kind for f in found] == ["missing", "uncovered"]
    assert found[0].key == "seed"


def test_values_match_exact_unless_rounding_declared() -> None:
    """Numbers compare exactly; `digits` allows a surface's declared rounding; types matter."""
    assert values_match(3e-4, 0.0003) and values_match(16, 16.0)
    assert not values_match(0.95, 0.949999988079071)  # a float32 round trip is a finding
    assert values_match(0.95, 0.949999988079071, digits=6)
    assert not values_match(0.0, False) and not values_match(1e-8, "1e-8")


def test_missing_and_unparsable_surface_files_are_errors(tmp_path: Path) -> None:
    """A missing file and a file that won't parse each give one error naming file and parser."""
    missing = SurfaceSpec("ui", "nope.ts", "typescript")
    (f,) = check_file(missing, tmp_path)
    assert f.status == "error" and "nope.ts" in f.location and "file not found" in f.message()
    broken = SurfaceSpec("ui", "broken.ts", "typescript")
    (g,) = check_file(broken, FIX / "surfaces")
    assert (
        g.status == "error" and "typescript parser" in g.message() and "never closed" in g.message()
    )


def test_readme_table_against_reference(tmp_path: Path) -> None:
    """The README table format passes when complete and fails on a drifted value."""
    from reference.defaults import DEFAULTS

    rows = "\n".join(f"| `{k}` | `{v}` | x |" for k, v in DEFAULTS.as_dict().items())
    readme = tmp_path / "README.md"
    readme.write_text(
        f"# T\n\n## Default hyperparameters\n\n| name | value | meaning |\n|---|---|---|\n{rows}\n"
    )
    assert {f.status for f in check_readme(readme, "Default hyperparameters")} == {"pass"}
    readme.write_text(readme.read_text().replace("`0.0003`", "`0.003`"))
    (bad,) = [f for f in check_readme(readme, "Default hyperparameters") if f.status == "fail"]
    assert bad.key == "learning_rate" and bad.location.endswith("README.md:7")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"surfacez": []}, "unknown option"),
        ({"surfaces": [{"name": "a", "path": "p", "format": "yaml"}]}, "format must be one of"),
        (
            {"surfaces": [{"name": "a", "path": "p", "format": "json", "keys": {"x": "lr"}}]},
            "unknown reference key",
        ),
        ({"surfaces": [{"name": "a", "path": "p", "format": "json", "digits": 0}]}, "digits"),
        (
            {"surfaces": [{"name": "a", "path": "p", "format": "json", "object": "X"}]},
            "unknown field",
        ),
        ({"surfaces": [{"name": "readme", "path": "p", "format": "json"}]}, "reserved"),
        ({"surfaces": [{"name": "a", "path": "p", "format": "json", "covers": []}]}, "no key"),
    ],
)
def test_validate_options_names_the_bad_field(options: dict[str, Any], message: str) -> None:
    """Each bad [check.defaults] table raises ValueError naming what is wrong."""
    with pytest.raises(ValueError, match=message):
        validate_options(options)


def test_tinygpt_fixture_table_is_valid() -> None:
    """The fixture's surfaces table passes validation (what a matrix would embed)."""
    validate_options(tomllib.loads((BUG / "surfaces.toml").read_text()))
