"""The Ray Serve peer's driver: a private Ray on this machine, the app deployed, stopped by PID.

``python -m bench.peers.ray_driver --model-dir exported/cdcgan-mnist --port 8002`` starts a
single-machine Ray of its own (``address="local"``, its own temp dir, no dashboard, internal
services on loopback), deploys :mod:`bench.peers.ray_serve` on ``--host``/``--port`` and serves
until SIGTERM/SIGINT; then it SIGKILLs Ray's processes by PID (its descendants) and removes the
temp dir. Every Ray process (GCS, raylet, agents, workers) also stays in the driver's process
group, so signalling that group (:class:`bench.servers.ServerProcess`) stops them all even when
the driver itself is killed first (a SIGTERM inside ``ray.init`` can wait up to 30 s for Ray's
GCS client before the driver sees it).

Ray reads much of its configuration from the environment once, at import: this module sets it,
then imports Ray (and the app, which imports Ray).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import secrets
import shutil
import signal
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import NoReturn

from bench.servers import LOOPBACK, process_tree

logger = logging.getLogger(__name__)

# Ray's object store is only a pass-through for small arrays here; its floor is 75 MiB.
OBJECT_STORE_BYTES = 128 * 1024 * 1024
RAY_ENV = {
    # Ray gives each worker a process group of its own; in the driver's, one killpg stops them all.
    "RAY_process_group_cleanup_enabled": "0",
    "RAY_USAGE_STATS_ENABLED": "0",  # no usage report (and no network attempt) from a bench run
    # Ray's single-machine mode (its default on macOS and Windows): its services on loopback, not
    # on the machine's address. (A replica's inter-deployment gRPC port still binds [::].)
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    # A SIGTERM during ray.init meets Ray's own handler: no node to drain traffic to, so no wait.
    "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
    # Token auth, Ray's default for a new local cluster; the token comes by environment (below),
    # so Ray writes no ~/.ray/auth_token.
    "RAY_AUTH_MODE": "token",
}


@dataclass(frozen=True)
class DriverConfig:
    model_dir: Path  # one exported model directory
    port: int
    temp_dir: Path  # Ray's session files; removed on exit
    host: str = LOOPBACK
    threads: int = 1  # ONNX Runtime intra-op threads, and Ray's CPU count
    max_batch_size: int = 64  # rows per session run
    max_wait_ms: float = 0.0  # batch window


def kill_ray_processes(driver_pid: int) -> list[int]:
    """SIGKILL the Ray processes under ``driver_pid``; returns their PIDs.

    Only those still in the driver's session: a PID reused since belongs to someone else. Ray's
    processes hold nothing worth a graceful stop, and ``ray.shutdown()`` waits seconds on a GCS
    that the process group's SIGTERM has already taken down.
    """
    session = os.getsid(driver_pid)
    killed = []
    for pid in process_tree(driver_pid)[1:]:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if os.getsid(pid) == session:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
    return killed


def exit_now(temp_dir: Path, code: int) -> NoReturn:
    """Kill Ray's processes, remove ``temp_dir`` and exit, skipping Ray's atexit ``ray.shutdown()``
    (it would wait on the processes just killed)."""
    kill_ray_processes(os.getpid())
    shutil.rmtree(temp_dir, ignore_errors=True)
    logging.shutdown()
    os._exit(code)


def _exit_on_signals(temp_dir: Path) -> None:
    def handler(signum: int, frame: FrameType | None) -> None:
        logger.warning("%s: stopping the Ray Serve peer", signal.Signals(signum).name)
        exit_now(temp_dir, 0)

    # Exiting from the handler, not raising: Ray's blocking calls (ray.get in serve.start) run the
    # handler in time but hold a raised exception until their own timeout.
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def serve_until_signalled(cfg: DriverConfig) -> NoReturn:
    """Start a private Ray, deploy, and serve until SIGTERM/SIGINT (then as :func:`exit_now`)."""
    os.environ.update(RAY_ENV, RAY_AUTH_TOKEN=secrets.token_hex(32))
    try:
        _exit_on_signals(cfg.temp_dir)
        import ray
        from ray import serve

        from bench.peers.ray_serve import APP_NAME, QUIET, Generator, PeerConfig

        ray.init(
            address="local",  # never join a cluster found on this machine
            num_cpus=cfg.threads,
            object_store_memory=OBJECT_STORE_BYTES,
            include_dashboard=False,
            _temp_dir=str(cfg.temp_dir),
            logging_level=logging.WARNING,
        )
        _exit_on_signals(cfg.temp_dir)  # again: ray.init installs its own SIGTERM handler
        serve.start(http_options={"host": cfg.host, "port": cfg.port}, logging_config=QUIET)
        app = PeerConfig(cfg.model_dir, cfg.threads, cfg.max_batch_size, cfg.max_wait_ms)
        replica = Generator.options(ray_actor_options={"num_cpus": cfg.threads})  # type: ignore[attr-defined]
        serve.run(replica.bind(app), name=APP_NAME, route_prefix="/")
        logger.warning("Ray Serve peer on http://%s:%d (pid %d)", cfg.host, cfg.port, os.getpid())
        while True:
            signal.pause()
    except BaseException:  # SystemExit too: nothing may leave Ray's processes running
        logger.exception("the Ray Serve peer failed")
        exit_now(cfg.temp_dir, 1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, required=True, help="one exported model directory")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    parser.add_argument("--max-batch-size", type=int, default=64, help="rows per session run")
    parser.add_argument("--max-wait-ms", type=float, default=0.0, help="batch window, ms")
    parser.add_argument("--host", default=LOOPBACK)
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--temp-dir", type=Path, default=None, help="Ray's session files (removed on exit)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    temp_dir = args.temp_dir or Path(tempfile.mkdtemp(prefix="condgen-ray-"))
    cfg = DriverConfig(
        model_dir=args.model_dir.resolve(),
        port=args.port,
        temp_dir=temp_dir.resolve(),
        host=args.host,
        threads=args.threads,
        max_batch_size=args.max_batch_size,
        max_wait_ms=args.max_wait_ms,
    )
    serve_until_signalled(cfg)


if __name__ == "__main__":
    main()
