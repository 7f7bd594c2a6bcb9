"""Removed traits and the diff preview (issue 20), through `dag.test()` against the
stand-ins: a trait the user lost in Moesif arrives as null only with
MOESIF_SEGMENT_REMOVED_TRAITS=null, and a dry run lists exactly the traits that changed since
Segment last accepted each user, on its page and in its download."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest
from airflow.dag_processing.dagbag import DagBag

from moesif_segment_sync.pipeline import diff, staging
from moesif_segment_sync.pipeline.staging import Staging
from tests.conftest import REPO
from tests.dags import test_dag_e2e
from tests.dags.test_dag_e2e import GOLDEN_COMPANY, GOLDEN_MESSAGE, GOLDEN_USER, run, states
from tests.history_seed import element_text, history_client, run_page
from tests.support import DAG_ID

world = test_dag_e2e.world  # the same stand-ins and data (with the golden user and company)


def fresh_dag():  # noqa: ANN201 - a DAG
    """The DAG parsed again: settings are read when a run starts, params when it is parsed."""
    return DagBag(dag_folder=str(REPO / "dags")).dags[DAG_ID]


def golden(segment) -> list[dict]:  # noqa: ANN001
    """The golden user's identify messages Segment accepted, in order."""
    return [m for m in segment.accepted if m["userId"] == "usr_golden" and m["type"] == "identify"]


def without_username_and_campaign() -> dict:
    user = copy.deepcopy(GOLDEN_USER)
    del user["user_name"], user["campaign"]
    return user


@pytest.mark.parametrize("setting", ["null", "keep"])
def test_a_removed_trait_arrives_as_null_only_when_the_setting_says_so(world, monkeypatch,
                                                                        airflow_db, tmp_path,
                                                                        setting):
    monkeypatch.setenv("MOESIF_SEGMENT_REMOVED_TRAITS", setting)
    assert str(run(fresh_dag()).state) == "success"
    world.moesif.collections["users"].upsert(without_username_and_campaign())

    second = run(fresh_dag())

    assert str(second.state) == "success", states(second)
    first, changed = golden(world.segment)
    expected = copy.deepcopy(GOLDEN_MESSAGE["traits"])
    del expected["username"], expected["campaign"]
    if setting == "null":  # added at the end of the traits, in the mapping's order
        expected |= {"username": None, "campaign": None}
    assert changed["traits"] == expected
    assert list(changed["traits"]) == list(expected)
    assert {k: v for k, v in changed.items() if k not in ("traits", "messageId")} == {
        k: v for k, v in GOLDEN_MESSAGE.items() if k != "traits"}
    # Only the golden user changed: nobody else was sent again, nor given a null.
    assert len(world.segment.accepted) == len(world.segment.delivered)
    assert not any(None in m["traits"].values() for m in world.segment.accepted
                   if m["userId"] != "usr_golden")
    record = world.last_run()
    assert record["counts"]["traits_nulled"] == (1 if setting == "null" else 0)
    assert record["sent"] == 1
    page = run_page(airflow_db, tmp_path, record["run_id"])
    if setting == "null":
        assert element_text(page, "traits-nulled") == (
            "1 user(s) got the top-level traits they lost since Segment last accepted them "
            "as null")
    else:
        assert 'id="traits-nulled"' not in page

    # A third run has nothing to send: the nulls are not sent again.
    before = len(world.segment.accepted)
    assert str(run(fresh_dag()).state) == "success"
    assert len(world.segment.accepted) == before


