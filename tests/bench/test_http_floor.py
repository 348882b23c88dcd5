"""bench.http_floor: the constant-answer server behind condgen's own HTTP stack, really loaded."""

from __future__ import annotations

from pathlib import Path

import httpx

from bench.http_floor import BODY, floor_spec, measure
from bench.servers import ServerProcess, free_port


def test_the_floor_server_answers_like_a_generate_response(tmp_path: Path) -> None:
    spec = floor_spec(free_port())
    with ServerProcess(spec, None, tmp_path).start() as server:
        server.wait_ready(timeout_s=60.0)
        response = httpx.post(f"{spec.base_url}/generate", json={"model": "floor", "seed": 1}, timeout=10.0)
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.content == BODY


def test_measure_reports_the_servers_cpu_per_request(tmp_path: Path) -> None:
    floor = measure(concurrency=2, duration_s=0.5, loadgen="python", log_dir=tmp_path)
    assert floor["errors"] == 0
    assert floor["requests_per_s"] > 0
    assert floor["cpu_us_per_request"] > 0
