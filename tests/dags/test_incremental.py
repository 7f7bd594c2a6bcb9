"""Right over time: company changes reach their users, change detection, windows in UTC."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from airflow.dag_processing.dagbag import DagBag

from moesif_segment_sync.store.audit import AuditStore
from sandbox.environment import (
    REPO,
    airflow,
    airflow_env,
    connection_env,
    prepare_airflow,
)
from sandbox.moesif import MoesifStandIn
from sandbox.segment import SegmentStandIn
from tests.dags.support import point_dag_at
from tests.support import DAG_ID

A_END = datetime(2026, 11, 25, 1, tzinfo=UTC)   # window A = [00:00, 01:00)
B_END = datetime(2026, 11, 25, 2, tzinfo=UTC)   # window B = [01:00, 02:00)

COMPANIES = [
    # Changed before window A: its users of window A get it through the user_companies lookup.
    {"company_id": "cmp_x", "metadata": {"name": "Old X", "tier": 2},
     "modified_time": "2026-11-20T00:00:00Z", "created": "2025-01-02T03:04:05.0060000Z",
     "first_seen_time": "2025-01-03T00:00:00", "last_seen_time": 1763942400000,
     "ip_address": "10.1.2.3", "domain_name": "x.example", "ttfhw": 42.9,
     "session_token": ["never-sent"]},
    {"company_id": "cmp_y", "metadata": {"name": "Y"}, "modified_time": "2026-11-20T00:00:00Z"},
]
USERS = [
    {"user_id": "u1", "company_id": "cmp_x", "email": "u1@example.com",
     "modified_time": "2026-11-25T00:10:00Z"},
    {"user_id": "u2", "company_id": "cmp_x", "modified_time": "2026-11-25T00:20:00Z"},
    {"user_id": "u3", "company_id": "cmp_y", "modified_time": "2026-11-25T00:30:00Z"},
    {"user_id": "u4", "modified_time": "2026-11-25T01:40:00Z"},
]


class Sync:
    """The DAG, the stand-ins and the audit store of one test."""

    def __init__(self, moesif: MoesifStandIn, segment: SegmentStandIn, audit_url: str):
        self.moesif, self.segment, self.audit_url = moesif, segment, audit_url
        self.requests_seen = 0

    def run(self, window_end: datetime = A_END, **conf) -> dict:
        """Run the DAG for the window ending at ``window_end``; the run record and what was
        sent in this run (userId -> message)."""
        dag = DagBag(dag_folder=str(REPO / "dags")).dags[DAG_ID]
        dag_run = dag.test(logical_date=window_end, run_conf=conf or None)
        assert str(dag_run.state) == "success"
        new = self.segment.requests[self.requests_seen:]
        self.requests_seen = len(self.segment.requests)
        store = AuditStore(self.audit_url)
        record = store.latest_runs(DAG_ID, limit=1)[0]
        store.close()
        record["delivered_now"] = sum(request["n_messages"] for request in new)
        return record

    def sent(self, since: int = 0) -> dict[str, list[dict]]:
        by_user: dict[str, list[dict]] = {}
        for message in self.segment.accepted[since:]:
            by_user.setdefault(message["userId"], []).append(message)
        return by_user


@pytest.fixture
def sync(airflow_db, tmp_path, monkeypatch):
    with MoesifStandIn(USERS, COMPANIES, api_key="mk").start() as moesif, \
            SegmentStandIn("wk").start() as segment:
        audit_url = point_dag_at(monkeypatch, moesif.url, segment.url, tmp_path,
                                 moesif_key="mk", write_key="wk")
        yield Sync(moesif, segment, audit_url)


def test_company_change_reidentifies_its_users(sync):
    sync.run(A_END)
    before = len(sync.segment.accepted)
    sync.moesif.upsert_company({**COMPANIES[0], "metadata": {"name": "New X"},
                                "modified_time": "2026-11-25T01:05:00Z"})

    record = sync.run(B_END)

    sent = sync.sent(since=before)
    assert sorted(sent) == ["u1", "u2", "u4"]
    assert [m["traits"]["company"]["name"] for user in ("u1", "u2") for m in sent[user]] == \
        ["New X", "New X"]
    assert record["counts"]["routes"] == {"window": 1, "company": 2}
    assert (record["counts"]["users_in_window"], record["counts"]["users_via_company"]) == (1, 2)


def test_a_changed_user_of_an_unchanged_company_carries_that_company_field_by_field(sync):
    record = sync.run(A_END)

    sent = sync.sent()
    assert sent["u1"][0]["traits"]["company"] == {
        "id": "cmp_x", "name": "Old X", "created": "2025-01-02T03:04:05.006Z",
        "modifiedTime": "2026-11-20T00:00:00.000Z", "firstSeenTime": "2025-01-03T00:00:00.000Z",
        "lastSeenTime": "2025-11-24T00:00:00.000Z", "ipAddress": "10.1.2.3",
        "companyDomain": "x.example", "ttfhw_s": 42, "metadata": {"name": "Old X", "tier": 2}}
    assert sent["u3"][0]["traits"]["company"] == {
        "id": "cmp_y", "name": "Y", "modifiedTime": "2026-11-20T00:00:00.000Z",
        "metadata": {"name": "Y"}}
    assert record["counts"]["user_companies"] == 2
    assert record["counts"]["routes"] == {"window": 3}


def test_a_second_run_of_the_same_window_sends_nothing_and_says_unchanged(sync):
    first = sync.run()
    second = sync.run()

    assert (first["sent"], first["unchanged"]) == (3, 0)
    assert (second["considered"], second["sent"], second["unchanged"]) == (3, 0, 3)
    assert second["delivered_now"] == 0 and second["batches"] == 0


def test_changing_one_trait_sends_exactly_that_user(sync):
    sync.run()
    before = len(sync.segment.accepted)
    sync.moesif.upsert_user({**USERS[0], "email": "u1-new@example.com"})

    record = sync.run()

    assert list(sync.sent(since=before)) == ["u1"]
    assert sync.segment.accepted[-1]["traits"]["email"] == "u1-new@example.com"
    assert (record["sent"], record["unchanged"]) == (1, 2)


def test_force_sends_everything_again_with_the_same_message_ids(sync):
    sync.run()
    first_ids = {m["userId"]: m["messageId"] for m in sync.segment.accepted}

    record = sync.run(force=True)

    assert (record["sent"], record["unchanged"]) == (3, 0)
    again = {m["userId"]: m["messageId"] for m in sync.segment.accepted[len(first_ids):]}
    assert again == first_ids
    assert sync.segment.duplicates == 3


def test_a_dry_run_never_writes_state(sync):
    sync.run(dry_run=True)
    record = sync.run()

    assert (record["sent"], record["unchanged"]) == (3, 0)


def test_window_bounds_are_utc_whatever_airflow_time_zone(airflow_db, tmp_path):
    users = [
        {"user_id": "at_start", "modified_time": "2026-11-25T00:00:00.000Z"},
        {"user_id": "before_start", "modified_time": "2026-11-24T23:59:59.999Z"},
        {"user_id": "before_end", "modified_time": "2026-11-25T00:59:59.9999999Z"},
        {"user_id": "at_end", "modified_time": "2026-11-25T01:00:00.000Z"},
        {"user_id": "offset_in", "modified_time": "2026-11-24T19:30:00.000-05:00"},
    ]
    home = tmp_path / "home"
    with MoesifStandIn(users, [], api_key="mk").start() as moesif, \
            SegmentStandIn("wk").start() as segment:
        env = airflow_env(home, AIRFLOW__CORE__DEFAULT_TIMEZONE="America/New_York",
                          TZ="Asia/Kolkata", **connection_env(moesif.url, segment.url,
                                                              moesif_key="mk", write_key="wk"))
        prepare_airflow(env)
        result = airflow("dags", "test", DAG_ID, A_END.isoformat(), env=env, check=False)
        assert result.returncode == 0, result.stdout[-3000:]
        assert sorted(m["userId"] for m in segment.delivered.values()) == [
            "at_start", "before_end", "offset_in"]
