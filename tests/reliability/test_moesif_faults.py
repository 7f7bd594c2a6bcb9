"""Moesif misbehaving mid-extract, over real HTTP: the extract retries what it may, completes
without duplicates, and fails fast and clearly on what it may not."""

from __future__ import annotations

import logging

import pytest
from airflow.dag_processing.dagbag import DagBag

from moesif_segment_sync import sync
from moesif_segment_sync.errors import MoesifError, SyncError, TransientHTTPError
from moesif_segment_sync.pipeline import staging
from sandbox.environment import connection_env
from sandbox.moesif import MoesifStandIn
from sandbox.segment import SegmentStandIn
from tests.conftest import REPO
from tests.reliability.support import (
    MOESIF_KEY,
    USERS_SEARCH,
    WINDOW,
    WRITE_KEY,
    extract,
    make_run,
    run_dir,
    staged,
    staged_messages,
    staged_user_ids,
    users_in_window,
    wait_for,
)

# 50 users, 10 a page: pages 1-5 are full, page 6 is empty and ends the paging.
USERS = users_in_window(50)
ALL_IDS = [user["user_id"] for user in USERS]
PAGED = {"page_size": 10, "http_timeout": 0.5}


@pytest.fixture
def moesif():
    with MoesifStandIn(USERS, [], api_key=MOESIF_KEY).start() as server:
        yield server


def user_searches(moesif: MoesifStandIn) -> list[dict]:
    return [request for request in moesif.requests if request["path"] == USERS_SEARCH]


def retry_log(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records
            if record.name == "moesif_segment_sync.retry"]


def test_a_429_with_retry_after_waits_as_told_and_logs_the_wait(tmp_path, moesif, fake_time,
                                                                caplog):
    moesif.inject(429, retry_after=7, after=1, path_contains=USERS_SEARCH)

    with caplog.at_level(logging.WARNING):
        extract(make_run(tmp_path, **PAGED), moesif.url)

    assert fake_time.sleeps == [7.0]
    assert retry_log(caplog) == [
        f"Moesif POST {USERS_SEARCH} page 2: attempt 1 of 6 failed (Moesif answered 429 "
        f"(rate limited) on POST {USERS_SEARCH} page 2); waiting 7.0 s"]
    assert staged_user_ids(make_run(tmp_path)) == ALL_IDS


def test_a_429_without_retry_after_waits_for_the_next_minute_and_logs_the_wait(
        tmp_path, moesif, fake_time, caplog):
    moesif.inject(429, path_contains=USERS_SEARCH)  # the fake clock is 25 s into a minute

    with caplog.at_level(logging.WARNING):
        extract(make_run(tmp_path, **PAGED), moesif.url)

    assert fake_time.sleeps == [35.0]
    assert fake_time.now() % 60 == 0
    assert retry_log(caplog) == [
        f"Moesif POST {USERS_SEARCH} page 1: attempt 1 of 6 failed (Moesif answered 429 "
        f"(rate limited) on POST {USERS_SEARCH} page 1); waiting 35.0 s"]
    assert staged_user_ids(make_run(tmp_path)) == ALL_IDS


@pytest.mark.parametrize("fault", [
    {"status": 502}, {"status": 503}, {"status": 504}, {"reset": True}, {"delay": 1.5},
], ids=["502", "503", "504", "connection-reset", "read-timeout"])
def test_a_transient_failure_on_page_3_of_6_is_retried_and_the_extract_is_complete(
        tmp_path, moesif, fake_time, fault):
    moesif.inject(after=2, path_contains=USERS_SEARCH, **fault)
    run = make_run(tmp_path, **PAGED)

    extract(run, moesif.url)

    assert staged_user_ids(run) == ALL_IDS  # every user once, in order
    [backoff] = fake_time.sleeps
    assert 0.5 <= backoff <= 1.0  # backoff_initial plus up to as much jitter
    wait_for(lambda: len(user_searches(moesif)) == 7)  # a slow answer is logged when it ends
    [failed] = [request for request in user_searches(moesif) if request["fault"]]
    assert failed["body"]["search_after"][1] == "usr_019"  # page 3 follows page 2's last hit
    assert [request["body"] for request in user_searches(moesif)].count(failed["body"]) == 2


def test_a_truncated_page_is_retried_and_the_extract_is_complete(tmp_path, moesif, fake_time):
    moesif.inject(truncate=True, after=2, path_contains=USERS_SEARCH)
    run = make_run(tmp_path, **PAGED)

    extract(run, moesif.url)

    assert staged_user_ids(run) == ALL_IDS
    assert len(fake_time.sleeps) == 1


def test_a_page_that_is_not_json_is_retried_and_the_extract_is_complete(tmp_path, moesif,
                                                                        fake_time):
    moesif.inject(200, body="<html><body>Bad Gateway</body></html>", after=2,
                  path_contains=USERS_SEARCH)
    run = make_run(tmp_path, **PAGED)

    extract(run, moesif.url)

    assert staged_user_ids(run) == ALL_IDS
    assert len(fake_time.sleeps) == 1


def test_a_page_broken_on_every_attempt_fails_naming_the_endpoint_and_page(tmp_path, moesif,
                                                                           fake_time):
    moesif.inject(truncate=True, after=2, times=3, path_contains=USERS_SEARCH)

    with pytest.raises(TransientHTTPError) as caught:
        extract(make_run(tmp_path, max_attempts=3, **PAGED), moesif.url)

    assert str(caught.value).startswith(
        f"Moesif answered a page that is not JSON on POST {USERS_SEARCH} page 3 (")
    assert len(user_searches(moesif)) == 2 + 3
    assert len(fake_time.sleeps) == 2


