"""Segment group calls (issue 19): with MOESIF_SEGMENT_GROUP_CALLS on, one group call per
user-company link, exactly as trait-mapping.md's "The group call" documents it, batched,
audited and change-detected like the identify messages; off, nothing changes."""

from __future__ import annotations

import copy

import pytest
from airflow.dag_processing.dagbag import DagBag

from moesif_segment_sync import __version__
from moesif_segment_sync.codec import format_utc
from moesif_segment_sync.store.audit import RunKey
from sandbox.environment import DEMO_WINDOW
from tests.conftest import REPO
from tests.dags import test_dag_e2e
from tests.dags.test_dag_e2e import GOLDEN_COMPANY, GOLDEN_MESSAGE, run, states
from tests.support import DAG_ID

world = test_dag_e2e.world  # the same stand-ins and data (with the golden user and company)

# The golden user's group call, written out from trait-mapping.md's "The group call".
GOLDEN_GROUP = {
    "type": "group",
    "userId": "usr_golden",
    "groupId": "cmp_golden",
    "timestamp": "2026-11-25T00:10:00.123Z",  # the company's modified_time
    "context": {"active": False,
                "library": {"name": "moesif-segment-sync", "version": __version__}},
    "traits": GOLDEN_MESSAGE["traits"]["company"],  # exactly the identify's traits.company
}


@pytest.fixture
def dag(monkeypatch):
    monkeypatch.setenv("MOESIF_SEGMENT_GROUP_CALLS", "true")
    return DagBag(dag_folder=str(REPO / "dags")).dags[DAG_ID]


def _by_type(segment) -> dict[str, list[dict]]:  # noqa: ANN001
    found: dict[str, list[dict]] = {"identify": [], "group": []}
    for message in segment.delivered.values():
        found[message["type"]].append(message)
    return found


def expected_group(identify: dict) -> dict:
    """The group call trait-mapping.md derives from an identify's ``traits.company``."""
    company = identify["traits"]["company"]
    return {"type": "group", "userId": identify["userId"], "groupId": company["id"],
            "timestamp": company.get("modifiedTime", format_utc(DEMO_WINDOW[1])),
            "context": {"active": False,
                        "library": {"name": "moesif-segment-sync", "version": __version__}},
            "traits": company}


def test_one_group_call_per_user_company_link_field_by_field(dag, world):
    dag_run = run(dag)

    assert str(dag_run.state) == "success", states(dag_run)
    sent = _by_type(world.segment)
    linked = [m for m in sent["identify"] if "company" in m["traits"]]
    assert len(linked) > 100 and len(linked) < len(sent["identify"])  # some have no company
    calls = {(m["userId"], m["groupId"]): m for m in sent["group"]}
    assert len(calls) == len(sent["group"]) == len(linked)
    for identify in linked:
        call = dict(calls[identify["userId"], identify["traits"]["company"]["id"]])
        message_id = call.pop("messageId")
        assert call == expected_group(identify)
        assert message_id.startswith("moesif-segment-sync-group-") and len(message_id) <= 100
    golden = dict(calls["usr_golden", "cmp_golden"])
    golden.pop("messageId")
    assert golden == GOLDEN_GROUP
    # The identify messages are exactly what they are without group calls.
    [identify] = [m for m in sent["identify"] if m["userId"] == "usr_golden"]
    assert {k: v for k, v in identify.items() if k != "messageId"} == GOLDEN_MESSAGE
    assert world.segment.dropped == 0 and world.segment.duplicates == 0

    last = world.last_run()
    assert last["counts"]["groups"] == {"built": len(linked), "sent": len(linked),
                                        "would_send": 0, "unchanged": 0, "refused": 0}
    assert last["sent"] == len(sent["identify"])  # users are counted as before


def test_a_second_run_with_nothing_changed_sends_no_group_call(dag, world):
    run(dag)
    before = len(world.segment.accepted)

    dag_run = run(dag)

    assert str(dag_run.state) == "success", states(dag_run)
    assert len(world.segment.accepted) == before
    groups = world.last_run()["counts"]["groups"]
    assert groups["sent"] == 0 and groups["unchanged"] == groups["built"] > 0


def test_a_changed_company_sends_the_group_calls_of_its_users_only(dag, world):
    run(dag)
    before = len(world.segment.accepted)
    renamed = copy.deepcopy(GOLDEN_COMPANY)
    renamed["metadata"]["name"] = "Golden Corp International"
    world.moesif.collections["companies"].upsert(renamed)

    dag_run = run(dag)

    assert str(dag_run.state) == "success", states(dag_run)
    new = world.segment.accepted[before:]
    assert sorted((m["type"], m["userId"]) for m in new) == [
        ("group", "usr_golden"), ("identify", "usr_golden")]
    [call] = [m for m in new if m["type"] == "group"]
    assert call["traits"]["name"] == "Golden Corp International"
    assert call["traits"] == next(m for m in new if m["type"] == "identify")["traits"]["company"]


def test_a_dry_run_counts_the_group_calls_it_would_send(dag, world):
    dag_run = run(dag, dry_run=True)

    assert str(dag_run.state) == "success", states(dag_run)
    assert world.segment.requests == []
    groups = world.last_run()["counts"]["groups"]
    assert groups["would_send"] == groups["built"] > 0 and groups["sent"] == 0


def test_a_group_call_segment_refuses_is_a_group_reject_and_the_rest_arrives(dag, world):
    world.segment.refused_users["usr_golden"] = "invalid traits"

    dag_run = run(dag)

    assert str(dag_run.state) == "success", states(dag_run)
    assert "usr_golden" not in {m["userId"] for m in world.segment.delivered.values()}
    last = world.last_run()
    store = world.store()
    rejects = store.rejects(RunKey(DAG_ID, last["run_id"]))
    store.close()
    refused = sorted((r["entity"], r["entity_id"]) for r in rejects
                     if r["kind"] == "segment_refused")
    assert refused == [("group", "usr_golden"), ("user", "usr_golden")]
    groups = last["counts"]["groups"]
    assert groups["refused"] == 1 and groups["sent"] == groups["built"] - 1
    assert last["counts"]["rejected_by_kind"]["segment_refused"] == 1  # users, not calls
    assert "Segment refused 1 group call(s) one by one; they are rejects of entity group, " \
           "kind segment_refused" in last["notes"]
