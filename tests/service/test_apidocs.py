"""``/docs`` and ``/redoc`` from the package's vendored assets: served, and rendered by headless
Chromium with every other host cut off."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.routes.apidocs import ASSETS, VENDOR_DIR
from tests.service.browser import launched, offline_page
from tests.service.conftest import GRAY
from tests.service.live import live_zoo


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.refs += [v for k, v in attrs if k in {"src", "href", "spec-url"} and v is not None]


@pytest.mark.parametrize("page_path", ["/docs", "/redoc"])
async def test_pages_reference_only_the_service(client: httpx.AsyncClient, page_path: str) -> None:
    page = await client.get(page_path)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp
    assert "connect-src 'self'" in csp
    assert not re.search(r"https?://", page.text), "no URL of another host in the page"
    parser = _Refs()
    parser.feed(page.text)
    assert len(parser.refs) >= 2
    for ref in parser.refs:
        assert ref.startswith("/"), ref
        asset = await client.get(ref)
        assert asset.status_code == 200, ref
    assert "/openapi.json" in parser.refs or "'/openapi.json'" in page.text


async def test_vendored_files_are_served_by_name_only(client: httpx.AsyncClient) -> None:
    js = await client.get("/static/vendor/redoc/redoc.standalone.js")
    assert js.status_code == 200
    assert js.headers["content-type"] == "text/javascript; charset=utf-8"
    assert js.content == (VENDOR_DIR / "redoc" / "redoc.standalone.js").read_bytes()
    css = await client.get("/static/vendor/swagger-ui/swagger-ui.css")
    assert css.headers["content-type"] == "text/css; charset=utf-8"
    # The licences ship with the package but are not what the pages load; nothing else is served.
    for path in ("/static/vendor/redoc/LICENSE", "/static/vendor/..%2Fplayground.js/x", "/static/vendor/a/b"):
        missing = await client.get(path)
        assert missing.status_code == 404, path
        assert missing.json()["error"]["type"] == "not_found"


def test_every_vendored_package_carries_its_licence() -> None:
    for package, names in ASSETS.items():
        folder = VENDOR_DIR / package
        assert (folder / "LICENSE").is_file(), package
        for name in names:
            assert (folder / name).stat().st_size > 10_000, name
    listed = (VENDOR_DIR / "README.md").read_text(encoding="utf-8")
    assert "swagger-ui-dist@" in listed
    assert "redoc@" in listed


# --------------------------------------------------------------------------- in a real browser
@pytest.fixture(scope="module")
def server_url(zoo: Path) -> Iterator[str]:
    with live_zoo(zoo) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with launched() as chromium:
        yield chromium


def test_swagger_ui_renders_offline_and_tries_a_request(browser: Any, server_url: str) -> None:
    with offline_page(browser, server_url) as page:
        page.goto("/docs")
        page.locator(".swagger-ui .info .title").wait_for()
        assert "condgen" in page.locator(".swagger-ui .info .title").inner_text()
        operation = page.locator("#operations-generate-generate_generate_post")
        operation.wait_for()
        assert page.locator(".opblock").count() >= 15
        # "Try it out" with the tiny zoo's model: the request goes to this service and its PNG shows.
        operation.locator(".opblock-summary").click()
        operation.locator(".try-out__btn").click()
        operation.locator("textarea.body-param__text").fill(
            f'{{"model": "{GRAY}", "label": 3, "seed": 7, "n": 4}}'
        )
        operation.locator(".execute").click()
        status = operation.locator(".live-responses-table tr.response td.response-col_status")
        status.first.wait_for()
        assert status.first.inner_text().strip() == "200"
        operation.locator(".live-responses-table img").wait_for()


def test_redoc_renders_offline(browser: Any, server_url: str) -> None:
    with offline_page(browser, server_url) as page:
        page.goto("/redoc")
        title = page.locator(".api-info h1")
        title.wait_for()
        assert "condgen" in title.inner_text()
        # The operations' menu and the request schema of /generate, rendered from /openapi.json.
        page.locator("h2", has_text="Generate images for a label and seed").first.wait_for()
        assert page.locator("[data-section-id^='tag/generate']").count() >= 1


def test_redoc_bundle_names_no_asset_of_another_host() -> None:
    """The vendored ReDoc has its one CDN image (Redocly's logo) removed; see vendor/README.md."""
    bundle = (VENDOR_DIR / "redoc" / "redoc.standalone.js").read_text(encoding="utf-8")
    assert "cdn.redoc.ly" not in bundle
    assert "fonts.googleapis.com" not in bundle
