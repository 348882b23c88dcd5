"""The API reference pages: Swagger UI at ``/docs`` and ReDoc at ``/redoc``, served from the package.

Their scripts and stylesheets are vendored in ``service/static/vendor/`` (npm's ``swagger-ui-dist``
and ``redoc``, with their licences; versions and checksums in ``vendor/README.md``), so the pages
work offline and behind an air gap. Their Content-Security-Policy lets them load nothing from
another origin.
"""

from __future__ import annotations

import functools
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from starlette.responses import FileResponse, HTMLResponse

from service.errors import NotFound
from service.routes.playground import STATIC_DIR

VENDOR_DIR = STATIC_DIR / "vendor"
VENDOR_URL = "/static/vendor"
FAVICON_URL = "/static/favicon.svg"
# What the pages load, by package: the only vendored files served (the licences ship in the wheel).
ASSETS: dict[str, tuple[str, ...]] = {
    "swagger-ui": ("swagger-ui-bundle.js", "swagger-ui.css"),
    "redoc": ("redoc.standalone.js",),
}
MEDIA_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}

# Same origin only. Both pages start from an inline script or style (FastAPI's page templates),
# ReDoc's search runs in a blob: worker, and Swagger UI shows image responses from blob: URLs.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' blob: data:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Revalidate every time: a release's page must not run the previous release's assets.
    "Cache-Control": "no-cache",
}
# Swagger UI's defaults, less the online validator (it would send the schema to another host).
SWAGGER_UI_PARAMETERS = {"validatorUrl": None}


@functools.cache
def vendor_files() -> dict[tuple[str, str], Path]:
    """The vendored assets, checked once: a release without them fails at start-up, not on a visit."""
    files = {
        (package, name): VENDOR_DIR / package / name for package, names in ASSETS.items() for name in names
    }
    missing = sorted(str(path) for path in files.values() if not path.is_file())
    if missing:
        raise RuntimeError(f"the API docs' vendored assets are missing: {', '.join(missing)}")
    return files


def asset_url(package: str, name: str) -> str:
    return f"{VENDOR_URL}/{package}/{name}"


router = APIRouter(include_in_schema=False)


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    page = get_swagger_ui_html(
        openapi_url=request.app.openapi_url,
        title=f"{request.app.title} API",
        swagger_js_url=asset_url("swagger-ui", "swagger-ui-bundle.js"),
        swagger_css_url=asset_url("swagger-ui", "swagger-ui.css"),
        swagger_favicon_url=FAVICON_URL,
        swagger_ui_parameters=SWAGGER_UI_PARAMETERS,
    )
    page.headers.update(PAGE_HEADERS)
    return page


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    page = get_redoc_html(
        openapi_url=request.app.openapi_url,
        title=f"{request.app.title} API",
        redoc_js_url=asset_url("redoc", "redoc.standalone.js"),
        redoc_favicon_url=FAVICON_URL,
        with_google_fonts=False,
    )
    page.headers.update(PAGE_HEADERS)
    return page


@router.get(VENDOR_URL + "/{package}/{name}")
async def vendored(package: str, name: str) -> FileResponse:
    path = vendor_files().get((package, name))
    if path is None:
        raise NotFound(f"no static file {package}/{name}")
    return FileResponse(path, media_type=MEDIA_TYPES[path.suffix], headers=PAGE_HEADERS)
