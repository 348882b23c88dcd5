"""``python -m service`` as a real child process: start it, wait until it answers, read its logs.

For the tests that need what only a real process has: signals (SIGTERM drain, SIGHUP reload), its
resident memory under load, its log lines on stderr, uvicorn's sockets.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class ServiceProcess:
    proc: subprocess.Popen[bytes]
    url: str
    lines: list[str] = field(default_factory=list)  # stderr + stdout, as they arrive

    @property
    def pid(self) -> int:
        return self.proc.pid

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout_s: float) -> int:
        return self.proc.wait(timeout=timeout_s)

    def log(self) -> str:
        return "\n".join(self.lines)


def _pump(proc: subprocess.Popen[bytes], lines: list[str]) -> None:
    assert proc.stdout is not None
    for raw in proc.stdout:
        lines.append(raw.decode("utf-8", "replace").rstrip("\n"))


@contextmanager
def run_service(
    models_dir: Path, cwd: Path = REPO_ROOT, **env: str | float | int
) -> Iterator[ServiceProcess]:
    """Start ``python -m service`` on a free port with ``CONDGEN_<KEY>`` settings; stop it after.

    Yields once ``/healthz`` answers. On the way out the process gets SIGTERM, then SIGKILL if it
    has not exited within 15 s (a test that already stopped it is left alone).
    """
    port = free_port()
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("CONDGEN_")}
    child_env.update(
        {
            "CONDGEN_HOST": "127.0.0.1",
            "CONDGEN_PORT": str(port),
            "CONDGEN_MODELS_DIR": str(models_dir),
            "CONDGEN_INTRA_OP_THREADS": "1",
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": str(REPO_ROOT),  # importable from any working directory
        }
    )
    child_env.update({f"CONDGEN_{key.upper()}": str(value) for key, value in env.items()})
    proc = subprocess.Popen(
        [sys.executable, "-m", "service"],
        cwd=cwd,
        env=child_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    service = ServiceProcess(proc, f"http://127.0.0.1:{port}")
    pump = threading.Thread(target=_pump, args=(proc, service.lines), daemon=True)
    pump.start()
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"service exited early with {proc.returncode}:\n{service.log()}")
            try:
                if httpx.get(f"{service.url}/healthz", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"service did not come up:\n{service.log()}")
            time.sleep(0.05)
        yield service
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        pump.join(timeout=5)
