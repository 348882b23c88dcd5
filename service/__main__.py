"""``python -m service``: serve the model repository with uvicorn.

One worker process on purpose: each model's batcher and ONNX session live in this process, and
several workers would each hold their own copies and split the traffic that batching wants to
merge. Scale out with replicas behind a load balancer instead.

Signals: SIGTERM (or Ctrl-C) drains: readiness fails and new requests get 503 at once, requests in
flight finish, and the process exits within ``drain_timeout_s``; a second signal exits at once.
SIGHUP reloads the model repository.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import signal
import threading
import time
from pathlib import Path
from types import FrameType

import uvicorn
from fastapi import FastAPI

from service.app import create_app
from service.config import Settings
from service.connections import ConnectionLimits, connection_cap, protocol_class, raise_fd_limit
from service.logs import configure_logging

logger = logging.getLogger("service")

# After the grace period, how long the 503s of failed requests get to be written, seconds.
_CUT_WRITE_S = 0.3
_stopping: set[asyncio.Future[None]] = set()  # strong references to the batchers' stop tasks


def parse_args(argv: list[str] | None = None, prog: str = "python -m service") -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Serve condgen models over HTTP. Every option also reads a CONDGEN_* env var.",
    )
    parser.add_argument("--host", help="bind address (CONDGEN_HOST)")
    parser.add_argument("--port", type=int, help="port (CONDGEN_PORT)")
    parser.add_argument("--models", type=Path, help="model repository directory (CONDGEN_MODELS_DIR)")
    parser.add_argument(
        "--log-level",
        choices=["critical", "error", "warning", "info", "debug"],
        help="log level (CONDGEN_LOG_LEVEL)",
    )
    parser.add_argument(
        "--log-format",
        choices=["auto", "json", "text"],
        help="log lines: text on a terminal and JSON otherwise by default (CONDGEN_LOG_FORMAT)",
    )
    return parser.parse_args(argv)


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Environment first, command-line flags on top."""
    overrides = {
        key: value
        for key, value in {
            "host": args.host,
            "port": args.port,
            "models_dir": args.models,
            "log_level": args.log_level,
            "log_format": args.log_format,
        }.items()
        if value is not None
    }
    return Settings(**overrides)


class DrainingServer(uvicorn.Server):
    """uvicorn, but SIGTERM drains before the listener closes.

    uvicorn's own shutdown closes the listening socket first, so a load balancer that has not yet
    seen the readiness probe fail sends new connections into a refused port. Here the first signal
    only flags the app as draining (``/readyz`` 503, new requests 503 ``shutting_down`` with
    Retry-After); uvicorn's shutdown starts once no request is in flight or the grace period is
    over, and gets what is left of it.
    """

    def __init__(self, config: uvicorn.Config, app: FastAPI, grace_s: float) -> None:
        super().__init__(config)
        self.app = app
        self.grace_s = grace_s
        self.drain_deadline: float | None = None
        self.cut_at: float | None = None  # when the grace ran out and queued work was failed
        self.drain_signal: str | None = None  # to be logged on the next tick

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        resources = getattr(self.app.state, "resources", None)
        if self.drain_deadline is not None or resources is None or self.should_exit:
            super().handle_exit(sig, frame)  # second signal, or not started yet: stop now
            if self.drain_deadline is not None:
                self.force_exit = True
            return
        self._captured_signals.append(sig)  # re-raised after shutdown, as uvicorn does
        # The last second of the grace period is kept for closing connections and the lifespan.
        self.drain_deadline = time.monotonic() + max(0.0, self.grace_s - 1.0)
        # Plain attribute writes: safe from a signal handler; the event loop reads them (and logs:
        # logging from inside a signal handler could interleave with a line being written).
        resources.begin_drain()
        self.drain_signal = signal.Signals(sig).name

    async def on_tick(self, counter: int) -> bool:
        if self.drain_deadline is not None and not self.should_exit:
            if self.drain_signal is not None:
                logger.info(
                    "signal %s: draining (readiness fails, new requests get 503) for at most %.1f s",
                    self.drain_signal,
                    self.grace_s,
                )
                self.drain_signal = None
            now = time.monotonic()
            left = self.drain_deadline - now
            if left <= 0 and self.cut_at is None and self.app.state.inflight.count:
                # Out of time: what is still queued gets its 503 (shutting_down, Retry-After)
                # now, while the connections are open, rather than a dropped connection later.
                self.cut_at = now
                resources = self.app.state.resources
                logger.warning(
                    "drain: grace period over with %d request(s) in flight; failing them",
                    self.app.state.inflight.count,
                )
                for batcher in list(resources.batchers.values()):
                    _stopping.add(asyncio.ensure_future(batcher.stop(0.0)))
            cut_over = self.cut_at is not None and now - self.cut_at > _CUT_WRITE_S
            if self.app.state.inflight.count == 0 or cut_over:
                # uvicorn's own wait for connections gets what is left of the grace period (at
                # least the second kept for it); past it, requests still running are cancelled.
                self.config.timeout_graceful_shutdown = max(1, math.ceil(left))
                self.should_exit = True
        return await super().on_tick(counter)


def main(argv: list[str] | None = None, prog: str = "python -m service") -> None:
    settings = settings_from_args(parse_args(argv, prog))
    configure_logging(settings.log_level, settings.log_format)
    app = create_app(settings, handle_sighup=True)
    fd_limit = raise_fd_limit()
    max_connections = connection_cap(settings.max_connections, fd_limit)
    if max_connections < settings.max_connections:
        logger.warning(
            "max_connections lowered from %d to %d: the limit on open files is %d",
            settings.max_connections,
            max_connections,
            fd_limit,
        )
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        workers=1,
        loop="auto",  # uvloop when installed
        # httptools with deadlines, head limits and a connection cap (service/connections.py)
        http=protocol_class(ConnectionLimits.from_settings(settings, max_connections)),
        log_level=settings.log_level,
        log_config=None,  # configure_logging above: JSON lines for uvicorn's loggers too
        access_log=False,  # service.access writes one line per request, with its request ID
        timeout_graceful_shutdown=max(1, int(settings.drain_timeout_s)),
    )
    try:
        DrainingServer(config, app, settings.drain_timeout_s).run()
    except KeyboardInterrupt:
        pass  # Ctrl-C: uvicorn re-raises the SIGINT it handled once shutdown is complete
    finally:
        # A session run that hung and could not be aborted keeps its worker thread, and Python
        # joins worker threads at exit: that would turn the bounded drain into a hang.
        deadline = time.monotonic() + 1.0  # idle workers of stopped batchers exit in microseconds
        stuck = []
        for thread in threading.enumerate():
            if thread.name.startswith("condgen-"):
                thread.join(timeout=max(0.0, deadline - time.monotonic()))
                if thread.is_alive():
                    stuck.append(thread.name)
        if stuck:
            logger.error("exiting with session runs still stuck on %s", ", ".join(stuck))
            logging.shutdown()
            os._exit(1)


if __name__ == "__main__":
    main()
