from __future__ import annotations

import pytest

from bench.load import LoadSpec, parse_wrk_output, run_python, run_wrk, wrk_available
from bench.servers import ServerProcess
from tests.bench.conftest import GRAY, UNCOND


def _spec(server: ServerProcess, **kw: object) -> LoadSpec:
    base: dict[str, object] = {
        "port": server.spec.port,
        "model": GRAY,
        "n": 4,
        "concurrency": 4,
        "duration_s": 0.5,
    }
    return LoadSpec(**{**base, **kw})  # type: ignore[arg-type]


def _check(result_requests: int, errors: int, latency: dict[str, float]) -> None:
    assert result_requests > 0
    assert errors == 0
    assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"] <= latency["max"]


def test_python_client_counts_requests_and_latencies(condgen: ServerProcess) -> None:
    result = run_python(_spec(condgen))
    _check(result.requests, result.error_count, result.latency_ms)
    assert result.loadgen == "python"
    assert result.bytes > result.requests * 100  # PNG answers, not error bodies
    assert result.images_per_s == pytest.approx(result.requests_per_s * 4)


def test_python_client_counts_error_statuses(condgen: ServerProcess) -> None:
    result = run_python(_spec(condgen, model="no-such-model", concurrency=2, duration_s=0.3))
    assert result.requests > 0
    assert result.errors["status"] == result.requests
    assert result.ok_requests == 0
    assert result.images_per_s == 0


def test_an_unconditional_model_is_loaded_without_a_label(condgen: ServerProcess) -> None:
    assert LoadSpec(port=1, model="m", label=None).body(5) == b'{"model":"m","seed":5,"n":1}'
    result = run_python(_spec(condgen, model=UNCOND, label=None))
    _check(result.requests, result.error_count, result.latency_ms)
    # With a label every answer is a refusal: the unconditional model takes none.
    refused = run_python(_spec(condgen, model=UNCOND, label=0, duration_s=0.3))
    assert refused.errors["status"] == refused.requests > 0


@pytest.mark.skipif(not wrk_available(), reason="wrk is not installed (apt-get install wrk)")
def test_wrk_sends_no_label_to_an_unconditional_model(condgen: ServerProcess) -> None:
    result = run_wrk(_spec(condgen, model=UNCOND, label=None, duration_s=1.0))
    _check(result.requests, result.error_count, result.latency_ms)


@pytest.mark.skipif(not wrk_available(), reason="wrk is not installed (apt-get install wrk)")
def test_wrk_counts_requests_and_latencies(condgen: ServerProcess) -> None:
    result = run_wrk(_spec(condgen, duration_s=1.0))
    _check(result.requests, result.error_count, result.latency_ms)
    assert result.loadgen == "wrk"


def test_wrk_summary_is_parsed() -> None:
    line = (
        'BENCH_JSON {"requests":10,"duration_us":2000000,"bytes":5000,'
        '"errors":{"connect":0,"read":0,"write":0,"status":2,"timeout":0},'
        '"latency_us":{"min":1000,"max":9000,"mean":3000.0,"p50":2500,"p90":6000,"p95":7000,"p99":8500,"p999":9000}}'
    )
    spec = LoadSpec(port=1, model="m", n=16, concurrency=8)
    result = parse_wrk_output("Running 2s test\n" + line + "\n", spec)
    assert result.requests == 10
    assert result.ok_requests == 8
    assert result.requests_per_s == pytest.approx(4.0)
    assert result.images_per_s == pytest.approx(64.0)
    assert result.latency_ms["p99"] == pytest.approx(8.5)
    assert result.error_count == 2


def test_wrk_without_summary_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="no summary"):
        parse_wrk_output("unable to connect\n", LoadSpec(port=1, model="m"))
