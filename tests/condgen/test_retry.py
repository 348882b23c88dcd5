"""condgen.retry: which failures are tried again, how often, and never sooner than Retry-After."""

from __future__ import annotations

import random

import pytest

from condgen.errors import BadRequest, CondgenError, ConnectionFailed, Overloaded, Unavailable
from condgen.retry import CONNECT_REFUSED, RetryPolicy

POLICY = RetryPolicy(retries=8, backoff_s=0.25, max_wait_s=30.0, jitter=0.25, connect_retries=3)


def _wait(error: CondgenError, attempt: int = 0) -> float | None:
    return POLICY.wait_s(error, attempt, random.Random(0))


def test_a_retry_after_is_a_floor_and_the_jitter_is_bounded() -> None:
    for seconds in (0.5, 2.0, 10.0):
        wait = _wait(Overloaded("full", error_type="queue_full", status=429, retry_after_s=seconds))
        assert wait is not None
        assert seconds <= wait <= seconds * 1.25


def test_without_a_retry_after_a_429_backs_off_and_gives_up_after_the_retries() -> None:
    full = Overloaded("full", error_type="queue_full", status=429)
    waits = [_wait(full, attempt) or 0.0 for attempt in range(POLICY.retries)]
    assert all(w > 0 for w in waits)
    assert waits[3] >= 0.25 * 2**3
    assert max(waits) <= 30.0 * 1.25  # the backoff is capped, not a reason to give up
    assert _wait(full, POLICY.retries) is None


def test_a_503_without_retry_after_is_not_retried() -> None:
    """The server's word for "this will not heal by itself" (a model that failed to load)."""
    failed = Unavailable("failed to load", error_type="model_not_ready", status=503)
    assert _wait(failed) is None
    draining = Unavailable("draining", error_type="shutting_down", status=503, retry_after_s=1.0)
    assert _wait(draining) is not None


def test_only_a_connection_that_could_not_be_opened_is_retried_and_only_a_few_times() -> None:
    refused = ConnectionFailed("refused", error_type=CONNECT_REFUSED)
    assert [_wait(refused, a) is not None for a in range(5)] == [True, True, True, False, False]
    timed_out = ConnectionFailed("read timeout", error_type="transport")
    assert _wait(timed_out) is None


@pytest.mark.parametrize("error", [BadRequest("bad", status=422), CondgenError("other", status=500)])
def test_client_errors_and_server_failures_are_not_retried(error: CondgenError) -> None:
    assert _wait(error) is None


def test_a_retry_after_longer_than_the_bound_is_not_waited_for() -> None:
    assert _wait(Overloaded("full", status=429, retry_after_s=31.0)) is None
