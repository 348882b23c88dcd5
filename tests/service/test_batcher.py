"""The dynamic batcher, driven by fake runners (no ONNX): coalescing, slicing, failures, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator

import numpy as np
import pytest

from service.batcher import DynamicBatcher
from service.card import ModelCard
from service.errors import (
    InferenceFailed,
    InvalidRequest,
    ModelChanged,
    ModelNotReady,
    QueueFull,
    QueueTimeout,
    ShuttingDown,
    WorkerDied,
)
from service.metrics import Metrics
from tests.service.conftest import eventually
from tests.service.onnx_fixtures import card_dict

TIMEOUT_S = 5.0  # no test may hang: every wait is bounded


class FakeRunner:
    """Echoes its inputs into pixels: out[i] = [[z[i, 0], label[i]], [n_rows_in_batch, 7]].

    ``gate`` (when given) blocks every run until set, so tests control when a batch finishes.
    """

    def __init__(self, gate: threading.Event | None = None, fail_runs: set[int] | None = None) -> None:
        self.gate = gate
        self.fail_runs = fail_runs or set()
        self.calls: list[tuple[np.ndarray, np.ndarray | None]] = []
        self.started = threading.Event()

    def run(self, z: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
        self.calls.append((z.copy(), None if labels is None else labels.copy()))
        self.started.set()
        if self.gate is not None and not self.gate.wait(TIMEOUT_S):
            raise TimeoutError("gate never opened")
        if len(self.calls) - 1 in self.fail_runs:
            raise RuntimeError("injected failure")
        n = z.shape[0]
        out = np.zeros((n, 1, 2, 2), dtype=np.uint8)
        out[:, 0, 0, 0] = z[:, 0].astype(np.uint8)
        out[:, 0, 0, 1] = 0 if labels is None else labels.astype(np.uint8)
        out[:, 0, 1, 0] = n
        out[:, 0, 1, 1] = 7
        return out


def rows(ids: list[int], dim: int = 4) -> np.ndarray:
    """Latents whose first component identifies the row."""
    z = np.zeros((len(ids), dim), dtype=np.float32)
    z[:, 0] = ids
    return z


async def wait_started(runner: FakeRunner) -> None:
    assert await asyncio.to_thread(runner.started.wait, TIMEOUT_S), "runner never started"
    runner.started.clear()


@pytest.fixture
async def gate() -> AsyncIterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()  # never leave a worker thread blocked


def make(runner: FakeRunner, **kw: object) -> DynamicBatcher:
    opts: dict[str, object] = {"max_batch_size": 8, "max_wait_s": 0.001, "max_queue_images": 64}
    opts.update(kw)
    batcher = DynamicBatcher("m", runner, **opts)  # type: ignore[arg-type]
    batcher.start()
    return batcher


async def test_requests_with_mixed_n_and_labels_share_one_run(gate: threading.Event) -> None:
    runner = FakeRunner(gate)
    b = make(runner, max_batch_size=16)
    async with asyncio.timeout(TIMEOUT_S):
        first = b.submit(rows([1]), np.array([9]))
        await wait_started(runner)  # batch 1 = the first request alone, now blocked
        futs = [
            b.submit(rows([10, 11, 12]), np.array([1, 2, 3])),
            b.submit(rows([20, 21]), np.array([4, 4])),
            b.submit(rows([30]), np.array([5])),
        ]
        gate.set()
        results = await asyncio.gather(first, *futs)
    assert b.session_runs == 2
    assert len(runner.calls) == 2
    z2, l2 = runner.calls[1]
    assert z2[:, 0].tolist() == [10, 11, 12, 20, 21, 30]  # FIFO, one run
    assert l2 is not None
    assert l2.tolist() == [1, 2, 3, 4, 4, 5]
    for result, ids, labels in zip(
        results[1:], [[10, 11, 12], [20, 21], [30]], [[1, 2, 3], [4, 4], [5]], strict=True
    ):
        assert result.shape == (len(ids), 1, 2, 2)
        assert result[:, 0, 0, 0].tolist() == ids
        assert result[:, 0, 0, 1].tolist() == labels
        assert (result[:, 0, 1, 0] == 6).all()  # computed in the 6-row batch
    await b.stop()


async def test_request_larger_than_max_batch_is_split_across_runs() -> None:
    runner = FakeRunner()
    b = make(runner, max_batch_size=4)
    async with asyncio.timeout(TIMEOUT_S):
        result = await b.submit(rows(list(range(10))), None)
    assert result[:, 0, 0, 0].tolist() == list(range(10))
    assert [c[0].shape[0] for c in runner.calls] == [4, 4, 2]
    assert b.session_runs == 3
    await b.stop()


async def test_slices_of_a_large_request_share_runs_with_others(gate: threading.Event) -> None:
    runner = FakeRunner(gate)
    b = make(runner, max_batch_size=4)
    async with asyncio.timeout(TIMEOUT_S):
        blocker = b.submit(rows([99]), None)
        await wait_started(runner)
        big = b.submit(rows([0, 1, 2, 3, 4, 5]), None)
        small = b.submit(rows([50, 51]), None)
        gate.set()
        await asyncio.gather(blocker, big, small)
    big_out, small_out = big.result(), small.result()
    assert [c[0][:, 0].tolist() for c in runner.calls] == [[99], [0, 1, 2, 3], [4, 5, 50, 51]]
    assert big_out[:, 0, 0, 0].tolist() == [0, 1, 2, 3, 4, 5]
    assert small_out[:, 0, 0, 0].tolist() == [50, 51]
    await b.stop()


async def test_wait_window_collects_requests_arriving_later() -> None:
    runner = FakeRunner()
    b = make(runner, max_batch_size=8, max_wait_s=0.3)
    async with asyncio.timeout(TIMEOUT_S):
        a = b.submit(rows([1]), None)
        await asyncio.sleep(0.01)
        c = b.submit(rows([2]), None)
        await asyncio.gather(a, c)
    assert b.session_runs == 1
    await b.stop()


async def test_full_batch_runs_without_waiting() -> None:
    runner = FakeRunner()
    b = make(runner, max_batch_size=2, max_wait_s=3.0)
    async with asyncio.timeout(1.0):  # far below max_wait: a full batch must not wait
        await b.submit(rows([1, 2]), None)
    await b.stop()


async def test_full_queue_raises_queue_full_with_retry_after(gate: threading.Event) -> None:
    runner = FakeRunner(gate)
    b = make(runner, max_batch_size=1, max_queue_images=4, max_queue_requests=3)
    async with asyncio.timeout(TIMEOUT_S):
        inflight = b.submit(rows([0]), None)
        await wait_started(runner)
        queued = b.submit(rows([1, 2, 3]), None)
        with pytest.raises(QueueFull) as info:
            b.submit(rows([4, 5]), None)  # 3 + 2 > 4 images
        assert info.value.retry_after_s is not None
        assert info.value.retry_after_s >= 1
        assert info.value.headers()["Retry-After"].isdigit()
        one = b.submit(rows([6]), None)  # 3 + 1 fits
        assert b.queued_images == 4
        # The request bound: a cancelled request frees its slot.
        one.cancel()
        extra = b.submit(rows([7]), None)
        gate.set()
        await asyncio.gather(inflight, queued, extra)
    await b.stop()


async def test_request_bound_counts_requests(gate: threading.Event) -> None:
    runner = FakeRunner(gate)
    b = make(runner, max_batch_size=1, max_queue_images=100, max_queue_requests=2)
    async with asyncio.timeout(TIMEOUT_S):
        inflight = b.submit(rows([0]), None)
        await wait_started(runner)
        queued = [b.submit(rows([1]), None), b.submit(rows([2]), None)]
        with pytest.raises(QueueFull):
            b.submit(rows([3]), None)
        gate.set()
        await asyncio.gather(inflight, *queued)
    await b.stop()


async def test_cancelled_request_is_dropped_before_compute(gate: threading.Event) -> None:
    runner = FakeRunner(gate)
    b = make(runner)
    async with asyncio.timeout(TIMEOUT_S):
        inflight = b.submit(rows([1]), None)
        await wait_started(runner)
        doomed = b.submit(rows([66, 67]), None)
        kept = b.submit(rows([2]), None)
        doomed.cancel()  # what a disconnect or a timeout does
        gate.set()
        await asyncio.gather(inflight, kept)
    computed = [int(v) for z, _ in runner.calls for v in z[:, 0]]
    assert 66 not in computed
    assert 67 not in computed
    assert computed == [1, 2]
    assert b.dropped_requests == 1
    await b.stop()


async def test_request_cancelled_while_its_batch_is_collecting_is_dropped() -> None:
    runner = FakeRunner()
    b = make(runner, max_batch_size=8, max_wait_s=0.3)
    async with asyncio.timeout(TIMEOUT_S):
        doomed = b.submit(rows([66]), None)
        await asyncio.sleep(0.02)  # the collector has taken it and waits for company
        assert b.queued_requests == 0
        doomed.cancel()
        kept = b.submit(rows([1]), None)
        await kept
    assert [c[0][:, 0].tolist() for c in runner.calls] == [[1]]
    assert b.dropped_requests == 1
    await b.stop()


async def test_all_cancelled_batch_costs_no_run(gate: threading.Event) -> None:
    runner = FakeRunner(gate)
    b = make(runner)
    async with asyncio.timeout(TIMEOUT_S):
        inflight = b.submit(rows([1]), None)
        await wait_started(runner)
        doomed = b.submit(rows([5]), None)
        doomed.cancel()
        gate.set()
        await inflight
        await asyncio.sleep(0.05)
    assert b.session_runs == 1
    await b.stop()


async def test_runtime_error_fails_exactly_its_batch_and_serving_continues(gate: threading.Event) -> None:
    # The shared run and the control run (zero latents) fail: the session's fault, not an input's.
    runner = FakeRunner(gate, fail_runs={1, 2})
    b = make(runner)
    async with asyncio.timeout(TIMEOUT_S):
        ok_first = b.submit(rows([1]), None)
        await wait_started(runner)
        doomed = [b.submit(rows([2]), None), b.submit(rows([3, 4]), None)]
        gate.set()
        assert (await ok_first)[0, 0, 0, 0] == 1
        for fut in doomed:
            with pytest.raises(InferenceFailed) as info:
                await fut
            assert "injected" not in info.value.message  # internals stay in the log
        later = await b.submit(rows([5]), None)
    assert later[0, 0, 0, 0] == 5
    assert b.ready
    assert b.failed_runs == 2
    assert b.consecutive_failures == 0  # the later run succeeded
    await b.stop()


class PoisonRunner(FakeRunner):
    """Fails every run that holds label 13, as a graph does for a label its embedding lacks."""

    def run(self, z: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
        if labels is not None and (labels == 13).any():
            self.calls.append((z.copy(), labels.copy()))
            self.started.set()
            raise RuntimeError("indices element out of data bounds")
        return super().run(z, labels)


async def test_a_request_that_fails_a_shared_run_fails_alone(gate: threading.Event) -> None:
    runner = PoisonRunner(gate)
    b = make(runner, failure_threshold=1)
    async with asyncio.timeout(TIMEOUT_S):
        first = b.submit(rows([1]), np.array([0]))
        await wait_started(runner)
        mates = [b.submit(rows([i, i + 1]), np.array([1, 2])) for i in (2, 4)]
        poison = b.submit(rows([6]), np.array([13]))
        more = b.submit(rows([7]), np.array([3]))
        gate.set()
        assert (await first)[0, 0, 0, 0] == 1
        for i, fut in zip((2, 4), mates, strict=True):
            assert list((await fut)[:, 0, 0, 0]) == [i, i + 1]
        assert (await more)[0, 0, 0, 1] == 3
        with pytest.raises(InvalidRequest, match=r"labels \[13\]") as refused:
            await poison
        assert refused.value.status_code == 422
    # An input's failure does not count toward re-creating the session (threshold 1).
    assert b.ready
    assert b.recoveries == 0
    assert b.consecutive_failures == 0
    await b.stop()


class WrongBatchRunner(FakeRunner):
    def run(self, z: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
        return super().run(z, labels)[:-1]  # one image short


async def test_wrong_batch_dimension_fails_the_batch() -> None:
    b = make(WrongBatchRunner())
    async with asyncio.timeout(TIMEOUT_S):
        with pytest.raises(InferenceFailed, match="malformed batch"):
            await b.submit(rows([1, 2]), None)
    assert b.ready
    await b.stop()


async def test_stop_resolves_every_pending_future(gate: threading.Event) -> None:
    runner = FakeRunner(gate)
    b = make(runner)
    async with asyncio.timeout(TIMEOUT_S):
        inflight = b.submit(rows([1]), None)
        await wait_started(runner)
        queued = [b.submit(rows([i]), None) for i in range(2, 6)]
        await b.stop(drain_timeout_s=0.0)
        for fut in [inflight, *queued]:
            assert fut.done()
            with pytest.raises(ShuttingDown):
                fut.result()
        with pytest.raises(ShuttingDown):
            b.submit(rows([9]), None)
    assert b.state == "stopped"
    assert not b.ready


@pytest.mark.parametrize("depth", range(8))
async def test_stop_landing_as_a_run_completes_still_stops(gate: threading.Event, depth: int) -> None:
    """The cancellation stop() sends may reach the collector at any point of a run's completion.

    The run's result travels through a few event-loop callbacks (executor future, shield, timeout)
    before the collector resumes; ``depth`` puts stop() after that many of them. A cancellation
    that were swallowed on one of them would leave the collector serving on after stop().
    """
    runner = FakeRunner(gate)
    b = make(runner, max_batch_size=1, max_wait_s=0.0, run_timeout_s=TIMEOUT_S)
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(TIMEOUT_S):
        running = b.submit(rows([1]), None)
        await wait_started(runner)
        queued = [b.submit(rows([i]), None) for i in range(2, 6)]
        gate.set()
        # Hold the loop while the worker thread finishes and hands its result back
        # (call_soon_threadsafe): the result's callbacks are then first in the loop's queue.
        time.sleep(0.1)  # noqa: ASYNC251 - deliberately holding the loop
        stopped: asyncio.Future[asyncio.Task[None]] = loop.create_future()

        def stop_after(k: int) -> None:
            if k == 0:
                stopped.set_result(asyncio.ensure_future(b.stop(drain_timeout_s=0.0)))
            else:
                loop.call_soon(stop_after, k - 1)

        loop.call_soon(stop_after, depth)
        await (await stopped)  # a collector that outlived stop() would keep this waiting
        runs_at_stop = len(runner.calls)
        assert b.state == "stopped"
        for fut in [running, *queued]:
            # Its result if its run ended before stop() (a busy machine gets further), else 503.
            assert fut.done()
            if fut.exception() is not None:
                assert isinstance(fut.exception(), ShuttingDown)
        assert any(isinstance(f.exception(), ShuttingDown) for f in queued)
        await asyncio.sleep(0.05)
        assert len(runner.calls) == runs_at_stop  # no run starts after stop()


@pytest.mark.parametrize("how", ["stop", "crash"])
async def test_requests_in_a_collecting_batch_are_resolved(how: str) -> None:
    """Rows taken from the queue while the collector still waits for company are in no queue."""
    runner = FakeRunner()
    b = make(runner, max_batch_size=8, max_wait_s=2.0)
    async with asyncio.timeout(TIMEOUT_S):
        fut = b.submit(rows([1]), None)
        await asyncio.sleep(0.02)  # taken into the batch; the collector waits up to 2 s
        assert b.queued_requests == 0
        if how == "stop":
            await b.stop(drain_timeout_s=0.0)
            with pytest.raises(ShuttingDown):
                await fut
        else:
            assert b._task is not None
            b._task.cancel()
            with pytest.raises(WorkerDied):
                await fut
    assert runner.calls == []
    await b.stop()


async def test_stop_drains_queued_work_within_the_grace_period() -> None:
    runner = FakeRunner()
    b = make(runner, max_wait_s=0.05)
    async with asyncio.timeout(TIMEOUT_S):
        futs = [b.submit(rows([i]), None) for i in range(3)]
        await b.stop(drain_timeout_s=2.0)
        assert [int(f.result()[0, 0, 0, 0]) for f in futs] == [0, 1, 2]


@pytest.mark.parametrize("how", ["crash_after_run", "cancelled_mid_run"])
async def test_dead_collector_fails_pending_and_marks_not_ready(
    gate: threading.Event, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    runner = FakeRunner(gate)
    metrics = Metrics()
    b = make(runner, metrics=metrics)
    assert metrics.value("condgen_model_ready", {"model": "m"}) == 1
    async with asyncio.timeout(TIMEOUT_S):
        inflight = b.submit(rows([1]), None)
        await wait_started(runner)
        queued = b.submit(rows([2]), None)

        if how == "crash_after_run":

            def broken(*args: object) -> int:
                raise RuntimeError("bug in the collector")

            monkeypatch.setattr(b, "_take", broken)  # the next batch the collector forms explodes
            gate.set()
            assert (await inflight)[0, 0, 0, 0] == 1
        else:
            assert b._task is not None
            b._task.cancel()  # the worker dies while a run is in flight
        with pytest.raises(WorkerDied):
            await queued
        if how == "cancelled_mid_run":
            with pytest.raises(WorkerDied):
                await inflight
    await asyncio.sleep(0)
    assert not b.ready
    assert b.state in {"dead", "recovering"}
    assert b.dead_reason
    assert metrics.value("condgen_model_ready", {"model": "m"}) == 0
    with pytest.raises(ModelNotReady):
        b.submit(rows([3]), None)
    gate.set()
    monkeypatch.undo()
    # Restarted like a broken session: after the recovery pause the model serves again.
    await eventually(lambda: b.ready)
    assert metrics.value("condgen_model_ready", {"model": "m"}) == 1
    async with asyncio.timeout(TIMEOUT_S):
        assert (await b.submit(rows([4]), None))[0, 0, 0, 0] == 4
    await b.stop()


async def test_rows_that_do_not_fit_the_model_are_refused_at_submit() -> None:
    card = ModelCard.model_validate(
        card_dict("m", dim=4, channels=1, height=2, width=2, labels=["a", "b"], sha256="0" * 64)
    )
    runner = FakeRunner()
    b = make(runner, card=card)
    async with asyncio.timeout(TIMEOUT_S):
        for z, labels in [(rows([1], dim=5), np.array([0])), (rows([1]), np.array([2])), (rows([1]), None)]:
            with pytest.raises(ModelChanged) as refused:
                b.submit(z, labels)
            assert refused.value.status_code == 503
            assert refused.value.retry_after_s is not None
        assert (await b.submit(rows([3]), np.array([1])))[0, 0, 0, 1] == 1
    assert len(runner.calls) == 1
    await b.stop()


async def test_a_batch_that_cannot_be_assembled_fails_alone_and_the_worker_lives(
    gate: threading.Event,
) -> None:
    runner = FakeRunner(gate)
    b = make(runner, max_batch_size=8)
    async with asyncio.timeout(TIMEOUT_S):
        first = b.submit(rows([1]), None)
        await wait_started(runner)
        # Two latent widths in one batch (an unchecked batcher): their rows cannot be concatenated.
        narrow = b.submit(rows([2], dim=4), None)
        wide = b.submit(rows([3], dim=6), None)
        gate.set()
        assert (await first)[0, 0, 0, 0] == 1
        for fut in (narrow, wide):
            with pytest.raises(InferenceFailed):
                await fut
        assert b.ready
        assert (await b.submit(rows([5]), None))[0, 0, 0, 0] == 5
    await b.stop()


async def test_metrics_count_runs_images_and_batch_sizes(gate: threading.Event) -> None:
    runner = FakeRunner(gate)
    metrics = Metrics()
    b = make(runner, metrics=metrics)
    async with asyncio.timeout(TIMEOUT_S):
        first = b.submit(rows([1]), None)
        await wait_started(runner)
        rest = [b.submit(rows([2, 3]), None), b.submit(rows([4]), None)]
        assert metrics.value("condgen_queue_depth", {"model": "m"}) == 3
        gate.set()
        await asyncio.gather(first, *rest)
    labels = {"model": "m"}
    assert metrics.value("condgen_session_runs_total", labels) == b.session_runs == 2
    assert metrics.value("condgen_images_generated_total", labels) == 4
    assert metrics.value("condgen_batch_size_count", labels) == 2
    assert metrics.value("condgen_batch_size_sum", labels) == 4
    assert metrics.value("condgen_queue_wait_seconds_count", labels) == 3
    assert metrics.value("condgen_inference_duration_seconds_count", labels) == 2
    assert metrics.value("condgen_queue_depth", labels) == 0
    await b.stop()


async def test_submit_rejects_malformed_inputs_and_unstarted_batcher() -> None:
    b = DynamicBatcher("m", FakeRunner())
    with pytest.raises(ModelNotReady):
        b.submit(rows([1]), None)
    b.start()
    with pytest.raises(ValueError, match="z must be"):
        b.submit(np.zeros(4, dtype=np.float32), None)
    with pytest.raises(ValueError, match="labels must"):
        b.submit(rows([1, 2]), np.array([1]))
    await b.stop()


# --------------------------------------------------------------------------- deadlines and faults
async def test_request_expired_in_the_queue_is_dropped_before_compute(gate: threading.Event) -> None:
    runner = FakeRunner(gate)
    metrics = Metrics()
    b = make(runner, queue_timeout_s=0.15, max_batch_size=1, metrics=metrics)
    async with asyncio.timeout(TIMEOUT_S):
        running = b.submit(rows([1]), None)
        await wait_started(runner)
        queued = b.submit(rows([2]), None)
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(QueueTimeout) as info:
            await queued
        waited = loop.time() - started
        assert 0.1 <= waited < 1.0  # answered at its deadline, not when the model got round to it
        assert info.value.status_code == 503
        assert int(info.value.headers()["Retry-After"]) >= 1
        assert b.queued_requests == 0
        assert b.queued_images == 0
        gate.set()
        await running  # its run had started: the queue deadline no longer applies
        await asyncio.sleep(0.05)
    assert len(runner.calls) == 1  # the expired request never reached the model
    assert b.expired_requests == 1
    assert metrics.value("condgen_requests_dropped_total", {"model": "m", "reason": "expired"}) == 1
    await b.stop()


async def test_queued_requests_expire_each_at_its_own_deadline(gate: threading.Event) -> None:
    """One timer per batcher: it re-arms for the next queued request after each expiry."""
    runner = FakeRunner(gate)
    b = make(runner, queue_timeout_s=0.2, max_batch_size=1)
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(TIMEOUT_S):
        running = b.submit(rows([1]), None)
        await wait_started(runner)
        first = b.submit(rows([2]), None)
        first_at = loop.time()
        await asyncio.sleep(0.1)
        second = b.submit(rows([3]), None)
        second_at = loop.time()
        with pytest.raises(QueueTimeout):
            await first
        assert not second.done()  # its deadline is 0.1 s later
        assert 0.15 <= loop.time() - first_at < 1.0
        with pytest.raises(QueueTimeout):
            await second
        assert 0.15 <= loop.time() - second_at < 1.0
        gate.set()
        await running
    assert len(runner.calls) == 1
    assert b.expired_requests == 2
    await b.stop()


async def test_a_request_whose_rows_started_is_not_expired(gate: threading.Event) -> None:
    """A request sliced across runs keeps going once its first slice ran."""
    runner = FakeRunner(gate)
    b = make(runner, queue_timeout_s=0.1, max_batch_size=2)
    async with asyncio.timeout(TIMEOUT_S):
        fut = b.submit(rows([1, 2, 3, 4]), None)
        await wait_started(runner)
        await asyncio.sleep(0.2)  # past the deadline while its first slice runs
        gate.set()
        out = await fut
    assert out[:, 0, 0, 0].tolist() == [1, 2, 3, 4]
    assert b.expired_requests == 0
    await b.stop()


class FlakyRunner(FakeRunner):
    """Fails every run while ``broken`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.broken = True

    def run(self, z: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
        if self.broken:
            self.calls.append((z.copy(), None))
            raise RuntimeError("device lost")
        return super().run(z, labels)


async def test_repeated_failures_recreate_the_session_and_serve_again() -> None:
    broken, fresh = FlakyRunner(), FakeRunner()
    created: list[FakeRunner] = []

    def recover() -> FakeRunner:
        created.append(fresh)
        return fresh

    metrics = Metrics()
    b = make(broken, failure_threshold=3, recover=recover, metrics=metrics)
    metrics.model_ready.labels("m").set(1)
    async with asyncio.timeout(TIMEOUT_S):
        for i in range(2):
            with pytest.raises(InferenceFailed):
                await b.submit(rows([i]), None)
        assert b.ready  # two failures: still below the threshold
        with pytest.raises(InferenceFailed):
            await b.submit(rows([9]), None)
        # The third failure took the model out of service; the new session comes up at once.
        await eventually(lambda: bool(created) and b.ready)
        out = await b.submit(rows([5]), None)
    assert out[0, 0, 0, 0] == 5
    assert b.runner is fresh
    assert b.recoveries == 1
    assert metrics.value("condgen_model_recoveries_total", {"model": "m"}) == 1
    assert metrics.value("condgen_model_ready", {"model": "m"}) == 1
    await b.stop()


async def test_a_success_resets_the_failure_count() -> None:
    runner = FakeRunner(fail_runs={0, 1, 3, 4})
    b = make(runner, failure_threshold=3)
    async with asyncio.timeout(TIMEOUT_S):
        for i in range(6):
            with contextlib.suppress(InferenceFailed):
                await b.submit(rows([i]), None)
    assert b.recoveries == 0
    assert b.ready
    await b.stop()


class HangingRunner:
    """A run that never returns unless aborted, as a wedged GPU kernel would."""

    def __init__(self, abortable: bool) -> None:
        self.release = threading.Event()
        self.started = threading.Event()
        self.aborted = False
        if abortable:
            self.abort = self._abort  # the optional Runner.abort()

    def _abort(self) -> None:
        self.aborted = True
        self.release.set()

    def run(self, z: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
        self.started.set()
        self.release.wait(TIMEOUT_S)
        raise RuntimeError("aborted")


@pytest.mark.parametrize("abortable", [True, False], ids=["abortable", "wedged"])
async def test_hung_run_fails_every_waiter_and_recovers_on_a_fresh_worker(abortable: bool) -> None:
    hung, fresh = HangingRunner(abortable), FakeRunner()
    metrics = Metrics()
    b = make(hung, run_timeout_s=0.2, recover=lambda: fresh, metrics=metrics, max_batch_size=1)
    try:
        async with asyncio.timeout(TIMEOUT_S):
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            first = b.submit(rows([1]), None)
            assert await asyncio.to_thread(hung.started.wait, TIMEOUT_S)
            queued = [b.submit(rows([i]), None) for i in (2, 3)]
            results = await asyncio.gather(first, *queued, return_exceptions=True)
            elapsed = loop.time() - t0
            assert all(isinstance(r, ModelNotReady) for r in results), results
            assert elapsed < 2.0  # at the run timeout, not whenever the hung run returns
            await eventually(lambda: b.ready)
            out = await b.submit(rows([4]), None)
    finally:
        hung.release.set()
    assert out[0, 0, 0, 0] == 4
    assert hung.aborted is abortable
    assert b.recoveries == 1
    assert b.runner is fresh
    await b.stop()


async def test_model_is_not_ready_while_the_new_session_fails_to_load() -> None:
    attempts: list[int] = []
    fresh = FakeRunner()

    def recover() -> FakeRunner:
        attempts.append(1)
        if len(attempts) < 3:
            raise RuntimeError("out of device memory at /opt/secret")
        return fresh

    # A broken session: the request's run and the control run after it both fail.
    b = make(FakeRunner(fail_runs={0, 1}), failure_threshold=1, recover=recover, recovery_backoff_s=0.05)
    async with asyncio.timeout(TIMEOUT_S):
        with pytest.raises(InferenceFailed):
            await b.submit(rows([1]), None)
        await eventually(lambda: len(attempts) >= 2)
        assert not b.ready
        assert b.state == "recovering"
        with pytest.raises(ModelNotReady) as info:
            b.submit(rows([2]), None)
        assert "re-creating its session failed" in info.value.message
        assert "/opt" not in info.value.message  # only the error type reaches a client
        await eventually(lambda: b.ready)
    assert len(attempts) == 3
    assert b.dead_reason is None
    await b.stop()


async def test_stop_during_recovery_ends_it() -> None:
    def recover() -> FakeRunner:
        raise RuntimeError("never loads")

    # A broken session: the request's run and the control run after it both fail.
    b = make(FakeRunner(fail_runs={0, 1}), failure_threshold=1, recover=recover, recovery_backoff_s=0.05)
    async with asyncio.timeout(TIMEOUT_S):
        with pytest.raises(InferenceFailed):
            await b.submit(rows([1]), None)
        await asyncio.sleep(0.1)
        await b.stop()
    assert b.state == "stopped"
