"""Servers under test as subprocesses: free loopback ports, CPU pinning, readiness, memory, teardown.

Each server runs in its own session (process group), pinned with ``taskset`` when CPUs are given,
and is stopped by signalling that group (SIGTERM, then SIGKILL after a grace period), so a server
that forks workers (BentoML) leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from bench.load import pin_prefix

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
REPO_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    task_dir = Path(f"/proc/{pid}/task")
    with contextlib.suppress(OSError):
        for task in task_dir.iterdir():
            with contextlib.suppress(OSError):
                kids.extend(int(p) for p in (task / "children").read_text().split())
    return kids


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (Linux /proc)."""
    seen: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.append(p)
        todo.extend(_children(p))
    return seen


def _status_kb(pid: int, key: str) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid: int, tree: bool = True) -> float:
    """User + system CPU time of ``pid`` (and its descendants), seconds, from /proc/<pid>/stat.

    CPU time per request is the efficiency number least disturbed by other load on the machine:
    a busy neighbour stretches wall time and latency, not the CPU a request costs.
    """
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in process_tree(pid) if tree else [pid]:
        with contextlib.suppress(OSError, IndexError, ValueError):
            # Fields after the command name (which may hold spaces) start at index 2 (state).
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def rss_mb(pid: int, tree: bool = False) -> float:
    """Resident memory (VmRSS) of ``pid``, or summed over its process tree, in MiB."""
    pids = process_tree(pid) if tree else [pid]
    return round(sum(_status_kb(p, "VmRSS") for p in pids) / 1024.0, 1)


def peak_rss_mb(pid: int) -> float:
    """High-water mark of resident memory (VmHWM) of one process, MiB."""
    return round(_status_kb(pid, "VmHWM") / 1024.0, 1)


@dataclass
class ServerSpec:
    """How to start one server: argv (without pinning), environment additions, readiness path."""

    name: str  # condgen | bentoml | torch | ray
    argv: list[str]
    port: int
    ready_path: str
    env: dict[str, str] = field(default_factory=dict)
    note: str = ""  # e.g. which weights the torch peer used
    # Working directory: ``python -m`` puts it first on sys.path, ahead of PYTHONPATH.
    cwd: Path = REPO_ROOT

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"


class ServerProcess:
    """A running server; a context manager that always stops it."""

    def __init__(self, spec: ServerSpec, cpus: str | None, log_dir: Path) -> None:
        self.spec = spec
        self.cpus = cpus
        self.log_path = log_dir / f"{spec.name}-{spec.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.spawned_at = 0.0
        self.ready_s: float | None = None
        self.ready_body: Any = None  # the readiness answer's JSON, when it was JSON

    def start(self) -> ServerProcess:
        env = {**os.environ, **self.spec.env, "PYTHONUNBUFFERED": "1"}
        # The repository root on the path: bench.* and service.* import from a plain checkout. A
        # spec's own PYTHONPATH (a patched copy of service/, for an A/B run) goes before it.
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [self.spec.env.get("PYTHONPATH"), str(REPO_ROOT), os.environ.get("PYTHONPATH")])
        )
        log = self.log_path.open("wb")
        self.spawned_at = time.perf_counter()
        self.proc = subprocess.Popen(
            [*pin_prefix(self.cpus), *self.spec.argv],
            cwd=self.spec.cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() reaches every worker
        )
        log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def wait_ready(self, timeout_s: float = 120.0, poll_s: float = 0.01) -> float:
        """Poll the readiness path until 200; returns seconds since spawn (the cold start)."""
        assert self.proc is not None
        deadline = time.perf_counter() + timeout_s
        url = self.spec.base_url + self.spec.ready_path
        with httpx.Client(timeout=5.0) as client:
            while time.perf_counter() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"{self.spec.name} exited with {self.proc.returncode} before it was ready; "
                        f"log: {self.log_tail()}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    response = client.get(url)
                    if response.status_code == 200:
                        self.ready_s = time.perf_counter() - self.spawned_at
                        with contextlib.suppress(ValueError):
                            self.ready_body = response.json()
                        return self.ready_s
                time.sleep(poll_s)
        raise TimeoutError(f"{self.spec.name} not ready within {timeout_s:.0f} s; log: {self.log_tail()}")

    def log_tail(self, chars: int = 1500) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-chars:]
        return ""

    def rss_mb(self) -> float:
        return rss_mb(self.pid, tree=True)

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid, tree=True)

    def stop(self, grace_s: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)
        # Workers of a server that died first may outlive it in the group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def __enter__(self) -> ServerProcess:
        return self.start() if self.proc is None else self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def check_png(base_url: str, model: str, label: int | None = 3, seed: int = 7, n: int = 4) -> str:
    """One request (no label: an unconditional model); raises unless it is a 200 PNG. Returns the
    body's sha256 (to compare servers)."""
    body: dict[str, Any] = {"model": model, "seed": seed, "n": n}
    if label is not None:
        body["label"] = label
    response = httpx.post(base_url + "/generate", json=body, headers={"Accept": "image/png"}, timeout=30.0)
    if response.status_code != 200:
        raise RuntimeError(f"{base_url}: /generate answered {response.status_code}: {response.text[:300]}")
    ctype = response.headers.get("content-type", "")
    if not ctype.startswith("image/png") or not response.content.startswith(PNG_SIGNATURE):
        raise RuntimeError(f"{base_url}: /generate did not answer a PNG (content-type {ctype!r})")
    return hashlib.sha256(response.content).hexdigest()


