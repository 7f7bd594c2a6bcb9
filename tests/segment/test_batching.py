"""Packing messages into /v1/batch requests under Segment's limits."""

from __future__ import annotations

import orjson
import pytest

from moesif_segment_sync.segment import ENVELOPE_BYTES, RateLimiter, pack
from moesif_segment_sync.settings import SEGMENT_MAX_MESSAGE_BYTES


def message(number: int, size: int) -> bytes:
    """An identify of exactly ``size`` bytes of JSON."""
    head = orjson.dumps({"type": "identify", "userId": f"u{number}", "messageId": f"m{number}",
                         "traits": {"pad": ""}})
    body = orjson.dumps({"type": "identify", "userId": f"u{number}", "messageId": f"m{number}",
                         "traits": {"pad": "x" * (size - len(head))}})
    assert len(body) == size
    return body


def test_the_body_is_exactly_as_large_as_counted():
    batches = list(pack([message(i, 1000) for i in range(10)], max_bytes=475_000,
                        max_messages=2500))
    assert len(batches) == 1
    body = batches[0].body("2026-11-25T01:00:02.000Z")
    assert len(body) == batches[0].body_bytes == ENVELOPE_BYTES + 10 * 1000 + 9
    assert orjson.loads(body)["sentAt"] == "2026-11-25T01:00:02.000Z"


def test_a_batch_that_fits_to_the_byte_is_kept_whole():
    limit = ENVELOPE_BYTES + 3 * 1000 + 2
    batches = list(pack([message(i, 1000) for i in range(3)], max_bytes=limit, max_messages=100))
    assert [b.count for b in batches] == [3]
    assert batches[0].body_bytes == limit


def test_one_byte_less_starts_a_new_batch():
    limit = ENVELOPE_BYTES + 3 * 1000 + 2 - 1
    batches = list(pack([message(i, 1000) for i in range(3)], max_bytes=limit, max_messages=100))
    assert [b.count for b in batches] == [2, 1]
    assert all(b.body_bytes <= limit for b in batches)


def test_batches_never_exceed_the_message_count():
    batches = list(pack([message(i, 150) for i in range(6001)], max_bytes=475_000,
                        max_messages=2500))
    assert [b.count for b in batches] == [2500, 2500, 1001]
    assert [b.no for b in batches] == [1, 2, 3]


@pytest.mark.parametrize("max_bytes", [SEGMENT_MAX_MESSAGE_BYTES + 1024, 475_000, 500_000])
def test_largest_messages_stay_under_the_byte_limit(max_bytes):
    messages = [message(i, SEGMENT_MAX_MESSAGE_BYTES) for i in range(40)]
    batches = list(pack(messages, max_bytes=max_bytes, max_messages=2500))
    assert sum(b.count for b in batches) == 40
    assert all(len(b.body("2026-11-25T01:00:02.000Z")) <= max_bytes for b in batches)


def test_packing_is_deterministic_and_keeps_order():
    messages = [message(i, 300 + (i * 37) % 900) for i in range(3000)]
    first = list(pack(messages, max_bytes=100_000, max_messages=500))
    second = list(pack(messages, max_bytes=100_000, max_messages=500))
    assert [b.messages for b in first] == [b.messages for b in second]
    assert [m for b in first for m in b.messages] == messages


def test_rate_limiter_spaces_sends_to_the_rate():
    now = [0.0]
    slept = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(1000, clock=lambda: now[0], sleep=sleep)
    for _ in range(4):
        limiter.wait(500)
    assert slept == [0.5, 0.5, 0.5]
