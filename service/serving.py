"""The serving core that ``/generate``, ``/grid``, ``/interpolate`` and ``/v2`` share.

:class:`Resources` is what the lifespan owns (settings, registry, batchers, metrics). It answers
"can this model serve?" in one place: :meth:`Resources.state_of` gives a :class:`ModelState`
(readiness endpoints show it), and :meth:`Resources.lookup` turns it into the model's batcher or
the error a client should see. :func:`infer` queues rows on that batcher and awaits their images
(:func:`await_result`); the routes only parse requests and encode answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import gc
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

import numpy as np
import orjson
from fastapi import Depends, Request
from starlette.responses import JSONResponse, Response
from starlette.types import Message

from service.batcher import DynamicBatcher
from service.card import ModelCard, is_valid_name
from service.config import Settings
from service.context import note_model
from service.encode import MediaType
from service.errors import (
    ClientDisconnected,
    ModelNotReady,
    RequestTimeout,
    ShuttingDown,
    Unavailable,
    UnknownModel,
)
from service.metrics import Metrics
from service.registry import ModelEntry, ModelRegistry, RunnerFactory, default_runner_factory
from service.supervisor import ReloadReport, activate, log_report, reload_repository

T = TypeVar("T")

# How many names an "unknown model" message lists: enough to spot a typo, bounded for any repository.
KNOWN_NAMES_SHOWN = 20

# A full collection stalls the event loop for 50-100 ms (about 70,000 objects, 2 cores), so the one
# that frees retired sessions waits until reloads have been quiet this long (seconds)...
SETTLE_QUIET_S = 1.0
# ...but a storm of reloads postpones it no longer than this (seconds): retired sessions are freed.
SETTLE_MAX_DEFER_S = 30.0


class HeapSettler:
    """Runs :func:`settle_heap` once a burst of reloads is over rather than after each of them.

    ``settle_soon`` (re)arms a timer of ``quiet_s``; a burst that keeps re-arming it is settled
    anyway once ``max_defer_s`` has passed since its first request, so a reload storm costs one
    stall per ``max_defer_s`` instead of one per reload.
    """

    def __init__(self, quiet_s: float = SETTLE_QUIET_S, max_defer_s: float = SETTLE_MAX_DEFER_S) -> None:
        self.quiet_s = quiet_s
        self.max_defer_s = max_defer_s
        self._timer: asyncio.TimerHandle | None = None
        self._first: float | None = None  # loop time of the first request not yet settled
        self.settled = 0  # how many times it ran (tests, logs)

    @property
    def pending(self) -> bool:
        return self._timer is not None

    def settle_soon(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._first is None:
            self._first = now
        if self._timer is not None:
            self._timer.cancel()
        at = min(now + self.quiet_s, self._first + self.max_defer_s)
        self._timer = loop.call_at(at, self._settle)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._first = None

    def _settle(self) -> None:
        self._timer = self._first = None
        settle_heap()
        self.settled += 1


class Availability(enum.Enum):
    """Whether a model can take work now, and if not, what kind of not."""

    READY = "ready"
    FAILED = "failed"  # never loaded: only new files and a reload help
    NOT_READY = "not_ready"  # loaded, but its worker cannot take work now
    SHUTTING_DOWN = "shutting_down"  # the service, or this model's batcher, is draining


@dataclass(frozen=True)
class ModelState:
    availability: Availability
    reason: str | None = None

    @property
    def ready(self) -> bool:
        return self.availability is Availability.READY

    @property
    def status(self) -> str:
        """The word ``/models`` and ``/readyz`` show: ready, failed or not_ready."""
        if self.availability is Availability.SHUTTING_DOWN:
            return Availability.NOT_READY.value
        return self.availability.value


READY = ModelState(Availability.READY)


@dataclass(frozen=True)
class Served:
    """A model that can take work now: its entry, its card and its batcher."""

    entry: ModelEntry
    card: ModelCard
    batcher: DynamicBatcher


@dataclass
class Resources:
    """Everything the lifespan owns; routes get it through :func:`get_resources`."""

    settings: Settings
    registry: ModelRegistry
    batchers: dict[str, DynamicBatcher]
    metrics: Metrics
    runner_factory: RunnerFactory = default_runner_factory
    closing: bool = False
    # time.monotonic() by which a drain (SIGTERM) must be over; None while not draining.
    drain_deadline: float | None = None
    reload_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Batchers replaced by a reload, finishing the work queued on them.
    retiring: set[asyncio.Task[None]] = field(default_factory=set)
    heap: HeapSettler = field(default_factory=HeapSettler)

    # ------------------------------------------------------------------ which model, in what state
    def entry(self, name: str) -> ModelEntry:
        """The repository's entry for ``name``, loaded or not; :class:`UnknownModel` if none."""
        # Names index a dict, never the file system; anything that is not a model name is unknown.
        entry = self.registry.get(name) if is_valid_name(name) else None
        if entry is None:
            known = ", ".join(self.registry.names[:KNOWN_NAMES_SHOWN]) or "none"
            raise UnknownModel(f"unknown model {name!r}; known models: {known}")
        return entry

    def card_of(self, name: str, version: str | None = None) -> tuple[ModelEntry, ModelCard]:
        """The entry and its card (of ``version``, when given), whether or not it can serve now."""
        entry = self.entry(name)
        if entry.card is None:
            raise _failed(entry)
        if version is not None and version != entry.card.version:
            raise UnknownModel(f"model {name!r} has no version {version!r}; available: {entry.card.version}")
        return entry, entry.card

    def state_of(self, entry: ModelEntry) -> ModelState:
        if not entry.loaded:
            return ModelState(Availability.FAILED, entry.reason)
        batcher = self.batchers.get(entry.name)
        if batcher is None:
            return ModelState(Availability.NOT_READY, "no batching worker")
        if self.closing or batcher.state in {"stopping", "stopped"}:
            return ModelState(Availability.SHUTTING_DOWN, "shutting down")
        if not batcher.ready:
            return ModelState(Availability.NOT_READY, batcher.dead_reason or "batching worker is not running")
        stuck_s = batcher.run_in_flight_s
        if stuck_s > self.settings.request_timeout_s:
            # No client could get an answer in time; let the load balancer route around us.
            return ModelState(Availability.NOT_READY, f"a session run has been in flight for {stuck_s:.0f} s")
        return READY

    def lookup(self, name: str, version: str | None = None) -> Served:
        """The model's card and batcher if it can take work now, else the error a client should see."""
        entry, card = self.card_of(name, version)
        if not entry.loaded:
            raise _failed(entry)
        if self.closing:
            raise ShuttingDown("the service is shutting down")
        state = self.state_of(entry)
        if state.availability is Availability.SHUTTING_DOWN:
            raise ShuttingDown(f"model {name!r} is shutting down")
        if not state.ready:
            raise ModelNotReady(f"model {name!r} is not ready: {state.reason}", retry_after_s=5.0)
        return Served(entry, card, self.batchers[name])

    @property
    def any_ready(self) -> bool:
        return any(self.state_of(entry).ready for entry in self.registry)

    # ------------------------------------------------------------------ drain and reload
    def begin_drain(self) -> None:
        """SIGTERM: readiness fails and new work is refused at once; queued work may finish."""
        if self.drain_deadline is None:
            self.drain_deadline = time.monotonic() + self.settings.drain_timeout_s
        self.closing = True

    def grace_left_s(self) -> float:
        if self.drain_deadline is None:
            return self.settings.drain_timeout_s
        return max(0.0, self.drain_deadline - time.monotonic())

    async def reload(self, trigger: str) -> ReloadReport:
        """Re-scan the models directory and swap in what changed; see :mod:`service.supervisor`."""
        async with self.reload_lock:
            if self.closing:
                raise ShuttingDown("the service is shutting down; not reloading")
            reloaded = await in_daemon_thread(
                reload_repository, self.registry, self.batchers, self.settings, self.runner_factory
            )
            if self.closing:  # the drain went on without this reload: its models never start
                raise ShuttingDown("the service began shutting down during the reload; not swapping")
            old = self.batchers
            # No await from here to the swap: every request sees the old models or the new ones.
            activate(reloaded, old, self.metrics)
            self.registry, self.batchers = reloaded.registry, reloaded.batchers
            for batcher in reloaded.retired:
                task = asyncio.create_task(self._retire(batcher), name=f"retire-{batcher.name}")
                self.retiring.add(task)
                task.add_done_callback(self._retired)
            self.metrics.reloads.labels("ok" if reloaded.report.ok else "partial").inc()
            log_report(reloaded.report, trigger)
            return reloaded.report

    def _retired(self, task: asyncio.Task[None]) -> None:
        self.retiring.discard(task)
        if not self.retiring and not self.closing:
            # The reload is over (the retiring tasks' frames are gone too): collect any cycles
            # left among the replaced sessions, and freeze the new ones with the rest.
            self.heap.settle_soon()

    async def _retire(self, batcher: DynamicBatcher) -> None:
        await batcher.stop(self.settings.drain_timeout_s)
        if batcher.name not in self.batchers:
            self.metrics.forget_model(batcher.name)


