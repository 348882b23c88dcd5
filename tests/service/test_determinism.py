"""Same request, same bytes, whatever else the server is doing.

A real ``python -m service`` with the fixture zoo answers 1,000 seeded requests (every endpoint,
every model, PNG / NPY / JSON, seeds, explicit latents, truncation, label names) one at a time:
that is the reference. Then the same 1,000, shuffled, at mixed concurrency: a third one at a time,
a third 8 at once, a third 64 at once, where they share batches with strangers. Every body and
every seed header must be byte-identical to the reference.
"""

from __future__ import annotations

import asyncio
import random
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.service.conftest import GRAY, RGB, UNCOND
from tests.service.onnx_fixtures import COLOURS, DIGITS
from tests.service.process import run_service

pytestmark = pytest.mark.slow

REQUESTS = 1000
PHASES = (1, 8, 64)  # concurrency of each third of the mixed run
DIMS = {GRAY: 16, RGB: 8, UNCOND: 12}
NAMES = {GRAY: DIGITS, RGB: COLOURS, UNCOND: None}
ACCEPT = ["image/png", "application/x-npy", "application/json"]

Spec = tuple[str, dict[str, Any], str]  # path, body, Accept


def _label(rng: random.Random, model: str) -> int | str:
    names = NAMES[model]
    assert names is not None
    return rng.choice(names) if rng.random() < 0.3 else rng.randrange(len(names))


def _spec(rng: random.Random) -> Spec:
    model = rng.choice([GRAY, RGB, UNCOND])
    conditional = NAMES[model] is not None
    accept = rng.choice(ACCEPT)
    kind = rng.random()
    body: dict[str, Any] = {"model": model}
    if kind < 0.7:
        n = rng.randint(1, 6)
        if rng.random() < 0.15:
            body["z"] = [[round(rng.gauss(0, 1), 4) for _ in range(DIMS[model])] for _ in range(n)]
        else:
            body["seed"] = rng.randrange(2**40)
            body["n"] = n
            if rng.random() < 0.2:
                body["truncation"] = round(rng.uniform(0.3, 2.0), 3)
        if conditional:
            if rng.random() < 0.5:
                body["labels"] = [_label(rng, model) for _ in range(n)]
                body.pop("n", None)
            else:
                body["label"] = _label(rng, model)
        return "/generate", body, accept
    if kind < 0.85 and conditional:
        names = NAMES[model]
        assert names is not None
        body["labels"] = rng.sample(range(len(names)), rng.randint(1, min(3, len(names))))
        body["columns"] = rng.randint(1, 4)
        body["seed"] = rng.randrange(2**40)
        return "/grid", body, accept
    body["seeds"] = [rng.randrange(2**40), rng.randrange(2**40)]
    body["steps"] = rng.randint(2, 6)
    body["spherical"] = rng.random() < 0.5
    if conditional:
        body["label"] = _label(rng, model)
    return "/interpolate", body, accept


def specs() -> list[Spec]:
    rng = random.Random(20261122)
    return [_spec(rng) for _ in range(REQUESTS)]


Answer = tuple[int, bytes, str | None]


async def _fetch(client: httpx.AsyncClient, spec: Spec) -> Answer:
    path, body, accept = spec
    resp = await client.post(path, json=body, headers={"accept": accept})
    return resp.status_code, resp.content, resp.headers.get("x-condgen-seed")


async def _run(
    client: httpx.AsyncClient, items: list[tuple[int, Spec]], concurrency: int
) -> dict[int, Answer]:
    answers: dict[int, Answer] = {}
    todo = list(reversed(items))

    async def worker() -> None:
        while todo:
            index, spec = todo.pop()
            answers[index] = await _fetch(client, spec)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return answers


def _session_runs(metrics: str) -> float:
    return sum(float(v) for v in re.findall(r"^condgen_session_runs_total\{[^}]*\} (\S+)$", metrics, re.M))


async def test_a_thousand_seeded_requests_at_mixed_concurrency_match_a_serial_run(zoo: Path) -> None:
    items = list(enumerate(specs()))
    with run_service(zoo, max_wait_ms=2, log_level="warning") as service:
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        async with httpx.AsyncClient(base_url=service.url, timeout=30.0, limits=limits) as client:
            reference = await _run(client, items, 1)
            shuffled = items[:]
            random.Random(1).shuffle(shuffled)
            third = len(shuffled) // 3
            chunks = [shuffled[:third], shuffled[third : 2 * third], shuffled[2 * third :]]
            mixed: dict[int, Answer] = {}
            runs: list[float] = []
            for concurrency, chunk in zip(PHASES, chunks, strict=True):
                before = _session_runs((await client.get("/metrics")).text)
                mixed.update(await _run(client, chunk, concurrency))
                runs.append(_session_runs((await client.get("/metrics")).text) - before)
    assert all(status == 200 for status, _, _ in reference.values()), [
        (items[i][1], a[1][:200]) for i, a in reference.items() if a[0] != 200
    ][:3]
    assert len(mixed) == REQUESTS
    different = [i for i in range(REQUESTS) if mixed[i] != reference[i]]
    assert not different, f"{len(different)} answers differ, e.g. {items[different[0]][1]}"
    # One at a time, each request had a run of its own; at 64 at once, requests shared runs.
    assert runs[0] == len(chunks[0]), runs
    assert runs[2] < len(chunks[2]), runs
    # And every media type and endpoint was in the mix.
    assert {spec[2] for spec in specs()} == set(ACCEPT)
    assert {spec[0] for spec in specs()} == {"/generate", "/grid", "/interpolate"}
