"""The playground: a self-contained page at ``GET /`` for trying the models in a browser.

Plain HTML, CSS and JavaScript from ``service/static/`` (package data), no build step and nothing
fetched from elsewhere, so it works offline and behind an air gap. The page talks to the public
API only (``/models``, ``/generate``, ``/grid``, ``/interpolate``); it has no private endpoints.
"""

from __future__ import annotations

import functools
from pathlib import Path

from fastapi import APIRouter
from starlette.responses import FileResponse

from service.errors import NotFound

STATIC_DIR = Path(__file__).parent.parent / "static"
INDEX = "index.html"

# Same-origin only: proves (and enforces) that the page loads nothing from a CDN. Generated images
# are shown from blob: URLs.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' blob: data:; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Revalidate every time: a page served by a new release must not run last release's script.
    "Cache-Control": "no-cache",
}
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}


@functools.cache
def page_files() -> dict[str, Path]:
    """The files the page may load, listed once: a request can only ever name one, never a path."""
    files = {p.name: p for p in sorted(STATIC_DIR.iterdir()) if p.is_file() and p.suffix in MEDIA_TYPES}
    if INDEX not in files:
        raise RuntimeError(f"the playground's {INDEX} is missing from {STATIC_DIR}")
    return files


def _send(name: str) -> FileResponse:
    path = page_files()[name]
    return FileResponse(path, media_type=MEDIA_TYPES[path.suffix], headers=PAGE_HEADERS)


router = APIRouter(include_in_schema=False)


@router.get("/")
async def index() -> FileResponse:
    return _send(INDEX)


@router.get("/static/{name}")
async def static(name: str) -> FileResponse:
    if name not in page_files():
        raise NotFound(f"no static file {name!r}")
    return _send(name)
