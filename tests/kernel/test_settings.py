"""Settings that shape the DAG when it is parsed: timeouts, owner, the notifier."""

from __future__ import annotations

from datetime import timedelta

import pytest
from airflow.dag_processing.dagbag import DagBag

from moesif_segment_sync.errors import ConfigError
from moesif_segment_sync.settings import load_settings
from tests.conftest import REPO
from tests.support import DAG_ID


def test_a_load_without_a_send_rate_gets_the_task_timeout():
    assert load_settings().load_timeout() == timedelta(hours=2)


def test_a_load_at_a_low_rate_gets_twice_a_shards_time_plus_half_an_hour():
    settings = load_settings(send_rate=10, shard_size=100_000)
    assert settings.load_timeout() == timedelta(seconds=20_000, minutes=30)
    # Two slots share the rate: each shard goes at half of it.
    assert load_settings(send_rate=10, load_slots=2).load_timeout() == timedelta(
        seconds=40_000, minutes=30)


def test_a_notifier_needs_a_class():
    with pytest.raises(ConfigError) as error:
        load_settings(notifier={"to": "ops@example.com"})
    assert str(error.value) == ('invalid setting: MOESIF_SEGMENT_NOTIFIER: Value error, needs '
                                '"class": the dotted path of an Airflow notifier')


def test_the_dag_carries_owner_timeouts_and_run_level_callbacks(monkeypatch):
    monkeypatch.setenv("MOESIF_SEGMENT_OWNER", "growth-data")
    monkeypatch.setenv("MOESIF_SEGMENT_SEND_RATE", "10")
    monkeypatch.setenv("MOESIF_SEGMENT_RUN_TIMEOUT", "PT36H")
    dag = DagBag(dag_folder=str(REPO / "dags")).dags[DAG_ID]

    assert dag.dagrun_timeout == timedelta(hours=36)
    assert {task.owner for task in dag.tasks} == {"growth-data"}
    timeouts = {task.task_id: task.execution_timeout for task in dag.tasks}
    assert timeouts == {"check_window": timedelta(hours=2), "extract_users": timedelta(hours=2),
                        "extract_companies": timedelta(hours=2),
                        "transform": timedelta(hours=2), "audit": timedelta(hours=2),
                        "load": timedelta(seconds=20_000, minutes=30)}
    # One alert per run: the callbacks sit on the DAG, none on its tasks.
    assert dag.on_failure_callback is not None and dag.on_success_callback is not None
    assert all(not task.on_failure_callback for task in dag.tasks)


@pytest.mark.parametrize(("given", "expected"), [
    ("PT10M", timedelta(minutes=10)), ("600", timedelta(minutes=10)), ("0", timedelta(0)),
    ("90.5", timedelta(seconds=90.5)), ("P30D", timedelta(days=30))])
def test_durations_are_iso_8601_or_seconds(monkeypatch, given, expected):
    for name in ("LOOKBACK", "CONTENT_RETENTION"):
        monkeypatch.setenv(f"MOESIF_SEGMENT_{name}", given)
    settings = load_settings()
    assert (settings.lookback, settings.content_retention) == (expected, expected)


def test_a_negative_or_unreadable_duration_names_its_setting(monkeypatch):
    monkeypatch.setenv("MOESIF_SEGMENT_CONTENT_RETENTION", "-5")
    with pytest.raises(ConfigError, match="MOESIF_SEGMENT_CONTENT_RETENTION"):
        load_settings()
