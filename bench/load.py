"""Closed-loop load on ``POST /generate``: ``wrk`` when installed, else a small asyncio client.

Closed loop: each of ``concurrency`` keep-alive connections sends its next request as soon as the
previous answer has arrived, for ``duration_s`` seconds. Every request has its own seed (counting
up), so no server can answer from a cache.

Why ``wrk`` first: it is C with an epoll loop per thread, so one thread on one core drives well
over 10^4 requests/s, an order of magnitude above what a Python server answers here; the server
under test, not the load generator, is the bottleneck even when both share a 2-core machine with
one core each (``taskset``). It comes from Debian (``apt-get install wrk``); its Lua script
(``wrk_generate.lua``) builds the bodies and prints a JSON summary with p50/p90/p95/p99.

The asyncio fallback (raw HTTP/1.1 over ``asyncio`` streams, uvloop when installed, no HTTP
library in the hot path) reaches a few thousand requests/s on one core: enough for the large-n
cells, marginal for n=1 at high concurrency, and labelled as such in the results.

``python -m bench.load --port P --model M --n 16 --concurrency 32 --duration 5`` prints one JSON
object (a :class:`LoadResult`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

logger = logging.getLogger(__name__)

LoadGen = Literal["wrk", "python"]
WRK_SCRIPT = Path(__file__).with_name("wrk_generate.lua")
JSON_MARKER = "BENCH_JSON "
# A load generator's own bound on one request, seconds: the service's request timeout is 30 s.
DEFAULT_TIMEOUT_S = 30.0
# Hard cap on requests of one python-client run, so latency storage stays bounded (8 B each).
MAX_REQUESTS = 2_000_000
NO_LABEL = -1  # --label value for "send no label" (an unconditional model), as bench.app_cost takes it


@dataclass(frozen=True)
class LoadSpec:
    port: int
    model: str
    n: int = 1
    label: int | None = 3  # None for an unconditional model: condgen refuses a label there (422)
    concurrency: int = 1
    duration_s: float = 5.0
    host: str = "127.0.0.1"
    path: str = "/generate"
    timeout_s: float = DEFAULT_TIMEOUT_S
    seed0: int = 1

    def body(self, seed: int) -> bytes:
        label = "" if self.label is None else f'"label":{self.label},'
        return f'{{"model":"{self.model}",{label}"seed":{seed},"n":{self.n}}}'.encode()


@dataclass
class LoadResult:
    loadgen: str
    concurrency: int
    n: int
    requests: int  # completed with any status
    duration_s: float
    bytes: int
    errors: dict[str, int] = field(default_factory=dict)  # connect, read, write, status, timeout
    latency_ms: dict[str, float] = field(default_factory=dict)  # mean, p50, p90, p95, p99, max

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def ok_requests(self) -> int:
        # wrk counts non-2xx/3xx answers in `requests` and in errors["status"].
        return max(0, self.requests - self.errors.get("status", 0))

    @property
    def requests_per_s(self) -> float:
        return self.ok_requests / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def images_per_s(self) -> float:
        return self.requests_per_s * self.n

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = asdict(self)
        out.update(
            error_count=self.error_count,
            requests_per_s=round(self.requests_per_s, 2),
            images_per_s=round(self.images_per_s, 2),
        )
        return out

    @classmethod
    def from_json(cls, data: dict[str, object]) -> LoadResult:
        keys = {"loadgen", "concurrency", "n", "requests", "duration_s", "bytes", "errors", "latency_ms"}
        return cls(**{k: v for k, v in data.items() if k in keys})  # type: ignore[arg-type]


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def pin_prefix(cpus: str | None) -> list[str]:
    """``taskset -c CPUS`` when asked for and available; nothing otherwise."""
    if not cpus:
        return []
    if shutil.which("taskset") is None:
        logger.warning("taskset not found: processes are not pinned to CPUs %s", cpus)
        return []
    return ["taskset", "-c", cpus]


# ----------------------------------------------------------------------------------------- wrk
def wrk_command(spec: LoadSpec, cpus: str | None = None) -> list[str]:
    return [
        *pin_prefix(cpus),
        "wrk",
        "-t1",  # one thread: one core, and it still outruns any Python server
        f"-c{spec.concurrency}",
        f"-d{max(1, round(spec.duration_s))}s",
        f"--timeout={max(1, round(spec.timeout_s))}s",
        "-s",
        str(WRK_SCRIPT),
        f"http://{spec.host}:{spec.port}",
    ]


def parse_wrk_output(text: str, spec: LoadSpec) -> LoadResult:
    line = next((ln for ln in text.splitlines() if ln.startswith(JSON_MARKER)), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary:\n{text[-2000:]}")
    data = json.loads(line[len(JSON_MARKER) :])
    lat = data["latency_us"]
    latency_ms: dict[str, float] = {}
    if int(data["requests"]) > 0:  # wrk reports zeros, not "no data", for an empty histogram
        latency_ms = {
            k: round(float(lat[k]) / 1000.0, 3) for k in ("mean", "p50", "p90", "p95", "p99", "max")
        }
    return LoadResult(
        loadgen="wrk",
        concurrency=spec.concurrency,
        n=spec.n,
        requests=int(data["requests"]),
        duration_s=data["duration_us"] / 1e6,
        bytes=int(data["bytes"]),
        errors={k: int(v) for k, v in data["errors"].items()},
        latency_ms=latency_ms,
    )


def run_wrk(spec: LoadSpec, cpus: str | None = None) -> LoadResult:
    env = {
        **os.environ,
        "BENCH_MODEL": spec.model,
        "BENCH_LABEL": "" if spec.label is None else str(spec.label),  # empty: the script sends none
        "BENCH_N": str(spec.n),
        "BENCH_PATH": spec.path,
        "BENCH_SEED0": str(spec.seed0),
    }
    proc = subprocess.run(
        wrk_command(spec, cpus),
        env=env,
        capture_output=True,
        text=True,
        timeout=spec.duration_s + spec.timeout_s + 30,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"wrk exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    return parse_wrk_output(proc.stdout, spec)


# ------------------------------------------------------------------------------ asyncio client
class _Counters:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.bytes = 0
        self.errors = {"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0}
        self.requests = 0
        self.seed = 0


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, int, bool]:
    """(status, body bytes, keep-alive) of one HTTP/1.1 response; reads the whole body."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length: int | None = None
    chunked = False
    keep_alive = True
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        value = value.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "transfer-encoding" and "chunked" in value:
            chunked = True
        elif name == "connection" and value == "close":
            keep_alive = False
    size = len(head)
    if chunked:
        while True:
            size_line = await reader.readuntil(b"\r\n")
            chunk = int(size_line.split(b";")[0], 16)
            await reader.readexactly(chunk + 2)
            size += len(size_line) + chunk + 2
            if chunk == 0:
                break
    elif length is not None:
        await reader.readexactly(length)
        size += length
    else:
        size += len(await reader.read())
        keep_alive = False
    return status, size, keep_alive


