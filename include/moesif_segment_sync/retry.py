"""The one retry policy both APIs share, built on tenacity.

What is retried: 429, 5xx gateways, broken bodies and connection errors
(raised as ``TransientHTTPError`` or by ``requests``). How long to wait:
a 429 waits as long as its ``Retry-After`` says; a 429 without it waits to
the next calendar minute (Moesif's limit resets on fixed minutes) plus
jitter; everything else backs off exponentially with jitter.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable

import requests
import tenacity

from .errors import TransientHTTPError

log = logging.getLogger(__name__)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header given in seconds; None when absent or a date."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return max(seconds, 0.0)


def seconds_to_next_minute(now: float) -> float:
    return 60.0 - (now % 60.0)


def build_retrying(
    *,
    what: str,
    max_attempts: int,
    backoff_initial: float,
    backoff_max: float,
    rate_limit_jitter: float,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.time,
) -> tenacity.Retrying:
    """A tenacity ``Retrying`` for one kind of request, described by ``what`` in the logs."""
    backoff = tenacity.wait_exponential_jitter(initial=backoff_initial, max=backoff_max,
                                               jitter=backoff_initial)

    def wait(state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, TransientHTTPError) and exc.status == 429:
            if exc.retry_after is not None:
                return exc.retry_after
            return seconds_to_next_minute(clock()) + random.uniform(0, rate_limit_jitter)
        return backoff(state)

    def log_wait(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning("%s: attempt %d of %d failed (%s); waiting %.1f s",
                    what, state.attempt_number, max_attempts, exc,
                    state.next_action.sleep if state.next_action else 0.0)

    return tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(
            (TransientHTTPError, requests.ConnectionError, requests.Timeout)),
        wait=wait,
        stop=tenacity.stop_after_attempt(max_attempts),
        sleep=sleep,
        before_sleep=log_wait,
        reraise=True,
    )
