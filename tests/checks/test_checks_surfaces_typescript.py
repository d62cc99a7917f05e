"""The TS/JS and Python surface extractors' statements: keys written as code, not literals."""

from __future__ import annotations

from pathlib import Path

from harness.surfaces import python_surface, typescript
from harness.surfaces.base import SurfaceEntry, Unreadable


def test_ts_statements_keep_a_property_written_as_code_with_its_line(tmp_path: Path) -> None:
    """A property whose value is code is an Unreadable at its line, in order with the literals;
    `extract` still returns the literal entries only."""
    ts = tmp_path / "d.js"
    ts.write_text(
        "export const D = {\n  lr: 3e-4,\n  extra: 1 / 10,\n  lr: 10 * 3e-4, // hot\n"
        "  asNum: 3e-3 as number,\n  sched: { minLr: base.lr },\n};\n"
    )
    got = typescript.statements(ts, object_name="D")
    assert got == [
        SurfaceEntry("lr", 3e-4, "3e-4", 2),
        Unreadable("extra", "1 / 10", 3),
        Unreadable("lr", "10 * 3e-4", 4),
        Unreadable("asNum", "3e-3 as number", 5),
        Unreadable("sched.minLr", "base.lr", 6),
    ]
    assert typescript.extract(ts, object_name="D") == [SurfaceEntry("lr", 3e-4, "3e-4", 2)]


def test_ts_code_statements_skip_strings_parameters_blocks_and_nested_objects(
    tmp_path: Path,
) -> None:
    """`key: x` inside a string, a template, a parameter list, a class body or a function body
    is no property, and a nested object or an array of literals states its items, not itself."""
    ts = tmp_path / "w.ts"
    ts.write_text(
        'const A = { note: "use {lr: 3e-3, b: c}", help: `lr: 3e-3, seed: 1` };\n'
        "function f(a: number, b: string) { label: for (;;) { break label; } }\n"
        "class K { x: number = 3; y: Foo }\n"
        'const B = { betas: [0.9, 0.95], sched: { min: 1 }, "q": k, fn: (u: number, v: T) => u };\n'
    )
    code = [(s.key, s.raw) for s in typescript.statements(ts) if isinstance(s, Unreadable)]
    assert code == [("help", "`lr: 3e-3, seed: 1`"), ("q", "k"), ("fn", "(u: number, v: T) => u")]


def test_python_statements_keep_code_assignments_and_drop_valueless_ones(tmp_path: Path) -> None:
    """Python keeps the last assignment: code (`3 * 1e-3`) is an Unreadable so it can replace a
    literal; `None`, a constructor call with no arguments and `field(default_factory=...)` state
    nothing, as before."""
    py = tmp_path / "c.py"
    py.write_text(
        "from dataclasses import dataclass, field\n\n@dataclass\nclass C:\n"
        "    lr: float = 3e-4\n    resume: str | None = None\n"
        "    layers: list = field(default_factory=list)\n"
        "    lr: float = 3 * 1e-3\n\nCFG = C()\nD = {'lr': 1e-3, 'lr': base}\n"
    )
    got = python_surface.statements(py)
    assert got == [
        SurfaceEntry("C.lr", 3e-4, "3e-4", 5),
        Unreadable("C.lr", "3 * 1e-3", 8),
        SurfaceEntry("D.lr", 1e-3, "1e-3", 11),
        Unreadable("D.lr", "base", 11),
    ]
    assert [e.key for e in python_surface.extract(py)] == ["C.lr", "D.lr"]
