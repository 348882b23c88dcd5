"""``python -m service``: serve the model repository with uvicorn.

One worker process on purpose: each model's batcher and ONNX session live in this process, and
several workers would each hold their own copies and split the traffic that batching wants to
merge. Scale out with replicas behind a load balancer instead.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import uvicorn

from service.app import create_app
from service.config import Settings

logger = logging.getLogger("service")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m service",
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
        }.items()
        if value is not None
    }
    return Settings(**overrides)


def main(argv: list[str] | None = None) -> None:
    settings = settings_from_args(parse_args(argv))
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    app = create_app(settings)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        workers=1,
        loop="auto",  # uvloop when installed
        http="auto",  # httptools when installed
        log_level=settings.log_level,
        # Give in-flight requests time to finish on SIGTERM; the lifespan then drains the queues.
        timeout_graceful_shutdown=max(1, int(settings.drain_timeout_s)),
    )


if __name__ == "__main__":
    main()
