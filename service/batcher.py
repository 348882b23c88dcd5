"""Dynamic batching: one bounded queue and one worker per model.

Requests (each ``n`` images with their latents and labels) wait in a FIFO queue. The collector
takes the first request, then keeps filling the batch until it holds ``max_batch_size`` images or
``max_wait_s`` has passed since that first request arrived, and runs the model ONCE for the whole
batch on a dedicated worker thread (so the event loop keeps serving). Outputs are checked (one
image per input row) and split back by request.

* Requests with different ``n`` and labels coalesce freely: a batch is rows, not requests.
* A request larger than ``max_batch_size`` is sliced across consecutive runs (its later slices
  lead the next batch), so it can neither deadlock nor starve behind the size limit.
* Every future gets a result or an exception: a failing shared run is re-run request by request,
  so a request whose rows fail alone gets :class:`InvalidRequest` and the others their images; if
  every request fails alone, the batch fails (:class:`InferenceFailed`) and counts as a failed run;
  :meth:`DynamicBatcher.stop` fails what is left (:class:`ShuttingDown`);
  a crashed collector fails everything pending (:class:`WorkerDied`) and is restarted like a broken
  session (below). An exception while a batch runs fails that batch only; the worker goes on.
* Rows that do not fit the model (another latent size or label set: planned against a version a
  reload replaced) are refused at :meth:`DynamicBatcher.submit` with :class:`ModelChanged`, so
  they never reach a shared run.
* A request whose future was cancelled (client gone, timeout) is dropped before it costs compute.
* The queue is bounded in images and in requests; a full queue raises :class:`QueueFull` at once,
  with a Retry-After estimated from recent run times.
* A request still queued ``queue_timeout_s`` after it arrived is dropped before compute and
  failed with :class:`QueueTimeout` (503): under overload, late answers help nobody.
* Faults heal without a restart. A run longer than ``run_timeout_s`` is treated as hung (the
  runner is asked to abort, the worker thread is abandoned), and ``failure_threshold`` failed runs
  in a row mean a broken session; either way the model turns not ready, every waiting request
  fails at once (:class:`ModelNotReady`, 503), and ``recover()`` builds a new runner, retried with
  backoff, before the model takes requests again.

``session_runs`` counts runner calls (also exported as ``condgen_session_runs_total``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from service.card import ModelCard
from service.config import Settings
from service.errors import (
    InferenceFailed,
    InvalidRequest,
    ModelChanged,
    ModelNotReady,
    QueueFull,
    QueueTimeout,
    ServiceError,
    ShuttingDown,
    WorkerDied,
)
from service.metrics import Metrics, detached_series
from service.runtime import ModelLoadError, Runner, abort_run, images_problem

logger = logging.getLogger(__name__)

State = Literal["created", "ready", "recovering", "stopping", "stopped", "dead"]

# uvloop's clock counts milliseconds and a timer may fire within one of its due time: a request
# due that soon is expired now, so the queue-deadline timer never re-arms for the same instant.
_CLOCK_SLACK_S = 0.001
# Smoothing for the run-time estimate behind Retry-After: about the last 10 runs dominate.
_EWMA_ALPHA = 0.2
# Longest wait between two attempts to re-create a broken session, seconds.
_MAX_BACKOFF_S = 60.0
# Longest one re-creation (session load + probe run) may take before it counts as failed, seconds.
_RECOVER_TIMEOUT_S = 120.0


@dataclass(eq=False)
class _Job:
    z: np.ndarray  # float32 (n, dim)
    labels: np.ndarray | None  # int64 (n,) or None
    future: asyncio.Future[np.ndarray]
    enqueued_at: float  # event-loop clock, seconds
    taken: int = 0  # rows already handed to a batch
    parts: list[np.ndarray] = field(default_factory=list)
    wait_observed: bool = False
    dropped: bool = False

    @property
    def n(self) -> int:
        return int(self.z.shape[0])


class _RunFailed(Exception):
    """A session run raised (already logged); the caller decides whose fault it was."""


def _retrieve(future: asyncio.Future[np.ndarray]) -> None:
    if not future.cancelled():
        future.exception()


# A batch is a list of (job, first row, end row) slices.
_Slice = tuple[_Job, int, int]


def _inputs(live: list[_Slice]) -> tuple[np.ndarray, np.ndarray | None]:
    """The run's latents and labels: the slices' rows, concatenated in order."""
    if len(live) == 1 and live[0][1] == 0 and live[0][2] == live[0][0].n:
        return live[0][0].z, live[0][0].labels  # one whole request: no copy
    z = np.concatenate([job.z[a:b] for job, a, b in live])
    if live[0][0].labels is None:
        return z, None
    return z, np.concatenate([job.labels[a:b] for job, a, b in live if job.labels is not None])


class DynamicBatcher:
    def __init__(
        self,
        name: str,
        runner: Runner,
        *,
        max_batch_size: int = 64,
        max_wait_s: float = 0.005,
        max_queue_images: int = 1024,
        max_queue_requests: int = 512,
        metrics: Metrics | None = None,
        queue_timeout_s: float | None = None,
        run_timeout_s: float | None = None,
        failure_threshold: int = 3,
        recover: Callable[[], Runner] | None = None,
        recovery_backoff_s: float = 1.0,
        card: ModelCard | None = None,
    ) -> None:
        if max_batch_size < 1 or max_queue_images < 1 or max_queue_requests < 1 or max_wait_s < 0:
            raise ValueError("batch and queue limits must be >= 1 and max_wait_s >= 0")
        if failure_threshold < 1 or recovery_backoff_s <= 0:
            raise ValueError("failure_threshold must be >= 1 and recovery_backoff_s > 0")
        self.name = name
        self.runner = runner
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.max_queue_images = max_queue_images
        self.max_queue_requests = max_queue_requests
        # Without metrics the series are detached ones nobody exports, so updates need no guard.
        self._series = metrics.for_model(name) if metrics is not None else detached_series(name)
        self.queue_timeout_s = queue_timeout_s
        self._expiry: asyncio.TimerHandle | None = None  # the queue deadline of the oldest request
        self.run_timeout_s = run_timeout_s
        self.failure_threshold = failure_threshold
        self.recovery_backoff_s = recovery_backoff_s
        # Builds a fresh runner (a new session) for recovery; None reuses the current one.
        self._recover_fn = recover
        # What submitted rows must fit (None: unchecked): latent width, and label count or None.
        self._fit: tuple[int, int | None] | None = (
            None if card is None else (card.latent.dim, card.num_classes if card.conditional else None)
        )

        self.session_runs = 0  # runner calls so far
        self.images_generated = 0  # images delivered to waiting requests
        self.dropped_requests = 0  # cancelled before compute
        self.expired_requests = 0  # queue deadline passed before compute
        self.failed_runs = 0
        self.consecutive_failures = 0
        self.recoveries = 0  # sessions re-created after a fault
        self._recovery_streak = 0  # recoveries since the last successful run
        self.dead_reason: str | None = None
        # Replaced by a newer batcher for the same model (a reload): stopping this one must not
        # report the model as not ready.
        self.superseded = False

        self._state: State = "created"
        self._queue: deque[_Job] = deque()
        self._queued_images = 0
        self._inflight: list[_Slice] = []  # rows taken from the queue and not yet resolved
        self._arrived = asyncio.Event()
        self._idle = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._halted = False  # set by stop(): the collector ends at its next batch
        # One thread per model: runs of one session never overlap (ORT parallelises inside a run
        # with its own intra-op threads), and a slow model cannot starve another model's runs.
        self._executor = self._new_executor()
        self._run_seconds_ewma: float | None = None
        self._run_started: float | None = None  # time.monotonic() of the run in flight, if any

    @classmethod
    def from_settings(
        cls,
        name: str,
        runner: Runner,
        settings: Settings,
        metrics: Metrics | None = None,
        recover: Callable[[], Runner] | None = None,
        card: ModelCard | None = None,
    ) -> DynamicBatcher:
        return cls(
            name,
            runner,
            max_batch_size=settings.max_batch_size,
            max_wait_s=settings.max_wait_s,
            max_queue_images=settings.max_queue_images,
            max_queue_requests=settings.max_queue_requests,
            metrics=metrics,
            queue_timeout_s=settings.effective_queue_timeout_s,
            run_timeout_s=settings.run_timeout_s,
            failure_threshold=settings.failure_threshold,
            recover=recover,
            recovery_backoff_s=settings.recovery_backoff_s,
            card=card,
        )

    # ------------------------------------------------------------------ lifecycle and state
    def attach_metrics(self, metrics: Metrics) -> None:
        """Report to ``metrics`` from now on (a reload builds its batchers off the loop without)."""
        self._series = metrics.for_model(self.name)

    def start(self) -> None:
        """Start the collector on the running event loop."""
        if self._state != "created":
            raise RuntimeError(f"batcher {self.name!r} was already started")
        self._task = asyncio.get_running_loop().create_task(self._collect(), name=f"batcher-{self.name}")
        self._task.add_done_callback(self._on_collector_done)
        self._state = "ready"
        self._idle.set()
        self._series.ready.set(1)

    @property
    def state(self) -> State:
        return self._state

    @property
    def ready(self) -> bool:
        return self._state == "ready" and self._task is not None and not self._task.done()

    @property
    def queued_images(self) -> int:
        return self._queued_images

    @property
    def queued_requests(self) -> int:
        return len(self._queue)

    @property
    def run_in_flight_s(self) -> float:
        """Seconds the current session run has taken so far; 0 when idle. A stuck session
        (a hung GPU, a deadlocked provider) shows here long before anything else notices."""
        return 0.0 if self._run_started is None else time.monotonic() - self._run_started

    def describe(self) -> dict[str, object]:
        return {
            "state": self._state,
            "queued_images": self._queued_images,
            "queued_requests": len(self._queue),
            "session_runs": self.session_runs,
            "images_generated": self.images_generated,
            "expired_requests": self.expired_requests,
            "recoveries": self.recoveries,
            "reason": self.dead_reason,
        }

    async def stop(self, drain_timeout_s: float = 0.0) -> None:
        """Refuse new work, let queued work finish for up to ``drain_timeout_s``, fail the rest."""
        if self._state in {"stopping", "stopped"}:
            return
        was_running = self.ready
        self._state = "stopping"
        if was_running and drain_timeout_s > 0 and not self._idle.is_set():
            try:
                async with asyncio.timeout(drain_timeout_s):
                    await self._idle.wait()
            except TimeoutError:
                logger.warning(
                    "model %s: %d request(s) still queued after %.1f s of draining; failing them",
                    self.name,
                    len(self._queue) + len(self._inflight),
                    drain_timeout_s,
                )
        self._halted = True
        if self._task is not None and not self._task.done():
            self._task.cancel()
        # Waiting requests get their 503 before the collector is awaited: their answers must not
        # depend on how fast it winds down.
        self._fail_pending(ShuttingDown(f"model {self.name!r} is shutting down", retry_after_s=1.0))
        if self._task is not None and not self._task.done():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        # A run already on the worker thread cannot be interrupted; it finishes and is discarded.
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._state = "stopped"
        if not self.superseded:
            self._series.ready.set(0)

    # ------------------------------------------------------------------ producer side
    def submit(self, z: np.ndarray, labels: np.ndarray | None = None) -> asyncio.Future[np.ndarray]:
        """Queue ``z`` (float32 n×dim) and ``labels`` (int64 n, or None); returns the result future.

        The future resolves to uint8 ``(n, C, H, W)``. Cancelling it withdraws the request.
        Raises :class:`QueueFull`, :class:`ModelNotReady`, :class:`ShuttingDown` or
        :class:`ModelChanged` (rows that do not fit this batcher's model) at once.
        """
        if not self.ready:
            if self._state in {"stopping", "stopped"}:
                raise ShuttingDown(f"model {self.name!r} is shutting down", retry_after_s=1.0)
            raise ModelNotReady(
                f"model {self.name!r} is not ready" + (f": {self.dead_reason}" if self.dead_reason else ""),
                retry_after_s=5.0,
            )
        if z.ndim != 2 or z.shape[0] < 1:
            raise ValueError(f"z must be (n >= 1, dim), got shape {z.shape}")
        if labels is not None and labels.shape != (z.shape[0],):
            raise ValueError(f"labels must have shape ({z.shape[0]},), got {labels.shape}")
        if self._fit is not None:
            self._check_fit(z, labels, *self._fit)
        n = int(z.shape[0])
        if not self._has_room(n):
            self._prune()  # cancelled requests still in the queue must not cause a 429
            if not self._has_room(n):
                raise QueueFull(
                    f"model {self.name!r} has {self._queued_images} image(s) in "
                    f"{len(self._queue)} request(s) queued; try again shortly",
                    retry_after_s=self._retry_after_s(),
                )
        loop = asyncio.get_running_loop()
        job = _Job(z=z, labels=labels, future=loop.create_future(), enqueued_at=loop.time())
        job.future.add_done_callback(lambda fut: self._withdraw(job) if fut.cancelled() else None)
        if self.queue_timeout_s is not None and self._expiry is None:
            self._expiry = loop.call_at(job.enqueued_at + self.queue_timeout_s, self._expire_due)
        self._queue.append(job)
        self._queued_images += n
        self._idle.clear()
        self._arrived.set()
        self._gauge_depth()
        return job.future

    def _check_fit(self, z: np.ndarray, labels: np.ndarray | None, dim: int, classes: int | None) -> None:
        """Refuse rows planned for another version of the model; one shape check and a min/max."""
        in_range = True
        if labels is not None and classes is not None:
            # A few labels compare faster as Python ints than through two numpy reductions.
            ends = labels.tolist() if labels.shape[0] <= 16 else (int(labels.min()), int(labels.max()))
            in_range = min(ends) >= 0 and max(ends) < classes
        if z.shape[1] == dim and (labels is None) == (classes is None) and in_range:
            return
        raise ModelChanged(
            f"model {self.name!r} changed while the request was planned (it takes latents of size {dim}"
            + ("" if classes is None else f" and labels 0..{classes - 1}")
            + "); retry",
            retry_after_s=1.0,
        )

    def _has_room(self, n: int) -> bool:
        if len(self._queue) >= self.max_queue_requests:
            return False
        # A request bigger than the whole bound is still admitted into an empty queue: the
        # settings keep max_queue_images >= the largest allowed request, this is the safety net.
        return self._queued_images + n <= self.max_queue_images or not self._queue

    def _withdraw(self, job: _Job) -> None:
        """A cancelled request leaves the queue at once, so depth and 429s reflect live work."""
        try:
            self._queue.remove(job)  # O(queue length); queues are bounded and short
        except ValueError:
            return  # already taken into a batch (its rows are discarded) or already failed
        self._queued_images -= job.n - job.taken
        self._count_dropped(job)
        self._gauge_depth()
        if not self._queue and not self._inflight:
            self._idle.set()

    def _count_dropped(self, job: _Job) -> None:
        if not job.dropped:
            job.dropped = True
            self.dropped_requests += 1
            self._series.dropped_cancelled.inc()

    def _expire_due(self) -> None:
        """Drop the queued requests past their queue deadline; arm the timer for the next one.

        One timer per batcher rather than one per request, started and cancelled by each: the
        queue is in arrival order, so its first request that has not started expires next."""
        self._expiry = None
        assert self.queue_timeout_s is not None
        loop = asyncio.get_running_loop()
        cutoff = loop.time() + _CLOCK_SLACK_S - self.queue_timeout_s
        due: list[_Job] = []
        for job in self._queue:
            if job.taken > 0 or job.future.done():
                continue  # started (never expired), or answered and about to leave the queue
            if job.enqueued_at > cutoff:
                self._expiry = loop.call_at(job.enqueued_at + self.queue_timeout_s, self._expire_due)
                break
            due.append(job)
        for job in due:
            self._expire(job)

    def _expire(self, job: _Job) -> None:
        """The queue deadline of a request none of whose rows has started: drop it, answer 503."""
        self._queue.remove(job)
        self._queued_images -= job.n
        job.dropped = True
        self.expired_requests += 1
        self._series.dropped_expired.inc()
        job.future.set_exception(
            QueueTimeout(
                f"model {self.name!r} did not start this request within {self.queue_timeout_s:g} s "
                "of queueing; it is overloaded",
                retry_after_s=self._retry_after_s(),
            )
        )
        self._gauge_depth()
        if not self._queue and not self._inflight:
            self._idle.set()

    def _retry_after_s(self) -> float:
        per_run = self._run_seconds_ewma if self._run_seconds_ewma is not None else 0.05
        runs_ahead = self._queued_images / self.max_batch_size + 1
        return max(1.0, runs_ahead * per_run)

    # ------------------------------------------------------------------ collector
    async def _collect(self) -> None:
        # The flag ends the loop even if a stop()'s cancellation were ever lost.
        while not self._halted:
            batch = await self._next_batch()
            if batch:
                try:
                    await self._run(batch)
                except Exception:
                    # Whatever a batch carries fails that batch, never the worker.
                    logger.exception("model %s: a batch failed outside its session run", self.name)
                    self._fail_slices(batch, InferenceFailed(f"inference failed for model {self.name!r}"))

    async def _revive(self, reason: str) -> None:
        """A collector that died anyway: re-create the session (with backoff), then collect again."""
        await self._recover(reason)
        if self._state == "ready":
            await self._collect()

    async def _next_batch(self) -> list[_Slice]:
        while True:
            self._prune()
            if self._queue:
                break
            self._idle.set()
            self._arrived.clear()
            await self._arrived.wait()
        loop = asyncio.get_running_loop()
        # The wait is counted from the first request's arrival: requests that queued while the
        # previous batch ran have waited already and go at once.
        deadline = self._queue[0].enqueued_at + self.max_wait_s
        # Rows taken from the queue live in self._inflight from here on, so that a stop or a
        # crash while the batch is still collecting fails them too (they are in no queue).
        batch: list[_Slice] = []
        self._inflight = batch
        count = 0
        while True:
            count = self._take(batch, count)
            remaining = deadline - loop.time()
            if count >= self.max_batch_size or remaining <= 0:
                return batch
            self._arrived.clear()
            try:
                async with asyncio.timeout(remaining):
                    await self._arrived.wait()
            except TimeoutError:
                count = self._take(batch, count)
                return batch

    def _take(self, batch: list[_Slice], count: int) -> int:
        """Move rows from the queue head into ``batch`` until it is full; returns the new size."""
        while self._queue and count < self.max_batch_size:
            job = self._queue[0]
            if job.future.done():  # cancelled while queued
                self._queue.popleft()
                self._queued_images -= job.n - job.taken
                self._count_dropped(job)
                continue
            take = min(job.n - job.taken, self.max_batch_size - count)
            batch.append((job, job.taken, job.taken + take))
            job.taken += take
            count += take
            self._queued_images -= take
            if job.taken == job.n:
                self._queue.popleft()
        self._gauge_depth()
        return count

    def _prune(self) -> None:
        """Drop queued requests whose futures are done (cancelled by a client or a timeout)."""
        if any(job.future.done() for job in self._queue):
            kept = deque(job for job in self._queue if not job.future.done())
            for job in self._queue:
                if job.future.done():
                    self._count_dropped(job)
            self._queue = kept
            self._queued_images = sum(job.n - job.taken for job in kept)
            self._gauge_depth()

    async def _run(self, batch: list[_Slice]) -> None:
        """One session run for ``batch``: live rows in, images out to their requests, or errors."""
        live = self._live(batch)
        if not live:
            return
        z, labels = _inputs(live)
        try:
            out = await self._execute(live, z, labels)
        except _RunFailed:
            await self._blame(live)
            return
        if out is not None and await self._check_output(live, out, int(z.shape[0])):
            self._scatter(live, out)

    async def _blame(self, live: list[_Slice]) -> None:
        """A run failed: the session's fault, or its rows'? A control run of as many rows of an
        input the model was loaded with (zeros, label 0) decides. If it fails too, the session is at
        fault (500, counted toward re-creating it); if it runs, each request runs alone so that only
        those whose rows fail by themselves are refused (422), and the others get their images."""
        if not await self._control(live):
            return
        if len(live) == 1:
            self._refuse_inputs(live)
            return
        bad: list[_Slice] = []
        for i, (job, a, b) in enumerate(live):
            if job.future.done():
                continue
            self._inflight = bad + live[i:]  # a stop, a hang or a crash meanwhile fails these too
            labels = None if job.labels is None else job.labels[a:b]
            try:
                out = await self._execute([(job, a, b)], job.z[a:b], labels)
            except _RunFailed:
                bad.append((job, a, b))
                continue
            if out is None:
                return  # hung: answered, and the session is being re-created
            if images_problem(out, b - a) is not None:
                bad.append((job, a, b))
                continue
            self._scatter([(job, a, b)], out)
        self._refuse_inputs(bad)

    async def _control(self, live: list[_Slice]) -> bool:
        """True when the session runs the control input; otherwise ``live`` has been answered.

        The control has the failed rows' shape (as many rows as the largest slice, so a failure that
        depends on size, such as memory or a provider's limit, fails it too) with zero latents and
        label 0, which every model was loaded and warmed up with."""
        rows = max(b - a for _, a, b in live)
        z = np.zeros((rows, live[0][0].z.shape[1]), dtype=np.float32)
        labels = None if live[0][0].labels is None else np.zeros(rows, dtype=np.int64)
        self._inflight = live  # a stop or a crash meanwhile fails these too
        try:
            out = await self._execute(live, z, labels)
        except _RunFailed:
            await self._session_failed(live)
            return False
        if out is None:
            return False  # hung: answered, and the session is being re-created
        if images_problem(out, rows) is not None:
            await self._session_failed(live)
            return False
        self.consecutive_failures = 0
        return True

    def _refuse_inputs(self, slices: list[_Slice]) -> None:
        """The session runs, these rows do not: their requests' input is at fault (a 422)."""
        for job, a, b in slices:
            what = "latents" if job.labels is None else f"labels {sorted({int(x) for x in job.labels[a:b]})}"
            logger.warning("model %s: a request's rows fail alone (%s); only it is refused", self.name, what)
            self._fail_slices(
                [(job, a, b)],
                InvalidRequest(f"model {self.name!r} cannot generate this request's input ({what})"),
            )
        self._inflight = []

    async def _session_failed(self, slices: list[_Slice]) -> None:
        self._fail_slices(slices, InferenceFailed(f"inference failed for model {self.name!r}"))
        await self._after_failure()

    def _live(self, batch: list[_Slice]) -> list[_Slice]:
        """The slices whose requests still wait; their queue wait is observed once per request."""
        live = [s for s in batch if not s[0].future.done()]
        for job, _, _ in batch:
            if job.future.cancelled():
                self._count_dropped(job)
        self._inflight = live
        now = asyncio.get_running_loop().time()
        for job, _, _ in live:
            if not job.wait_observed:
                job.wait_observed = True
                self._series.queue_wait.observe(now - job.enqueued_at)
        return live

    async def _execute(
        self, live: list[_Slice], z: np.ndarray, labels: np.ndarray | None
    ) -> np.ndarray | None:
        """Run the session on the worker thread; None when it hung (already answered); raises
        :class:`_RunFailed` when it raised."""
        rows = int(z.shape[0])
        self.session_runs += 1
        self._series.session_runs.inc()
        self._series.batch_size.observe(rows)
        started = time.perf_counter()
        self._run_started = time.monotonic()
        runner = self.runner
        hung = False
        try:
            run = asyncio.get_running_loop().run_in_executor(self._executor, runner.run, z, labels)
            # A run given up on (hung, or the collector stopped) may still end later, often with
            # the abort's exception: retrieve it so it is not reported as never retrieved.
            run.add_done_callback(_retrieve)
            # asyncio.timeout, not wait_for: on Python 3.11, wait_for swallows a cancellation
            # that lands as the run completes, and the collector then outlives stop(). shield:
            # a timeout must not cancel the executor future (the thread runs on regardless);
            # the worker is abandoned in _hung instead.
            async with asyncio.timeout(self.run_timeout_s):
                return await asyncio.shield(run)
        except TimeoutError:
            hung = True
        except Exception as exc:
            self.failed_runs += 1
            logger.exception("model %s: session run failed for a batch of %d image(s)", self.name, rows)
            raise _RunFailed from exc
        finally:
            self._run_started = None
            self._observe_run(time.perf_counter() - started)
        if hung:
            await self._hung(live, runner, rows)
        return None

    def _observe_run(self, elapsed: float) -> None:
        self._series.inference_duration.observe(elapsed)
        self._run_seconds_ewma = (
            elapsed
            if self._run_seconds_ewma is None
            else (1 - _EWMA_ALPHA) * self._run_seconds_ewma + _EWMA_ALPHA * elapsed
        )

    async def _hung(self, live: list[_Slice], runner: Runner, rows: int) -> None:
        """A run past ``run_timeout_s``: abort it, fail its requests, re-create the session."""
        self.failed_runs += 1
        reason = f"a session run took longer than run_timeout_s ({self.run_timeout_s:g} s)"
        logger.error("model %s: %s for a batch of %d image(s); aborting it", self.name, reason, rows)
        abort_run(runner)
        self._fail_slices(
            live, ModelNotReady(f"model {self.name!r} is not ready: {reason}", retry_after_s=5.0)
        )
        await self._recover(reason, abandon_worker=True)

    async def _check_output(self, live: list[_Slice], out: object, rows: int) -> bool:
        """True when ``out`` keeps the output contract; otherwise its requests fail."""
        problem = images_problem(out, rows)
        if problem is None:
            return True
        self.failed_runs += 1
        logger.error(
            "model %s: a batch of %d image(s) returned %s, expected uint8 (%d, C, H, W)",
            self.name,
            rows,
            problem,
            rows,
        )
        self._fail_slices(
            live,
            InferenceFailed(
                f"inference failed for model {self.name!r}: the model returned a malformed batch"
            ),
        )
        await self._after_failure()
        return False

    def _scatter(self, live: list[_Slice], out: np.ndarray) -> None:
        """Hand each slice its rows; a request whose last slice this was gets its images."""
        self.consecutive_failures = 0
        self._recovery_streak = 0
        offset = 0
        delivered = 0
        for job, a, b in live:
            part = out[offset : offset + (b - a)]
            offset += b - a
            if job.future.done():
                continue
            job.parts.append(part)
            if b == job.n:
                result = job.parts[0] if len(job.parts) == 1 else np.concatenate(job.parts)
                job.parts = []
                job.future.set_result(result)
                delivered += job.n
        self.images_generated += delivered
        if delivered:
            self._series.images_generated.inc(delivered)  # once per batch: the counter takes a lock
        self._inflight = []

    # ------------------------------------------------------------------ recovery
    async def _after_failure(self) -> None:
        self.consecutive_failures += 1
        if self.consecutive_failures >= self.failure_threshold:
            await self._recover(f"{self.consecutive_failures} session runs in a row failed")

    async def _recover(self, reason: str, *, abandon_worker: bool = False) -> None:
        """Take the model out of service, fail what waits, build a new runner, serve again.

        Runs inside the collector task, so no batch starts meanwhile and :meth:`stop` (which
        cancels the collector) ends it at any point.
        """
        self._state = "recovering"
        self.dead_reason = f"{reason}; re-creating its session"
        self._series.ready.set(0)
        logger.error("model %s is not ready: %s; re-creating its session", self.name, reason)
        self._fail_pending(ModelNotReady(f"model {self.name!r} is not ready: {reason}", retry_after_s=5.0))
        if abandon_worker:
            # The hung run keeps its thread until it returns (a thread cannot be killed); later
            # runs get a fresh one. The old thread's result, if it ever comes, is discarded.
            old, self._executor = self._executor, self._new_executor()
            old.shutdown(wait=False, cancel_futures=True)
        self._recovery_streak += 1
        # A fresh session is tried at once; one that breaks again before any run succeeded is not
        # re-created in a tight loop: each such recovery waits twice as long as the one before.
        # Without a recover() there is nothing fresh to try, so the same runner gets a pause.
        if self._recovery_streak > 1 or self._recover_fn is None:
            pause = self.recovery_backoff_s * 2 ** (self._recovery_streak - 1)
            await asyncio.sleep(min(pause, _MAX_BACKOFF_S))
        delay = self.recovery_backoff_s  # between failed attempts of this recovery
        attempt = 0
        while True:
            attempt += 1
            try:
                runner = await self._new_runner()
                break
            except Exception as exc:
                # Client-visible (readyz): a load error's message is scrubbed of paths; of
                # anything else only the type is shown, the detail goes to the log.
                detail = str(exc) if isinstance(exc, ModelLoadError) else type(exc).__name__
                self.dead_reason = f"{reason}; re-creating its session failed {attempt} time(s): {detail}"
                logger.error(
                    "model %s: re-creating the session failed (attempt %d): %s",
                    self.name,
                    attempt,
                    detail,
                    exc_info=exc,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, _MAX_BACKOFF_S)
        if self._state != "recovering":
            return  # stopped meanwhile
        self.runner = runner
        self.recoveries += 1
        self.consecutive_failures = 0
        self.dead_reason = None
        self._state = "ready"
        self._series.recoveries.inc()
        self._series.ready.set(1)
        logger.warning("model %s recovered: its session was re-created", self.name)

    async def _new_runner(self) -> Runner:
        if self._recover_fn is None:
            return self.runner
        async with asyncio.timeout(_RECOVER_TIMEOUT_S):  # not wait_for: see _execute
            return await asyncio.to_thread(self._recover_fn)

    def _new_executor(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"condgen-{self.name}")

    # ------------------------------------------------------------------ failure paths
    def _fail_slices(self, slices: list[_Slice], error: ServiceError) -> None:
        for job, _, _ in slices:
            if not job.future.done():
                job.future.set_exception(error)
        self._inflight = []

    def _fail_pending(self, error: ServiceError) -> None:
        """Resolve every future still waiting (in flight or queued) with ``error``."""
        pending = [job for job, _, _ in self._inflight] + list(self._queue)
        self._inflight = []
        self._queue.clear()
        self._queued_images = 0
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        for job in pending:
            if not job.future.done():
                job.future.set_exception(error)
        self._gauge_depth()
        self._idle.set()

    def _on_collector_done(self, task: asyncio.Task[None]) -> None:
        if self._state in {"stopping", "stopped"}:
            return
        if task.cancelled():
            reason = "batching worker was cancelled"
        else:
            exc = task.exception()
            reason = f"batching worker crashed ({type(exc).__name__})" if exc else "batching worker exited"
            if exc is not None:
                logger.error("model %s: %s", self.name, reason, exc_info=exc)
        self._state = "dead"
        self.dead_reason = reason
        logger.error("model %s is no longer ready: %s; restarting its worker", self.name, reason)
        self._series.ready.set(0)
        self._fail_pending(WorkerDied(f"model {self.name!r} is not ready: {reason}", retry_after_s=5.0))
        # Restarted like a broken session; stop() cancels the restart as it would the collector.
        self._task = asyncio.get_running_loop().create_task(self._revive(reason), name=f"batcher-{self.name}")
        self._task.add_done_callback(self._on_collector_done)

    def _gauge_depth(self) -> None:
        self._series.queue_depth.set(self._queued_images)
