"""The Python client: ``Client`` (blocking) and ``AsyncClient`` (asyncio), the same methods.

>>> from condgen import Client
>>> batch = Client("http://127.0.0.1:8000").generate("condgen-mnist", label="3", n=16, seed=123)
>>> batch.images.shape, batch.labels[:3], batch.indices[:3]
((16, 1, 28, 28), array([3, 3, 3]), array([0, 1, 2]))

Pixels travel as ``application/x-npy`` (no PNG decoding). A large ``n`` is split into requests
of at most the server's ``max_n`` images (read once from ``GET /models``), run at most
``concurrency`` at a time; 429 and 503 answers are retried as :class:`condgen.retry.RetryPolicy`
says. Errors raise the classes of :mod:`condgen.errors`.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from concurrent.futures import CancelledError, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import orjson

from condgen.errors import CondgenError, ConnectionFailed, error_from_response
from condgen.images import Images, concatenate, decode_npy
from condgen.requests import GenerateJob, Label, plan_generate, resolve_label
from condgen.retry import CONNECT_REFUSED, RetryPolicy
from condgen.version import __version__

NPY = "application/x-npy"
DEFAULT_URL = "http://127.0.0.1:8000"
# Used when the server does not say (a server older than GET /models' limits): its default.
DEFAULT_MAX_N = 64


def transport_error(url: str, path: str, exc: httpx.TransportError) -> ConnectionFailed:
    """A request that got no answer: ``connection`` when it could not connect (retried), else
    ``transport`` (a timeout, a connection lost mid-answer: not retried)."""
    kind = CONNECT_REFUSED if isinstance(exc, httpx.ConnectError) else "transport"
    return ConnectionFailed(f"{url}{path}: {exc or repr(exc)}", error_type=kind)


@dataclass(frozen=True)
class ModelInfo:
    name: str
    status: str
    reason: str | None
    providers: list[str] | None
    card: dict[str, Any] | None

    @property
    def labels(self) -> list[str] | None:
        return None if self.card is None else self.card.get("labels")


@dataclass(frozen=True)
class ClientConfig:
    url: str = DEFAULT_URL
    api_key: str | None = None
    timeout_s: float = 60.0
    concurrency: int = 4  # requests of one call in flight at once
    max_n: int | None = None  # images per request; None: the server's max_n
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    def headers(self) -> dict[str, str]:
        headers = {"user-agent": f"condgen-client/{__version__}"}
        if self.api_key:
            headers["authorization"] = f"Bearer {self.api_key}"
        return headers


@dataclass
class _Answer:
    body: bytes
    headers: httpx.Headers


class _Core:
    """What both clients share: the configuration, the cards and limits they read once, and
    turning bodies and answers into :class:`Images`."""

    def __init__(self, config: ClientConfig) -> None:
        if config.concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        self.config = config
        self._cards: dict[str, dict[str, Any]] = {}
        self._max_n: int | None = config.max_n

    @staticmethod
    def _models(answer: _Answer) -> tuple[list[ModelInfo], int | None]:
        doc = orjson.loads(answer.body)
        models = [
            ModelInfo(m["name"], m["status"], m.get("reason"), m.get("providers"), m.get("card"))
            for m in doc["models"]
        ]
        limits = doc.get("limits") or {}
        return models, limits.get("max_n")

    def _job(self, model: str, card: dict[str, Any], max_n: int, **kwargs: Any) -> GenerateJob:
        return plan_generate(model, card.get("labels"), chunk_size=max_n, **kwargs)

    @staticmethod
    def _images(job: GenerateJob, parts: list[np.ndarray]) -> Images:
        return Images(job.model, concatenate(parts), job.label_ids, job.seeds, job.indices, seed=job.seed)

    @staticmethod
    def _dumps(body: dict[str, Any]) -> bytes:
        return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


def _grid_body(
    model: str,
    labels: Sequence[Label] | None,
    columns: int | None,
    seed: int | None,
    z: Any,
    truncation: float | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model}
    if labels is not None:
        body["labels"] = list(labels)
    for key, value in (("columns", columns), ("seed", seed), ("truncation", truncation)):
        if value is not None:
            body[key] = value
    if z is not None:
        body["z"] = np.asarray(z, dtype=np.float32)
    return body


def _grid_images(model: str, card: dict[str, Any], body: dict[str, Any], answer: _Answer) -> Images:
    images = decode_npy(answer.body)
    names = card.get("labels") or []
    rows = body.get("labels")
    row_ids = [resolve_label(model, names, lab) for lab in rows] if rows else list(range(len(names)))
    cols = images.shape[0] // max(1, len(row_ids))
    seed_header = answer.headers.get("x-condgen-seed")
    seed = int(seed_header) if seed_header else None
    seeds = None if seed is None else np.full(images.shape[0], seed, dtype=np.int64)
    indices = None if seed is None else np.tile(np.arange(cols, dtype=np.int64), len(row_ids))
    labels = np.repeat(np.asarray(row_ids, dtype=np.int64), cols)
    return Images(model, images, labels, seeds, indices, seed=seed, layout=(len(row_ids), cols))


def _path_images(model: str, card: dict[str, Any], label: Label | None, answer: _Answer) -> Images:
    images = decode_npy(answer.body)
    labels = None
    if label is not None:
        labels = np.full(images.shape[0], resolve_label(model, card.get("labels"), label), dtype=np.int64)
    header = answer.headers.get("x-condgen-seed")
    ends = tuple(int(s) for s in header.split(",")) if header else None
    return Images(
        model,
        images,
        labels,
        None,
        None,
        layout=(1, images.shape[0]),
        ends=(ends[0], ends[1]) if ends is not None and len(ends) == 2 else None,
    )


class Client(_Core):
    """A blocking client. ``with Client(url) as c:`` closes its connections at the end."""

    def __init__(self, url: str = DEFAULT_URL, api_key: str | None = None, **options: Any) -> None:
        super().__init__(ClientConfig(url=url.rstrip("/"), api_key=api_key, **options))
        self._http = httpx.Client(
            base_url=self.config.url, headers=self.config.headers(), timeout=self.config.timeout_s
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, method: str, path: str, body: dict[str, Any] | None = None, accept: str = NPY) -> _Answer:
        content = None if body is None else self._dumps(body)
        headers = {"accept": accept}
        if content is not None:
            headers["content-type"] = "application/json"
        attempt = 0
        while True:
            try:
                resp = self._http.request(method, path, content=content, headers=headers)
            except httpx.TransportError as exc:
                error: CondgenError = transport_error(self.config.url, path, exc)
            else:
                if resp.status_code < 400:
                    return _Answer(resp.content, resp.headers)
                error = error_from_response(resp.status_code, resp.content, resp.headers)
            wait = self.config.retry.wait_s(error, attempt)
            if wait is None:
                raise error
            time.sleep(wait)
            attempt += 1

    # ------------------------------------------------------------------ models and cards
    def models(self) -> list[ModelInfo]:
        """Every model on the server with its status, the providers it runs on, and its card."""
        models, max_n = self._models(self._send("GET", "/models", accept="application/json"))
        if self._max_n is None:
            self._max_n = max_n or DEFAULT_MAX_N
        return models

    def card(self, name: str) -> dict[str, Any]:
        """The model's card (``GET /models/{name}``), read once per client."""
        if name not in self._cards:
            self._cards[name] = orjson.loads(
                self._send("GET", f"/models/{name}", accept="application/json").body
            )
        return self._cards[name]

    def max_n(self) -> int:
        """Images per request: the server's max_n (or the ``max_n`` this client was given)."""
        if self._max_n is None:
            self.models()
        assert self._max_n is not None
        return self._max_n

    # ------------------------------------------------------------------ images
    def generate(
        self,
        model: str,
        label: Label | None = None,
        *,
        labels: Sequence[Label] | None = None,
        n: int | None = None,
        seed: int | None = None,
        offset: int = 0,
        z: Any = None,
        truncation: float | None = None,
    ) -> Images:
        """``n`` images (or one per label / latent). Image i uses the latent of (seed, offset + i);
        without a seed one is drawn and returned in ``.seeds``."""
        job = self._job(
            model,
            self.card(model),
            self.max_n(),
            label=label,
            labels=labels,
            n=n,
            seed=seed,
            offset=offset,
            z=z,
            truncation=truncation,
        )
        if len(job.chunks) == 1:
            parts = [decode_npy(self._send("POST", "/generate", job.chunks[0].body).body)]
        else:
            failed = threading.Event()

            def send(body: dict[str, Any]) -> _Answer:
                if failed.is_set():  # after a failed chunk the others are not sent to be discarded
                    raise CancelledError
                try:
                    return self._send("POST", "/generate", body)
                except BaseException:
                    failed.set()
                    raise

            with ThreadPoolExecutor(min(self.config.concurrency, len(job.chunks))) as pool:
                answers = pool.map(send, (c.body for c in job.chunks))
                parts = [decode_npy(a.body) for a in answers]
        return self._images(job, parts)

    def grid(
        self,
        model: str,
        labels: Sequence[Label] | None = None,
        *,
        columns: int | None = None,
        seed: int | None = None,
        z: Any = None,
        truncation: float | None = None,
    ) -> Images:
        """Labels × latents: row r is ``labels[r]`` (every class by default), column j the latent
        of (seed, j). ``.layout`` is (rows, columns)."""
        body = _grid_body(model, labels, columns, seed, z, truncation)
        return _grid_images(model, self.card(model), body, self._send("POST", "/grid", body))

    def interpolate(
        self,
        model: str,
        label: Label | None = None,
        *,
        seeds: tuple[int, int] | None = None,
        z: Any = None,
        steps: int = 8,
        spherical: bool = True,
        truncation: float | None = None,
    ) -> Images:
        """``steps`` images on the path between two seeds' first latents (or two ``z``)."""
        body = _path_body(model, label, seeds, z, steps, spherical, truncation)
        return _path_images(model, self.card(model), label, self._send("POST", "/interpolate", body))


