"""Fixtures shared by every test folder."""

from __future__ import annotations

import pytest

from tests.postgres import postgres_server


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
