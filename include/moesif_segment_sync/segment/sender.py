"""Segment HTTP Tracking API: send packed batches (``batching``) at a held rate.

Synchronous on purpose (segment-api.md says why not the official library):
every batch either gets a 200 or stops the load with an error naming it,
and the caller records each outcome in the ledger, in batch order, with at
most one batch in flight (``pipeline.load._OneInFlight``): no queue, nothing dropped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

import requests
from isal import igzip

from .. import metrics
from ..codec import format_utc
from ..errors import SegmentError, redact
from ..retry import build_retrying, transient_error
from ..settings import SyncSettings
from .batching import Batch

log = logging.getLogger(__name__)

BATCH_PATH = "/v1/batch"


class RateLimiter:
    """Holds the average send rate to ``per_second`` events, measured from the first send."""

    def __init__(self, per_second: float | None, *,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.per_second = per_second
        self._clock, self._sleep = clock, sleep
        self._started: float | None = None
        self._events = 0

    def wait(self, events: int) -> None:
        if self.per_second is None:
            return
        now = self._clock()
        if self._started is None:
            self._started = now
        due = self._started + self._events / self.per_second
        if due > now:
            self._sleep(due - now)
        self._events += events


class SegmentSender:
    """Sends batches to ``{host}/v1/batch`` with the write key, retrying what can be retried."""

    def __init__(self, host: str, write_key: str, settings: SyncSettings, *,
                 session: requests.Session | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.time) -> None:
        self.url = host.rstrip("/") + BATCH_PATH
        self._key = write_key
        self._settings = settings
        self._session = session or requests.Session()
        # HTTP Basic with the write key as user name and an empty password.
        self._session.auth = (write_key, "")
        self._session.headers.update({"Content-Type": "application/json"})
        if settings.gzip:
            self._session.headers["Content-Encoding"] = "gzip"
        self._sleep, self._clock = sleep, clock
        self.attempts = 0  # of the last send, successful or not

    def close(self) -> None:
        self._session.close()

    def send(self, batch: Batch) -> int:
        """Deliver one batch; return how many attempts it took. Raises when it cannot."""
        settings = self._settings
        self.attempts = 0
        retrying = build_retrying(
            what=f"Segment batch {batch.no}", max_attempts=settings.max_attempts,
            backoff_initial=settings.backoff_initial, backoff_max=settings.backoff_max,
            rate_limit_jitter=settings.rate_limit_jitter, sleep=self._sleep, clock=self._clock)
        retrying(self._send_once, batch)
        return self.attempts

    def _send_once(self, batch: Batch) -> None:
        self.attempts += 1
        # sentAt is set on every attempt so Segment's clock-skew correction stays right.
        body = batch.body(format_utc(datetime.fromtimestamp(self._clock(), UTC)))
        if self._settings.gzip:  # ISA-L: a fifth of zlib's time for a batch (docs/development.md)
            body = igzip.compress(body, compresslevel=1)
        started = time.monotonic()
        response = self._session.post(self.url, data=body, timeout=self._settings.http_timeout)
        metrics.timing("segment.send_latency", time.monotonic() - started)
        status = response.status_code
        if status == 200:
            return
        transient = transient_error("segment", status, response.headers.get("Retry-After"),
                                    f"to batch {batch.no}")
        if transient is not None:
            raise transient
        raise SegmentError(status, self._message(response), batch_no=batch.no)

    def _message(self, response: requests.Response) -> str:
        try:
            payload = response.json()
            text = payload.get("message") or payload.get("code") or response.text
        except (ValueError, AttributeError):
            text = response.text
        return redact(str(text)[:500], self._key)
