"""Headless Chromium for the page tests: the system browser, driven by Playwright, network held to the
service.

Needs Debian's ``chromium`` (or ``CONDGEN_CHROMIUM=/path/to/chrome``) and the ``playwright``
package from the test extra; Playwright's own browser download is never used. A test fails, with
the install line, when Chromium is missing; ``CONDGEN_SKIP_BROWSER=1`` skips it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

TIMEOUT_MS = 10_000
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Same-origin schemes a page may load from without leaving the service.
LOCAL_SCHEMES = ("blob:", "data:", "about:")


def chromium_executable() -> str:
    if os.environ.get("CONDGEN_SKIP_BROWSER") == "1":
        pytest.skip("CONDGEN_SKIP_BROWSER=1")
    path = os.environ.get("CONDGEN_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path or not Path(path).exists():
        pytest.fail(
            "the browser tests need Chromium: `apt-get install -y chromium` (Debian), or set "
            "CONDGEN_CHROMIUM to a Chrome/Chromium binary; CONDGEN_SKIP_BROWSER=1 skips them",
            pytrace=False,
        )
    return path


@contextmanager
def launched() -> Iterator[Any]:
    executable = chromium_executable()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@contextmanager
def offline_page(
    browser: Any,
    base_url: str,
    expected_statuses: tuple[int, ...] = (),
    viewport: tuple[int, int] = (1400, 1000),
) -> Iterator[Any]:
    """A page in a fresh, empty profile, cut off from every host but the service's.

    Requests to anywhere else are aborted (as an air gap would) and fail the test, as do script
    errors and console errors other than failed fetches with an expected status.
    """
    width, height = viewport
    context = browser.new_context(viewport={"width": width, "height": height}, base_url=base_url)
    context.set_default_timeout(TIMEOUT_MS)
    problems: list[str] = []

    def gate(route: Any) -> None:
        url = route.request.url
        if url.startswith((base_url + "/", *LOCAL_SCHEMES)) or url == base_url:
            route.continue_()
        else:
            problems.append(f"off-origin request: {url}")
            route.abort("blockedbyclient")

    context.route("**/*", gate)
    page = context.new_page()
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on(
        "console",
        lambda msg: problems.append(f"console {msg.type}: {msg.text}") if msg.type == "error" else None,
    )
    # Also what never reaches the router (a worker's fetches, say).
    page.on(
        "request",
        lambda req: (
            None
            if req.url.startswith((base_url, *LOCAL_SCHEMES))
            else problems.append(f"off-origin request: {req.url}")
        ),
    )
    try:
        yield page
    finally:
        context.close()
    # Chromium logs every fetch answered with an error status; the expected ones are not problems.
    unexpected = [p for p in problems if not any(f"status of {s}" in p for s in expected_statuses)]
    assert not unexpected, unexpected