async def _connection(spec: LoadSpec, counters: _Counters, deadline: float) -> None:
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    head = (
        f"POST {spec.path} HTTP/1.1\r\nHost: {spec.host}:{spec.port}\r\n"
        "Content-Type: application/json\r\nAccept: image/png\r\n"
    ).encode()
    try:
        while time.perf_counter() < deadline and counters.requests < MAX_REQUESTS:
            if writer is None:
                try:
                    reader, writer = await asyncio.open_connection(spec.host, spec.port)
                except OSError:
                    counters.errors["connect"] += 1
                    await asyncio.sleep(0.01)
                    continue
            assert reader is not None
            counters.seed += 1
            body = spec.body(spec.seed0 + counters.seed)
            started = time.perf_counter()
            try:
                writer.write(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
                async with asyncio.timeout(spec.timeout_s):
                    status, size, keep_alive = await _read_response(reader)
            except TimeoutError:
                counters.errors["timeout"] += 1
                writer.close()
                writer = None
                continue
            except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
                counters.errors["read"] += 1
                writer.close()
                writer = None
                continue
            counters.latencies.append(time.perf_counter() - started)
            counters.requests += 1
            counters.bytes += size
            if not 200 <= status < 400:
                counters.errors["status"] += 1
            if not keep_alive:
                writer.close()
                writer = None
    finally:
        if writer is not None:
            writer.close()


async def _run_async(spec: LoadSpec) -> LoadResult:
    counters = _Counters()
    started = time.perf_counter()
    deadline = started + spec.duration_s
    tasks = [asyncio.create_task(_connection(spec, counters, deadline)) for _ in range(spec.concurrency)]
    # Every connection stops at the deadline or after its request in flight times out.
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=spec.duration_s + spec.timeout_s + 5)
    elapsed = time.perf_counter() - started
    lat = np.asarray(counters.latencies, dtype=np.float64) * 1000.0
    latency_ms: dict[str, float] = {}
    if lat.size:
        latency_ms = {
            "mean": round(float(lat.mean()), 3),
            **{f"p{q}": round(float(np.percentile(lat, q)), 3) for q in (50, 90, 95, 99)},
            "max": round(float(lat.max()), 3),
        }
    return LoadResult(
        loadgen="python",
        concurrency=spec.concurrency,
        n=spec.n,
        requests=counters.requests,
        duration_s=elapsed,
        bytes=counters.bytes,
        errors=counters.errors,
        latency_ms=latency_ms,
    )


