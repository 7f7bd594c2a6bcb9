"""The Segment stand-in over real HTTP: auth, gzip, size limits, quiet drops, de-duplication."""

from __future__ import annotations

import gzip
from typing import Any

import orjson
import requests

from sandbox.segment import MAX_BODY_BYTES, MAX_MESSAGE_BYTES, SegmentStandIn

SENT_AT = "2026-11-25T01:00:02.000Z"


def identify(n: int, **fields: Any) -> dict[str, Any]:
    return {"type": "identify", "userId": f"usr_{n}", "messageId": f"msg_{n}",
            "traits": {"plan": "free"}, **fields}


def padded(n: int, size: int) -> dict[str, Any]:
    """An identify whose compact JSON is exactly ``size`` bytes."""
    message = identify(n, traits={"pad": ""})
    message["traits"]["pad"] = "x" * (size - len(orjson.dumps(message)))
    assert len(orjson.dumps(message)) == size
    return message


def body_of_size(size: int) -> bytes:
    """A valid batch body of exactly ``size`` bytes, made of messages under 32 KB."""
    messages = [padded(n, 30_000) for n in range(size // 30_100)]
    envelope = {"batch": messages, "sentAt": SENT_AT}
    messages[-1]["traits"]["pad"] += "x" * (size - len(orjson.dumps(envelope)))
    body = orjson.dumps(envelope)
    assert len(body) == size
    return body


def post(session: requests.Session, url: str, body: bytes, **headers: str) -> requests.Response:
    return session.post(f"{url}/v1/batch", data=body,
                        headers={"Content-Type": "application/json", **headers}, timeout=10)


def batch(*messages: Any, sent_at: str | None = SENT_AT) -> bytes:
    envelope: dict[str, Any] = {"batch": list(messages)}
    if sent_at is not None:
        envelope["sentAt"] = sent_at
    return orjson.dumps(envelope)


def test_accepted_batch_answers_success_and_records_messages(segment, segment_session):
    response = post(segment_session, segment.url, batch(identify(1), identify(2)))

    assert response.status_code == 200
    assert response.json() == {"success": True}
    assert segment.delivered == {"msg_1": identify(1), "msg_2": identify(2)}
    assert segment.accepted == [identify(1), identify(2)]


def test_missing_or_wrong_write_key_is_a_401(segment):
    missing = requests.post(f"{segment.url}/v1/batch", data=batch(identify(1)))
    wrong = requests.post(f"{segment.url}/v1/batch", data=batch(identify(1)),
                          auth=("other-key", ""))
    with_password = requests.post(f"{segment.url}/v1/batch", data=batch(identify(1)),
                                  auth=("test-write-key", "secret"))

    assert [r.status_code for r in (missing, wrong, with_password)] == [401, 401, 401]
    assert missing.json()["code"] == "unauthorized"
    assert segment.accepted == []


def test_gzip_body_is_accepted(segment, segment_session):
    response = post(segment_session, segment.url, gzip.compress(batch(identify(1))),
                    **{"Content-Encoding": "gzip"})

    assert response.status_code == 200
    assert list(segment.delivered) == ["msg_1"]
    assert segment.requests[0]["gzip"] is True


def test_message_of_exactly_32_kb_is_accepted(segment, segment_session):
    response = post(segment_session, segment.url, batch(padded(1, MAX_MESSAGE_BYTES)))

    assert response.status_code == 200


def test_one_message_over_32_kb_fails_the_whole_batch_with_400(segment, segment_session):
    response = post(segment_session, segment.url,
                    batch(identify(1), padded(2, MAX_MESSAGE_BYTES + 1)))

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_request"
    assert "32" in response.json()["message"]
    assert segment.accepted == []


def test_body_of_exactly_500_kb_is_accepted(segment, segment_session):
    response = post(segment_session, segment.url, body_of_size(MAX_BODY_BYTES))

    assert response.status_code == 200


def test_body_over_500_kb_is_a_400(segment, segment_session):
    response = post(segment_session, segment.url, body_of_size(MAX_BODY_BYTES + 1))

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_request"
    assert segment.accepted == []


def test_body_limit_counts_uncompressed_bytes(segment, segment_session):
    body = gzip.compress(body_of_size(MAX_BODY_BYTES + 1))

    response = post(segment_session, segment.url, body, **{"Content-Encoding": "gzip"})

    assert len(body) < MAX_BODY_BYTES
    assert response.status_code == 400


def test_invalid_json_is_a_400(segment, segment_session):
    response = post(segment_session, segment.url, b'{"batch": [')

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_request"


def test_messages_past_2500_are_dropped_quietly(segment, segment_session):
    messages = [{"type": "identify", "userId": f"u{n}", "messageId": f"m{n}"}
                for n in range(2_600)]

    response = post(segment_session, segment.url, batch(*messages))

    assert response.status_code == 200
    assert len(segment.delivered) == 2_500
    assert "m2499" in segment.delivered and "m2500" not in segment.delivered
    assert segment.dropped == 100
    assert segment.stats()["dropped_over_limit"] == 100


def test_messages_without_type_or_user_are_dropped_quietly(segment, segment_session):
    no_type = {"userId": "usr_1", "messageId": "a"}
    no_user = {"type": "identify", "messageId": "b"}
    blank_user = {"type": "identify", "userId": "  ", "messageId": "c"}
    anonymous = {"type": "identify", "anonymousId": "anon_1", "messageId": "d"}

    response = post(segment_session, segment.url,
                    batch(no_type, no_user, blank_user, anonymous, "not an object"))

    assert response.status_code == 200
    assert list(segment.delivered) == ["d"]
    assert segment.dropped == 4


def test_repeated_message_id_keeps_the_first_and_counts_the_duplicate(segment, segment_session):
    first = identify(1, traits={"plan": "free"})
    repeat = identify(1, traits={"plan": "growth"})

    post(segment_session, segment.url, batch(first))
    post(segment_session, segment.url, batch(repeat))

    assert segment.delivered == {"msg_1": first}
    assert segment.accepted == [first, repeat]
    assert segment.duplicates == 1


def test_sent_at_is_recorded_per_request_and_its_absence_counted(segment, segment_session):
    post(segment_session, segment.url, batch(identify(1)))
    post(segment_session, segment.url, batch(identify(2), sent_at=None))

    assert [entry["sent_at"] for entry in segment.requests] == [SENT_AT, None]
    assert segment.stats()["missing_sent_at"] == 1


def test_request_log_records_size_count_and_status(segment, segment_session):
    body = batch(identify(1), identify(2))

    post(segment_session, segment.url, body)
    entry = segment.requests[0]

    assert {key: entry[key] for key in ("status", "n_messages", "body_bytes", "gzip")} == {
        "status": 200, "n_messages": 2, "body_bytes": len(body), "gzip": False}


def test_control_api_over_http_lists_counts_and_clears(segment, segment_session):
    control = f"{segment.url}/_sandbox"
    post(segment_session, segment.url, batch(identify(1), identify(1), {"type": "identify"}))

    delivered = requests.get(f"{control}/delivered").json()
    stats = requests.get(f"{control}/stats").json()
    requests.post(f"{control}/clear")

    assert delivered == [identify(1)]
    assert {key: stats[key] for key in ("accepted", "delivered", "duplicates", "dropped")} == {
        "accepted": 2, "delivered": 1, "duplicates": 1, "dropped": 1}
    assert segment.stats()["accepted"] == 0
    assert segment.requests == []


def test_a_stand_in_keeping_only_ids_counts_alike_and_shows_no_messages(segment_session):
    with SegmentStandIn(keep_messages=False) as segment:  # the write key of segment_session
        post(segment_session, segment.url, batch(identify(1), identify(1), identify(2),
                                                 {"type": "identify"}))
        stats = segment.stats()
        shown = requests.get(f"{segment.url}/_sandbox/delivered")

    assert {key: stats[key] for key in ("accepted", "delivered", "duplicates", "dropped")} == {
        "accepted": 3, "delivered": 2, "duplicates": 1, "dropped": 1}
    assert shown.status_code == 409
    assert "keeps only messageIds" in shown.json()["message"]
