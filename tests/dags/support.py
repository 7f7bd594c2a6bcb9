"""What every `dag.test()` test of the sync sets up the same way."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox.environment import MOESIF_KEY, WRITE_KEY, connection_env


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
