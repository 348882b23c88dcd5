"""A real uvicorn server on a free loopback port, run on a background thread.

For clients that block (tritonclient over gevent, Playwright's sync API): they cannot share the
test's event loop, so the server gets a loop of its own.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from service.app import create_app
from service.config import Settings
from tests.service.conftest import make_settings

START_TIMEOUT_S = 15.0


@contextmanager
def threaded_server(settings: Settings, port: int = 0) -> Iterator[str]:
    """Serve ``create_app(settings)`` (on a free port by default); yields the base URL, e.g.
    ``http://127.0.0.1:41234``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(settings), log_level="warning", lifespan="on"))
    failure: list[BaseException] = []

    def serve() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as exc:  # reported to the test below, not lost on the thread
            failure.append(exc)

    thread = threading.Thread(target=serve, name="uvicorn-test", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not server.started:
            if failure or not thread.is_alive():
                raise RuntimeError(f"the test server did not start: {failure!r}")
            if time.monotonic() > deadline:
                raise RuntimeError("the test server did not start in time")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(START_TIMEOUT_S)
        sock.close()


@contextmanager
def live_zoo(zoo: Path, **overrides: Any) -> Iterator[str]:
    """The fixture zoo behind a real server, configured like the in-process tests' apps."""
    with pytest.MonkeyPatch.context() as mp:
        # Module-scoped servers start before the per-test environment scrub: do it here too.
        for key in [k for k in os.environ if k.startswith("CONDGEN_")]:
            mp.delenv(key)
        settings = make_settings(zoo, **overrides)
    with threaded_server(settings) as url:
        yield url