async def in_daemon_thread(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` on a daemon thread: unlike ``asyncio.to_thread``'s executor, which the
    interpreter joins at exit, a slow reload (hashing a large model) cannot hold up a drain."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if done.cancelled():
            return
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        result: T | None = None
        error: BaseException | None = None
        try:
            result = fn(*args)
        except BaseException as exc:
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop closed first: nobody is waiting
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=run, name="reload", daemon=True).start()
    return await done


def _failed(entry: ModelEntry) -> ModelNotReady:
    # No Retry-After: a model that failed to load will not heal by itself.
    return ModelNotReady(f"model {entry.name!r} failed to load: {entry.reason}", retry_after_s=None)


def settle_heap() -> None:
    """Collect garbage, then freeze what is left out of the cyclic collector's reach.

    After start-up (and after a reload has retired old sessions) nearly every object in the
    process (modules, sessions, cards, ~70,000 of them) lives as long as the process. Frozen, they
    are no longer walked by the full collections that request traffic triggers, which would
    otherwise stall the event loop, and every request waiting on it, for milliseconds at a time.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()


# ---------------------------------------------------------------------------------- dependencies
def resources_or_none(request: Request) -> Resources | None:
    """The app's resources, or None before the lifespan has loaded the models."""
    resources: Resources | None = getattr(request.app.state, "resources", None)
    return resources


def resources_of(request: Request) -> Resources:
    resources = resources_or_none(request)
    if resources is None:
        raise Unavailable("the service is starting; models are not loaded yet", retry_after_s=1.0)
    return resources


async def get_resources(request: Request) -> Resources:
    """The dependency. async on purpose: FastAPI runs a plain ``def`` dependency in its thread
    pool, a thread hop per request that cost 17% of the CPU profile at n=1 for a getattr."""
    return resources_of(request)


ResourcesDep = Annotated[Resources, Depends(get_resources)]


def card_of(
    request: Request, name: str, version: str | None = None
) -> tuple[Resources, ModelEntry, ModelCard]:
    """:meth:`Resources.card_of` for a request, which also records the model it named."""
    note_model(request.scope, name)
    resources = resources_of(request)
    entry, card = resources.card_of(name, version)
    return resources, entry, card


def lookup(request: Request, name: str, version: str | None = None) -> Served:
    """:meth:`Resources.lookup` for a request, which also records the model it named."""
    note_model(request.scope, name)
    return resources_of(request).lookup(name, version)


# ---------------------------------------------------------------------------------- results
async def infer(
    request: Request,
    served: Served,
    z: np.ndarray,
    labels: np.ndarray | None,
    timeout_s: float,
    watch_after_s: float = 0.0,
) -> np.ndarray:
    """Queue the rows on the model's batcher and wait for their uint8 images."""
    future = served.batcher.submit(z, labels)
    return await await_result(request, future, timeout_s, watch_after_s)


async def _watch_disconnect(receive: Any, give_up: Callable[[str], None]) -> None:
    """Give up on the result when the client disconnects (the body has been read; nothing else
    arrives but the disconnect)."""
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            give_up("disconnected")
            return


async def await_result(
    request: Request, future: asyncio.Future[np.ndarray], timeout_s: float, watch_after_s: float = 0.0
) -> np.ndarray:
    """Wait for the batcher's result; give up on timeout or client disconnect.

    Either way the future is cancelled, so a request still queued is dropped before compute. The
    disconnect watcher (a task reading ``receive``) starts after ``watch_after_s``: most results
    come sooner, and for them it would be pure overhead. The future is awaited directly, with
    timers that cancel it: ``asyncio.wait`` builds a waiter future, a set and callbacks per
    request, about 11 µs against 3 µs here on a 2-core EPYC under uvloop.
    """
    if future.done() and not future.cancelled():
        return future.result()
    loop = asyncio.get_running_loop()
    reasons: list[str] = []
    watcher: asyncio.Task[None] | None = None

    def give_up(reason: str) -> None:
        if not future.done():
            reasons.append(reason)
            future.cancel()

    def watch() -> None:
        nonlocal watcher
        watcher = loop.create_task(_watch_disconnect(request.receive, give_up))

    deadline = loop.call_later(timeout_s, give_up, "timeout")
    watching = loop.call_later(watch_after_s, watch) if watch_after_s < timeout_s else None
    try:
        # A cancellation of this task cancels the awaited future too: the batcher drops it.
        return await future
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise  # this request's own task was cancelled (server shutdown): not ours to word
        if reasons == ["disconnected"]:
            raise ClientDisconnected("client disconnected before the result was ready") from None
        raise RequestTimeout(
            f"no result within {timeout_s:g} s; the model is overloaded", retry_after_s=1.0
        ) from None
    finally:
        deadline.cancel()
        if watching is not None:
            watching.cancel()
        if watcher is not None:
            watcher.cancel()


# ---------------------------------------------------------------------------------- responses
class OrjsonResponse(JSONResponse):
    # A JSONResponse, so that FastAPI documents routes' response models as JSON schemas.
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


_MEDIA_TYPES = {media: media.value.encode() for media in MediaType}


class ImageResponse(Response):
    """A 200 whose raw headers are assembled here, in the order ``Response`` would produce them.

    ``Response.__init__`` takes headers as a mapping and lower-cases, encodes and scans them
    for content-length and content-type on every call: several µs per request, for headers
    the caller already knows the exact bytes of.
    """

    def __init__(self, body: bytes, media: MediaType, headers: list[tuple[bytes, bytes]]) -> None:
        self.status_code = 200
        self.background = None
        self.media_type = media.value
        self.body = body
        self.raw_headers = [
            *headers,
            (b"content-length", str(len(body)).encode()),
            (b"content-type", _MEDIA_TYPES[media]),
        ]