# --------------------------------------------------------------------------- the three servers
def condgen_spec(
    models_dir: Path, threads: int, port: int | None = None, env: dict[str, str] | None = None
) -> ServerSpec:
    """The service as shipped: its defaults, CPU provider, ``threads`` intra-op threads, plus ``env``."""
    port = port or free_port()
    return ServerSpec(
        name="condgen",
        argv=[
            sys.executable,
            "-m",
            "service",
            "--host",
            LOOPBACK,
            "--port",
            str(port),
            "--models",
            str(models_dir.resolve()),
            "--log-level",
            "warning",
        ],
        port=port,
        ready_path="/readyz",
        env={
            "CONDGEN_INTRA_OP_THREADS": str(threads),
            "CONDGEN_PROVIDERS": "CPUExecutionProvider",
            **(env or {}),
        },
    )


def bentoml_spec(
    model_dir: Path, threads: int, max_batch_size: int = 64, port: int | None = None
) -> ServerSpec:
    port = port or free_port()
    home = Path(tempfile.gettempdir()) / "condgen-bench-bentoml"
    return ServerSpec(
        name="bentoml",
        argv=[
            sys.executable,
            "-m",
            "bentoml",
            "serve",
            "bench.peers.bentoml_service:Frontend",
            "--host",
            LOOPBACK,
            "--port",
            str(port),
        ],
        port=port,
        ready_path="/readyz",
        env={
            "BENCH_MODEL_DIR": str(model_dir.resolve()),
            "BENCH_THREADS": str(threads),
            "BENCH_MAX_BATCH_SIZE": str(max_batch_size),
            "BENTOML_HOME": str(home),
            "BENTOML_DO_NOT_TRACK": "True",
        },
    )


def torch_spec(
    name: str, checkpoint: Path | None, recipe: str | None, threads: int, port: int | None = None
) -> ServerSpec:
    port = port or free_port()
    source = ["--checkpoint", str(checkpoint)] if checkpoint is not None else ["--recipe", str(recipe)]
    note = f"checkpoint {checkpoint}" if checkpoint is not None else f"recipe {recipe}, untrained weights"
    return ServerSpec(
        name="torch",
        argv=[
            sys.executable,
            "-m",
            "bench.peers.torch_server",
            *source,
            "--name",
            name,
            "--host",
            LOOPBACK,
            "--port",
            str(port),
            "--threads",
            str(threads),
        ],
        port=port,
        ready_path="/healthz",
        note=note,
    )


def ray_spec(
    model_dir: Path, threads: int, max_batch_size: int = 64, max_wait_ms: float = 0.0, port: int | None = None
) -> ServerSpec:
    """Ray Serve (bench/peers/ray_serve.py) under its driver (bench/peers/ray_driver.py): a private
    Ray whose processes all stay in the driver's process group, so stop() reaches every one."""
    port = port or free_port()
    # Under /tmp, not a test's tmp_path: Ray's Unix sockets live below it (108-byte path limit).
    temp_dir = Path(tempfile.gettempdir()) / f"condgen-bench-ray-{port}"
    return ServerSpec(
        name="ray",
        argv=[
            sys.executable,
            "-m",
            "bench.peers.ray_driver",
            "--model-dir",
            str(model_dir.resolve()),
            "--threads",
            str(threads),
            "--max-batch-size",
            str(max_batch_size),
            "--max-wait-ms",
            str(max_wait_ms),
            "--host",
            LOOPBACK,
            "--port",
            str(port),
            "--temp-dir",
            str(temp_dir),
        ],
        port=port,
        ready_path="/readyz",
    )
