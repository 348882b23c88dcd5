"""docker/swarm_check.py against a real HTTP server standing in for the balancer: the load it sends,
what it records, and that its checks fail on a failed request or on bytes that differ."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.deploy.conftest import DOCKER

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
REPLICAS = ["10.0.0.1:8000", "10.0.0.2:8000"]


class Balancer(ThreadingHTTPServer):
    """Answers like nginx in front of two replicas; ``fail_every`` / ``odd_replica`` inject faults."""

    def __init__(self, fail_every: int = 0, odd_replica: bool = False) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.count = 0
        self.fail_every = fail_every
        self.odd_replica = odd_replica
        self.lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    server: Balancer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        cards = [{"name": "m", "labels": ["a", "b"]}]
        body = json.dumps({"models": [{"name": "m", "status": "ready", "card": c} for c in cards]})
        self.reply(200, body.encode(), {"Content-Type": "application/json"})

    def do_POST(self) -> None:
        request = self.rfile.read(int(self.headers["Content-Length"]))
        with self.server.lock:
            self.server.count += 1
            count = self.server.count
        # Changes every third request: each request body meets both replicas.
        replica = REPLICAS[(count // 3) % 2]
        if self.server.fail_every and count % self.server.fail_every == 0:
            self.reply(503, b'{"error": {}}', {"X-Upstream-Addr": replica, "Retry-After": "1"})
            return
        salt = b"odd" if self.server.odd_replica and replica == REPLICAS[1] else b""
        # Two tries, the last one answering: how nginx reports a retried request.
        tried = f"10.0.0.9:8000, {replica}" if count % 7 == 0 else replica
        self.reply(200, PNG_MAGIC + request + salt, {"X-Upstream-Addr": tried})


def serve(balancer: Balancer) -> Iterator[str]:
    thread = threading.Thread(target=balancer.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{balancer.server_address[1]}"
    finally:
        balancer.shutdown()
        balancer.server_close()


def check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(DOCKER / "swarm_check.py"), *args], capture_output=True, text=True, check=False
    )


def run_load(url: str, out: Path, seconds: float = 1.0) -> float:
    stop = out.with_suffix(".stop")
    started = time.time()
    proc = subprocess.Popen(
        [
            sys.executable,
            str(DOCKER / "swarm_check.py"),
            "load",
            "--lb",
            url,
            "--out",
            str(out),
            "--stop",
            str(stop),
            "--concurrency",
            "2",
            "--rate",
            "100",
        ],
    )
    time.sleep(seconds)
    stop.touch()
    assert proc.wait(timeout=30) == 0
    return started


@pytest.fixture
def known(tmp_path: Path) -> Path:
    path = tmp_path / "known.tsv"
    path.write_text("".join(f"{a}\tcondgen.{i + 1}@abc\tv1\tcondgen:v1\n" for i, a in enumerate(REPLICAS)))
    return path


def test_steady_load_passes_and_records_each_replica(tmp_path: Path, known: Path) -> None:
    log = tmp_path / "requests.tsv"
    for url in serve(Balancer()):
        since = run_load(url, log)
    lines = log.read_text().splitlines()
    # Paced at 100/s: never more than the pace allows over the time it ran (plus one per client).
    ran_s = time.time() - since
    assert 5 <= len(lines) <= 100 * ran_s + 2, (len(lines), ran_s)
    proc = check("summary", "--log", str(log), "--known", str(known))
    assert proc.returncode == 0, proc.stdout
    assert f"{len(lines)} sent, {len(lines)} ok, 0 failed" in proc.stdout
    assert "condgen.1@abc (v1)=" in proc.stdout
    assert "condgen.2@abc (v1)=" in proc.stdout
    retried = sum(line.split("\t")[3] == "2" for line in lines)
    assert retried > 0
    assert f"{retried} retried by the balancer to a 200" in proc.stdout
    current = tmp_path / "current.tsv"
    current.write_text(known.read_text())
    proc = check(
        "window", "--name", "w", "--log", str(log), "--known", str(known), "--since", str(since),
        "--current", str(current), "--replicas", "2", "--version", "v1",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout
    # Only one of the two replicas running now: the other one still serving is a failure.
    current.write_text(known.read_text().splitlines()[0] + "\n")
    proc = check(
        "window", "--name", "w", "--log", str(log), "--known", str(known), "--since", str(since),
        "--current", str(current), "--replicas", "1",
    )  # fmt: skip
    assert proc.returncode == 1
    assert "FAIL: w: every one of the 1 running replicas served" in proc.stdout


def test_a_503_that_reached_the_client_is_a_failed_request(tmp_path: Path, known: Path) -> None:
    log = tmp_path / "requests.tsv"
    for url in serve(Balancer(fail_every=5)):
        since = run_load(url, log)
    proc = check("window", "--name", "w", "--log", str(log), "--known", str(known), "--since", str(since))
    assert proc.returncode == 1
    assert "FAIL: w: no failed request" in proc.stdout
    assert "{503:" in proc.stdout


def test_different_bytes_from_one_replica_fail_the_summary(tmp_path: Path, known: Path) -> None:
    log = tmp_path / "requests.tsv"
    for url in serve(Balancer(odd_replica=True)):
        run_load(url, log)
    proc = check("summary", "--log", str(log), "--known", str(known))
    assert proc.returncode == 1
    assert "FAIL: same request, same bytes from every replica" in proc.stdout
