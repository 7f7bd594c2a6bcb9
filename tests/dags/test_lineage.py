"""OpenLineage (issue 19): with the provider installed and its file transport set, the task
events name the Moesif inputs and the Segment output, with the run's counts as a facet."""

from __future__ import annotations

import json
import time

import pytest

from moesif_segment_sync.store.audit import AuditStore
from sandbox.datagen import generate
from sandbox.environment import DATA_SPAN
from tests.dags.support import dags_test
from tests.support import DAG_ID


@pytest.fixture
def events(tmp_path):
    """One run through `airflow dags test` in a process of its own: the provider reads its
    transport once per process, so an earlier test's run in this one would have set it."""
    dataset = generate(400, seed=11, start=DATA_SPAN[0], end=DATA_SPAN[1])
    path = tmp_path / "openlineage.jsonl"
    audit_url = f"sqlite:///{tmp_path / 'audit.db'}"
    result = dags_test(dataset, tmp_path / "home", audit_url=audit_url,
                       AIRFLOW__OPENLINEAGE__NAMESPACE="test",
                       AIRFLOW__OPENLINEAGE__TRANSPORT=json.dumps(
                           {"type": "file", "log_file_path": str(path), "append": True}))
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    store = AuditStore(audit_url)
    record = store.latest_runs(DAG_ID, limit=1)[0]
    store.close()
    # The provider emits from a worker of its own: wait for the last task's COMPLETE event.
    events: list[dict] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        lines = path.read_text().splitlines() if path.exists() else []
        events = [json.loads(line) for line in lines]
        done = {e["job"]["name"] for e in events if e["eventType"] == "COMPLETE"}
        if {f"{DAG_ID}.extract_users", f"{DAG_ID}.audit"} <= done:
            break
        time.sleep(0.5)
    yield events, record


def complete(events: list[dict], task: str) -> dict:
    [event] = [e for e in events if e["eventType"] == "COMPLETE"
               and e["job"]["name"] == f"{DAG_ID}.{task}"]
    return event


def test_the_events_name_inputs_and_output_with_counts(events):
    events, record = events
    users = complete(events, "extract_users")
    # `airflow dags test` runs every task in one process, where the hook lineage collector keeps
    # what earlier tasks reported (extract_companies' input); a task process has only its own.
    assert {(d["namespace"], d["name"]) for d in users["inputs"]} == {
        ("moesif://moesif_default", "users"), ("moesif://moesif_default", "companies")}
    [read] = [d for d in users["inputs"] if d["name"] == "users"]
    assert read["facets"]["moesifSegmentSync"]["counts"]["users"] == (
        record["counts"]["users_in_window"] + record["counts"]["users_via_company"])

    audit = complete(events, "audit")
    [output] = audit["outputs"]
    assert (output["namespace"], output["name"]) == ("segment://segment_default", "identify")
    counts = output["facets"]["moesifSegmentSync"]["counts"]
    assert {key: counts[key] for key in ("considered", "sent", "rejected", "status")} == {
        "considered": record["considered"], "sent": record["sent"],
        "rejected": record["rejected"], "status": "success"}
