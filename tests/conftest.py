"""Fixtures shared by every test folder.

Airflow reads its configuration when first imported, so a throwaway
``AIRFLOW_HOME`` is set here, before any test module imports Airflow.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.postgres import postgres_server

REPO = Path(__file__).resolve().parents[1]
AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="mss-airflow-"))
os.environ.update({
    "AIRFLOW_HOME": str(AIRFLOW_HOME),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
    "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
    # Fixed for the test session: in-process dag.test() and the api-server app share it.
    "AIRFLOW__API_AUTH__JWT_SECRET": "test-only-jwt-secret-" + "0" * 64,
    # The tests pin each window's exact users; the lookback (10 min by default) reads into
    # the previous window, and its own tests turn it on (tests/dags/test_lookback.py).
    "MOESIF_SEGMENT_LOOKBACK": "PT0S",
})


# Slow suites, by folder: `make test-fast` leaves them out for the edit-test loop.
_FOLDER_MARKS = {"e2e": ("scheduler",), "browser": ("browser", "scheduler"),
                 "celery": ("celery", "postgres"), "dags": ("airflow",), "bench": ("airflow",)}


def pytest_collection_modifyitems(config, items):
    tests = Path(__file__).parent
    for item in items:
        for name in _FOLDER_MARKS.get(item.path.relative_to(tests).parts[0], ()):
            item.add_marker(name)
        params = getattr(getattr(item, "callspec", None), "params", {})
        if "postgres_url" in getattr(item, "fixturenames", ()) or \
                params.get("audit_url") == "postgres":
            item.add_marker("postgres")


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(AIRFLOW_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def airflow_db():
    """A migrated Airflow metadata database (SQLite) in the throwaway AIRFLOW_HOME."""
    subprocess.run([str(Path(sys.executable).with_name("airflow")), "db", "migrate"],
                   check=True, capture_output=True)
    return AIRFLOW_HOME


@pytest.fixture(scope="session")
def postgres_url():
    with postgres_server() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def audit_url(request, tmp_path):
    """The audit store's URL: every test using it runs against SQLite and PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'audit.db'}"
    import sqlalchemy as sa

    server = request.getfixturevalue("postgres_url")
    database = f"audit_{tmp_path.name.lower().replace('-', '_')}"[:60]
    engine = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with engine.connect() as db:
        db.execute(sa.text(f'DROP DATABASE IF EXISTS "{database}"'))
        db.execute(sa.text(f'CREATE DATABASE "{database}"'))
    engine.dispose()
    return server.rsplit("/", 1)[0] + f"/{database}"
