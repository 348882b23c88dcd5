"""What the app itself costs per request: the ASGI app in-process, no HTTP, many clients at once.

The real app (``service.app.create_app`` with its lifespan: registry, batchers, sessions) is
driven through the ASGI interface by ``concurrency`` client tasks sending ``POST /generate`` for
``seconds``; reported are the process's CPU microseconds per request, the requests per second and,
with sessions, the CPU microseconds per image of the model's session runs themselves.
Set beside the HTTP cells' CPU per request (``make bench``), the difference is what uvicorn, the
socket and the kernel add. ``--no-session`` replaces each model's session with one that returns a
blank batch at once, which leaves condgen's own per-request work: parsing, planning and latents,
batching and the thread hand-off, encoding, metrics.

``python -m bench.app_cost --models-dir exported --model cdcgan-mnist --n 1 --no-session``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import uvloop
from fastapi import FastAPI
from starlette.types import Message

from service.app import create_app
from service.card import ModelCard
from service.config import Settings
from service.registry import default_runner_factory
from service.runtime import Runner


@dataclass(frozen=True)
class AppCost:
    model: str
    n: int
    concurrency: int
    session: bool
    requests: int
    seconds: float
    cpu_us_per_request: float
    requests_per_s: float
    session_cpu_us_per_image: float | None  # the session's own runs, on their thread


class BlankRunner:
    """A session stand-in: a zero batch of the card's shape, at once."""

    def __init__(self, card: ModelCard) -> None:
        self.shape = (card.image.channels, card.image.height, card.image.width)

    def run(self, z: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
        return np.zeros((z.shape[0], *self.shape), dtype=np.uint8)


def _blank_factory(model_dir: Path, card: ModelCard, settings: Settings) -> Runner:
    default_runner_factory(model_dir, card, settings)  # the model must still load and check out
    return BlankRunner(card)


class TimedRunner:
    """The real runner, with the CPU time of its runs counted on the thread that runs them.

    With one intra-op thread ONNX Runtime computes on that thread, so this is the session's own
    CPU per image while serving, to set beside the raw limit's (``bench.raw_ort``): what batching
    with the app's other work on the same core costs the session itself."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.images = 0
        self.cpu_s = 0.0

    def run(self, z: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
        started = time.thread_time()
        out = self.runner.run(z, labels)
        self.cpu_s += time.thread_time() - started
        self.images += int(z.shape[0])
        return out


def _scope(body: bytes) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/generate",
        "raw_path": b"/generate",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"condgen"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"accept", b"image/png"),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


async def _request(app: FastAPI, body: bytes) -> int:
    """One request through the ASGI interface; its status."""
    delivered = False
    status = 0

    async def receive() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the client never hangs up
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])

    await app(_scope(body), receive, send)
    return status


async def _measure(
    settings: Settings, model: str, label: int | None, n: int, concurrency: int, seconds: float, session: bool
) -> AppCost:
    timed: list[TimedRunner] = []

    def timed_factory(model_dir: Path, card: ModelCard, settings: Settings) -> Runner:
        runner = TimedRunner(default_runner_factory(model_dir, card, settings))
        if card.name == model:
            timed.append(runner)
        return runner

    app = create_app(settings, runner_factory=timed_factory if session else _blank_factory)
    fields: dict[str, Any] = {"model": model, "seed": 7, "n": n}
    if label is not None:
        fields["label"] = label
    body = json.dumps(fields).encode()
    async with app.router.lifespan_context(app):
        count = 0
        stop = False

        async def client() -> None:
            nonlocal count
            while not stop:
                status = await _request(app, body)
                if status != 200:
                    raise RuntimeError(f"POST /generate answered {status}")
                count += 1

        clients = [asyncio.create_task(client()) for _ in range(concurrency)]
        await asyncio.sleep(min(1.0, seconds / 2))  # warm-up: batches settle, caches fill
        count0, cpu0, wall0 = count, time.process_time(), time.perf_counter()
        runners = list(timed)  # a session re-created in the window adds one: these are compared
        session0 = [(r.images, r.cpu_s) for r in runners]
        await asyncio.sleep(seconds)
        count1, cpu1, wall1 = count, time.process_time(), time.perf_counter()
        session1 = [(r.images, r.cpu_s) for r in runners]
        stop = True
        await asyncio.gather(*clients)
    requests = count1 - count0
    if requests == 0:
        raise RuntimeError("no request completed in the window")
    return AppCost(
        model=model,
        n=n,
        concurrency=concurrency,
        session=session,
        requests=requests,
        seconds=round(wall1 - wall0, 3),
        cpu_us_per_request=round((cpu1 - cpu0) / requests * 1e6, 1),
        requests_per_s=round(requests / (wall1 - wall0), 1),
        session_cpu_us_per_image=_session_cost(session0, session1),
    )


def _session_cost(before: list[tuple[int, float]], after: list[tuple[int, float]]) -> float | None:
    """CPU µs per image of the timed model's runs in the window (None without a session)."""
    images = sum(a[0] - b[0] for a, b in zip(after, before, strict=True))
    cpu_s = sum(a[1] - b[1] for a, b in zip(after, before, strict=True))
    return round(cpu_s / images * 1e6, 1) if images else None


def measure(
    models_dir: Path,
    model: str,
    label: int | None = 0,
    n: int = 1,
    concurrency: int = 32,
    seconds: float = 5.0,
    session: bool = True,
    threads: int = 1,
) -> AppCost:
    settings = Settings(
        models_dir=models_dir,
        providers=["CPUExecutionProvider"],
        intra_op_threads=threads,
        max_queue_images=max(1024, n * concurrency),
    )
    return uvloop.run(_measure(settings, model, label, n, concurrency, seconds, session))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.app_cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models-dir", type=Path, default=Path("exported"))
    parser.add_argument("--model", default="cdcgan-mnist")
    parser.add_argument("--label", type=int, default=0, help="-1: none (unconditional models)")
    parser.add_argument("--n", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    parser.add_argument("--no-session", action="store_true", help="blank batches instead of session runs")
    a = parser.parse_args(argv)
    result = measure(
        a.models_dir,
        a.model,
        None if a.label < 0 else a.label,
        a.n,
        a.concurrency,
        a.seconds,
        not a.no_session,
        a.threads,
    )
    print(json.dumps(asdict(result)))


if __name__ == "__main__":
    main()
