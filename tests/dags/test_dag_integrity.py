"""The DAG loads, has the agreed shape, and is cheap to parse."""

from __future__ import annotations

import subprocess
import sys

import pytest
from airflow.dag_processing.dagbag import DagBag
from airflow.timetables.interval import CronDataIntervalTimetable

from tests.conftest import REPO


@pytest.fixture(scope="module")
def dagbag():
    return DagBag(dag_folder=str(REPO / "dags"))


@pytest.fixture(scope="module")
def dag(dagbag):
    return dagbag.dags["moesif_to_segment"]


def test_dags_import_without_errors(dagbag):
    assert dagbag.import_errors == {}
    assert list(dagbag.dags) == ["moesif_to_segment"]


def test_every_dag_has_tags_and_at_least_two_retries(dagbag):
    for dag in dagbag.dags.values():
        assert dag.tags, dag.dag_id
        for task in dag.tasks:
            assert task.retries >= 2, task.task_id
            assert task.retry_delay.total_seconds() > 0, task.task_id


def test_schedule_is_an_hourly_utc_interval_timetable(dag):
    assert isinstance(dag.timetable, CronDataIntervalTimetable)
    assert dag.timetable._expression == "0 * * * *"
    assert str(dag.timetable._timezone) == "UTC"
    assert dag.catchup is False
    assert dag.max_active_runs == 1


def test_the_graph_is_exactly_the_six_tasks(dag):
    edges = {(task.task_id, down) for task in dag.tasks for down in task.downstream_task_ids}
    assert {task.task_id for task in dag.tasks} == {
        "check_window", "extract_users", "extract_companies", "transform", "load", "audit"}
    assert edges == {
        ("check_window", "extract_users"), ("check_window", "extract_companies"),
        ("extract_users", "transform"), ("extract_companies", "transform"),
        ("extract_users", "audit"), ("extract_companies", "audit"),
        ("transform", "load"), ("transform", "audit"), ("load", "audit"),
    }


def test_loads_share_the_segment_pool(dag):
    assert dag.get_task("load").pool == "segment_api"


def test_every_param_has_a_default_and_the_doc_explains_them(dag):
    assert dict(dag.params) == {"start": None, "end": None, "allow_long_window": False,
                                "full_refresh": False, "dry_run": False, "force": False,
                                "doctor": False, "retry_rejects_of": None}
    for name in ("start", "end", "allow_long_window", "full_refresh", "dry_run", "force",
                 "doctor", "retry_rejects_of", "Backfill"):
        assert name in dag.doc_md


def test_every_param_has_a_title_a_section_and_a_description(dag):
    sections = {name: param.schema["section"] for name, param in dag.params.items()}
    assert sections == {"start": "Window", "end": "Window", "allow_long_window": "Window",
                        "full_refresh": "Modes", "dry_run": "Modes", "force": "Modes",
                        "doctor": "Modes", "retry_rejects_of": "Modes"}
    for name, param in dag.params.items():
        assert param.schema["title"] and param.description, name
        # No required star in the form: every param may be left empty.
        assert "null" in param.schema["type"], name
    for name in ("start", "end"):
        assert dag.params.get_param(name).schema["format"] == "date-time"
        assert "e.g. 2026-11-25T" in dag.params.get_param(name).description


def test_every_task_has_a_docstring(dag):
    for task in dag.tasks:
        assert task.doc_md or getattr(task, "python_callable", None).__doc__, task.task_id


def test_parsing_the_dag_imports_no_pandas_requests_or_sqlalchemy_models():
    probe = (
        "import runpy, sys\n"
        f"runpy.run_path({str(REPO / 'dags' / 'moesif_to_segment.py')!r})\n"
        "heavy = sorted(m for m in ('pandas', 'requests', 'orjson', 'moesif_segment_sync.sync')"
        " if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip().splitlines()[-1:] in ([], [""])
