"""The Segment sender over real HTTP against the stand-in: auth, gzip, sentAt, retries, errors."""

from __future__ import annotations

import orjson
import pytest

from moesif_segment_sync.errors import SegmentError, TransientHTTPError
from moesif_segment_sync.segment import SegmentSender, pack
from moesif_segment_sync.settings import load_settings
from sandbox.segment import SegmentStandIn

WRITE_KEY = "wk-test-9d2e5b"


def messages(count: int) -> list[bytes]:
    return [orjson.dumps({"type": "identify", "userId": f"u{n}", "messageId": f"m-{n}",
                          "traits": {"n": n}, "context": {"active": False}})
            for n in range(count)]


def one_batch(count: int = 3):  # noqa: ANN201 - a Batch
    return next(pack(messages(count), max_bytes=475_000, max_messages=2500))


@pytest.fixture
def segment():
    with SegmentStandIn(WRITE_KEY).start() as server:
        yield server


def sender_for(segment: SegmentStandIn, sleeps: list, *, key: str = WRITE_KEY,
               **settings: object) -> SegmentSender:
    clock = iter(range(1_795_600_000, 1_795_700_000))
    return SegmentSender(segment.url, key, load_settings(**settings), sleep=sleeps.append,
                         clock=lambda: float(next(clock)))


@pytest.mark.parametrize("gzip", [True, False])
def test_a_batch_arrives_whole_with_basic_auth(segment, gzip):
    attempts = sender_for(segment, [], gzip=gzip).send(one_batch(3))

    assert attempts == 1
    assert [m["userId"] for m in segment.delivered.values()] == ["u0", "u1", "u2"]
    [request] = segment.requests
    assert (request["status"], request["gzip"], request["n_messages"]) == (200, gzip, 3)


def test_429_honours_retry_after_and_sets_sent_at_on_every_attempt(segment):
    sleeps: list[float] = []
    segment.inject(429, retry_after=3)

    attempts = sender_for(segment, sleeps).send(one_batch())

    assert (attempts, sleeps) == (2, [3.0])
    sent_ats = [request["sent_at"] for request in segment.requests if request["status"] == 200]
    assert len(segment.delivered) == 3 and len(sent_ats) == 1
    assert sent_ats[0] == "2026-11-25T09:46:41.000Z"  # the fake clock's second tick, not its first


def test_5xx_bursts_are_retried_with_backoff(segment):
    sleeps: list[float] = []
    segment.inject(500, times=2)
    segment.inject(503)

    assert sender_for(segment, sleeps, backoff_initial=0.5).send(one_batch()) == 4
    assert len(sleeps) == 3 and sleeps[0] < sleeps[2]
    assert len(segment.delivered) == 3


@pytest.mark.parametrize("status", [408, 500, 502, 503, 504, 507])
def test_segment_408_and_5xx_are_retried(segment, status):
    segment.inject(status)
    sleeps: list[float] = []

    assert sender_for(segment, sleeps, backoff_initial=0.5).send(one_batch(2)) == 2
    assert len(sleeps) == 1 and len(segment.delivered) == 2


@pytest.mark.parametrize("status", [401, 413, 501, 505])
def test_other_4xx_and_501_505_fail_at_once(segment, status):
    segment.inject(status, times=3)
    sleeps: list[float] = []

    with pytest.raises(SegmentError) as caught:
        sender_for(segment, sleeps).send(one_batch(2))
    assert caught.value.status == status and sleeps == [] and len(segment.requests) == 1


def test_retries_are_bounded(segment):
    segment.inject(502, times=10)
    with pytest.raises(TransientHTTPError, match="502 to batch 1"):
        sender_for(segment, [], max_attempts=3).send(one_batch())
    assert len(segment.requests) == 3


def test_a_400_stops_naming_the_status_batch_and_message(segment):
    segment.inject(400, body={"code": "invalid_request", "message": "payload too large"})
    with pytest.raises(SegmentError) as caught:
        sender_for(segment, []).send(one_batch())
    assert str(caught.value) == "Segment answered 400 to batch 1: payload too large"
    assert len(segment.requests) == 1


def test_a_wrong_write_key_never_appears_in_the_error(segment):
    with pytest.raises(SegmentError) as caught:
        sender_for(segment, [], key="wk-wrong-1234").send(one_batch())
    assert caught.value.status == 401
    assert "wk-wrong-1234" not in str(caught.value)


def test_packed_batches_at_the_limits_are_all_accepted(segment):
    big = [orjson.dumps({"type": "identify", "userId": f"u{n}", "messageId": f"m-{n}",
                         "traits": {"pad": "x" * 32_600}}) for n in range(30)]
    sender = sender_for(segment, [])
    for batch in pack(big, max_bytes=500_000, max_messages=2500):
        sender.send(batch)
    assert len(segment.delivered) == 30
    assert {request["status"] for request in segment.requests} == {200}
