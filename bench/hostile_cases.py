"""The seven hostile-client classes of ``python -m bench.hostile``: their model zoos and actions.

Each action runs against a live server for a bounded time and records the status of every request
it sends (``CaseContext.record``). Requests a well-behaved client would send count as *normal*
(``record_normal``); the acceptance of a class is judged in :mod:`bench.hostile`.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import mmap
import os
import random
import shutil
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

# Upper bound on rounds of any action loop; the deadline normally ends it first.
MAX_ROUNDS = 100_000
# One hostile request's bound, seconds: a hostile answer slower than this is recorded "timeout".
REQUEST_TIMEOUT_S = 15.0
CHUNK = 64 * 1024


@dataclass(frozen=True)
class CaseOptions:
    seconds: float = 10.0
    reloads: int = 100  # class 3
    half_open: int = 2000  # class 5: connections, further bounded by the fd limits
    slow_header_mb: float = 200.0  # class 5: bytes of one header, streamed over the class's seconds
    drain_model_mb: int = 1024  # class 7: padding that makes the model file slow to hash
    max_n: int = 64


@dataclass
class CaseContext:
    base_url: str
    host: str
    port: int
    pid: int
    models_dir: Path
    work_dir: Path
    model: str  # the canary's conditional model
    options: CaseOptions
    started: float = field(default_factory=time.perf_counter)
    hostile: Counter[str] = field(default_factory=Counter)
    normal: Counter[str] = field(default_factory=Counter)
    by_kind: dict[str, Counter[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    background: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def deadline(self) -> float:
        return self.started + self.options.seconds

    def left_s(self) -> float:
        return self.deadline - time.perf_counter()

    def record(self, kind: str, key: str) -> None:
        self.hostile[key] += 1
        self.by_kind.setdefault(kind, Counter())[key] += 1

    def record_normal(self, kind: str, key: str) -> None:
        self.normal[key] += 1
        self.by_kind.setdefault(kind, Counter())[key] += 1


Action = Callable[[CaseContext], Awaitable[None]]
ZooBuilder = Callable[[Path, Path, str, CaseOptions], Path]


@dataclass(frozen=True)
class Case:
    number: int
    name: str
    title: str
    action: Action
    env: Mapping[str, str] = field(default_factory=dict)
    zoo: ZooBuilder | None = None  # (source models, work dir, canary model, options) -> models dir
    overload: bool = False  # normal requests may be 429/503 with Retry-After
    before_sigterm: Action | None = None  # started just before SIGTERM (class 7)
    documented_5xx: frozenset[str] = frozenset({"503"})


def status_key(code: int, headers: Mapping[str, str]) -> str:
    """The status as recorded: 429/503 without ``Retry-After`` are told apart from those with it."""
    if code in (429, 503) and "retry-after" not in {k.lower() for k in headers}:
        return f"{code}-no-RA"
    return str(code)


async def post(client: httpx.AsyncClient, path: str, **kwargs: Any) -> str:
    try:
        response = await client.post(path, **kwargs)
    except httpx.TimeoutException:
        return "timeout"
    except httpx.HTTPError as exc:
        return type(exc).__name__
    return status_key(response.status_code, response.headers)


def client_for(ctx: CaseContext, connections: int = 16) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(base_url=ctx.base_url, timeout=REQUEST_TIMEOUT_S, limits=limits)


def _parse_status(line: bytes) -> str:
    parts = line.split()
    if len(parts) >= 2 and parts[0].startswith(b"HTTP/") and parts[1].isdigit():
        return parts[1].decode()
    return "closed" if not line else "garbled"


async def raw_request(
    ctx: CaseContext,
    parts: list[bytes],
    *,
    pause_s: float = 0.0,
    read_timeout_s: float = 5.0,
    hang_up: bool = False,
) -> str:
    """Send ``parts`` over one raw connection; the answer's status, or what ended the exchange."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(ctx.host, ctx.port), 5.0)
    except (TimeoutError, OSError):
        return "connect-failed"
    try:
        for part in parts:
            for start in range(0, len(part), CHUNK):
                writer.write(part[start : start + CHUNK])
                await asyncio.wait_for(writer.drain(), read_timeout_s)
                if pause_s:
                    await asyncio.sleep(pause_s)
        if hang_up:
            return "hung-up"
        return _parse_status(await asyncio.wait_for(reader.readline(), read_timeout_s))
    except TimeoutError:
        return "timeout"
    except (ConnectionError, OSError):
        # The server refused the rest of what we sent: read what it answered, if anything.
        try:
            return _parse_status(await asyncio.wait_for(reader.readline(), 1.0)) + "+reset"
        except (TimeoutError, ConnectionError, OSError):
            return "reset"
    finally:
        writer.close()


