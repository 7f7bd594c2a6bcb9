"""Segment misbehaving mid-load, over real HTTP: retried sends deliver every message once per
messageId; a refused batch stops the load, and the ledger says exactly how far it got."""

from __future__ import annotations

import logging

import pytest

from moesif_segment_sync import sync
from moesif_segment_sync.errors import SegmentError
from moesif_segment_sync.settings import Endpoint
from moesif_segment_sync.store.audit import AuditStore
from sandbox.moesif import MoesifStandIn
from sandbox.segment import SegmentStandIn
from tests.reliability.support import (
    DAG_ID,
    MOESIF_KEY,
    WRITE_KEY,
    extract,
    make_run,
    staged_messages,
    users_in_window,
    wait_for,
)

USERS = users_in_window(120)
BATCHED = {"max_batch_messages": 20, "http_timeout": 0.5}  # 6 batches of 20


@pytest.fixture
def segment():
    with SegmentStandIn(WRITE_KEY).start() as server:
        yield server


@pytest.fixture
def built(tmp_path):
    """A run whose 120 messages are staged in one shard: (run, shard, messageIds in order)."""
    run = make_run(tmp_path, **BATCHED)
    with MoesifStandIn(USERS, [], api_key=MOESIF_KEY).start() as moesif:
        extract(run, moesif.url)
    [shard] = sync.transform(run)
    return run, shard, [message["messageId"] for message in staged_messages(run)]


def load(run, segment: SegmentStandIn, shard: dict) -> dict:  # noqa: ANN001
    return sync.load(run, Endpoint(segment.url, WRITE_KEY), shard)


def ledger(run) -> dict[int, tuple[str, int]]:  # noqa: ANN001
    """batch number -> (status, attempts) of the run's only shard."""
    store = AuditStore(run.audit_url)
    try:
        return {no: (entry.status, entry.attempts)
                for (_, no), entry in store.ledger(run.key).items()}
    finally:
        store.close()


def test_a_429_with_retry_after_waits_as_told_and_every_message_arrives_once(
        built, segment, fake_time, caplog):
    run, summary, message_ids = built
    segment.inject(429, retry_after=2, after=1)

    with caplog.at_level(logging.WARNING):
        loaded = load(run, segment, summary)

    assert fake_time.sleeps == [2.0]
    assert [record.getMessage() for record in caplog.records
            if record.name == "moesif_segment_sync.retry"] == [
        "Segment batch 2: attempt 1 of 6 failed (Segment answered 429 (rate limited) to batch 2);"
        " waiting 2.0 s"]
    assert list(segment.delivered) == message_ids
    assert (segment.duplicates, loaded.sent, loaded.attempts) == (0, 120, 7)
    assert ledger(run)[2] == ("sent", 2)


def test_a_burst_of_500s_is_retried_with_growing_backoff_and_every_message_arrives_once(
        built, segment, fake_time):
    run, summary, message_ids = built
    segment.inject(500, after=2, times=3)

    load(run, segment, summary)

    first, second, third = fake_time.sleeps
    assert 0.5 <= first <= 1.0 and 1.0 <= second <= 1.5 and 2.0 <= third <= 2.5
    assert list(segment.delivered) == message_ids and segment.duplicates == 0
    assert ledger(run)[3] == ("sent", 4)


def test_a_timed_out_batch_is_sent_again_and_arrives_once_per_message_id(built, segment,
                                                                         fake_time):
    run, summary, message_ids = built
    segment.inject(delay=1.5, after=3)  # Segment keeps batch 4, but answers too late

    load(run, segment, summary)

    wait_for(lambda: len(segment.requests) == 7)
    assert set(segment.delivered) == set(message_ids) and len(segment.delivered) == 120
    assert segment.duplicates == 20  # batch 4's second copy, which Segment drops by messageId
    assert ledger(run)[4] == ("sent", 2)


def test_a_reset_connection_is_retried_and_every_message_arrives_once(built, segment,
                                                                      fake_time):
    run, summary, message_ids = built
    segment.inject(reset=True, after=4)

    load(run, segment, summary)

    assert list(segment.delivered) == message_ids and segment.duplicates == 0
    assert ledger(run)[5] == ("sent", 2)


def test_a_400_fails_naming_the_batch_and_nothing_after_it_is_marked_sent(built, segment,
                                                                          fake_time):
    run, summary, message_ids = built
    segment.inject(400, after=2, body={"code": "invalid_request",
                                       "message": "Message 7 is not valid JSON"})

    with pytest.raises(SegmentError) as caught:
        load(run, segment, summary)

    assert str(caught.value) == "Segment answered 400 to batch 3: Message 7 is not valid JSON"
    assert ledger(run) == {1: ("sent", 1), 2: ("sent", 1), 3: ("failed", 1)}
    store = AuditStore(run.audit_url)
    assert store.ledger(run.key)[(0, 3)].error == str(caught.value)
    accepted = store.accepted_message_ids(DAG_ID, [user["user_id"] for user in USERS])
    store.close()
    assert sorted(accepted.values()) == sorted(message_ids[:40])
    assert list(segment.delivered) == message_ids[:40]
    assert fake_time.sleeps == []


def test_the_last_batch_refused_is_recorded_failed_and_a_retry_sends_only_it(built, segment,
                                                                            fake_time):
    """The last batch is answered after the loop has packed everything: it still stops the
    load with its error, and the retry skips the five batches the ledger holds as sent."""
    run, summary, message_ids = built
    segment.inject(400, after=5, body={"code": "invalid_request", "message": "no"})

    with pytest.raises(SegmentError, match="batch 6: no"):
        load(run, segment, summary)

    assert ledger(run) == {**{no: ("sent", 1) for no in range(1, 6)}, 6: ("failed", 1)}
    assert list(segment.delivered) == message_ids[:100]

    resumed = load(run, segment, summary)

    assert (resumed.resumed_batches, resumed.sent, resumed.attempts) == (5, 120, 1)
    assert list(segment.delivered) == message_ids and segment.duplicates == 0
    assert ledger(run)[6] == ("sent", 1)


def test_a_refused_batch_is_the_last_one_sent_while_its_predecessor_is_recorded(
        built, segment, fake_time):
    """Batch 2 goes out while batch 1's ledger row is written; when batch 2 is refused,
    batch 3 is never handed to the sender."""
    run, summary, message_ids = built
    segment.inject(400, after=1, body={"code": "invalid_request", "message": "no"})

    with pytest.raises(SegmentError, match="batch 2: no"):
        load(run, segment, summary)

    assert ledger(run) == {1: ("sent", 1), 2: ("failed", 1)}
    assert len(segment.requests) == 2
    assert list(segment.delivered) == message_ids[:20]
