"""Surface extractors skip what is not code: C preprocessor lines and literals, HTML comments."""

from __future__ import annotations

from pathlib import Path

from harness.surfaces import extract
from harness.surfaces.html import textareas


def _table(path: Path, fmt: str, **opts: object) -> dict[str, tuple[object, str, int]]:
    return {e.key: (e.value, e.raw, e.line) for e in extract(path, fmt, opts)}


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_c_call_right_after_a_preprocessor_line_is_a_call(tmp_path: Path) -> None:
    """A call on the line after ``#endif`` or ``#pragma unroll`` is a call, not a declaration."""
    src = _write(
        tmp_path,
        "optim.cc",
        "void step(float* w, float b2);\n"
        "void train(float* w) {\n"
        "#ifdef PREFETCH\n"
        "  prefetch(w);\n"
        "#endif\n"
        "  step(w, 0.95f);\n"
        "#pragma unroll\n"
        "  step(w, 0.99f);\n"
        "#if defined(A) && \\\n"
        "    defined(B)\n"
        "  step(w, 0.5f);\n"
        "#endif  // A && B\n"
        "}\n",
    )
    t = _table(src, "c", calls=["step"])
    assert t["step.1"] == (0.95, "0.95f", 6)
    assert t["step#2.1"] == (0.99, "0.99f", 8)
    assert t["step#3.1"] == (0.5, "0.5f", 11)  # after a backslash-continued directive
    assert "step#4.1" not in t  # the declaration on line 1 is still skipped


def test_c_call_inside_a_string_or_char_literal_is_not_a_call(tmp_path: Path) -> None:
    """A call, comma or bracket written in a string or char literal is text; string values stay."""
    src = _write(
        tmp_path,
        "optim.cc",
        '#define MODE "adamw(0.1f)"\n'
        'static const char* kDoc = "step(w, 0.5f)";\n'
        'static const char* kEsc = "a \\" step(w, 0.6f)";\n'
        "static const char kOpen = '(';\n"
        "void train(float* w) {\n"
        "  step(w, 0.99f, ',', \"a, b\", ')', 1'000);\n"
        "}\n",
    )
    t = _table(src, "c", calls=["step", "adamw"])
    assert t["MODE"] == ("adamw(0.1f)", '"adamw(0.1f)"', 1)
    assert t["step.1"] == (0.99, "0.99f", 6)
    assert t["step.3"] == ("a, b", '"a, b"', 6)  # the char ',' kept its own position
    assert t["step.5"] == (1000, "1'000", 6)  # a digit separator is no char literal
    assert not any(k.startswith(("step#", "adamw")) for k in t)


def test_html_commented_out_input_states_nothing(tmp_path: Path) -> None:
    """An ``<input>`` inside ``<!-- -->`` is no entry; the live one keeps its own line."""
    page = _write(
        tmp_path,
        "index.html",
        "<form>\n"
        '  <!-- <input id="lr" value="0.003"> old -->\n'
        "  <!--\n"
        '  <input id="batch" value="64">\n'
        "  -->\n"
        '  <input id="lr" value="0.0003">\n'
        '  <select id="opt"><!-- <option selected>sgd</option> --><option>adamw</option></select>\n'
        "</form>\n",
    )
    t = _table(page, "html")
    assert t == {"lr": (0.0003, "0.0003", 6), "opt": ("adamw", '"adamw"', 7)}


def test_html_commented_out_textarea_is_not_the_corpus(tmp_path: Path) -> None:
    """The corpus is the live ``<textarea>``, not an old one in a comment; its ``<!--`` is text."""
    page = _write(
        tmp_path,
        "index.html",
        "<body>\n"
        "<!-- old placeholder:\n"
        '<textarea id="corpus">Paste some text here.</textarea>\n'
        "-->\n"
        '<textarea id="corpus">ACT I\n<!-- not a comment here --></textarea>\n'
        "</body>\n",
    )
    found = [(e.key, e.value, e.line) for e in textareas(page)]
    assert found == [("corpus", "ACT I\n<!-- not a comment here -->", 5)]
