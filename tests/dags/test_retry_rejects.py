"""Retrying rejects (issue 20): a run's rejects are read from Moesif again and sent once the
cause is fixed; the new run says what it retried, the old run's page says where; the CLI
triggers such a run."""

from __future__ import annotations

import os
import subprocess
import sys

from airflow.dag_processing.dagbag import DagBag
from airflow.models.dagrun import DagRun

from moesif_segment_sync.store import history
from moesif_segment_sync.store.audit import AuditStore, RunKey
from sandbox.datagen import generate
from sandbox.environment import DATA_SPAN, DEMO_WINDOW, stand_ins
from tests.conftest import REPO
from tests.dags.support import point_dag_at
from tests.support import DAG_ID


def test_a_refused_user_is_sent_by_a_retry_once_the_cause_is_fixed(airflow_db, tmp_path,
                                                                     monkeypatch):
    dataset = generate(400, seed=11, start=DATA_SPAN[0], end=DATA_SPAN[1])
    window_users = sorted(dataset.expected_user_ids(*DEMO_WINDOW))
    refused = window_users[3]
    with stand_ins(dataset) as (moesif, segment):
        audit_url = point_dag_at(monkeypatch, moesif.url, segment.url, tmp_path)
        segment.refused_users[refused] = "Invalid message"
        first = DagBag(dag_folder=str(REPO / "dags")).dags[DAG_ID].test(
            logical_date=DEMO_WINDOW[1])
        assert refused not in {m["userId"] for m in segment.delivered.values()}
        store = AuditStore(audit_url)
        with_ids = {r["entity_id"] for r in store.rejects(RunKey(DAG_ID, first.run_id))
                    if r["entity_id"]}
        store.close()
        assert refused in with_ids and len(with_ids) > 1  # others rejected for good reasons

        # The CLI triggers a run that retries them (no scheduler here: it stays queued).
        cli = subprocess.run([sys.executable, "-m", "moesif_segment_sync", "--url", audit_url,
                              "retry-rejects", first.run_id], env=os.environ,
                             capture_output=True, text=True)
        assert cli.returncode == 0, cli.stderr
        assert f"retrying the {len(with_ids)} rejected user(s) of {first.run_id}" in cli.stdout
        queued = [run for run in DagRun.find(dag_id=DAG_ID)
                  if (run.conf or {}).get("retry_rejects_of") == first.run_id]
        assert [(run.conf, str(run.state)) for run in queued] == [
            ({"retry_rejects_of": first.run_id}, "queued")]

        del segment.refused_users[refused]  # the cause is fixed
        before = set(segment.delivered)
        retry = DagBag(dag_folder=str(REPO / "dags")).dags[DAG_ID].test(
            logical_date=DEMO_WINDOW[1].replace(minute=30),
            run_conf={"retry_rejects_of": first.run_id})
        sent_again = [m["userId"] for message_id, m in segment.delivered.items()
                      if message_id not in before]

    assert (str(first.state), str(retry.state)) == ("success", "success")
    assert sent_again == [refused]  # the others rejected before are still bad
    store = AuditStore(audit_url)
    record = store.run(RunKey(DAG_ID, retry.run_id))
    old = history.run_detail(store, RunKey(DAG_ID, first.run_id))
    store.close()
    assert record["params"]["retry_rejects_of"] == first.run_id
    assert (record["considered"], record["sent"]) == (len(with_ids), 1)
    assert record["notes"][0] == (f"retries the rejects of {first.run_id}: {len(with_ids)} "
                                  "user(s) read again from Moesif, through today's mapping")
    assert old.retried_in == [retry.run_id]