def head(ctx: CaseContext, method: str, path: str, headers: Mapping[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {ctx.host}:{ctx.port}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def generate_body(model: str, **fields: Any) -> dict[str, Any]:
    return {"model": model, **fields}


# ------------------------------------------------------------------- 1: unbounded CPU on the loop
async def unbounded_cpu(ctx: CaseContext) -> None:
    n = ctx.options.max_n
    big_accept = "image/png;q=0.9, " * (8 * 1024 * 1024 // 17)  # ~8 MB of a parseable Accept list
    body = json.dumps(generate_body(ctx.model, label=1, seed=1, n=1)).encode()
    accept_head = head(
        ctx,
        "POST",
        "/generate",
        {"Content-Type": "application/json", "Content-Length": str(len(body)), "Accept": big_accept},
    )
    async with client_for(ctx) as client:
        for i in range(MAX_ROUNDS):
            if ctx.left_s() <= 0:
                break
            tiny = post(
                client, "/generate", json=generate_body(ctx.model, label=1, seed=i, n=n, truncation=1e-5)
            )
            low = post(
                client, "/generate", json=generate_body(ctx.model, label=1, seed=i, n=n, truncation=0.1)
            )
            accept = raw_request(ctx, [accept_head, body])
            tiny_s, low_s, accept_s = await asyncio.gather(tiny, low, accept)
            ctx.record("truncation=1e-5", tiny_s)
            ctx.record(f"truncation=0.1 n={n}", low_s)
            ctx.record("Accept 8 MB", accept_s)


# ------------------------------------------------------------------ 2: validation that amplifies
def amplifying_bodies(model: str) -> dict[str, bytes]:
    """About 2 MB each: every list item is invalid."""

    def body(prefix: str, item: str, count: int) -> bytes:
        return (f'{{"model":"{model}",{prefix}[' + ",".join([item] * count) + "]}").encode()

    return {
        "400k true labels": body('"labels":', "true", 400_000),
        "500k strings in z": body('"label":1,"z":', '"a"', 500_000),
        "666k empty lists": body('"label":1,"z":', "[]", 666_000),
    }


async def amplifying_validation(ctx: CaseContext) -> None:
    bodies = amplifying_bodies(ctx.model)
    ctx.extra["body_bytes"] = {k: len(v) for k, v in bodies.items()}
    headers = {"Content-Type": "application/json"}
    async with client_for(ctx, connections=8) as client:
        for i in range(MAX_ROUNDS):
            if ctx.left_s() <= 0:
                break
            kind, body = list(bodies.items())[i % len(bodies)]
            statuses = await asyncio.gather(
                *(post(client, "/generate", content=body, headers=headers) for _ in range(8))
            )
            for status in statuses:
                ctx.record(kind, status)


# ------------------------------------------------------------------------ 3: reload racing requests
FLIP = "flip"
FLIP_DIMS = (16, 24)


def _copy_canary(source: Path, root: Path, model: str) -> None:
    shutil.copytree(source / model, root / model)


def flip_zoo(source: Path, work: Path, model: str, options: CaseOptions) -> Path:
    from tests.service.onnx_fixtures import DIGITS, write_model

    root = work / "models"
    _copy_canary(source, root, model)
    for dim in FLIP_DIMS:
        write_model(work / f"variant-{dim}", FLIP, dim=dim, labels=DIGITS, seed=dim)
    for name in ("model.onnx", "model.json"):
        (root / FLIP).mkdir(parents=True, exist_ok=True)
        shutil.copy2(work / f"variant-{FLIP_DIMS[0]}" / FLIP / name, root / FLIP / name)
    return root


def swap_in(variant: Path, target: Path) -> None:
    """Replace ``target``'s ONNX file and card by ``variant``'s: a hard link renamed over each, so a
    swap costs no copying (no bench-side load) and each file changes atomically."""
    for name in ("model.onnx", "model.json"):
        tmp = target / f".{name}.next"
        tmp.unlink(missing_ok=True)
        os.link(variant / name, tmp)
        tmp.replace(target / name)


def v2_body(dim: int, rows: int, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((rows, dim)).astype(np.float32)
    return {
        "inputs": [
            {"name": "z", "datatype": "FP32", "shape": [rows, dim], "data": z.ravel().tolist()},
            {"name": "label", "datatype": "INT64", "shape": [rows], "data": [seed % 10] * rows},
        ]
    }


async def _mixed_load(ctx: CaseContext, client: httpx.AsyncClient, worker: int) -> None:
    rng = random.Random(worker)
    for i in range(MAX_ROUNDS):
        if ctx.left_s() <= 0:
            break
        seed = worker * MAX_ROUNDS + i
        dim = rng.choice(FLIP_DIMS)  # one of the two is the wrong size at any moment: a 400
        which = i % 3
        if which == 0:
            kind = "generate"
            status = await post(
                client, "/generate", json=generate_body(FLIP, label=seed % 10, seed=seed, n=2)
            )
        elif which == 1:
            kind = "v2 infer"
            status = await post(client, f"/v2/models/{FLIP}/infer", json=v2_body(dim, 2, seed))
        else:
            kind = "v2 infer gzip"
            body = gzip.compress(json.dumps(v2_body(dim, 2, seed)).encode(), compresslevel=1)
            headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
            status = await post(client, f"/v2/models/{FLIP}/infer", content=body, headers=headers)
        ctx.record(kind, status)


async def reload_race(ctx: CaseContext) -> None:
    target = ctx.models_dir / FLIP
    async with client_for(ctx) as client:
        load = [asyncio.create_task(_mixed_load(ctx, client, w)) for w in range(4)]
        reloads: Counter[str] = Counter()
        for i in range(ctx.options.reloads):
            if ctx.left_s() <= 0:
                break
            swap_in(ctx.work_dir / f"variant-{FLIP_DIMS[(i + 1) % 2]}" / FLIP, target)
            reloads[await post(client, "/admin/reload")] += 1
        await asyncio.gather(*load)
    ctx.extra["reloads"] = dict(reloads)
    ctx.by_kind["reload"] = reloads


# -------------------------------------------------------------- 4: one bad request fails its batch
OVERLABEL = "overlabel"


def overlabel_zoo(source: Path, work: Path, model: str, options: CaseOptions) -> Path:
    from tests.service.onnx_fixtures import DIGITS, edit_card, write_model

    root = work / "models"
    _copy_canary(source, root, model)
    # The graph's embedding has ten rows; the card promises twelve labels.
    edit_card(write_model(root, OVERLABEL, dim=16, labels=DIGITS, seed=4), labels=[*DIGITS, "ten", "eleven"])
    return root


async def _batch_mates(ctx: CaseContext, client: httpx.AsyncClient, worker: int, loaded: bool) -> None:
    for i in range(MAX_ROUNDS):
        if ctx.left_s() <= 0:
            break
        seed = worker * MAX_ROUNDS + i
        if worker == 0 and i % 4 == 0:  # a few ask for a label the graph cannot embed
            ctx.record(
                "label 11",
                await post(client, "/generate", json=generate_body(OVERLABEL, label=11, seed=seed)),
            )
            continue
        status = await post(
            client, "/generate", json=generate_body(OVERLABEL, label=seed % 10, seed=seed, n=2)
        )
        (ctx.record_normal if loaded else ctx.record)("valid labels", status)


async def bad_batch_mate(ctx: CaseContext) -> None:
    async with client_for(ctx) as client:
        card = await client.get(f"/models/{OVERLABEL}")
        ready = await client.get("/readyz")
        status = ready.json().get("models", {}).get(OVERLABEL, {}).get("status")
        loaded = card.status_code == 200 and status == "ready"
        detail = ready.text[:300] if not loaded else ""
        ctx.notes.append(f"{OVERLABEL}: card {card.status_code}, loaded={loaded} {detail}".strip())
        await asyncio.gather(*(_batch_mates(ctx, client, w, loaded) for w in range(6)))


# ------------------------------------------------------------- 5: connections that never finish
def fd_limit(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    return 1024


async def _half_open(ctx: CaseContext) -> tuple[list[asyncio.StreamReader], list[asyncio.StreamWriter]]:
    import resource

    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    count = min(ctx.options.half_open, fd_limit(ctx.pid) // 4, soft // 2)
    ctx.extra["half_open_target"] = count
    readers: list[asyncio.StreamReader] = []
    writers: list[asyncio.StreamWriter] = []
    for start in range(0, count, 100):
        if ctx.left_s() <= 0:
            break

        async def one() -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
            try:
                pair = await asyncio.wait_for(asyncio.open_connection(ctx.host, ctx.port), 5.0)
            except (TimeoutError, OSError):
                return None
            pair[1].write(b"GET /healthz HTT")  # half a request line, then silence
            return pair

        for pair in await asyncio.gather(*(one() for _ in range(min(100, count - start)))):
            if pair is None:
                ctx.record("half-open", "connect-failed")
            else:
                readers.append(pair[0])
                writers.append(pair[1])
    ctx.extra["half_open"] = len(writers)
    return readers, writers


async def _slow_header(ctx: CaseContext) -> None:
    total = int(ctx.options.slow_header_mb * 1024 * 1024)
    ticks = max(1, int(ctx.left_s() / 0.05))
    piece = b"a" * max(1, total // ticks)
    first = head(ctx, "GET", "/healthz", {}).rstrip(b"\r\n") + b"\r\nX-Slow: "
    sent = 0
    status = "sent-all"
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(ctx.host, ctx.port), 5.0)
    except (TimeoutError, OSError):
        ctx.record("slow header", "connect-failed")
        return
    try:
        writer.write(first)
        for _ in range(ticks):
            if ctx.left_s() <= 0 or reader.at_eof():
                break
            writer.write(piece)
            await asyncio.wait_for(writer.drain(), max(0.1, ctx.left_s()))
            sent += len(piece)
            await asyncio.sleep(0.05)
        status = "stopped"
        answer = await asyncio.wait_for(reader.readline(), 0.2)
        status = _parse_status(answer)
    except TimeoutError:
        pass  # our own deadline (or a server still reading): status says how far it got
    except (ConnectionError, OSError):
        status = "reset"
    finally:
        writer.close()
    ctx.extra["slow_header_bytes_sent"] = sent
    ctx.record("slow header", status)


async def never_finish(ctx: CaseContext) -> None:
    slow = asyncio.create_task(_slow_header(ctx))
    readers, writers = await _half_open(ctx)
    await asyncio.sleep(max(0.0, ctx.left_s()))
    await slow
    # What became of the half-open connections: answered, closed by the server, or still open.
    reads = [asyncio.create_task(r.read(256)) for r in readers]
    if reads:
        done, pending = await asyncio.wait(reads, timeout=1.0)
        for task in done:
            data = b"" if task.exception() else task.result()
            ctx.record("half-open", _parse_status(data.split(b"\r\n", 1)[0]) if data else "closed")
        for task in pending:
            task.cancel()
            ctx.record("half-open", "open")
    for writer in writers:
        writer.close()


# ------------------------------------------------------------- 6: errors that are not the service's
def malformed(ctx: CaseContext) -> dict[str, list[bytes]]:
    body = json.dumps(generate_body(ctx.model, label=1, seed=1)).encode()
    chunked = {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}
    return {
        "bad chunk size": [head(ctx, "POST", "/generate", chunked), b"zz\r\n" + body + b"\r\n0\r\n\r\n"],
        "bad method": [b"G\x01T /healthz HTTP/1.1\r\nHost: x\r\n\r\n"],
        "request line 64 KB": [f"GET /{'a' * 65536} HTTP/1.1\r\nHost: x\r\n\r\n".encode()],
    }


async def not_the_services(ctx: CaseContext) -> None:
    cl = {"Content-Type": "application/json", "Content-Length": "100000"}
    hang = [head(ctx, "POST", "/generate", cl), b'{"model": "' + b"x" * 990 + b'", ']
    shapes = malformed(ctx)
    for _ in range(MAX_ROUNDS):
        if ctx.left_s() <= 0:
            break
        hang_ups = [raw_request(ctx, hang, hang_up=True) for _ in range(8)]
        bad = [raw_request(ctx, parts, read_timeout_s=3.0) for parts in shapes.values()]
        results = await asyncio.gather(*hang_ups, *bad)
        for status in results[:8]:
            ctx.record("hang-up mid-body", status)
        for kind, status in zip(shapes, results[8:], strict=True):
            ctx.record(kind, status)
        await asyncio.sleep(0.02)


# ------------------------------------------------------------------ 7: a drain during a slow reload
BULKY = "bulky"
PAD_MARK = b"condgen-pad-mark"


def bulky_zoo(source: Path, work: Path, model: str, options: CaseOptions) -> Path:
    """A model padded with an unused initializer, and a copy of its file with one pad byte changed:
    the copy's hash no longer matches the card, so a reload hashes it all and keeps the old one."""
    import onnx
    from onnx import numpy_helper

    from service.card import ModelCard, sha256_file, write_card
    from tests.service.onnx_fixtures import DIGITS, build_graph, card_dict

    root = work / "models"
    _copy_canary(source, root, model)
    # Hashing is what makes this reload slow: the pad is an initializer no node uses.
    graph = build_graph(dim=16, channels=1, height=8, width=8, num_classes=10, seed=7)
    pad = np.zeros(max(1, options.drain_model_mb) * 1024 * 1024, dtype=np.uint8)
    pad[: len(PAD_MARK)] = np.frombuffer(PAD_MARK, dtype=np.uint8)
    graph.graph.initializer.append(numpy_helper.from_array(pad, "pad"))
    del pad
    target = root / BULKY
    target.mkdir(parents=True)
    onnx.save(graph, target / "model.onnx")
    del graph
    digest = sha256_file(target / "model.onnx")
    card = card_dict(BULKY, dim=16, channels=1, height=8, width=8, labels=DIGITS, sha256=digest)
    write_card(ModelCard.model_validate(card), target)
    for name, flip in (("a", False), ("b", True)):
        variant = work / f"bulky-{name}"
        variant.mkdir()
        shutil.copy2(target / "model.json", variant / "model.json")
        copy = shutil.copy2 if flip else os.link  # only b's bytes differ
        copy(target / "model.onnx", variant / "model.onnx")
        if flip:
            with (variant / "model.onnx").open("r+b") as fh, mmap.mmap(fh.fileno(), 0) as mm:
                at = mm.find(PAD_MARK)
                mm[at + len(PAD_MARK)] = 1
    return root


async def _reload(ctx: CaseContext, client: httpx.AsyncClient, variant: str, kind: str) -> None:
    swap_in(ctx.work_dir / f"bulky-{variant}", ctx.models_dir / BULKY)
    t0 = time.perf_counter()
    status = await post(client, "/admin/reload")
    ctx.record(kind, status)
    ctx.extra.setdefault(f"{kind} s", []).append(round(time.perf_counter() - t0, 2))


async def slow_reloads(ctx: CaseContext) -> None:
    async with client_for(ctx, connections=2) as client:
        for i in range(MAX_ROUNDS):
            if ctx.left_s() <= 0:
                break
            variant = "b" if i % 2 == 0 else "a"
            await _reload(ctx, client, variant, f"reload {variant}")


async def reload_then_sigterm(ctx: CaseContext) -> None:
    """Start a reload that hashes the padded file and return while it runs: SIGTERM comes next."""

    async def run() -> None:
        async with client_for(ctx, connections=1) as client:
            await _reload(ctx, client, "b", "reload at SIGTERM")

    ctx.background.append(asyncio.create_task(run()))
    await asyncio.sleep(0.3)


CASES: dict[int, Case] = {
    case.number: case
    for case in (
        Case(1, "cpu", "Unbounded CPU work on the event loop", unbounded_cpu),
        Case(2, "validation", "Validation that amplifies", amplifying_validation,
             env={"CONDGEN_MAX_BODY_BYTES": str(4 * 1024 * 1024)}),
        Case(3, "reload-race", "A reload racing requests", reload_race, zoo=flip_zoo),
        # The load-time label probe would refuse this card outright (tests/service cover that): off,
        # so the shared runs a bad label can fail are what is measured.
        Case(4, "bad-batch-mate", "One bad request fails its batch-mates", bad_batch_mate, zoo=overlabel_zoo,
             env={"CONDGEN_PROBE_LABELS": "false"}, documented_5xx=frozenset({"503", "503-no-RA"})),
        Case(5, "never-finish", "Connections that never finish", never_finish, overload=True),
        Case(6, "not-ours", "Errors that are not the service's", not_the_services),
        Case(7, "drain-overrun", "A drain that overruns its bound", slow_reloads, zoo=bulky_zoo,
             env={"CONDGEN_DRAIN_TIMEOUT_S": "1"}, before_sigterm=reload_then_sigterm),
    )
}  # fmt: skip
