"""The metrics registry: one model's resolved series, request counting, forgetting a model."""

from __future__ import annotations

import pytest

from service.metrics import Metrics


def test_a_models_series_are_the_ones_metrics_exports() -> None:
    metrics = Metrics()
    series = metrics.for_model("a")
    series.queue_depth.set(3)
    series.images_generated.inc(2)
    series.dropped_expired.inc()
    series.batch_size.observe(8)

    assert metrics.value("condgen_queue_depth", {"model": "a"}) == 3
    assert metrics.value("condgen_images_generated_total", {"model": "a"}) == 2
    assert metrics.value("condgen_requests_dropped_total", {"model": "a", "reason": "expired"}) == 1
    assert metrics.value("condgen_requests_dropped_total", {"model": "a", "reason": "cancelled"}) == 0
    assert metrics.value("condgen_batch_size_sum", {"model": "a"}) == 8
    # Resolving again gives the same series, not a reset.
    assert metrics.for_model("a").queue_depth is series.queue_depth


def test_series_of_a_forgotten_model_no_longer_reach_the_export() -> None:
    metrics = Metrics()
    old = metrics.for_model("gone")
    old.ready.set(1)
    metrics.forget_model("gone")

    old.ready.set(0)  # a batcher winding down after the reload that removed its model
    old.queue_depth.set(7)
    assert metrics.value("condgen_model_ready", {"model": "gone"}) is None
    exported = [
        sample.name
        for family in metrics.registry.collect()
        for sample in family.samples
        if sample.labels.get("model") == "gone"
    ]
    assert exported == []

    fresh = metrics.for_model("gone")  # the model comes back in a later reload: fresh series
    assert metrics.value("condgen_queue_depth", {"model": "gone"}) == 0
    fresh.ready.set(1)
    assert metrics.value("condgen_model_ready", {"model": "gone"}) == 1


def test_requests_are_counted_by_model_and_status_and_timed_by_model() -> None:
    metrics = Metrics()
    metrics.observe_request("a", 200, 0.010)
    metrics.observe_request("a", 200, 0.030)
    metrics.observe_request("a", 429, 0.001)
    metrics.observe_request("unknown", 404, 0.002)

    assert metrics.value("condgen_requests_total", {"model": "a", "status": "200"}) == 2
    assert metrics.value("condgen_requests_total", {"model": "a", "status": "429"}) == 1
    assert metrics.value("condgen_requests_total", {"model": "unknown", "status": "404"}) == 1
    assert metrics.value("condgen_request_duration_seconds_count", {"model": "a"}) == 3
    total = metrics.value("condgen_request_duration_seconds_sum", {"model": "a"})
    assert total == pytest.approx(0.041)
