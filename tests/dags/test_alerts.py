"""Alerts: a run whose rejected share is over the threshold fails with that reason, and one
e-mail arrives at a real SMTP server on loopback, sent by the SMTP provider's notifier named
in MOESIF_SEGMENT_NOTIFIER (the DAG's run-level callback: once per run, not per task)."""

from __future__ import annotations

import html
import json
from email import message_from_bytes, policy

import pytest
from aiosmtpd.controller import Controller
from airflow.dag_processing.dagbag import DagBag

from moesif_segment_sync.store.audit import AuditStore
from sandbox.datagen import generate
from sandbox.environment import DATA_SPAN, DEMO_WINDOW, stand_ins
from tests.conftest import REPO
from tests.dags import alert_sink
from tests.dags.support import point_dag_at
from tests.postgres import free_port
from tests.support import DAG_ID

SMTP_NOTIFIER = "airflow.providers.smtp.notifications.smtp.SmtpNotifier"


class Inbox:
    """An SMTP server's handler that keeps every message it is given."""

    def __init__(self) -> None:
        self.messages: list = []

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001, ANN201, N802
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos),
                              message_from_bytes(envelope.content, policy=policy.default)))
        return "250 OK"


@pytest.fixture
def inbox(monkeypatch):
    handler, port = Inbox(), free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", json.dumps({
        "conn_type": "smtp", "host": "127.0.0.1", "port": port,
        "extra": {"disable_tls": True, "disable_ssl": True}}))
    monkeypatch.setenv("MOESIF_SEGMENT_NOTIFIER", json.dumps(
        {"class": SMTP_NOTIFIER, "to": "data-team@example.com",
         "from_email": "sync@example.com"}))
    try:
        yield handler
    finally:
        controller.stop()


@pytest.fixture
def env(airflow_db, tmp_path, monkeypatch):
    dataset = generate(400, seed=11, start=DATA_SPAN[0], end=DATA_SPAN[1])
    with stand_ins(dataset) as (moesif, segment):
        audit_url = point_dag_at(monkeypatch, moesif.url, segment.url, tmp_path)
        monkeypatch.setenv("AIRFLOW__API__BASE_URL", "http://airflow.example.com:8080")
        alert_sink.RECEIVED.clear()
        yield audit_url


def run_dag():  # noqa: ANN201 - a DagRun
    dag = DagBag(dag_folder=str(REPO / "dags")).dags[DAG_ID]
    return dag.test(logical_date=DEMO_WINDOW[1])


def test_a_rejected_share_over_the_threshold_sends_one_alert_email(env, inbox, monkeypatch):
    monkeypatch.setenv("MOESIF_SEGMENT_MAX_REJECTED_SHARE", "0.005")

    dag_run = run_dag()

    assert str(dag_run.state) == "failed"
    store = AuditStore(env)
    record = store.latest_runs(DAG_ID, limit=1)[0]
    store.close()
    error = ("4 of 301 users rejected (1.3%), over the 0.5% threshold "
             "(MOESIF_SEGMENT_MAX_REJECTED_SHARE): see the run's rejects for the reasons")
    assert (record["status"], record["failed_task"], record["error"]) == ("failed", "audit", error)
    assert (record["considered"], record["sent"], record["rejected"], record["batches"]) == (
        301, 297, 4, 2)

    [(sender, recipients, message)] = inbox.messages
    assert (sender, recipients) == ("sync@example.com", ["data-team@example.com"])
    assert message["Subject"] == ("moesif_to_segment failed in audit: 2026-11-25 00:00 UTC, "
                                  "4 rejected of 301")
    body = html.unescape(message.get_body(("html",)).get_content())
    link = (f"http://airflow.example.com:8080/segment-sync/ui/runs/"
            f"{dag_run.run_id.replace(':', '%3A').replace('+', '%2B')}?dag_id=moesif_to_segment")
    assert body.strip() == "<pre>" + "\n".join([
        f"Run {dag_run.run_id} of moesif_to_segment failed in audit.",
        "Window: 2026-11-25 00:00 UTC to 2026-11-25 01:00 UTC (data_interval, manual)",
        f"Error: {error}",
        "Users: considered 301, sent 297, unchanged 0, rejected 4; batches 2",
        "Top reject reasons: no_user_id 3, oversize 1",
        f"Run page: {link}"]) + "</pre>"


def test_under_the_threshold_the_run_succeeds_and_nobody_is_mailed(env, inbox):
    dag_run = run_dag()

    assert str(dag_run.state) == "success"
    assert inbox.messages == []


def test_a_success_summary_when_asked_for(env, inbox, monkeypatch):
    monkeypatch.setenv("MOESIF_SEGMENT_NOTIFY_ON_SUCCESS", "true")

    dag_run = run_dag()

    assert str(dag_run.state) == "success"
    [(_, _, message)] = inbox.messages
    assert message["Subject"].startswith("moesif_to_segment succeeded: 2026-11-25 00:00 UTC, ")
    body = html.unescape(message.get_body(("html",)).get_content())
    assert body.startswith(f"<pre>Run {dag_run.run_id} of moesif_to_segment succeeded.\n")


def test_the_deprecated_callback_setting_still_fires_once_per_run(env, monkeypatch, caplog):
    monkeypatch.setenv("MOESIF_SEGMENT_MAX_REJECTED_SHARE", "0.005")
    monkeypatch.setenv("MOESIF_SEGMENT_ON_FAILURE_CALLBACK", "tests.dags.alert_sink:record")

    dag_run = run_dag()

    [alert] = alert_sink.RECEIVED
    assert alert["run_id"] == dag_run.run_id
    assert "MOESIF_SEGMENT_ON_FAILURE_CALLBACK is deprecated" in caplog.text
