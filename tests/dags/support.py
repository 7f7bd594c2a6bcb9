"""What every `dag.test()` or `airflow dags test` test of the sync sets up the same way."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from sandbox.datagen import Dataset
from sandbox.environment import (
    DEMO_WINDOW,
    MOESIF_KEY,
    WRITE_KEY,
    airflow,
    airflow_env,
    connection_env,
    prepare_airflow,
    stand_ins,
)
from tests.support import DAG_ID


def point_dag_at(monkeypatch: pytest.MonkeyPatch, moesif_url: str, segment_url: str,
                 tmp_path: Path, *, moesif_key: str = MOESIF_KEY,
                 write_key: str = WRITE_KEY) -> str:
    """Connections to the stand-ins, an audit store and a staging root under ``tmp_path``,
    as the environment the DAG reads; returns the audit store's URL."""
    audit_url = f"sqlite:///{tmp_path / 'audit.db'}"
    env = connection_env(moesif_url, segment_url, audit_url, moesif_key=moesif_key,
                         write_key=write_key)
    env["MOESIF_SEGMENT_STAGING_ROOT"] = (tmp_path / "staging").as_uri()
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return audit_url


def dags_test(dataset: Dataset, home: Path, *, audit_url: str | None = None,
              **settings: str) -> subprocess.CompletedProcess:
    """One run of the DAG over the demo window through `airflow dags test`, in a process of
    its own, against stand-ins serving ``dataset``; ``settings`` are more environment
    variables (Airflow's, ``MOESIF_SEGMENT_*``). Returns the finished command."""
    with stand_ins(dataset) as (moesif, segment):
        env = airflow_env(home, **settings, **connection_env(moesif.url, segment.url,
                                                             audit_url))
        prepare_airflow(env)
        return airflow("dags", "test", DAG_ID, DEMO_WINDOW[1].isoformat(), env=env,
                       check=False)
