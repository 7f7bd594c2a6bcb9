"""Segment HTTP Tracking API: pack identify messages into batches and send them.

Synchronous on purpose (segment-api.md says why not the official library):
every batch either gets a 200 or stops the load with an error naming it,
and the caller records each outcome in the ledger, in batch order, with at
most one batch in flight (``sync._OneInFlight``): no queue, nothing dropped.
"""

from __future__ import annotations

import gzip
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import repeat

import orjson
import requests

from .errors import SegmentError, TransientHTTPError
from .moesif import redact
from .retry import build_retrying, parse_retry_after
from .settings import SyncSettings
from .values import format_utc

log = logging.getLogger(__name__)

BATCH_PATH = "/v1/batch"
_HEAD = b'{"batch":['
_SENT_AT = b'],"sentAt":"'
_TAIL = b'"}'
# The envelope around the messages, with a sentAt of the fixed length it always has.
ENVELOPE_BYTES = len(_HEAD + _SENT_AT + b"2026-11-25T01:00:02.000Z" + _TAIL)


@dataclass(frozen=True)
class Batch:
    """Consecutive messages that fit one request; ``no`` counts from 1 in packing order."""

    no: int
    messages: list[bytes]
    body_bytes: int  # the uncompressed body, sentAt included
    # The staged ``[userId, messageId]`` of each message (plan.heads), when packed with them.
    heads: list[bytes] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.messages)

    def body(self, sent_at: str) -> bytes:
        return _HEAD + b",".join(self.messages) + _SENT_AT + sent_at.encode() + _TAIL

    def edge_message_ids(self) -> tuple[str, str]:
        """The first and last messageId, for the ledger."""
        return orjson.loads(self.heads[0])[1], orjson.loads(self.heads[-1])[1]

    def ids(self) -> list[tuple[str, str]]:
        """(userId, messageId) of each message, in order: one parse of the joined heads."""
        return [(user_id, message_id) for user_id, message_id
                in orjson.loads(b"[" + b",".join(self.heads) + b"]")]


def pack(messages: Iterable[bytes], *, max_bytes: int, max_messages: int,
         heads: Iterable[bytes] | None = None) -> Iterator[Batch]:
    """Greedy packing in order: the same messages always give the same batches. ``heads``,
    one per message in the same order, are carried along into each message's batch.

    Every message is at most 32 KB (the transform rejects larger ones), so one
    always fits an empty batch under any allowed ``max_bytes``.
    """
    pairs = zip(messages, heads, strict=True) if heads is not None else zip(
        messages, repeat(None))
    current: list[bytes] = []
    current_heads: list[bytes] = []
    size = ENVELOPE_BYTES
    number = 0
    for message, head in pairs:
        added = len(message) + (1 if current else 0)
        if current and (size + added > max_bytes or len(current) >= max_messages):
            number += 1
            yield Batch(number, current, size, current_heads)
            current, current_heads, size, added = [], [], ENVELOPE_BYTES, len(message)
        current.append(message)
        if head is not None:
            current_heads.append(head)
        size += added
    if current:
        yield Batch(number + 1, current, size, current_heads)


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
        if self._settings.gzip:
            body = gzip.compress(body, compresslevel=1)
        response = self._session.post(self.url, data=body, timeout=self._settings.http_timeout)
        status = response.status_code
        if status == 200:
            return
        if status == 429:
            raise TransientHTTPError(f"Segment answered 429 (rate limited) to batch {batch.no}",
                                     status=429, retry_after=parse_retry_after(
                                         response.headers.get("Retry-After")))
        if status >= 500:
            raise TransientHTTPError(f"Segment answered {status} to batch {batch.no}",
                                     status=status)
        raise SegmentError(status, self._message(response), batch_no=batch.no)

    def _message(self, response: requests.Response) -> str:
        try:
            payload = response.json()
            text = payload.get("message") or payload.get("code") or response.text
        except (ValueError, AttributeError):
            text = response.text
        return redact(str(text)[:500], self._key)
