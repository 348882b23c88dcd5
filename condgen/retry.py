"""When to try a request again: 429 answers, 503 answers with a Retry-After, and connections that
could not be opened, a bounded number of times, never sooner than the server's Retry-After, with
jitter so clients that were refused together do not all come back in the same instant."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass

from condgen.errors import CondgenError, ConnectionFailed, Overloaded, Unavailable

logger = logging.getLogger(__name__)

# ConnectionFailed.error_type of a connection that could not be opened (the only one retried).
CONNECT_REFUSED = "connection"


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 8  # attempts after the first
    backoff_s: float = 0.25  # first wait when the server names none; doubles per attempt
    max_wait_s: float = 30.0  # a longer Retry-After is not waited for: the error is raised
    jitter: float = 0.25  # up to this fraction of the wait is added at random
    # A refused connection is retried a few times only (a server restarting), not for a minute;
    # a timeout or a connection lost mid-answer is not retried (the work may be running still).
    connect_retries: int = 3

    def wait_s(self, error: CondgenError, attempt: int, rng: random.Random | None = None) -> float | None:
        """Seconds to wait before attempt ``attempt + 1`` (0-based), or None to give up."""
        if not isinstance(error, Overloaded | Unavailable | ConnectionFailed) or attempt >= self.retries:
            return None
        if isinstance(error, ConnectionFailed) and (
            error.error_type != CONNECT_REFUSED or attempt >= self.connect_retries
        ):
            return None
        if isinstance(error, Unavailable) and error.retry_after_s is None:
            return None  # the server says it will not heal by itself (a model that failed to load)
        base = error.retry_after_s
        if base is None:  # our own backoff is capped; a server that asks for longer is not waited for
            base = min(self.backoff_s * 2.0**attempt, self.max_wait_s)
        elif base > self.max_wait_s:
            return None
        wait = base + (rng or random).uniform(0.0, self.jitter * max(base, self.backoff_s))
        logger.info(
            "%s; retrying in %.2f s (Retry-After: %s; attempt %d of %d)",
            error,
            wait,
            "none" if error.retry_after_s is None else f"{error.retry_after_s:g} s",
            attempt + 1,
            self.retries,
        )
        return wait