def _path_body(
    model: str,
    label: Label | None,
    seeds: tuple[int, int] | None,
    z: Any,
    steps: int,
    spherical: bool,
    truncation: float | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "steps": steps, "spherical": spherical}
    if label is not None:
        body["label"] = label
    if seeds is not None:
        body["seeds"] = list(seeds)
    if z is not None:
        body["z"] = np.asarray(z, dtype=np.float32)
    if truncation is not None:
        body["truncation"] = truncation
    return body


class AsyncClient(_Core):
    """The asyncio twin of :class:`Client`: ``async with AsyncClient(url) as c: await c.generate(...)``."""

    def __init__(self, url: str = DEFAULT_URL, api_key: str | None = None, **options: Any) -> None:
        super().__init__(ClientConfig(url=url.rstrip("/"), api_key=api_key, **options))
        self._http = httpx.AsyncClient(
            base_url=self.config.url, headers=self.config.headers(), timeout=self.config.timeout_s
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(
        self, method: str, path: str, body: dict[str, Any] | None = None, accept: str = NPY
    ) -> _Answer:
        content = None if body is None else self._dumps(body)
        headers = {"accept": accept}
        if content is not None:
            headers["content-type"] = "application/json"
        attempt = 0
        while True:
            try:
                resp = await self._http.request(method, path, content=content, headers=headers)
            except httpx.TransportError as exc:
                error: CondgenError = transport_error(self.config.url, path, exc)
            else:
                if resp.status_code < 400:
                    return _Answer(resp.content, resp.headers)
                error = error_from_response(resp.status_code, resp.content, resp.headers)
            wait = self.config.retry.wait_s(error, attempt)
            if wait is None:
                raise error
            await asyncio.sleep(wait)
            attempt += 1

    async def models(self) -> list[ModelInfo]:
        models, max_n = self._models(await self._send("GET", "/models", accept="application/json"))
        if self._max_n is None:
            self._max_n = max_n or DEFAULT_MAX_N
        return models

    async def card(self, name: str) -> dict[str, Any]:
        if name not in self._cards:
            answer = await self._send("GET", f"/models/{name}", accept="application/json")
            self._cards[name] = orjson.loads(answer.body)
        return self._cards[name]

    async def max_n(self) -> int:
        if self._max_n is None:
            await self.models()
        assert self._max_n is not None
        return self._max_n

    async def generate(
        self,
        model: str,
        label: Label | None = None,
        *,
        labels: Sequence[Label] | None = None,
        n: int | None = None,
        seed: int | None = None,
        offset: int = 0,
        z: Any = None,
        truncation: float | None = None,
    ) -> Images:
        job = self._job(
            model,
            await self.card(model),
            await self.max_n(),
            label=label,
            labels=labels,
            n=n,
            seed=seed,
            offset=offset,
            z=z,
            truncation=truncation,
        )
        gate = asyncio.Semaphore(self.config.concurrency)

        async def one(body: dict[str, Any]) -> np.ndarray:
            async with gate:
                return decode_npy((await self._send("POST", "/generate", body)).body)

        # A task group: the first failed chunk cancels the others and its error is raised.
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(one(c.body)) for c in job.chunks]
        except BaseExceptionGroup as failed:
            raise failed.exceptions[0] from None
        return self._images(job, [t.result() for t in tasks])

    async def grid(
        self,
        model: str,
        labels: Sequence[Label] | None = None,
        *,
        columns: int | None = None,
        seed: int | None = None,
        z: Any = None,
        truncation: float | None = None,
    ) -> Images:
        body = _grid_body(model, labels, columns, seed, z, truncation)
        return _grid_images(model, await self.card(model), body, await self._send("POST", "/grid", body))

    async def interpolate(
        self,
        model: str,
        label: Label | None = None,
        *,
        seeds: tuple[int, int] | None = None,
        z: Any = None,
        steps: int = 8,
        spherical: bool = True,
        truncation: float | None = None,
    ) -> Images:
        body = _path_body(model, label, seeds, z, steps, spherical, truncation)
        answer = await self._send("POST", "/interpolate", body)
        return _path_images(model, await self.card(model), label, answer)
