"""The outermost middleware's accounting: every request counted once, with the status it earned."""

from __future__ import annotations

from typing import Any

import httpx

from service.app import create_app
from service.config import Settings
from tests.service.conftest import UNCOND


def _count(metrics: str, status: int) -> float:
    total = 0.0
    for line in metrics.splitlines():
        if line.startswith("condgen_requests_total{") and f'status="{status}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_a_client_that_hangs_up_mid_body_is_a_499_not_a_500(settings: Settings) -> None:
    app = create_app(settings)
    sent: list[dict[str, Any]] = []
    incoming = [
        {"type": "http.request", "body": b'{"model": "' + UNCOND.encode(), "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def receive() -> dict[str, Any]:
        return incoming.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/generate",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"100")],
    }
    async with app.router.lifespan_context(app):
        await app(scope, receive, send)
        assert sent == []  # nobody left to answer
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://condgen.test") as client:
            metrics = (await client.get("/metrics")).text
    assert _count(metrics, 499) == 1.0
    assert _count(metrics, 500) == 0.0