def run_python(spec: LoadSpec) -> LoadResult:
    """The asyncio client in this process (uvloop when installed)."""
    try:
        import uvloop

        return uvloop.run(_run_async(spec))
    except ImportError:
        return asyncio.run(_run_async(spec))


def run_python_pinned(spec: LoadSpec, cpus: str | None) -> LoadResult:
    """The asyncio client in its own process, pinned to ``cpus``."""
    cmd = [*pin_prefix(cpus), sys.executable, "-m", "bench.load", "--loadgen", "python", *spec_args(spec)]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=spec.duration_s + spec.timeout_s + 60, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"load generator exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    return LoadResult.from_json(json.loads(proc.stdout.strip().splitlines()[-1]))


def resolve_loadgen(choice: str) -> LoadGen:
    if choice == "wrk" or (choice == "auto" and wrk_available()):
        if not wrk_available():
            raise RuntimeError("wrk is not installed (Debian: apt-get install wrk)")
        return "wrk"
    return "python"


def run_load(spec: LoadSpec, loadgen: str = "auto", cpus: str | None = None) -> LoadResult:
    """One closed-loop cell with the chosen generator, pinned to ``cpus`` when given."""
    if resolve_loadgen(loadgen) == "wrk":
        return run_wrk(spec, cpus)
    return run_python_pinned(spec, cpus) if cpus else run_python(spec)


# ----------------------------------------------------------------------------------------- CLI
def spec_args(spec: LoadSpec) -> list[str]:
    return [
        f"--host={spec.host}",
        f"--port={spec.port}",
        f"--path={spec.path}",
        f"--model={spec.model}",
        f"--label={NO_LABEL if spec.label is None else spec.label}",
        f"--n={spec.n}",
        f"--concurrency={spec.concurrency}",
        f"--duration={spec.duration_s}",
        f"--timeout={spec.timeout_s}",
        f"--seed0={spec.seed0}",
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/generate")
    parser.add_argument("--model", required=True)
    parser.add_argument("--label", type=int, default=3, help=f"{NO_LABEL}: none (unconditional models)")
    parser.add_argument("--n", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="per request, seconds")
    parser.add_argument("--seed0", type=int, default=1)
    parser.add_argument("--loadgen", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument("--cpus", help="pin the load generator with taskset -c CPUS")
    args = parser.parse_args(argv)
    if args.host not in {"127.0.0.1", "localhost", "::1"}:
        parser.error("the benchmark only sends traffic to the loopback interface")
    spec = LoadSpec(
        port=args.port,
        model=args.model,
        n=args.n,
        label=None if args.label == NO_LABEL else args.label,
        concurrency=args.concurrency,
        duration_s=args.duration,
        host=args.host,
        path=args.path,
        timeout_s=args.timeout,
        seed0=args.seed0,
    )
    if args.loadgen == "python" and not args.cpus:
        result = run_python(spec)
    else:
        result = run_load(spec, args.loadgen, args.cpus)
    sys.stdout.write(json.dumps(result.to_json()) + "\n")


if __name__ == "__main__":
    main()
