"""The loopback HTTP server of the Chromium host: the JS driver files and registered artifacts.

Every response carries ``Cross-Origin-Opener-Policy: same-origin`` and
``Cross-Origin-Embedder-Policy: require-corp``, which makes the page ``crossOriginIsolated``:
that is what gives ``performance.now()`` its 5 us resolution in Chromium (100 us otherwise).
It binds 127.0.0.1 on an ephemeral port and serves nothing but the files it was given, plus,
after :meth:`PageServer.mount_site`, a project's built site directory at ``/`` (the corpus
check's page source, docs/profiles.md). ``PageServer(js_dir, isolated=False)`` leaves the
COOP/COEP/CORP headers out: a page without SharedArrayBuffer, the bad input a -pthread build
must meet as ``incompatible`` (tests/formats/test_formats_emscripten.py).
"""

from __future__ import annotations

import hashlib
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

MIME_TYPES = {
    ".mjs": "text/javascript; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".wasm": "application/wasm",
    ".txt": "text/plain; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
ISOLATION_HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
}
NO_CACHE = {"Cache-Control": "no-store"}


class PageServer:
    """Serves ``/js/<file>`` from one directory and ``/artifact/<token>.wasm`` per registration."""

    def __init__(self, js_dir: Path, *, isolated: bool = True) -> None:
        self.js_dir = js_dir
        self.headers = {**ISOLATION_HEADERS, **NO_CACHE} if isolated else dict(NO_CACHE)
        self._routes: dict[str, Path] = {
            f"/js/{p.name}": p for p in js_dir.iterdir() if p.suffix in MIME_TYPES
        }
        self._lock = threading.Lock()
        self._site: Path | None = None
        self._base = "/"
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="chromium-page-server", daemon=True
        )
        self._thread.start()

    @property
    def origin(self) -> str:
        """``http://127.0.0.1:<port>``."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def url(self, name: str) -> str:
        """URL of a file of the JS directory, e.g. ``page.html``."""
        route = f"/js/{name}"
        if route not in self._routes:
            raise FileNotFoundError(f"{self.js_dir / name} is not served")
        return self.origin + route

    def register(self, path: Path) -> str:
        """Serve the file at ``path`` (read at request time) and return its URL."""
        token = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
        route = f"/artifact/{token}{path.suffix or '.bin'}"
        with self._lock:
            self._routes[route] = path.resolve()
        return self.origin + route

    def mount_site(self, directory: Path, base: str = "/") -> str:
        """Serve every file under ``directory`` at ``base`` (a directory gives its index.html).

        ``base`` is the site's public path (a GitHub Pages build uses ``/<repo>/``). The site's
        files take precedence over the driver's routes. Returns the site's URL.
        """
        with self._lock:
            self._site = directory.resolve()
            self._base = "/" + base.strip("/") + "/" if base.strip("/") else "/"
        return self.origin + self._base

    def lookup(self, route: str) -> Path | None:
        """The file served at ``route``."""
        with self._lock:
            site = self._site
            if site is not None and (route + "/").startswith(self._base):
                candidate = (site / unquote(route[len(self._base) :]).lstrip("/")).resolve()
                if candidate.is_dir():
                    candidate = candidate / "index.html"
                # never outside the site: /../ cannot reach the rest of the disk
                if candidate.is_relative_to(site) and candidate.is_file():
                    return candidate
            return self._routes.get(route)

    def close(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = server.lookup(self.path.split("?", 1)[0])
                try:
                    body = path.read_bytes() if path is not None else None
                except OSError:
                    body = None
                if path is None or body is None:
                    self.send_error(HTTPStatus.NOT_FOUND)
                    return
                self.send_response(HTTPStatus.OK)
                self.send_header(
                    "Content-Type", MIME_TYPES.get(path.suffix, "application/octet-stream")
                )
                self.send_header("Content-Length", str(len(body)))
                for key, value in server.headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the harness's output is its progress, not an access log."""

        return Handler
