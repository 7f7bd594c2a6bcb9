"""The whole DAG through Airflow (`dag.test()`), against the stand-ins over real HTTP."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
import pytest
from airflow.dag_processing.dagbag import DagBag

from moesif_segment_sync import __version__
from moesif_segment_sync.store.audit import AuditStore, RunKey
from sandbox.datagen import Dataset, generate
from sandbox.environment import DATA_SPAN, DEMO_WINDOW, connection_env, stand_ins
from sandbox.moesif import MoesifStandIn
from sandbox.segment import SegmentStandIn
from tests.conftest import REPO
from tests.dags.support import point_dag_at
from tests.support import DAG_ID

GOLDEN_COMPANY = {
    "company_id": "cmp_golden", "company_domain": "golden.example.com",
    "domain_name": "ignored.example.com", "ip_address": "203.0.113.9",
    "metadata": {"name": " Golden Corp ", "plan": "enterprise", "seats": None},
    "created": "2023-07-27T21:52:58.0990000Z", "modified_time": "2026-11-25T00:10:00.1239999Z",
    "first_seen_time": 1700000000123, "last_seen_time": "2026-11-25T02:10:00.000+02:00",
    "ttfhw": 12.9, "campaign": {"utm_source": "never-sent"}, "session_token": ["never-sent"],
    "subscriptions": [{"id": "never-sent"}],
}
GOLDEN_USER = {
    "user_id": "usr_golden", "identified_user_id": "usr_golden", "company_id": "cmp_golden",
    "email": "  ", "name": None, "first_name": "Ada", "user_name": "ada_l",
    "metadata": {"email": " Ada@Example.COM ", "last_name": "Lovelace", "nested": {"x": None}},
    "campaign": {"utm_source": "google", "utm_medium": "cpc", "utm_campaign": "launch",
                 "utm_term": "api", "utm_content": "", "referrer": "https://www.google.com/",
                 "referring_domain": "www.google.com", "gclid": "abc123"},
    "session_token": ["tok_never_sent"], "ip_address": "198.51.100.7",
    "geo_ip": {"ip": "198.51.100.7", "city_name": "London", "region_name": "England",
               "country_name": "United Kingdom", "country_code2": "GB", "latitude": 51.5072,
               "longitude": -0.1276, "timezone": "Europe/London"},
    "user_agent": {"name": "Chrome", "major": "119", "minor": "0", "os": "Mac OS X",
                   "os_name": "Mac OS X", "os_major": "14", "os_minor": "1", "device": "Other"},
    "user_agent_string": "Mozilla/5.0 (Macintosh) Chrome/119.0",
    "created": "2023-07-27T21:55:19.464", "first_seen_time": 1795564800123,
    "last_seen_time": "2026-11-25T00:30:00.000Z", "modified_time": "2026-11-25T00:44:03.4649999Z",
    "clearbit": {"person": {"employment": {"title": "Engineer"}}},
    "last_24h_agg_results": {"event_count": 42, "errors": 0},
    "app_id": "app_never_sent", "org_id": "org_never_sent", "body": {"never": "sent"},
}
GOLDEN_MESSAGE = {
    "type": "identify",
    "userId": "usr_golden",
    "timestamp": "2026-11-25T00:44:03.464Z",
    "context": {
        "ip": "198.51.100.7",
        "location": {"city": "London", "country": "United Kingdom", "region": "England",
                     "latitude": 51.5072, "longitude": -0.1276},
        "timezone": "Europe/London",
        "userAgent": "Mozilla/5.0 (Macintosh) Chrome/119.0",
        "active": False,
        "library": {"name": "moesif-segment-sync", "version": __version__},
    },
    "traits": {
        "id": "usr_golden",
        "createdAt": "2023-07-27T21:55:19.464Z",
        "modifiedTime": "2026-11-25T00:44:03.464Z",
        "firstSeenTime": "2026-11-25T00:00:00.123Z",
        "lastSeenTime": "2026-11-25T00:30:00.000Z",
        "name": "Ada Lovelace",
        "email": "Ada@Example.COM",
        "username": "ada_l",
        "company": {
            "id": "cmp_golden", "name": "Golden Corp", "created": "2023-07-27T21:52:58.099Z",
            "modifiedTime": "2026-11-25T00:10:00.123Z", "firstSeenTime": "2023-11-14T22:13:20.123Z",
            "lastSeenTime": "2026-11-25T00:10:00.000Z", "ipAddress": "203.0.113.9",
            "companyDomain": "golden.example.com", "ttfhw_s": 12,
            "metadata": {"name": " Golden Corp ", "plan": "enterprise", "seats": None},
        },
        "campaign": {"source": "google", "medium": "cpc", "name": "launch", "term": "api",
                     "referrer": "https://www.google.com/", "referringDomain": "www.google.com",
                     "gclid": "abc123"},
        "clearbit": {"person": {"employment": {"title": "Engineer"}}},
        "last24HourAggResults": {"event_count": 42, "errors": 0},
        "metadata": {"email": " Ada@Example.COM ", "last_name": "Lovelace", "nested": {"x": None}},
        "userAgent": {"name": "Chrome", "major": "119", "minor": "0", "os": "Mac OS X",
                      "osName": "Mac OS X", "osMajor": "14", "osMinor": "1", "device": "Other"},
    },
}


@dataclass
class World:
    dataset: Dataset
    moesif: MoesifStandIn
    segment: SegmentStandIn
    audit_url: str

    def store(self) -> AuditStore:
        return AuditStore(self.audit_url)

    def last_run(self) -> dict:
        store = self.store()
        try:
            return store.latest_runs(DAG_ID, limit=1)[0]
        finally:
            store.close()


@pytest.fixture
def dag():
    """A freshly parsed DAG per test: `dag.test(run_conf=...)` leaves its params resolved."""
    return DagBag(dag_folder=str(REPO / "dags")).dags[DAG_ID]


@pytest.fixture
def world(airflow_db, tmp_path, monkeypatch):
    dataset = generate(400, seed=11, start=DATA_SPAN[0], end=DATA_SPAN[1])
    dataset.users.append(GOLDEN_USER)
    dataset.companies.append(GOLDEN_COMPANY)
    with stand_ins(dataset) as (moesif, segment):
        audit_url = point_dag_at(monkeypatch, moesif.url, segment.url, tmp_path)
        yield World(dataset, moesif, segment, audit_url)


def run(dag, **conf):  # noqa: ANN001, ANN201 - a DagRun
    return dag.test(logical_date=DEMO_WINDOW[1], run_conf=conf or None)


def states(dag_run) -> dict[str, str]:  # noqa: ANN001
    return {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}


def expected_user_ids(dataset: Dataset) -> set[str]:
    return dataset.expected_user_ids(*DEMO_WINDOW)


def test_the_run_delivers_exactly_the_window_users(dag, world):
    dag_run = run(dag)

    assert str(dag_run.state) == "success", states(dag_run)
    delivered = world.segment.delivered.values()
    expected = expected_user_ids(world.dataset)
    assert sorted(m["userId"] for m in delivered) == sorted(expected)
    assert world.segment.dropped == 0 and world.segment.duplicates == 0
    assert all(request["sent_at"] for request in world.segment.requests)


def test_a_user_with_every_trait_kind_arrives_field_by_field(dag, world):
    run(dag)

    [message] = [m for m in world.segment.delivered.values() if m["userId"] == "usr_golden"]
    message_id = message.pop("messageId")
    assert message == GOLDEN_MESSAGE
    assert message_id.startswith("moesif-segment-sync-") and len(message_id) <= 100


def test_rejects_are_in_the_audit_store_with_reasons(dag, world):
    run(dag)

    last = world.last_run()
    store = world.store()
    rejects = store.rejects(RunKey(DAG_ID, last["run_id"]))
    store.close()
    bad = [world.dataset.users[i] for i in world.dataset.selected(*DEMO_WINDOW)
           if i in world.dataset.expected_rejects]
    assert len(rejects) == len(bad) == last["rejected"] > 0
    for reject in rejects:
        raw = orjson.loads(reject["raw_record"])
        assert raw in bad
        kind, reason = expected_reject(raw)
        assert reject["kind"] == kind and re.fullmatch(reason, reject["reason"]), raw
    assert {reject["kind"] for reject in rejects} == {"no_user_id", "oversize"}


def expected_reject(raw: dict) -> tuple[str, str]:
    """The kind and the reason (a regular expression) of a bad user of the generated data."""
    user_id = raw.get("user_id")
    if user_id is None:
        return "no_user_id", "user_id is missing"
    if not isinstance(user_id, str):
        kind = {bool: "boolean", list: "array", dict: "object"}.get(type(user_id), "number")
        return "no_user_id", re.escape(f"user_id must be a string, got a JSON {kind}: "
                                       f"{json.dumps(user_id)[:60]}")
    if not user_id.strip():
        return "no_user_id", "user_id is blank"
    # 32,769 bytes and more (the generated oversize users are over 33 KB).
    return "oversize", (r"message is (3[3-9]|[4-9]\d|\d{3}),\d{3} bytes of JSON, over "
                        r"Segment's 32 KB limit \(32,768 bytes\)")


def test_the_run_record_adds_up(dag, world):
    run(dag)

    last = world.last_run()
    assert last["status"] == "success"
    assert last["considered"] == last["sent"] + last["unchanged"] + last["rejected"]
    assert last["sent"] == len(expected_user_ids(world.dataset))
    assert (last["window_start"].replace(tzinfo=UTC), last["window_end"].replace(tzinfo=UTC)) == \
        DEMO_WINDOW
    assert last["window_source"] == "data_interval"
    assert last["counts"]["routes"]["window"] + last["counts"]["routes"]["company"] == \
        last["considered"]


def test_a_dry_run_sends_nothing_and_still_audits(dag, world):
    dag_run = run(dag, dry_run=True)

    assert str(dag_run.state) == "success", states(dag_run)
    assert world.segment.accepted == [] and world.segment.requests == []
    last = world.last_run()
    assert (last["dry_run"], last["sent"], last["status"]) == (True, 0, "success")
    assert last["would_send"] == len(expected_user_ids(world.dataset))
    store = world.store()
    ledger = store.ledger(RunKey(DAG_ID, last["run_id"]))
    store.close()
    assert {entry.status for entry in ledger.values()} == {"dry_run"}
    assert sum(entry.messages for entry in ledger.values()) == last["would_send"]


def test_running_the_same_window_twice_never_sends_a_different_message(dag, world):
    run(dag)
    run(dag)

    ids_per_user = defaultdict(set)
    for message in world.segment.accepted:
        ids_per_user[message["userId"]].add(message["messageId"])
    assert ids_per_user and all(len(ids) == 1 for ids in ids_per_user.values())


def test_an_explicit_window_syncs_just_that_window(dag, world):
    dag_run = run(dag, start="2026-11-25T00:00:00Z", end="2026-11-25T00:30:00Z")

    assert str(dag_run.state) == "success", states(dag_run)
    last = world.last_run()
    assert last["window_source"] == "params"
    assert last["window_end"].replace(tzinfo=UTC) == datetime(2026, 11, 25, 0, 30, tzinfo=UTC)
    expected = world.dataset.expected_user_ids(datetime(2026, 11, 25, 0, tzinfo=UTC),
                                               datetime(2026, 11, 25, 0, 30, tzinfo=UTC))
    assert 0 < len(expected) < len(expected_user_ids(world.dataset))
    assert {m["userId"] for m in world.segment.delivered.values()} == expected
    assert last["sent"] == len(expected)


def test_a_missing_connection_fails_the_first_task_naming_it(dag, world, monkeypatch, capfd):
    monkeypatch.delenv("AIRFLOW_CONN_MOESIF_DEFAULT")

    dag_run = run(dag)

    assert states(dag_run)["extract_users"] == "failed"
    output = capfd.readouterr()
    text = output.out + output.err
    assert "Airflow connection 'moesif_default' is not set" in text
    assert "AIRFLOW_CONN_MOESIF_DEFAULT=" in text
    assert world.segment.requests == []


def test_a_wrong_moesif_key_fails_with_the_scope_hint(dag, world, monkeypatch, capfd):
    env = connection_env(world.moesif.url, world.segment.url, moesif_key="mk-wrong-0000")
    monkeypatch.setenv("AIRFLOW_CONN_MOESIF_DEFAULT", env["AIRFLOW_CONN_MOESIF_DEFAULT"])

    dag_run = run(dag)

    assert states(dag_run)["extract_users"] == "failed"
    output = capfd.readouterr()
    text = output.out + output.err
    assert "Moesif answered 401" in text
    assert "check the key and its read:users / read:companies scopes" in text
    assert "mk-wrong-0000" not in text


def test_start_after_end_fails_one_task_once_and_is_in_the_history(dag, world, caplog):
    dag_run = run(dag, start="2026-11-25T02:00:00Z", end="2026-11-25T01:00:00Z")

    assert states(dag_run)["check_window"] == "failed"
    assert {states(dag_run)[task] for task in ("extract_users", "extract_companies")} == {
        "upstream_failed"}
    message = ("param 'start' (2026-11-25T02:00:00+00:00) must be before 'end' "
               "(2026-11-25T01:00:00+00:00)")
    alerts = [record.getMessage() for record in caplog.records
              if record.getMessage().startswith("moesif_to_segment failed")]
    assert alerts == ["moesif_to_segment failed in check_window: 2026-11-25 00:00 UTC, "
                      "0 rejected of 0"]  # one alert for the run
    assert world.moesif.requests == []
    last = world.last_run()
    assert (last["run_id"], last["status"], last["failed_task"], last["error"]) == (
        dag_run.run_id, "failed", "check_window", message)
    # The params are bad, so the record shows the window the run would otherwise have had.
    assert (last["window_start"].replace(tzinfo=UTC), last["window_end"].replace(tzinfo=UTC),
            last["window_source"]) == (*DEMO_WINDOW, "data_interval")
    assert last["notes"] == ["the run's params were refused, so its window above is its data "
                             "interval; trigger a new run with a corrected window"]


@pytest.mark.parametrize(("conf", "error"), [
    ({"start": "2026-11-25T00:00:00Z", "end": "2099-01-01T00:00:00Z"},
     r"window \[2026-11-25T00:00:00\+00:00, 2099-01-01T00:00:00\+00:00\) ends in the future "
     r"\(now is 20\d\d-"),
    ({"start": "2015-11-25", "end": "2026-11-25"},
     r"window \[2015-11-25T00:00:00\+00:00, 2026-11-25T00:00:00\+00:00\) is 4018 days long, "
     r"over MOESIF_SEGMENT_MAX_WINDOW \(31 days\): set the param allow_long_window"),
    ({"start": "yesterday", "end": "2026-11-25"},
     r"start: expected an ISO date or datetime like 2026-11-25T13:00Z, got 'yesterday'$"),
])
def test_a_window_that_cannot_be_meant_is_refused_before_anything_is_extracted(dag, world, conf,
                                                                                error):
    dag_run = run(dag, **conf)

    assert states(dag_run)["check_window"] == "failed"
    assert world.moesif.requests == []
    last = world.last_run()
    assert (last["status"], last["failed_task"]) == ("failed", "check_window")
    assert re.match(error, last["error"]), last["error"]


def test_a_long_window_runs_when_allow_long_window_is_set(dag, world):
    dag_run = run(dag, start="2026-10-01", end="2026-11-25T01:00:00Z", allow_long_window=True)

    assert str(dag_run.state) == "success", states(dag_run)
    assert world.last_run()["considered"] > 0


def test_a_window_with_nothing_in_it_succeeds_with_a_note(dag, world):
    dag_run = run(dag, start="2026-11-20T00:00:00Z", end="2026-11-20T01:00:00Z")

    assert str(dag_run.state) == "success", states(dag_run)
    last = world.last_run()
    assert (last["considered"], last["sent"], last["status"]) == (0, 0, "success")
    assert last["notes"] == ["0 users changed or seen in this window"]


def test_a_load_refused_after_two_batches_is_in_the_history_with_what_was_delivered(
        dag, world, monkeypatch):
    monkeypatch.setenv("MOESIF_SEGMENT_MAX_BATCH_BYTES", "60000")
    monkeypatch.setenv("MOESIF_SEGMENT_MAX_REFUSED_SPLITS", "0")  # the batch is not split
    world.segment.inject(400, after=2, times=10, body={"code": "invalid_request",
                                                       "message": "Invalid JSON at item 17"})

    dag_run = run(dag)

    assert states(dag_run)["load"] == "failed"
    last = world.last_run()
    delivered = len(world.segment.delivered)
    assert (last["status"], last["failed_task"], last["batches"], last["sent"]) == (
        "failed", "load", 2, delivered)
    assert last["error"].startswith("Segment answered 400 to batch 3")
    assert "Invalid JSON at item 17" in last["error"] and "Traceback" not in last["error"]
    assert last["considered"] == len(expected_user_ids(world.dataset)) + last["rejected"]
    assert last["notes"] == [
        f"2 batch(es), {delivered:,} messages, reached Segment before the failure; fix the "
        "cause and clear the load task: it resumes after batch 2"]


def test_the_doctor_param_checks_first_and_a_failing_check_stops_the_run(dag, world, monkeypatch,
                                                                        capfd):
    env = connection_env(world.moesif.url, world.segment.url, moesif_key="mk-wrong-0000")
    monkeypatch.setenv("AIRFLOW_CONN_MOESIF_DEFAULT", env["AIRFLOW_CONN_MOESIF_DEFAULT"])

    dag_run = run(dag, doctor=True)

    assert states(dag_run)["extract_users"] == "failed"
    output = capfd.readouterr()
    text = output.out + output.err
    assert "the doctor found failing checks: moesif." in text
    assert "mk-wrong-0000" not in text
    assert not any(request["path"].endswith("/users") and request["body"].get("size", 0) > 1
                   for request in world.moesif.requests)


def test_the_doctor_param_passes_on_a_healthy_set_up(dag, world):
    dag_run = run(dag, doctor=True)

    assert str(dag_run.state) == "success", states(dag_run)


def test_a_message_segment_refuses_is_a_reject_and_the_run_succeeds(dag, world):
    refused = sorted(expected_user_ids(world.dataset))[5]
    world.segment.refused_users[refused] = "Invalid message: traits.email"

    dag_run = run(dag)

    assert str(dag_run.state) == "success", states(dag_run)
    delivered = {m["userId"] for m in world.segment.delivered.values()}
    assert delivered == expected_user_ids(world.dataset) - {refused}
    last = world.last_run()
    assert last["counts"]["rejected_by_kind"]["segment_refused"] == 1
    assert last["considered"] == last["sent"] + last["unchanged"] + last["rejected"]
    store = world.store()
    try:
        [reject] = [r for r in store.rejects(RunKey(DAG_ID, dag_run.run_id))
                    if r["kind"] == "segment_refused"]
    finally:
        store.close()
    assert (reject["entity_id"], reject["reason"]) == (
        refused, "Segment refused the message: Invalid message: traits.email")
