"""Prometheus metrics, one registry per app instance.

A registry per instance (rather than prometheus_client's global one) lets tests build several apps
in one process and lets each app expose exactly its own series. Names follow Prometheus practice:
base units (seconds), ``_total`` counters, and one low-cardinality ``model`` label whose values
are the model directories found at start-up plus ``unknown`` for anything else a client sends.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

UNKNOWN_MODEL = "unknown"

# Seconds. Requests for small generators take milliseconds; the tail reaches into seconds when a
# queue backs up, and the request timeout (30 s by default) bounds it.
LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
# Seconds spent queued: bounded below by max_wait_ms (a few ms), so finer buckets at the bottom.
QUEUE_BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.02,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
# Images per session run: powers of two up to the largest batch size worth configuring.
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


@dataclass(frozen=True)
class ModelSeries:
    """One model's labelled series, resolved once.

    ``labels()`` validates, locks and looks up on every call (a few µs); the batcher updates
    several series per batch and per request, so it holds these instead. After
    :meth:`Metrics.forget_model` they are detached: updates to them no longer reach /metrics.
    """

    ready: Gauge
    queue_depth: Gauge
    queue_wait: Histogram
    session_runs: Counter
    batch_size: Histogram
    inference_duration: Histogram
    images_generated: Counter
    recoveries: Counter
    dropped_cancelled: Counter
    dropped_expired: Counter


def detached_series(name: str) -> ModelSeries:
    """Series that no registry exports: a batcher without metrics updates these, unguarded."""
    return Metrics().for_model(name)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "condgen_requests",
            "Generation requests by model and HTTP status.",
            ["model", "status"],
            registry=r,
        )
        self.request_duration = Histogram(
            "condgen_request_duration_seconds",
            "Whole request time, parsing to encoded response, in seconds.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "condgen_queue_wait_seconds",
            "Time from enqueue to the start of the session run that computes the request, in seconds.",
            ["model"],
            buckets=QUEUE_BUCKETS,
            registry=r,
        )
        self.inference_duration = Histogram(
            "condgen_inference_duration_seconds",
            "Duration of one session run (one batch), including conversion to uint8, in seconds.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "condgen_batch_size",
            "Images per session run.",
            ["model"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "condgen_queue_depth",
            "Images waiting in the model's queue.",
            ["model"],
            registry=r,
        )
        self.model_ready = Gauge(
            "condgen_model_ready",
            "1 when the model is loaded and its worker is alive.",
            ["model"],
            registry=r,
        )
        self.images_generated = Counter(
            "condgen_images_generated",
            "Images generated and delivered to a waiting request.",
            ["model"],
            registry=r,
        )
        self.session_runs = Counter(
            "condgen_session_runs",
            "ONNX Runtime session runs (one per batch).",
            ["model"],
            registry=r,
        )
        self.dropped = Counter(
            "condgen_requests_dropped",
            "Requests dropped before compute: cancelled (client gone, timed out) or expired in the queue.",
            ["model", "reason"],
            registry=r,
        )
        self.recoveries = Counter(
            "condgen_model_recoveries",
            "Sessions re-created after a hung run or repeated failures.",
            ["model"],
            registry=r,
        )
        self.reloads = Counter(
            "condgen_reloads",
            "Reloads of the model repository (POST /admin/reload or SIGHUP), by outcome.",
            ["outcome"],
            registry=r,
        )
        # (model, status) -> that request counter and the model's duration histogram: requests
        # are counted on every response, and the set of keys is small (models x statuses).
        self._request_series: dict[tuple[str, int], tuple[Counter, Histogram]] = {}

    def for_model(self, name: str) -> ModelSeries:
        """The model's series, created (at zero) if absent."""
        return ModelSeries(
            ready=self.model_ready.labels(name),
            queue_depth=self.queue_depth.labels(name),
            queue_wait=self.queue_wait.labels(name),
            session_runs=self.session_runs.labels(name),
            batch_size=self.batch_size.labels(name),
            inference_duration=self.inference_duration.labels(name),
            images_generated=self.images_generated.labels(name),
            recoveries=self.recoveries.labels(name),
            dropped_cancelled=self.dropped.labels(name, "cancelled"),
            dropped_expired=self.dropped.labels(name, "expired"),
        )

    def observe_request(self, model: str, status: int, seconds: float) -> None:
        """Count one answered generation request and its duration."""
        series = self._request_series.get((model, status))
        if series is None:
            series = (self.requests.labels(model, str(status)), self.request_duration.labels(model))
            self._request_series[(model, status)] = series
        series[0].inc()
        series[1].observe(seconds)

    def register_models(self, ready: Iterable[str], failed: Iterable[str]) -> None:
        """Create every model's series up front so dashboards show zeros rather than gaps."""
        for name in ready:
            self.for_model(name).ready.set(1)
            self.request_duration.labels(name)
        for name in failed:
            self.model_ready.labels(name).set(0)

    def forget_model(self, name: str) -> None:
        """Drop a model's series after a reload removed it, so dashboards stop showing it."""
        for metric in (
            self.queue_depth,
            self.model_ready,
            self.images_generated,
            self.session_runs,
            self.batch_size,
            self.inference_duration,
            self.queue_wait,
            self.recoveries,
        ):
            with contextlib.suppress(KeyError):
                metric.remove(name)
        for reason in ("cancelled", "expired"):
            with contextlib.suppress(KeyError):
                self.dropped.remove(name, reason)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def value(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        """A sample's current value (for tests and health summaries); None when absent."""
        return self.registry.get_sample_value(name, labels or {})
