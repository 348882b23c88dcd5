"""The HTTP floor: what serving a request costs before condgen does anything with it.

``serve`` runs uvicorn exactly as ``python -m service`` configures it (uvloop, httptools with
condgen's connection limits, :class:`service.connections.OneWriteCycle`, no access log) around an
ASGI app that reads the body and answers a constant PNG-sized body with the headers a
``/generate`` answer has. ``measure`` starts that server pinned like the bench's servers, loads it
with the bench's own load generator (``POST /generate`` bodies, closed loop) and reports the
server's CPU microseconds per request from ``/proc``: the part of every cell's CPU that is the
event loop, the HTTP protocol, the ASGI hand-off and the kernel's socket work, which no change to
condgen's request path can remove.

``python -m bench.http_floor --concurrency 32 --duration 5``
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import uvicorn
from starlette.types import Message, Receive, Scope, Send

from bench.load import LoadSpec, run_load
from bench.servers import LOOPBACK, ServerProcess, ServerSpec, free_port
from service.config import Settings
from service.connections import ConnectionLimits, protocol_class

# A 28×28 PNG as condgen answers it, and the headers of that answer.
BODY = b"\x89PNG\r\n\x1a\n" + bytes(333)
START: Message = {
    "type": "http.response.start",
    "status": 200,
    "headers": [
        (b"x-model", b"floor"),
        (b"vary", b"accept"),
        (b"content-length", str(len(BODY)).encode()),
        (b"content-type", b"image/png"),
        (b"x-request-id", b"0" * 32),
    ],
}
BODY_MESSAGE: Message = {"type": "http.response.body", "body": BODY, "more_body": False}


async def constant_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Reads the request body, answers ``BODY``; ``/healthz`` is the same answer."""
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body", False):
        pass
    await send(START)
    await send(BODY_MESSAGE)


def serve(port: int) -> None:
    settings = Settings()
    uvicorn.run(
        constant_app,
        host=LOOPBACK,
        port=port,
        loop="auto",
        http=protocol_class(ConnectionLimits.from_settings(settings)),
        log_level="warning",
        access_log=False,
    )


def floor_spec(port: int) -> ServerSpec:
    """How the bench starts the constant-answer server."""
    return ServerSpec(
        name="http-floor",
        argv=[sys.executable, "-m", "bench.http_floor", "serve", "--port", str(port)],
        port=port,
        ready_path="/healthz",
    )


def measure(
    concurrency: int,
    duration_s: float,
    loadgen: str,
    log_dir: Path,
    server_cpus: str | None = None,
    client_cpus: str | None = None,
) -> dict[str, float]:
    spec = floor_spec(free_port())
    port = spec.port
    with ServerProcess(spec, server_cpus, log_dir).start() as server:
        server.wait_ready(timeout_s=60.0)
        warm_up = LoadSpec(port=port, model="floor", concurrency=concurrency, duration_s=1.0)
        run_load(warm_up, loadgen, client_cpus)
        load = LoadSpec(port=port, model="floor", concurrency=concurrency, duration_s=duration_s)
        cpu0 = server.cpu_seconds()
        result = run_load(load, loadgen, client_cpus)
        cpu = server.cpu_seconds() - cpu0
    requests = max(1, result.requests)
    return {
        "concurrency": concurrency,
        "requests_per_s": round(result.requests_per_s, 1),
        "cpu_us_per_request": round(cpu * 1e6 / requests, 1),
        "errors": float(result.error_count),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.http_floor", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    p = sub.add_parser("serve", help="run the constant-answer server (what measure starts)")
    p.add_argument("--port", type=int, required=True)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--loadgen", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument("--log-dir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")))
    from bench.run import default_cpus  # bench.run imports this module

    server_cpus, client_cpus = default_cpus()
    parser.add_argument("--server-cpus", default=server_cpus, help="'' for no pinning")
    parser.add_argument("--client-cpus", default=client_cpus)
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve(args.port)
        return
    floor = measure(
        args.concurrency,
        args.duration,
        args.loadgen,
        args.log_dir,
        args.server_cpus or None,
        args.client_cpus or None,
    )
    print(json.dumps(floor))


if __name__ == "__main__":
    main()
