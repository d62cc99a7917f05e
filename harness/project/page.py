"""Read an element's value from a project's built site, as a visitor's browser has it.

The site directory is served on loopback by the Chromium host's page server
(:meth:`harness.hosts.page_server.PageServer.mount_site`) and the page opened in headless
Chromium (the host's launch). The element's value is read after the page's scripts ran and the
network went idle, then re-read until it stops changing, so text a ``fetch()`` puts into a
textarea is what is read. A page that throws, a page request that fails, or an element that is
not there is a :class:`PageReadError` whose message quotes the page's console.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from playwright.sync_api import ConsoleMessage, Response
from playwright.sync_api import Error as PlaywrightError

from harness.hosts.base import HostError
from harness.hosts.chromium import JS_DIR, ChromiumHost

_VALUE_JS = """(selector) => {
  const el = document.querySelector(selector);
  if (el === null) return null;
  return typeof el.value === "string" ? el.value : el.textContent;
}"""
__all__ = ["JS_DIR", "PageRead", "PageReadError", "read_element"]
SETTLE_S = 0.3  # the value must be unchanged across one such interval to count as settled


class PageReadError(Exception):
    """The page could not be read as a visitor gets it; the message quotes its console."""


@dataclass(frozen=True)
class PageRead:
    """The element's value and what the page logged on the way."""

    url: str
    value: str
    console: tuple[str, ...]


def _console_text(console: list[str]) -> str:
    return " | ".join(console[-10:]) if console else "(the console is empty)"


def read_element(
    site: Path, page: str, selector: str, timeout_s: float, base: str = "/"
) -> PageRead:
    """Serve ``site`` at ``base``, open ``page`` in headless Chromium, read the element."""
    host = ChromiumHost(v8_flags=())  # a visitor's browser: default V8 flags
    console: list[str] = []
    errors: list[str] = []
    bad: list[str] = []
    try:
        browser = host.browser()
        url = f"{host.server().mount_site(site, base)}{page.lstrip('/')}"
        context = browser.new_context()
        tab = context.new_page()

        def on_console(msg: ConsoleMessage) -> None:
            console.append(f"console.{msg.type}: {msg.text}")

        def on_error(exc: Exception) -> None:
            errors.append(str(exc))
            console.append(f"uncaught: {exc}")

        def on_response(resp: Response) -> None:
            if resp.status >= 400:
                bad.append(f"HTTP {resp.status} {resp.url}")

        tab.on("console", on_console)
        tab.on("pageerror", on_error)
        tab.on("response", on_response)
        tab.on("requestfailed", lambda req: bad.append(f"request failed: {req.url}"))
        response = tab.goto(url, wait_until="networkidle", timeout=timeout_s * 1000)
        if response is None or not response.ok:
            status = "no response" if response is None else f"HTTP {response.status}"
            raise PageReadError(
                f"the site {site} did not serve {page} ({status}); console: "
                f"{_console_text(console)}"
            )
        value = _settled_value(tab, selector, time.monotonic() + timeout_s, errors)
    except (PlaywrightError, HostError) as exc:
        message = getattr(exc, "message", str(exc))
        raise PageReadError(
            f"{page}: {message.splitlines()[0]}; console: {_console_text(console)}"
        ) from None
    finally:
        host.close()
    if errors:
        raise PageReadError(
            f"{page} threw while loading: {errors[0]}; console: {_console_text(console)}"
        )
    if value is None:
        raise PageReadError(
            f"{page} has no element {selector!r} after its scripts ran; console: "
            f"{_console_text(console)}"
        )
    if bad:
        console.extend(bad)  # a failed fetch explains a short value: quote it with the console
    return PageRead(url, value, tuple(console))


def _settled_value(tab: object, selector: str, deadline: float, errors: list[str]) -> str | None:
    """The element's value once it is non-empty and unchanged for SETTLE_S, or at the deadline,
    or as soon as the page has thrown (its value is then not what a visitor gets anyway)."""
    from playwright.sync_api import Page

    assert isinstance(tab, Page)
    last: str | None = tab.evaluate(_VALUE_JS, selector)
    while time.monotonic() < deadline and not errors:
        tab.wait_for_timeout(SETTLE_S * 1000)
        now: str | None = tab.evaluate(_VALUE_JS, selector)
        if now == last and now:
            return now
        last = now
    return last
