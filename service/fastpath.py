"""The hot path: well-formed generation requests served without FastAPI's per-request machinery.

Under load at n=1, FastAPI's routing, dependency solving and body handling cost more CPU per
request than everything condgen itself does for it (see ``bench/results/RESULTS.md``, profile).
For ``POST`` to a generation endpoint with a JSON body, this middleware validates the body with
the endpoint's own pydantic model straight from bytes and calls the same serving function the
FastAPI routes call. A body that does not validate is answered from that one validation, in the
words of FastAPI's handler (``errors.invalid_body_response``), not validated again by FastAPI.
Everything else goes on to FastAPI untouched, the body replayed: other paths and methods, other
content types, and bodies that are not a JSON object (FastAPI's parser words those). The OpenAPI
schema and every other route keep one implementation, and ``tests/service/test_fastpath.py``
checks that both paths answer byte for byte alike.

It sits innermost among the middleware: request IDs, the access log, metrics, the API key and
the body limit apply to it exactly as to the routes.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from service.errors import ServiceError, answer_service_error, invalid_body_response, validation_message
from service.malloc import trim_heap
from service.middleware import replaying
from service.schemas import MAX_LIST_ITEMS

# Parsing costs up to ~0.1 ms per KiB on the event loop: bodies above this are validated one at a
# time, each after a turn of the loop, so a burst of them cannot hold it for all at once.
LARGE_BODY_BYTES = 64 * 1024
# The pause before each large body's validation: a burst of them leaves the loop free at least
# this long between two (a 2 MB body parses in ~10-20 ms).
LARGE_BODY_GAP_S = 0.01
# No request needs more arrays than its latents (MAX_LIST_ITEMS) and a few lists besides; parsing
# more would build a Python list for each (666k empty lists: ~0.2 s) before any cap could apply.
# The count includes brackets inside strings, which only label names could hold, and never do.
MAX_ARRAYS = MAX_LIST_ITEMS + 8
# Quiet time after the last large body before the heap is trimmed (service.malloc.trim_heap).
TRIM_AFTER_S = 0.5
_trims: set[asyncio.Future[None]] = set()  # strong references to running trims


async def _trim() -> None:
    with contextlib.suppress(RuntimeError):  # the executor already shut down: the process is ending
        await asyncio.to_thread(trim_heap)


def _trim_in_background() -> None:
    task = asyncio.ensure_future(_trim())
    _trims.add(task)
    task.add_done_callback(_trims.discard)


# (request, validated body) -> the response; the routes' own handler body.
Serve = Callable[[Request, Any], Awaitable[Response]]


@dataclass(frozen=True)
class FastRoute:
    body_model: type[BaseModel]
    serve: Serve


class _NamedModel(BaseModel):
    model: str | None = None


# A large body's model is read from its head: parsing all of it again would double its cost.
_LEADING_MODEL = re.compile(rb'\A\s*\{\s*"model"\s*:\s*"([A-Za-z0-9._-]{1,128})"')


def _named_model(body: bytes) -> str | None:
    """The body's ``model`` when it is a JSON object naming one (for the metrics), else None."""
    if len(body) > LARGE_BODY_BYTES:
        leading = _LEADING_MODEL.match(body[:256])
        return None if leading is None else leading.group(1).decode()
    try:
        return _NamedModel.model_validate_json(body).model
    except ValidationError:
        return None


def _is_json(scope: Scope) -> bool:
    for key, value in scope.get("headers", []):
        if key == b"content-type":
            media = value.split(b";", 1)[0].strip().lower()
            return media == b"application/json"
    return False


class GenerationFastPath:
    """Serve ``POST`` bodies that validate against ``routes[path].body_model``; pass the rest on."""

    def __init__(self, app: ASGIApp, routes: Mapping[str, FastRoute]) -> None:
        self.app = app
        self.routes = dict(routes)
        self._large = asyncio.Semaphore(1)
        self._trim: asyncio.TimerHandle | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self.routes.get(scope.get("path", "")) if scope["type"] == "http" else None
        if route is None or scope.get("method") != "POST" or not _is_json(scope):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # gone before its body arrived: nobody to answer
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if len(body) <= LARGE_BODY_BYTES:
            parsed = await self._validated(route, body, scope, receive, send)
        elif body.count(b"[") > MAX_ARRAYS:
            words = f"body: more than {MAX_ARRAYS} JSON arrays; no request of this service needs that many"
            await invalid_body_response(scope, scope["path"], words, None)(scope, receive, send)
            return
        else:
            async with self._large:
                await asyncio.sleep(LARGE_BODY_GAP_S)  # the loop is free for everything else meanwhile
                parsed = await self._validated(route, body, scope, receive, send)
            self._trim_later()
        if not isinstance(parsed, BaseModel):
            # The 422 is sent after the large-body slot is released: a client slow to read its
            # answer must not hold up the next large body.
            if parsed is not None:
                await parsed(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            response = await route.serve(request, parsed)
        except ServiceError as exc:
            response = answer_service_error("POST", scope["path"], exc)
        await response(scope, receive, send)

    def _trim_later(self) -> None:
        """Trim the heap once large bodies stop arriving: their parse trees are gone by then."""
        if self._trim is not None:
            self._trim.cancel()
        loop = asyncio.get_running_loop()
        self._trim = loop.call_later(TRIM_AFTER_S, _trim_in_background)

    async def _validated(
        self, route: FastRoute, body: bytes, scope: Scope, receive: Receive, send: Send
    ) -> BaseModel | Response | None:
        """The body as the route's model; else the 422 to send, or None once FastAPI has answered."""
        try:
            return route.body_model.model_validate_json(body)
        except ValidationError as exc:
            errors = exc.errors(include_url=False, include_context=True, include_input=False)
        if any(e["type"] == "json_invalid" or not e["loc"] for e in errors):
            # Not a JSON object: FastAPI's parser words it (JSON mode says it differently). Its
            # parse is the costly part, so it stays inside the caller's large-body slot.
            await self.app(scope, replaying(body, receive), send)
            return None
        # Validated once: the answer FastAPI would give, without parsing the body again.
        return invalid_body_response(scope, scope["path"], validation_message(errors), _named_model(body))
