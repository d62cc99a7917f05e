"""``check corpus``: the corpus the UI trains on, read from the source and from the served page."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli import main
from harness.profile import load_profile
from harness.project import corpus
from harness.project.outcome import Outcome
from reference.corpus import load_corpus

pytestmark = pytest.mark.chromium


def _outcomes(project: Path) -> dict[str, Outcome]:
    return {o.subject: o for o in corpus.check(load_profile(project / "harness.toml"))}


def test_drifted_textarea_fails_at_file_line_with_its_size(
    drifted: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The 863-byte placeholder fails in the source (file:line, size) and as served; exit 1."""
    assert main(["check", "corpus", "--project", str(drifted)]) == 1
    out = capsys.readouterr().out
    src = next(line for line in out.splitlines() if "source[0]:textarea:contract:bytes" in line)
    assert "browser/src/pages/index.astro:16" in src and "found 863 bytes" in src
    page = next(line for line in out.splitlines() if "source[1]:page:contract:bytes" in line)
    assert "fail" in page and "dist/index.html:13" in page and "863 bytes" in page


def test_fixed_page_is_checked_after_its_fetch(fixed: Path) -> None:
    """main.js fetches /corpus.txt into the empty textarea: the page source reads all of it."""
    got = _outcomes(fixed)
    assert got["source[0]:textarea"].status == "skipped"  # empty in the source, listed as such
    size = (fixed / "dist" / "corpus.txt").stat().st_size
    assert got["source[1]:page:contract:bytes"].status == "pass"
    assert f"{size:,} bytes" in got["source[1]:page:contract:bytes"].detail
    assert {o.status for k, o in got.items() if k.startswith("source[1]")} == {"pass"}


def test_a_failed_fetch_leaves_the_page_short(fixed: Path) -> None:
    """The page fetches a file the site lacks: the value is the 404 body, it fails, and the
    failure names the 404 that explains it."""
    (fixed / "dist" / "corpus.txt").unlink()
    got = _outcomes(fixed)
    short = got["source[1]:page:contract:bytes"]
    assert short.status == "fail" and "404" in short.detail and "corpus.txt" in short.detail


def test_a_page_that_throws_is_an_error_quoting_its_console(fixed: Path) -> None:
    """An uncaught exception in the page's script: error, with the console quoted."""
    main_js = fixed / "dist" / "assets" / "main.js"
    main_js.write_text(
        'console.log("booting browser-gpt");\n'
        'throw new Error("WebGPU adapter not found");\n' + main_js.read_text()
    )
    got = _outcomes(fixed)
    err = got["source[1]:page"]
    assert err.status == "error"
    assert "WebGPU adapter not found" in err.detail
    assert "console.log: booting browser-gpt" in err.detail


def test_a_site_that_does_not_serve_the_page_is_an_error(fixed: Path) -> None:
    """The page named is not in the built site: error naming the HTTP status."""
    (fixed / "dist" / "index.html").unlink()
    err = _outcomes(fixed)["source[1]:page"]
    assert err.status == "error" and "HTTP 404" in err.detail


def test_a_site_directory_not_built_is_that_sources_error(fixed: Path) -> None:
    """A site directory that does not exist (not built yet) is no bad profile: the profile
    loads (so the other checks run), and that source's outcome is an error naming the
    profile's line and saying to build the site; the textarea source is judged as ever."""
    text = (fixed / "harness.toml").read_text().replace('site = "dist"', 'site = "build"')
    (fixed / "harness.toml").write_text(text)
    profile = load_profile(fixed / "harness.toml")
    errors = [o for o in corpus.check(profile) if o.status == "error"]
    assert [o.subject for o in errors] == ["source[1]:page"]
    line = next(i for i, s in enumerate(text.splitlines(), 1) if s == 'kind = "page"') - 1
    assert f"harness.toml:{line}: site directory 'build' not found" in errors[0].detail
    assert "build the site first" in errors[0].detail


@pytest.mark.corpus
def test_the_fetched_real_corpus_passes_a_real_contract(fixed: Path) -> None:
    """The default 1.16 MB Shakespeare corpus fetched by the page passes a play's contract."""
    (fixed / "dist" / "corpus.txt").write_text(load_corpus(None), encoding="utf-8")
    profile = fixed / "harness.toml"
    text = profile.read_text()
    text = text.replace("bytes = [20_000, 2_000_000]", "bytes = [1_000_000, 2_000_000]")
    text = text.replace("min_speaker_cues = 100", "min_speaker_cues = 1000")
    text = text.replace("min_lines = 500", "min_lines = 10_000")
    profile.write_text(text)
    got = _outcomes(fixed)
    page = {k: o for k, o in got.items() if k.startswith("source[1]")}
    assert {o.status for o in page.values()} == {"pass"}, page
    assert "1,158,240 bytes" in page["source[1]:page:contract:bytes"].detail


def test_mounted_site_serves_its_files_and_nothing_outside(tmp_path: Path) -> None:
    """The page server serves the site at / (index.html for a directory), never ../ beyond it."""
    import http.client

    from harness.hosts.page_server import PageServer
    from harness.project.page import JS_DIR

    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("<p>hi</p>")
    (tmp_path / "secret.txt").write_text("no")
    server = PageServer(JS_DIR)
    try:
        server.mount_site(site)
        host, port = server.origin.removeprefix("http://").split(":")

        def get(route: str) -> tuple[int, bytes]:
            conn = http.client.HTTPConnection(host, int(port), timeout=10)
            conn.request("GET", route)
            resp = conn.getresponse()
            return resp.status, resp.read()

        assert get("/") == (200, b"<p>hi</p>")
        assert get("/../secret.txt")[0] == 404
        assert get("/%2e%2e/secret.txt")[0] == 404
    finally:
        server.close()


def test_a_site_built_for_a_base_path(fixed: Path) -> None:
    """A GitHub Pages build (base "/browser-gpt/"): served there, its fetch still lands."""
    dist = fixed / "dist"
    html = dist / "index.html"
    html.write_text(html.read_text().replace('src="/assets/', 'src="/browser-gpt/assets/'))
    js = dist / "assets" / "main.js"
    js.write_text(
        js.read_text().replace('fetch("/corpus.txt")', 'fetch("/browser-gpt/corpus.txt")')
    )
    profile = fixed / "harness.toml"
    profile.write_text(
        profile.read_text().replace(
            'selector = "#corpus"', 'selector = "#corpus"\nbase = "/browser-gpt/"'
        )
    )
    got = _outcomes(fixed)
    assert got["source[1]:page:contract:bytes"].status == "pass"
    assert "/browser-gpt/index.html" in got["source[1]:page:contract:bytes"].detail


def test_fixture_corpus_is_the_generators() -> None:
    """The fixture's corpus.txt is generated text (tests/project/play_text.py), byte for byte."""
    from tests.project.conftest import FIXTURE
    from tests.project.play_text import generate

    assert (FIXTURE / "fixed" / "dist" / "corpus.txt").read_text() == generate()
