"""The one retry policy both APIs share, built on tenacity.

What is retried: the statuses of ``RETRYABLE_STATUSES``, broken bodies and
connection errors (raised as ``TransientHTTPError`` or by ``requests``). How long to wait:
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

from . import metrics
from .errors import TransientHTTPError

log = logging.getLogger(__name__)

# Which HTTP statuses each API answers that a later attempt can turn into a 200.
# - 408 Request Timeout, both: RFC 9110 section 15.5.9, the client "MAY repeat that request".
# - 429, both: Moesif's 500 queries per calendar minute (moesif-api.md) and Segment's
#   throughput limit, which answers 429 with Retry-After (segment-api.md).
# - Moesif: "502/503 are transient: retry" (its API reference, moesif-api.md); 504 is a
#   gateway's timeout like 502; its documented 500 is not said to be transient, so no retry.
# - Segment: "429 and 5xx are retryable; other 4xx are not" (HTTP Tracking API,
#   segment-api.md), but for 501 Not Implemented and 505 HTTP Version Not Supported, which
#   RFC 9110 (sections 15.6.2, 15.6.6) defines as the server not supporting the request at all.
RETRYABLE_STATUSES = {
    "moesif": frozenset({408, 429, 502, 503, 504}),
    "segment": frozenset({408, 429, *range(500, 600)}) - {501, 505},
}


def transient_error(api: str, status: int, retry_after: str | None,
                    where: str) -> TransientHTTPError | None:
    """The error to retry for a retryable ``status`` of ``api`` (None for any other status);
    a 429 carries its ``Retry-After``."""
    if status not in RETRYABLE_STATUSES[api]:
        return None
    name = {"moesif": "Moesif", "segment": "Segment"}[api]
    if status == 429:
        return TransientHTTPError(f"{name} answered 429 (rate limited) {where}", status=429,
                                  retry_after=parse_retry_after(retry_after))
    return TransientHTTPError(f"{name} answered {status} {where}", status=status)


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

    api = what.split(" ", 1)[0].lower()  # "Moesif ..." or "Segment ..."

    def log_wait(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        metrics.incr(f"{api}.retries")
        if isinstance(exc, TransientHTTPError) and exc.status == 429:
            metrics.incr(f"{api}.rate_limited")
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
