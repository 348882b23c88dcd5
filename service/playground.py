"""The playground: a self-contained page at ``GET /`` for trying the models in a browser.

Plain HTML, CSS and JavaScript from ``service/static/`` (package data), no build step and nothing
fetched from elsewhere, so it works offline and behind an air gap. The page talks to the public
API only (``/models``, ``/generate``, ``/grid``, ``/interpolate``); it has no private endpoints.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from starlette.responses import FileResponse

from service.errors import NotFound

STATIC_DIR = Path(__file__).parent / "static"
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


def build_router(static_dir: Path = STATIC_DIR) -> APIRouter:
    # The files are listed once: a request can only ever name one of them, never a path.
    files = {p.name: p for p in sorted(static_dir.iterdir()) if p.is_file() and p.suffix in MEDIA_TYPES}
    if INDEX not in files:
        raise RuntimeError(f"the playground's {INDEX} is missing from {static_dir}")
    router = APIRouter(include_in_schema=False)

    def send(name: str) -> FileResponse:
        path = files[name]
        return FileResponse(path, media_type=MEDIA_TYPES[path.suffix], headers=PAGE_HEADERS)

    @router.get("/")
    async def index() -> FileResponse:
        return send(INDEX)

    @router.get("/static/{name}")
    async def static(name: str) -> FileResponse:
        if name not in files:
            raise NotFound(f"no static file {name!r}")
        return send(name)

    return router