def test_a_failed_first_extract_leaves_no_staged_file_behind(tmp_path, moesif, fake_time):
    moesif.inject(truncate=True, after=2, times=3, path_contains=USERS_SEARCH)
    run = make_run(tmp_path, max_attempts=3, **PAGED)

    with pytest.raises(TransientHTTPError):
        extract(run, moesif.url)

    assert sorted(path.name for path in run_dir(run).iterdir()) == []


def test_a_failed_retry_keeps_the_previous_attempts_file_whole(tmp_path, moesif, fake_time):
    run = make_run(tmp_path, max_attempts=3, **PAGED)
    extract(run, moesif.url)
    before = (run_dir(run) / staging.USERS).read_bytes()
    moesif.inject(truncate=True, after=2, times=3, path_contains=USERS_SEARCH)

    with pytest.raises(TransientHTTPError):
        extract(run, moesif.url)

    assert (run_dir(run) / staging.USERS).read_bytes() == before
    assert staged_user_ids(run) == ALL_IDS
    assert sorted(path.name for path in run_dir(run).iterdir()) == [
        staging.COMPANIES, staging.USER_COMPANIES, staging.USERS, staging.USERS_VIA_COMPANY]


def test_a_page_nested_deeper_than_the_parser_reads_fails_naming_the_endpoint_and_page(
        tmp_path, moesif, fake_time):
    depth = 5000
    deep = b'{"a":' * depth + b"1" + b"}" * depth
    page = (b'{"took":1,"timed_out":false,"hits":{"total":1,"hits":[{"_id":"usr_deep",'
            b'"_source":{"user_id":"usr_deep","metadata":' + deep + b'},"sort":[1,"usr_deep"]}]}}')
    moesif.inject(200, body=page, times=3, path_contains=USERS_SEARCH)

    with pytest.raises(SyncError, match=f"on POST {USERS_SEARCH} page 1"):
        extract(make_run(tmp_path, max_attempts=3, **PAGED), moesif.url)


@pytest.mark.parametrize(("status", "message", "hint"), [
    (401, "Unauthorized. Missing required scopes: read:users",
     "check the key and its read:users / read:companies scopes"),
    (402, "Payment required: subscription inactive",
     "the Moesif subscription is inactive; reactivate it in Moesif's billing settings"),
])
def test_a_401_or_402_mid_run_fails_fast_with_the_reason(tmp_path, moesif, fake_time, status,
                                                         message, hint):
    moesif.inject(status, after=2, path_contains=USERS_SEARCH, body={"message": message})
    run = make_run(tmp_path, **PAGED)

    with pytest.raises(MoesifError) as caught:
        extract(run, moesif.url)

    assert str(caught.value) == f"Moesif answered {status} on POST {USERS_SEARCH} page 3: " \
                                f"{message}; {hint}"
    assert len(user_searches(moesif)) == 3  # no retry
    assert fake_time.sleeps == []
    assert sorted(path.name for path in run_dir(run).iterdir()) == []


def test_a_user_seen_twice_while_paging_is_sent_once_and_the_repeat_is_a_reject(tmp_path,
                                                                                 moesif,
                                                                                 fake_time):
    """A 503 on page 2; while the client backs off, usr_003 (on page 1) changes within the
    window, so it sorts after the cursor and comes back on a later page. The first copy is
    sent and the repeat rejected as a duplicate, with its record kept for the audit. (With
    real data a change moves modified_time to the present, past the window being extracted,
    so the next window picks it up and sends the newer traits.)"""
    moved = {**USERS[3], "email": "moved@example.com",
             "modified_time": "2026-11-25T00:45:00.000Z"}
    fake_time.on_sleep = lambda: moesif.upsert_user(moved)
    moesif.inject(503, after=1, path_contains=USERS_SEARCH)
    run = make_run(tmp_path, **PAGED)
    extract(run, moesif.url)
    assert staged_user_ids(run).count("usr_003") == 2

    [summary] = sync.transform(run)

    assert (summary.considered, summary.messages) == (51, 50)
    assert summary.rejected_by_kind == {"duplicate": 1}
    [message] = [m for m in staged_messages(run) if m["userId"] == "usr_003"]
    assert message["traits"].get("email") == USERS[3].get("email")
    [reject] = staged(run, staging.REJECTS)
    assert (reject["kind"], reject["record"]) == ("duplicate", moved)


@pytest.mark.airflow
def test_a_401_mid_run_fails_the_task_once_without_using_airflows_retries(airflow_db, tmp_path,
                                                                          monkeypatch):
    with MoesifStandIn(USERS, [], api_key=MOESIF_KEY).start() as moesif, \
            SegmentStandIn(WRITE_KEY).start() as segment:
        env = connection_env(moesif.url, segment.url, f"sqlite:///{tmp_path / 'audit.db'}",
                             moesif_key=MOESIF_KEY, write_key=WRITE_KEY)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("MOESIF_SEGMENT_STAGING_ROOT", (tmp_path / "staging").as_uri())
        monkeypatch.setenv("MOESIF_SEGMENT_PAGE_SIZE", "10")
        moesif.inject(401, after=2, path_contains=USERS_SEARCH)
        dag = DagBag(dag_folder=str(REPO / "dags")).dags["moesif_to_segment"]

        dag_run = dag.test(logical_date=WINDOW.end)

        [extract_users] = [ti for ti in dag_run.get_task_instances()
                           if ti.task_id == "extract_users"]
        assert (str(extract_users.state), extract_users.try_number) == ("failed", 1)
        assert len(user_searches(moesif)) == 3
        assert segment.requests == []
