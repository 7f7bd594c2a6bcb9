"""The Moesif client over real HTTP against the local stand-in: paging, windows, retries."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from moesif_segment_sync import moesif
from moesif_segment_sync.errors import MoesifError, TransientHTTPError
from moesif_segment_sync.moesif import MoesifClient
from moesif_segment_sync.settings import load_settings
from sandbox.moesif import MoesifStandIn

KEY = "mk-test-3f1c9a7e"
START, END = datetime(2026, 11, 25, 1, tzinfo=UTC), datetime(2026, 11, 25, 2, tzinfo=UTC)


def user(number: int, modified: str, **extra: object) -> dict:
    return {"user_id": f"usr_{number:05d}", "modified_time": modified, **extra}


@pytest.fixture
def sleeps():
    return []


def client_for(server: MoesifStandIn, sleeps: list, *, key: str = KEY, now: float = 0.0,
               **settings: object) -> MoesifClient:
    options = {"backoff_initial": 0.5, "backoff_max": 4.0, "rate_limit_jitter": 5.0, **settings}
    return MoesifClient(server.url, key, load_settings(**options), sleep=sleeps.append,
                        clock=lambda: now)


def user_ids(client: MoesifClient, query: dict) -> list[str]:
    return [hit["_source"]["user_id"] for page in client.search("users", query)
            for hit in page.hits]


def test_ties_on_modified_time_across_pages_come_back_exactly_once(sleeps):
    users = [user(n, "2026-11-25T01:30:00.0000000Z") for n in range(2500)]
    with MoesifStandIn(users, [], api_key=KEY).start() as server:
        ids = user_ids(client_for(server, sleeps, page_size=1000),
                       moesif.changed_in_window(START, END))
        bodies = [entry["body"] for entry in server.requests]
    assert sorted(ids) == sorted(u["user_id"] for u in users)
    assert len(ids) == len(set(ids)) == 2500
    assert [len(body.get("search_after") or []) for body in bodies] == [0, 2, 2]
    assert all("from" not in body for body in bodies)
    assert bodies[0]["sort"] == [{"modified_time": {"order": "asc"}}, {"_id": {"order": "asc"}}]


def test_an_empty_window_is_one_request_and_no_records(sleeps):
    with MoesifStandIn([user(1, "2026-11-24T00:00:00Z")], [], api_key=KEY).start() as server:
        assert user_ids(client_for(server, sleeps), moesif.changed_in_window(START, END)) == []
        assert len(server.requests) == 1


def test_a_record_at_start_is_in_and_at_end_is_out(sleeps):
    users = [user(1, "2026-11-25T01:00:00.000Z"), user(2, "2026-11-25T02:00:00.000Z"),
             user(3, "2026-11-25T00:59:59.999Z"), user(4, "2026-11-25T01:59:59.9999999Z"),
             user(5, "2026-11-24T00:00:00Z", last_seen_time="2026-11-25T01:15:00Z")]
    with MoesifStandIn(users, [], api_key=KEY).start() as server:
        ids = user_ids(client_for(server, sleeps), moesif.changed_in_window(START, END))
    assert sorted(ids) == ["usr_00001", "usr_00004", "usr_00005"]


def test_members_of_changed_companies_skip_users_the_window_already_has(sleeps):
    users = [user(1, "2026-11-25T01:10:00Z", company_id="cmp_a"),
             user(2, "2026-11-20T00:00:00Z", company_id="cmp_a"),
             user(3, "2026-11-20T00:00:00Z", company_id="cmp_b")]
    with MoesifStandIn(users, [], api_key=KEY).start() as server:
        ids = user_ids(client_for(server, sleeps),
                       moesif.members_of(["cmp_a"], not_changed_in=(START, END)))
    assert ids == ["usr_00002"]


def test_429_with_retry_after_waits_as_told(sleeps):
    with MoesifStandIn([user(1, "2026-11-25T01:10:00Z")], [], api_key=KEY).start() as server:
        server.inject(429, retry_after=7, times=2)
        ids = user_ids(client_for(server, sleeps), moesif.everything())
    assert ids == ["usr_00001"]
    assert sleeps == [7.0, 7.0]


def test_429_without_retry_after_waits_for_the_next_minute_plus_jitter(sleeps):
    with MoesifStandIn([user(1, "2026-11-25T01:10:00Z")], [], api_key=KEY).start() as server:
        server.inject(429)
        ids = user_ids(client_for(server, sleeps, now=1_795_600_000 + 45.0), moesif.everything())
    assert ids == ["usr_00001"]
    [waited] = sleeps
    seconds_to_minute = 60 - (1_795_600_045 % 60)
    assert seconds_to_minute <= waited <= seconds_to_minute + 5.0


def test_503_then_success_backs_off_once(sleeps):
    with MoesifStandIn([user(1, "2026-11-25T01:10:00Z")], [], api_key=KEY).start() as server:
        server.inject(503)
        assert user_ids(client_for(server, sleeps), moesif.everything()) == ["usr_00001"]
    assert len(sleeps) == 1 and 0.5 <= sleeps[0] <= 1.0


def test_a_broken_page_is_retried(sleeps):
    with MoesifStandIn([user(1, "2026-11-25T01:10:00Z")], [], api_key=KEY).start() as server:
        server.inject(truncate=True)
        assert user_ids(client_for(server, sleeps), moesif.everything()) == ["usr_00001"]
    assert len(sleeps) == 1


def test_retries_are_bounded_and_name_the_page(sleeps):
    with MoesifStandIn([user(1, "2026-11-25T01:10:00Z")], [], api_key=KEY).start() as server:
        server.inject(502, times=10)
        with pytest.raises(TransientHTTPError, match=r"502 on POST /v1/search/~/search/users "
                                                     r"page 1"):
            user_ids(client_for(server, sleeps, max_attempts=3), moesif.everything())
        assert len(server.requests) == 3
    assert len(sleeps) == 2


def test_401_fails_fast_with_the_scope_hint_and_never_the_key(sleeps):
    with MoesifStandIn([], [], api_key=KEY).start() as server:
        with pytest.raises(MoesifError) as caught:
            user_ids(client_for(server, sleeps, key="mk-wrong-key-0000"), moesif.everything())
        assert len(server.requests) == 1
    message = str(caught.value)
    assert caught.value.status == 401
    assert "check the key and its read:users / read:companies scopes" in message
    assert "mk-wrong-key-0000" not in message and KEY not in message
    assert sleeps == []


@pytest.mark.parametrize("status", [408, 502, 503, 504])
def test_408_and_gateway_errors_are_retried(sleeps, status):
    with MoesifStandIn([user(1, "2026-11-25T01:10:00Z")], [], api_key=KEY).start() as server:
        server.inject(status)
        assert user_ids(client_for(server, sleeps), moesif.everything()) == ["usr_00001"]
    assert len(sleeps) == 1


@pytest.mark.parametrize("status", [400, 402, 404, 500, 501])
def test_other_4xx_and_500_fail_at_once_with_moesifs_message(sleeps, status):
    with MoesifStandIn([user(1, "2026-11-25T01:10:00Z")], [], api_key=KEY).start() as server:
        server.inject(status, times=5, body={"message": "bad field in query"})
        with pytest.raises(MoesifError) as caught:
            user_ids(client_for(server, sleeps), moesif.everything())
        assert len(server.requests) == 1
    assert caught.value.status == status
    assert "bad field in query" in str(caught.value)
    assert sleeps == []


def test_pages_come_in_sort_order_each_asked_for_once_after_the_last(sleeps):
    users = [user(n, f"2026-11-25T01:{n % 60:02d}:00.000Z") for n in range(2500)]
    with MoesifStandIn(users, [], api_key=KEY).start() as server:
        client = client_for(server, sleeps, page_size=1000)
        pages = list(client.search("users", moesif.changed_in_window(START, END)))
        bodies = [entry["body"] for entry in server.requests]

    assert [len(page.hits) for page in pages] == [1000, 1000, 500]
    assert client.requests_made == len(bodies) == 3
    assert [body.get("search_after") for body in bodies] == [
        None, pages[0].hits[-1]["sort"], pages[1].hits[-1]["sort"]]
    ids = [hit["_id"] for page in pages for hit in page.hits]
    assert ids == sorted(ids, key=lambda i: (int(i[4:]) % 60, i))


def test_a_page_failing_mid_search_comes_after_the_pages_before_it(sleeps):
    users = [user(n, "2026-11-25T01:30:00.0000000Z") for n in range(25)]
    with MoesifStandIn(users, [], api_key=KEY).start() as server:
        server.inject(401, after=1)
        client = client_for(server, sleeps, page_size=10)
        received = []
        with pytest.raises(MoesifError, match="401 on POST /v1/search/~/search/users page 2"):
            for page in client.search("users", moesif.everything()):
                received.append([hit["_id"] for hit in page.hits])
        assert len(server.requests) == client.requests_made == 2
    assert received == [[f"usr_{n:05d}" for n in range(10)]]
    assert sleeps == []


def test_a_caller_that_stops_early_leaves_no_request_retrying(sleeps):
    users = [user(n, "2026-11-25T01:30:00.0000000Z") for n in range(25)]
    with MoesifStandIn(users, [], api_key=KEY).start() as server:
        server.inject(503, delay=1.0, after=1)  # page 2 answers only after the caller stopped
        client = client_for(server, sleeps, page_size=10)
        pages = client.search("users", moesif.everything())
        first = next(pages)
        pages.close()  # returns once the request in flight has its answer
        assert len(server.requests) == client.requests_made == 2
    assert len(first.hits) == 10
    assert sleeps == []  # the 503 was not retried