def test_a_dry_run_lists_exactly_the_traits_that_changed(world, airflow_db, tmp_path):
    assert str(run(fresh_dag()).state) == "success"
    user = without_username_and_campaign()
    user["first_name"] = "Augusta"
    user["metadata"]["plan"] = "pro"
    company = copy.deepcopy(GOLDEN_COMPANY)
    company["metadata"]["name"] = "Golden Corp International"
    world.moesif.collections["users"].upsert(user)
    world.moesif.collections["companies"].upsert(company)
    sent_before = len(world.segment.accepted)

    dry = run(fresh_dag(), dry_run=True)

    assert str(dry.state) == "success", states(dry)
    assert len(world.segment.accepted) == sent_before  # a dry run sends nothing
    record = world.last_run()
    stage = Staging((tmp_path / "staging").as_uri(), DAG_ID, record["run_id"])
    [line] = list(diff.staged(stage, record["counts"]["shards"]))
    previous_at = line.pop("previous_accepted_at")
    assert line == {
        "userId": "usr_golden", "status": "changed",
        "added": {"metadata.plan": "pro"},
        "changed": {
            "company.metadata.name": [" Golden Corp ", "Golden Corp International"],
            "company.name": ["Golden Corp", "Golden Corp International"],
            "name": ["Ada Lovelace", "Augusta Lovelace"]},
        "removed": {
            "campaign.gclid": "abc123", "campaign.medium": "cpc", "campaign.name": "launch",
            "campaign.referrer": "https://www.google.com/",
            "campaign.referringDomain": "www.google.com", "campaign.source": "google",
            "campaign.term": "api", "username": "ada_l"}}
    # When Segment accepted the first run's message: a moment of this test, not of the data.
    accepted_at = datetime.fromisoformat(previous_at.replace("Z", "+00:00"))
    assert datetime.now(UTC) - timedelta(hours=1) < accepted_at <= datetime.now(UTC)
    assert record["counts"]["diff"] == {
        "users": {"changed": 1},
        "traits": {"campaign.gclid removed": 1, "campaign.medium removed": 1,
                   "campaign.name removed": 1, "campaign.referrer removed": 1,
                   "campaign.referringDomain removed": 1, "campaign.source removed": 1,
                   "campaign.term removed": 1, "company.metadata.name changed": 1,
                   "company.name changed": 1, "metadata.plan added": 1, "name changed": 1,
                   "username removed": 1}}
    assert stage.exists(staging.diff_file(0))

    # The run page says it, and its download has it.
    with history_client(airflow_db, tmp_path, seed_store=lambda *_, **__: None) as client:
        token = client.post("/auth/token", json={"username": "admin", "password": "admin"})
        auth = {"Authorization": f"Bearer {token.json()['access_token']}"}
        run_id = quote(record["run_id"], safe="")
        page = client.get(f"/segment-sync/ui/runs/{run_id}", headers=auth).text
        download = client.get(f"/segment-sync/runs/{run_id}/export/diff.jsonl?dag_id={DAG_ID}",
                              headers=auth)
    assert element_text(page, "diff-summary") == "1 users: 1 changed."
    traits = element_text(page, "diff-traits")
    assert traits.startswith("campaign.gclid removed 1, campaign.medium removed 1, ")
    assert traits.endswith("name changed 1, username removed 1.")
    assert [json.loads(row) for row in download.text.splitlines()] == [
        {**line, "previous_accepted_at": previous_at}]


def test_a_dry_run_of_users_segment_never_had_lists_them_as_new(world):
    dry = run(fresh_dag(), dry_run=True)

    assert str(dry.state) == "success", states(dry)
    record = world.last_run()
    assert record["counts"]["diff"]["users"] == {"new": record["would_send"]}
    assert record["counts"]["diff"]["traits"] == {}


def test_without_kept_content_the_diff_says_so(world, monkeypatch):
    monkeypatch.setenv("MOESIF_SEGMENT_CONTENT_RETENTION", "0")
    assert str(run(fresh_dag()).state) == "success"
    world.moesif.collections["users"].upsert(without_username_and_campaign())

    dry = run(fresh_dag(), dry_run=True)

    assert str(dry.state) == "success", states(dry)
    assert world.last_run()["counts"]["diff"] == {"users": {"not_kept": 1}, "traits": {}}
