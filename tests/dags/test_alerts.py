"""Alerts: a run whose rejected share is over the threshold fails with that reason, and the
failure reaches the configured callback (where Slack or email would be wired)."""

from __future__ import annotations

import pytest
from airflow.dag_processing.dagbag import DagBag

from moesif_segment_sync.store.audit import AuditStore
from sandbox.datagen import generate
from sandbox.environment import DATA_SPAN, DEMO_WINDOW, stand_ins
from tests.conftest import REPO
from tests.dags import alert_sink
from tests.dags.support import point_dag_at
from tests.support import DAG_ID


@pytest.fixture
def env(airflow_db, tmp_path, monkeypatch):
    dataset = generate(400, seed=11, start=DATA_SPAN[0], end=DATA_SPAN[1])
    with stand_ins(dataset) as (moesif, segment):
        audit_url = point_dag_at(monkeypatch, moesif.url, segment.url, tmp_path)
        monkeypatch.setenv("MOESIF_SEGMENT_ON_FAILURE_CALLBACK", "tests.dags.alert_sink:record")
        alert_sink.RECEIVED.clear()
        yield audit_url


def run_dag():  # noqa: ANN201 - a DagRun
    dag = DagBag(dag_folder=str(REPO / "dags")).dags[DAG_ID]
    return dag.test(logical_date=DEMO_WINDOW[1])


def test_a_rejected_share_over_the_threshold_fails_the_run_and_alerts(env, monkeypatch):
    monkeypatch.setenv("MOESIF_SEGMENT_MAX_REJECTED_SHARE", "0.005")

    dag_run = run_dag()

    assert str(dag_run.state) == "failed"
    store = AuditStore(env)
    record = store.latest_runs(DAG_ID, limit=1)[0]
    store.close()
    assert record["status"] == "failed"
    share = record["rejected"] / record["considered"]
    assert record["error"] == (
        f"{record['rejected']} of {record['considered']} users rejected ({share:.1%}), over the "
        "0.5% threshold (MOESIF_SEGMENT_MAX_REJECTED_SHARE): see the run's rejects for the "
        "reasons")
    [alert] = alert_sink.RECEIVED
    assert (alert["run_id"], alert["task_id"]) == (dag_run.run_id, "audit")
    assert alert["exception"] == record["error"]


def test_under_the_threshold_the_run_succeeds_and_nobody_is_paged(env):
    dag_run = run_dag()

    assert str(dag_run.state) == "success"
    assert alert_sink.RECEIVED == []
